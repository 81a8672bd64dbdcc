# cert-manager v1.21.2 controllers (hack/peers/certmanager) for the cert-manager certificate issuer and its tests.
.PHONY: certmanager-bin
certmanager-bin: ## Build (or reuse) the cert-manager controller peer and its CRDs from hack/peers/certmanager.
	@bash hack/peers/build-certmanager.sh >/dev/null

PEERS += certmanager-bin
PEER_ENV += CERTMANAGER_BIN="$$(bash hack/peers/build-certmanager.sh 2>/dev/null)"
