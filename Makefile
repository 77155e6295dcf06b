# grokstack — the two set-up commands on a fresh machine are `make quick` and `make test`.
CARGO ?= cargo
BIN := target/release/grokstack
RUNS ?= runs

.PHONY: build quick test bench clean-runs

build:
	$(CARGO) build --release --workspace

$(BIN): build

# A what-if sweep that trains and analyzes on a 2-core CPU in a few minutes.
# It writes $(RUNS)/quick, replacing the previous quick run.
quick: build
	rm -rf $(RUNS)/quick
	$(BIN) train sweeps/quick.toml --out $(RUNS)/quick
	$(BIN) analyze $(RUNS)/quick

# The whole test suite, built once in release mode (the same build as `make quick`).
test:
	$(CARGO) test --release --workspace

# The canonical training step at R = 1, 16, 64 (see BENCHMARKS.md).
bench: build
	mkdir -p bench/results
	$(BIN) bench --runs 1,16,64 --epochs 5 --json bench/results/cpu.json

include mk/peers.mk
