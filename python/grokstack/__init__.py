"""grokstack from Python: train sweeps of small grokking networks stacked into one model, and
read their results as polars frames and numpy arrays.

    import grokstack
    sweep = grokstack.train("sweeps/quick.toml", out="runs/quick")
    sweep.settings()           # grok statistics per setting (polars DataFrame)
    sweep.runs, sweep.metrics  # runs.parquet (DataFrame), metrics parts (LazyFrame)
    weights = sweep.export(0)  # {name: numpy array}, PyTorch names and layout
    model = sweep.to_torch(0)  # the run as a torch nn.Module (extra `torch`)
    sweep.to_transformer_lens(0)  # a transformer run as a HookedTransformer (extra `transformer-lens`)

The work is done by the `grokstack` binary that the wheel installs (also `python -m grokstack`).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._cli import GrokstackError, find_binary
from ._safetensors import read_safetensors
from ._toml import dumps as toml_dumps
from .sweep import Sweep, load, train

try:
    __version__ = version("grokstack")
except PackageNotFoundError:  # running from the source tree
    __version__ = "unknown"

__all__ = ["GrokstackError", "Sweep", "find_binary", "load", "read_safetensors", "toml_dumps", "train", "__version__"]
