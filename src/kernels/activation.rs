//! Activations, forward and backward side by side. GELU is the erf form (PyTorch's default):
//! gelu(z) = z·Φ(z), gelu'(z) = Φ(z) + z·φ(z).

use super::{cpu_slice, use_cpu_kernel, Real};
use crate::config::Activation;
use crate::dispatch_real;
use anyhow::Result;
use candle_core::Tensor;
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// act(z) and act'(z) together: one evaluation of the expensive part (erf, tanh) serves both.
fn act_and_derivative<T: Real>(kind: Activation, z: T) -> (T, T) {
    match kind {
        // PyTorch's convention: the derivative at 0 is 0.
        Activation::Relu => {
            if z > T::zero() {
                (z, T::one())
            } else {
                (T::zero(), T::zero())
            }
        }
        Activation::Tanh => {
            let t = z.tanh();
            (t, T::one() - t * t)
        }
        Activation::Gelu => {
            let (cdf, pdf) = z.normal_cdf_pdf();
            (z * cdf, cdf + z * pdf)
        }
    }
}

/// a = act(z), any shape (evaluation: no derivative needed).
pub fn forward(kind: Activation, z: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernel(z) {
        return reference::forward(kind, z);
    }
    let z = z.contiguous()?;
    dispatch_real!(z, forward_cpu(kind, &z))
}

fn forward_cpu<T: Real>(kind: Activation, z: &Tensor) -> Result<Tensor> {
    let mut out = vec![T::zero(); z.elem_count()];
    cpu_slice::<T, _>(z, |z| {
        out.par_chunks_mut(CHUNK).zip(z.par_chunks(CHUNK)).for_each(|(dst, src)| {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = act_and_derivative(kind, x).0;
            }
        })
    })?;
    Ok(Tensor::from_vec(out, z.shape(), z.device())?)
}

/// (act(z), act'(z)) for training: the backward pass then only multiplies by act'(z).
pub fn forward_with_derivative(kind: Activation, z: &Tensor) -> Result<(Tensor, Tensor)> {
    if !use_cpu_kernel(z) {
        return Ok((reference::forward(kind, z)?, reference::derivative(kind, z)?));
    }
    let z = z.contiguous()?;
    dispatch_real!(z, forward_with_derivative_cpu(kind, &z))
}

fn forward_with_derivative_cpu<T: Real>(kind: Activation, z: &Tensor) -> Result<(Tensor, Tensor)> {
    let mut out = vec![T::zero(); z.elem_count()];
    let mut derivative = vec![T::zero(); z.elem_count()];
    cpu_slice::<T, _>(z, |z| {
        out.par_chunks_mut(CHUNK)
            .zip(derivative.par_chunks_mut(CHUNK))
            .zip(z.par_chunks(CHUNK))
            .for_each(|((dst, ddst), src)| {
                for ((d, dd), &x) in dst.iter_mut().zip(ddst.iter_mut()).zip(src) {
                    (*d, *dd) = act_and_derivative(kind, x);
                }
            })
    })?;
    Ok((Tensor::from_vec(out, z.shape(), z.device())?, Tensor::from_vec(derivative, z.shape(), z.device())?))
}

/// dz = da · act'(z), from the derivative saved by [`forward_with_derivative`].
pub fn backward(da: &Tensor, derivative: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernel(da) {
        return Ok((da * derivative)?);
    }
    let (da, derivative) = (da.contiguous()?, derivative.contiguous()?);
    dispatch_real!(da, backward_cpu(&da, &derivative))
}

fn backward_cpu<T: Real>(da: &Tensor, derivative: &Tensor) -> Result<Tensor> {
    let mut out = vec![T::zero(); da.elem_count()];
    cpu_slice::<T, _>(da, |da| {
        cpu_slice::<T, _>(derivative, |derivative| {
            out.par_chunks_mut(CHUNK)
                .zip(da.par_chunks(CHUNK))
                .zip(derivative.par_chunks(CHUNK))
                .for_each(|((dst, das), ds)| {
                    for ((d, &g), &s) in dst.iter_mut().zip(das).zip(ds) {
                        *d = g * s;
                    }
                })
        })
    })?;
    Ok(Tensor::from_vec(out, da.shape(), da.device())?)
}

pub mod reference {
    use super::*;

    pub fn forward(kind: Activation, z: &Tensor) -> Result<Tensor> {
        Ok(match kind {
            Activation::Relu => z.relu()?,
            Activation::Tanh => z.tanh()?,
            Activation::Gelu => z.gelu_erf()?,
        })
    }

    /// act'(z) from candle ops.
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
}
