#!/usr/bin/env bash
# The GPU checks of issue 17 on the device machine, in phases (see bench/gpu/README.md):
#
#   bench/gpu/check.sh agreement bench   # GPU-vs-CPU agreement, `grokstack bench --device cuda`
#   bench/gpu/check.sh bench grid        # ... and the blog's full Lipschitz grid, trained, analyzed
#
#   agreement  tests/cuda.rs: small stacks trained on the GPU and the CPU side by side
#   bench      the canonical MLP step (bf16, f32) at R = 64 ... 4,096, the transformer's at 16, 64
#   grid       sweeps/lipschitz.toml (8,960 runs, stop = grok) trained and analyzed, timed
#
# Run from the repository root with the bundle of `make gpu-bundle` in .gpu/ (carried). Writes
# under $OUT (at most 8 files come back): summary.md (the device, every step's time and exit
# status, the tables), agreement.log, bench.json and bench-logs.txt, plan.txt and train.log,
# lipschitz-analysis.tar.gz. Every step is bounded by `timeout` and by the call's $DEADLINE
# (seconds since the start; $BENCH_UNTIL for the bench phase), so one that hangs or crawls
# leaves the others their time; a failed step is reported and the script goes on.
set -u
[ $# -gt 0 ] || { echo "usage: check.sh PHASE... (agreement, bench, grid)" >&2; exit 2; }
OUT=${OUT:-/tmp/grokstack-gpu}
mkdir -p "$OUT"
summary=$OUT/summary.md
bin=/tmp/grokstack-gpu-bin
mkdir -p $bin

# The bundle: the stripped CUDA executables, xz-compressed (python's lzma: no xz needed).
for name in grokstack cuda-test; do
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        ".gpu/$name.xz" "$bin/$name" || { echo "cannot unpack .gpu/$name.xz" | tee -a "$summary"; exit 1; }
    chmod +x "$bin/$name"
done

# The CUDA 13 libraries the binary links: PyTorch's cu130 wheels on that machine.
export LD_LIBRARY_PATH=$(python3 - <<'EOF'
import glob, os, sys
dirs = []
for lib in ["libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13"]:
    for root in sys.path + ["/usr/local/cuda/lib64"]:
        hits = glob.glob(os.path.join(root, "nvidia", "**", lib), recursive=True) + glob.glob(os.path.join(root, lib))
        if hits:
            d = os.path.dirname(hits[0])
            if d not in dirs:
                dirs.append(d)
            break
print(":".join(dirs))
EOF
)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

DEADLINE=${DEADLINE:-330}

# `step NAME SECONDS CMD...`: run CMD bounded, its output in $OUT/NAME.log, its time and exit
# status in the summary.
step() {
    local name=$1 limit=$2
    shift 2
    # The call ends by $DEADLINE seconds (bash's SECONDS: since the script started).
    if (( limit > DEADLINE - SECONDS )); then limit=$(( DEADLINE - SECONDS )); fi
    if (( limit < 5 )); then
        echo "- \`$name\`: skipped, the deadline ($DEADLINE s) has passed" | tee -a "$summary"
        return 124
    fi
    local start=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local took=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    echo "- \`$name\`: exit $rc in $took s (limit $limit s)" | tee -a "$summary"
    return $rc
}

# The device, once per call.
{
    echo "# GPU check: $* ($(date -u +%FT%TZ))"
    echo
    echo '```'
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd $bin/grokstack | grep -E 'cuda|cublas|curand|nvrtc|not found'
    echo "$(nproc) CPU cores"
    echo '```'
    echo
} > "$summary" 2>&1
: > /tmp/gpu-memory.txt

# Peak GPU memory while a step runs, sampled by nvidia-smi every 100 ms:
# `peak_memory NAME SECONDS CMD...` runs `step` and records "NAME MiB" in /tmp/gpu-memory.txt.
peak_memory() {
    local name=$1
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "/tmp/$name.mem" 2>/dev/null &
    local sampler=$!
    step "$@"
    local rc=$?
    kill $sampler 2>/dev/null
    wait $sampler 2>/dev/null
    echo "$name $(sort -n "/tmp/$name.mem" | tail -n 1)" >> /tmp/gpu-memory.txt
    return $rc
}

# The GPU against the CPU on small stacks (tests/cuda.rs); its table goes into the summary.
agreement() {
    step agreement 240 $bin/cuda-test --nocapture --test-threads 1
    grep '^|' "$OUT/agreement.log" >> "$summary"
}

# The canonical MLP step (bf16, f32) and the canonical transformer step (f32), one stack size
# per process so that each peak of GPU memory is its own; the largest sizes last, so that a
# deadline ($BENCH_UNTIL, else $DEADLINE) cuts those. One JSON and one table come back.
bench() {
    local until=${BENCH_UNTIL:-$DEADLINE}
    rm -f /tmp/bench-*.json
    mlp() { peak_memory "bench-mlp-$1-$2" $(( until - SECONDS )) $bin/grokstack bench --device cuda --runs $2 --epochs 5 --set train.dtype=$1 --json "/tmp/bench-mlp-$1-$2.json"; }
    transformer() { peak_memory "bench-transformer-f32-$1" $(( until - SECONDS )) $bin/grokstack bench --device cuda --runs $1 --epochs 3 --set model.kind=transformer --json "/tmp/bench-transformer-f32-$1.json"; }
    for runs in ${BENCH_MLP_RUNS:-64 256 1024 4096}; do mlp bf16 $runs; mlp f32 $runs; done
    for runs in ${BENCH_TRANSFORMER_RUNS:-16 64}; do transformer $runs; done
    python3 - "$OUT" <<'EOF' | tee -a "$summary"
import glob, json, os, sys
out = sys.argv[1]
peaks = dict(line.split() for line in open("/tmp/gpu-memory.txt") if len(line.split()) == 2)
rows = []
for path in sorted(glob.glob("/tmp/bench-*.json")):
    name = os.path.basename(path)[:-5]
    doc = json.load(open(path))
    for r in doc["results"]:
        r["model"] = name.split("-")[1]
        r["peak_gpu_mib"] = float(peaks.get(name, "nan"))
        r["gemm"] = doc.get("gemm")
        rows.append(r)
json.dump(rows, open(os.path.join(out, "bench.json"), "w"), indent=1)
print("\n| model | dtype | R | median epoch (s) | run-epochs/s | TFLOP/s | reference GEMM TFLOP/s | share of it | share of 989 TFLOP/s (dense bf16) | peak GPU memory (MiB) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in sorted(rows, key=lambda r: (r["model"], r["dtype"], r["runs"])):
    tflops = r["effective_gflops"] / 1e3
    gemm = r["gemm"]["gflops"] / 1e3 if r["gemm"] else float("nan")
    kind = r["gemm"]["dtype"] if r["gemm"] else "-"
    print(f"| {r['model']} | {r['dtype']} | {r['runs']} | {r['median_epoch_seconds']:.4f} | {r['run_epochs_per_second']:.0f} | "
          f"{tflops:.1f} | {gemm:.0f} ({kind}) | {tflops / gemm:.1%} | {tflops / 989:.1%} | {r['peak_gpu_mib']:.0f} |")
EOF
    for log in "$OUT"/bench-*.log; do echo "== $log"; cat "$log"; done > "$OUT/bench-logs.txt" 2>/dev/null
    rm -f "$OUT"/bench-*.log
}

# The blog's Lipschitz grid as `make lipschitz` trains it (no checkpoints: the time measured is
# the training's), then its analysis; the tables and the per-run table come back in one archive
# (metrics.parquet, every run's every epoch, is too large to).
grid() {
    mkdir -p /tmp/runs
    $bin/grokstack train sweeps/lipschitz.toml --device cuda --dry-run --set train.checkpoint_every=0 > "$OUT/plan.txt" 2>&1
    peak_memory train $(( DEADLINE - SECONDS - 40 )) $bin/grokstack train sweeps/lipschitz.toml --out /tmp/runs/lipschitz \
        --device cuda --set train.checkpoint_every=0
    grep '^\[' "$OUT/train.log" | tail -n 8 >> "$summary"
    step analyze 40 $bin/grokstack analyze /tmp/runs/lipschitz
    tail -n 5 "$OUT/analyze.log" >> "$summary"
    if [ -d /tmp/runs/lipschitz/analysis ]; then
        (cd /tmp/runs/lipschitz && tar czf "$OUT/lipschitz-analysis.tar.gz" --exclude='*.png' --exclude='*.svg' \
            analysis runs.parquet progress.json plan.json sweep.toml)
    fi
    rm -f "$OUT/analyze.log"
}

for phase in "$@"; do
    case $phase in
    agreement | bench | grid) $phase ;;
    *) echo "unknown phase $phase (agreement, bench, grid)" | tee -a "$summary" ;;
    esac
done

# Peak memory and the end of every failed log, in the summary (at most 8 files come back).
{
    echo
    echo "Peak GPU memory (MiB, nvidia-smi every 100 ms):"
    cat /tmp/gpu-memory.txt
    for log in "$OUT"/*.log; do
        if [ -s "$log" ] && grep -qiE 'error|panicked' "$log"; then
            echo "== the end of $log"
            tail -n 15 "$log"
        fi
    done
} >> "$summary"
cat "$summary"
