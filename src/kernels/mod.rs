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
    fn erf(self) -> Self;
}

impl Real for f32 {
    fn erf(self) -> f32 {
        libm::erff(self)
    }
}

impl Real for f64 {
    fn erf(self) -> f64 {
        libm::erf(self)
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
