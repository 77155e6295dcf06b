//! The embedding's Fourier spectrum (Nanda et al. 2023, §5.1): how its energy spreads over
//! the frequencies, and two numbers for how concentrated that is.
//!
//! A run's operand table `[n, d]` has its rows in group order (row s is the token of element
//! s, see `super::group`); with two-hot input both operands' rows of the first layer sit side
//! by side, `[n, 2H₀]`. Its coefficients B·T `[n, d]` in the Fourier basis B `[n, n]` have, per
//! frequency k, the energy Σ ‖(B·T)_r‖² over the rows r of k; the spectrum is those energies
//! as shares of their sum, which leaves out the constant row.

use super::fourier::Basis;
use crate::cpu::matmul::{matmul, Layout};
use rayon::prelude::*;

/// Per run, the shares of frequencies k = 1 … ⌊n/2⌋ (in order of k) of the tables `[R, n, d]`.
/// A table with no energy outside the constant row has NaN shares.
pub fn spectra(basis: &Basis, tables: &[f64], d: usize) -> Vec<Vec<f64>> {
    let n = basis.n;
    tables
        .par_chunks(n * d)
        .map(|table| {
            let mut coefficients = vec![0.0; n * d];
            matmul(&mut coefficients, &basis.matrix, Layout::Plain, table, Layout::Plain, (n, n, d), false); // [n, d]
            let energy = frequency_energy(basis, &coefficients, d);
            let total: f64 = energy.iter().sum();
            energy.iter().map(|e| e / total).collect()
        })
        .collect()
}

/// Per frequency k = 1 … ⌊n/2⌋, the squared norm of the coefficient rows `[n, width]` of k.
pub fn frequency_energy(basis: &Basis, coefficients: &[f64], width: usize) -> Vec<f64> {
    (1..=basis.frequencies())
        .map(|k| coefficients[basis.rows_of(k).start * width..basis.rows_of(k).end * width].iter().map(|c| c * c).sum())
        .collect()
}

/// The Gini coefficient of non-negative shares: the mean absolute difference of all pairs over
/// twice the mean, Σᵢ Σⱼ |sᵢ − sⱼ| / (2m Σ s); 0 when the energy is spread evenly, 1 − 1/m
/// when one frequency holds it all. Computed from the sorted shares,
/// Σᵢ (2i − m − 1)·s₍ᵢ₎ / (m Σ s) with i = 1 … m ascending.
pub fn gini(shares: &[f64]) -> f64 {
    let mut sorted = shares.to_vec();
    sorted.sort_by(f64::total_cmp);
    let m = sorted.len() as f64;
    let weighted: f64 = sorted.iter().enumerate().map(|(i, s)| (2.0 * (i + 1) as f64 - m - 1.0) * s).sum();
    weighted / (m * sorted.iter().sum::<f64>())
}

/// The inverse participation ratio Σ s²: 1/m when the energy is spread evenly over m
/// frequencies, 1 when one holds it all.
pub fn ipr(shares: &[f64]) -> f64 {
    shares.iter().map(|s| s * s).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    #[test]
    fn gini_is_the_mean_absolute_difference_over_twice_the_mean() {
        let shares: [f64; 5] = [0.05, 0.5, 0.1, 0.3, 0.05];
        let m = shares.len() as f64;
        let pairs: f64 = shares.iter().flat_map(|a| shares.iter().map(move |b| (a - b).abs())).sum();
        assert!((gini(&shares) - pairs / (2.0 * m * 1.0)).abs() < 1e-15);
        assert!(gini(&[0.25; 4]).abs() < 1e-15);
        assert!((gini(&[0.0, 0.0, 1.0, 0.0]) - 0.75).abs() < 1e-15);
        assert!((ipr(&[0.25; 4]) - 0.25).abs() < 1e-15);
        assert_eq!(ipr(&[0.0, 1.0]), 1.0);
    }

    /// Columns made of cos(2π·2x/n) and sin(2π·5x/n) with amplitudes 3 and 4 (and a constant,
    /// which does not count): frequency 2 holds 9/25 of the energy, 5 holds 16/25.
    #[test]
    fn a_table_of_two_waves_has_their_shares() {
        let n = 13;
        let d = 2;
        let table: Vec<f64> = (0..n)
            .flat_map(|x| {
                let t = 2.0 * PI * x as f64 / n as f64;
                [7.0 + 3.0 * (2.0 * t).cos(), -1.0 + 4.0 * (5.0 * t).sin()]
            })
            .collect();
        let mut two_runs = table.clone();
        two_runs.extend(table.iter().map(|v| 2.0 * v));
        let spectra = spectra(&Basis::new(n), &two_runs, d);
        for shares in &spectra {
            assert_eq!(shares.len(), 6);
            for (k, share) in shares.iter().enumerate() {
                let expected = match k + 1 {
                    2 => 9.0 / 25.0,
                    5 => 16.0 / 25.0,
                    _ => 0.0,
                };
                assert!((share - expected).abs() < 1e-12, "k = {}: {share}", k + 1);
            }
        }
    }
}
