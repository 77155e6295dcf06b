//! Activations, forward and backward side by side. GELU is the erf form (PyTorch's default):
//! gelu(z) = z·Φ(z), gelu'(z) = Φ(z) + z·φ(z).

use super::{cpu_slice, use_cpu_kernel, Real};
use crate::config::Activation;
use crate::dispatch_real;
use anyhow::Result;
use candle_core::Tensor;
use rayon::prelude::*;

const CHUNK: usize = 4096;

fn act<T: Real>(kind: Activation, z: T) -> T {
    let half = T::from(0.5).unwrap_or_else(T::zero);
    match kind {
        Activation::Relu => num_traits::Float::max(z, T::zero()),
        Activation::Tanh => z.tanh(),
        Activation::Gelu => half * z * (T::one() + (z * T::from(std::f64::consts::FRAC_1_SQRT_2).unwrap_or_else(T::zero)).erf()),
    }
}

fn act_derivative<T: Real>(kind: Activation, z: T) -> T {
    match kind {
        // PyTorch's convention: the derivative at 0 is 0.
        Activation::Relu => {
            if z > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        Activation::Tanh => {
            let t = z.tanh();
            T::one() - t * t
        }
        Activation::Gelu => {
            let half = T::from(0.5).unwrap_or_else(T::zero);
            let cdf = half * (T::one() + (z * T::from(std::f64::consts::FRAC_1_SQRT_2).unwrap_or_else(T::zero)).erf());
            let pdf = (-half * z * z).exp() * T::from(0.398_942_280_401_432_7).unwrap_or_else(T::zero); // 1/√(2π)
            cdf + z * pdf
        }
    }
}

/// a = act(z), any shape.
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
                *d = act(kind, x);
            }
        })
    })?;
    Ok(Tensor::from_vec(out, z.shape(), z.device())?)
}

/// dz = da · act'(z), from the pre-activation z.
pub fn backward(kind: Activation, da: &Tensor, z: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernel(z) {
        return reference::backward(kind, da, z);
    }
    let (da, z) = (da.contiguous()?, z.contiguous()?);
    dispatch_real!(z, backward_cpu(kind, &da, &z))
}

fn backward_cpu<T: Real>(kind: Activation, da: &Tensor, z: &Tensor) -> Result<Tensor> {
    let mut out = vec![T::zero(); z.elem_count()];
    cpu_slice::<T, _>(z, |z| {
        cpu_slice::<T, _>(da, |da| {
            out.par_chunks_mut(CHUNK)
                .zip(z.par_chunks(CHUNK))
                .zip(da.par_chunks(CHUNK))
                .for_each(|((dst, zs), das)| {
                    for ((d, &x), &g) in dst.iter_mut().zip(zs).zip(das) {
                        *d = g * act_derivative(kind, x);
                    }
                })
        })
    })?;
    Ok(Tensor::from_vec(out, z.shape(), z.device())?)
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

    pub fn backward(kind: Activation, da: &Tensor, z: &Tensor) -> Result<Tensor> {
        let derivative = match kind {
            Activation::Relu => z.gt(0.0)?.to_dtype(z.dtype())?,
            Activation::Tanh => (1.0 - z.tanh()?.sqr()?)?,
            Activation::Gelu => {
                let cdf = (((z * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5)?;
                let pdf = ((z.sqr()? * -0.5)?.exp()? * 0.398_942_280_401_432_7)?;
                (cdf + (z * pdf)?)?
            }
        };
        Ok((da * derivative)?)
    }
}
