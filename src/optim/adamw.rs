//! AdamW as torch.optim.AdamW with the reference's parameter groups, and ⊥AdamW (OrthoGrad):
//! the same update from the gradient's component orthogonal to the weights.

use super::{orthogonal::orthogonal_grad, scale_each, Optimizer, RunHyper};
use crate::kernels::adamw::{step, AdamHyper};
use crate::models::Model;
use crate::state::{self, State, StateDict};
use anyhow::Result;
use candle_core::Tensor;

/// The moments of one parameter.
struct Moments {
    m: Tensor,
    v: Tensor,
}

pub struct AdamW {
    /// One hyperparameter set per parameter tensor (weight decay zeroed where not regularized).
    groups: Vec<AdamHyper>,
    /// `None` for the parameters another optimizer updates (Muon's hidden weights).
    moments: Vec<Option<Moments>>,
    /// ⊥AdamW: per parameter, per run, whether to project the gradient.
    orthogonalize: Option<Vec<Vec<bool>>>,
    t: usize,
}

impl AdamW {
    pub fn new(model: &Model, hyper: &RunHyper) -> Result<AdamW> {
        Self::for_params(model, hyper, &hyper.lr, |_| true)
    }

    /// ⊥AdamW: project the gradient of every regularized tensor (per run) before the step.
    pub fn orthogonal(model: &Model, hyper: &RunHyper) -> Result<AdamW> {
        let mut adamw = Self::new(model, hyper)?;
        let masks = model
            .params
            .iter()
            .map(|p| hyper.all_reg.iter().map(|&all_reg| p.group.decayed(all_reg)).collect())
            .collect();
        adamw.orthogonalize = Some(masks);
        Ok(adamw)
    }

    /// AdamW on the parameters for which `include(index)` holds, with learning rates `lr`.
    pub fn for_params(model: &Model, hyper: &RunHyper, lr: &[f64], include: impl Fn(usize) -> bool) -> Result<AdamW> {
        let groups = model
            .params
            .iter()
            .map(|param| AdamHyper {
                lr: lr.to_vec(),
                weight_decay: hyper.decay_for(param.group),
                beta1: hyper.beta1.clone(),
                beta2: hyper.beta2.clone(),
                eps: hyper.eps.clone(),
            })
            .collect();
        let moments = model
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if include(i) {
                    Ok(Some(Moments { m: p.value.zeros_like()?, v: p.value.zeros_like()? }))
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { groups, moments, orthogonalize: None, t: 0 })
    }
}

impl AdamW {
    /// The moments `{prefix}m.{i}`, `{prefix}v.{i}` and the step counter `{prefix}t`.
    pub fn state_with_prefix(&self, prefix: &str) -> Result<State> {
        let mut out = vec![(format!("{prefix}t"), state::scalar(self.t)?)];
        for (i, moments) in self.moments.iter().enumerate() {
            if let Some(Moments { m, v }) = moments {
                out.push((format!("{prefix}m.{i}"), m.clone()));
                out.push((format!("{prefix}v.{i}"), v.clone()));
            }
        }
        Ok(out)
    }

    pub fn load_state_with_prefix(&mut self, prefix: &str, model: &Model, state: &StateDict) -> Result<()> {
        self.t = state::read_scalar(state, &format!("{prefix}t"))?;
        for (i, moments) in self.moments.iter_mut().enumerate() {
            if moments.is_some() {
                let like = &model.params[i].value;
                let (m, v) = (
                    state::restore_like(state, &format!("{prefix}m.{i}"), like)?,
                    state::restore_like(state, &format!("{prefix}v.{i}"), like)?,
                );
                *moments = Some(Moments { m, v });
            }
        }
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, model: &mut Model, grads: &[Tensor], lr_scale: &[f64]) -> Result<()> {
        self.t += 1;
        let storage = model.storage;
        for (i, (param, grad)) in model.params.iter_mut().zip(grads).enumerate() {
            let Some(moments) = &mut self.moments[i] else { continue };
            let grad = match &self.orthogonalize {
                Some(masks) => orthogonal_grad(&param.value, grad, &masks[i])?,
                None => grad.clone(),
            };
            let group = AdamHyper { lr: scale_each(&self.groups[i].lr, lr_scale), ..self.groups[i].clone() };
            let (p, m, v) = step(&param.value, &grad, &moments.m, &moments.v, &group, self.t, storage.bf16_state)?;
            param.value = storage.state(p)?;
            *moments = Moments { m: storage.state(m)?, v: storage.state(v)? };
        }
        Ok(())
    }

    fn state(&self) -> Result<State> {
        self.state_with_prefix("optimizer.")
    }

    fn load_state(&mut self, model: &Model, state: &StateDict) -> Result<()> {
        self.load_state_with_prefix("optimizer.", model, state)
    }

    fn keep_runs(&mut self, positions: &[usize], index: &Tensor) -> Result<()> {
        for group in &mut self.groups {
            *group = group.select(positions);
        }
        for moments in self.moments.iter_mut().flatten() {
            *moments = Moments { m: moments.m.index_select(index, 0)?, v: moments.v.index_select(index, 0)? };
        }
        if let Some(masks) = &mut self.orthogonalize {
            for mask in masks.iter_mut() {
                *mask = crate::run_axis::pick_runs(mask, positions);
            }
        }
        Ok(())
    }
}
