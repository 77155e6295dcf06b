//! The elementwise work of the network: activations, losses, the first layer's gather,
//! bf16 rounding and the AdamW update.
//!
//! Activations, losses and the gather come in two forms side by side: functions on slices,
//! which the CPU passes (`crate::models::mlp::cpu`) call on one block of rows at a time, and functions on
//! whole `[R, N, H]` tensors written with candle ops, which other devices run and which the
//! tests compare the CPU pass against.

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
    /// exp(x), written so that loops over slices vectorize (f32), or libm's (f64).
    fn exp_fast(self) -> Self;
    /// The nearest bf16 value (round-to-nearest-even), in this type.
    fn round_bf16(self) -> Self;
}

const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

impl Real for f32 {
    /// Abramowitz & Stegun 7.1.26 for erf (absolute error ≤ 1.5e-7, about f32's own
    /// resolution near 1), sharing exp(−z²/2) with the density: several times cheaper than
    /// libm's erff, which dominated the GELU layers' time.
    #[inline(always)]
    fn normal_cdf_pdf(self) -> (f32, f32) {
        const P: f32 = 0.327_591_1;
        const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
        let x = self.abs() * std::f32::consts::FRAC_1_SQRT_2;
        let gauss = (-0.5 * self * self).exp_fast(); // exp(−x²) with x = |z|/√2
        let t = 1.0 / (1.0 + P * x);
        let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
        let erf_abs = 1.0 - poly * gauss;
        let erf = if self < 0.0 { -erf_abs } else { erf_abs };
        (0.5 * (1.0 + erf), gauss * INV_SQRT_2PI as f32)
    }

    #[inline(always)]
    fn round_bf16(self) -> f32 {
        round::f32_to_bf16(self)
    }

    /// exp(x) = 2ⁿ·exp(r) with n = round(x/ln 2), |r| ≤ ln2/2, and exp(r) by its Taylor
    /// series to r⁷ (truncation error 5e-9, below f32's resolution). No branches and no libm
    /// call, so a loop of it vectorizes. NaN stays NaN; below −87 the result is 0 and above
    /// 88 it is +∞, where f32 would underflow to subnormals or overflow.
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        // ln 2 split so that n·LN2_HI is exact for the n that occur (Cody and Waite).
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        // Adding 1.5·2²³ rounds to an integer, which then sits in the low mantissa bits.
        const SHIFTER: f32 = 12_582_912.0;
        const COEFFICIENTS: [f32; 8] = [1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0];
        // NaN passes.
        let x = self.clamp(-87.0, 88.0);
        let shifted = x * LOG2E + SHIFTER;
        let n = shifted - SHIFTER;
        let r = (x - n * LN2_HI) - n * LN2_LO;
        let mut poly = COEFFICIENTS[7];
        for &c in COEFFICIENTS[..7].iter().rev() {
            poly = poly * r + c;
        }
        let exponent = (shifted.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32) + 127;
        let value = poly * f32::from_bits((exponent << 23) as u32);
        if self < -87.0 {
            0.0
        } else if self > 88.0 {
            f32::INFINITY
        } else {
            value
        }
    }
}

impl Real for f64 {
    fn normal_cdf_pdf(self) -> (f64, f64) {
        (0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2)), (-0.5 * self * self).exp() * INV_SQRT_2PI)
    }

    fn exp_fast(self) -> f64 {
        self.exp()
    }

    fn round_bf16(self) -> f64 {
        round::f64_to_bf16(self)
    }
}

/// Whether the processor has AVX2 and FMA (the answer is cached by std).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `pub fn name<T: Real>(args)` that runs the `#[inline(always)]` function `body` compiled for
/// AVX2 and FMA when the processor has them, else as it is. The slice loops of the kernels are
/// written so that LLVM vectorizes them; the AVX2 copy gets 8 lanes instead of SSE2's 4,
/// without building the whole program for AVX2.
#[macro_export]
macro_rules! avx2_twin {
    ($(#[$doc:meta])* $vis:vis fn $name:ident<T>($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident;) => {
        $(#[$doc])*
        $vis fn $name<T: $crate::kernels::Real>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn twin<T: $crate::kernels::Real>($($arg: $ty),*) $(-> $ret)? {
                    $body::<T>($($arg),*)
                }
                if $crate::kernels::has_avx2() {
                    // SAFETY: the processor has the features `twin` is compiled for.
                    return unsafe { twin::<T>($($arg),*) };
                }
            }
            $body::<T>($($arg),*)
        }
    };
}

/// Σ x in eight interleaved partial sums, combined at the end: a fixed order (so the result
/// does not depend on the machine) that still vectorizes, which one running sum cannot.
#[inline(always)]
pub fn sum_lanes<T: Real>(x: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let chunks = x.chunks_exact(8);
    let tail: T = chunks.remainder().iter().copied().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().copied().sum::<T>() + tail
}

/// The contiguous CPU data of a tensor, borrowed for as long as the view lives: several can be
/// held at once, unlike the closure of [`cpu_slice`].
pub struct CpuView<G> {
    guard: G,
    start: usize,
    end: usize,
}

/// A view of `t`'s data; fails when `t` is not contiguous.
pub fn cpu_view(t: &Tensor) -> Result<CpuView<impl std::ops::Deref<Target = Storage> + '_>> {
    let (guard, layout) = t.storage_and_layout();
    let (start, end) =
        layout.contiguous_offsets().ok_or_else(|| anyhow!("tensor of shape {:?} is not contiguous", t.shape()))?;
    Ok(CpuView { guard, start, end })
}

impl<G: std::ops::Deref<Target = Storage>> CpuView<G> {
    pub fn slice<T: WithDType>(&self) -> Result<&[T]> {
        match &*self.guard {
            Storage::Cpu(cpu) => Ok(&cpu.as_slice::<T>()?[self.start..self.end]),
            _ => bail!("tensor is not on the CPU"),
        }
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
