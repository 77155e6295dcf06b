//! Per-run optimizers over a stacked model. Every hyperparameter is a per-run value, and
//! every update is computed per run, so runs in one stack never see each other.

pub mod adamw;
pub mod constraints;
pub mod muon;
pub mod orthogonal;
pub mod polar_express;
pub mod scion;
pub mod sgd;

use crate::config::{Constraint, Optimizer as Kind, RunConfig};
use crate::models::{Group, Model};
use crate::state::{restore_like, State, StateDict};
use anyhow::Result;
use candle_core::Tensor;

/// The per-run hyperparameters of a stack, one entry per run.
#[derive(Clone, Debug)]
pub struct RunHyper {
    pub lr: Vec<f64>,
    pub weight_decay: Vec<f64>,
    pub beta1: Vec<f64>,
    pub beta2: Vec<f64>,
    pub eps: Vec<f64>,
    pub all_reg: Vec<bool>,
    pub momentum: Vec<f64>,
    pub muon_momentum: Vec<f64>,
    pub muon_adam_lr: Vec<f64>,
    /// Optimizer steps of linear learning-rate warm-up (0: none).
    pub warmup: Vec<usize>,
    /// Scion's momentum m (d ← (1 − m)·d + m·g), radii and constrained steps.
    pub scion_momentum: Vec<f64>,
    pub scion_radius: Vec<f64>,
    pub scion_sign_radius: Vec<f64>,
    pub scion_constrained: Vec<bool>,
    /// The weight constraints' β and λ, and the embedding vectors' RMS cap (0: none).
    pub constraint_beta: Vec<f64>,
    pub constraint_lambda: Vec<f64>,
    pub embed_rms_cap: Vec<f64>,
}

impl RunHyper {
    pub fn from_configs<'a>(configs: impl Iterator<Item = &'a RunConfig> + Clone) -> RunHyper {
        let column = |f: fn(&RunConfig) -> f64| configs.clone().map(f).collect::<Vec<f64>>();
        RunHyper {
            lr: column(|c| c.lr),
            weight_decay: column(|c| c.weight_decay),
            beta1: column(|c| c.beta1),
            beta2: column(|c| c.adam_beta2()),
            eps: column(|c| c.adam_eps()),
            all_reg: configs.clone().map(|c| c.all_reg).collect(),
            momentum: column(|c| c.momentum),
            muon_momentum: column(|c| c.muon_momentum),
            muon_adam_lr: column(|c| c.muon_adam_lr),
            warmup: configs.clone().map(|c| c.warmup).collect(),
            scion_momentum: column(|c| c.scion_momentum),
            scion_radius: column(|c| c.scion_radius),
            scion_sign_radius: column(|c| c.scion_sign_radius),
            scion_constrained: configs.clone().map(|c| c.scion_constrained).collect(),
            constraint_beta: column(|c| c.constraint_beta),
            constraint_lambda: column(|c| c.constraint_lambda),
            embed_rms_cap: column(|c| c.embed_rms_cap),
        }
    }

    /// The hyperparameters of the runs at `positions`.
    pub fn select(&self, positions: &[usize]) -> RunHyper {
        let pick = |v: &[f64]| crate::run_axis::pick_runs(v, positions);
        RunHyper {
            lr: pick(&self.lr),
            weight_decay: pick(&self.weight_decay),
            beta1: pick(&self.beta1),
            beta2: pick(&self.beta2),
            eps: pick(&self.eps),
            all_reg: crate::run_axis::pick_runs(&self.all_reg, positions),
            momentum: pick(&self.momentum),
            muon_momentum: pick(&self.muon_momentum),
            muon_adam_lr: pick(&self.muon_adam_lr),
            warmup: crate::run_axis::pick_runs(&self.warmup, positions),
            scion_momentum: pick(&self.scion_momentum),
            scion_radius: pick(&self.scion_radius),
            scion_sign_radius: pick(&self.scion_sign_radius),
            scion_constrained: crate::run_axis::pick_runs(&self.scion_constrained, positions),
            constraint_beta: pick(&self.constraint_beta),
            constraint_lambda: pick(&self.constraint_lambda),
            embed_rms_cap: pick(&self.embed_rms_cap),
        }
    }

    /// Per-run factor on the learning rate of optimizer step `t` (1-based): linear warm-up,
    /// t / warmup until the warm-up is over, then 1.
    pub fn lr_scale(&self, t: usize) -> Vec<f64> {
        self.warmup.iter().map(|&w| if t >= w { 1.0 } else { t as f64 / w as f64 }).collect()
    }

    /// The learning rates of this step: `lr` times the warm-up factors `lr_scale`.
    pub fn scaled_lr(&self, lr_scale: &[f64]) -> Vec<f64> {
        scale_each(&self.lr, lr_scale)
    }

    /// Per-run weight decay of a parameter of `group`: zero in runs that do not decay it.
    pub fn decay_for(&self, group: Group) -> Vec<f64> {
        self.weight_decay
            .iter()
            .zip(&self.all_reg)
            .map(|(&wd, &all_reg)| if group.decayed(all_reg) { wd } else { 0.0 })
            .collect()
    }
}

