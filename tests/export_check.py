#!/usr/bin/env python3
"""Check a run exported by `grokstack export` from Python, with numpy and the safetensors
package only: rebuild the run's test split from its seed, run the model's forward pass on the
exported weights (PyTorch names and [out, in] layout) and compare the test accuracy with the
run's final test accuracy in the file's metadata.

    python3 tests/export_check.py RUN.safetensors

Exit status: 0 reproduced, 1 not reproduced, 77 skipped (numpy or safetensors missing).
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

MASK = (1 << 64) - 1


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Rng:
    """grokstack's src/rng.rs: xoshiro256** seeded through SplitMix64, one stream per use."""

    SPLIT = 1

    def __init__(self, seed, stream):
        mix = (seed ^ (stream * 0xA0761D6478BD642F)) & MASK
        self.s = []
        for _ in range(4):
            mix = (mix + 0x9E3779B97F4A7C15) & MASK
            z = mix
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        while True:
            product = self.next_u64() * n
            if product & MASK >= ((-n) & MASK) % n:
                return product >> 64

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def examples(op, p):
    rows = []
    for a in range(p):
        for b in range(p):
            if op == "add":
                label = (a + b) % p
            elif op == "sub":
                label = (a + p - b) % p
            elif op == "mul":
                label = (a * b) % p
            else:  # div: a * b^-1, b != 0
                if b == 0:
                    continue
                label = (a * pow(b, p - 2, p)) % p
            rows.append((a, b, label))
    return rows


def test_split(config, seed):
    rows = examples(config["task.op"], config["task.p"])
    order = list(range(len(rows)))
    Rng(seed, Rng.SPLIT).shuffle(order)
    n_train = math.floor(config["task.train_fraction"] * len(rows))
    return np.array([rows[i] for i in order[n_train:]], dtype=np.int64)


def activation(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    erf = np.vectorize(math.erf)
    return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))


def logits(weights, config, a, b):
    p = config["task.p"]
    layers = sorted((k for k in weights if k.startswith("layers.")), key=lambda k: int(k.split(".")[1]))
    w = [weights[k].astype(np.float64) for k in layers]  # [out, in], as torch.nn.Linear
    if config["model.input"] == "embedding":
        e = weights["embedding.weight"].astype(np.float64)  # [p, d], as torch.nn.Embedding
        x = np.concatenate([e[a], e[b]], axis=1)
    else:
        x = np.zeros((len(a), 2 * p))
        x[np.arange(len(a)), a] = 1.0
        x[np.arange(len(a)), p + b] = 1.0
    for i, weight in enumerate(w):
        x = x @ weight.T
        if i + 1 < len(w):
            x = activation(config["model.activation"], x)
    return config["model.alpha"] * x


def main(path):
    with safe_open(path, framework="np") as f:
        meta = f.metadata()
    weights = load_file(path)
    config = json.loads(meta["config"])
    test = test_split(config, int(meta["seed"]))
    predicted = logits(weights, config, test[:, 0], test[:, 1]).argmax(axis=1)
    correct = int((predicted == test[:, 2]).sum())
    expected = float(meta["final_test_acc"])
    print(json.dumps({"run_id": int(meta["run_id"]), "test_rows": len(test), "correct": correct,
                      "accuracy": correct / len(test), "final_test_acc": expected}))
    return 0 if correct == round(expected * len(test)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
