"""A run's rows and its train/test split, rebuilt in Python from its config and seed (for
`Sweep.split`, and for the Rust tests' checks through tests/grokstack_data.py): grokstack's
random generator (src/rng.rs), the rows of its tasks (src/tasks/, src/data.rs), task.op
expressions evaluated as src/tasks/expression/mod.rs documents them, and task.table files.

S5's tasks and sparse parity are not rebuilt here (their rows need S5's tables or sparse
parity's sampled strings); asking for them raises with that reason."""
from __future__ import annotations

import ast
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

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


# openai/grok's two operators that are not expressions themselves (src/tasks/mod.rs's OP_ALIASES).
_EXPRESSION_ALIASES = {"+*": "x+y if x%2==0 else x*y", "+-": "x+y if x%2==0 else x-y"}
_NOT_REBUILT = {"s5_compose", "s5_conjugate", "s5_aba", "s5", "s5conj", "s5aba", "sparse_parity"}

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class _Column:
    """A run-time value or condition at every pair: `values` (a condition's are 0 or 1) and
    whether the pair has one (`defined`; elsewhere `values` is a placeholder)."""

    def __init__(self, values: np.ndarray, defined: np.ndarray, is_condition: bool = False):
        self.values, self.defined, self.is_condition = values, defined, is_condition

    def truth(self) -> np.ndarray:
        return self.values != 0


# A sub-expression's meaning: an int is a constant folded exactly at parse time (only constants
# and `+ - * ** // %`), as src/tasks/expression/mod.rs folds them; anything else is a _Column.
_Meaning = Union[int, _Column]


def _in_int64(value: int, written: str) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{written}: constant too large: constants must fit in 64-bit signed integers")
    return value