/// values[r] · scale[r] for every run r.
pub fn scale_each(values: &[f64], scale: &[f64]) -> Vec<f64> {
    values.iter().zip(scale).map(|(v, s)| v * s).collect()
}

pub trait Optimizer {
    /// Apply one update to every parameter of `model` from `grads` (same order as
    /// `model.params`), every learning rate of run r times `lr_scale[r]` (the warm-up).
    fn step(&mut self, model: &mut Model, grads: &[Tensor], lr_scale: &[f64]) -> Result<()>;

    /// Keep the state of the runs at `positions` only (`index`: the same as a u32 tensor).
    fn keep_runs(&mut self, positions: &[usize], index: &Tensor) -> Result<()>;

    /// Everything `step` reads besides the model and the hyperparameters (moments, momentum
    /// buffers, the step counter), as named tensors for a checkpoint.
    fn state(&self) -> Result<State>;

    /// Restore [`Optimizer::state`] into an optimizer built for the same runs and model, so
    /// that the next step is bit for bit the one the saved optimizer would have taken.
    fn load_state(&mut self, model: &Model, state: &StateDict) -> Result<()>;
}

/// The state of optional per-parameter tensors under `{prefix}{i}`.
pub fn optional_state(prefix: &str, tensors: &[Option<Tensor>]) -> State {
    tensors.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (format!("{prefix}{i}"), t.clone()))).collect()
}

/// Restore optional per-parameter tensors saved by [`optional_state`]: every one that is
/// `Some` now (or, with `all`, every parameter) must be in the checkpoint, shaped as its
/// parameter of `model`.
pub fn load_optional(
    prefix: &str,
    tensors: &mut [Option<Tensor>],
    model: &Model,
    all: bool,
    state: &StateDict,
) -> Result<()> {
    for (i, slot) in tensors.iter_mut().enumerate() {
        if slot.is_some() || all {
            *slot = Some(restore_like(state, &format!("{prefix}{i}"), &model.params[i].value)?);
        }
    }
    Ok(())
}

/// Narrow optional per-parameter state tensors `[R, ...]` to the runs at `index`.
pub fn select_state(state: &mut [Option<Tensor>], index: &Tensor) -> Result<()> {
    for tensor in state.iter_mut().flatten() {
        *tensor = tensor.index_select(index, 0)?;
    }
    Ok(())
}

/// The optimizer the runs' config names, followed by their weight constraints if they have any
/// (`config`: any run of the stack, for the settings every run of a stack shares).
pub fn build(config: &RunConfig, model: &Model, hyper: &RunHyper) -> Result<Box<dyn Optimizer>> {
    let optimizer: Box<dyn Optimizer> = match config.optimizer {
        Kind::AdamW => Box::new(adamw::AdamW::new(model, hyper)?),
        Kind::OrthoAdamW => Box::new(adamw::AdamW::orthogonal(model, hyper)?),
        Kind::Sgd => Box::new(sgd::Sgd::new(model, hyper)),
        Kind::Muon => Box::new(muon::Muon::new(model, hyper, config.ns_steps)?),
        Kind::Scion => Box::new(scion::Scion::new(model, hyper, config.ns_steps, config.polar_bf16)?),
    };
    Ok(if config.constraint == Constraint::None && hyper.embed_rms_cap.iter().all(|&c| c == 0.0) {
        optimizer
    } else {
        Box::new(constraints::Constrained::new(optimizer, config.constraint, hyper))
    })
}
