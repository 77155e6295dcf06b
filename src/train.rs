//! Training one stack: the runs that share every shape train as one model.
//!
//! Full batch, an epoch is one optimizer step: epoch e is measured after e + 1 steps, on the
//! post-step weights. The test metrics of epoch e are evaluated right after step e; its train
//! metrics come for free from the forward pass of step e + 1, which sees the same weights
//! (and from one extra forward pass after the last step).
//!
//! With minibatches (`train.batch_size` > 0), each run visits its train rows in its own
//! fresh order every epoch, ceil(N_train / B) steps of B rows (the last one partial), and a
//! logged epoch is measured after its last step on the whole train and test sets.

use crate::config::{Loss, Precision, RunSpec, StackKey};
use crate::data;
use crate::faults;
use crate::lipschitz::PowerIteration;
use crate::metrics::{MetricRows, RunResult, RunTracker};
use crate::models::{compute_dtype, Arch, DropoutDraw, Model, PassOptions};
use crate::optim::{self, Optimizer, RunHyper};
use crate::progress::{ProgressRow, StackProgress};
use crate::run_axis::{pick_runs, run_index};
use crate::state::{self, State, StateDict};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

/// The examples of every run of a stack: table indices `[R, N, K]` of the first layer and
/// labels `[R, N]`.
pub struct Batch {
    pub rows: Tensor,
    pub labels: Tensor,
}

impl Batch {
    fn new(runs: &[&data::Examples], arch: &Arch, device: &Device) -> Result<Batch> {
        let (r, n) = (runs.len(), runs.first().map_or(0, |e| e.len()));
        let rows: Vec<u32> = runs.iter().flat_map(|e| arch.inputs(e)).collect();
        let k = rows.len() / (r * n).max(1);
        let labels: Vec<u32> = runs.iter().flat_map(|e| e.labels.iter().copied()).collect();
        Ok(Batch {
            rows: Tensor::from_vec(rows, (r, n, k), device)?,
            labels: Tensor::from_vec(labels, (r, n), device)?,
        })
    }

