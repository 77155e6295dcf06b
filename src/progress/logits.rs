//! The logit side of the progress measures (Nanda et al. 2023, §5.1), in f64.
//!
//! L `[P, C]` are one run's logits over the task's P pairs (p², or (p − 1)² for mul and div).
//! For a frequency k, the directions cos(2πk·s/n) and sin(2πk·s/n) of R^P, s = s(a, b) the
//! pair's answer in Z_n (`super::group`), each normalized, span a plane; P_k L projects every
//! column of L onto it. Every answer s has the same number of pairs, n, so
//!
//!   P_k L at a pair with answer s = (f f^T M)[s],   M = the mean logits of each answer `[n, C]`,
//!
//! with f the basis rows of k (`super::fourier`): the projections only need M, whose
//! coefficients B·M `[n, C]` are one GEMM with the basis per run. The energy of k,
//! ‖P_k L‖² = n·‖(B·M) rows of k‖², ranks the frequencies (the factor n changes no order).
//!
//! - restricted loss: cross-entropy over all pairs of Σ_key P_k L + mean over pairs of
//!   (L − Σ_key P_k L); the projections have mean 0, so that mean is the constant row's part.
//!   The restricted logits and the class of a pair depend on its answer alone, so the mean
//!   over pairs is the mean over the n answers.
//! - excluded loss: cross-entropy over the train pairs of L − Σ_key P_k L.

use super::cross_entropy::cross_entropy;
use super::fourier::Basis;
use super::spectrum::frequency_energy;
pub use crate::config::progress::KeyChoice;
use crate::cpu::matmul::{matmul, Layout};

/// The coefficients B·M `[n, C]` of one run's mean logits per answer `means` `[n, C]`.
pub fn coefficients(basis: &Basis, means: &[f64], classes: usize) -> Vec<f64> {
    let n = basis.n;
    let mut out = vec![0.0; n * classes];
    matmul(&mut out, &basis.matrix, Layout::Plain, means, Layout::Plain, (n, n, classes), false); // [n, C]
    out
}

/// The key frequencies of a run with `coefficients` `[n, C]`, strongest first: by `choice`,
/// ties in energy broken by the lower frequency; a fixed list as given, in order of energy.
pub fn key_frequencies(basis: &Basis, coefficients: &[f64], classes: usize, choice: &KeyChoice) -> Vec<usize> {
    let energy = frequency_energy(basis, coefficients, classes);
    let mut candidates: Vec<usize> = match choice {
        KeyChoice::Strongest(_) => (1..=basis.frequencies()).collect(),
        KeyChoice::Fixed(list) => list.clone(),
    };
    candidates.sort_by(|&a, &b| energy[b - 1].total_cmp(&energy[a - 1]).then(a.cmp(&b)));
    if let KeyChoice::Strongest(count) = choice {
        candidates.truncate(*count);
    }
    candidates
}

/// Σ_key P_k in answer space: Bᵀ·(the coefficient rows of the key frequencies) `[n, C]`, the
/// part of the mean logits of every answer that the key frequencies carry.
pub fn key_part(basis: &Basis, coefficients: &[f64], classes: usize, keys: &[usize]) -> Vec<f64> {
    let n = basis.n;
    let mut kept = vec![0.0; n * classes];
    for &k in keys {
        let rows = basis.rows_of(k);
        kept[rows.start * classes..rows.end * classes]
            .copy_from_slice(&coefficients[rows.start * classes..rows.end * classes]);
    }
    let mut out = vec![0.0; n * classes];
    matmul(&mut out, &basis.matrix, Layout::Transposed, &kept, Layout::Plain, (n, n, classes), false); // [n, C]
    out
}

/// The restricted loss: the mean over answers s of the cross-entropy of key_part[s] + the
/// constant row's part against the class `class_of(s)`.
pub fn restricted_loss(
    basis: &Basis,
    coefficients: &[f64],
    key_part: &[f64],
    classes: usize,
    class_of: impl Fn(usize) -> usize,
) -> f64 {
    let n = basis.n;
    // The constant row's part of every answer: coefficient · 1/√n, the mean logit of a class.
    let mean: Vec<f64> = coefficients[..classes].iter().map(|c| c * basis.matrix[0]).collect();
    let mut row = vec![0.0; classes];
    let total: f64 = (0..n)
        .map(|s| {
            row.iter_mut().zip(&key_part[s * classes..(s + 1) * classes]).zip(&mean).for_each(|((r, k), m)| *r = k + m);
            cross_entropy(&mut row, class_of(s))
        })
        .sum();
    total / n as f64
}

/// The excluded loss: the mean over the train rows with an answer of the cross-entropy of
/// logits − key_part[answer] against the answer's class; `logits` `[N, C]`, `answers` `[N]`.
pub fn excluded_loss<T: Copy + Into<f64>>(
    logits: &[T],
    answers: &[Option<u32>],
    key_part: &[f64],
    classes: usize,
    class_of: impl Fn(usize) -> usize,
) -> f64 {
    let mut row = vec![0.0; classes];
    let (mut total, mut count) = (0.0, 0usize);
    for (x, answer) in logits.chunks_exact(classes).zip(answers) {
        let Some(s) = answer.map(|s| s as usize) else { continue };
        row.iter_mut().zip(x).zip(&key_part[s * classes..(s + 1) * classes]).for_each(|((r, &l), k)| *r = l.into() - k);
        total += cross_entropy(&mut row, class_of(s));
        count += 1;
    }
    total / count as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// Means per answer made of a constant, frequency 3 (amplitude 5) and frequency 1
    /// (amplitude 0.5) in every class column, shifted per class: the coefficients put the
    /// energy there, frequency 3 first.
    #[test]
    fn key_frequencies_are_the_strongest_waves() {
        let (n, classes) = (11, 3);
        let means: Vec<f64> = (0..n)
            .flat_map(|s| {
                let t = 2.0 * PI * s as f64 / n as f64;
                (0..classes).map(move |c| 2.0 + 5.0 * (3.0 * t + c as f64).cos() + 0.5 * (t - c as f64).sin())
            })
            .collect();
        let basis = Basis::new(n);
        let coefficients = coefficients(&basis, &means, classes);
        assert_eq!(key_frequencies(&basis, &coefficients, classes, &KeyChoice::Strongest(2)), vec![3, 1]);
        assert_eq!(key_frequencies(&basis, &coefficients, classes, &KeyChoice::Fixed(vec![4, 1, 3])), vec![3, 1, 4]);
        // The key part of frequencies 3 and 1 is the means less their constant.
        let part = key_part(&basis, &coefficients, classes, &[3, 1]);
        for (s, (p, m)) in part.iter().zip(&means).enumerate() {
            assert!((p - (m - 2.0)).abs() < 1e-12, "entry {s}: {p} vs {m}");
        }
        let only_3 = key_part(&basis, &coefficients, classes, &[3]);
        let c = 1;
        let s = 4;
        let t = 2.0 * PI * s as f64 / n as f64;
        assert!((only_3[s * classes + c] - 5.0 * (3.0 * t + c as f64).cos()).abs() < 1e-12);
    }
}
