# moto 5.x (AWS KMS + STS + IAM in one process) for the AWS keystore plugin's tests (internal/testpeers/moto). It
# comes from the machine image (pip); PyPI is not reachable from these machines, so this target only checks for it.
.PHONY: moto
moto: ## Check that moto_server (moto 5.x, AWS KMS/STS/IAM test server) is installed.
	@command -v moto_server >/dev/null 2>&1 && python3 -c 'import moto.server' 2>/dev/null || { \
		echo "moto is missing: the AWS keystore tests need moto_server and python3 -c 'import moto.server' (moto 5.x, installed with pip in the machine image)" >&2; exit 1; }

PEERS += moto