    /// The rows `index` `[R·B]` (positions r·N + i into the flattened `[R·N]` rows) as a batch
    /// of B rows per run.
    fn select(&self, index: &Tensor, per_run: usize) -> Result<Batch> {
        let (r, n, k) = self.rows.dims3()?;
        Ok(Batch {
            rows: self.rows.reshape((r * n, k))?.index_select(index, 0)?.reshape((r, per_run, k))?,
            labels: self.labels.reshape(r * n)?.index_select(index, 0)?.reshape((r, per_run))?,
        })
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
    /// Nanda et al.'s progress measures, when some run asks for them.
    pub progress: Option<StackProgress>,
    pub train: Batch,
    pub test: Batch,
    /// The per-run hyperparameters, for the warm-up factors.
    hyper: RunHyper,
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
        let progress = StackProgress::new(&runs, &splits)?;
        let train: Vec<&data::Examples> = splits.iter().map(|s| &s.train).collect();
        let test: Vec<&data::Examples> = splits.iter().map(|s| &s.test).collect();
        let seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
        let arch = first.arch();
        // A pure-bf16 model's matmul operands are bf16 values held in f32, which TF32 holds
        // exactly: on a GPU cuBLAS may then use its TF32 tensor cores (exact products, f32
        // accumulation, as a bf16 GEMM on tensor cores). Every other precision keeps exact f32
        // GEMMs. The switch is process-wide; stacks train one after another.
        candle_core::cuda::set_gemm_reduced_precision_f32(first.precision == Precision::Bf16);
        let model = Model::init(&arch, &seeds, first.precision, device)?;
        let dtype = compute_dtype(first.precision);
        let hyper = RunHyper::from_configs(runs.iter().map(|r| &r.config));
        let optimizer = optim::build(&first, &model, &hyper)?;
        let lipschitz = if first.lipschitz {
            let shapes: Vec<(usize, usize)> =
                model.spectral_weights().iter().map(|w| Ok((w.dim(1)?, w.dim(2)?))).collect::<Result<_>>()?;
            Some(PowerIteration::new(&seeds, &shapes, first.power_iters, first.lipschitz_rms, dtype, device)?)
        } else {
            None
        };
        Ok(Stack {
            lipschitz,
            progress,
            train: Batch::new(&train, &arch, device)?,
            test: Batch::new(&test, &arch, device)?,
            hyper,
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
        Ok(self.step_keeping(false)?.0)
    }

    /// [`Stack::step`], and with `keep_logits` the logits `[R, N_train, C]` of its forward pass.
    fn step_keeping(&mut self, keep_logits: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (rows, labels) = (self.train.rows.clone(), self.train.labels.clone());
        self.step_on(&Batch { rows, labels }, keep_logits)
    }

    /// One optimizer step on `batch`; returns its statistics `[R, 4]` before the step, and with
    /// `keep_logits` its logits `[R, N, C]`.
    fn step_on(&mut self, batch: &Batch, keep_logits: bool) -> Result<(Tensor, Option<Tensor>)> {
        let group = self.model.runs_per_group(batch.rows.dim(1)?);
        let seeds: Vec<u64> = self.runs.iter().map(|run| run.seed).collect();
        let dropout = DropoutDraw { seeds: &seeds, step: self.steps };
        // Statistics [R, 4], one gradient per parameter, the logits [R, N, C] when kept.
        let options =
            PassOptions { dropout: Some(&dropout), keep_logits, ..PassOptions::new(self.loss, self.loss_bf16, group) };
        let (stats, grads, logits) = self.model.train_pass(&batch.rows, &batch.labels, &options)?;
        self.optimizer.step(&mut self.model, &grads, &self.hyper.lr_scale(self.steps + 1))?;
        if let Some(power) = &mut self.lipschitz {
            power.update(&self.model.spectral_weights())?;
        }
        self.steps += 1;
        Ok((stats, logits))
    }

    /// The optimizer steps of one epoch: full batch, one step on every train row (returning
    /// its statistics); with minibatches, each run's train rows in its own order of `epoch`
    /// (see [`data::epoch_order`]), B at a time.
    pub fn epoch_steps(&mut self, epoch: usize) -> Result<Option<Tensor>> {
        Ok(self.epoch_steps_keeping(epoch, false)?.map(|(stats, _)| stats))
    }

    /// [`Stack::epoch_steps`]; full batch, with `keep_logits`, also its step's logits `[R, N_train, C]`.
    fn epoch_steps_keeping(&mut self, epoch: usize, keep_logits: bool) -> Result<Option<(Tensor, Option<Tensor>)>> {
        let b = self.key.training.batch_size;
        if b == 0 {
            return self.step_keeping(keep_logits).map(Some);
        }
        let n = self.key.n_train;
        let orders: Vec<Vec<usize>> = self.runs.iter().map(|run| data::epoch_order(run.seed, epoch, n)).collect();
        let device = self.train.rows.device().clone();
        for start in (0..n).step_by(b) {
            let end = (start + b).min(n);
            let index: Vec<u32> = orders
                .iter()
                .enumerate()
                .flat_map(|(r, order)| order[start..end].iter().map(move |&i| (r * n + i) as u32))
                .collect();
            let batch =
                self.train.select(&Tensor::from_vec(index, self.runs.len() * (end - start), &device)?, end - start)?;
            self.step_on(&batch, false)?;
        }
        Ok(None)
    }

    /// Loss statistics `[R, 4]` of the current weights on `batch`.
    pub fn evaluate(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.evaluate_keeping(batch)?.0)
    }

    /// [`Stack::evaluate`], and the logits `[R, N, C]` when the progress measures read them.
    fn evaluate_keeping(&self, batch: &Batch) -> Result<(Tensor, Option<Tensor>)> {
        let group = self.model.runs_per_group(batch.rows.dim(1)?);
        let options =
            PassOptions { keep_logits: self.progress.is_some(), ..PassOptions::new(self.loss, self.loss_bf16, group) };
        self.model.evaluate(&batch.rows, &batch.labels, &options)
    }

    /// Whether the training pass drops units: its logits are not the model's, so the progress
    /// measures evaluate the train rows once more.
    fn drops_units(&self) -> bool {
        matches!(&self.model.arch, Arch::Transformer(arch, _) if arch.dropout.any())
    }

    /// The test half of logged `epoch`'s progress measures (none when no run has them on).
    fn progress_test_half(&mut self, epoch: usize, logits: Option<Tensor>) -> Result<()> {
        if let (Some(progress), Some(logits)) = (&mut self.progress, logits) {
            progress.record_test(epoch, &logits, &self.model)?;
        }
        Ok(())
    }

    /// The train half of logged `epoch`'s progress measures, from the `kept` logits of a
    /// training pass or an evaluation of their own: every active run's measures (None when no
    /// run has them on, or `epoch` awaits no train half).
    fn progress_train_half(&mut self, epoch: usize, kept: Option<Tensor>) -> Result<Option<Vec<Option<ProgressRow>>>> {
        if !self.progress.as_ref().is_some_and(|p| p.pending_epochs().contains(&epoch)) {
            return Ok(None);
        }
        let logits = match kept {
            Some(logits) => logits,
            None => self.evaluate_keeping(&self.train)?.1.context("internal: an evaluation kept no logits")?,
        };
        self.progress.as_mut().map(|p| p.record_train(epoch, &logits)).transpose()
    }

    /// One full epoch as the benchmark counts it: the epoch's steps and the test evaluation
    /// (with minibatches, also the train evaluation that measures the epoch); with the
    /// progress measures, the epoch is logged as training logs it.
    pub fn epoch(&mut self, epoch: usize) -> Result<()> {
        let keep = self.progress.is_some() && !self.drops_units();
        let full_batch = self.epoch_steps_keeping(epoch, keep)?;
        if let Some((_, logits)) = full_batch {
            self.progress_train_half(epoch.wrapping_sub(1), logits)?;
        }
        let (_, test_logits) = self.evaluate_keeping(&self.test)?;
        self.progress_test_half(epoch, test_logits)?;
        if self.key.training.batch_size > 0 {
            let (_, logits) = self.evaluate_keeping(&self.train)?;
            self.progress_train_half(epoch, logits)?;
        }
        Ok(())
    }

    /// Keep only the runs at `positions`: every `[R, ...]` tensor of the stack is narrowed to
    /// them, so retired runs cost nothing from now on.
    pub fn keep_runs(&mut self, positions: &[usize]) -> Result<()> {
        let index = run_index(positions, self.model.params[0].value.device())?;
        for param in &mut self.model.params {
            param.value = param.value.index_select(&index, 0)?;
        }
        self.optimizer.keep_runs(positions, &index)?;
        self.hyper = self.hyper.select(positions);
        if let Some(power) = &mut self.lipschitz {
            power.select_runs(&index)?;
        }
        if let Some(progress) = &mut self.progress {
            progress.keep(positions);
        }
        for batch in [&mut self.train, &mut self.test] {
            batch.rows = batch.rows.index_select(&index, 0)?;
            batch.labels = batch.labels.index_select(&index, 0)?;
        }
        self.runs = pick_runs(&self.runs, positions);
        Ok(())
    }

    /// Train every run for its epoch budget, retiring runs as `train.stop` says;
    /// `progress(step, active_runs)` is called after every step. No checkpoints.
    pub fn train(self, progress: impl FnMut(usize, usize)) -> Result<(Vec<RunResult>, MetricRows)> {
        let mut no_checkpoint = |_: &Training| Ok(());
        let control = Control { checkpoint_every: 0, interrupted: &|| false, checkpoint: &mut no_checkpoint };
        match Training::new(self).run(control, progress)? {
            Outcome::Finished(trained) => Ok((trained.results, trained.rows)),
            Outcome::Interrupted => bail!("internal: training stopped without an interrupt"),
        }
    }
}

/// Each run's parameters when it left the stack: at its last logged epoch (a retired run's
/// at the epoch it retired on, a finished run's at the last epoch).
pub struct FinalWeights {
    /// The runs in the order the stack was built.
    pub run_ids: Vec<usize>,
    /// Per parameter (`embedding.weight`, `layers.0.weight`, …): `[R, ...]` on the CPU,
    /// in the model's layout (Linear weights `[in, out]`).
    pub params: Vec<(String, Tensor)>,
}

/// A stack that trained to the end.
pub struct Trained {
    pub results: Vec<RunResult>,
    pub rows: MetricRows,
    pub weights: FinalWeights,
}

pub enum Outcome {
    Finished(Trained),
    /// Stopped after a step because `interrupted()` said so, with a checkpoint written.
    Interrupted,
}

/// What drives a stack's training from outside.
pub struct Control<'a> {
    /// Write a checkpoint after every this many steps (0: never).
    pub checkpoint_every: usize,
    /// Asked after every step: stop (after a checkpoint) when it says so.
    pub interrupted: &'a dyn Fn() -> bool,
    /// Writes a checkpoint of the training state.
    pub checkpoint: &'a mut dyn FnMut(&Training) -> Result<()>,
}

