"""Shared fixtures: one tiny sweep (4 runs, p = 13, 20 epochs: well under a second) trained once
from a dict for the whole session."""
from pathlib import Path

import pytest

import grokstack

TINY = {
    "name": "tiny",
    "seeds": 2,
    "task": {"op": "add", "p": 13, "train_fraction": 0.6},
    "model": {"input": "embedding", "embed_dim": 8, "hidden": [16]},
    "train": {"epochs": 20, "log_every": 5},
    "grid": {"train.lr": [0.01, 0.02]},
}

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return grokstack.train(TINY, tmp_path_factory.mktemp("tiny") / "out")
