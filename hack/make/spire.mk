# SPIRE server + agent: the real Workload API the SPIFFE identity tests fetch SVIDs from.
.PHONY: spire-bin
spire-bin: ## Build (or reuse) spire-server and spire-agent from hack/peers/spire.
	@bash hack/peers/build-spire.sh >/dev/null

PEERS += spire-bin
PEER_ENV += SPIRE_BIN="$$(bash hack/peers/build-spire.sh 2>/dev/null)"
