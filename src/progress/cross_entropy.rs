//! Softmax cross-entropy of one row of f64 logits, for the restricted and excluded losses.
//!
//! The training loss's f64 exp is libm's (the bits of f64 runs depend on it); here the
//! exponentials of a train set's rows × classes are most of the measures' cost, so they take
//! a polynomial that LLVM vectorizes, accurate to a few ulp.

use crate::kernels::sum_lanes;

/// ln Σ_c exp(x_c) − x_class, with x overwritten by exp(x − max).
pub fn cross_entropy(x: &mut [f64], class: usize) -> f64 {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let target = x[class];
    for v in x.iter_mut() {
        *v = exp_nonpositive(*v - max);
    }
    (max - target) + sum_lanes(x).ln()
}

/// exp(x) for x ≤ 0 (NaN stays NaN): x = n·ln 2 + r with |r| ≤ ln 2 / 2 (Cody and Waite's split
/// of ln 2, fdlibm's constants), e^r by its Taylor series to r¹³ (the next term is below
/// 1e-17 of it), times 2ⁿ built in the exponent bits. Below −708 the result would be
/// subnormal; it is 0, which changes no sum that holds exp(0) = 1.
/// 1/k! for k = 0 … 13.
const TAYLOR: [f64; 14] = {
    let mut out = [1.0; 14];
    let mut k = 1;
    while k < 14 {
        out[k] = out[k - 1] / k as f64;
        k += 1;
    }
    out
};

#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding 1.5·2⁵² rounds to an integer, which then sits in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let clamped = if x < -708.0 { -708.0 } else { x };
    let shifted = clamped * std::f64::consts::LOG2_E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = (clamped - n * LN2_HI) - n * LN2_LO;
    let mut poly = TAYLOR[13];
    for &c in TAYLOR[..13].iter().rev() {
        poly = poly * r + c;
    }
    let exponent = (shifted.to_bits() as i64).wrapping_sub(SHIFTER.to_bits() as i64) + 1023;
    let value = poly * f64::from_bits((exponent as u64) << 52);
    if x < -708.0 {
        0.0
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_agrees_with_libm_to_a_few_ulp() {
        let mut worst: f64 = 0.0;
        for i in 0..200_000 {
            let x = -(i as f64) * 0.003_5 - (i % 7) as f64 * 1e-9;
            let (ours, libm) = (exp_nonpositive(x), x.exp());
            worst = worst.max((ours - libm).abs() / libm);
        }
        assert!(worst < 4.0 * f64::EPSILON, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-800.0), 0.0);
        assert!(exp_nonpositive(f64::NAN).is_nan());
    }

    #[test]
    fn cross_entropy_is_log_sum_exp_less_the_target() {
        let logits = [0.3, -2.0, 5.5, 1.25, -40.0];
        let expected = logits.iter().map(|v: &f64| v.exp()).sum::<f64>().ln() - logits[3];
        let got = cross_entropy(&mut logits.to_vec(), 3);
        assert!((got - expected).abs() < 1e-14, "{got} vs {expected}");
    }
}
