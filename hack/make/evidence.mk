# Evidence charts of the e2e load and fault tests (internal/evidence, bench/charts): runs TestLoadThroughAPIServer and
# the TestFault* tests against the same real peers as `make test` (PEERS, PEER_ENV) with APEIRO_EVIDENCE_DIR set, so
# they write their raw samples, then renders docs/img/$(EVIDENCE_PREFIX)-*.png. The charts are rendered even when a
# test fails (a failed run is evidence too); the target then fails with the tests' status.
#   make bench-e2e                                                   # the CI-sized runs (4 s load phases, 50 fault writers)
#   make bench-e2e EVIDENCE_RUN=TestFaultReplicaKilled               # one test
#   make bench-e2e EVIDENCE_ENV='APEIRO_E2E_LOAD_DURATION=20s' EVIDENCE_TESTFLAGS=-race
EVIDENCE_OUT ?= .dev/evidence
EVIDENCE_PREFIX ?= bench-e2e
EVIDENCE_RUN ?= TestLoadThroughAPIServer|TestFault
EVIDENCE_ENV ?=
EVIDENCE_TESTFLAGS ?=

##@ Evidence (load and fault charts)
.PHONY: bench-e2e
bench-e2e: ## Load-through-the-API-server and fault tests with evidence recording; charts into docs/img/bench-e2e-*.png (EVIDENCE_PREFIX).
	@$(MAKE) --no-print-directory peers
	@rm -rf "$(EVIDENCE_OUT)" && mkdir -p "$(EVIDENCE_OUT)"
	@{ echo "nproc: $$(nproc)"; grep -m1 'model name' /proc/cpuinfo; echo "before: $$(cat /proc/loadavg)"; } > "$(EVIDENCE_OUT)/machine.txt"
	@rc=0; KUBE_BIN="$$(bash hack/peers/build-kube.sh 2>/dev/null)" KUBEBUILDER_ASSETS="$$(bash hack/peers/build-kube.sh 2>/dev/null)" \
		$(PEER_ENV) $(EVIDENCE_ENV) APEIRO_EVIDENCE_DIR="$(abspath $(EVIDENCE_OUT))" \
		$(GO) test -count=1 -v -timeout 20m $(EVIDENCE_TESTFLAGS) -run '$(EVIDENCE_RUN)' ./test/e2e/ 2>&1 | tee "$(EVIDENCE_OUT)/test.log" || rc=$$?; \
		echo "after: $$(cat /proc/loadavg)" >> "$(EVIDENCE_OUT)/machine.txt"; cat "$(EVIDENCE_OUT)/machine.txt"; \
		cd bench/charts && GOFLAGS=-mod=readonly $(GO) run . -in "$(abspath $(EVIDENCE_OUT))" -out "$(CURDIR)/docs/img" -prefix $(EVIDENCE_PREFIX); \
		exit $$rc
