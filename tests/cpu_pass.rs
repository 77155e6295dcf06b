//! The CPU pass (src/cpu) against the tensor-ops pass it replaces on the CPU: statistics and
//! every gradient, for every input kind, activation, loss, depth, logit scale and precision,
//! on enough rows that a run spans several chunks and ends in a partial block.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::config::Loss;
use grokstack::models::mlp::cpu::{CHUNK_ROWS, RUNS_PER_WAVE};
use grokstack::models::PassOptions;
use grokstack::train::Stack;

/// p = 53 at 80% train: 2,247 train rows (3 chunks, the last partial) and 562 test rows.
const WIDE: &str = r#"
name = "wide"
seeds = 3
[task]
op = "add"
p = 53
train_fraction = 0.8
[model]
input = "embedding"
embed_dim = 8
hidden = [12, 10]
activation = "gelu"
[train]
epochs = 1
lr = 0.01
"#;

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff_of_largest(got: &[f64], expected: &[f64]) -> f64 {
    let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    got.iter().zip(expected).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

fn compare(overrides: &[&str], tol: f64) {
    let runs = common::runs(WIDE, overrides);
    let (loss, loss_bf16) = (runs[0].config.loss, runs[0].config.loss_bf16);
    let stack = Stack::new(runs, &Device::Cpu).unwrap();
    let (rows, labels) = (&stack.train.rows, &stack.train.labels);
    assert!(rows.dim(1).unwrap() > 2 * CHUNK_ROWS, "the test needs several chunks per run");
    let (stats, grads) =
        grokstack::models::mlp::cpu::train_pass(&stack.model.mlp().unwrap(), rows, labels, loss, loss_bf16).unwrap();
    let options = PassOptions::new(loss, loss_bf16, 2);
    let (expected_stats, expected_grads, _) = stack.model.train_pass_tensors(rows, labels, &options).unwrap();
    let what = overrides.join(" ");
    // Accuracy and the collapse counts are exact; the loss is within the tolerance.
    let (s, e) = (values(&stats), values(&expected_stats));
    assert!(max_diff_of_largest(&s, &e) < tol, "{what}: statistics {s:?} vs {e:?}");
    for ((got, expected), param) in grads.iter().zip(&expected_grads).zip(&stack.model.params) {
        assert_eq!(got.dims(), expected.dims(), "{what}: {} gradient shape", param.name);
        let diff = max_diff_of_largest(&values(got), &values(expected));
        assert!(diff < tol, "{what}: {} gradient differs by {diff:e} of its largest value", param.name);
    }
    let test_stats = grokstack::models::mlp::cpu::evaluate(
        &stack.model.mlp().unwrap(),
        &stack.test.rows,
        &stack.test.labels,
        loss,
        loss_bf16,
    )
    .unwrap();
    let (expected, _) = stack.model.evaluate_tensors(&stack.test.rows, &stack.test.labels, &options).unwrap();
    assert!(max_diff_of_largest(&values(&test_stats), &values(&expected)) < tol, "{what}: evaluation");
}

#[test]
fn f64_matches_tensor_ops() {
    for input in ["embedding", "two_hot"] {
        for activation in ["relu", "gelu", "tanh"] {
            for loss in ["softmax", "stablemax", "sparsemax"] {
                let overrides = [
                    &format!("model.input={input}") as &str,
                    &format!("model.activation={activation}"),
                    &format!("train.loss={loss}"),
                    "train.dtype=f64",
                ];
                compare(&overrides, 1e-12);
            }
        }
    }
}

#[test]
fn f32_matches_tensor_ops() {
    for activation in ["relu", "gelu", "tanh"] {
        compare(&[&format!("model.activation={activation}")], 2e-5);
    }
    compare(&["train.loss=stablemax", "model.input=two_hot"], 2e-5);
    // α = 40: a fifth of the rows collapse, and a few are zero terms.
    compare(&["train.loss=sparsemax", "model.alpha=40.0"], 2e-5);
}

#[test]
fn depth_and_logit_scale() {
    compare(&["model.hidden=[9]", "train.dtype=f64", "model.alpha=2.5"], 1e-12);
    compare(&["model.hidden=[7, 11, 6]", "train.dtype=f64", "model.alpha=0.5"], 1e-12);
    compare(&["model.hidden=[7, 11, 6]", "model.alpha=0.5"], 2e-5);
}

#[test]
fn bf16_rounds_where_the_tensor_ops_store() {
    // Summation order differs between the passes (blocks vs one GEMM), and one f32 ulp can
    // move a value across a bf16 rounding boundary: a bf16 ulp (2⁻⁸) of the largest value.
    compare(&["train.dtype=bf16"], 1e-2);
    compare(&["train.dtype=bf16_mixed", "model.alpha=2.0"], 1e-2);
    compare(&["train.dtype=bf16", "train.loss=sparsemax", "model.alpha=40.0"], 1e-2);
}

#[test]
fn a_run_gets_the_same_bits_alone_and_in_any_stack() {
    for dtype in ["f32", "f64"] {
        // More runs than one wave, so that the second wave is checked too.
        let seeds = format!("seeds={}", RUNS_PER_WAVE + 6);
        let runs = common::runs(WIDE, &[&format!("train.dtype={dtype}"), &seeds]);
        let stack = Stack::new(runs.clone(), &Device::Cpu).unwrap();
        let (stats, grads) = grokstack::models::mlp::cpu::train_pass(
            &stack.model.mlp().unwrap(),
            &stack.train.rows,
            &stack.train.labels,
            Loss::Softmax,
            false,
        )
        .unwrap();
        for position in [3, RUNS_PER_WAVE + 2] {
            let alone = Stack::new(vec![runs[position].clone()], &Device::Cpu).unwrap();
            let (alone_stats, alone_grads) = grokstack::models::mlp::cpu::train_pass(
                &alone.model.mlp().unwrap(),
                &alone.train.rows,
                &alone.train.labels,
                Loss::Softmax,
                false,
            )
            .unwrap();
            assert_eq!(
                values(&stats.narrow(0, position, 1).unwrap()),
                values(&alone_stats),
                "{dtype}: statistics of run {position}"
            );
            for (g, a) in grads.iter().zip(&alone_grads) {
                assert_eq!(
                    values(&g.narrow(0, position, 1).unwrap()),
                    values(a),
                    "{dtype}: gradients of run {position}"
                );
            }
        }
    }
}
