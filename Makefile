# grokstack — the two set-up commands on a fresh machine are `make quick` and `make test`.
CARGO ?= cargo
# Where cargo puts what it builds: CARGO_TARGET_DIR when the user sets it, as cargo does.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/grokstack
# The venv of the tests' independent numpy checks (mk/python.mk).
CHECK_VENV ?= .venv-check
RUNS ?= runs
# cpu, or cuda / cuda:N with a binary built by `make cuda`.
DEVICE ?= cpu

.PHONY: build quick test lint bench lipschitz lipschitz-cpu arch arch-cpu wd wd-cpu tasks-cpu parity-cpu muon muon-cpu pareto pareto-cpu progress-cpu

build:
	$(CARGO) build --release --workspace

# The whole test suite: the code formatted (rustfmt.toml) and clean under clippy, the tests built
# once in release mode (the same build as `make quick`) with a Python that has numpy for the
# independent checks (mk/python.mk), the browser test of report.html (mk/report.mk), the Python
# package's tests against its wheel (mk/python.mk) and the job array on a real one-node Slurm
# (mk/slurm.mk).
test: lint report-test $(CHECK_VENV)/.installed
	GROKSTACK_PYTHON=$(abspath $(CHECK_VENV))/bin/python $(CARGO) test --release --workspace
	$(MAKE) python-test
	$(MAKE) slurm-test

# `cargo fmt` and clippy, as CI runs them (`cargo fmt --all` formats the tree).
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Train sweeps/NAME.toml into $(RUNS)/NAME (replacing an earlier run of the same target),
# then analyze it. $(2) holds extra `grokstack analyze` flags.
define sweep
	rm -rf $(RUNS)/$(1)
	$(BIN) train sweeps/$(1).toml --out $(RUNS)/$(1) --device $(DEVICE)
	$(BIN) analyze $(RUNS)/$(1) $(2)
endef

# A what-if sweep that trains and analyzes on a 2-core CPU in a few minutes.
quick: build
	$(call sweep,quick)

# The blog's grids (sized for a GPU) and their CPU-sized variants.
lipschitz: build
	$(call sweep,lipschitz)
lipschitz-cpu: build
	$(call sweep,lipschitz-cpu)
arch: build
	$(call sweep,arch,--threshold 1.0 --group-by model.hidden$(,)model.input)
arch-cpu: build
	$(call sweep,arch-cpu,--threshold 1.0 --group-by model.hidden$(,)model.input)
wd: build
	$(call sweep,wd)
wd-cpu: build
	$(call sweep,wd-cpu)

# Every task of the literature on the MLP, and the bit tasks, sized for the 2-core CPU.
tasks-cpu: build
	$(call sweep,tasks-cpu,--group-by task.op)
parity-cpu: build
	$(call sweep,parity-cpu,--group-by task.op)

# Tveit et al.'s AdamW-vs-Muon study on the transformer (a GPU job; DEVICE=cuda) and its
# CPU-sized design; the report (analyze --study) is $(RUNS)/muon*/analysis/study.md.
muon: build
	$(call sweep,muon,--study --grok-rule after-train --group-by task.op$(,)train.loss)
muon-cpu: build
	$(call sweep,muon-cpu,--study --grok-rule after-train --group-by task.op$(,)train.loss)

# Both sides of the blog's Pareto plot: tuned AdamW, Muon with Cesista's weight constraints and
# Scion as the blog's fork runs it (a GPU job; DEVICE=cuda), and its CPU-sized slice; the plot
# is $(RUNS)/pareto*/analysis/grok_vs_lipschitz.png, the fronts pareto.csv.
pareto: build
	$(call sweep,pareto)
pareto-cpu: build
	$(call sweep,pareto-cpu)

# Nanda et al.'s progress measures (restricted and excluded loss, key frequencies, embedding
# spectrum) logged on the MLP and the one-layer transformer, trained past their grok epochs.
progress-cpu: build
	$(call sweep,progress-cpu)

# The canonical training step at R = 1, 16, 64 (see BENCHMARKS.md).
bench: build
	mkdir -p bench/results
	$(BIN) bench --runs 1,16,64 --epochs 5 --json bench/results/cpu.json

, := ,

include mk/peers.mk
include mk/cuda.mk
include mk/slurm.mk
include mk/report.mk
include mk/python.mk
