"""train / load / Sweep, against the files and the CLI."""
import importlib.util
import json
import shutil
import struct
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file

import grokstack
from conftest import REPO, TINY
from grokstack import _data


def test_the_installed_package_is_tested():
    assert "site-packages" in grokstack.__file__, grokstack.__file__
    assert grokstack.__version__ != "unknown"


def test_train_from_a_dict(tiny):
    assert tiny.name == "tiny"
    runs = tiny.runs
    assert runs.height == 4
    assert sorted(runs["train.lr"].unique().to_list()) == [0.01, 0.02]
    assert set(runs["status"]) <= {"done", "stopped", "diverged"}
    metrics = tiny.metrics
    assert isinstance(metrics, pl.LazyFrame)
    table = metrics.collect()
    assert {"run_id", "epoch", "train_acc", "test_acc"} <= set(table.columns)
    assert table.filter(pl.col("run_id") == 0)["epoch"].to_list() == [0, 5, 10, 15, 19]  # and the last
    assert repr(tiny) == f"Sweep('tiny', dir='{tiny.dir}', 4/4 runs finished)"


def test_train_from_a_path_with_overrides(tmp_path):
    sweep_file = tmp_path / "from_file.toml"
    sweep_file.write_text(grokstack.toml_dumps({k: v for k, v in TINY.items() if k != "grid"} | {"name": "from_file"}))
    sweep = grokstack.train(sweep_file, tmp_path / "a", overrides={"train.lr": [0.003, 0.03], "seeds": 1})
    assert sweep.runs["train.lr"].to_list() == [0.003, 0.03]
    again = grokstack.train(str(sweep_file), str(tmp_path / "b"), overrides=["train.lr=0.005", "model.activation=\"relu\""], max_memory="1GiB")
    assert again.runs["train.lr"].to_list() == [0.005, 0.005]
    assert again.runs["model.activation"].to_list() == ["relu", "relu"]


def test_resume_of_a_finished_sweep_keeps_it(tmp_path, tiny):
    out = tmp_path / "copy"
    shutil.copytree(tiny.dir, out)
    before = grokstack.load(out).runs
    assert grokstack.train(TINY, out, resume=True).runs.equals(before)


def test_load(tiny):
    loaded = grokstack.load(tiny.dir)
    assert loaded.name == tiny.name and loaded.dir == tiny.dir
    assert loaded.runs.equals(tiny.runs)
    with pytest.raises(grokstack.GrokstackError, match="holds no sweep"):
        grokstack.load(tiny.dir / "nothing")


def test_settings_analyzes_first(tmp_path, tiny):
    out = tmp_path / "copy"
    shutil.copytree(tiny.dir, out, ignore=shutil.ignore_patterns("analysis"))
    sweep = grokstack.load(out)
    settings = sweep.settings()
    assert (out / "analysis" / "settings.csv").is_file()
    assert settings.height == 2
    assert settings["seeds"].to_list() == [2, 2]
    assert settings["median_grok_epoch"].dtype == pl.Float64  # even when nothing grokked
    assert sweep.analyze(threshold=1.0, group_by=["model.hidden"], grok_rule="after-train") is sweep
    assert "after-train" in (out / "analysis" / "settings.md").read_text()
    assert not (out / "analysis" / "study.md").exists()
    # The study compares optimizers; the tiny sweep has one, so asking for it is the CLI's error.
    with pytest.raises(grokstack.GrokstackError, match="--study compares optimizers"):
        sweep.analyze(study=True)


def test_to_pandas(tiny):
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    assert len(tiny.runs.to_pandas()) == 4


