"""Writes noisy_add31.csv: addition mod 31 as a table file (task.table), with a fixed split
and 10% of the train labels replaced by a random wrong class. The test rows keep their true
labels, so test accuracy still measures whether the run found addition.

    python sweeps/tables/noisy_add.py    # rewrites sweeps/tables/noisy_add31.csv

A table is any CSV (or Parquet file) with integer columns a, b, label and, optionally, split."""
import csv
import random
from pathlib import Path

P, TRAIN_FRACTION, NOISE = 31, 0.6, 0.1

rng = random.Random(0)
pairs = [(a, b) for a in range(P) for b in range(P)]
train = set(rng.sample(range(len(pairs)), int(TRAIN_FRACTION * len(pairs))))
noisy = set(rng.sample(sorted(train), int(NOISE * len(train))))
with open(Path(__file__).with_name("noisy_add31.csv"), "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["a", "b", "label", "split"])
    for i, (a, b) in enumerate(pairs):
        label = (a + b) % P
        if i in noisy:
            label = (label + rng.randrange(1, P)) % P
        out.writerow([a, b, label, "train" if i in train else "test"])