# The arithmetic operators: how each is written, and its exact value on two constants (None for
# `/`, modular division, which depends on p and so is never folded).
_ARITHMETIC: Dict[type, Tuple[str, Optional[Callable[[int, int], int]]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", None),
    ast.FloorDiv: ("//", lambda a, b: a // b),
    ast.Mod: ("%", lambda a, b: a % b),
    ast.Pow: ("**", lambda a, b: a**b),
}


def _fold_constants(symbol: str, exact: Callable[[int, int], int], left: int, right: int) -> int:
    """Python's exact integer arithmetic on two constants, refusing what grokstack refuses."""
    written = f"`{left} {symbol} {right}`"
    if symbol in ("//", "%") and right == 0:
        raise ValueError(f"{written}: division by zero among constants")
    if symbol == "**" and right < 0:
        raise ValueError(f"{written}: a negative exponent among constants is not an integer")
    if symbol == "**" and abs(left) >= 2 and right >= 64:  # past 2^63 already: not worth computing
        return _in_int64(1 << 64, written)
    return _in_int64(exact(left, right), written)


# The comparisons, on the values as integers.
_COMPARISONS = {
    ast.Eq: np.equal, ast.NotEq: np.not_equal, ast.Lt: np.less,
    ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
}


class _PairEvaluator:
    """Evaluates an expression's syntax tree at every pair (x, y) at once, with numpy: each
    operator as src/tasks/expression/mod.rs's module documentation defines it. Residues stay
    below p ≤ 4096 (the limit of task.p), so products of two fit in int64."""

    def __init__(self, source: str, x: np.ndarray, y: np.ndarray, p: int):
        self.source, self.x, self.y, self.p = source, x, y, p
        # The inverse of every residue mod p, -1 where it has none (p may be composite).
        self.inverses = np.array([pow(b, -1, p) if math.gcd(b, p) == 1 else -1 for b in range(p)], dtype=np.int64)

    def column(self, meaning: _Meaning) -> _Column:
        if isinstance(meaning, _Column):
            return meaning
        return _Column(np.full(self.x.shape, meaning, dtype=np.int64), np.ones(self.x.shape, dtype=bool))

    def value(self, node: ast.expr, what: str) -> _Meaning:
        """The meaning of `node`, which `what` (an operator) needs to be a value."""
        meaning = self.evaluate(node)
        if isinstance(meaning, _Column) and meaning.is_condition:
            raise ValueError(f"{what} needs values, but an operand is a condition (a comparison, `and`, `or` or `not`)")
        return meaning

    def evaluate(self, node: ast.expr) -> _Meaning:
        if isinstance(node, ast.Name) and node.id in ("x", "y"):
            return _Column(self.x if node.id == "x" else self.y, np.ones(self.x.shape, dtype=bool))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            written = ast.get_source_segment(self.source, node) or ""
            if not written.isdigit():
                raise ValueError(f"`{written}`: constants are written in decimal digits only")
            return _in_int64(node.value, f"`{written}`")
        if isinstance(node, ast.Attribute) and node.attr == "_value":
            return self.evaluate(node.value)  # the identity, on a condition too
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.BoolOp):
            return self.logical(isinstance(node.op, ast.And), [self.column(self.evaluate(v)) for v in node.values])
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.IfExp):
            return self.choose(node)
        raise ValueError(
            f"{type(node).__name__} `{ast.get_source_segment(self.source, node)}` is not part of a task expression "
            "(x, y, integer constants, + - * / // % **, "
            "comparisons, and/or/not, `A if C else B` and `._value`)"
        )

    def unary(self, node: ast.UnaryOp) -> _Meaning:
        if isinstance(node.op, ast.Not):
            operand = self.column(self.evaluate(node.operand))
            return _Column((~operand.truth()).astype(np.int64), operand.defined, is_condition=True)
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise ValueError(f"{type(node.op).__name__} is not part of a task expression")
        operand = self.value(node.operand, "unary minus or plus")
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(operand, int):
            return _in_int64(-operand, f"`-{operand}`")
        return _Column(-operand.values % self.p, operand.defined)

    def binary(self, node: ast.BinOp) -> _Meaning:
        operator = node.op
        if type(operator) not in _ARITHMETIC:
            raise ValueError(f"{type(operator).__name__} is not part of a task expression")
        symbol, exact = _ARITHMETIC[type(operator)]
        left, right = self.value(node.left, f"`{symbol}`"), self.value(node.right, f"`{symbol}`")
        if isinstance(left, int) and isinstance(right, int) and exact is not None:
            return _fold_constants(symbol, exact, left, right)
        left, right = self.column(left), self.column(right)
        defined = left.defined & right.defined
        p = self.p
        if symbol == "+":
            return _Column((left.values % p + right.values % p) % p, defined)
        if symbol == "-":
            return _Column((left.values % p - right.values % p) % p, defined)
        if symbol == "*":
            return _Column(left.values % p * (right.values % p) % p, defined)
        if symbol in ("/", "//"):
            inverse = self.inverses[right.values % p]
            return _Column(left.values % p * np.maximum(inverse, 0) % p, defined & (inverse >= 0))
        if symbol == "%":
            # Python's remainder of the integers; a divisor of -1 leaves 0 like 1 does, and
            # keeps numpy away from INT64_MIN % -1.
            divisor = np.where((right.values == 0) | (right.values == -1), 1, right.values)
            return _Column(np.remainder(left.values, divisor), defined & (right.values != 0))
        return self.power(left.values % p, right.values, defined)

    def power(self, base: np.ndarray, exponent: np.ndarray, defined: np.ndarray) -> _Column:
        """base^exponent mod p by square-and-multiply; a negative exponent raises the inverse."""
        negative = exponent < 0
        inverse = self.inverses[base]
        defined = defined & ~(negative & (inverse < 0))
        square = np.where(negative, np.maximum(inverse, 0), base)
        # -INT64_MIN wraps to INT64_MIN, whose unsigned reading is 2^63, its magnitude.
        with np.errstate(over="ignore"):
            remaining = np.where(negative, -exponent, exponent).astype(np.uint64)
        result = np.full(base.shape, 1 % self.p, dtype=np.int64)
        while remaining.any():
            odd = (remaining & np.uint64(1)).astype(bool)
            result = np.where(odd, result * square % self.p, result)
            square = square * square % self.p
            remaining = remaining >> np.uint64(1)
        return _Column(result, defined)

    def logical(self, is_and: bool, operands: List[_Column]) -> _Column:
        """`and`/`or` as conditions; the right side counts only where the left does not decide."""
        truth, defined = operands[0].truth(), operands[0].defined
        for operand in operands[1:]:
            decided = ~truth if is_and else truth
            defined = defined & (decided | operand.defined)
            truth = truth & operand.truth() if is_and else truth | operand.truth()
        return _Column(truth.astype(np.int64), defined, is_condition=True)

    def compare(self, node: ast.Compare) -> _Column:
        """A chain a < b < c as (a < b) and (b < c), the integers compared as they are."""
        links = []
        left = self.column(self.value(node.left, "comparison"))
        for operator, comparator in zip(node.ops, node.comparators):
            if type(operator) not in _COMPARISONS:
                raise ValueError(f"{type(operator).__name__} is not part of a task expression")
            right = self.column(self.value(comparator, "comparison"))
            holds = _COMPARISONS[type(operator)](left.values, right.values)
            links.append(_Column(holds.astype(np.int64), left.defined & right.defined, is_condition=True))
            left = right
        return self.logical(True, links)

    def choose(self, node: ast.IfExp) -> _Column:
        """`A if C else B`: only the chosen branch needs to be defined."""
        condition = self.column(self.evaluate(node.test))
        chosen, otherwise = self.column(self.evaluate(node.body)), self.column(self.evaluate(node.orelse))
        if chosen.is_condition != otherwise.is_condition:
            raise ValueError("the branches of `if` must both be values or both be conditions")
        picks = condition.truth()
        defined = condition.defined & np.where(picks, chosen.defined, otherwise.defined)
        return _Column(np.where(picks, chosen.values, otherwise.values), defined, chosen.is_condition)


