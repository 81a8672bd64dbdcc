# Debian's prometheus-alertmanager (0.25) for the alert handler's and the Alertmanager notification plugin's tests
# (internal/testpeers/alertmanager starts it on free ports with gossip disabled). Installed through apt; about 17 s
# and 11 MB on a cold machine, a no-op afterwards.
.PHONY: alertmanager
alertmanager: ## Install (or check) Debian's prometheus-alertmanager for the alert tests.
	@bash hack/peers/apt.sh prometheus-alertmanager

PEERS += alertmanager