def test_export_equals_the_cli_file(tmp_path, tiny):
    weights = tiny.export(3)
    path = tmp_path / "run3.safetensors"
    subprocess.run(["grokstack", "export", str(tiny.dir), "--run", "3", "--out", str(path)], check=True, capture_output=True)
    expected = load_file(str(path))
    assert list(weights) == sorted(expected) == ["embedding.weight", "layers.0.weight", "layers.1.weight"]
    for name, array in expected.items():
        assert weights[name].dtype == array.dtype
        assert weights[name].shape == array.shape
        np.testing.assert_array_equal(weights[name], array)
    assert weights["layers.0.weight"].shape == (16, 16) and weights["layers.1.weight"].shape == (13, 16)
    _, metadata = grokstack.read_safetensors(path)
    assert metadata["format"] == "grokstack-run-1" and metadata["run_id"] == "3"
    assert json.loads(metadata["config"])["train.lr"] == 0.02


def test_export_of_a_missing_run(tiny):
    with pytest.raises(grokstack.GrokstackError, match="no run 99"):
        tiny.export(99)


def test_split_is_the_runs(tiny):
    """The rows of run 3: every pair once, (a + b) mod 13, the train rows
    floor(0.6 · 169) of them in the order of tests/grokstack_data.py: the source tree's
    _data.py, whose splits the Rust tests' checks (tests/export_check.py) confirm by
    reproducing grokstack's test accuracies, against the installed package's."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import grokstack_data
    finally:
        sys.path.remove(str(REPO / "tests"))
    parts = tiny.split(3)
    (train, train_labels), (test, test_labels) = parts["train"], parts["test"]
    assert train.shape == (101, 2) and test.shape == (68, 2) and train.dtype == np.int64
    symbols, labels = np.concatenate([train, test]), np.concatenate([train_labels, test_labels])
    assert sorted(map(tuple, symbols.tolist())) == [(a, b) for a in range(13) for b in range(13)]
    np.testing.assert_array_equal(labels, symbols.sum(axis=1) % 13)
    seed = tiny.runs.filter(pl.col("run_id") == 3)["seed"].item()
    expected_train, _ = grokstack_data.split({"task.op": "add", "task.p": 13, "task.train_fraction": 0.6}, seed)
    assert [tuple(row) for row in train.tolist()] == [(a, b) for a, b, _ in expected_train]


def _one_run(tmp_path, name, task):
    """A one-run sweep of `task` trained for an epoch: enough to have a split."""
    sweep = {"name": name, "seeds": 1, "task": task, "model": TINY["model"], "train": {"epochs": 1}}
    return grokstack.train(sweep, tmp_path / name)


def _rows(parts):
    """Train and test rows together, as {(a, b): label}, asserting that no pair repeats."""
    symbols = np.concatenate([parts["train"][0], parts["test"][0]])
    labels = np.concatenate([parts["train"][1], parts["test"][1]])
    rows = {(a, b): label for (a, b), label in zip(symbols.tolist(), labels.tolist())}
    assert len(rows) == len(labels)
    return rows


def test_split_of_expressions_is_their_defined_pairs(tmp_path):
    """x/y for odd y (y has an inverse mod the prime 11 unless y = 0), x·y for even y; and x/y
    mod 15, defined where y shares no factor with 15."""
    mixed = _one_run(tmp_path, "mixed", {"op": "x/y if y%2==1 else x*y", "p": 11, "train_fraction": 0.5})
    rows = _rows(mixed.split(0))
    assert set(rows) == {(x, y) for x in range(11) for y in range(11)}
    for (x, y), label in rows.items():
        assert label == (x * pow(y, -1, 11) % 11 if y % 2 == 1 else x * y % 11), (x, y)

    quotient = _one_run(tmp_path, "quotient", {"op": "x / y", "p": 15, "train_fraction": 0.5})
    parts = quotient.split(0)
    rows = _rows(parts)
    assert set(rows) == {(x, y) for x in range(15) for y in range(15) if y % 3 != 0 and y % 5 != 0}
    for (x, y), label in rows.items():
        assert label * y % 15 == x, (x, y)
    assert len(parts["train"][1]) == len(rows) // 2


def _write_table(path, split=None):
    """A table of (a + 2b) mod 5 over a, b in [0, 5), rows in reverse row-major order, as CSV
    or Parquet by `path`'s suffix."""
    pairs = [(a, b) for a in range(5) for b in range(5)][::-1]
    columns = {"a": [a for a, _ in pairs], "b": [b for _, b in pairs], "label": [(a + 2 * b) % 5 for a, b in pairs]}
    if split is not None:
        columns["split"] = split
    frame = pl.DataFrame(columns)
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return pairs


