"""A run's rows and its train/test split, rebuilt in Python from its config and seed (for
`Sweep.split`): grokstack's random generator (src/rng.rs) and the rows of its tasks
(src/tasks.rs, src/data.rs), as tests/grokstack_data.py mirrors them for the Rust tests.

S5's tasks and sparse parity are not rebuilt here (their rows need S5's tables or sparse
parity's sampled strings); asking for them raises with that reason."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

__all__ = ["split"]

_MASK = (1 << 64) - 1
#: src/rng.rs's stream of the train/test shuffle.
_SPLIT_STREAM = 1


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _MASK


class _Rng:
    """xoshiro256** seeded through SplitMix64, one stream per use (src/rng.rs)."""

    def __init__(self, seed: int, stream: int):
        mix = (seed ^ (stream * 0xA0761D6478BD642F)) & _MASK
        self.s: List[int] = []
        for _ in range(4):
            mix = (mix + 0x9E3779B97F4A7C15) & _MASK
            z = mix
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
            self.s.append(z ^ (z >> 31))

    def next_u64(self) -> int:
        s = self.s
        result = (_rotl((s[1] * 5) & _MASK, 7) * 9) & _MASK
        t = (s[1] << 17) & _MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def below(self, n: int) -> int:
        """Uniform in [0, n): Lemire's multiply-and-reject."""
        while True:
            product = self.next_u64() * n
            if product & _MASK >= ((-n) & _MASK) % n:
                return product >> 64

    def shuffle(self, items: List[int]) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def _inverse(b: int, p: int) -> int:
    return pow(b, p - 2, p)  # Fermat: p is prime for the operations that divide


# src/tasks.rs's binary_label, by canonical name and by openai/grok's strings; None leaves the
# pair out (b = 0 for division).
_Label = Callable[[int, int, int], Optional[int]]
_CANONICAL: Dict[str, _Label] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    "div": lambda a, b, p: None if b == 0 else a * _inverse(b, p) % p,
    "exp": lambda a, b, p: pow(a, b, p),
    "gcd": lambda a, b, p: math.gcd(a, b),
    "x**2+y": lambda a, b, p: (a * a + b) % p,
    "x**3+y": lambda a, b, p: (a**3 + b) % p,
    "x**2+y**2": lambda a, b, p: (a * a + b * b) % p,
    "x**2+x*y+y**2": lambda a, b, p: (a * a + a * b + b * b) % p,
    "x**2+x*y+y**2+x": lambda a, b, p: (a * a + a * b + b * b + a) % p,
    "x**3+x*y": lambda a, b, p: (a**3 + a * b) % p,
    "x**3+x*y**2+y": lambda a, b, p: (a**3 + a * b * b + b) % p,
    "mix1": lambda a, b, p: a * _inverse(b, p) % p if b % 2 == 1 else (a - b) % p,
}
_ALIASES = {
    "+": "add", "-": "sub", "*": "mul", "/": "div", "**2+": "x**2+y", "**3+": "x**3+y",
    "x/y if y%2==1 else x-y": "mix1", "(x._value//y)if(y._value%2==1)else(x-y)_mod_97": "mix1",
    "x**2+y**2_mod_97": "x**2+y**2", "x**2+y**2+x*y_mod_97": "x**2+x*y+y**2",
    "x**2+y**2+x*y+x_mod_97": "x**2+x*y+y**2+x", "x**3+x*y_mod_97": "x**3+x*y", "x**3+x*y**2+y_mod_97": "x**3+x*y**2+y",
}


def examples(config: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """Every row of the run's task in grokstack's order: (symbols [N, K], labels [N]), int64.
    Operand pairs (a, b) row-major (from 1 with `task.skip_zero`), or parity's 2^bits strings
    in counting order, bit i of a string its symbol i."""
    op = config["task.op"]
    if op == "parity":
        n = config["task.bits"]
        strings = np.arange(1 << n, dtype=np.int64)
        bits = (strings[:, None] >> np.arange(n)) & 1  # [2^n, n]
        return bits, bits.sum(axis=1) % 2
    label = _CANONICAL.get(_ALIASES.get(op, op))
    if label is None:
        raise NotImplementedError(
            f"task.op = {op!r}: Python rebuilds the rows of the modular operations and of parity only "
            "(S5's need its tables, sparse parity's its sampled strings)"
        )
    p = config["task.p"]
    first = 1 if config["task.skip_zero"] else 0
    rows = [(a, b, y) for a in range(first, p) for b in range(first, p) if (y := label(a, b, p)) is not None]
    table = np.array(rows, dtype=np.int64)  # [N, 3]
    return table[:, :2], table[:, 2]


def split(config: Mapping[str, Any], seed: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """The run's {"train": (symbols, labels), "test": (symbols, labels)}: its seed's shuffle of
    every row, the first floor(train_fraction · N) of them train (src/data.rs)."""
    symbols, labels = examples(config)
    order = list(range(len(labels)))
    _Rng(seed, _SPLIT_STREAM).shuffle(order)
    n_train = math.floor(config["task.train_fraction"] * len(labels))
    train, test = np.array(order[:n_train], dtype=np.int64), np.array(order[n_train:], dtype=np.int64)
    return {"train": (symbols[train], labels[train]), "test": (symbols[test], labels[test])}
