# `make run KEYSTORES=openbao,thales` also starts the OpenBao-compatible transit peer (Vault, BUSL-1.1, local test
# peer only; built once by hack/peers/build-vault.sh) and/or a SoftHSM2 token (Debian softhsm2) next to the dev stack,
# creates the keys examples/run-openbao.yaml and examples/run-thales.yaml name, and restarts the webhook with the
# profile's keystore environment (hack/devstack/keystores.go). RUN_KEYSTORE_ARGS is what `make run` appends to its
# devstack command when KEYSTORES is set.
KEYSTORES ?=
RUN_KEYSTORE_ARGS = $(if $(strip $(KEYSTORES)),--keystores "$(KEYSTORES)" $(if $(findstring openbao,$(KEYSTORES)),--vault-bin "$$(bash hack/peers/build-vault.sh)") $(if $(findstring thales,$(KEYSTORES)),$$(bash hack/peers/apt.sh softhsm2 >&2)))
