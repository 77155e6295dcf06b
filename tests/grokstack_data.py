"""grokstack's random generator, a modular task's rows and a run's train/test split, in plain
Python, for the checks that rebuild a run outside grokstack (tests/export_check.py,
tests/transformer_check.py). Mirrors src/rng.rs and src/data.rs.
"""
import math

MASK = (1 << 64) - 1


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Rng:
    """grokstack's src/rng.rs: xoshiro256** seeded through SplitMix64, one stream per use."""

    SPLIT = 1

    def __init__(self, seed, stream):
        mix = (seed ^ (stream * 0xA0761D6478BD642F)) & MASK
        self.s = []
        for _ in range(4):
            mix = (mix + 0x9E3779B97F4A7C15) & MASK
            z = mix
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            self.s.append(z ^ (z >> 31))

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        while True:
            product = self.next_u64() * n
            if product & MASK >= ((-n) & MASK) % n:
                return product >> 64

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


# The labels of the operations the checks use; src/tasks.rs has the rest.
LABELS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a + p - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
    # a · b⁻¹ (Fermat's inverse, p prime); b = 0 has no row.
    "div": lambda a, b, p: None if b == 0 else (a * pow(b, p - 2, p)) % p,
}


def examples(config):
    """Every row (a, b, label) of a modular task, a and b row-major as grokstack lists them
    (from 1 with `task.skip_zero`)."""
    op, p = config["task.op"], config["task.p"]
    if op not in LABELS:
        raise SystemExit(f"task.op = {op!r}: these checks know {', '.join(LABELS)} only")
    first = 1 if config.get("task.skip_zero", False) else 0
    rows = []
    for a in range(first, p):
        for b in range(first, p):
            label = LABELS[op](a, b, p)
            if label is not None:
                rows.append((a, b, label))
    return rows


def split(config, seed):
    """A run's (train, test) rows: its seed's shuffle of every row, the first
    floor(train_fraction · N) of them train."""
    rows = examples(config)
    order = list(range(len(rows)))
    Rng(seed, Rng.SPLIT).shuffle(order)
    n_train = math.floor(config["task.train_fraction"] * len(rows))
    return [rows[i] for i in order[:n_train]], [rows[i] for i in order[n_train:]]
