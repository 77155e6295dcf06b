//! The transformer against an independent implementation: tests/transformer_check.py builds
//! the same model in PyTorch from exported runs and compares its logits, its gradients of the
//! loss and two torch.optim.AdamW steps with grokstack's (f32, 1e-5). It runs where the peer
//! benchmark's environment is installed (`make peers-venv`: .venv-peers has torch) and says it
//! was skipped otherwise.
//!
//! Per configuration, two runs (seeds) are trained as one stack for one epoch and for two
//! (`train.stop = "none"`, full batch, no dropout) and exported; the initial weights, and
//! grokstack's own logits (every row) and gradients (the mean train loss) at the initial
//! weights and at both exports, go to a file of their own for the Python side.

mod common;

use candle_core::{DType, Device, Tensor};
use common::grokstack;
use grokstack::config::{Loss, Sweep};
use grokstack::data::{self, Examples};
use grokstack::kernels::loss;
use grokstack::models::transformer::{Tokens, Transformer};
use grokstack::models::{Arch, Param};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The training every configuration shares: full-batch AdamW, two epochs, nothing retired
/// (`train.all_reg` follows, per configuration). A large lr makes each step move the weights
/// well above f32's rounding.
const TRAIN: &str = r#"
[train]
epochs = 2
lr = 0.01
weight_decay = 1.0
beta1 = 0.9
beta2 = 0.98
eps = 1e-8
stop = "none"
checkpoint_every = 0
"#;

/// Tveit: pre-norm RMSNorm, RoPE, causal, SwiGLU, [a, op, b, =], everything decayed.
const TVEIT: &str = r#"
name = "torch-tveit"
seeds = [11, 12]
[task]
op = "div"
p = 11
train_fraction = 0.5
[model]
kind = "transformer"
layers = 2
d_model = 16
heads = 2
ffn = "swiglu"
ffn_width = 24
norm = "rms"
norm_position = "pre"
positional = "rope"
rope_base = 100.0
causal = true
tokens = "a_op_b_eq"
"#;

/// Prieto: post-norm LayerNorm, no positions, no mask, ReLU, biases, [a, b], operands from 1,
/// only the hidden matrices decayed.
const PRIETO: &str = r#"
name = "torch-prieto"
seeds = [11, 12]
[task]
op = "sub"
p = 11
train_fraction = 0.5
skip_zero = true
[model]
kind = "transformer"
layers = 2
d_model = 16
heads = 2
ffn = "relu"
ffn_width = 0
norm = "layer"
norm_position = "post"
positional = "none"
causal = false
bias = true
tokens = "a_b"
"#;

/// Nanda: one layer, learned positions, no norm, ReLU, [a, b, =], everything decayed.
const NANDA: &str = r#"
name = "torch-nanda"
seeds = [11, 12]
[task]
op = "add"
p = 11
train_fraction = 0.5
[model]
kind = "transformer"
layers = 1
d_model = 16
heads = 4
ffn = "relu"
norm = "none"
positional = "learned"
causal = true
tokens = "a_b_eq"
"#;

/// The Python of the peer benchmark's environment, if it is installed.
fn torch_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-peers/bin/python");
    python.exists().then_some(python)
}

/// A task's rows as the transformer's tokens `[1, N, T]` and labels `[1, N]`.
fn rows(tokens: &Tokens, examples: &Examples, seq_len: usize) -> (Tensor, Tensor) {
    let n = examples.len();
    let ids = Tensor::from_vec(tokens.encode(examples), (1, n, seq_len), &Device::Cpu).unwrap();
    (ids, Tensor::from_vec(examples.labels.clone(), (1, n), &Device::Cpu).unwrap())
}

/// A run's weights from its export (PyTorch's layout: a Linear weight is our [in, out]
/// transposed), as a stack of that one run.
fn from_export(init: &Transformer, path: &Path) -> Transformer {
    let exported = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let params = init
        .params
        .iter()
        .map(|p| {
            let value = &exported[&p.name];
            let value = if Transformer::is_matrix(&init.arch, &p.name) { value.t().unwrap() } else { value.clone() };
            Param { value: value.contiguous().unwrap().unsqueeze(0).unwrap(), ..p.clone() }
        })
        .collect();
    Transformer::from_params(&init.arch, params).unwrap()
}

