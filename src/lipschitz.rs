//! The Lipschitz upper bound: the product of the Linear layers' spectral norms, each from a
//! batched power iteration that is warm-started from the previous epoch's vector.
//! `metrics.lipschitz_norm = "rms"` measures each layer as a map between RMS-normed spaces
//! instead (Cesista's and Scion's view): its spectral norm times √(fan_in/fan_out).
//!
//! With the weight stored as W `[R, in, out]` (the transpose of PyTorch's M = Wᵀ), one
//! iteration is  u = M·v = vᵀ·W,  x = Mᵀ·u = u·Wᵀ,  σ ≈ ‖x‖ / ‖u‖,  v ← x / ‖x‖.

use crate::rng::{Rng, Stream};
use crate::state::{restore_like, State, StateDict};
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

pub struct PowerIteration {
    /// One unit vector per Linear layer, `[R, 1, in]`.
    vectors: Vec<Tensor>,
    /// The latest estimate per layer, `[R]` (f64 on the device).
    sigmas: Vec<Tensor>,
    /// Per layer, the factor from the spectral norm to the reported one (1 for l2).
    scales: Vec<f64>,
    iterations: usize,
}

impl PowerIteration {
    /// Start vectors N(0, 1) from each run's own seed, one per layer of `shapes` (fan_in,
    /// fan_out); with `rms`, the norms reported are the RMS→RMS ones.
    pub fn new(
        seeds: &[u64],
        shapes: &[(usize, usize)],
        iterations: usize,
        rms: bool,
        dtype: DType,
        device: &Device,
    ) -> Result<PowerIteration> {
        let mut rngs: Vec<Rng> = seeds.iter().map(|&s| Rng::new(s, Stream::PowerIteration)).collect();
        let vectors = shapes
            .iter()
            .map(|&(n, _)| {
                let data: Vec<f64> =
                    rngs.iter_mut().flat_map(|rng| (0..n).map(|_| rng.normal()).collect::<Vec<_>>()).collect();
                Ok(Tensor::from_vec(data, (seeds.len(), 1, n), device)?.to_dtype(dtype)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let sigmas = shapes
            .iter()
            .map(|_| Tensor::zeros(seeds.len(), DType::F64, device))
            .collect::<candle_core::Result<_>>()?;
        let scales = shapes
            .iter()
            .map(|&(fan_in, fan_out)| if rms { (fan_in as f64 / fan_out as f64).sqrt() } else { 1.0 })
            .collect();
        Ok(PowerIteration { vectors, sigmas, scales, iterations })
    }

    /// Run the iterations on the current weights (one per layer, `[R, in, out]`).
    pub fn update(&mut self, weights: &[&Tensor]) -> Result<()> {
        for (layer, w) in weights.iter().enumerate() {
            let (vector, sigma) = iterate(w, &self.vectors[layer], self.iterations)?;
            self.vectors[layer] = vector;
            self.sigmas[layer] = sigma;
        }
        Ok(())
    }

    /// Per-layer norms `[R, layers]` (f64): spectral, or RMS→RMS with `rms`.
    pub fn spectral_norms(&self) -> Result<Tensor> {
        let scaled = self.sigmas.iter().zip(&self.scales).map(|(s, &k)| Ok((s * k)?)).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&scaled, 1)?)
    }

    /// The vectors `power.vector.{layer}` and estimates `power.sigma.{layer}`: warm starts
    /// carry from step to step, so a resumed stack needs them exactly.
    pub fn state(&self) -> State {
        let vectors = self.vectors.iter().enumerate().map(|(l, v)| (format!("power.vector.{l}"), v.clone()));
        vectors.chain(self.sigmas.iter().enumerate().map(|(l, s)| (format!("power.sigma.{l}"), s.clone()))).collect()
    }

    pub fn load_state(&mut self, state: &StateDict) -> Result<()> {
        for (l, v) in self.vectors.iter_mut().enumerate() {
            *v = restore_like(state, &format!("power.vector.{l}"), v)?;
        }
        for (l, s) in self.sigmas.iter_mut().enumerate() {
            *s = restore_like(state, &format!("power.sigma.{l}"), s)?;
        }
        Ok(())
    }

    /// Keep only the runs at `keep` (stack compaction).
    pub fn select_runs(&mut self, keep: &Tensor) -> Result<()> {
        for v in &mut self.vectors {
            *v = v.index_select(keep, 0)?;
        }
        for s in &mut self.sigmas {
            *s = s.index_select(keep, 0)?;
        }
        Ok(())
    }
}

fn norm_last(t: &Tensor) -> Result<Tensor> {
    Ok(t.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

/// `iterations` power iterations of W from `v` `[R, 1, in]`: the new unit vector and σ `[R]`.
pub fn iterate(w: &Tensor, v: &Tensor, iterations: usize) -> Result<(Tensor, Tensor)> {
    let w_t = w.t()?; // [R, out, in]
    let mut v = v.broadcast_div(&norm_last(v)?)?;
    let mut sigma = Tensor::zeros(w.dim(0)?, DType::F64, w.device())?;
    for _ in 0..iterations {
        let u = v.matmul(w)?; // M·v as a row: [R, 1, out]
        let x = u.matmul(&w_t)?; // Mᵀ·M·v: [R, 1, in]
        let x_norm = norm_last(&x)?; // [R, 1, 1]
        sigma = (&x_norm / norm_last(&u)?)?.flatten_all()?.to_dtype(DType::F64)?;
        v = x.broadcast_div(&x_norm)?;
    }
    Ok((v, sigma))
}