/// A stack in training with its bookkeeping: everything a checkpoint holds.
///
/// Checkpoints are taken between two steps, after the metrics of the step just taken were
/// recorded: what the next step reads is then the model, the optimizer, the power-iteration
/// vectors and the tracker (whose pending test metrics of the last logged epoch wait for
/// the train half the next step computes). Splits and initial weights are pure functions of
/// the seeds, so there is no random state to save.
pub struct Training {
    stack: Stack,
    /// Every run of the stack as it was built (slot order); `stack.runs` shrinks as runs retire.
    runs: Vec<RunSpec>,
    tracker: RunTracker,
    /// The parameters at the last logged epoch's test evaluation, `[R_active, ...]`: the
    /// weights of a run that retires on that epoch's rows.
    logged_params: Vec<Tensor>,
    /// Slots of the retired runs, and their weights (per parameter `[retired, ...]`).
    retired_slots: Vec<usize>,
    retired_params: Vec<Option<Tensor>>,
    /// The next epoch (0-based); also the number of epochs trained.
    next_step: usize,
}

impl Training {
    pub fn new(stack: Stack) -> Training {
        let tracker = RunTracker::new(&stack.runs, &stack.model);
        Training {
            runs: stack.runs.clone(),
            tracker,
            logged_params: stack.model.params.iter().map(|p| p.value.clone()).collect(),
            retired_slots: Vec::new(),
            retired_params: vec![None; stack.model.params.len()],
            next_step: stack.steps,
            stack,
        }
    }

