#!/usr/bin/env python3
"""Check a run's logged progress measures (Nanda et al. 2023) from its exported weights, with
numpy and the safetensors package only.

The run's rows come from grokstack_data.py (its seeded split), its logits over every pair from a
forward pass written here (the MLP as tests/export_check.py runs it, the transformer as
tests/transformer_check.py describes it, in numpy). Then the definitions are applied literally,
in R^P over the P pairs rather than through grokstack's per-answer means: for every frequency
k the unit vectors of cos(2πk·s/n) and sin(2πk·s/n), s the pair's answer in Z_n (mul and div
through the discrete logarithm to the smallest primitive root, pairs with a zero left out), the
projection of every logit column onto them, the key frequencies by projected energy, the
restricted and excluded losses; the embedding's spectrum by numpy's FFT.

    python3 tests/progress_check.py RUN.safetensors EXPECTED.json

EXPECTED.json holds the values grokstack logged at the run's last epoch. Prints the
differences as JSON. Exit status: 0 agreed, 1 did not, 77 skipped (numpy or safetensors
missing).
"""
import json
import math
import sys

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError as error:
    print(f"skipped: {error}")
    sys.exit(77)

from export_check import logits as mlp_logits  # tests/, the script's own directory
from grokstack_data import examples, split

TOLERANCE = 1e-4
NORM_EPS = 1e-5


def erf(z):
    return np.vectorize(math.erf)(z)


class Transformer:
    """The transformer of a run's config on PyTorch-layout numpy weights (f64)."""

    def __init__(self, config, weights):
        self.c = config
        self.w = {name: value.astype(np.float64) for name, value in weights.items()}

    def linear(self, name, x):
        out = x @ self.w[name + ".weight"].T
        return out + self.w[name + ".bias"] if name + ".bias" in self.w else out

    def norm(self, name, x):
        kind = self.c["model.norm"]
        if kind == "rms":
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + NORM_EPS) * self.w[name + ".weight"]
        if kind == "layer":
            centred = x - x.mean(-1, keepdims=True)
            scale = np.sqrt((centred * centred).mean(-1, keepdims=True) + NORM_EPS)
            return centred / scale * self.w[name + ".weight"] + self.w[name + ".bias"]
        return x

    def rope(self, x):
        """Each head's adjacent pairs (2i, 2i+1) turned by t·θ_i at position t, θ_i = base^(−2i/e)."""
        t, e = x.shape[-2:]
        theta = self.c["model.rope_base"] ** (-np.arange(0, e, 2) / e)
        angles = np.arange(t)[:, None] * theta  # [T, e/2]
        pairs = x[..., 0::2] + 1j * x[..., 1::2]
        turned = pairs * np.exp(1j * angles)
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = turned.real, turned.imag
        return out

    def attention(self, name, x):
        n, t, d = x.shape
        h = self.c["model.heads"]
        e = d // h
        q, k, v = (self.linear(f"{name}.{m}", x).reshape(n, t, h, e).transpose(0, 2, 1, 3) for m in "qkv")
        if self.c["model.positional"] == "rope":
            q, k = self.rope(q), self.rope(k)
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(e)  # [N, H, T, T]
        if self.c["model.causal"]:
            scores = np.where(np.triu(np.ones((t, t), dtype=bool), 1), -np.inf, scores)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        heads = scores / scores.sum(-1, keepdims=True) @ v
        return self.linear(f"{name}.o", heads.transpose(0, 2, 1, 3).reshape(n, t, d))

    def ffn(self, name, x):
        hidden = self.linear(f"{name}.w1", x)
        kind = self.c["model.ffn"]
        if kind == "swiglu":
            hidden = hidden / (1.0 + np.exp(-hidden)) * self.linear(f"{name}.w3", x)
        elif kind == "relu":
            hidden = np.maximum(hidden, 0.0)
        else:
            hidden = 0.5 * hidden * (1.0 + erf(hidden / math.sqrt(2.0)))
        return self.linear(f"{name}.w2", hidden)

    def logits(self, a, b):
        p = self.c["task.p"]
        layout = {"a_op_b_eq": lambda a, b: [a, p, b, p + 1], "a_b_eq": lambda a, b: [a, b, p],
                  "a_b": lambda a, b: [a, b]}
        tokens = np.array([layout[self.c["model.tokens"]](x, y) for x, y in zip(a, b)])
        x = self.w["embedding.weight"][tokens]  # [N, T, d]
        if self.c["model.positional"] == "learned":
            x = x + self.w["position.weight"]
        pre = self.c["model.norm_position"] == "pre"
        for i in range(self.c["model.layers"]):
            block = f"layers.{i}"
            if pre:
                x = x + self.attention(f"{block}.attn", self.norm(f"{block}.norm1", x))
                x = x + self.ffn(f"{block}.ffn", self.norm(f"{block}.norm2", x))
            else:
                x = self.norm(f"{block}.norm1", x + self.attention(f"{block}.attn", x))
                x = self.norm(f"{block}.norm2", x + self.ffn(f"{block}.ffn", x))
        last = x[:, -1]
        if pre:
            last = self.norm("norm", last)
        return self.linear("unembed", last)


