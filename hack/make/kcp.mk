# kcp (the Platform Mesh control plane), built from the pinned tools module hack/peers/kcp. Tests under test/kcp,
# the SIS resource-graph contract suite against kcp and `make dod` read KCP_BIN (the directory holding `kcp`).
PEERS += kcp-bin
PEER_ENV += KCP_BIN="$$(bash hack/peers/build-kcp.sh 2>/dev/null)"

.PHONY: kcp-bin
kcp-bin: ## Build (or reuse) the kcp server from hack/peers/kcp.
	@bash hack/peers/build-kcp.sh >/dev/null

.PHONY: run-kcp
run-kcp: build plugins ## Like `make run`, on kcp: a workspace tree, the mesh configuration and the webhook registered in kcp.
	@KCP_BIN="$$(bash hack/peers/build-kcp.sh)" && $(GO) build -o $(BIN)/kcpstack ./hack/kcpstack && \
		exec $(BIN)/kcpstack --kcp-bin "$$KCP_BIN" --webhook-bin $(BIN)/webhook --root "$(CURDIR)"

KCP_SCALE_WORKSPACES ?= 1000
KCP_SCALE_BUDGET ?= 1h

.PHONY: kcp-scale
kcp-scale: kcp-bin ## Measure the kcp watch at scale (KCP_SCALE_WORKSPACES, KCP_SCALE_BUDGET; long: runs at nice 10).
	@KCP_BIN="$$(bash hack/peers/build-kcp.sh 2>/dev/null)" KCP_SCALE_WORKSPACES=$(KCP_SCALE_WORKSPACES) KCP_SCALE_BUDGET=$(KCP_SCALE_BUDGET) \
		nice -n 10 $(GO) test -run '^$$' -bench KCPWatchScale -benchtime 1x -timeout 4h ./test/kcp/
