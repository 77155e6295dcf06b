//! Finite-difference checks (f64) of both backward passes, the tensor ops and the CPU pass:
//! every parameter, both input kinds, every activation, every loss.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::config::Loss;
use grokstack::kernels::loss;
use grokstack::train::Stack;

/// Σ over runs of each run's mean train loss, the scalar the backward pass differentiates.
fn total_loss(stack: &Stack, loss_kind: Loss) -> f64 {
    let (logits, _) = stack.model.forward(&stack.train.rows, true, None).unwrap();
    let stats = loss::stats(loss_kind, &logits, &stack.train.labels, false).unwrap();
    stats.narrow(1, 0, 1).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
}

fn check(input: &str, activation: &str, loss_name: &str, alpha: f64) {
    check_with(input, activation, loss_name, alpha, "[5, 4]");
}

fn check_with(input: &str, activation: &str, loss_name: &str, alpha: f64, hidden: &str) {
    let runs = common::runs(
        common::TINY,
        &[
            &format!("model.input={input}"),
            &format!("model.activation={activation}"),
            &format!("train.loss={loss_name}"),
            &format!("model.alpha={alpha}"),
            &format!("model.hidden={hidden}"),
            "train.dtype=f64",
        ],
    );
    let loss_kind = runs[0].config.loss;
    let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
    let (logits, cache) = stack.model.forward(&stack.train.rows, true, None).unwrap();
    let dlogits = loss::grad(loss_kind, &logits, &stack.train.labels).unwrap();
    let grads = stack.model.backward(&stack.train.rows, &cache, &dlogits).unwrap();
    assert_eq!(grads.len(), stack.model.params.len());
    let (_, cpu_grads) = grokstack::models::mlp::cpu::train_pass(
        &stack.model.mlp().unwrap(),
        &stack.train.rows,
        &stack.train.labels,
        loss_kind,
        false,
    )
    .unwrap();
    assert_eq!(cpu_grads.len(), stack.model.params.len());

    let h = 1e-6;
    for (index, grad) in grads.iter().enumerate() {
        let analytic: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
        let original = stack.model.params[index].value.clone();
        let values: Vec<f64> = original.flatten_all().unwrap().to_vec1().unwrap();
        let mut numeric = Vec::with_capacity(values.len());
        for i in 0..values.len() {
            let mut at = |delta: f64| {
                let mut shifted = values.clone();
                shifted[i] += delta;
                stack.model.params[index].value = Tensor::from_vec(shifted, original.shape(), &Device::Cpu).unwrap();
                total_loss(&stack, loss_kind)
            };
            numeric.push((at(h) - at(-h)) / (2.0 * h));
        }
        stack.model.params[index].value = original;
        let name = &stack.model.params[index].name;
        let cpu: Vec<f64> = cpu_grads[index].flatten_all().unwrap().to_vec1().unwrap();
        for (pass, analytic) in [("tensor ops", &analytic), ("CPU pass", &cpu)] {
            let scale = analytic.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-8);
            for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
                assert!(
                    (a - n).abs() <= 1e-6 * scale + 1e-9,
                    "{input}/{activation}/{loss_name}: d/d {name}[{i}]: {pass} backward {a:e}, finite difference {n:e}"
                );
            }
            assert!(analytic.iter().any(|x| *x != 0.0), "{name}: {pass} gradient is all zero");
        }
    }
}

#[test]
fn every_parameter_matches_finite_differences() {
    for input in ["embedding", "two_hot"] {
        for activation in ["relu", "gelu", "tanh"] {
            for loss_name in ["softmax", "stablemax", "sparsemax"] {
                check(input, activation, loss_name, 1.0);
            }
        }
    }
}

#[test]
fn logit_scale_is_differentiated() {
    check("embedding", "tanh", "softmax", 2.5);
    check("two_hot", "gelu", "stablemax", 0.5);
    check("embedding", "relu", "sparsemax", 3.0);
}

#[test]
fn one_and_three_hidden_layers() {
    let runs = common::runs(common::TINY, &["model.hidden=[4, 3, 5]", "train.dtype=f64"]);
    let stack = Stack::new(runs, &Device::Cpu).unwrap();
    assert_eq!(stack.model.params.len(), 5, "embedding + 4 Linear layers");
    assert_eq!(stack.model.params[0].value.dtype(), DType::F64);
    check_with("embedding", "gelu", "softmax", 1.0, "[4, 3, 5]");
    check_with("two_hot", "relu", "stablemax", 1.0, "[6]");
}