def test_split_of_a_table_without_a_split_column_is_the_seeded_shuffle(tmp_path):
    """The file's rows in file order, shuffled by the run's seed as a built-in task's are: the
    same split as a task with the same rows (add mod 5 has 25 rows too)."""
    pairs = _write_table(tmp_path / "table.csv")
    table = _one_run(tmp_path, "table", {"table": str(tmp_path / "table.csv"), "train_fraction": 0.6})
    parts = table.split(0)
    assert len(parts["train"][1]) == 15 and len(parts["test"][1]) == 10
    assert _rows(parts) == {(a, b): (a + 2 * b) % 5 for a, b in pairs}
    seed = table.runs["seed"].item()
    add = _data.split({"task.op": "add", "task.p": 5, "task.skip_zero": False, "task.train_fraction": 0.6}, seed)
    # Both shuffle row positions 0..24 alike; add's row at position 5a + b is (a, b).
    positions = [5 * a + b for a, b in add["train"][0].tolist()]
    assert [tuple(row) for row in parts["train"][0].tolist()] == [pairs[i] for i in positions]


@pytest.mark.parametrize("file, split", [("fixed.csv", ["train", "test"]), ("fixed.parquet", [True, False])])
def test_split_of_a_table_with_a_split_column_is_that_split(tmp_path, file, split):
    """Train and test rows as the `split` column (strings or booleans) says, in file order."""
    is_train = [i % 3 != 0 for i in range(25)]
    pairs = _write_table(tmp_path / file, [split[0] if train else split[1] for train in is_train])
    table = _one_run(tmp_path, "fixed", {"table": str(tmp_path / file)})
    parts = table.split(0)
    train = [pair for pair, in_train in zip(pairs, is_train) if in_train]
    test = [pair for pair, in_train in zip(pairs, is_train) if not in_train]
    assert [tuple(row) for row in parts["train"][0].tolist()] == train
    assert [tuple(row) for row in parts["test"][0].tolist()] == test
    np.testing.assert_array_equal(parts["test"][1], [(a + 2 * b) % 5 for a, b in test])


def test_a_dicts_table_paths_are_relative_to_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "rows.csv").write_text("a,b,label\n" + "".join(f"{a},{b},{(a + b) % 5}\n" for a in range(5) for b in range(5)))
    monkeypatch.chdir(tmp_path)
    base = {"model": {"embed_dim": 4, "hidden": [8]}, "train": {"epochs": 1}}
    for name, sweep in [("base", {**base, "task": {"table": "rows.csv", "train_fraction": 0.5}}),
                        ("grid", {**base, "task": {"train_fraction": 0.5}, "grid": {"task.table": ["rows.csv"]}}),
                        ("linked", {**base, "grid": {"rows": [{"task.table": "rows.csv", "task.train_fraction": 0.5}]}})]:
        runs = grokstack.train({"name": name, **sweep}, tmp_path / name).runs
        assert runs["task.table"].to_list() == [str(tmp_path / "rows.csv")], name
        assert runs["task.p"].to_list() == [5], name


def test_split_of_the_tasks_python_does_not_rebuild_comes_from_the_trainer(tmp_path):
    """S5's rows: every pair of its 120 elements once, split in half, as the trainer has them."""
    sweep = grokstack.train({"name": "s5", "task": {"op": "s5_compose", "train_fraction": 0.5},
                             "model": {"embed_dim": 8, "hidden": [16]}, "train": {"epochs": 1}}, tmp_path / "out")
    parts = sweep.split(0)
    assert [len(labels) for _, labels in parts.values()] == [7200, 7200]
    symbols = np.concatenate([symbols for symbols, _ in parts.values()])
    assert sorted(map(tuple, symbols.tolist())) == [(a, b) for a in range(120) for b in range(120)]
    logits = sweep.logits(0)
    for part, (symbols, labels) in parts.items():
        assert (symbols == logits[part][0]).all() and (labels == logits[part][1]).all()


