# The Definition of Done, run on this machine: every item is a TestDoD<Item> test under test/dod that makes real
# calls against real peers and prints one line, "DoD <item>: PASS|FAIL <evidence>". A missing peer is a FAIL
# (APEIRO_REQUIRE_PEERS=1), never a skip. The full test log is kept in $(DOD_LOG) for the details of a FAIL.
DOD_LOG ?= $(BIN)/dod.log

##@ Definition of Done
.PHONY: dod
dod: moto kcp-bin ## Run the Definition of Done end to end on this machine; one PASS/FAIL line per item.
	@mkdir -p $(dir $(DOD_LOG))
	@rc=0; APEIRO_REQUIRE_PEERS=1 KCP_BIN="$$(bash hack/peers/build-kcp.sh 2>/dev/null)" $(GO) test -count=1 -v -timeout 15m -run '^TestDoD' ./test/dod/ >$(DOD_LOG) 2>&1 || rc=$$?; \
		grep '^DoD ' $(DOD_LOG) || echo "no Definition-of-Done item reported (see $(DOD_LOG))"; \
		if [ $$rc -ne 0 ]; then echo "make dod: not done (details: $(DOD_LOG))"; fi; exit $$rc
