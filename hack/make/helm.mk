# Helm CLI (helm.sh/helm/v3, hack/peers/helm) for the chart in deploy/chart: lint, schema, lockstep with deploy/base
# (deploy/chart/chart_test.go) and install/upgrade/uninstall against the e2e control plane (test/e2e/helm_test.go).
.PHONY: helm-bin
helm-bin: ## Build (or reuse) the Helm CLI from hack/peers/helm (cold: ~1 min plus the module download).
	@bash hack/peers/build-helm.sh >/dev/null

PEERS += helm-bin
PEER_ENV += HELM_BIN="$$(bash hack/peers/build-helm.sh 2>/dev/null)"

.PHONY: chart-crds
chart-crds: ## Copy deploy/base/crds into the Helm chart (deploy/chart/apeiro-cmk/files/crds); run after `make generate`.
	@rm -f deploy/chart/apeiro-cmk/files/crds/*.yaml
	@cp deploy/base/crds/*.yaml deploy/chart/apeiro-cmk/files/crds/
	@echo ">> deploy/chart/apeiro-cmk/files/crds = deploy/base/crds"

.PHONY: chart-lint
chart-lint: helm-bin ## helm lint --strict the chart (values.schema.json included); the chart tests do more (deploy/chart).
	@"$$(bash hack/peers/build-helm.sh 2>/dev/null)/helm" lint --strict deploy/chart/apeiro-cmk
