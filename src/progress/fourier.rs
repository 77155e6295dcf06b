//! The orthonormal Fourier basis over Z_n (Nanda et al. 2023, §4): the constant row 1/√n
//! and, for every frequency k = 1 … ⌊n/2⌋, the rows cos(2πkx/n) and sin(2πkx/n), each scaled
//! to unit norm. For even n the last frequency n/2 has its cos row (−1)^x only: its sin row
//! is zero. Either way there are n rows, and for n = p or n = p − 1 with p an odd prime the
//! frequencies are k = 1 … (p − 1)/2.

use std::f64::consts::PI;
use std::ops::Range;

/// The basis as a matrix `[n, n]` (row r is basis vector r, row-major): row 0 the constant,
/// rows 2k − 1 and 2k the cos and sin of frequency k.
#[derive(Clone, Debug, PartialEq)]
pub struct Basis {
    pub n: usize,
    pub matrix: Vec<f64>,
}

impl Basis {
    pub fn new(n: usize) -> Basis {
        let mut matrix = vec![0.0; n * n];
        let constant = 1.0 / (n as f64).sqrt();
        matrix[..n].fill(constant);
        for k in 1..=n / 2 {
            let nyquist = 2 * k == n;
            let scale = if nyquist { constant } else { (2.0 / n as f64).sqrt() };
            for x in 0..n {
                let angle = 2.0 * PI * (k * x % n) as f64 / n as f64;
                matrix[(2 * k - 1) * n + x] = scale * angle.cos();
                if !nyquist {
                    matrix[2 * k * n + x] = scale * angle.sin();
                }
            }
        }
        Basis { n, matrix }
    }

    /// The frequencies k = 1 … ⌊n/2⌋.
    pub fn frequencies(&self) -> usize {
        self.n / 2
    }

    /// The rows of frequency k (≥ 1): its cos and sin rows, or the cos row alone at n/2.
    pub fn rows_of(&self, k: usize) -> Range<usize> {
        (2 * k - 1)..(2 * k + 1).min(self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B·Bᵀ = I for odd and even n: the rows are orthonormal, so B is a rotation.
    #[test]
    fn rows_are_orthonormal() {
        for n in [1, 2, 3, 4, 12, 13, 112, 113] {
            let b = Basis::new(n);
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..n).map(|x| b.matrix[i * n + x] * b.matrix[j * n + x]).sum();
                    let expected = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - expected).abs() < 1e-12, "n = {n}, rows {i}, {j}: {dot}");
                }
            }
        }
    }

    #[test]
    fn rows_are_the_named_waves() {
        let b = Basis::new(7);
        let x = 3;
        let norm = (2.0f64 / 7.0).sqrt();
        assert!((b.matrix[(2 * 2 - 1) * 7 + x] - norm * (2.0 * PI * 6.0 / 7.0).cos()).abs() < 1e-15);
        assert!((b.matrix[2 * 2 * 7 + x] - norm * (2.0 * PI * 6.0 / 7.0).sin()).abs() < 1e-15);
        assert_eq!(b.frequencies(), 3);
        assert_eq!(b.rows_of(3), 5..7);
        let even = Basis::new(6);
        assert_eq!(even.frequencies(), 3);
        assert_eq!(even.rows_of(3), 5..6);
    }
}
