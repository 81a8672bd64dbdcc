#!/usr/bin/env bash
# Builds the Helm CLI (helm.sh/helm/v3, pinned in hack/peers/helm) into a cache directory outside the clone.
# The chart tests (deploy/chart) and the e2e install/upgrade/uninstall test (test/e2e/helm_test.go) run it.
# Prints the directory holding `helm` on stdout (last line); progress goes to stderr.
# Cold: ~1 min on 2 cores once the modules are downloaded; warm: one sha256sum.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=hack/peers/lib.sh
source "$here/lib.sh"
mod="$here/helm"
peer_cache helm "$mod/go.mod" "$mod/go.sum" "$mod/tools.go" "$0"
if peer_cached helm; then
	exit 0
fi
version="$(cd "$mod" && GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' helm.sh/helm/v3)"
# `helm template` and `helm lint` assume the Kubernetes version of the client-go they are built with (as Helm's own
# Makefile sets it); without this they assume v1.20 and refuse the chart's kubeVersion.
k8s="$(cd "$mod" && GOFLAGS=-mod=readonly go list -m -f '{{.Version}}' k8s.io/client-go)"
k8s_minor="$(echo "$k8s" | cut -d. -f2)"
echo ">> building helm $version into $PEER_OUT (cold: ~1 min plus the module download)" >&2
peer_begin
(
	cd "$mod"
	# helm version reports the pinned module version instead of "v3.x-dev" (internal/version reads these).
	GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean
			-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor
			-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
		-o "$PEER_TMP/helm" helm.sh/helm/v3/cmd/helm
)
peer_commit
