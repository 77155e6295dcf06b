//! SGD with per-run momentum (torch.optim.SGD, no dampening) and decoupled weight decay:
//!   b ← μ·b + g  (b = g at the first step);   p ← p·(1 − lr·wd) − lr·b

use super::{load_optional, optional_state, select_state, Optimizer, RunHyper};
use crate::models::Model;
use crate::run_axis::per_run;
use crate::state::{self, State, StateDict};
use anyhow::Result;
use candle_core::Tensor;

pub struct Sgd {
    hyper: RunHyper,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(model: &Model, hyper: &RunHyper) -> Sgd {
        Sgd { hyper: hyper.clone(), buffers: vec![None; model.params.len()] }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut Model, grads: &[Tensor], lr_scale: &[f64]) -> Result<()> {
        let storage = model.storage;
        let lr = self.hyper.scaled_lr(lr_scale);
        for (i, (param, grad)) in model.params.iter_mut().zip(grads).enumerate() {
            let p = &param.value;
            let buffer = match &self.buffers[i] {
                None => grad.clone(),
                Some(b) => (b.broadcast_mul(&per_run(&self.hyper.momentum, p)?)? + grad)?,
            };
            let decay: Vec<f64> =
                self.hyper.decay_for(param.group).iter().zip(&lr).map(|(wd, lr)| 1.0 - lr * wd).collect();
            let decayed = p.broadcast_mul(&per_run(&decay, p)?)?;
            param.value = storage.state((decayed - buffer.broadcast_mul(&per_run(&lr, p)?)?)?)?;
            self.buffers[i] = Some(storage.state(buffer)?);
        }
        Ok(())
    }

    fn state(&self) -> Result<State> {
        let mut out = optional_state("optimizer.sgd.buffer.", &self.buffers);
        out.push((
            "optimizer.sgd.started".into(),
            state::scalar(usize::from(self.buffers.iter().any(Option::is_some)))?,
        ));
        Ok(out)
    }

    fn load_state(&mut self, model: &Model, state: &StateDict) -> Result<()> {
        // Before the first step there are no buffers (the first one is the gradient itself).
        let started = state::read_scalar(state, "optimizer.sgd.started")? == 1;
        load_optional("optimizer.sgd.buffer.", &mut self.buffers, model, started, state)
    }

    fn keep_runs(&mut self, positions: &[usize], index: &Tensor) -> Result<()> {
        self.hyper = self.hyper.select(positions);
        select_state(&mut self.buffers, index)
    }
}
