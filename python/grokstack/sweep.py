"""Training, loading and reading sweeps: `train`, `load` and the `Sweep` they return."""
from __future__ import annotations

import importlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import polars as pl

from . import _cli, _data
from ._cli import GrokstackError
from ._safetensors import read_safetensors
from ._toml import dumps, format_value

if TYPE_CHECKING:
    import torch
    from transformer_lens import HookedTransformer

__all__ = ["Sweep", "train", "load"]

PathLike = Union[str, "os.PathLike[str]"]
Overrides = Union[Mapping[str, Any], Iterable[str]]

#: `grokstack merge`'s exit status when runs are missing or duplicated.
_INCOMPLETE_MERGE = 2
_STATISTICS = ("grokked_fraction", "median_grok_epoch", "q25_grok_epoch", "q75_grok_epoch", "median_lipschitz_at_grok")
_NAME_LINE = re.compile(r'^name\s*=\s*"(.*)"\s*$', re.MULTILINE)


class Sweep:
    """The output directory of `grokstack train` (layout: docs/OUTPUT.md).

    Every attribute reads the files when asked, so a sweep that is still training shows the
    runs finished so far."""

    def __init__(self, dir: PathLike):
        self.dir = Path(dir)
        sweep_file = self.dir / "sweep.toml"
        if not sweep_file.is_file():
            raise GrokstackError(f"{self.dir} holds no sweep: {sweep_file} does not exist")
        # The resolved sweep.toml puts `name` first, before any table; tomllib is 3.11+ only.
        found = _NAME_LINE.search(sweep_file.read_text().split("\n[", 1)[0])
        self.name: str = found.group(1) if found else self.dir.name

    @property
    def runs(self) -> pl.DataFrame:
        """runs.parquet: one row per finished run (`.to_pandas()` needs the `pandas` extra). In a
        directory of shards not merged yet, every shard's finished runs, by run id."""
        files = [folder / "runs.parquet" for folder in self._result_folders() if (folder / "runs.parquet").is_file()]
        if not files:
            raise GrokstackError(f"{self.dir} has no finished run yet ({self.dir / 'runs.parquet'} does not exist)")
        if files == [self.dir / "runs.parquet"]:
            return pl.read_parquet(files[0])
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed").sort("run_id")

    @property
    def metrics(self) -> pl.LazyFrame:
        """metrics.parquet: one row per run and logged epoch, lazily over its parts (in a
        directory of shards not merged yet, over every shard's parts)."""
        parts = [str(p) for folder in self._result_folders() for p in sorted((folder / "metrics.parquet").glob("*.parquet"))]
        if not parts:
            raise GrokstackError(f"{self.dir} has no metrics yet ({self.dir / 'metrics.parquet'} holds no part)")
        return pl.scan_parquet(parts)

    def merge(self) -> "Sweep":
        """Run `grokstack merge`: the shards in DIR/shards/ written as DIR's own runs.parquet and
        parts (what `export` reads). Runs still missing or duplicated are a warning, listing
        them; what is there is merged. Returns self."""
        try:
            _cli.run(["merge", self.dir])
        except GrokstackError as error:
            if error.returncode != _INCOMPLETE_MERGE:
                raise
            warnings.warn(f"{self.dir}: merged what the shards hold; missing or duplicated runs:\n{error.stderr.strip()}", stacklevel=2)
        return self

    def _result_folders(self) -> List[Path]:
        """Where results are: DIR itself, or (before a merge) its shards, which must all be of one
        shard count (shards of two would list runs twice)."""
        if (self.dir / "runs.parquet").is_file():
            return [self.dir]
        shards = sorted(p for p in (self.dir / "shards").glob("*-of-*") if p.is_dir())
        counts = sorted({p.name.split("-of-")[1] for p in shards})
        if len(counts) > 1:
            raise GrokstackError(f"{self.dir / 'shards'} holds shards of {' and '.join(counts)}: merge them first (Sweep.merge())")
        return shards or [self.dir]

    def analyze(
        self,
        threshold: float = 0.95,
        group_by: Union[str, Sequence[str], None] = None,
        grok_rule: str = "first",
        study: bool = False,
        circuit_threshold: float = 0.5,
    ) -> "Sweep":
        """Run `grokstack analyze` (writes DIR/analysis/, prints the headline); returns self, so
        that `sweep.analyze(threshold=1.0).settings()` reads the table it wrote. `study=True`
        also writes the optimizer study (`--study`: study.md, for two or more optimizers).
        `circuit_threshold` is `--circuit-threshold` (sweeps with `metrics.progress` only)."""
        args: List[Any] = ["analyze", self.dir, "--threshold", threshold, "--grok-rule", grok_rule]
        args += ["--circuit-threshold", circuit_threshold]
        if group_by:
            args += ["--group-by", group_by if isinstance(group_by, str) else ",".join(group_by)]
        if study:
            args.append("--study")
        _cli.run(args)
        return self

    def settings(self) -> pl.DataFrame:
        """analysis/settings.csv: one row per setting (runs equal but for the seed) with its grok
        statistics; analyzes the sweep with the defaults first if it was never analyzed."""
        path = self.dir / "analysis" / "settings.csv"
        if not path.is_file():
            self.analyze()
        # Statistics of settings that never grokked are empty cells, which alone would read as
        # strings.
        return pl.read_csv(path, schema_overrides={column: pl.Float64 for column in _STATISTICS})

    def export(self, run_id: int) -> Dict[str, np.ndarray]:
        """One run's final weights under PyTorch's names and `[out, in]` layout, as
        `grokstack export` writes them (bf16 weights come back as float32)."""
        return self._export(run_id)[0]

    def _export(self, run_id: int) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
        """`grokstack export`'s tensors and metadata (the run's config, seed and final metrics)."""
        with tempfile.TemporaryDirectory(prefix="grokstack-") as tmp:
            path = Path(tmp) / f"run{run_id}.safetensors"
            _cli.run(["export", self.dir, "--run", run_id, "--out", path], echo_stdout=False)
            return read_safetensors(path)

    def split(self, run_id: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """The run's rows as it trained on them: {"train": (symbols, labels), "test": (symbols,
        labels)}, symbols [N, 2] (operands a, b) or [N, bits], labels [N], int64. Rebuilt in
        Python from its config and seed as grokstack splits them (modular operations, task.op
        expressions, task.table files and parity); S5's tasks and sparse parity, whose rows
        Python does not rebuild, come from the trainer itself (`Sweep.logits`)."""
        _, metadata = self._export(run_id)
        try:
            return _data.split(json.loads(metadata["config"]), int(metadata["seed"]))
        except NotImplementedError:
            return {part: (symbols, labels) for part, (symbols, labels, _) in self.logits(run_id).items()}

    def logits(self, run_id: int) -> Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The run's logits as grokstack itself computes them (its evaluation pass on the final
        weights, `grokstack export --logits`): {"train": (symbols, labels, logits), "test": …},
        symbols [N, K] and labels [N] int64 in the order of the run's split, logits [N, C]
        (float32; float64 for f64 runs). For every task, S5 and sparse parity included."""
        with tempfile.TemporaryDirectory(prefix="grokstack-") as tmp:
            weights, logits = Path(tmp) / "run.safetensors", Path(tmp) / "logits.safetensors"
            _cli.run(["export", self.dir, "--run", run_id, "--out", weights, "--logits", logits], echo_stdout=False)
            tensors, _ = read_safetensors(logits)
        return {part: tuple(tensors[f"{part}.{what}"] for what in ("symbols", "labels", "logits")) for part in ("train", "test")}

    def to_torch(self, run_id: int) -> "torch.nn.Module":
        """The run as a PyTorch module (needs the `torch` extra), its final weights loaded, in
        eval mode: an MLP called on a row's symbols [N, K], or a transformer called on tokens
        [N, T] (`model.tokens(symbols)` makes them), both returning grokstack's logits [N, C].
        A bf16 run's module is float32, holding its bf16 weights exactly (its logits are those of
        f32 arithmetic on them, not of grokstack's bf16 pass). `model.config` holds the run's
        config."""
        _torch = _optional("_torch", "torch", "to_torch")
        tensors, metadata = self._export(run_id)
        return _torch.build(tensors, metadata)

    def to_transformer_lens(self, run_id: int) -> "HookedTransformer":
        """The run as TransformerLens's HookedTransformer (needs the `transformer-lens` extra), in
        eval mode, for the transformers it can express: pre-norm or no norm, any positions
        (none as a zero W_pos), GELU, ReLU or bias-free SwiGLU FFNs. Others raise
        NotImplementedError naming the option. Its logits are [N, T, C]; grokstack's are the
        last position's, `[:, -1]`."""
        lens = _optional("_transformer_lens", "transformer-lens", "to_transformer_lens")
        tensors, metadata = self._export(run_id)
        return lens.convert(lens.build(tensors, metadata))

    def __repr__(self) -> str:
        progress = self.dir / "progress.json"
        finished = ""
        if progress.is_file():
            counts = json.loads(progress.read_text())
            finished = f", {counts['finished_runs']}/{counts['total_runs']} runs finished"
        return f"Sweep({self.name!r}, dir={str(self.dir)!r}{finished})"


