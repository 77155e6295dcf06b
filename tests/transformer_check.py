#!/usr/bin/env python3
"""Check grokstack's transformer against an independent PyTorch implementation.

The model is written here from the facts of src/models/transformer/mod.rs's documentation and
the run's resolved config (plain torch.nn.functional ops, no torch transformer module), its
rows from grokstack_data.py (the seeded split). Then, at the initial weights and at the
weights grokstack trained in one epoch and in two (EPOCH1, EPOCH2: exports of the run):

  1. logits on every row and the gradients of the mean train loss against grokstack's own
     (GROKSTACK.safetensors);
  2. torch.optim.AdamW with grokstack's parameter groups, given grokstack's gradient, from the
     initial weights against EPOCH1, and from EPOCH1 (with the moments of the first step)
     against EPOCH2. It is given grokstack's gradient, not ours, because Adam divides by |g|:
     an f32 rounding of a gradient that is nearly 0 changes that component's step by a good
     part of lr. Item 1 checks the gradients themselves;
  3. the accuracy and loss of EPOCH2 on the train and test rows against the run's final
     metrics in runs.parquet (the export's metadata).

    python tests/transformer_check.py GROKSTACK.safetensors EPOCH1.safetensors EPOCH2.safetensors

GROKSTACK.safetensors (tests/transformer_check.rs writes it) is in grokstack's layout: the
initial weights `weights.NAME`, and at POINT = init, epoch1 and epoch2 `POINT.logits`
[rows, C] over every row in grokstack's order and `POINT.grad.NAME`. A difference is measured
relative to the scale of the values compared, max|ours − theirs| / max|theirs|; f32 must agree
to 1e-5.

Prints the measured differences as JSON. Exit status: 0 agreed, 1 did not, 77 skipped (no
torch).
"""
import json
import math
import sys

try:
    import warnings

    # The PyPI torch wheel warns at import when numpy is absent; nothing here needs numpy.
    warnings.filterwarnings("ignore", message=".*NumPy.*")
    import torch
    import torch.nn.functional as F
except ImportError as error:
    print(f"skipped: {error}")
    sys.exit(77)

from grokstack_data import examples, split  # tests/, the script's own directory

TOLERANCE = 1e-5
NORM_EPS = 1e-5


def load_safetensors(path):
    """(tensors, metadata) of a safetensors file, read with the standard library and torch
    alone (the format: an 8-byte little-endian header length, a JSON header, the data)."""
    with open(path, "rb") as f:
        data = f.read()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        start, end = (8 + length + offset for offset in info["data_offsets"])
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}; this check reads f32 runs")
        tensors[name] = torch.frombuffer(bytearray(data[start:end]), dtype=torch.float32).reshape(info["shape"])
    return tensors, metadata


def torch_layout(name, value):
    """grokstack stores a Linear weight [in, out], PyTorch [out, in]; the rest keeps its layout."""
    linear = value.dim() == 2 and name not in ("embedding.weight", "position.weight")
    return value.t().contiguous() if linear else value


# --------------------------------------------------------------------------------------------
# The model.
# --------------------------------------------------------------------------------------------

def tokens_of(config, rows):
    """A row's tokens: [a, op, b, =] with op = p and = = p + 1, [a, b, =] with = = p, or [a, b]."""
    p = config["task.p"]
    layout = {"a_op_b_eq": lambda a, b: [a, p, b, p + 1], "a_b_eq": lambda a, b: [a, b, p], "a_b": lambda a, b: [a, b]}
    make = layout[config["model.tokens"]]
    return torch.tensor([make(a, b) for a, b, _ in rows])


def labels_of(rows):
    return torch.tensor([label for _, _, label in rows])


