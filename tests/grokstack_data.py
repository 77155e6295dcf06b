"""A run's rows and its train/test split for the checks that rebuild a run outside grokstack
(tests/export_check.py, tests/progress_check.py, tests/transformer_check.py): the package's own
python/grokstack/_data.py, loaded by its path so that the checks need the package neither built
nor installed (it imports only numpy), with its arrays as the (a, b, label) rows the checks use.
"""
import importlib.util
from pathlib import Path

_DATA_PY = Path(__file__).resolve().parent.parent / "python" / "grokstack" / "_data.py"
_spec = importlib.util.spec_from_file_location("grokstack_data_py", _DATA_PY)
_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_data)


def _complete(config):
    """The checks' configs come from exports, which have every key; hand-written ones may
    leave out task.skip_zero, whose default is off."""
    return {"task.skip_zero": False, **config}


def _rows(symbols, labels):
    return [(a, b, label) for (a, b), label in zip(symbols.tolist(), labels.tolist())]


def examples(config):
    """Every row (a, b, label) of a task of operand pairs, in grokstack's order."""
    return _rows(*_data.examples(_complete(config)))


def split(config, seed):
    """A run's (train, test) rows, each a list of (a, b, label)."""
    parts = _data.split(_complete(config), seed)
    return _rows(*parts["train"]), _rows(*parts["test"])
