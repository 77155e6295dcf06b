//! Weight constraints applied after every optimizer step ("step then project", Cesista 2025,
//! "Spectral clipping"), with any optimizer. Every Linear weight W `[R, in, out]` is projected
//! by `train.constraint`, each embedding vector's RMS is capped at `train.embed_rms_cap`; β, λ
//! and the cap are per run, and every computation is per run over the whole stack at once.
//!
//!   spectral_normalize   W ← W / max(1, σ_max)
//!   spectral_hardcap     W ← U·min(β, Σ)·Vᵀ = ½[β·M + W − (β·M − W)·msign(β·M − W)ᵀ·M], M = msign(W)
//!   spectral_clipped_wd  W ← (1 − λ)·W + λ·hardcap_β(W)
//!   stiefel              W ← msign(W)
//!
//! msign(W) = U·Vᵀ is the odd-polynomial iteration Muon and Scion use, with Polar Express's
//! coefficients and more steps in the run's dtype: the hard cap needs msign accurate, not just
//! near 1, since an error in a singular value of M shows up in the capped weight.

use super::muon::{orthogonalize, Iteration};
use super::polar_express::schedule;
use super::{Optimizer, RunHyper};
use crate::config::Constraint;
use crate::models::{Model, Place};
use crate::run_axis::per_run;
use crate::state::{State, StateDict};
use anyhow::Result;
use candle_core::{Tensor, D};

/// Five Polar Express steps bring every singular value above ~1e-3·‖W‖_F near 1; five more of
/// its last (quintic Newton–Schulz) step converge those to 1 to the dtype's precision.
pub const MSIGN_STEPS: usize = 10;

/// Power iterations for σ_max, from a fixed start (the all-ones vector).
pub const POWER_ITERATIONS: usize = 30;

/// msign(W) = U·Vᵀ of each matrix of `w` `[R, m, n]`.
pub fn msign(w: &Tensor) -> Result<Tensor> {
    orthogonalize(w, &Iteration { coefficients: schedule(MSIGN_STEPS), eps: 1e-8, bf16: false })
}

/// The largest singular value of each matrix of `w` `[R, in, out]`, `[R]` f64.
pub fn sigma_max(w: &Tensor) -> Result<Tensor> {
    let (runs, fan_in, _) = w.dims3()?;
    let start = Tensor::ones((runs, 1, fan_in), w.dtype(), w.device())?;
    Ok(crate::lipschitz::iterate(w, &start, POWER_ITERATIONS)?.1)
}

/// Every singular value of each matrix of `w` `[R, m, n]` capped at its run's `beta`.
pub fn hardcap(w: &Tensor, beta: &[f64]) -> Result<Tensor> {
    let beta = per_run(beta, w)?;
    let m = msign(w)?;
    let beta_m = m.broadcast_mul(&beta)?; // β·M
    let gap = (&beta_m - w)?; // U(β − Σ)Vᵀ
    let folded = gap.matmul(&msign(&gap)?.t()?)?.matmul(&m)?; // U|β − Σ|Vᵀ
    Ok((((beta_m + w)? - folded)? * 0.5)?)
}

/// W / max(1, σ_max) for each matrix of `w`.
pub fn spectral_normalize(w: &Tensor) -> Result<Tensor> {
    let divisor = sigma_max(w)?.maximum(1.0)?.to_dtype(w.dtype())?.reshape((w.dim(0)?, 1, 1))?;
    Ok(w.broadcast_div(&divisor)?)
}

/// Each row (embedding vector) of `e` `[R, rows, d]` scaled down to RMS `cap[r]` where it is
/// above; a cap of 0 leaves the run alone.
pub fn cap_rms(e: &Tensor, cap: &[f64]) -> Result<Tensor> {
    let cap: Vec<f64> = cap.iter().map(|&c| if c > 0.0 { c } else { f64::INFINITY }).collect();
    let rms = e.sqr()?.mean_keepdim(D::Minus1)?.sqrt()?; // [R, rows, 1]
    let factor = per_run(&cap, &rms)?.broadcast_div(&rms)?.minimum(1.0)?;
    Ok(e.broadcast_mul(&factor)?)
}

/// Project one Linear weight `[R, in, out]` by `kind`.
pub fn project(kind: Constraint, w: &Tensor, hyper: &RunHyper) -> Result<Tensor> {
    Ok(match kind {
        Constraint::None => w.clone(),
        Constraint::SpectralNormalize => spectral_normalize(w)?,
        Constraint::SpectralHardcap => hardcap(w, &hyper.constraint_beta)?,
        Constraint::SpectralClippedWd => {
            let lambda = per_run(&hyper.constraint_lambda, w)?;
            let keep = per_run(&hyper.constraint_lambda.iter().map(|l| 1.0 - l).collect::<Vec<_>>(), w)?;
            (w.broadcast_mul(&keep)? + hardcap(w, &hyper.constraint_beta)?.broadcast_mul(&lambda)?)?
        }
        Constraint::Stiefel => msign(w)?,
    })
}

/// An optimizer whose every step is followed by the constraints.
pub struct Constrained {
    inner: Box<dyn Optimizer>,
    kind: Constraint,
    hyper: RunHyper,
}

impl Constrained {
    pub fn new(inner: Box<dyn Optimizer>, kind: Constraint, hyper: &RunHyper) -> Constrained {
        Constrained { inner, kind, hyper: hyper.clone() }
    }

    /// Project every Linear weight and cap every embedding of `model`.
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        let storage = model.storage;
        let capped = self.hyper.embed_rms_cap.iter().any(|&c| c > 0.0);
        for param in &mut model.params {
            let place = param.group.place;
            let projected = match place {
                _ if place.is_linear_layer() && self.kind != Constraint::None => {
                    project(self.kind, &param.value, &self.hyper)?
                }
                Place::Embedding if capped => cap_rms(&param.value, &self.hyper.embed_rms_cap)?,
                _ => continue,
            };
            param.value = storage.state(projected.to_dtype(param.value.dtype())?)?;
        }
        Ok(())
    }
}

impl Optimizer for Constrained {
    fn step(&mut self, model: &mut Model, grads: &[Tensor], lr_scale: &[f64]) -> Result<()> {
        self.inner.step(model, grads, lr_scale)?;
        self.apply(model)
    }

    fn keep_runs(&mut self, positions: &[usize], index: &Tensor) -> Result<()> {
        self.hyper = self.hyper.select(positions);
        self.inner.keep_runs(positions, index)
    }

    fn state(&self) -> Result<State> {
        self.inner.state()
    }

    fn load_state(&mut self, model: &Model, state: &StateDict) -> Result<()> {
        self.inner.load_state(model, state)
    }
}
