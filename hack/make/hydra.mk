# Ory Hydra: the real OIDC provider the identity tests (pkg/identity, cmd/webhook) take tokens from.
.PHONY: hydra-bin
hydra-bin: ## Build (or reuse) Ory Hydra from hack/peers/hydra.
	@bash hack/peers/build-hydra.sh >/dev/null

PEERS += hydra-bin
PEER_ENV += HYDRA_BIN="$$(bash hack/peers/build-hydra.sh 2>/dev/null)"
