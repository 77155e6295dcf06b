//! The transformer's CPU pass (src/models/transformer/cpu) against its tensor path: statistics
//! and every gradient, in f64 and f32, over configurations that together cover every option,
//! with dropout drawn from the same per-run masks; on enough rows that a run spans several
//! chunks and ends in a partial block. And a run's bits alone and in a stack.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::models::transformer::cpu::{self, block_rows, CHUNK_ROWS, RUNS_PER_WAVE};
use grokstack::models::transformer::Transformer;
use grokstack::models::{Arch, DropoutDraw, Model, PassOptions};
use grokstack::train::Stack;

/// p = 47 at 80% train: 1,767 train rows (4 chunks, the last partial, ending in a partial
/// block for T = 2, 3, 4) and 442 test rows. d = 8, F = 12; the options under test vary.
const BASE: &str = r#"
name = "tf"
seeds = 2
[task]
op = "add"
p = 47
train_fraction = 0.8
[model]
kind = "transformer"
layers = 2
d_model = 8
heads = 4
ffn_width = 12
rope_base = 10.0
[train]
epochs = 1
lr = 0.01
"#;

const DROPOUT: [&str; 4] = [
    "model.dropout_attention=0.2",
    "model.dropout_attention_output=0.1",
    "model.dropout_ffn_hidden=0.3",
    "model.dropout_ffn_output=0.15",
];

