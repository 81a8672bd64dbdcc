# SoftHSM2 (Debian package) is the real PKCS#11 token of the Thales keystore tests (internal/testpeers/softhsm).
.PHONY: softhsm
softhsm: ## Install SoftHSM2 (Debian softhsm2), the PKCS#11 token of the Thales keystore tests.
	bash hack/peers/apt.sh softhsm2

PEERS += softhsm
