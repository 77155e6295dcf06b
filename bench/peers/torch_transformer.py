#!/usr/bin/env python3
"""PyTorch peer of grokstack's canonical transformer epoch, stacked the way a researcher
would stack it: one ordinary nn.Module per run, their weights stacked by
torch.func.stack_module_state, the per-run loss's gradient vmapped over the stack, and
torch.optim.AdamW over the stacked tensors (AdamW is elementwise, so that is one AdamW per run).

One epoch = one full-batch train step (forward, backward, AdamW update) + a forward evaluation
of the test set (loss and accuracy), for R runs at once, each with its own train/test split.

Model per run: p = 97, rows [a, op, b, =] (vocabulary 99, 4 positions), 2 pre-norm blocks of
d = 128, 4 heads, RMSNorm (eps 1e-5), RoPE on adjacent pairs (base 1e6), causal attention,
SwiGLU FFN of width 512 with dropout 0.2 on its hidden units, a final RMSNorm and an unembedding
read at the last position; no biases; train fraction 0.5; f32. AdamW decays every parameter
(Tveit et al.'s code); the hyperparameters do not change the time.

The gradient: `--grad vmap` (the default) is vmap(grad_and_value(loss)); `--grad autograd`
vmaps the loss alone and calls backward() once on the runs' sum. torch.func's grad holds far
more memory than backward() here (measured peaks: 4.2 GiB for one run against 1.4 GiB, then
about 2.5 GiB more per run against 0.6; vmap's chunk_size did not lower it), so R = 16 needs
some 40 GiB with vmap and 10 GiB with autograd.

Usage:
  python bench/peers/torch_transformer.py --runs 1,16,64 --epochs 5 --threads 2 --json OUT.json

Each R runs in a fresh child process (`--single R`) so that its peak RSS is its own.
"""

import argparse
import copy
import math
import os

from torch_stacked import measure, report, time_epochs  # bench/peers/, this script's directory
import torch  # noqa: E402  (torch_stacked silenced the wheel's warning at import)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.func import functional_call, grad_and_value, stack_module_state, vmap  # noqa: E402

P = 97
LAYERS, D, HEADS, FFN = 2, 128, 4, 512
DROPOUT = 0.2
ROPE_BASE = 1e6
TRAIN_FRACTION = 0.5
LR, WEIGHT_DECAY, BETAS, EPS = 1e-3, 1.0, (0.9, 0.98), 1e-8
VOCAB, T = P + 2, 4
N_PAIRS = P * P
N_TRAIN = int(TRAIN_FRACTION * N_PAIRS)  # 4,704
N_TEST = N_PAIRS - N_TRAIN  # 4,705
# grokstack's FLOP convention (TransformerArch::forward_flops_per_row): matmuls of every position
# of every block, per row 8·T·d² + 4·T²·d + 2·3·T·d·F per block + 2·d·C; times 3·N_train + N_test.
FLOPS_PER_ROW = LAYERS * (8 * T * D * D + 4 * T * T * D + 2 * 3 * T * D * FFN) + 2 * D * P
FLOPS_PER_RUN_EPOCH = FLOPS_PER_ROW * (3 * N_TRAIN + N_TEST)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="1,16,64", help="comma-separated stack sizes R")
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs per R (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--grad", choices=["vmap", "autograd"], default="vmap",
                    help="vmap: vmap(grad_and_value(loss)); autograd: vmap(loss), then one backward() of the runs' sum")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--single", type=int, help=argparse.SUPPRESS)  # internal: one R, JSON on stdout
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------
# One run's model, as written for a single run.
# ---------------------------------------------------------------------------------------

CAUSAL_MASK = torch.ones(T, T, dtype=torch.bool).triu(1)  # key after query


