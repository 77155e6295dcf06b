"""Quickstart: how does the learning rate change when AdamW groks modular addition?

Trains 5 learning rates x 3 seeds (15 small MLPs on (a + b) mod 47, stacked into one model)
on the CPU in under a minute on 2 cores, then plots the epoch at which each run grokked (test
accuracy >= 95%) against its learning rate, with the median over seeds.

    pip install target/wheels/grokstack-*.whl matplotlib
    python examples/quickstart.py        # writes runs/quickstart/ and quickstart.png

examples/quickstart.ipynb holds the same code, one cell per `# %%` block below.
"""
# %%
import matplotlib.pyplot as plt
import polars as pl

import grokstack

# %%
EPOCHS = 400
sweep = grokstack.train(
    {
        "name": "quickstart",
        "seeds": 3,
        "task": {"op": "add", "p": 47, "train_fraction": 0.6},
        "model": {"input": "embedding", "embed_dim": 32, "hidden": [128, 128], "activation": "gelu"},
        # A run retires 20 epochs after it groks, which changes none of its numbers.
        "train": {"epochs": EPOCHS, "optimizer": "adamw", "weight_decay": 2.0, "log_every": 5, "stop": "grok", "extra_epochs": 20},
        "grid": {"train.lr": [0.005, 0.01, 0.02, 0.03, 0.05]},
    },
    out="runs/quickstart",
    # A second run of this script keeps the finished sweep (a changed sweep is refused).
    resume=True,
)
sweep

# %%
settings = sweep.settings().sort("train.lr")
settings.select("train.lr", "seeds", "grokked_seeds", "median_grok_epoch", "q25_grok_epoch", "q75_grok_epoch")

# %%
runs = sweep.runs
grokked = runs.filter(pl.col("grok_epoch").is_not_null())
never = runs.filter(pl.col("grok_epoch").is_null())
fig, ax = plt.subplots(figsize=(6, 4))
ax.scatter(grokked["train.lr"], grokked["grok_epoch"], alpha=0.5, label="one run (seed)")
ax.scatter(never["train.lr"], [EPOCHS] * never.height, marker="x", color="red", label=f"no grok within {EPOCHS} epochs")
ax.plot(settings["train.lr"], settings["median_grok_epoch"], "o-", color="black", label="median over seeds")
ax.set_xscale("log")
ax.set_xlabel("learning rate")
ax.set_ylabel("grok epoch (test accuracy ≥ 95%)")
ax.set_title(f"AdamW on (a + b) mod 47: {grokked.height} of {runs.height} runs grokked")
ax.legend()
fig.tight_layout()
fig.savefig("quickstart.png", dpi=120)
print("wrote quickstart.png")
