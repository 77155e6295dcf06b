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
    let w = Tensor::from_vec(
        common::with_singular_values(8, 8, &[2.0, 1.8, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1], 5),
        (1, 8, 8),
        &dev,
    )
    .unwrap();
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

#[test]
fn the_rms_norm_scales_each_layer_by_the_root_of_fan_in_over_fan_out() {
    // TINY's layers are [6, 5], [5, 4] and [4, 7] (fan_in, fan_out).
    let scales = [(6.0f64 / 5.0).sqrt(), (5.0f64 / 4.0).sqrt(), (4.0f64 / 7.0).sqrt()];
    let train = |norm: &str| {
        let runs = common::runs(
            common::TINY,
            &["metrics.lipschitz=true", &format!("metrics.lipschitz_norm={norm}"), "train.dtype=f64", "seeds=1"],
        );
        grokstack::train::Stack::new(runs, &Device::Cpu).unwrap().train(|_, _| {}).unwrap().1
    };
    let (l2, rms) = (train("l2"), train("rms"));
    assert_eq!(l2.len(), rms.len());
    for (a, b) in l2.iter().zip(&rms) {
        assert_eq!(a.layer_spectral_norms.len(), 3);
        for ((sa, sb), k) in a.layer_spectral_norms.iter().zip(&b.layer_spectral_norms).zip(scales) {
            assert!((sb - sa * k).abs() < 1e-12 * sa, "epoch {}: {sb} vs {sa}·{k}", a.epoch);
        }
        let (bound_l2, bound_rms) = (a.lipschitz_bound.unwrap(), b.lipschitz_bound.unwrap());
        assert!((bound_l2 - a.layer_spectral_norms.iter().product::<f64>()).abs() < 1e-12 * bound_l2);
        assert!(
            (bound_rms - bound_l2 * scales.iter().product::<f64>()).abs() < 1e-12 * bound_rms,
            "epoch {}: bound",
            a.epoch
        );
    }
}
