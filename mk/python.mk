# The Python package (pyproject.toml, python/): the `grokstack` binary inside a wheel, as ruff
# and uv ship theirs, plus the small API in python/grokstack/. Included from the Makefile; uses
# its `build`.
#
#   make wheel          # target/wheels/grokstack-VERSION-py3-none-manylinux_2_34_x86_64.whl
#   make python-test    # a fresh venv with the wheel, then pytest python/tests
#   make torch-test     # to_torch and to_transformer_lens's tests, in .venv-peers

PYTHON ?= python3
MATURIN_VERSION := 1.16.0
WHEEL_VENV ?= .venv-build
PYTEST_VENV ?= .venv-test

.PHONY: wheel python-test torch-test

# The Python of the Rust tests' independent numpy checks (CHECK_VENV, set in the Makefile):
# installed once; the stamp records that the pinned list installed and imports.
$(CHECK_VENV)/.installed: tests/requirements-check.txt
	test -x $(CHECK_VENV)/bin/python || $(PYTHON) -m venv $(CHECK_VENV)
	$(CHECK_VENV)/bin/pip install -r tests/requirements-check.txt
	$(CHECK_VENV)/bin/python -c "import numpy, safetensors"
	touch $@

$(WHEEL_VENV)/.maturin-$(MATURIN_VERSION):
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install maturin==$(MATURIN_VERSION)
	touch $@

# maturin runs `cargo rustc --profile release --bin grokstack` with no flags of its own, which
# is the unit `make build` compiled: it finds everything fresh and only packages the binary.
# `check`: fail, instead of bundling libraries, if the binary outgrows manylinux_2_34.
wheel: build $(WHEEL_VENV)/.maturin-$(MATURIN_VERSION)
	rm -f target/wheels/grokstack-*.whl
	$(WHEEL_VENV)/bin/maturin build --release --auditwheel check --out target/wheels

# A new venv every time, so that the tests see what `pip install` of the wheel gives a user
# (with its bin/ first on PATH, as activating it does, and without GROKSTACK_BIN, the developer's
# override). pytest runs from python/tests so that the source tree's package cannot shadow the
# installed one.
python-test: wheel
	rm -rf $(PYTEST_VENV)
	$(PYTHON) -m venv $(PYTEST_VENV)
	$(PYTEST_VENV)/bin/pip install target/wheels/grokstack-*.whl -r python/tests/requirements.txt
	cd python/tests && env -u GROKSTACK_BIN PATH="$(abspath $(PYTEST_VENV))/bin:$$PATH" python -m pytest -q

# Sweep.to_torch and Sweep.to_transformer_lens (python/tests/test_torch.py) where torch and
# TransformerLens are installed: .venv-peers (mk/peers.mk, about 4 GB), with the source tree's
# package and the release binary. python-test runs the same file without them, which skips it.
torch-test: build $(PEERS_VENV)/.installed-lens
	cd python/tests && PYTHONPATH="$(abspath python)" GROKSTACK_BIN="$(abspath $(BIN))" "$(abspath $(PEERS_PY))" -m pytest -q test_torch.py
