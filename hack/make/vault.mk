# HashiCorp Vault (BUSL-1.1, local test peer only): the Vault-API-compatible transit server the openbao keystore
# tests run against, since OpenBao's server module is not served. See docs/keystore-openbao.md.
.PHONY: vault-bin
vault-bin: ## Build (or reuse) the Vault transit test peer from hack/peers/vault (cold: ~15-20 min).
	@bash hack/peers/build-vault.sh >/dev/null

PEERS += vault-bin
PEER_ENV += VAULT_BIN="$$(bash hack/peers/build-vault.sh 2>/dev/null)"