    /// Rebuild the stack of `runs` (every run of the stack as it was first built) from a
    /// checkpoint's state.
    pub fn resume(runs: Vec<RunSpec>, saved: &StateDict, device: &Device) -> Result<Training> {
        let next_step = state::read_scalar(saved, "training.next_step")?;
        let epochs = runs.first().context("a stack needs at least one run")?.config.epochs;
        if next_step == 0 || next_step >= epochs {
            bail!("the checkpoint is at step {next_step}, outside this stack's 1..{epochs}");
        }
        let active = state::read_integers(saved, "tracker.active")?;
        let active_runs = active
            .iter()
            .map(|slot| {
                slot.and_then(|s| runs.get(s))
                    .cloned()
                    .context("`tracker.active` in the checkpoint names a run this stack does not have")
            })
            .collect::<Result<Vec<_>>>()?;
        let mut stack = Stack::new(active_runs, device)?;
        let mut tracker = RunTracker::new(&runs, &stack.model);
        let n_spectral = if stack.lipschitz.is_some() { stack.model.spectral_weights().len() } else { 0 };
        tracker.load_state(saved, stack.model.params.len(), n_spectral)?;
        for param in &mut stack.model.params {
            param.value = state::restore_like(saved, &format!("model.{}", param.name), &param.value)?;
        }
        stack.optimizer.load_state(&stack.model, saved)?;
        if let Some(power) = &mut stack.lipschitz {
            power.load_state(saved)?;
        }
        stack.steps = next_step * runs[0].config.steps_per_epoch();
        // The progress measures' test half of the epoch awaiting its train half: the weights
        // are those of that epoch, and the evaluation is deterministic, so it is measured again.
        if stack.progress.is_some() {
            for epoch in tracker.pending_epochs() {
                let (_, logits) = stack.evaluate_keeping(&stack.test)?;
                stack.progress_test_half(epoch, logits)?;
            }
        }
        let mut retired_params = vec![None; stack.model.params.len()];
        let mut retired_slots = Vec::new();
        if saved.contains_key("retired.slots") {
            retired_slots = state::read_integers(saved, "retired.slots")?
                .into_iter()
                .map(|s| s.filter(|&s| s < runs.len()))
                .collect::<Option<Vec<_>>>()
                .context("`retired.slots` in the checkpoint names a run this stack does not have")?;
            for (param, retired) in stack.model.params.iter().zip(&mut retired_params) {
                let mut shape = param.value.dims().to_vec();
                shape[0] = retired_slots.len();
                let like = Tensor::zeros(shape, param.value.dtype(), &Device::Cpu)?;
                *retired =
                    Some(state::restore_like(saved, &format!("retired.{}", param.name), &like)?.to_device(device)?);
            }
        }
        Ok(Training {
            runs,
            tracker,
            // A checkpoint is taken after the step's metrics: if that epoch was logged, its
            // weights are the current ones, and an older logged epoch is never read again.
            logged_params: stack.model.params.iter().map(|p| p.value.clone()).collect(),
            retired_slots,
            retired_params,
            next_step,
            stack,
        })
    }

