"""Sweep.logits: grokstack's own logits of a run (`grokstack export --logits`), for every task."""
import numpy as np
import polars as pl

import grokstack


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
