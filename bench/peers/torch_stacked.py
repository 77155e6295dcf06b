#!/usr/bin/env python3
"""PyTorch peer of `grokstack bench`: the same canonical stacked epoch, timed the same way.

One epoch = one full-batch train step (forward, backward, AdamW update) + a forward
evaluation of the test set (loss and accuracy), for R stacked runs at once.

Model per run (p = 113): Embedding(113, 113) shared by both operands, concatenated to
226 → Linear(226, 200) → GELU (erf) → Linear(200, 200) → GELU → Linear(200, 113), no
biases. Every weight is stacked as [R, fan_in, fan_out]; every layer is one torch.bmm
over the R runs. Loss: softmax cross-entropy, mean over each run's rows, summed over runs.
AdamW is torch.optim.AdamW (fused CPU kernel) over the stacked tensors.

The first layer is computed the way grokstack computes it: with an embedding input,
concat(E[a], E[b])·W0 = (E·W0_a)[a] + (E·W0_b)[b], so we form one small [R, 2p, 200]
table per run and gather-and-sum two rows per example (F.embedding_bag) instead of
multiplying every row by W0. `--first-layer matmul` does the textbook concat + bmm.

The backward pass is written by hand by default (`--grad autograd` uses torch.autograd):
it reuses the logits' buffer for the softmax gradient and does the first layer's
scatter-add as one sparse-CSR matmul, which measured faster here than both
index_add_ and embedding_bag's autograd backward.

Usage:
  python bench/peers/torch_stacked.py --runs 1,16,64 --epochs 5 --threads 2 --json OUT.json

Each R runs in a fresh child process (`--single R`) so that its peak RSS is its own.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

# The PyPI torch wheel warns at import when numpy is absent; nothing here needs numpy.
warnings.filterwarnings("ignore", message=".*NumPy.*")
warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

P = 113
EMBED = 113
HIDDEN = 200
TRAIN_FRACTION = 0.4
LR, WEIGHT_DECAY, BETAS, EPS = 0.01, 4.0, (0.9, 0.99), 1e-25
# The FLOP convention of grokstack's bench: 2·Σ(fan_in·fan_out)·(3·N_train + N_test).
LINEAR_WEIGHTS = 2 * EMBED * HIDDEN + HIDDEN * HIDDEN + HIDDEN * P
N_PAIRS = P * P
N_TRAIN = int(TRAIN_FRACTION * N_PAIRS)  # 5,107
N_TEST = N_PAIRS - N_TRAIN  # 7,662
FLOPS_PER_RUN_EPOCH = 2 * LINEAR_WEIGHTS * (3 * N_TRAIN + N_TEST)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="1,16,64", help="comma-separated stack sizes R")
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per R (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="bf16 = pure bf16, as grokstack")
    ap.add_argument("--grad", choices=["manual", "autograd"], default="manual")
    ap.add_argument("--first-layer", choices=["gather", "matmul"], default="gather")
    ap.add_argument("--compile", action="store_true", help="torch.compile the test forward (optional)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--single", type=int, help=argparse.SUPPRESS)  # internal: one R, JSON on stdout
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------
# The stack: data, parameters, optimizer.
# ---------------------------------------------------------------------------------------

class Batch:
    """The examples of all R runs, as row indices into flat per-run tables."""

    def __init__(self, idx, with_scatter):
        runs, n = idx.shape
        a, b = idx // P, idx % P  # pair index i encodes (a, b) = (i // p, i % p)
        run = torch.arange(runs).unsqueeze(1)
        self.labels = (a + b) % P  # [R, N]; op = add
        # Rows of the flat embedding [R·p, d], for the textbook first layer.
        self.ea, self.eb = (a + run * P).reshape(-1), (b + run * P).reshape(-1)
        # Rows of the flat first-layer table [R·2p, H]: operand a at r·2p + a, b at r·2p + p + b.
        ta, tb = (a + run * 2 * P).reshape(-1), (b + P + run * 2 * P).reshape(-1)
        self.bags = torch.stack([ta, tb], dim=1)  # [R·N, 2]: each example sums two table rows
        self.scatter = None
        if with_scatter:
            # d(table) = S · dz0 with S[t, j] = 1 where example j reads table row t: a CSR
            # matrix [R·2p, R·N] built once, since the split never changes.
            cols = torch.arange(runs * n).repeat(2)
            coo = torch.sparse_coo_tensor(torch.stack([torch.cat([ta, tb]), cols]),
                                          torch.ones(2 * runs * n), (runs * 2 * P, runs * n),
                                          check_invariants=True)
            self.scatter = coo.coalesce().to_sparse_csr()


def make_stack(runs, dtype):
    """Parameters, optimizer and train/test batches of a stack of `runs` runs."""
    gen = torch.Generator().manual_seed(0)
    # A different random split per run, as grokstack draws one per seed.
    perms = torch.stack([torch.randperm(N_PAIRS, generator=torch.Generator().manual_seed(r))
                         for r in range(runs)])  # [R, 12769]

    def uniform(fan_in, fan_out):  # PyTorch's Linear init U(±1/√fan_in), stored [R, in, out]
        return (torch.rand(runs, fan_in, fan_out, generator=gen) * 2 - 1) * fan_in ** -0.5

    params = [
        torch.randn(runs, P, EMBED, generator=gen),  # embedding, N(0, 1)
        uniform(2 * EMBED, HIDDEN),
        uniform(HIDDEN, HIDDEN),
        uniform(HIDDEN, P),
    ]
    params = [t.to(dtype).requires_grad_() for t in params]
    # Weight decay on the Linear weights only (grokstack's default all_reg = false).
    groups = [{"params": params[:1], "weight_decay": 0.0},
              {"params": params[1:], "weight_decay": WEIGHT_DECAY}]
    try:  # the fused CPU AdamW exists in torch >= 2.4; foreach is the fallback
        opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, foreach=True)
    train = Batch(perms[:, :N_TRAIN], with_scatter=dtype == torch.float32)  # MKL CSR: f32 only
    return params, opt, train, Batch(perms[:, N_TRAIN:], with_scatter=False)


# ---------------------------------------------------------------------------------------
# Forward, loss, backward.
# ---------------------------------------------------------------------------------------

def forward(params, batch, mode):
    """Logits [R, N, p] and the activations the backward pass needs."""
    E, W0, W1, W2 = params
    runs = E.shape[0]
    if mode == "matmul":
        flat = E.reshape(runs * P, EMBED)
        x = torch.cat([flat[batch.ea], flat[batch.eb]], dim=1).view(runs, -1, 2 * EMBED)
        z0 = torch.bmm(x, W0)
    else:
        table = torch.cat([torch.bmm(E, W0[:, :EMBED]), torch.bmm(E, W0[:, EMBED:])], dim=1)  # [R, 2p, H]
        z0 = F.embedding_bag(batch.bags, table.reshape(-1, HIDDEN), mode="sum").view(runs, -1, HIDDEN)
    a0 = F.gelu(z0)
    z1 = torch.bmm(a0, W1)
    a1 = F.gelu(z1)
    return torch.bmm(a1, W2), (z0, a0, z1, a1)


def loss_and_accuracy(logits, labels):
    """Per-run mean cross-entropy and accuracy, each [R], and the log-sum-exp [R, N, 1]."""
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    picked = logits.gather(-1, labels.unsqueeze(-1))
    loss = (lse - picked).float().mean((1, 2))
    acc = (logits.argmax(-1) == labels).float().mean(1)
    return loss, acc, lse


@torch.no_grad()
def manual_step(params, batch, mode):
    """Forward + hand-written backward; fills every p.grad. Returns train loss, accuracy."""
    E, W0, W1, W2 = params
    runs = E.shape[0]
    logits, (z0, a0, z1, a1) = forward(params, batch, mode)
    loss, acc, lse = loss_and_accuracy(logits, batch.labels)
    # d(Σ_r mean_r CE)/dlogits = (softmax − onehot)/N, built in the logits' own buffer.
    dlogits = logits.sub_(lse).exp_()
    dlogits.scatter_add_(-1, batch.labels.unsqueeze(-1), torch.full_like(lse, -1.0))
    dlogits.mul_(1.0 / logits.shape[1])
    W2.grad = torch.bmm(a1.transpose(1, 2), dlogits)
    dz1 = torch.ops.aten.gelu_backward(torch.bmm(dlogits, W2.transpose(1, 2)), z1)
    W1.grad = torch.bmm(a0.transpose(1, 2), dz1)
    dz0 = torch.ops.aten.gelu_backward(torch.bmm(dz1, W1.transpose(1, 2)), z0)
    if mode == "matmul":
        flat = E.reshape(runs * P, EMBED)
        x = torch.cat([flat[batch.ea], flat[batch.eb]], dim=1).view(runs, -1, 2 * EMBED)
        W0.grad = torch.bmm(x.transpose(1, 2), dz0)
        dx = torch.bmm(dz0, W0.transpose(1, 2)).reshape(-1, 2 * EMBED)
        dE = torch.zeros(runs * P, EMBED, dtype=E.dtype)
        E.grad = dE.index_add_(0, batch.ea, dx[:, :EMBED]).index_add_(0, batch.eb, dx[:, EMBED:]).view(runs, P, EMBED)
        return loss, acc
    # The table's gradient is a scatter-add of dz0 rows; then chain through table = E·W0_{a|b}.
    dz0 = dz0.reshape(-1, HIDDEN)
    if batch.scatter is not None:
        dtable = batch.scatter @ dz0
    else:
        dtable = torch.zeros(runs * 2 * P, HIDDEN, dtype=dz0.dtype)
        dtable.index_add_(0, batch.bags[:, 0], dz0).index_add_(0, batch.bags[:, 1], dz0)
    dtable = dtable.view(runs, 2 * P, HIDDEN)
    dta, dtb = dtable[:, :P], dtable[:, P:]
    Et = E.transpose(1, 2)
    W0.grad = torch.cat([torch.bmm(Et, dta), torch.bmm(Et, dtb)], dim=1)
    E.grad = torch.bmm(dta, W0[:, :EMBED].transpose(1, 2)) + torch.bmm(dtb, W0[:, EMBED:].transpose(1, 2))
    return loss, acc


def autograd_step(params, batch, mode):
    for p in params:
        p.grad = None
    logits, _ = forward(params, batch, mode)
    # Σ over runs of each run's mean loss = the CE sum over all rows / N (every run has N rows).
    total = F.cross_entropy(logits.reshape(-1, P), batch.labels.reshape(-1), reduction="sum") / logits.shape[1]
    total.backward()
    with torch.no_grad():
        return loss_and_accuracy(logits.detach(), batch.labels)[:2]


# ---------------------------------------------------------------------------------------
# The child: one stack size, timed, one JSON line on stdout.
# ---------------------------------------------------------------------------------------

def run_single(args):
    torch.set_num_threads(args.threads)
    runs = args.single
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    params, opt, train, test = make_stack(runs, dtype)
    step = manual_step if args.grad == "manual" else autograd_step
    fwd = torch.compile(forward) if args.compile else forward

    def epoch():
        step(params, train, args.first_layer)
        opt.step()
        with torch.no_grad():
            logits, _ = fwd(params, test, args.first_layer)
            return loss_and_accuracy(logits, test.labels)[:2]

    time_epochs(epoch, runs, args.epochs, args.dtype, FLOPS_PER_RUN_EPOCH)


def time_epochs(epoch, runs, epochs, dtype, flops_per_run_epoch):
    """Time `epochs` calls of `epoch` after one warm-up call; print the child's JSON line."""
    epoch()  # warm-up: first-touch allocations, thread pool start (and compilation)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - start)  # CPU ops are synchronous: no sync needed
    median = statistics.median(times)
    print(json.dumps({
        "runs": runs,
        "dtype": dtype,
        "epochs_timed": epochs,
        "median_epoch_seconds": median,
        "run_epochs_per_second": runs / median,
        "effective_gflops": flops_per_run_epoch * runs / median / 1e9,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


# ---------------------------------------------------------------------------------------
# The parent: one child per R, then the table and the JSON (bench/peers/torch_transformer.py
# uses these too).
# ---------------------------------------------------------------------------------------

def human_bytes(n):
    for unit in ["B", "KiB", "MiB", "GiB"]:
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def measure(script, runs, threads, passthrough):
    """Each stack size R of `runs` timed by `script --single R` in a fresh child process, so
    that its peak RSS is its own: the children's JSON lines, parsed."""
    # OpenMP reads its thread count at start-up; set it for the child as well as set_num_threads.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    results = []
    for r in [int(x) for x in runs.split(",") if x]:
        out = subprocess.run([sys.executable, os.path.abspath(script), "--single", str(r)] + passthrough,
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"R = {r} failed:\n{out.stderr}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def report(results, title, json_path, settings):
    """Print the results as a table under `title`; write them with `settings` to `json_path`."""
    print(f"{title}\n")
    print("| R | median epoch (s) | run-epochs/s | effective GFLOP/s | peak RSS |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['runs']} | {r['median_epoch_seconds']:.3f} | {r['run_epochs_per_second']:.2f} "
              f"| {r['effective_gflops']:.1f} | {human_bytes(r['peak_rss_bytes'])} |")
    if json_path:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        keep = ["runs", "dtype", "median_epoch_seconds", "run_epochs_per_second", "effective_gflops", "peak_rss_bytes"]
        doc = {"results": [{k: r[k] for k in keep} for r in results], "torch_version": torch.__version__, **settings}
        with open(json_path, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")


def main():
    args = parse_args()
    if args.single is not None:
        return run_single(args)
    passthrough = ["--epochs", str(args.epochs), "--threads", str(args.threads), "--dtype", args.dtype,
                   "--grad", args.grad, "--first-layer", args.first_layer] + (["--compile"] if args.compile else [])
    results = measure(__file__, args.runs, args.threads, passthrough)
    report(results, f"PyTorch {torch.__version__}, {args.threads} threads, {args.dtype}, "
                    f"grad = {args.grad}, first layer = {args.first_layer}", args.json,
           {"threads": args.threads, "grad": args.grad, "first_layer": args.first_layer, "dtype": args.dtype})


if __name__ == "__main__":
    main()