def group(op, p):
    """(n, element of each residue or None, residue of each element): Z_p for add and sub, Z_p^*
    through the logarithm to the smallest primitive root for mul and div."""
    if op in ("add", "sub"):
        return p, list(range(p)), list(range(p))
    root = next(g for g in range(1, p) if len({pow(g, i, p) for i in range(p - 1)}) == p - 1)
    residue = [pow(root, i, p) for i in range(p - 1)]
    element = [None] * p
    for i, v in enumerate(residue):
        element[v] = i
    return p - 1, element, residue


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of rows `logits` [N, C] against `labels` [N]."""
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float((lse - logits[np.arange(len(labels)), labels]).mean())


def measures(config, weights, seed):
    op, p = config["task.op"], config["task.p"]
    n, element, residue = group(op, p)
    pairs = [(a, b) for a, b, _ in examples(config) if element[a] is not None and element[b] is not None]
    subtract = op in ("sub", "div")
    answer = np.array([(element[a] + (-1 if subtract else 1) * element[b]) % n for a, b in pairs])
    a, b = np.array([x for x, _ in pairs]), np.array([y for _, y in pairs])
    if config["model.kind"] == "transformer":
        logits = Transformer(config, weights).logits(a, b)
    else:
        logits = mlp_logits(weights, config, a, b)  # [P, C]

    # The key frequencies by the energy of every column's projection onto each plane.
    directions, energy = {}, {}
    for k in range(1, n // 2 + 1):
        waves = [np.cos(2 * np.pi * k * answer / n), np.sin(2 * np.pi * k * answer / n)]
        units = [w / np.linalg.norm(w) for w in waves if np.linalg.norm(w) > 1e-9]
        directions[k] = units
        energy[k] = sum(float(((u @ logits) ** 2).sum()) for u in units)
    fixed = config.get("metrics.fixed_frequencies", [])
    candidates = fixed if fixed else list(range(1, n // 2 + 1))
    keys = sorted(candidates, key=lambda k: (-energy[k], k))
    if not fixed:
        keys = keys[: config.get("metrics.key_frequencies", 5)]
    projected = sum(np.outer(u, u @ logits) for k in keys for u in directions[k])  # Σ_key P_k L [P, C]

    labels = np.array([residue[s] for s in answer])
    restricted = cross_entropy(projected + (logits - projected).mean(axis=0), labels)
    train = {(x, y) for x, y, _ in split(config, seed)[0]}
    in_train = np.array([pair in train for pair in pairs])
    excluded = cross_entropy((logits - projected)[in_train], labels[in_train])

    # The embedding's spectrum: each operand table's rows in group order, through the FFT.
    if "embedding.weight" in weights:
        tables = [weights["embedding.weight"].astype(np.float64)[[residue[s] for s in range(n)]]]
    else:
        first = weights["layers.0.weight"].astype(np.float64).T  # [2p, H], as the one-hots see it
        tables = [first[[residue[s] for s in range(n)]], first[[p + residue[s] for s in range(n)]]]
    power = sum((np.abs(np.fft.fft(t, axis=0)) ** 2).sum(axis=1) for t in tables)  # [n]
    # cos and sin of k together are |X_k|² + |X_{n−k}|², the Nyquist row n/2 alone once.
    spectrum = np.array([power[k] + (power[n - k] if 2 * k != n else 0.0) for k in range(1, n // 2 + 1)])
    spectrum = spectrum / spectrum.sum()
    m = len(spectrum)
    gini = float(np.abs(spectrum[:, None] - spectrum[None, :]).sum() / (2 * m * spectrum.sum()))
    return {"restricted_loss": restricted, "excluded_loss": excluded, "key_frequencies": [int(k) for k in keys],
            "embedding_spectrum": spectrum.tolist(), "embedding_gini": gini,
            "embedding_ipr": float((spectrum ** 2).sum())}


def main(path, expected_path):
    with safe_open(path, framework="np") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    ours = measures(config, load_file(path), int(meta["seed"]))
    with open(expected_path) as f:
        theirs = json.load(f)
    differences = {}
    for name in ("restricted_loss", "excluded_loss", "embedding_gini", "embedding_ipr"):
        differences[name] = abs(ours[name] - theirs[name]) / max(abs(theirs[name]), 1e-12)
    spectra = np.array(ours["embedding_spectrum"]), np.array(theirs["embedding_spectrum"])
    differences["embedding_spectrum"] = float(np.abs(spectra[0] - spectra[1]).max())
    same_keys = ours["key_frequencies"] == theirs["key_frequencies"]
    print(json.dumps({"run_id": int(meta["run_id"]), "differences": differences,
                      "key_frequencies": ours["key_frequencies"], "logged_key_frequencies": theirs["key_frequencies"]}))
    return 0 if same_keys and all(d <= TOLERANCE for d in differences.values()) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
