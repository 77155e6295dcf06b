"""Sweep.to_torch and Sweep.to_transformer_lens against the trainer: each configuration trains a
few epochs, then the module's logits on the run's own train and test rows must equal
grokstack's own (Sweep.logits, `grokstack export --logits`; f32: within 1e-5 of the largest
logit), give the run's final loss in runs.parquet (within 1e-5 relative) and exactly its
number of correct rows. to_torch's must also equal those of the Rust tests' independent models
(tests/transformer_check.py and tests/export_check.py's MLP), and a HookedTransformer's must
equal to_torch's.

They need torch (and transformer_lens): `make torch-test` runs them in .venv-peers
(`make peers-venv`); elsewhere they are skipped, saying so.
"""
import sys

import pytest

import grokstack
from conftest import REPO

torch = pytest.importorskip("torch", reason="torch is not installed: make torch-test runs these in .venv-peers")
F = torch.nn.functional

TOLERANCE = 1e-5
TRAIN = {"epochs": 3, "lr": 0.01, "stop": "none", "checkpoint_every": 0}

MLP_TWO_HOT = {
    "task": {"op": "mul", "p": 13, "train_fraction": 0.5},
    "model": {"kind": "mlp", "input": "two_hot", "hidden": [24, 16], "activation": "relu", "alpha": 2.5},
}
MLP_EMBEDDING = {
    "task": {"op": "sub", "p": 13, "train_fraction": 0.5},
    "model": {"kind": "mlp", "input": "embedding", "embed_dim": 8, "hidden": [24], "activation": "gelu"},
}
MLP_PARITY = {
    "task": {"op": "parity", "bits": 6, "train_fraction": 0.5},
    "model": {"kind": "mlp", "input": "two_hot", "hidden": [16], "activation": "tanh"},
}
# The transformers of tests/transformer_check.rs and sweeps/transformer-*-cpu.toml, small.
TVEIT = {
    "task": {"op": "div", "p": 11, "train_fraction": 0.5},
    "model": {"kind": "transformer", "layers": 2, "d_model": 16, "heads": 2, "ffn": "swiglu", "ffn_width": 24,
              "norm": "rms", "norm_position": "pre", "positional": "rope", "rope_base": 100.0, "causal": True,
              "tokens": "a_op_b_eq"},
}
PRIETO = {
    "task": {"op": "sub", "p": 11, "train_fraction": 0.5, "skip_zero": True},
    "model": {"kind": "transformer", "layers": 2, "d_model": 16, "heads": 2, "ffn": "relu", "norm": "layer",
              "norm_position": "post", "positional": "none", "causal": False, "bias": True, "tokens": "a_b"},
}
NANDA = {
    "task": {"op": "add", "p": 11, "train_fraction": 0.5},
    "model": {"kind": "transformer", "layers": 1, "d_model": 16, "heads": 4, "ffn": "relu", "norm": "none",
              "positional": "learned", "causal": True, "tokens": "a_b_eq"},
}
# HookedTransformer's other options: pre-norm LayerNorm with biases, GELU, no positions, no mask.
LAYER_GELU = {
    "task": {"op": "add", "p": 11, "train_fraction": 0.5},
    "model": {"kind": "transformer", "layers": 2, "d_model": 16, "heads": 4, "ffn": "gelu", "ffn_width": 20,
              "norm": "layer", "norm_position": "pre", "positional": "none", "causal": False, "bias": True,
              "tokens": "a_op_b_eq"},
}
SWIGLU_BIAS = {
    "task": {"op": "add", "p": 7, "train_fraction": 0.5},
    "model": {"kind": "transformer", "layers": 1, "d_model": 8, "heads": 2, "ffn": "swiglu", "bias": True},
}

MLPS = {"mlp-two-hot": MLP_TWO_HOT, "mlp-embedding": MLP_EMBEDDING, "mlp-parity": MLP_PARITY}
TRANSFORMERS = {"tveit": TVEIT, "prieto": PRIETO, "nanda": NANDA, "layer-gelu": LAYER_GELU}
EXPRESSIBLE = ["tveit", "nanda", "layer-gelu"]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Every configuration trained once, two seeds each, by its name."""
    out = {}
    for name, setup in {**MLPS, **TRANSFORMERS, "swiglu-bias": SWIGLU_BIAS}.items():
        sweep = {"name": name, "seeds": 2, **setup, "train": TRAIN}
        out[name] = grokstack.train(sweep, tmp_path_factory.mktemp(name) / "out")
    return out


def inputs_of(model, symbols):
    """What the module reads: an MLP a row's symbols, a transformer its tokens."""
    return model.tokens(symbols) if hasattr(model, "tokens") else symbols


