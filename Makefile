# apeiro-cmk — every target is self-contained: tools are built from pinned Go modules under hack/ into a cache outside
# the clone (TOOLS_CACHE), keyed by their inputs, so repeated runs cost nothing.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TOOLS_CACHE ?= $(or $(APEIRO_TOOLS_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/apeiro-cmk/tools)
export APEIRO_TOOLS_CACHE := $(TOOLS_CACHE)
BIN ?= bin
GO ?= go
CONTROLLER_GEN = $(TOOLS_CACHE)/controller-gen-$(shell cat hack/tools/go.mod hack/tools/go.sum | sha256sum | cut -c1-12)
FUZZTIME ?= 5s

# Real peers. Each hack/make/<peer>.mk fragment appends its build target to PEERS (prerequisites of `make test`)
# and the environment its tests read to PEER_ENV, e.g.
#   PEERS += kcp-bin
#   PEER_ENV += KCP_BIN="$$(bash hack/peers/build-kcp.sh 2>/dev/null)"
# Builds are cached outside the clone (hack/peers/lib.sh), so a warm machine pays nothing.
PEERS := kube-bin
PEER_ENV :=
include $(sort $(wildcard hack/make/*.mk))

##@ General
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9.-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
.PHONY: run
run: build plugins ## Start a local real control plane (etcd + kube-apiserver) with the webhook registered; Ctrl-C cleans up. KEYSTORES=openbao,thales also starts those keystores.
	@KUBE_BIN="$$(bash hack/peers/build-kube.sh)" && exec $(BIN)/devstack --kube-bin "$$KUBE_BIN" --webhook-bin $(BIN)/webhook --root "$(CURDIR)" $(RUN_KEYSTORE_ARGS)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code and CRD YAML (deploy/crds).
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./pkg/apis/...
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./pkg/apis/... output:crd:artifacts:config=deploy/base/crds

.PHONY: verify-generate
verify-generate: generate ## Fail when generated files differ from the checked-in ones.
	@git diff --exit-code -- pkg/apis deploy/base/crds || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- pkg/apis deploy/base/crds)" || { git status --porcelain -- pkg/apis deploy/base/crds; echo "untracked generated files: run 'make generate' and commit"; exit 1; }

$(CONTROLLER_GEN):
	@mkdir -p $(TOOLS_CACHE)
	@echo ">> building controller-gen (pinned in hack/tools)"
	cd hack/tools && GOFLAGS=-mod=readonly $(GO) build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: lint
lint: ## go vet + gofmt check.
	@out="$$(gofmt -s -l $$(git ls-files '*.go'))"; test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...

##@ Build
.PHONY: build
build: ## Build the webhook server and the dev stack launcher into bin/.
	$(GO) build -o $(BIN)/webhook ./cmd/webhook
	$(GO) build -o $(BIN)/devstack ./hack/devstack

.PHONY: plugins
plugins: ## Build every plugin binary into bin/plugins/.
	@mkdir -p $(BIN)/plugins
	@for d in cmd/plugins/*/; do n=$$(basename $$d); echo ">> plugin $$n"; $(GO) build -o $(BIN)/plugins/$$n ./$$d; done

.PHONY: kube-bin
kube-bin: ## Build (or reuse) etcd, kube-apiserver and kubectl from hack/peers/kube.
	@bash hack/peers/build-kube.sh >/dev/null

##@ Test
.PHONY: test
test: verify-generate lint $(PEERS) ## Every test: unit, contract suites, envtest, e2e against real peers, short fuzzing.
	@echo ">> unit, contract and e2e tests (real control plane from $$(bash hack/peers/build-kube.sh 2>/dev/null); peers: $(PEERS))"
	KUBE_BIN="$$(bash hack/peers/build-kube.sh 2>/dev/null)" KUBEBUILDER_ASSETS="$$(bash hack/peers/build-kube.sh 2>/dev/null)" \
		$(PEER_ENV) $(GO) test -race -count=1 -timeout 40m ./...
	@$(MAKE) --no-print-directory test-modules
	@$(MAKE) --no-print-directory fuzz

# bench/charts and hack/image are modules of their own (their dependencies stay out of go.mod), so `go test ./...`
# does not reach them.
.PHONY: test-modules
test-modules: ## Unit tests of the side modules (bench/charts, hack/image).
	@echo ">> side modules: bench/charts, hack/image"
	cd bench/charts && GOFLAGS=-mod=readonly $(GO) test -count=1 ./...
	cd hack/image && GOFLAGS=-mod=readonly $(GO) test -count=1 ./...

.PHONY: test-unit
test-unit: ## Unit tests only (no control plane).
	$(GO) test -count=1 ./...

.PHONY: peers
peers: $(PEERS) ## Build or install every real peer the tests use (cached; idempotent).

.PHONY: e2e
e2e: kube-bin build ## Only the e2e suite (set KUBECONFIG to run it against an existing cluster).
	KUBE_BIN="$$(bash hack/peers/build-kube.sh 2>/dev/null)" $(PEER_ENV) $(GO) test -count=1 -v -timeout 20m ./test/e2e/...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each.
	@bash hack/fuzz.sh $(FUZZTIME)

.PHONY: bench
bench: ## Run the benchmarks that need no peer (peer benchmarks: commands in docs/performance.md).
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/hierarchy/ ./pkg/admission/... ./pkg/identity/ ./pkg/keychain/... \
		./pkg/mtls/ ./pkg/kcp/ ./pkg/plugins/keystore/keystoreconfig/

.PHONY: clean
clean: ## Remove build outputs and local state (not the tools cache).
	rm -rf $(BIN) .dev