def _expression_body(text: str) -> str:
    """`text` as Python can parse it: without openai/grok's trailing `_mod_<digits>` (the
    modulus is task.p), the surrounding whitespace, and the leading zeros of integers (grokstack
    reads `07` as 7, Python refuses it)."""
    body = text.strip()
    digits = len(body) - len(body.rstrip("0123456789"))
    if digits and body[: len(body) - digits].endswith("_mod_"):
        body = body[: len(body) - digits - len("_mod_")]
    pieces, start = [], 0
    while start < len(body):
        end = start + 1
        if body[start].isdigit() and (start == 0 or not (body[start - 1].isalnum() or body[start - 1] == "_")):
            while end < len(body) and body[end].isdigit():
                end += 1
            pieces.append(body[start:end].lstrip("0") or "0")
        else:
            pieces.append(body[start])
        start = end
    return "".join(pieces).strip()


def expression_rows(text: str, p: int, first: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The rows of the task.op expression `text` mod p: its defined pairs (a, b), a and b in
    [first, p) row-major, as symbols [N, 2], and their labels [N] (the value mod p), int64.
    Raises ValueError for text grokstack would not accept as an expression."""
    body = _expression_body(text)
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"task.op = {text!r} is not an expression in x and y: {error.msg}") from None
    operands = np.arange(first, p, dtype=np.int64)
    x, y = np.repeat(operands, len(operands)), np.tile(operands, len(operands))
    evaluator = _PairEvaluator(body, x, y, p)
    meaning = evaluator.evaluate(tree.body)
    if isinstance(meaning, _Column) and meaning.is_condition:
        raise ValueError(f"task.op = {text!r} is a condition, not a value: a label must be a number")
    result = evaluator.column(meaning)
    return np.stack([x, y], axis=1)[result.defined], result.values[result.defined] % p


def _table_rows(config: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A task.table file's rows in file order: symbols [N, 2], labels [N], and whether each
    row is a train row when the file has a `split` column (train/test strings or booleans)."""
    import polars as pl  # only tables need it: the Rust tests load this module without polars

    path = str(config["task.table"])
    frame = pl.read_parquet(path) if path.endswith((".parquet", ".pq")) else pl.read_csv(path, infer_schema_length=None)
    symbols = frame.select(["a", "b"]).to_numpy().astype(np.int64)
    labels = frame["label"].to_numpy().astype(np.int64)
    if "split" not in frame.columns:
        return symbols, labels, None
    split = frame["split"]
    train = split.to_numpy().astype(bool) if split.dtype == pl.Boolean else (split == "train").to_numpy()
    return symbols, labels, train


def examples(config: Mapping[str, Any]) -> Tuple[np.ndarray, np.ndarray]:
    """Every row of the run's task in grokstack's order: (symbols [N, K], labels [N]), int64.
    Operand pairs (a, b) row-major (from 1 with `task.skip_zero`; an expression's defined pairs
    only), parity's 2^bits strings in counting order (bit i of a string its symbol i), or a
    table's rows in file order."""
    op = config["task.op"]
    if op == "parity":
        n = config["task.bits"]
        strings = np.arange(1 << n, dtype=np.int64)
        bits = (strings[:, None] >> np.arange(n)) & 1  # [2^n, n]
        return bits, bits.sum(axis=1) % 2
    if config.get("task.table"):
        symbols, labels, _ = _table_rows(config)
        return symbols, labels
    if op in _NOT_REBUILT:
        raise NotImplementedError(
            f"task.op = {op!r}: Python rebuilds the rows of the modular operations, expressions, tables and "
            "parity only (S5's need its tables, sparse parity's its sampled strings)"
        )
    p = config["task.p"]
    first = 1 if config["task.skip_zero"] else 0
    label = _CANONICAL.get(_ALIASES.get(op, op))
    if label is None:
        return expression_rows(_EXPRESSION_ALIASES.get(op, op), p, first)
    rows = [(a, b, y) for a in range(first, p) for b in range(first, p) if (y := label(a, b, p)) is not None]
    table = np.array(rows, dtype=np.int64)  # [N, 3]
    return table[:, :2], table[:, 2]


def split(config: Mapping[str, Any], seed: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """The run's {"train": (symbols, labels), "test": (symbols, labels)}: a table's `split`
    column's rows, in file order, when it has one; else its seed's shuffle of every row, the
    first floor(train_fraction · N) of them train (src/data.rs)."""
    if config.get("task.table"):
        symbols, labels, is_train = _table_rows(config)
        if is_train is not None:
            return {"train": (symbols[is_train], labels[is_train]), "test": (symbols[~is_train], labels[~is_train])}
    else:
        symbols, labels = examples(config)
    order = list(range(len(labels)))
    _Rng(seed, _SPLIT_STREAM).shuffle(order)
    n_train = math.floor(config["task.train_fraction"] * len(labels))
    train, test = np.array(order[:n_train], dtype=np.int64), np.array(order[n_train:], dtype=np.int64)
    return {"train": (symbols[train], labels[train]), "test": (symbols[test], labels[test])}