def check_against_runs(sweep, run_id, logits_of, tolerance=TOLERANCE):
    """logits_of(symbols) on the run's train and test rows against its final loss (within
    `tolerance`, relative) and accuracy; returns the largest relative loss difference."""
    _, metadata = sweep._export(run_id)
    worst = 0.0
    for part, (symbols, labels) in sweep.split(run_id).items():
        symbols, labels = torch.from_numpy(symbols), torch.from_numpy(labels)
        with torch.no_grad():
            logits = logits_of(symbols)
        loss = F.cross_entropy(logits.double(), labels).item()
        expected = float(metadata[f"final_{part}_loss"])
        worst = max(worst, abs(loss - expected) / abs(expected))
        assert abs(loss - expected) <= tolerance * abs(expected), (part, loss, expected)
        if tolerance <= TOLERANCE:  # a bf16 pass may round a near tie the other way
            correct = int((logits.argmax(-1) == labels).sum())
            assert correct == round(float(metadata[f"final_{part}_acc"]) * len(labels)), part
    return worst


@pytest.mark.parametrize("name", [*MLPS, *TRANSFORMERS])
def test_to_torch_gives_the_trainers_losses(sweeps, name):
    sweep = sweeps[name]
    for run_id in (0, 1):
        model = sweep.to_torch(run_id)
        assert isinstance(model, torch.nn.Module) and not model.training
        assert model.run_id == run_id and model.config["model.kind"] == sweep.runs["model.kind"][run_id]
        worst = check_against_runs(sweep, run_id, lambda symbols: model(inputs_of(model, symbols)))
        print(f"{name} run {run_id}: largest relative loss difference {worst:.2e}")


def largest_difference(ours, theirs):
    """The largest |ours − theirs| relative to the largest |theirs|."""
    theirs = torch.as_tensor(theirs).double()
    return ((torch.as_tensor(ours).double() - theirs).abs().max() / theirs.abs().max()).item()


@pytest.mark.parametrize("name", [*MLPS, *TRANSFORMERS])
def test_to_torch_logits_equal_grokstacks(sweeps, name):
    """Logit by logit, on every train and test row, against the trainer's own logits; the rows
    are also those Sweep.split rebuilds in Python."""
    sweep = sweeps[name]
    for run_id in (0, 1):
        model = sweep.to_torch(run_id)
        rebuilt = sweep.split(run_id)
        for part, (symbols, labels, expected) in sweep.logits(run_id).items():
            assert (symbols == rebuilt[part][0]).all() and (labels == rebuilt[part][1]).all(), part
            with torch.no_grad():
                logits = model(inputs_of(model, torch.from_numpy(symbols)))
            difference = largest_difference(logits, expected)
            print(f"{name} run {run_id} {part}: largest logit difference {difference:.2e} of the largest logit")
            assert difference <= TOLERANCE, (part, difference)


def test_to_torch_loads_every_exported_weight(sweeps):
    for name in [*MLPS, *TRANSFORMERS]:
        exported = sweeps[name].export(0)
        state = sweeps[name].to_torch(0).state_dict()
        assert sorted(state) == sorted(exported), name
        for key, value in exported.items():
            assert torch.equal(state[key], torch.from_numpy(value)), (name, key)


@pytest.mark.parametrize("name", [*MLPS, *TRANSFORMERS])
def test_to_torch_logits_equal_the_rust_tests_independent_models(sweeps, name):
    """Logit by logit, on every row, against tests/transformer_check.py's transformer (which
    `cargo test --test transformer_check` compares with grokstack's own logits, 1e-5) and
    tests/export_check.py's numpy MLP (float64)."""
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import export_check
        import transformer_check
    finally:
        sys.path.remove(str(REPO / "tests"))
    sweep = sweeps[name]
    model = sweep.to_torch(0)
    symbols = torch.cat([torch.from_numpy(s) for s, _ in sweep.split(0).values()])
    weights = {key: torch.from_numpy(value) for key, value in sweep.export(0).items()}
    with torch.no_grad():
        ours = model(inputs_of(model, symbols))
        if model.config["model.kind"] == "mlp":
            if model.bits:
                pytest.skip("tests/export_check.py's MLP reads operand pairs only")
            numpy_weights = {key: value.numpy() for key, value in weights.items()}
            theirs = torch.from_numpy(export_check.logits(numpy_weights, model.config, symbols[:, 0].numpy(), symbols[:, 1].numpy()))
        else:
            theirs = transformer_check.Model(model.config).logits(weights, model.tokens(symbols))
    difference = ((ours.double() - theirs.double()).abs().max() / theirs.abs().max()).item()
    print(f"{name}: largest relative logit difference {difference:.2e}")
    assert difference <= TOLERANCE


