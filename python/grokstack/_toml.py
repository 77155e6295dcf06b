"""A TOML writer for the sweep dictionaries that `grokstack.train` accepts.

Python has a TOML reader (tomllib, 3.11+) but no writer, and the package depends only on polars
and numpy, so sweeps are written here: top-level keys, one `[table]` per nested dict (dicts inside
those become `[table.sub]`), lists, and dicts inside lists as inline tables (the grid's linked
axes). TOML has no null, so None is an error, as is any type TOML cannot hold.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, List, Mapping

__all__ = ["dumps", "format_value"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def dumps(document: Mapping[str, Any]) -> str:
    """The TOML text of `document` (a mapping of str keys)."""
    lines: List[str] = []
    _write_table(document, [], lines)
    return "\n".join(lines) + "\n"


def format_value(value: Any, where: str = "value") -> str:
    """One TOML value (as on the right of `key =`, or in `--set key=VALUE`)."""
    if isinstance(value, bool):  # before Integral: bool is an int
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return repr(x)  # always has a '.' or an exponent, so TOML reads a float back
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_key(k, where)} = {format_value(v, f'{where}.{k}')}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    raise TypeError(f"{where}: TOML cannot hold {value!r} (a {type(value).__name__})")


def _write_table(table: Mapping[str, Any], path: List[str], lines: List[str]) -> None:
    where = ".".join(path) or "the sweep"
    subtables = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            subtables.append((key, value))
        else:
            lines.append(f"{_key(key, where)} = {format_value(value, '.'.join(path + [str(key)]))}")
    for key, value in subtables:
        header = path + [_key(key, where)]
        if lines:
            lines.append("")
        lines.append("[" + ".".join(header) + "]")
        _write_table(value, header, lines)


def _key(key: Any, where: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{where}: TOML keys are strings, not {key!r}")
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
