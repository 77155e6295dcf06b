//! Activations, forward and backward side by side. GELU is the erf form (PyTorch's default):
//! gelu(z) = z·Φ(z), gelu'(z) = Φ(z) + z·φ(z).
//!
//! On slices (the CPU pass) the forward pass of a training step computes act'(z) together
//! with act(z), since the expensive part (erf, tanh) serves both; the backward pass then only
//! multiplies. On tensors (other devices) both are candle ops.

use super::Real;
use anyhow::Result;
use candle_core::Tensor;

/// The hidden layers' nonlinearity (`model.activation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activation {
    Relu,
    /// The erf form, PyTorch's default.
    Gelu,
    Tanh,
}

crate::avx2_twin! {
    /// `z` ← act(z) in place, and with `derivative` act'(z) beside it. z, derivative `[B, H]`.
    pub fn forward_in_place<T>(kind: Activation, z: &mut [T], derivative: Option<&mut [T]>) = forward_loop;
}

#[inline(always)]
fn forward_loop<T: Real>(kind: Activation, z: &mut [T], derivative: Option<&mut [T]>) {
    match kind {
        // PyTorch's convention: the derivative at 0 is 0.
        Activation::Relu => {
            apply(z, derivative, |x| if x > T::zero() { (x, T::one()) } else { (T::zero(), T::zero()) })
        }
        Activation::Tanh => apply(z, derivative, |x| {
            let t = x.tanh();
            (t, T::one() - t * t)
        }),
        Activation::Gelu => apply(z, derivative, |x| {
            let (cdf, pdf) = x.normal_cdf_pdf();
            (x * cdf, cdf + x * pdf)
        }),
    }
}

/// One loop per activation, so that the match above is outside it and the loop vectorizes.
#[inline(always)]
fn apply<T: Real>(z: &mut [T], derivative: Option<&mut [T]>, f: impl Fn(T) -> (T, T)) {
    match derivative {
        Some(derivative) => {
            for (x, d) in z.iter_mut().zip(derivative.iter_mut()) {
                (*x, *d) = f(*x);
            }
        }
        None => {
            for x in z.iter_mut() {
                *x = f(*x).0;
            }
        }
    }
}

crate::avx2_twin! {
    /// `da` ← da · act'(z) in place: dz `[B, H]` from the derivative saved by the forward pass.
    pub fn backward_in_place<T>(da: &mut [T], derivative: &[T]) = backward_loop;
}

#[inline(always)]
fn backward_loop<T: Real>(da: &mut [T], derivative: &[T]) {
    for (g, &d) in da.iter_mut().zip(derivative) {
        *g *= d;
    }
}

/// a = act(z) on a tensor of any shape.
pub fn forward(kind: Activation, z: &Tensor) -> Result<Tensor> {
    Ok(match kind {
        Activation::Relu => z.relu()?,
        Activation::Tanh => z.tanh()?,
        Activation::Gelu => z.gelu_erf()?,
    })
}

/// act'(z) on a tensor of any shape.
pub fn derivative(kind: Activation, z: &Tensor) -> Result<Tensor> {
    Ok(match kind {
        Activation::Relu => z.gt(0.0)?.to_dtype(z.dtype())?,
        Activation::Tanh => (1.0 - z.tanh()?.sqr()?)?,
        Activation::Gelu => {
            let cdf = (((z * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5)?;
            let pdf = ((z.sqr()? * -0.5)?.exp()? * 0.398_942_280_401_432_7)?;
            (cdf + (z * pdf)?)?
        }
    })
}
