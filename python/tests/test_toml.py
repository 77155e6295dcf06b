"""The TOML writer against Python's reader (tomllib)."""
import math
import sys

import pytest

from conftest import REPO, TINY
from grokstack import toml_dumps

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")


def roundtrip(document):
    return tomllib.loads(toml_dumps(document))


def test_sweep_dict_round_trips():
    assert roundtrip(TINY) == TINY


def test_values_and_keys_round_trip():
    document = {
        "name": 'quotes " and \\ backslash\n\ttab \x01 and ünïcode →',
        "seeds": [3, 7, 11],
        "flag": False,
        "tiny": 1e-25,
        "big": 1e300,
        "negative": -0.5,
        "whole_float": 4.0,
        "inf": float("inf"),
        "empty": [],
        "nested": [[1, 2], ["a"]],
        "train": {"lr": 0.01, "all_reg": True},
        "grid": {
            "train.lr": [0.001, 0.01],
            "task": [{"task.op": "gcd", "task.train_fraction": 0.5}, {"task.op": "add", "task.train_fraction": 0.8}],
            "key with spaces": [1],
        },
        "outer": {"x": 1, "inner": {"y": "z", "deeper": {"w": [True]}}},
    }
    back = roundtrip(document)
    assert back == document
    assert isinstance(back["whole_float"], float) and isinstance(back["seeds"][0], int)


def test_nan_round_trips():
    assert math.isnan(roundtrip({"x": float("nan")})["x"])


def test_every_sweep_file_round_trips():
    files = sorted((REPO / "sweeps").glob("*.toml"))
    assert files
    for path in files:
        original = tomllib.loads(path.read_text())
        assert roundtrip(original) == original, path.name


@pytest.mark.parametrize("value", [None, object(), {1: 2}])
def test_what_toml_cannot_hold_names_the_key(value):
    with pytest.raises(TypeError, match=r"train\.lr"):
        toml_dumps({"train": {"lr": value}})