@pytest.mark.parametrize(("setup", "dtype", "torch_dtype", "tolerance"), [
    (MLP_EMBEDDING, "f64", torch.float64, 1e-12),
    (TVEIT, "f64", torch.float64, 1e-12),
    # bf16 runs load as float32, their weights exactly; grokstack's pass rounds to bf16 after
    # every op (and its loss too), so the losses agree only to about bf16's rounding.
    (MLP_TWO_HOT, "bf16", torch.float32, 1e-3),
    (MLP_EMBEDDING, "bf16_mixed", torch.float32, 1e-3),
])
def test_to_torch_of_other_dtypes(tmp_path, setup, dtype, torch_dtype, tolerance):
    train = {**TRAIN, "dtype": dtype}
    sweep = grokstack.train({"name": f"{setup['model']['kind']}-{dtype}", "seeds": 1, **setup, "train": train}, tmp_path / "out")
    model = sweep.to_torch(0)
    assert all(value.dtype == torch_dtype for value in model.state_dict().values())
    worst = check_against_runs(sweep, 0, lambda symbols: model(inputs_of(model, symbols)), tolerance)
    print(f"{setup['model']['kind']} {dtype}: largest relative loss difference {worst:.2e}")


@pytest.mark.parametrize("name", EXPRESSIBLE)
def test_to_transformer_lens_gives_the_trainers_logits(sweeps, name):
    pytest.importorskip("transformer_lens", reason="transformer_lens is not installed: make torch-test runs this in .venv-peers")
    sweep = sweeps[name]
    for run_id in (0, 1):
        model = sweep.to_torch(run_id)
        hooked = sweep.to_transformer_lens(run_id)
        check_against_runs(sweep, run_id, lambda symbols: hooked(model.tokens(symbols))[:, -1])
        symbols = torch.cat([torch.from_numpy(s) for s, _ in sweep.split(run_id).values()])
        with torch.no_grad():
            ours, theirs = model(model.tokens(symbols)), hooked(model.tokens(symbols))[:, -1]
        difference = ((theirs - ours).abs().max() / ours.abs().max()).item()
        print(f"{name} run {run_id}: HookedTransformer against to_torch, largest relative logit difference {difference:.2e}")
        assert difference <= TOLERANCE
        for part, (symbols, _, expected) in sweep.logits(run_id).items():
            with torch.no_grad():
                logits = hooked(model.tokens(torch.from_numpy(symbols)))[:, -1]
            assert largest_difference(logits, expected) <= TOLERANCE, (name, run_id, part)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("prieto", r"post-norm \(model.norm_position = post, model.norm = layer\) has no HookedTransformer equivalent"),
        ("swiglu-bias", r"SwiGLU with biases \(model.ffn = swiglu, model.bias = true\) has no HookedTransformer equivalent"),
        ("mlp-embedding", r"model.kind = mlp: HookedTransformer is a transformer"),
    ],
)
def test_to_transformer_lens_refuses_what_it_cannot_express(sweeps, name, reason):
    pytest.importorskip("transformer_lens", reason="transformer_lens is not installed: make torch-test runs this in .venv-peers")
    with pytest.raises(NotImplementedError, match=f"run 0 has no HookedTransformer: {reason}"):
        sweeps[name].to_transformer_lens(0)


def test_attention_patterns_come_from_the_cache(sweeps):
    pytest.importorskip("transformer_lens", reason="transformer_lens is not installed: make torch-test runs this in .venv-peers")
    sweep = sweeps["nanda"]
    model, hooked = sweep.to_torch(0), sweep.to_transformer_lens(0)
    symbols, _ = sweep.split(0)["test"]
    _, cache = hooked.run_with_cache(model.tokens(torch.from_numpy(symbols)))
    pattern = cache["pattern", 0]  # [N, H, T, T]
    assert pattern.shape == (len(symbols), 4, 3, 3)
    assert torch.allclose(pattern.sum(-1), torch.ones(()))
    assert (pattern.triu(1) == 0).all()  # causal
