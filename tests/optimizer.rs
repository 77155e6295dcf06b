//! AdamW against a hand computation, and the reference's parameter groups.

mod common;

use candle_core::{Device, Tensor};
use grokstack::kernels::adamw::{reference, step, AdamHyper};
use grokstack::models::{Model, Place};
use grokstack::optim::{adamw::AdamW, Optimizer, RunHyper};

fn hyper() -> AdamHyper {
    // Two runs with different hyperparameters.
    AdamHyper {
        lr: vec![0.1, 0.01],
        weight_decay: vec![0.5, 0.0],
        beta1: vec![0.9, 0.8],
        beta2: vec![0.99, 0.999],
        eps: vec![1e-8, 1e-8],
    }
}

#[test]
fn two_adamw_steps_match_a_hand_computation() {
    let dev = Device::Cpu;
    let p0 = Tensor::new(&[[1.0f64, -2.0], [0.5, 3.0]], &dev).unwrap();
    let zeros = p0.zeros_like().unwrap();
    let g1 = Tensor::new(&[[0.5f64, 0.25], [-1.0, 2.0]], &dev).unwrap();
    let g2 = Tensor::new(&[[-0.2f64, 0.25], [0.3, -4.0]], &dev).unwrap();
    let h = hyper();
    let (p1, m1, v1) = step(&p0, &g1, &zeros, &zeros, &h, 1, false).unwrap();
    let (p2, _, _) = step(&p1, &g2, &m1, &v1, &h, 2, false).unwrap();
    let got: Vec<Vec<f64>> = p2.to_vec2().unwrap();

    // Run 0, element 0, written out step by step: lr 0.1, wd 0.5, β = (0.9, 0.99), ε = 1e-8.
    // Step 1: p = 1·(1 − 0.05) = 0.95; m = 0.1·0.5 = 0.05; v = 0.01·0.25 = 0.0025;
    //   m̂ step size = 0.1 / (1 − 0.9) = 1; √v / √(1 − 0.99) = 0.05 / 0.1 = 0.5;
    //   p = 0.95 − 1·0.05 / (0.5 + 1e-8).
    let p_step1 = 0.95 - 0.05 / (0.5 + 1e-8);
    // Step 2: p = p·0.95; m = 0.9·0.05 + 0.1·(−0.2) = 0.025; v = 0.99·0.0025 + 0.01·0.04 = 0.002875;
    //   step size = 0.1 / (1 − 0.81) ; denominator = √0.002875 / √(1 − 0.9801) + 1e-8.
    let p_step2 = p_step1 * 0.95 - (0.1 / 0.19) * 0.025 / (0.002875f64.sqrt() / 0.0199f64.sqrt() + 1e-8);
    assert!((got[0][0] - p_step2).abs() < 1e-12, "run 0: {} vs hand {}", got[0][0], p_step2);

    // Run 1, element 1 (no weight decay): lr 0.01, β = (0.8, 0.999).
    // Step 1: m = 0.2·2 = 0.4, v = 0.001·4 = 0.004, step = 0.01/0.2, denom = √0.004/√0.001 + ε = 2 + ε.
    let q1 = 3.0 - (0.01 / 0.2) * 0.4 / (2.0 + 1e-8);
    // Step 2: m = 0.8·0.4 + 0.2·(−4) = −0.48; v = 0.999·0.004 + 0.001·16 = 0.019996.
    let q2 = q1 - (0.01 / (1.0 - 0.64)) * -0.48 / (0.019996f64.sqrt() / (1.0 - 0.998001f64).sqrt() + 1e-8);
    assert!((got[1][1] - q2).abs() < 1e-12, "run 1: {} vs hand {}", got[1][1], q2);
}

#[test]
fn fused_adamw_matches_reference_ops() {
    let dev = Device::Cpu;
    for dtype in [candle_core::DType::F64, candle_core::DType::F32] {
        let p = Tensor::randn(0f64, 1.0, (2, 3, 4), &dev).unwrap().to_dtype(dtype).unwrap();
        let g = Tensor::randn(0f64, 1.0, (2, 3, 4), &dev).unwrap().to_dtype(dtype).unwrap();
        let m = Tensor::randn(0f64, 0.1, (2, 3, 4), &dev).unwrap().to_dtype(dtype).unwrap();
        let v = Tensor::randn(0f64, 0.1, (2, 3, 4), &dev).unwrap().abs().unwrap().to_dtype(dtype).unwrap();
        for bf16_state in [false, true] {
            let fused = step(&p, &g, &m, &v, &hyper(), 7, bf16_state).unwrap();
            let plain = reference::step(&p, &g, &m, &v, &hyper(), 7, bf16_state).unwrap();
            let tol = if dtype == candle_core::DType::F64 { 1e-12 } else { 1e-5 };
            for (a, b) in [(fused.0, plain.0), (fused.1, plain.1), (fused.2, plain.2)] {
                let a: Vec<f64> =
                    a.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let b: Vec<f64> =
                    b.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                assert!(
                    common::max_rel_diff(&a, &b) < tol,
                    "{dtype:?} bf16 state {bf16_state}: fused AdamW differs from reference"
                );
            }
        }
    }
}

/// With zero gradients AdamW only decays: regularized tensors shrink by (1 − lr·wd), the others stay.
fn decayed_tensors(input: &str, all_reg: bool) -> Vec<(String, bool)> {
    let runs = common::runs(
        common::TINY,
        &[&format!("model.input={input}"), &format!("train.all_reg={all_reg}"), "train.dtype=f64"],
    );
    let arch = runs[0].config.arch();
    let mut model = Model::init(&arch, &[0, 1], grokstack::config::Precision::F64, &Device::Cpu).unwrap();
    let before = model.clone();
    let hyper = RunHyper::from_configs(runs.iter().map(|r| &r.config));
    let mut adamw = AdamW::new(&model, &hyper).unwrap();
    let grads: Vec<Tensor> = model.params.iter().map(|p| p.value.zeros_like().unwrap()).collect();
    adamw.step(&mut model, &grads, &[1.0, 1.0]).unwrap();
    let factor = 1.0 - 0.01 * 1.0;
    model
        .params
        .iter()
        .zip(&before.params)
        .map(|(after, before)| {
            let a: Vec<f64> = after.value.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f64> = before.value.flatten_all().unwrap().to_vec1().unwrap();
            let decayed = a.iter().zip(&b).all(|(x, y)| (x - y * factor).abs() < 1e-15);
            let unchanged = a == b;
            assert!(decayed != unchanged, "{}: neither exactly decayed nor unchanged", after.name);
            assert!(after.group.place == Place::Embedding || after.group.place.is_linear_layer());
            (after.name.clone(), decayed)
        })
        .collect()
}

#[test]
fn weight_decay_only_on_the_reference_groups() {
    let names = |list: Vec<(String, bool)>| list.into_iter().filter(|(_, d)| *d).map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(decayed_tensors("embedding", false)), ["layers.0.weight", "layers.1.weight", "layers.2.weight"]);
    assert_eq!(
        names(decayed_tensors("embedding", true)),
        ["embedding.weight", "layers.0.weight", "layers.1.weight", "layers.2.weight"]
    );
    assert_eq!(names(decayed_tensors("two_hot", false)), ["layers.1.weight", "layers.2.weight"]);
    assert_eq!(names(decayed_tensors("two_hot", true)), ["layers.0.weight", "layers.1.weight", "layers.2.weight"]);
}
