"""Sweep.logits: grokstack's own logits of a run (`grokstack export --logits`), for every task,
and the Python rebuild of a run's rows (Sweep.split) against the rows the trainer used."""
import json

import numpy as np
import polars as pl

import grokstack
from grokstack import _data


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy in float64."""
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_sums = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_sums - logits[np.arange(len(labels)), labels]))


def test_logits_give_the_runs_final_metrics(tiny):
    for run_id in range(4):
        row = tiny.runs.filter(pl.col("run_id") == run_id)
        parts = tiny.logits(run_id)
        assert sum(len(labels) for _, labels, _ in parts.values()) == 169
        for part, (symbols, labels, logits) in parts.items():
            assert symbols.shape == (len(labels), 2) and logits.shape == (len(labels), 13)
            np.testing.assert_array_equal(labels, symbols.sum(axis=1) % 13)
            loss = cross_entropy(logits, labels)
            assert abs(loss - row[f"final_{part}_loss"].item()) <= 1e-5 * row[f"final_{part}_loss"].item()
            assert np.mean(logits.argmax(axis=1) == labels) == row[f"final_{part}_acc"].item()


def test_logits_of_the_tasks_python_does_not_rebuild(tmp_path):
    """S5's rows come from the trainer, so Sweep.logits covers what Sweep.split cannot."""
    sweep = grokstack.train({"name": "s5", "task": {"op": "s5_compose", "train_fraction": 0.5},
                             "model": {"embed_dim": 8, "hidden": [16]}, "train": {"epochs": 2}}, tmp_path / "out")
    parts = sweep.logits(0)
    assert [len(labels) for _, labels, _ in parts.values()] == [7200, 7200]
    assert parts["train"][2].shape == (7200, 120)
    loss = cross_entropy(parts["test"][2], parts["test"][1])
    assert abs(loss - sweep.runs["final_test_loss"][0]) <= 1e-5 * sweep.runs["final_test_loss"][0]


def test_python_rebuilds_the_trainers_rows(tmp_path, tiny):
    """Sweep.split's Python rebuild (python/grokstack/_data.py) against the rows the trainer
    itself used (Sweep.logits), row for row in split order: a named operation, two
    expressions (one leaving pairs out), and a table file without a split column."""
    table = tmp_path / "mul7.csv"
    table.write_text("a,b,label\n" + "".join(f"{a},{b},{a * b % 7}\n" for a in range(7) for b in range(7)))
    sweeps = [tiny]
    for name, task in [("expression", {"op": "x**2 - 3*y if x % 2 == 0 else x * y", "p": 11}),
                       ("division", {"op": "x / y", "p": 15}),
                       ("table", {"table": str(table)})]:
        sweeps.append(grokstack.train({"name": name, "seeds": 2, "task": {**task, "train_fraction": 0.5},
                                       "model": {"embed_dim": 8, "hidden": [16]}, "train": {"epochs": 2}},
                                      tmp_path / name))
    for sweep in sweeps:
        for run_id in (0, 1):
            _, metadata = sweep._export(run_id)
            # The Python rebuild itself, not Sweep.split, which falls back to the trainer's rows.
            rebuilt = _data.split(json.loads(metadata["config"]), int(metadata["seed"]))
            trainer = sweep.logits(run_id)
            for part in ("train", "test"):
                np.testing.assert_array_equal(rebuilt[part][0], trainer[part][0], err_msg=f"{sweep} {part} symbols")
                np.testing.assert_array_equal(rebuilt[part][1], trainer[part][1], err_msg=f"{sweep} {part} labels")
