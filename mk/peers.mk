# The PyTorch peer benchmark (issue 4): grokstack and PyTorch on the same canonical
# stacked epoch, same R, epochs and thread count; appends the comparison to BENCHMARKS.md.
# Included from the Makefile; uses its $(BIN).
#
#   make bench-peers                       # R = 1,16,64, 5 epochs, all cores
#   make bench-peers PEERS_THREADS=2
#   make bench-peers-transformer           # the transformer epoch's PyTorch peer alone
#   make peers-venv                        # .venv-peers: torch, and TransformerLens for make torch-test

PEERS_VENV ?= .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS_RUNS ?= 1,16,64
PEERS_EPOCHS ?= 5
# grokstack uses rayon's default (every core); torch gets the same number of threads.
PEERS_THREADS ?= $(shell nproc)
PEERS_RESULTS ?= bench/results
PEERS_GROK_CMD = $(BIN) bench --runs $(PEERS_RUNS) --epochs $(PEERS_EPOCHS) --json $(PEERS_RESULTS)/grokstack-cpu.json
PEERS_TORCH_CMD = $(PEERS_PY) bench/peers/torch_stacked.py --runs $(PEERS_RUNS) --epochs $(PEERS_EPOCHS) --threads $(PEERS_THREADS) --json $(PEERS_RESULTS)/torch-cpu.json
# The canonical transformer epoch's peer (bench/peers/torch_transformer.py); flags of its own
# go in PEERS_TRANSFORMER_FLAGS, e.g. "--grad autograd".
PEERS_TRANSFORMER_FLAGS ?=
PEERS_TORCH_TRANSFORMER_CMD = $(PEERS_PY) bench/peers/torch_transformer.py --runs $(PEERS_RUNS) --epochs $(PEERS_EPOCHS) --threads $(PEERS_THREADS) $(PEERS_TRANSFORMER_FLAGS) --json $(PEERS_RESULTS)/torch-transformer-cpu.json

.PHONY: bench-peers bench-peers-transformer peers-venv

# The venv is built once; the stamp records that the pinned list installed and imports.
# --no-deps: see bench/peers/requirements-cpu.txt for why the dependency list is explicit.
$(PEERS_VENV)/.installed: bench/peers/requirements-cpu.txt
	test -x $(PEERS_PY) || python3 -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --no-deps -r bench/peers/requirements-cpu.txt
	$(PEERS_PY) -W ignore -c "import torch; torch.ones(2, 2) @ torch.ones(2, 2); print('torch', torch.__version__, 'imports on CPU')"
	touch $@

# TransformerLens and what the Python package's torch tests and examples/transformer_lens.ipynb
# need, on top of torch (bench/peers/requirements-lens.txt says why the list is explicit).
$(PEERS_VENV)/.installed-lens: $(PEERS_VENV)/.installed bench/peers/requirements-lens.txt
	$(PEERS_PY) -m pip install --no-deps -r bench/peers/requirements-lens.txt
	$(PEERS_PY) -W ignore -c "from transformer_lens import HookedTransformer; import polars, matplotlib, pytest; print('transformer_lens imports')"
	touch $@

peers-venv: $(PEERS_VENV)/.installed $(PEERS_VENV)/.installed-lens

bench-peers: build $(PEERS_VENV)/.installed
	mkdir -p $(PEERS_RESULTS)
	RAYON_NUM_THREADS=$(PEERS_THREADS) $(PEERS_GROK_CMD)
	$(PEERS_TORCH_CMD)
	$(PEERS_PY) bench/peers/compare.py $(PEERS_RESULTS)/grokstack-cpu.json $(PEERS_RESULTS)/torch-cpu.json BENCHMARKS.md \
		--command "RAYON_NUM_THREADS=$(PEERS_THREADS) $(PEERS_GROK_CMD)" --command "$(PEERS_TORCH_CMD)"

bench-peers-transformer: $(PEERS_VENV)/.installed
	mkdir -p $(PEERS_RESULTS)
	$(PEERS_TORCH_TRANSFORMER_CMD)
