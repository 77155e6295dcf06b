//! Polar Express (Amsel et al. 2025, arXiv 2505.16932) as the blog's fork runs it in talon.py:
//! five steps of odd quintics with per-step coefficients, the first seven divided by the
//! safety factor 1.01 (a/1.01, b/1.01³, c/1.01⁵), on X/(‖X‖_F + 1e-8), in bf16.
//! The polynomials map every singular value of the normalized input above ~1e-3 into a band
//! around 1 whose width the coefficients fix.

use super::muon::{orthogonalize, Iteration};
use anyhow::Result;
use candle_core::Tensor;

/// The fork's coefficient triples before the safety factor; steps past the eighth repeat the
/// last one, the quintic Newton–Schulz step whose fixed point 1 is attracting.
pub const COEFFICIENTS: [(f64, f64, f64); 8] = [
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
];

/// The safety factor on every triple but the last: it keeps values that rounding pushed a
/// little above 1 from being amplified.
pub const SAFETY: f64 = 1.01;

/// The (a, b, c) of `steps` steps.
pub fn schedule(steps: usize) -> Vec<(f64, f64, f64)> {
    let last = COEFFICIENTS.len() - 1;
    (0..steps)
        .map(|i| match COEFFICIENTS[i.min(last)] {
            (a, b, c) if i < last => (a / SAFETY, b / SAFETY.powi(3), c / SAFETY.powi(5)),
            triple => triple,
        })
        .collect()
}

/// Polar Express on each matrix of `x` `[R, m, n]` (transposed so that rows ≤ cols, as the
/// fork does): `steps` steps, every op rounded to bf16 with `bf16` (the fork's precision).
pub fn polar_express(x: &Tensor, steps: usize, bf16: bool) -> Result<Tensor> {
    orthogonalize(x, &Iteration { coefficients: schedule(steps), eps: 1e-8, bf16 })
}
