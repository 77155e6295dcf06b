//! The elementwise and gather work on activation-sized tensors `[R, N, H]`.
//!
//! Each kernel has two implementations side by side: a fused CPU loop (rayon over rows,
//! one pass over memory) and a `reference` written with plain candle ops. The reference is
//! what non-CPU devices run and what the tests compare the fused loop against.

pub mod activation;
pub mod adamw;
pub mod gather;
pub mod loss;
pub mod round;

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Storage, Tensor, WithDType};

/// The float types the kernels run in. bf16 tensors are computed in f32 by the callers.
pub trait Real: WithDType + num_traits::Float + Send + Sync + std::iter::Sum {
    /// The standard normal CDF Φ(z) and density φ(z), which GELU and its derivative need.
    fn normal_cdf_pdf(self) -> (Self, Self);
}

const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Real for f32 {
    /// Abramowitz & Stegun 7.1.26 for erf (absolute error ≤ 1.5e-7, about f32's own
    /// resolution near 1), sharing exp(−z²/2) with the density: several times cheaper than
    /// libm's erff, which dominated the GELU layers' time.
    fn normal_cdf_pdf(self) -> (f32, f32) {
        const P: f32 = 0.327_591_1;
        const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
        let x = self.abs() * std::f32::consts::FRAC_1_SQRT_2;
        let gauss = (-0.5 * self * self).exp(); // exp(−x²) with x = |z|/√2
        let t = 1.0 / (1.0 + P * x);
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        let erf_abs = 1.0 - poly * gauss;
        let erf = if self < 0.0 { -erf_abs } else { erf_abs };
        (0.5 * (1.0 + erf), gauss * INV_SQRT_2PI as f32)
    }
}

impl Real for f64 {
    fn normal_cdf_pdf(self) -> (f64, f64) {
        (0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2)), (-0.5 * self * self).exp() * INV_SQRT_2PI)
    }
}

/// Run `f` on the contiguous CPU data of `t`, or return `None` when `t` is not on the CPU.
pub fn cpu_slice<T: WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<Option<R>> {
    let (storage, layout) = t.storage_and_layout();
    let cpu = match &*storage {
        Storage::Cpu(cpu) => cpu,
        _ => return Ok(None),
    };
    let data = cpu.as_slice::<T>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| anyhow!("kernel input of shape {:?} is not contiguous", t.shape()))?;
    Ok(Some(f(&data[start..end])))
}

/// Whether the fused CPU kernels apply: a CPU tensor of f32 or f64.
pub fn use_cpu_kernel(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Dispatch a generic kernel on the dtype of `$t` (f32 or f64).
#[macro_export]
macro_rules! dispatch_real {
    ($t:expr, $f:ident($($arg:expr),*)) => {
        match $t.dtype() {
            candle_core::DType::F32 => $f::<f32>($($arg),*),
            candle_core::DType::F64 => $f::<f64>($($arg),*),
            other => anyhow::bail!("no CPU kernel for {other:?}"),
        }
    };
}

pub(crate) fn expect_rank3(t: &Tensor, what: &str) -> Result<(usize, usize, usize)> {
    match t.dims() {
        &[r, n, h] => Ok((r, n, h)),
        dims => bail!("{what}: expected [R, N, H], found {dims:?}"),
    }
}
