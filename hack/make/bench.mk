# Side-by-side load (bench/): our webhook in the local stack of `make run` against a bare controller-runtime webhook,
# same machine, same AdmissionReviews, alternating; then the PNG charts for docs/performance.md.
#   make bench-load                                   # 5 s per phase, concurrency 1,16,64,256, two rounds
#   make bench-load BENCH_ARGS="-soak 10m"            # plus a 10-minute soak of our webhook alone (RSS over time)
#   make bench-load BENCH_ARGS="-pprof .dev/bench/pprof"   # CPU, mutex and block profiles at 64 concurrent
BENCH_OUT ?= .dev/bench
BENCH_ARGS ?=
BENCH_CHARTS_PREFIX ?= bench-load

##@ Benchmarks
.PHONY: bench-load
bench-load: build kube-bin ## Side-by-side load: our webhook (make run stack) vs a bare controller-runtime webhook; charts into docs/img.
	$(GO) build -o $(BIN)/bench-bare ./bench/bare
	$(GO) build -o $(BIN)/bench-load ./bench/load
	@mkdir -p $(BENCH_OUT)
	KUBE_BIN="$$(bash hack/peers/build-kube.sh 2>/dev/null)" $(BIN)/bench-load -webhook-bin $(BIN)/webhook -bare-bin $(BIN)/bench-bare \
		-root "$(CURDIR)" -out $(BENCH_OUT) $(BENCH_ARGS) | tee $(BENCH_OUT)/results.md
	cd bench/charts && GOFLAGS=-mod=readonly $(GO) run . -in "$(abspath $(BENCH_OUT))/results.json" -out "$(CURDIR)/docs/img" -prefix $(BENCH_CHARTS_PREFIX)