def test_to_torch_without_torch_names_the_extra(tiny):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed: test_torch.py tests to_torch")
    with pytest.raises(ImportError, match=r"Sweep.to_torch needs the torch extra .*: pip install 'grokstack\[torch\]'"):
        tiny.to_torch(0)
    with pytest.raises(ImportError, match=r"pip install 'grokstack\[transformer-lens\]'"):
        tiny.to_transformer_lens(0)


def test_bf16_reads_as_float32(tmp_path):
    values = np.array([[1.0, -2.5], [0.15625, 2.0**100]], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")  # exact: these need no rounding
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}, "i": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16.tobytes() + struct.pack("<q", -7))
    tensors, metadata = grokstack.read_safetensors(path)
    assert tensors["w"].dtype == np.float32 and metadata == {}
    np.testing.assert_array_equal(tensors["w"], values)
    assert tensors["i"].tolist() == [-7]


def test_a_bad_key_raises_with_the_cli_message(tmp_path):
    bad = {**TINY, "train": {**TINY["train"], "lrr": 0.1}}
    with pytest.raises(grokstack.GrokstackError, match=r"key `train\.lrr`: unknown key") as caught:
        grokstack.train(bad, tmp_path / "bad")
    assert caught.value.returncode != 0
    assert not (tmp_path / "bad").exists()

    sweep_file = tmp_path / "ok.toml"
    sweep_file.write_text(grokstack.toml_dumps(TINY))
    with pytest.raises(grokstack.GrokstackError) as caught:
        grokstack.train(sweep_file, tmp_path / "bad", overrides={"train.lrr": 1})
    cli = subprocess.run(["grokstack", "train", str(sweep_file), "--out", str(tmp_path / "bad"), "--set", "train.lrr=1"], capture_output=True, text=True)
    assert cli.returncode != 0
    assert f"error: {caught.value}" == cli.stderr.strip() == "error: --set train.lrr=1: unknown key `train.lrr`"


def test_overrides_must_be_a_dict_or_a_list(tmp_path):
    with pytest.raises(TypeError):
        grokstack.train(TINY, tmp_path / "x", overrides="train.lr=0.1")


def test_shards_read_before_and_after_the_merge(tmp_path, tiny):
    out = tmp_path / "sharded"
    first = grokstack.train(TINY, out, shard="0/2")
    assert first.dir == out and first.runs.height == 2  # one setting of two, both seeds
    with pytest.warns(UserWarning, match="missing"):
        first.merge()
    grokstack.train(TINY, out, shard="1/2")
    sweep = grokstack.load(out).merge()
    assert (out / "runs.parquet").is_file()
    assert sweep.runs.equals(tiny.runs.sort("run_id"))
    assert sweep.metrics.collect().sort("run_id", "epoch").equals(tiny.metrics.collect().sort("run_id", "epoch"))
    assert sweep.export(3).keys() == tiny.export(3).keys()


def test_unmerged_shards_read_as_one_sweep(tmp_path, tiny):
    out = tmp_path / "unmerged"
    for k in range(2):
        grokstack.train(TINY, out, shard=f"{k}/2")
    sweep = grokstack.load(out)
    assert not (out / "runs.parquet").exists()
    assert sweep.runs.equals(tiny.runs.sort("run_id"))
    assert sweep.metrics.collect().sort("run_id", "epoch").equals(tiny.metrics.collect().sort("run_id", "epoch"))
    (out / "shards" / "0-of-3").mkdir()
    with pytest.raises(grokstack.GrokstackError, match="shards of 2 and 3"):
        sweep.runs