/// grokstack's side of run `run` of the sweep trained in `dir`, whose weights after one and
/// two epochs are the exports `epoch1` and `epoch2`: its initial weights, and at the initial
/// weights and at both exports its logits on every row and its gradients of the mean train
/// loss, all in grokstack's layout.
fn grokstack_side(dir: &Path, run: usize, epoch1: &Path, epoch2: &Path, out: &Path) {
    let text = std::fs::read_to_string(dir.join("sweep.toml")).unwrap();
    let spec = Sweep::parse(&text, "sweep.toml", &[]).unwrap().runs().unwrap().swap_remove(run);
    let (config, seed) = (&spec.config, spec.seed);
    let Arch::Transformer(arch, tokens) = config.arch() else { panic!("run {run} is not a transformer") };
    let init = Transformer::init(&arch, &[seed], DType::F32, &Device::Cpu).unwrap();

    let (every, _) = rows(&tokens, &data::all_examples(config, seed), arch.seq_len);
    let (train, labels) = rows(&tokens, &data::split(config, seed).train, arch.seq_len);
    let mut side: HashMap<String, Tensor> =
        init.params.iter().map(|p| (format!("weights.{}", p.name), p.value.get(0).unwrap())).collect();
    for (point, model) in
        [("init", init.clone()), ("epoch1", from_export(&init, epoch1)), ("epoch2", from_export(&init, epoch2))]
    {
        side.insert(format!("{point}.logits"), model.forward(&every, None).unwrap().0.get(0).unwrap());
        let (logits, cache) = model.forward(&train, None).unwrap();
        let dlogits = loss::grad(Loss::Softmax, &logits, &labels).unwrap();
        for (p, grad) in model.params.iter().zip(model.backward(&train, &cache, &dlogits).unwrap()) {
            side.insert(format!("{point}.grad.{}", p.name), grad.get(0).unwrap());
        }
    }
    candle_core::safetensors::save(&side, out).unwrap();
}

fn export(dir: &Path, run: usize, out: &Path) {
    let done = grokstack(&["export", dir.to_str().unwrap(), "--run", &run.to_string(), "--out", out.to_str().unwrap()]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
}

#[test]
fn transformer_matches_an_independent_pytorch_implementation() {
    let Some(python) = torch_python() else {
        eprintln!("skipped the PyTorch check: no .venv-peers/bin/python (`make peers-venv` installs it)");
        return;
    };
    for (name, model, all_reg) in [("tveit", TVEIT, true), ("prieto", PRIETO, false), ("nanda", NANDA, true)] {
        let sweep = format!("{model}{TRAIN}all_reg = {all_reg}\n");
        let (one, one_sweep) = common::train_sweep(&format!("torch-{name}-1"), &sweep, &["--set", "train.epochs=1"]);
        let (two, two_sweep) = common::train_sweep(&format!("torch-{name}-2"), &sweep, &[]);
        for run in 0..2 {
            let (epoch1, epoch2, side) = (
                one.join(format!("run-{run}.safetensors")),
                two.join(format!("run-{run}.safetensors")),
                two.join(format!("grokstack-{run}.safetensors")),
            );
            export(&one, run, &epoch1);
            export(&two, run, &epoch2);
            grokstack_side(&two, run, &epoch1, &epoch2, &side);
            let check = Command::new(&python)
                .args([
                    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/transformer_check.py"),
                    side.to_str().unwrap(),
                    epoch1.to_str().unwrap(),
                    epoch2.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
            println!("{name} run {run}: {said}");
            assert!(check.status.success(), "{name} run {run}: PyTorch does not agree: {said}");
        }
        for path in [&one, &two] {
            std::fs::remove_dir_all(path).ok();
        }
        for path in [&one_sweep, &two_sweep] {
            std::fs::remove_file(path).ok();
        }
    }
}
