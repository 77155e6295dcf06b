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

from grokstack_data import split  # tests/, the script's own directory


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
    test = np.array(split(config, int(meta["seed"]))[1], dtype=np.int64)
    predicted = logits(weights, config, test[:, 0], test[:, 1]).argmax(axis=1)
    correct = int((predicted == test[:, 2]).sum())
    expected = float(meta["final_test_acc"])
    print(json.dumps({"run_id": int(meta["run_id"]), "test_rows": len(test), "correct": correct,
                      "accuracy": correct / len(test), "final_test_acc": expected}))
    return 0 if correct == round(expected * len(test)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
