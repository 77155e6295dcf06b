//! Rounding to bf16 at the storage points of a bf16 model.
//!
//! On the CPU a bf16 run computes in f32 (exactly, then rounds) and stores every tensor that
//! PyTorch's bf16 model stores in bf16 (weights, gradients, optimizer state, activations,
//! logits) as the f32 value of its nearest bf16, round-to-nearest-even. Matmuls of such values
//! accumulate in f32 and round their result, as bf16 GEMMs do on tensor cores.

use super::{cpu_slice, use_cpu_kernel};
use anyhow::Result;
use candle_core::{DType, Tensor};
use half::bf16;
use rayon::prelude::*;

/// Where a run keeps its values (`train.dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    F32,
    F64,
    /// Everything stored in bf16, as the reference's Lipschitz grid ran.
    Bf16,
    /// bf16 compute with f32 master weights and optimizer state.
    Bf16Mixed,
}

/// `t` rounded to bf16, kept in its f32 dtype.
pub fn round_bf16(t: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernel(t) || t.dtype() != DType::F32 {
        return reference(t);
    }
    let t = t.contiguous()?;
    let mut out = cpu_slice::<f32, _>(&t, |src| src.to_vec())?.unwrap_or_default();
    out.par_chunks_mut(4096).for_each(round_slice);
    Ok(Tensor::from_vec(out, t.shape(), t.device())?)
}

crate::avx2_twin! {
    /// Every value of a slice rounded to the nearest bf16 in place.
    pub fn round_slice<T>(x: &mut [T]) = round_loop;
}

#[inline(always)]
fn round_loop<T: super::Real>(x: &mut [T]) {
    x.iter_mut().for_each(|v| *v = v.round_bf16());
}

/// f32 → nearest bf16 → f32 on the bits: add half an ulp of bf16 (less one, plus the lowest
/// kept bit, for ties to even) and clear the 16 dropped bits; a NaN stays a quiet NaN. The
/// same rounding as `half::bf16::from_f32`, without a branch, so a loop of it vectorizes.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    let nan = (bits | 0x0040_0000) & 0xffff_0000;
    f32::from_bits(if x.is_nan() { nan } else { rounded })
}

/// f64 → nearest bf16 → f64 (only the tests round f64 values).
pub fn f64_to_bf16(x: f64) -> f64 {
    bf16::from_f64(x).to_f64()
}

/// The same through candle's dtype conversion.
pub fn reference(t: &Tensor) -> Result<Tensor> {
    Ok(t.to_dtype(DType::BF16)?.to_dtype(t.dtype())?)
}

/// How a precision stores what the forward and backward passes produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage {
    /// Activations, logits and gradients are bf16 (both bf16 modes).
    pub bf16_compute: bool,
    /// Weights and optimizer state are bf16 too (pure bf16).
    pub bf16_state: bool,
}

impl Storage {
    pub fn of(precision: Precision) -> Storage {
        Storage {
            bf16_compute: matches!(precision, Precision::Bf16 | Precision::Bf16Mixed),
            bf16_state: precision == Precision::Bf16,
        }
    }

    /// Store an activation or gradient.
    pub fn compute(&self, t: Tensor) -> Result<Tensor> {
        if self.bf16_compute {
            round_bf16(&t)
        } else {
            Ok(t)
        }
    }

    /// Store a weight or an optimizer state tensor.
    pub fn state(&self, t: Tensor) -> Result<Tensor> {
        if self.bf16_state {
            round_bf16(&t)
        } else {
            Ok(t)
        }
    }
}
