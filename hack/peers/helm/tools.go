//go:build tools

// Package tools pins the Helm CLI the chart tests run (helm lint, helm template, helm install/upgrade/uninstall
// against the e2e suite's kube-apiserver). Built by hack/peers/build-helm.sh; never imported by the project.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
