# The CUDA build (issue 6): `make cuda` builds target/release/grokstack with candle's CUDA
# backend on a machine with no GPU and no system CUDA (docs/CUDA.md). Not part of `make test`
# or CI: compiling candle-kernels' CUDA kernels takes 15-20 minutes on 2 cores.
# Included from the Makefile; uses its $(CARGO) and $(BIN).
#
#   make cuda                        # for Hopper (sm_90a: the device machines' H100/H200)
#   make cuda CUDA_COMPUTE_CAP=80    # for another GPU generation
#   make cuda-toolkit                # only the venv and the link directory, no cargo

CUDA_VENV ?= .venv-cuda
CUDA_PY := $(CUDA_VENV)/bin/python
CUDA_COMPUTE_CAP ?= 90
CUDA_LINK_DIR ?= $(TARGET_DIR)/cuda-link
CUDAFORGE_THREADS ?= $(shell nproc)
# A copy of the CUDA binary that a later CPU build (make build/quick/test relinks $(BIN)) leaves alone.
CUDA_BIN ?= $(TARGET_DIR)/release/grokstack-cuda
# The toolkit as the wheels lay it out: nvidia/cu13/{bin,include,lib,nvvm} in the venv's
# site-packages. Recursive (=), so it is looked up only after the venv is installed.
CUDA_TOOLKIT = $(abspath $(firstword $(wildcard $(CUDA_VENV)/lib/python3*/site-packages/nvidia/cu13)))
# The libraries candle 0.11 links (cudarc's dynamic-linking, candle-kernels' cudart), as the
# wheels name them; the link directory gives each its unversioned name.
CUDA_LINK_LIBS := libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13

# The CUDA build's environment. Every variable here is read by a build script only (cudarc,
# candle-kernels through cudaforge), so the CPU build's artifacts (polars, ...) stay fresh.
# - PATH/NVCC: cudaforge runs the first nvcc it finds (NVCC, then PATH) and takes the headers
#   from the include/ beside its bin/; cudarc reads the CUDA version from `nvcc --version`.
# - CUDA_HOME/CUDA_PATH/CUDA_ROOT: cudarc adds <root>/lib etc. of every one that is set to the
#   link search path; all three name the wheels' toolkit so that no other CUDA slips in.
# - CUDA_COMPUTE_CAP: cudaforge's target (90 -> sm_90a); without it, it asks nvidia-smi.
# - CUDAFORGE_THREADS: nvcc processes at once (cudaforge's default is half the cores: one here).
# - LIBRARY_PATH: where cc (the linker rustc runs) looks for -lcuda, -lcudart, ...: the link
#   directory. Not RUSTFLAGS="-L ...": a change of RUSTFLAGS rebuilds every crate.
CUDA_ENV = env -u CUDA_TOOLKIT_ROOT_DIR -u CUDNN_LIB -u CUDARC_CUDA_VERSION \
	PATH="$(CUDA_TOOLKIT)/bin:$$PATH" NVCC="$(CUDA_TOOLKIT)/bin/nvcc" \
	CUDA_HOME="$(CUDA_TOOLKIT)" CUDA_PATH="$(CUDA_TOOLKIT)" CUDA_ROOT="$(CUDA_TOOLKIT)" \
	CUDA_COMPUTE_CAP=$(CUDA_COMPUTE_CAP) CUDAFORGE_THREADS=$(CUDAFORGE_THREADS) \
	LIBRARY_PATH="$(abspath $(CUDA_LINK_DIR))$${LIBRARY_PATH:+:$$LIBRARY_PATH}"

.PHONY: cuda cuda-toolkit

# The venv is installed once; the stamp records that the pinned list installed and nvcc runs.
# --no-deps: the list in mk/cuda-requirements.txt is complete (the wheels depend on nothing
# that the build needs).
$(CUDA_VENV)/.installed: mk/cuda-requirements.txt
	test -x $(CUDA_PY) || python3 -m venv $(CUDA_VENV)
	$(CUDA_PY) -m pip install --no-deps -r mk/cuda-requirements.txt
	$(CUDA_VENV)/lib/python3*/site-packages/nvidia/cu13/bin/nvcc --version | tail -n 2
	touch $@