class Model:
    """The transformer of a run's config on a dict of PyTorch-layout weights."""

    def __init__(self, config):
        self.c = config
        self.heads = config["model.heads"]

    def linear(self, w, name, x):
        return F.linear(x, w[name + ".weight"], w.get(name + ".bias"))

    def norm(self, w, name, x):
        kind, d = self.c["model.norm"], x.shape[-1]
        if kind == "rms":
            return F.rms_norm(x, (d,), w[name + ".weight"], eps=NORM_EPS)
        if kind == "layer":
            return F.layer_norm(x, (d,), w[name + ".weight"], w[name + ".bias"], eps=NORM_EPS)
        return x

    def rope(self, x):
        """Turn each head's adjacent pairs (2i, 2i+1), read as complex numbers, by t·θ_i at
        position t, θ_i = base^(−2i/e) (Llama's reference code's formulation)."""
        t, e = x.shape[-2:]
        theta = self.c["model.rope_base"] ** (-torch.arange(0, e, 2, dtype=torch.float64) / e)  # [e/2]
        angles = torch.arange(t, dtype=torch.float64)[:, None] * theta  # [T, e/2]
        turn = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
        pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], e // 2, 2).contiguous())
        return torch.view_as_real(pairs * turn).flatten(-2)

    def attention(self, w, name, x):
        n, t, d = x.shape
        h, e = self.heads, d // self.heads
        q, k, v = (self.linear(w, f"{name}.{m}", x).view(n, t, h, e).transpose(1, 2) for m in "qkv")  # [N, H, T, e]
        if self.c["model.positional"] == "rope":
            q, k = self.rope(q), self.rope(k)
        scores = q @ k.transpose(-2, -1) / math.sqrt(e)  # [N, H, T, T]
        if self.c["model.causal"]:
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        heads = scores.softmax(-1) @ v  # [N, H, T, e]
        return self.linear(w, f"{name}.o", heads.transpose(1, 2).reshape(n, t, d))

    def ffn(self, w, name, x):
        hidden = self.linear(w, f"{name}.w1", x)
        kind = self.c["model.ffn"]
        if kind == "swiglu":
            hidden = F.silu(hidden) * self.linear(w, f"{name}.w3", x)
        elif kind == "relu":
            hidden = F.relu(hidden)
        else:
            hidden = F.gelu(hidden)  # the erf form
        return self.linear(w, f"{name}.w2", hidden)

    def logits(self, w, tokens):
        """tokens [N, T] → logits [N, C], read out at the last position."""
        x = w["embedding.weight"][tokens]  # [N, T, d]
        if self.c["model.positional"] == "learned":
            x = x + w["position.weight"]
        pre = self.c["model.norm_position"] == "pre"
        for i in range(self.c["model.layers"]):
            block = f"layers.{i}"
            if pre:
                x = x + self.attention(w, f"{block}.attn", self.norm(w, f"{block}.norm1", x))
                x = x + self.ffn(w, f"{block}.ffn", self.norm(w, f"{block}.norm2", x))
            else:
                x = self.norm(w, f"{block}.norm1", x + self.attention(w, f"{block}.attn", x))
                x = self.norm(w, f"{block}.norm2", x + self.ffn(w, f"{block}.ffn", x))
        last = x[:, -1]
        if pre:
            last = self.norm(w, "norm", last)
        return self.linear(w, "unembed", last)

    def loss(self, w, tokens, labels):
        """The mean cross-entropy over the rows."""
        return F.cross_entropy(self.logits(w, tokens), labels)

    def grads(self, w, tokens, labels):
        """The gradient of the mean cross-entropy for every weight."""
        leaves = {name: value.detach().clone().requires_grad_() for name, value in w.items()}
        return dict(zip(leaves, torch.autograd.grad(self.loss(leaves, tokens, labels), list(leaves.values()))))


# --------------------------------------------------------------------------------------------
# The optimizer.
# --------------------------------------------------------------------------------------------

def hidden_matrix(name):
    """q, k, v, o and the FFN's weights: decayed always (the rest only with train.all_reg)."""
    parts = name.split(".")
    return name.endswith(".weight") and len(parts) == 5 and parts[2] in ("attn", "ffn")


