//! Batched power iteration against matrices with known singular values.

mod common;

use candle_core::{Device, Tensor};
use grokstack::lipschitz::iterate;

/// Q from Gram–Schmidt on a random n×n matrix.
fn orthogonal(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = grokstack::rng::Rng::new(seed, grokstack::rng::Stream::Synthetic);
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        for u in &q {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.iter().map(|a| a / norm).collect());
    }
    q
}

/// W = U·diag(s)·Vᵀ of shape [m, n] (min(m, n) singular values s).
fn with_singular_values(m: usize, n: usize, s: &[f64], seed: u64) -> Vec<f64> {
    let (u, v) = (orthogonal(m, seed), orthogonal(n, seed + 100));
    let mut w = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            w[i * n + j] = s.iter().enumerate().map(|(k, sk)| u[k][i] * sk * v[k][j]).sum();
        }
    }
    w
}

#[test]
fn spectral_norms_of_known_matrices() {
    let dev = Device::Cpu;
    let tops = [3.0, 0.7];
    let mut data = Vec::new();
    for (run, &top) in tops.iter().enumerate() {
        data.extend(with_singular_values(6, 9, &[top, top * 0.6, 0.4 * top, 0.2, 0.1, 0.05], run as u64));
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
    let w = Tensor::from_vec(with_singular_values(8, 8, &[2.0, 1.8, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1], 5), (1, 8, 8), &dev).unwrap();
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
