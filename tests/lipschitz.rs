//! Batched power iteration against matrices with known singular values.

mod common;

use candle_core::{Device, Tensor};
use grokstack::lipschitz::iterate;

#[test]
fn spectral_norms_of_known_matrices() {
    let dev = Device::Cpu;
    let tops = [3.0, 0.7];
    let mut data = Vec::new();
    for (run, &top) in tops.iter().enumerate() {
        data.extend(common::with_singular_values(6, 9, &[top, top * 0.6, 0.4 * top, 0.2, 0.1, 0.05], run as u64));
    }
    let w = Tensor::from_vec(data, (2, 6, 9), &dev).unwrap();
    let v0 = Tensor::randn(0f64, 1.0, (2, 1, 6), &dev).unwrap();
    let (_, sigma) = iterate(&w, &v0, 60).unwrap();
    let sigma: Vec<f64> = sigma.to_vec1().unwrap();
    for (got, want) in sigma.iter().zip(tops) {
        assert!((got - want).abs() < 1e-4 * want, "σ = {got}, expected {want}");
    }
}

#[test]
fn warm_start_converges_in_fewer_iterations() {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(common::with_singular_values(8, 8, &[2.0, 1.8, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1], 5), (1, 8, 8), &dev).unwrap();
    let v0 = Tensor::randn(0f64, 1.0, (1, 1, 8), &dev).unwrap();
    let (warm_vector, _) = iterate(&w, &v0, 40).unwrap();
    // A small change of the weights, as one optimizer step makes.
    let w2 = (&w + (Tensor::randn(0f64, 1.0, (1, 8, 8), &dev).unwrap() * 1e-3).unwrap()).unwrap();
    let (_, truth) = iterate(&w2, &v0, 500).unwrap();
    let truth = truth.to_vec1::<f64>().unwrap()[0];
    let iterations_to_converge = |start: &Tensor| {
        (1..200).find(|&k| {
            let (_, s) = iterate(&w2, start, k).unwrap();
            (s.to_vec1::<f64>().unwrap()[0] - truth).abs() < 1e-6 * truth
        })
    };
    let (warm, cold) = (iterations_to_converge(&warm_vector).unwrap(), iterations_to_converge(&v0).unwrap());
    assert!(warm < cold, "warm start took {warm} iterations, cold start {cold}");
}