def train(
    sweep: Union[PathLike, Mapping[str, Any]],
    out: PathLike,
    overrides: Optional[Overrides] = None,
    device: str = "cpu",
    resume: bool = False,
    max_memory: Union[str, int, None] = None,
    shard: Optional[str] = None,
) -> Sweep:
    """Train every run of a sweep into `out` with `grokstack train`, and return it.

    `sweep` is a sweep file's path, or a dict of the same structure (sections as nested dicts,
    `"grid": {"train.lr": [...]}`), written as TOML to a temporary file. `overrides` are
    `--set`s: `{"train.lr": [0.01, 0.02], "seeds": 2}` or `["train.lr=[0.01,0.02]"]`.
    A dict's relative `task.table` paths are relative to the current directory (a file's, to
    the file). `max_memory` is a size like "8GiB" or bytes. `shard="K/N"` trains shard K of N into
    `out/shards/K-of-N/` (the returned Sweep reads all shards; `merge()` joins them). The CLI's
    progress goes to sys.stderr; a failure (e.g. an unknown key) raises GrokstackError with the
    CLI's message."""
    args: List[Any] = ["--out", out, "--device", device]
    for assignment in _assignments(overrides):
        args += ["--set", assignment]
    if resume:
        args.append("--resume")
    if max_memory is not None:
        args += ["--max-memory", max_memory]
    if shard is not None:
        args += ["--shard", shard]
    if isinstance(sweep, Mapping):
        # Not in `out`: the CLI refuses a directory that holds anything but its own sweep.
        with tempfile.TemporaryDirectory(prefix="grokstack-") as tmp:
            path = Path(tmp) / "sweep.toml"
            path.write_text(dumps(_tables_from_cwd(sweep)))
            _cli.run(["train", path, *args])
    else:
        _cli.run(["train", sweep, *args])
    return Sweep(out)


