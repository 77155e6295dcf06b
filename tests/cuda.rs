//! The GPU against the CPU: the same small stacks trained on both, every optimizer (Scion and
//! the weight constraints too), the three losses, f32 and bf16, the MLP and the transformer
//! (with dropout and minibatches). On the CPU
//! a stack runs the kind's CPU pass, on the GPU candle's tensor ops, so this checks the CUDA
//! kernels against an independent implementation. Skipped, saying why, where no CUDA device can
//! be opened (every CPU-only build, and CI).

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::train::Stack;

/// The CUDA device, or the reason there is none.
fn cuda() -> Result<Device, String> {
    grokstack::device::parse_device("cuda").map_err(|e| format!("{e:#}"))
}

/// A small transformer with dropout at every place and a causal mask with RoPE.
const TRANSFORMER: &str = r#"
name = "tf"
seeds = 4
[task]
op = "add"
p = 23
train_fraction = 0.5
[model]
kind = "transformer"
layers = 2
d_model = 16
heads = 2
ffn = "swiglu"
ffn_width = 32
dropout_attention = 0.1
dropout_ffn_hidden = 0.1
[train]
epochs = 10
lr = 0.003
weight_decay = 1.0
dtype = "f32"
"#;

/// One comparison: a sweep, its overrides, how many epochs, and the tolerances on the mean loss
/// (relative) and on the accuracy (in rows of the test set).
struct Case {
    name: &'static str,
    toml: &'static str,
    overrides: &'static [&'static str],
    epochs: usize,
    loss_rel: f64,
}

const CASES: &[Case] = &[
    Case {
        name: "mlp adamw f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.lr=[0.003, 0.01]"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp ortho_adamw f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.optimizer=ortho_adamw"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp sgd f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.optimizer=sgd", "train.lr=0.1"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp muon f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.optimizer=muon", "model.hidden=[16, 16]"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp stablemax f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.loss=stablemax"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp sparsemax f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.loss=sparsemax"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp minibatch f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.batch_size=64", "train.warmup=3"],
        epochs: 5,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp adamw bf16",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.dtype=bf16", "train.all_reg=true"],
        epochs: 5,
        loss_rel: 3e-2,
    },
    Case {
        name: "mlp muon bf16",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.dtype=bf16", "train.optimizer=muon", "model.hidden=[16, 16]"],
        epochs: 5,
        loss_rel: 3e-2,
    },
    Case {
        name: "mlp scion f32",
        toml: common::TINY,
        overrides: &["seeds=4", "task.p=23", "train.optimizer=scion", "train.polar_dtype=f32", "model.hidden=[16, 16]"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "mlp scion constrained bf16",
        toml: common::TINY,
        overrides: &[
            "seeds=4",
            "task.p=23",
            "train.dtype=bf16",
            "train.optimizer=scion",
            "train.scion_constrained=true",
            "model.hidden=[16, 16]",
        ],
        epochs: 5,
        loss_rel: 3e-2,
    },
    Case {
        name: "mlp muon hardcap f32",
        toml: common::TINY,
        overrides: &[
            "seeds=4",
            "task.p=23",
            "train.optimizer=muon",
            "train.constraint=spectral_hardcap",
            "train.embed_rms_cap=1",
            "model.hidden=[16, 16]",
        ],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case { name: "transformer adamw f32", toml: TRANSFORMER, overrides: &[], epochs: 10, loss_rel: 1e-4 },
    Case {
        name: "transformer muon f32",
        toml: TRANSFORMER,
        overrides: &["train.optimizer=muon", "train.lr=0.02"],
        epochs: 10,
        loss_rel: 1e-4,
    },
    Case {
        name: "transformer minibatch f32",
        toml: TRANSFORMER,
        overrides: &["train.batch_size=50", "train.loss=stablemax"],
        epochs: 4,
        loss_rel: 1e-4,
    },
];

/// The statistics `[R, 4]` (mean loss, accuracy, ...) as rows of f64, from any device.
fn host_rows(stats: &Tensor) -> Vec<Vec<f64>> {
    stats.to_device(&Device::Cpu).unwrap().to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

/// Train `case` on the CPU and on `gpu` side by side; returns the largest relative difference of
/// the mean losses and the largest accuracy difference in rows, over the epochs and both sets.
fn compare(case: &Case, gpu: &Device) -> (f64, f64) {
    let runs = common::runs(case.toml, case.overrides);
    let n_test = runs[0].config.n_test() as f64;
    let mut on_cpu = Stack::new(runs.clone(), &Device::Cpu).unwrap();
    let mut on_gpu = Stack::new(runs, gpu).unwrap();
    let (mut loss_rel, mut acc_rows) = (0f64, 0f64);
    for epoch in 0..case.epochs {
        on_cpu.epoch_steps(epoch).unwrap();
        on_gpu.epoch_steps(epoch).unwrap();
        for (cpu, gpu) in [(&on_cpu.train, &on_gpu.train), (&on_cpu.test, &on_gpu.test)] {
            let cpu = host_rows(&on_cpu.evaluate(cpu).unwrap());
            let gpu = host_rows(&on_gpu.evaluate(gpu).unwrap());
            for (c, g) in cpu.iter().zip(&gpu) {
                assert!(
                    g.iter().all(|v| v.is_finite()),
                    "{}: epoch {epoch}: non-finite GPU statistics {g:?}",
                    case.name
                );
                loss_rel = loss_rel.max((c[0] - g[0]).abs() / c[0].abs().max(1e-12));
                acc_rows = acc_rows.max((c[1] - g[1]).abs() * n_test);
            }
        }
    }
    (loss_rel, acc_rows)
}

#[test]
fn gpu_and_cpu_agree_on_small_stacks() {
    let gpu = match cuda() {
        Ok(device) => device,
        Err(why) => {
            eprintln!("skipped, no GPU: {why}");
            return;
        }
    };
    let mut failures = Vec::new();
    eprintln!(
        "| case | epochs | max loss rel. diff | tolerance | max accuracy diff (test rows) |\n|---|---|---|---|---|"
    );
    for case in CASES {
        let (loss_rel, acc_rows) = compare(case, &gpu);
        eprintln!("| {} | {} | {loss_rel:.2e} | {:.0e} | {acc_rows:.1} |", case.name, case.epochs, case.loss_rel);
        // An accuracy may differ by a row or two where a logit sits on a tie within rounding.
        if loss_rel > case.loss_rel || acc_rows > 2.5 {
            failures.push(case.name);
        }
    }
    assert!(failures.is_empty(), "the GPU disagrees with the CPU on: {failures:?}");
}

/// The cases are valid sweeps, also where no GPU can run them (a bad key would only show on
/// the device machine, in its few minutes).
#[test]
fn every_case_is_a_valid_sweep() {
    for case in CASES {
        let runs = common::runs(case.toml, case.overrides);
        let key = runs[0].config.stack_key();
        assert!(runs.iter().all(|r| r.config.stack_key() == key), "{}: one stack", case.name);
    }
}

#[test]
fn a_cpu_build_names_the_missing_backend() {
    if cfg!(feature = "cuda") {
        eprintln!("skipped: this is the CUDA build");
        return;
    }
    let why = cuda().expect_err("a CPU build cannot open CUDA");
    assert!(why.contains("built without CUDA") && why.contains("make cuda"), "{why}");
}