def adamw(config, params):
    c = config
    decay = c["train.weight_decay"]
    groups = [
        {"params": [p for n, p in params.items() if hidden_matrix(n)], "weight_decay": decay},
        {"params": [p for n, p in params.items() if not hidden_matrix(n)], "weight_decay": decay if c["train.all_reg"] else 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=c["train.lr"], betas=(c["train.beta1"], c["train.beta2"]), eps=c["train.eps"])


# --------------------------------------------------------------------------------------------
# The comparison.
# --------------------------------------------------------------------------------------------

def relative(ours, theirs, scale=None):
    """max|ours − theirs| / scale, by default max|theirs| (0 when both are 0)."""
    ours, theirs = ours.double(), theirs.double()
    scale = theirs.abs().max().item() if scale is None else scale
    diff = (ours - theirs).abs().max().item()
    return diff / scale if scale > 0 else diff


def worst(pairs, scales=None):
    """The largest relative difference over named (ours, theirs) pairs, and where; `scales`
    overrides the scale of some names."""
    scales = scales or {}
    return max(((relative(a, b, scales.get(name)), name) for name, (a, b) in pairs.items()), default=(0.0, None))


def key_bias(name):
    """A key bias's gradient is 0 in exact arithmetic (the softmax ignores a shift that every
    key of a query shares), so both sides hold rounding noise there: it is measured against the
    largest gradient of the run."""
    return name.endswith(".attn.k.bias")


def worst_step(moved, expected, grads, config):
    """The largest difference of the weights after an AdamW step, relative to the parameter's
    largest entry (as `worst`), beyond what the gradients' own agreement allows. This step starts from grokstack's
    gradients, but grokstack trained on its CPU pass's, which agree with them only to the
    gradient check's tolerance δ (relative to the largest gradient); Adam's step lr·g/(|g| + eps)
    moves by lr·eps·δ/(|g| + eps)² for such a change of g, which is most of lr where |g| is
    near eps (a key bias's gradient, which is rounding noise, or an entry near zero). That much
    (at most 2·lr) is allowed per entry."""
    lr, eps = config["train.lr"], config["train.eps"]
    delta = TOLERANCE * max(g.abs().max().item() for g in grads.values())
    result = (0.0, None)
    for n, ours in moved.items():
        slack = (lr * eps * delta / (grads[n].double().abs() + eps) ** 2).clamp(max=2 * lr)
        excess = ((ours.double() - expected[n].double()).abs() - slack).clamp(min=0).max().item()
        excess /= max(expected[n].abs().max().item(), 1e-30)
        result = max(result, (excess, n))
    return result


REQUIRED = {"train.optimizer": "adamw", "train.loss": "softmax", "train.dtype": "f32", "train.batch_size": 0, "train.warmup": 0,
            "model.dropout_attention": 0.0, "model.dropout_attention_output": 0.0, "model.dropout_ffn_hidden": 0.0, "model.dropout_ffn_output": 0.0}


def main(grokstack_path, epoch1_path, epoch2_path):
    side, _ = load_safetensors(grokstack_path)
    epoch1, meta1 = load_safetensors(epoch1_path)
    epoch2, meta2 = load_safetensors(epoch2_path)
    config = json.loads(meta2["config"])
    seed = int(meta2["seed"])
    unlike = {k: config.get(k) for k, v in REQUIRED.items() if config.get(k) != v}
    if unlike:
        raise SystemExit(f"this check steps full-batch f32 softmax AdamW without dropout or warm-up; the run has {unlike}")
    if meta1["seed"] != meta2["seed"] or (meta1["weights_epoch"], meta2["weights_epoch"]) != ("0", "1"):
        raise SystemExit("EPOCH1 and EPOCH2 must be the same run's weights after one and after two epochs")

    model = Model(config)
    every = examples(config)
    train, test = split(config, seed)
    tokens = {"every": tokens_of(config, every), "train": tokens_of(config, train), "test": tokens_of(config, test)}
    labels = {"train": labels_of(train), "test": labels_of(test)}
    init = {name[len("weights."):]: torch_layout(name[len("weights."):], t) for name, t in side.items() if name.startswith("weights.")}
    assert init.keys() == epoch1.keys() == epoch2.keys(), (sorted(init), sorted(epoch1))

    points = {"init": init, "epoch1": epoch1, "epoch2": epoch2}
    theirs = {point: {n: torch_layout(n, side[f"{point}.grad.{n}"]) for n in init} for point in points}

    # 1. Logits and gradients.
    measured = {}
    for point, weights in points.items():
        with torch.no_grad():
            logits = model.logits(weights, tokens["every"])
        measured[f"{point}_logits"] = relative(logits, side[f"{point}.logits"])
        grads = model.grads(weights, tokens["train"], labels["train"])
        largest = max(g.abs().max().item() for g in theirs[point].values())
        measured[f"{point}_grads"] = worst({n: (g, theirs[point][n]) for n, g in grads.items()}, {n: largest for n in grads if key_bias(n)})

    # 2. Two AdamW steps: from the initial weights to epoch 1's, then from epoch 1's to epoch 2's.
    params = {n: t.clone().requires_grad_() for n, t in init.items()}
    opt = adamw(config, params)
    for step, (before, after) in enumerate((("init", "epoch1"), ("epoch1", "epoch2")), start=1):
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(points[before][n])  # each step starts from grokstack's weights, so errors do not add up
                p.grad = theirs[before][n]
        opt.step()
        moved = {n: p.detach() for n, p in params.items()}
        measured[f"step{step}_weights"] = worst_step(moved, points[after], theirs[before], config)
        # The update alone, relative to its own scale (about lr): reported, not checked, since
        # one rounding of a weight near 2 (the embedding's N(0, 1)) is already 1e-5 of lr.
        measured[f"step{step}_update"] = worst({n: (p - points[before][n], points[after][n] - points[before][n]) for n, p in moved.items()})

    # 3. The final weights' accuracy and loss against runs.parquet's.
    agree = True
    finals = {}
    for part in ("train", "test"):
        with torch.no_grad():
            logits = model.logits(epoch2, tokens[part])
        loss = F.cross_entropy(logits, labels[part]).item()
        correct = int((logits.argmax(-1) == labels[part]).sum())
        expected_acc, expected_loss = float(meta2[f"final_{part}_acc"]), float(meta2[f"final_{part}_loss"])
        finals[part] = {"correct": correct, "rows": len(labels[part]), "final_acc": expected_acc,
                        "loss": loss, "final_loss": expected_loss}
        agree &= correct == round(expected_acc * len(labels[part]))
        agree &= abs(loss - expected_loss) <= TOLERANCE * abs(expected_loss)

    for key, value in measured.items():
        if not key.endswith("_update"):
            agree &= (value[0] if isinstance(value, tuple) else value) <= TOLERANCE
    report = {"run_id": int(meta2["run_id"]), "rows": len(every), "train_rows": len(train)}
    report.update({k: (v if not isinstance(v, tuple) else {"max": v[0], "at": v[1]}) for k, v in measured.items()})
    report["finals"] = finals
    print(json.dumps(report))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