/// Ten configurations that together cover every norm × placement, every position, every FFN,
/// causal or not, 1 and 4 heads, 1 and 2 layers, biases or not, T = 2, 3, 4 and a bit string
/// of T = 11, dropout or not, and the three losses.
fn configurations() -> Vec<Vec<String>> {
    let spec = |options: &str, dropout: bool| -> Vec<String> {
        let mut set: Vec<String> = options.split_whitespace().map(String::from).collect();
        if dropout {
            set.extend(DROPOUT.iter().map(|s| s.to_string()));
        }
        set
    };
    vec![
        spec(
            "model.norm=rms model.norm_position=pre model.positional=rope model.ffn=swiglu model.causal=true \
            model.heads=4 model.layers=2 model.bias=false model.tokens=a_op_b_eq",
            true,
        ),
        spec(
            "model.norm=layer model.norm_position=pre model.positional=learned model.ffn=relu model.causal=false \
            model.heads=1 model.layers=1 model.bias=true model.tokens=a_b",
            true,
        ),
        spec(
            "model.norm=none model.norm_position=pre model.positional=none model.ffn=gelu model.causal=true \
            model.heads=4 model.layers=2 model.bias=true model.tokens=a_b_eq",
            true,
        ),
        spec(
            "model.norm=rms model.norm_position=post model.positional=learned model.ffn=gelu model.causal=true \
            model.heads=1 model.layers=2 model.bias=true model.tokens=a_b_eq",
            true,
        ),
        spec(
            "model.norm=layer model.norm_position=post model.positional=rope model.ffn=swiglu model.causal=false \
            model.heads=1 model.layers=2 model.bias=true model.tokens=a_op_b_eq",
            true,
        ),
        spec(
            "model.norm=none model.norm_position=post model.positional=rope model.ffn=relu model.causal=true \
            model.heads=4 model.layers=1 model.bias=false model.tokens=a_b",
            false,
        ),
        spec(
            "model.norm=layer model.norm_position=pre model.positional=rope model.ffn=gelu model.causal=true \
            model.heads=4 model.layers=2 model.bias=true model.tokens=a_op_b_eq train.loss=stablemax",
            false,
        ),
        spec(
            "model.norm=rms model.norm_position=pre model.positional=none model.ffn=relu model.causal=false \
            model.heads=1 model.layers=2 model.bias=false model.tokens=a_b_eq train.loss=sparsemax",
            true,
        ),
        spec(
            "model.norm=layer model.norm_position=post model.positional=none model.ffn=swiglu model.causal=true \
            model.heads=1 model.layers=1 model.bias=false model.tokens=a_op_b_eq",
            false,
        ),
        // Parity of 10 bits: [bits, =], T = 11, 819 train rows (2 chunks, a partial block).
        spec(
            "task.op=parity task.bits=10 model.norm=rms model.norm_position=pre model.positional=rope \
            model.ffn=swiglu model.causal=true model.heads=4 model.layers=2 model.bias=true model.tokens=a_op_b_eq",
            true,
        ),
    ]
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn largest(x: &[f64]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// The stack's transformer (its parameters shared, not copied).
fn transformer(model: &Model) -> Transformer {
    let Arch::Transformer(arch, _) = &model.arch else { panic!("not a transformer") };
    Transformer::from_params(arch, model.params.clone()).unwrap()
}

fn stack(overrides: &[String], dtype: &str) -> Stack {
    let mut all: Vec<&str> = overrides.iter().map(|s| s.as_str()).collect();
    let dtype = format!("train.dtype={dtype}");
    all.push(&dtype);
    Stack::new(common::runs(BASE, &all), &Device::Cpu).unwrap()
}

fn compare(overrides: &[String], dtype: &str, tol: f64) {
    let stack = stack(overrides, dtype);
    let config = &stack.runs[0].config;
    let (loss, loss_bf16) = (config.loss, config.loss_bf16);
    let (rows, labels) = (&stack.train.rows, &stack.train.labels);
    let (n, t) = (rows.dim(1).unwrap(), rows.dim(2).unwrap());
    assert!(
        n > CHUNK_ROWS && !(n % CHUNK_ROWS).is_multiple_of(block_rows(t)),
        "the test needs several chunks per run and a partial block"
    );
    let seeds: Vec<u64> = stack.runs.iter().map(|r| r.seed).collect();
    let draw = DropoutDraw { seeds: &seeds, step: 5 };
    let model = transformer(&stack.model);
    let (stats, grads) = cpu::train_pass(&model, rows, labels, loss, loss_bf16, Some(&draw)).unwrap();
    let options = PassOptions { dropout: Some(&draw), ..PassOptions::new(loss, loss_bf16, 1) };
    let (expected_stats, expected_grads, _) = stack.model.train_pass_tensors(rows, labels, &options).unwrap();
    let what = format!("{dtype} {}", overrides.join(" "));
    // Accuracy and the collapse counts are exact; the loss is within the tolerance.
    let (s, e) = (values(&stats), values(&expected_stats));
    let diff = s.iter().zip(&e).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / largest(&e);
    assert!(diff < tol, "{what}: statistics {s:?} vs {e:?}");
    let overall = expected_grads.iter().map(|g| largest(&values(g))).fold(0.0, f64::max);
    let rope = overrides.iter().any(|o| o == "model.positional=rope");
    for ((got, expected), param) in grads.iter().zip(&expected_grads).zip(&stack.model.params) {
        assert_eq!(got.dims(), expected.dims(), "{what}: {} gradient shape", param.name);
        let (got, expected) = (values(got), values(expected));
        // Without RoPE a key bias shifts every score of a query alike, which the softmax
        // ignores: its gradient is rounding noise, measured against the largest gradient.
        let inert = param.name.ends_with("attn.k.bias") && !rope;
        let scale = if inert { overall } else { largest(&expected) };
        assert!(scale > 0.0, "{what}: {} gradient is all zero", param.name);
        let diff = got.iter().zip(&expected).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale;
        assert!(diff < tol, "{what}: {} gradient differs by {diff:e} of its largest value", param.name);
    }
    let test_stats = cpu::evaluate(&model, &stack.test.rows, &stack.test.labels, loss, loss_bf16).unwrap();
    let options = PassOptions::new(loss, loss_bf16, 2);
    let (expected, _) = stack.model.evaluate_tensors(&stack.test.rows, &stack.test.labels, &options).unwrap();
    let (s, e) = (values(&test_stats), values(&expected));
    let diff = s.iter().zip(&e).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / largest(&e);
    assert!(diff < tol, "{what}: evaluation {s:?} vs {e:?}");
}

#[test]
fn f64_matches_the_tensor_path() {
    for overrides in configurations() {
        compare(&overrides, "f64", 1e-12);
    }
}

#[test]
fn f32_matches_the_tensor_path() {
    for overrides in configurations() {
        compare(&overrides, "f32", 2e-5);
    }
}

/// On the CPU, `Model::train_pass` and `Model::evaluate` are the CPU pass.
#[test]
fn the_model_takes_the_cpu_pass_on_the_cpu() {
    let overrides = &configurations()[0];
    let stack = stack(overrides, "f32");
    let config = &stack.runs[0].config;
    let seeds: Vec<u64> = stack.runs.iter().map(|r| r.seed).collect();
    let draw = DropoutDraw { seeds: &seeds, step: 0 };
    let (rows, labels) = (&stack.train.rows, &stack.train.labels);
    let options = PassOptions { dropout: Some(&draw), ..PassOptions::new(config.loss, config.loss_bf16, 1) };
    let (stats, grads, _) = stack.model.train_pass(rows, labels, &options).unwrap();
    let (cpu_stats, cpu_grads) =
        cpu::train_pass(&transformer(&stack.model), rows, labels, config.loss, config.loss_bf16, Some(&draw)).unwrap();
    assert_eq!(values(&stats), values(&cpu_stats));
    for (g, c) in grads.iter().zip(&cpu_grads) {
        assert_eq!(values(g), values(c));
    }
    let (eval, _) = stack.model.evaluate(&stack.test.rows, &stack.test.labels, &options).unwrap();
    let cpu_eval =
        cpu::evaluate(&transformer(&stack.model), &stack.test.rows, &stack.test.labels, config.loss, config.loss_bf16)
            .unwrap();
    assert_eq!(values(&eval), values(&cpu_eval));
}

#[test]
fn a_run_gets_the_same_bits_alone_and_in_a_stack_of_8() {
    const { assert!(RUNS_PER_WAVE < 8, "the stack of 8 should span more than one wave") };
    for (overrides, dtype) in
        [(&configurations()[0], "f32"), (&configurations()[4], "f64"), (&configurations()[9], "f32")]
    {
        let mut all: Vec<String> = overrides.clone();
        all.push(format!("train.dtype={dtype}"));
        all.push("seeds=8".into());
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        let runs = common::runs(BASE, &refs);
        let stack = Stack::new(runs.clone(), &Device::Cpu).unwrap();
        let config = &runs[0].config;
        let seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
        let draw = DropoutDraw { seeds: &seeds, step: 2 };
        let (stats, grads) = cpu::train_pass(
            &transformer(&stack.model),
            &stack.train.rows,
            &stack.train.labels,
            config.loss,
            config.loss_bf16,
            Some(&draw),
        )
        .unwrap();
        let test = cpu::evaluate(
            &transformer(&stack.model),
            &stack.test.rows,
            &stack.test.labels,
            config.loss,
            config.loss_bf16,
        )
        .unwrap();
        for position in [1, RUNS_PER_WAVE + 2] {
            let alone = Stack::new(vec![runs[position].clone()], &Device::Cpu).unwrap();
            let alone_draw = DropoutDraw { seeds: &seeds[position..position + 1], step: 2 };
            let model = transformer(&alone.model);
            let (alone_stats, alone_grads) = cpu::train_pass(
                &model,
                &alone.train.rows,
                &alone.train.labels,
                config.loss,
                config.loss_bf16,
                Some(&alone_draw),
            )
            .unwrap();
            let what = format!("{dtype} {}: run {position}", overrides.join(" "));
            assert_eq!(values(&stats.narrow(0, position, 1).unwrap()), values(&alone_stats), "{what}: statistics");
            for ((g, a), p) in grads.iter().zip(&alone_grads).zip(&alone.model.params) {
                assert_eq!(values(&g.narrow(0, position, 1).unwrap()), values(a), "{what}: {} gradient", p.name);
            }
            let alone_test =
                cpu::evaluate(&model, &alone.test.rows, &alone.test.labels, config.loss, config.loss_bf16).unwrap();
            assert_eq!(values(&test.narrow(0, position, 1).unwrap()), values(&alone_test), "{what}: evaluation");
        }
    }
}
