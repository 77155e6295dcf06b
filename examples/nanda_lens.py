"""Nanda's transformer in TransformerLens: train 16 seeds of Nanda et al.'s one-layer
transformer on (a + b) mod 23 (sweeps/transformer-nanda-cpu.toml, a CPU-sized variant of
their setting: about 10 seconds on 2 cores), open the seed that grokked first as a
HookedTransformer and plot where its '=' token attends, for every pair (a, b).

    pip install "$(echo target/wheels/grokstack-*.whl)[transformer-lens]" matplotlib
    python examples/nanda_lens.py   # from the repository root: writes runs/nanda-lens/ and nanda_lens.png

(In a checkout, `make peers-venv` installs all of it into .venv-peers.)
examples/nanda_lens.ipynb holds the same code, one cell per `# %%` block below.
"""
# %%
import matplotlib.pyplot as plt
import torch

import grokstack

# %%
sweep = grokstack.train(
    "sweeps/transformer-nanda-cpu.toml",
    out="runs/nanda-lens",
    overrides={"seeds": 16},
    # A second run of this script keeps the finished sweep.
    resume=True,
)
runs = sweep.runs.sort("grok_epoch", nulls_last=True)
runs.select("run_id", "seed", "grok_epoch", "final_test_acc")

# %%
fastest = runs.row(0, named=True)
print(f"run {fastest['run_id']} (seed {fastest['seed']}) grokked first, at epoch {fastest['grok_epoch']}")
model = sweep.to_transformer_lens(fastest["run_id"])
model.cfg

# %%
# Every row: the tokens [a, b, =] of all p² pairs, and the HookedTransformer's prediction, which
# grokstack reads at the last position (the logits at '='). Its accuracy over all pairs is the
# run's final train and test accuracies, weighted by the rows of each.
p = model.cfg.d_vocab_out
a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)  # [p², 3]
with torch.no_grad():
    logits, cache = model.run_with_cache(tokens)
accuracy = (logits[:, -1].argmax(-1) == (a.flatten() + b.flatten()) % p).float().mean().item()
n_train = len(sweep.split(fastest["run_id"])["train"][1])
expected = (fastest["final_train_acc"] * n_train + fastest["final_test_acc"] * (p * p - n_train)) / (p * p)
print(f"accuracy on all {p * p} pairs: {accuracy:.4f} (grokstack's final accuracies: {expected:.4f})")

# %%
# cache["pattern", 0]: the attention weights of layer 0, [rows, heads, query, key]. Where does
# '=' (query 2) look? Its weight on a (key 0), as a p × p map over (a, b), one map per head.
pattern = cache["pattern", 0]
heads = model.cfg.n_heads
fig, axes = plt.subplots(1, heads, figsize=(3.5 * heads, 3.6))
for head, ax in enumerate(axes):
    image = ax.imshow(pattern[:, head, 2, 0].reshape(p, p), vmin=0, vmax=1, cmap="viridis")
    ax.set_title(f"head {head}")
    ax.set_xlabel("b")
axes[0].set_ylabel("a")
fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight of '=' on a")
fig.suptitle(f"Nanda's transformer on (a + b) mod {p}, run {fastest['run_id']} (grokked at epoch {fastest['grok_epoch']})")
fig.savefig("nanda_lens.png", dpi=120, bbox_inches="tight")
print("wrote nanda_lens.png")
