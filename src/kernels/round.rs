//! Rounding to bf16 at the storage points of a bf16 model.
//!
//! On the CPU a bf16 run computes in f32 (exactly, then rounds) and stores every tensor that
//! PyTorch's bf16 model stores in bf16 (weights, gradients, optimizer state, activations,
//! logits) as the f32 value of its nearest bf16, round-to-nearest-even. Matmuls of such values
//! accumulate in f32 and round their result, as bf16 GEMMs do on tensor cores.

use super::{cpu_slice, use_cpu_kernel};
use crate::config::Precision;
use anyhow::Result;
use candle_core::{DType, Tensor};
use half::bf16;
use rayon::prelude::*;

/// `t` rounded to bf16, kept in its f32 dtype.
pub fn round_bf16(t: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernel(t) || t.dtype() != DType::F32 {
        return reference(t);
    }
    let t = t.contiguous()?;
    let mut out = vec![0f32; t.elem_count()];
    cpu_slice::<f32, _>(&t, |src| {
        out.par_chunks_mut(4096).zip(src.par_chunks(4096)).for_each(|(dst, src)| {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = bf16::from_f32(x).to_f32();
            }
        })
    })?;
    Ok(Tensor::from_vec(out, t.shape(), t.device())?)
}

/// Every value of a slice rounded to the nearest bf16 in place.
pub fn round_slice<T: super::Real>(x: &mut [T]) {
    x.iter_mut().for_each(|v| *v = to_bf16(*v));
}

/// One value rounded to the nearest bf16 (round-to-nearest-even), in its own type.
pub fn to_bf16<T: super::Real>(x: T) -> T {
    T::from(bf16::from_f64(x.to_f64()).to_f64()).unwrap_or_else(T::nan)
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