# The link directory: links to the wheels' libraries under their unversioned names (for -l)
# and their sonames (ld resolves libcublas.so's own DT_NEEDED libcublasLt.so.13 through its
# RUNPATH $ORIGIN, i.e. in this directory), and a stub libcuda.so (soname libcuda.so.1)
# generated from the driver symbols the locked cudarc declares. No libcuda.so.1 here, so this
# directory on LD_LIBRARY_PATH never hides the driver's.
$(CUDA_LINK_DIR)/.done: $(CUDA_VENV)/.installed mk/cuda-driver-stub.py Cargo.lock
	test -d "$(CUDA_TOOLKIT)"
	rm -rf $(CUDA_LINK_DIR)
	mkdir -p $(CUDA_LINK_DIR)
	for f in $(CUDA_LINK_LIBS); do \
		test -e "$(CUDA_TOOLKIT)/lib/$$f" || { echo "missing $(CUDA_TOOLKIT)/lib/$$f" >&2; exit 1; }; \
		ln -s "$(CUDA_TOOLKIT)/lib/$$f" "$(CUDA_LINK_DIR)/$$f"; \
		ln -s "$(CUDA_TOOLKIT)/lib/$$f" "$(CUDA_LINK_DIR)/$${f%%.so.*}.so"; \
	done
	CARGO="$(CARGO)" python3 mk/cuda-driver-stub.py > $(CUDA_LINK_DIR)/libcuda-stub.c
	cc -shared -fPIC -O2 -Wl,-soname,libcuda.so.1 -o $(CUDA_LINK_DIR)/libcuda.so $(CUDA_LINK_DIR)/libcuda-stub.c
	touch $@

cuda-toolkit: $(CUDA_VENV)/.installed $(CUDA_LINK_DIR)/.done
	@echo "CUDA toolkit: $(CUDA_TOOLKIT)"
	@echo "link directory: $(abspath $(CUDA_LINK_DIR))"

# The same flags as the CPU build's test build (`cargo test --release --workspace`) plus the
# feature, so that the CPU build's artifacts are reused: only cudarc, candle-kernels,
# candle-core and grokstack are compiled anew.
cuda: $(CUDA_VENV)/.installed $(CUDA_LINK_DIR)/.done
	$(CUDA_ENV) $(CARGO) build --release --workspace --tests --features grokstack/cuda
	readelf -d $(BIN) | grep -q 'libcuda\.so\.1' || { echo "$(BIN) does not link libcuda: not a CUDA build" >&2; exit 1; }
	cp $(BIN) $(CUDA_BIN)
	@echo "built $(BIN) with CUDA, CUDA_COMPUTE_CAP=$(CUDA_COMPUTE_CAP) (copy: $(CUDA_BIN)); it loads:"
	@readelf -d $(BIN) | sed -n 's/.*(NEEDED).*\[\(.*\)\]/  \1/p'

# The device check's bundle (issue 17, bench/gpu/check.sh): the CUDA binary and the GPU-vs-CPU
# test binary (tests/cuda.rs), stripped and xz-compressed into $(GPU_BUNDLE)/ (git-ignored), so
# that both fit in what one call to the device machine carries (64 MiB). Builds only those two,
# with the flags of `make cuda`, so its compiled crates are reused.
GPU_BUNDLE ?= .gpu
.PHONY: gpu-bundle
gpu-bundle: $(CUDA_VENV)/.installed $(CUDA_LINK_DIR)/.done
	$(CUDA_ENV) $(CARGO) build --release --workspace --features grokstack/cuda --bin grokstack --test cuda \
		--message-format=json-render-diagnostics > $(TARGET_DIR)/gpu-bundle.jsonl
	mkdir -p $(GPU_BUNDLE)
	python3 mk/gpu-bundle.py $(TARGET_DIR)/gpu-bundle.jsonl $(GPU_BUNDLE)
	ls -la $(GPU_BUNDLE)