def _tables_from_cwd(sweep: Mapping[str, Any]) -> Dict[str, Any]:
    """`sweep` with its relative `task.table` paths made absolute from the current directory:
    the CLI reads them relative to the sweep file, which for a dict is a temporary one."""
    def absolute(path: Any) -> Any:
        return str(Path(path).absolute()) if isinstance(path, (str, os.PathLike)) else path

    out = {key: dict(value) if isinstance(value, Mapping) else value for key, value in sweep.items()}
    if isinstance(out.get("task"), dict) and "table" in out["task"]:
        out["task"]["table"] = absolute(out["task"]["table"])
    for name, axis in (out.get("grid") or {}).items():
        if name == "task.table" and isinstance(axis, list):
            out["grid"][name] = [absolute(path) for path in axis]
        elif isinstance(axis, list):  # a linked axis: a list of {key: value} cases
            out["grid"][name] = [
                {key: absolute(value) if key == "task.table" else value for key, value in case.items()}
                if isinstance(case, Mapping) else case
                for case in axis
            ]
    return out


def load(dir: PathLike) -> Sweep:
    """The sweep that `grokstack train` wrote (or is writing) to `dir`."""
    return Sweep(dir)


def _optional(module: str, extra: str, method: str) -> ModuleType:
    """grokstack's module for an optional dependency (`_torch`, `_transformer_lens`), or an
    ImportError that names the extra to install."""
    try:
        return importlib.import_module(f"{__package__}.{module}")
    except ImportError as error:
        raise ImportError(f"Sweep.{method} needs the {extra} extra ({error}): pip install 'grokstack[{extra}]'") from error


def _assignments(overrides: Optional[Overrides]) -> List[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={format_value(value, key)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise TypeError("overrides: a dict or a list of 'KEY=VALUE' strings, not one string")
    return [str(item) for item in overrides]
