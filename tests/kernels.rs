//! Every fused CPU kernel against the plain candle-ops implementation it replaces.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::config::{Activation, Loss};
use grokstack::kernels::{activation, gather, loss};

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(a: &Tensor, b: &Tensor, dtype: DType, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let tol = if dtype == DType::F64 { 1e-12 } else { 2e-6 };
    // Relative to the tensor's largest value: gradients contain differences of nearly equal
    // terms whose own relative error in f32 says nothing about the kernel.
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale;
    assert!(diff < tol, "{what} ({dtype:?}): fused vs reference differ by {diff:e} of the largest value");
}

fn random(shape: (usize, usize, usize), scale: f64, dtype: DType) -> Tensor {
    Tensor::randn(0f64, scale, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn random_rows(r: usize, n: usize, v: usize) -> Tensor {
    let rows: Vec<u32> = (0..r * n * 2).map(|i| ((i * 7919 + i / 3) % v) as u32).collect();
    Tensor::from_vec(rows, (r, n, 2), &Device::Cpu).unwrap()
}

fn random_labels(r: usize, n: usize, c: usize) -> Tensor {
    let labels: Vec<u32> = (0..r * n).map(|i| ((i * 31 + 5) % c) as u32).collect();
    Tensor::from_vec(labels, (r, n), &Device::Cpu).unwrap()
}

#[test]
fn gather_and_scatter() {
    for dtype in [DType::F64, DType::F32] {
        let (r, v, n, h) = (3, 10, 17, 6);
        let table = random((r, v, h), 1.0, dtype);
        let rows = random_rows(r, n, v);
        assert_close(&gather::gather_pair_sum(&table, &rows).unwrap(), &gather::reference::gather_pair_sum(&table, &rows).unwrap(), dtype, "gather");
        let dz = random((r, n, h), 1.0, dtype);
        assert_close(&gather::scatter_pair_sum(&dz, &rows, v).unwrap(), &gather::reference::scatter_pair_sum(&dz, &rows, v).unwrap(), dtype, "scatter");
    }
}

#[test]
fn activations_forward_and_backward() {
    for dtype in [DType::F64, DType::F32] {
        let z = random((2, 9, 5), 2.0, dtype);
        let da = random((2, 9, 5), 1.0, dtype);
        for kind in [Activation::Relu, Activation::Gelu, Activation::Tanh] {
            assert_close(&activation::forward(kind, &z).unwrap(), &activation::reference::forward(kind, &z).unwrap(), dtype, &format!("{kind:?} forward"));
            let (a, derivative) = activation::forward_with_derivative(kind, &z).unwrap();
            assert_close(&a, &activation::reference::forward(kind, &z).unwrap(), dtype, &format!("{kind:?} forward with derivative"));
            assert_close(&derivative, &activation::reference::derivative(kind, &z).unwrap(), dtype, &format!("{kind:?} derivative"));
            let expected = (&da * activation::reference::derivative(kind, &z).unwrap()).unwrap();
            assert_close(&activation::backward(&da, &derivative).unwrap(), &expected, dtype, &format!("{kind:?} backward"));
        }
    }
}

#[test]
fn losses_statistics_and_gradients() {
    for dtype in [DType::F64, DType::F32] {
        let (r, n, c) = (3, 11, 7);
        // Large logits make some rows collapse (softmax sum exactly 1) and some losses exactly 0.
        let mut logits = random((r, n, c), 3.0, dtype);
        let labels = random_labels(r, n, c);
        let spike = (labels.to_dtype(DType::F64).unwrap().unsqueeze(2).unwrap().broadcast_eq(&Tensor::arange(0f64, c as f64, &Device::Cpu).unwrap().reshape((1, 1, c)).unwrap()).unwrap().to_dtype(dtype).unwrap() * 1e4).unwrap();
        let first_run = spike.narrow(0, 0, 1).unwrap();
        let spiked = (logits.narrow(0, 0, 1).unwrap() + first_run).unwrap();
        logits = Tensor::cat(&[spiked, logits.narrow(0, 1, r - 1).unwrap()], 0).unwrap();
        for kind in [Loss::Softmax, Loss::StableMax] {
            let fused = loss::stats(kind, &logits, &labels, false).unwrap();
            let plain = loss::reference::stats(kind, &logits, &labels, false).unwrap();
            assert_close(&fused, &plain, dtype, &format!("{kind:?} stats"));
            let per_run: Vec<Vec<f64>> = fused.to_vec2().unwrap();
            assert_eq!(per_run[0][loss::STAT_ACC], 1.0, "the spiked run is always right");
            if kind == Loss::Softmax {
                assert_eq!(per_run[0][loss::STAT_COLLAPSE], 1.0, "the spiked run's softmax collapses");
                assert_eq!(per_run[0][loss::STAT_ZERO_TERMS], 1.0, "and its losses are exactly 0");
            }
            assert!(per_run[1][loss::STAT_COLLAPSE] < 1.0);
            assert_close(&loss::grad(kind, &logits, &labels).unwrap(), &loss::reference::grad(kind, &logits, &labels).unwrap(), dtype, &format!("{kind:?} grad"));
        }
    }
}