def rotate(x, cos, sin):
    """RoPE: turn the adjacent pairs (x_2i, x_2i+1) of x [..., T, e] by the angles of cos, sin [T, e/2]."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(D, eps=1e-5), nn.RMSNorm(D, eps=1e-5)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.w1, self.w3 = nn.Linear(D, FFN, bias=False), nn.Linear(D, FFN, bias=False)
        self.w2 = nn.Linear(FFN, D, bias=False)
        self.dropout = nn.Dropout(DROPOUT)

    def attention(self, x, cos, sin):
        n, t, _ = x.shape
        q, k, v = (f(x).view(n, t, HEADS, D // HEADS).transpose(1, 2) for f in (self.q, self.k, self.v))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        # Written out: F.scaled_dot_product_attention has no vmap batching rule on the CPU
        # (torch warns and loops over the runs).
        scores = (q @ k.transpose(-2, -1) / math.sqrt(D // HEADS)).masked_fill(CAUSAL_MASK, float("-inf"))
        out = scores.softmax(-1) @ v  # [N, H, T, e]
        return self.o(out.transpose(1, 2).reshape(n, t, D))

    def forward(self, x, cos, sin):
        x = x + self.attention(self.norm1(x), cos, sin)
        h = self.norm2(x)
        return x + self.w2(self.dropout(F.silu(self.w1(h)) * self.w3(h)))


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, D)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.RMSNorm(D, eps=1e-5)
        self.unembed = nn.Linear(D, P, bias=False)
        e = D // HEADS
        angles = torch.arange(T)[:, None] * ROPE_BASE ** (-torch.arange(0, e, 2) / e)  # [T, e/2]
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, tokens):  # [N, T] → logits [N, P]
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.unembed(self.norm(x[:, -1]))


# ---------------------------------------------------------------------------------------
# The stack: R copies of the model, vmapped.
# ---------------------------------------------------------------------------------------

def rows(pairs):
    """Tokens [.., 4] and labels of pair indices i = a·p + b: [a, op, b, =], (a + b) mod p."""
    a, b = pairs // P, pairs % P
    tokens = torch.stack([a, torch.full_like(a, P), b, torch.full_like(a, P + 1)], dim=-1)
    return tokens, (a + b) % P


def make_stack(runs):
    torch.manual_seed(0)
    models = [Transformer() for _ in range(runs)]
    params, buffers = stack_module_state(models)  # every weight [R, ...], leaves that require grad
    base = copy.deepcopy(models[0]).to("meta")  # the stateless template functional_call runs
    # A different random split per run, as grokstack draws one per seed.
    perms = torch.stack([torch.randperm(N_PAIRS, generator=torch.Generator().manual_seed(r)) for r in range(runs)])
    train, test = rows(perms[:, :N_TRAIN]), rows(perms[:, N_TRAIN:])
    opt = torch.optim.AdamW(params.values(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    return base, params, buffers, opt, train, test


def run_single(args):
    torch.set_num_threads(args.threads)
    runs = args.single
    base, params, buffers, opt, (train_tokens, train_labels), (test_tokens, test_labels) = make_stack(runs)

    def loss(p, b, tokens, labels):
        return F.cross_entropy(functional_call(base, (p, b), (tokens,)), labels)

    # Each run draws its own dropout masks.
    if args.grad == "vmap":
        train_grads = vmap(grad_and_value(loss), randomness="different")

        def train_step():
            grads, _ = train_grads(params, buffers, train_tokens, train_labels)
            for name, p in params.items():
                p.grad = grads[name]
    else:
        train_losses = vmap(loss, randomness="different")

        def train_step():
            opt.zero_grad()
            # The sum of the runs' losses: each run's weights get their own run's gradient.
            train_losses(params, buffers, train_tokens, train_labels).sum().backward()

    def evaluate(p, b, tokens, labels):
        logits = functional_call(base, (p, b), (tokens,))
        return F.cross_entropy(logits, labels), (logits.argmax(-1) == labels).float().mean()

    test_metrics = vmap(evaluate)

    def epoch():
        base.train()
        train_step()
        opt.step()
        base.eval()
        with torch.no_grad():
            return test_metrics(params, buffers, test_tokens, test_labels)

    time_epochs(epoch, runs, args.epochs, "f32", FLOPS_PER_RUN_EPOCH)


def main():
    args = parse_args()
    if args.single is not None:
        return run_single(args)
    passthrough = ["--epochs", str(args.epochs), "--threads", str(args.threads), "--grad", args.grad]
    results = measure(__file__, args.runs, args.threads, passthrough)
    report(results, f"PyTorch {torch.__version__}, {args.threads} threads, f32, canonical transformer, "
                    f"grad = {args.grad}", args.json,
           {"threads": args.threads, "dtype": "f32", "model": "transformer", "grad": args.grad})


if __name__ == "__main__":
    main()
