//! Scion (Pethick et al. 2025) as the blog's fork runs it (talon.py, `get_optimizer`): a
//! momentum average of the gradients, and per parameter group a step of fixed size `radius`
//! along the linear minimization oracle lmo(d) of the group's norm.
//!
//!   d ← (1 − m)·d + m·g;   constrained: W ← (1 − lr)·W − lr·radius·lmo(d),
//!                           unconstrained: W ← W − lr·radius·lmo(d)
//!
//! With W stored `[R, in, out]` (PyTorch's [out, in] transposed), the groups are:
//! - hidden Linear layers, Spectral: Polar Express of d times √(fan_out/fan_in), radius
//!   `scion_radius`;
//! - the output layer, Sign: sign(d)/fan_in, radius `scion_sign_radius`;
//! - the embedding (or the two-hot first Linear layer), ColNorm: each embedding vector (each
//!   input unit's row of out-weights) scaled to unit RMS, d/(rms + 1e-8), radius `scion_radius`.
//!
//! As in the fork, the hidden and output groups follow `scion_constrained`, the embedding group
//! only in runs with `all_reg`; `train.weight_decay` plays no part. Initialization stays
//! PyTorch's: the fork never calls Scion's own `init`.

use super::muon::decay_and_step;
use super::polar_express::polar_express;
use super::{load_optional, optional_state, select_state, Optimizer, RunHyper};
use crate::models::{Model, Param, Place};
use crate::state::{State, StateDict};
use anyhow::{bail, Result};
use candle_core::{Tensor, D};

/// The fork's eps under the RMS in ColNorm.
const COLNORM_EPS: f64 = 1e-8;

/// A parameter's Scion group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lmo {
    Spectral,
    Sign,
    ColNorm,
}

impl Lmo {
    /// The fork's grouping: the output layer first (so a one-layer MLP's only layer is Sign),
    /// then the input side (the embedding, or the two-hot first layer, which the reference's
    /// groups leave undecayed), then the hidden matrices.
    pub fn of(param: &Param) -> Result<Lmo> {
        Ok(match param.group.place {
            Place::Embedding | Place::InputLayer => Lmo::ColNorm,
            Place::OutputLayer => Lmo::Sign,
            Place::HiddenLayer => Lmo::Spectral,
            Place::Other => bail!(
                "scion: no group for parameter {}; key `train.optimizer`: scion is implemented for the MLP",
                param.name
            ),
        })
    }
}

pub struct Scion {
    hyper: RunHyper,
    lmos: Vec<Lmo>,
    /// Polar Express steps and whether it runs in bf16.
    steps: usize,
    bf16: bool,
    buffers: Vec<Option<Tensor>>,
}

impl Scion {
    pub fn new(model: &Model, hyper: &RunHyper, steps: usize, bf16: bool) -> Result<Scion> {
        let lmos = model.params.iter().map(Lmo::of).collect::<Result<_>>()?;
        let buffers = model.params.iter().map(|p| Ok(Some(p.value.zeros_like()?))).collect::<Result<_>>()?;
        Ok(Scion { hyper: hyper.clone(), lmos, steps, bf16, buffers })
    }

    /// lmo(d) of `lmo`'s norm for `d` `[R, in, out]`, and the factor the step multiplies it by
    /// besides lr and the radius (√(fan_out/fan_in) for Spectral, 1/fan_in for Sign).
    fn direction(&self, lmo: Lmo, d: &Tensor) -> Result<(Tensor, f64)> {
        let (_, fan_in, fan_out) = d.dims3()?;
        Ok(match lmo {
            Lmo::Spectral => (polar_express(d, self.steps, self.bf16)?, (fan_out as f64 / fan_in as f64).sqrt()),
            Lmo::Sign => (d.sign()?, 1.0 / fan_in as f64),
            Lmo::ColNorm => (col_norm(d)?, 1.0),
        })
    }
}

/// Each row of `d` `[R, rows, width]` divided by its RMS (+ 1e-8): the fork's ColNorm of the
/// embedding table (`transpose = True`) and of a two-hot first layer, in PyTorch's layout.
pub fn col_norm(d: &Tensor) -> Result<Tensor> {
    let rms = d.sqr()?.mean_keepdim(D::Minus1)?.sqrt()?; // [R, rows, 1]
    Ok(d.broadcast_div(&(rms + COLNORM_EPS)?)?)
}

impl Optimizer for Scion {
    fn step(&mut self, model: &mut Model, grads: &[Tensor], lr_scale: &[f64]) -> Result<()> {
        let lr = self.hyper.scaled_lr(lr_scale);
        let storage = model.storage;
        let h = &self.hyper;
        let keep: Vec<f64> = h.scion_momentum.iter().map(|m| 1.0 - m).collect();
        let minus_m: Vec<f64> = h.scion_momentum.iter().map(|m| -m).collect();
        for (i, (param, grad)) in model.params.iter_mut().zip(grads).enumerate() {
            let Some(buffer) = &self.buffers[i] else { continue };
            let buffer = storage.state(decay_and_step(buffer, grad, &keep, &minus_m)?)?; // (1 − m)·d + m·g
            let lmo = self.lmos[i];
            let (direction, factor) = self.direction(lmo, &buffer)?;
            let radius = if lmo == Lmo::Sign { &h.scion_sign_radius } else { &h.scion_radius };
            let constrained = (0..lr.len()).map(|r| h.scion_constrained[r] && (lmo != Lmo::ColNorm || h.all_reg[r]));
            let decay: Vec<f64> = constrained.zip(&lr).map(|(c, lr)| if c { 1.0 - lr } else { 1.0 }).collect();
            let step: Vec<f64> = lr.iter().zip(radius).map(|(lr, radius)| lr * radius * factor).collect();
            param.value = storage.state(decay_and_step(
                &param.value,
                &direction.to_dtype(param.value.dtype())?,
                &decay,
                &step,
            )?)?;
            self.buffers[i] = Some(buffer);
        }
        Ok(())
    }

    fn state(&self) -> Result<State> {
        Ok(optional_state("optimizer.scion.buffer.", &self.buffers))
    }

    fn load_state(&mut self, model: &Model, state: &StateDict) -> Result<()> {
        load_optional("optimizer.scion.buffer.", &mut self.buffers, model, true, state)
    }

    fn keep_runs(&mut self, positions: &[usize], index: &Tensor) -> Result<()> {
        self.hyper = self.hyper.select(positions);
        select_state(&mut self.buffers, index)
    }
}
