//! Training one stack: the runs that share every shape train as one model.
//!
//! Epoch e is measured after e + 1 optimizer steps, on the post-step weights. The test
//! metrics of epoch e are evaluated right after step e; its train metrics come for free from
//! the forward pass of step e + 1, which sees the same weights (and from one extra forward
//! pass after the last step).

use crate::config::{Loss, RunSpec, StackKey};
use crate::data;
use crate::kernels::{gather, loss};
use crate::metrics::{MetricRows, RunResult, RunTracker};
use crate::model::{compute_dtype, Arch, Model};
use crate::lipschitz::PowerIteration;
use crate::optim::{self, Optimizer, RunHyper};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

/// The examples of every run of a stack: rows `[R, N, 2]` into the first layer's table and
/// labels `[R, N]`.
pub struct Batch {
    pub rows: Tensor,
    pub labels: Tensor,
}

impl Batch {
    fn new(runs: &[&[data::Example]], p: usize, device: &Device) -> Result<Batch> {
        let labels: Vec<u32> = runs.iter().flat_map(|examples| examples.iter().map(|e| e.label)).collect();
        let n = runs.first().map_or(0, |r| r.len());
        Ok(Batch { rows: gather::pair_rows(runs, p, device)?, labels: Tensor::from_vec(labels, (runs.len(), n), device)? })
    }
}

/// A stack in training: the model, its optimizer and its data.
pub struct Stack {
    pub runs: Vec<RunSpec>,
    pub key: StackKey,
    pub model: Model,
    optimizer: Box<dyn Optimizer>,
    /// Power iteration for the Lipschitz bound, when the sweep asks for it.
    lipschitz: Option<PowerIteration>,
    pub train: Batch,
    pub test: Batch,
    loss: Loss,
    loss_bf16: bool,
    /// Optimizer steps taken so far.
    pub steps: usize,
}

impl Stack {
    /// Build the stack of `runs`, which must all have the same [`StackKey`].
    pub fn new(runs: Vec<RunSpec>, device: &Device) -> Result<Stack> {
        let first = runs.first().context("a stack needs at least one run")?.config.clone();
        let key = first.stack_key();
        if let Some(other) = runs.iter().find(|r| r.config.stack_key() != key) {
            bail!("run {} has different shapes from run {} and cannot share its stack", other.run_id, runs[0].run_id);
        }
        let splits: Vec<data::Split> = runs.iter().map(|r| data::split(&r.config, r.seed)).collect();
        let train: Vec<&[data::Example]> = splits.iter().map(|s| s.train.as_slice()).collect();
        let test: Vec<&[data::Example]> = splits.iter().map(|s| s.test.as_slice()).collect();
        let seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
        let arch = Arch::from_config(&first);
        let model = Model::init(&arch, &seeds, first.precision, device)?;
        let dtype = compute_dtype(first.precision);
        let hyper = RunHyper::from_configs(runs.iter().map(|r| &r.config));
        let optimizer = optim::build(first.optimizer, &model, &hyper, first.ns_steps)?;
        let lipschitz = if first.lipschitz {
            let fan_ins: Vec<usize> = arch.linear_shapes().iter().map(|&(fan_in, _)| fan_in).collect();
            Some(PowerIteration::new(&seeds, &fan_ins, first.power_iters, dtype, device)?)
        } else {
            None
        };
        Ok(Stack {
            lipschitz,
            train: Batch::new(&train, first.p, device)?,
            test: Batch::new(&test, first.p, device)?,
            runs,
            key,
            model,
            optimizer,
            loss: first.loss,
            loss_bf16: first.loss_bf16,
            steps: 0,
        })
    }

    /// One optimizer step on the full train set. Returns the train statistics `[R, 4]` of the
    /// weights before the step.
    pub fn step(&mut self) -> Result<Tensor> {
        let (logits, cache) = self.model.forward(&self.train.rows, true)?; // [R, N, p]
        let stats = loss::stats(self.loss, &logits, &self.train.labels, self.loss_bf16)?; // [R, 4]
        let dlogits = self.model.storage.compute(loss::grad(self.loss, &logits, &self.train.labels)?)?; // [R, N, p]
        let grads = self.model.backward(&self.train.rows, &cache, &dlogits)?;
        self.optimizer.step(&mut self.model, &grads)?;
        if let Some(power) = &mut self.lipschitz {
            power.update(&self.model.linear_weights())?;
        }
        self.steps += 1;
        Ok(stats)
    }

    /// Loss statistics `[R, 4]` of the current weights on `batch`.
    pub fn evaluate(&self, batch: &Batch) -> Result<Tensor> {
        let (logits, _) = self.model.forward(&batch.rows, false)?;
        loss::stats(self.loss, &logits, &batch.labels, self.loss_bf16)
    }

    /// One full epoch as the benchmark counts it: a train step and the test evaluation.
    pub fn epoch(&mut self) -> Result<()> {
        self.step()?;
        self.evaluate(&self.test)?;
        Ok(())
    }

    /// Keep only the runs at `positions`: every `[R, ...]` tensor of the stack is narrowed to
    /// them, so retired runs cost nothing from now on.
    pub fn keep_runs(&mut self, positions: &[usize]) -> Result<()> {
        let index = Tensor::from_vec(positions.iter().map(|&p| p as u32).collect::<Vec<u32>>(), positions.len(), self.model.params[0].value.device())?;
        for param in &mut self.model.params {
            param.value = param.value.index_select(&index, 0)?;
        }
        self.optimizer.keep_runs(positions, &index)?;
        if let Some(power) = &mut self.lipschitz {
            power.select_runs(&index)?;
        }
        for batch in [&mut self.train, &mut self.test] {
            batch.rows = batch.rows.index_select(&index, 0)?;
            batch.labels = batch.labels.index_select(&index, 0)?;
        }
        self.runs = positions.iter().map(|&p| self.runs[p].clone()).collect();
        Ok(())
    }

    /// Train every run for its epoch budget, retiring runs as `train.stop` says;
    /// `progress(step, active_runs)` is called after every step.
    pub fn train(mut self, mut progress: impl FnMut(usize, usize)) -> Result<(Vec<RunResult>, MetricRows)> {
        let epochs = self.key.epochs;
        let log_every = self.key.log_every;
        let is_logged = |epoch: usize| epoch % log_every == 0 || epoch + 1 == epochs;
        let mut tracker = RunTracker::new(&self.runs, &self.model);
        for step in 0..epochs {
            let train_stats = self.step()?;
            // The forward pass of step s saw the weights of epoch s − 1.
            if step > 0 && is_logged(step - 1) {
                tracker.record_train(step - 1, &train_stats)?;
                let retiring = tracker.retiring(step - 1, self.key.stop, self.key.extra_epochs);
                if !retiring.is_empty() {
                    let keep: Vec<usize> = (0..self.runs.len()).filter(|p| !retiring.contains(p)).collect();
                    tracker.keep(&keep);
                    if keep.is_empty() {
                        progress(step + 1, 0);
                        return Ok(tracker.finish(epochs));
                    }
                    self.keep_runs(&keep)?;
                }
            }
            if is_logged(step) {
                let test_stats = self.evaluate(&self.test)?;
                let spectral = self.lipschitz.as_ref().map(|p| p.spectral_norms()).transpose()?;
                tracker.record_test(step, &test_stats, &self.model.param_norms()?, spectral.as_ref())?;
            }
            progress(step + 1, tracker.active_runs());
        }
        let final_train = self.evaluate(&self.train)?;
        tracker.record_train(epochs - 1, &final_train)?;
        Ok(tracker.finish(epochs))
    }
}