    /// The state a checkpoint saves (see [`Training::resume`]).
    pub fn state(&self) -> Result<State> {
        let mut out = vec![("training.next_step".to_string(), state::scalar(self.next_step)?)];
        out.extend(self.stack.model.params.iter().map(|p| (format!("model.{}", p.name), p.value.clone())));
        out.extend(self.stack.optimizer.state()?);
        if let Some(power) = &self.stack.lipschitz {
            out.extend(power.state());
        }
        out.extend(self.tracker.state()?);
        if !self.retired_slots.is_empty() {
            out.push(("retired.slots".into(), state::integers(self.retired_slots.iter().map(|&s| Some(s)))?));
            for (param, retired) in self.stack.model.params.iter().zip(&self.retired_params) {
                if let Some(t) = retired {
                    out.push((format!("retired.{}", param.name), t.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Epochs trained so far.
    pub fn next_step(&self) -> usize {
        self.next_step
    }

    /// Every run of the stack, in the order it was built.
    pub fn run_ids(&self) -> Vec<usize> {
        self.runs.iter().map(|r| r.run_id).collect()
    }

    pub fn active_runs(&self) -> usize {
        self.tracker.active_runs()
    }

    pub fn active_run_ids(&self) -> Vec<usize> {
        self.tracker.active_slots().iter().map(|&slot| self.runs[slot].run_id).collect()
    }

    pub fn epochs(&self) -> usize {
        self.stack.key.training.epochs
    }

    /// Train to the end of the epoch budget (or until `control` interrupts).
    pub fn run(mut self, control: Control, mut progress: impl FnMut(usize, usize)) -> Result<Outcome> {
        let epochs = self.stack.key.training.epochs;
        let log_every = self.stack.key.training.log_every;
        let is_logged = |epoch: usize| epoch.is_multiple_of(log_every) || epoch + 1 == epochs;
        while self.next_step < epochs {
            let epoch = self.next_step;
            // Full batch: the forward pass of step e sees the weights of epoch e − 1, and its
            // logits are the train half of that epoch's progress measures (unless it drops units).
            let keep = self.stack.progress.is_some() && epoch > 0 && is_logged(epoch - 1) && !self.stack.drops_units();
            let full_batch = self.stack.epoch_steps_keeping(epoch, keep)?;
            faults::point("step")?;
            if let Some((train_stats, train_logits)) = full_batch {
                if epoch > 0 && is_logged(epoch - 1) && !self.record_train(epoch - 1, &train_stats, train_logits)? {
                    progress(epoch + 1, 0);
                    return Ok(Outcome::Finished(self.finish(false)?));
                }
            }
            if is_logged(epoch) {
                let (test_stats, test_logits) = self.stack.evaluate_keeping(&self.stack.test)?;
                let spectral = self.stack.lipschitz.as_ref().map(|p| p.spectral_norms()).transpose()?;
                self.tracker.record_test(epoch, &test_stats, &self.stack.model.param_norms()?, spectral.as_ref())?;
                self.stack.progress_test_half(epoch, test_logits)?;
                self.logged_params = self.stack.model.params.iter().map(|p| p.value.clone()).collect();
                // Minibatches: the epoch's train metrics need a pass of their own.
                if self.stack.key.training.batch_size > 0 {
                    let (train_stats, train_logits) = self.stack.evaluate_keeping(&self.stack.train)?;
                    if !self.record_train(epoch, &train_stats, train_logits)? {
                        progress(epoch + 1, 0);
                        return Ok(Outcome::Finished(self.finish(false)?));
                    }
                }
            }
            self.next_step = epoch + 1;
            progress(epoch + 1, self.tracker.active_runs());
            let interrupted = (control.interrupted)();
            let due = control.checkpoint_every > 0 && self.next_step.is_multiple_of(control.checkpoint_every);
            if self.next_step < epochs && (interrupted || due) {
                (control.checkpoint)(&self)?;
                if interrupted {
                    return Ok(Outcome::Interrupted);
                }
            }
        }
        Ok(Outcome::Finished(self.finish(true)?))
    }

    /// Record the train metrics of logged `epoch` (`train_logits`: those of its pass, if kept)
    /// and retire the runs `train.stop` retires there. Returns whether any run is left.
    fn record_train(&mut self, epoch: usize, train_stats: &Tensor, train_logits: Option<Tensor>) -> Result<bool> {
        self.record_train_half(epoch, train_stats, train_logits)?;
        let retiring = self.tracker.retiring(epoch, self.stack.key.training.stop, self.stack.key.training.extra_epochs);
        Ok(retiring.is_empty() || self.retire(&retiring)?)
    }

    /// Complete the rows of logged `epoch`: its train statistics and progress measures.
    fn record_train_half(&mut self, epoch: usize, train_stats: &Tensor, train_logits: Option<Tensor>) -> Result<()> {
        if let Some(progress) = self.stack.progress_train_half(epoch, train_logits)? {
            self.tracker.record_progress(epoch, progress)?;
        }
        self.tracker.record_train(epoch, train_stats)
    }

    /// Take the runs at stack positions `retiring` out of the stack, keeping their weights of
    /// the last logged epoch. Returns whether any run is left.
    fn retire(&mut self, retiring: &[usize]) -> Result<bool> {
        let device = self.stack.model.params[0].value.device().clone();
        let leaving = run_index(retiring, &device)?;
        for (logged, retired) in self.logged_params.iter().zip(&mut self.retired_params) {
            let rows = logged.index_select(&leaving, 0)?;
            *retired = Some(match retired.take() {
                Some(earlier) => Tensor::cat(&[earlier, rows], 0)?,
                None => rows,
            });
        }
        self.retired_slots.extend(pick_runs(self.tracker.active_slots(), retiring));
        let keep: Vec<usize> = (0..self.tracker.active_runs()).filter(|p| !retiring.contains(p)).collect();
        self.tracker.keep(&keep);
        if keep.is_empty() {
            return Ok(false);
        }
        self.stack.keep_runs(&keep)?;
        let kept = run_index(&keep, &device)?;
        for logged in &mut self.logged_params {
            *logged = logged.index_select(&kept, 0)?;
        }
        Ok(true)
    }

    /// The results, rows and final weights; `completed`: the epoch budget ran out (rather
    /// than every run retiring), so the last epoch's train metrics are still to be measured.
    fn finish(mut self, completed: bool) -> Result<Trained> {
        let epochs = self.stack.key.training.epochs;
        // Minibatch epochs measure their train metrics themselves.
        if completed && self.stack.key.training.batch_size == 0 {
            let (final_train, train_logits) = self.stack.evaluate_keeping(&self.stack.train)?;
            self.record_train_half(epochs - 1, &final_train, train_logits)?;
        }
        let weights = self.final_weights(completed)?;
        let (results, rows) = self.tracker.finish(epochs);
        Ok(Trained { results, rows, weights })
    }

    fn final_weights(&self, with_active: bool) -> Result<FinalWeights> {
        // Rows of cat([retired, active]) for each slot.
        let mut row_of = vec![None; self.runs.len()];
        for (row, &slot) in self.retired_slots.iter().enumerate() {
            row_of[slot] = Some(row);
        }
        if with_active {
            for (position, &slot) in self.tracker.active_slots().iter().enumerate() {
                row_of[slot] = Some(self.retired_slots.len() + position);
            }
        }
        let rows =
            row_of.into_iter().collect::<Option<Vec<usize>>>().context("internal: a run has no final weights")?;
        let index = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<u32>>(), rows.len(), &Device::Cpu)?;
        let params = self
            .stack
            .model
            .params
            .iter()
            .zip(&self.retired_params)
            .map(|(param, retired)| {
                let mut parts: Vec<Tensor> =
                    retired.iter().map(|t| t.to_device(&Device::Cpu)).collect::<candle_core::Result<_>>()?;
                if with_active {
                    parts.push(param.value.to_device(&Device::Cpu)?);
                }
                Ok((param.name.clone(), Tensor::cat(&parts, 0)?.index_select(&index, 0)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FinalWeights { run_ids: self.run_ids(), params })
    }
}
