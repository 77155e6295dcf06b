//! Per-run bookkeeping of the logged metrics: assembling rows from the stack's tensors, and
//! each run's summary (status, grok and solve epochs, final metrics).

use crate::config::{RunSpec, Stop};
use crate::kernels::loss::{STAT_ACC, STAT_COLLAPSE, STAT_LOSS, STAT_ZERO_TERMS};
use crate::models::{Model, Place};
use crate::progress::ProgressRow;
use crate::state::{self, State, StateDict};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// Test accuracy at which a run counts as grokked, and as solved.
pub const GROK_THRESHOLD: f64 = 0.95;
pub const SOLVE_THRESHOLD: f64 = 1.0;
/// Train accuracy at which training counts as stabilized near 100% (`stop = "grok_after_train"`,
/// the analysis's after-train rule).
pub const TRAINED_THRESHOLD: f64 = 0.99;

#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    pub run_id: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub weight_norm: f64,
    pub softmax_collapse: f64,
    pub zero_terms: f64,
    pub lipschitz_bound: Option<f64>,
    pub embedding_weight_norm: Option<f64>,
    /// L2 norm of every parameter but the embedding, in the order of the model's
    /// [`crate::models::Arch::norm_columns`] (the MLP's Linear layers, first to last).
    pub layer_weight_norms: Vec<f64>,
    /// Spectral norm of each Linear layer (empty when the Lipschitz bound is off).
    pub layer_spectral_norms: Vec<f64>,
    /// Nanda et al.'s progress measures (None when `metrics.progress` is off).
    pub progress: Option<ProgressRow>,
}

/// Rows of one stack, run-major and epoch-ascending.
pub type MetricRows = Vec<MetricRow>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Done,
    Diverged,
    Stopped,
    /// Never trained: its setting left a sweep with seed waves before the run's wave.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Diverged => "diverged",
            Status::Stopped => "stopped",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub run_id: usize,
    pub status: Status,
    pub epochs_trained: usize,
    pub grok_epoch: Option<usize>,
    pub solve_epoch: Option<usize>,
    pub lipschitz_at_grok: Option<f64>,
    pub final_train_acc: f64,
    pub final_test_acc: f64,
    pub final_train_loss: f64,
    pub final_test_loss: f64,
}

/// What is known of a logged epoch before its train metrics arrive one step later, per
/// stack position at the time of the test evaluation.
struct PendingEpoch {
    test: Vec<Vec<f64>>,
    norms: Vec<Vec<f64>>,
    /// Per run, per Linear layer; empty when the Lipschitz bound is off.
    spectral: Vec<Vec<f64>>,
    /// Per run, its progress measures once the train half has measured them (empty before, or
    /// when no run has them on).
    progress: Vec<Option<ProgressRow>>,
}

/// Bookkeeping of a stack's runs. Each run keeps its slot (its position when the stack was
/// built); `active` maps the current stack positions to slots, and shrinks as runs retire.
pub struct RunTracker {
    run_ids: Vec<usize>,
    has_embedding: bool,
    active: Vec<usize>,
    pending: BTreeMap<usize, PendingEpoch>,
    rows: Vec<Vec<MetricRow>>,
    /// The epoch at which a run's metrics first went non-finite.
    diverged_at: Vec<Option<usize>>,
    /// The last epoch of a run retired after grokking or solving.
    stopped_at: Vec<Option<usize>>,
}

fn to_rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

impl RunTracker {
    pub fn new(runs: &[RunSpec], model: &Model) -> RunTracker {
        RunTracker {
            run_ids: runs.iter().map(|r| r.run_id).collect(),
            has_embedding: model.params.iter().any(|p| p.group.place == Place::Embedding),
            active: (0..runs.len()).collect(),
            pending: BTreeMap::new(),
            rows: vec![Vec::new(); runs.len()],
            diverged_at: vec![None; runs.len()],
            stopped_at: vec![None; runs.len()],
        }
    }

    /// Test statistics `[R, 4]`, parameter norms `[R, n_params]` and, with the Lipschitz
    /// bound on, spectral norms `[R, layers]` of a logged epoch (R = the active runs).
    pub fn record_test(
        &mut self,
        epoch: usize,
        test_stats: &Tensor,
        norms: &Tensor,
        spectral: Option<&Tensor>,
    ) -> Result<()> {
        let spectral = match spectral {
            Some(s) => to_rows(s)?,
            None => vec![Vec::new(); self.active.len()],
        };
        self.pending.insert(
            epoch,
            PendingEpoch { test: to_rows(test_stats)?, norms: to_rows(norms)?, spectral, progress: Vec::new() },
        );
        Ok(())
    }

    /// The progress measures of a logged epoch, per active run, before its train statistics.
    pub fn record_progress(&mut self, epoch: usize, progress: Vec<Option<ProgressRow>>) -> Result<()> {
        self.pending
            .get_mut(&epoch)
            .with_context(|| format!("internal: no test metrics for epoch {epoch}"))?
            .progress = progress;
        Ok(())
    }

    /// The logged epochs whose train statistics are still to come.
    pub fn pending_epochs(&self) -> Vec<usize> {
        self.pending.keys().copied().collect()
    }

    /// Train statistics `[R, 4]` of a logged epoch: completes its rows.
    pub fn record_train(&mut self, epoch: usize, train_stats: &Tensor) -> Result<()> {
        let pending =
            self.pending.remove(&epoch).with_context(|| format!("internal: no test metrics for epoch {epoch}"))?;
        let train = to_rows(train_stats)?;
        for (position, &slot) in self.active.iter().enumerate() {
            let (tr, te, norms, spectral) =
                (&train[position], &pending.test[position], &pending.norms[position], &pending.spectral[position]);
            let (embedding_weight_norm, layer_norms) =
                if self.has_embedding { (Some(norms[0]), norms[1..].to_vec()) } else { (None, norms.clone()) };
            let row = MetricRow {
                run_id: self.run_ids[slot],
                epoch,
                train_loss: tr[STAT_LOSS],
                train_acc: tr[STAT_ACC],
                test_loss: te[STAT_LOSS],
                test_acc: te[STAT_ACC],
                weight_norm: norms.iter().map(|n| n * n).sum::<f64>().sqrt(),
                softmax_collapse: tr[STAT_COLLAPSE],
                zero_terms: tr[STAT_ZERO_TERMS],
                lipschitz_bound: (!spectral.is_empty()).then(|| spectral.iter().product()),
                embedding_weight_norm,
                layer_weight_norms: layer_norms,
                layer_spectral_norms: spectral.clone(),
                progress: pending.progress.get(position).cloned().flatten(),
            };
            let finite = [row.train_loss, row.test_loss, row.weight_norm].iter().all(|x| x.is_finite());
            if !finite && self.diverged_at[slot].is_none() {
                self.diverged_at[slot] = Some(epoch);
            }
            // A diverged run that is not retired keeps training, but logs nothing more.
            if self.diverged_at[slot].is_none_or(|d| d == epoch) {
                self.rows[slot].push(row);
            }
        }
        Ok(())
    }

    /// The stack positions whose runs leave the stack after the rows of `epoch`.
    pub fn retiring(&mut self, epoch: usize, stop: Stop, extra_epochs: usize) -> Vec<usize> {
        // A diverged run leaves its stack whatever `stop` says: its NaN weights would only
        // produce NaN, and freezing it is what keeps "stops updating" true for every optimizer.
        let reached_at = |row: &MetricRow| match stop {
            Stop::Never | Stop::Diverged => false,
            Stop::Grok => row.test_acc >= GROK_THRESHOLD,
            Stop::GrokAfterTrain => row.test_acc >= GROK_THRESHOLD && row.train_acc >= TRAINED_THRESHOLD,
            Stop::Solve => row.test_acc >= SOLVE_THRESHOLD,
        };
        let mut retiring = Vec::new();
        for (position, &slot) in self.active.iter().enumerate() {
            let reached = self.rows[slot].iter().find(|r| reached_at(r)).map(|r| r.epoch);
            if self.diverged_at[slot].is_some() {
                retiring.push(position);
            } else if reached.is_some_and(|e| epoch >= e.saturating_add(extra_epochs)) {
                self.stopped_at[slot] = Some(epoch);
                retiring.push(position);
            }
        }
        retiring
    }

    /// Keep the runs at these stack positions (in this order); the others have retired.
    pub fn keep(&mut self, positions: &[usize]) {
        self.active = crate::run_axis::pick_runs(&self.active, positions);
    }

    pub fn active_runs(&self) -> usize {
        self.active.len()
    }

    /// The slot (position in the stack as built) of each active run, in stack order.
    pub fn active_slots(&self) -> &[usize] {
        &self.active
    }

    /// Everything the tracker knows, for a checkpoint: the active slots, divergence and stop
    /// epochs, the rows so far and the test metrics still waiting for their train half.
    pub fn state(&self) -> Result<State> {
        let mut out = vec![
            ("tracker.active".to_string(), state::integers(self.active.iter().map(|&s| Some(s)))?),
            ("tracker.diverged_at".to_string(), state::integers(self.diverged_at.iter().copied())?),
            ("tracker.stopped_at".to_string(), state::integers(self.stopped_at.iter().copied())?),
        ];
        let rows: Vec<(usize, &MetricRow)> =
            self.rows.iter().enumerate().flat_map(|(slot, rows)| rows.iter().map(move |r| (slot, r))).collect();
        if let Some((_, first)) = rows.first() {
            let layout = [first.layer_weight_norms.len(), first.layer_spectral_norms.len()];
            let values: Vec<Vec<f64>> = rows.iter().map(|(_, r)| row_values(r)).collect();
            out.push(("tracker.rows.layout".into(), state::integers(layout.map(Some))?));
            out.push(("tracker.rows.slot".into(), state::integers(rows.iter().map(|(s, _)| Some(*s)))?));
            out.push(("tracker.rows.epoch".into(), state::integers(rows.iter().map(|(_, r)| Some(r.epoch)))?));
            out.extend(
                state::matrix(&values, ROW_FIXED + layout[0] + layout[1])?
                    .map(|t| ("tracker.rows.values".to_string(), t)),
            );
            if let Some(t) = crate::progress::rows::to_state(rows.iter().map(|(_, r)| r.progress.as_ref()))? {
                out.push(("tracker.rows.progress".to_string(), t));
            }
        }
        if !self.pending.is_empty() {
            out.push(("tracker.pending.epochs".into(), state::integers(self.pending.keys().map(|&e| Some(e)))?));
        }
        for (epoch, pending) in &self.pending {
            let width = |rows: &[Vec<f64>]| rows.first().map_or(0, |r| r.len());
            for (name, rows) in [("test", &pending.test), ("norms", &pending.norms), ("spectral", &pending.spectral)] {
                if let Some(t) = state::matrix(rows, width(rows))? {
                    out.push((format!("tracker.pending.{epoch}.{name}"), t));
                }
            }
        }
        Ok(out)
    }

    /// Restore [`RunTracker::state`] into a tracker built for the same runs (all slots).
    /// `n_params` and `n_spectral` are the widths of the pending norms and spectral norms.
    pub fn load_state(&mut self, state: &StateDict, n_params: usize, n_spectral: usize) -> Result<()> {
        let slots = self.run_ids.len();
        let all = |values: Vec<Option<usize>>, key: &str| -> Result<Vec<usize>> {
            values.into_iter().map(|v| v.with_context(|| format!("`{key}` in the checkpoint has a gap"))).collect()
        };
        let active = all(state::read_integers(state, "tracker.active")?, "tracker.active")?;
        let mut seen = vec![false; slots];
        for &slot in &active {
            if slot >= slots || std::mem::replace(&mut seen[slot], true) {
                bail!("`tracker.active` in the checkpoint names slot {slot} of {slots} twice or out of range");
            }
        }
        let (diverged_at, stopped_at) =
            (state::read_integers(state, "tracker.diverged_at")?, state::read_integers(state, "tracker.stopped_at")?);
        if diverged_at.len() != slots || stopped_at.len() != slots || active.is_empty() {
            bail!("the checkpoint's tracker is for {} runs, this stack has {slots}", diverged_at.len());
        }
        let mut rows = vec![Vec::new(); slots];
        if state.contains_key("tracker.rows.slot") {
            let layout = all(state::read_integers(state, "tracker.rows.layout")?, "tracker.rows.layout")?;
            let [layer_norms, spectral] = layout[..] else {
                bail!("`tracker.rows.layout` in the checkpoint is not two counts")
            };
            let row_slots = all(state::read_integers(state, "tracker.rows.slot")?, "tracker.rows.slot")?;
            let epochs = all(state::read_integers(state, "tracker.rows.epoch")?, "tracker.rows.epoch")?;
            let values =
                state::read_matrix(state, "tracker.rows.values", row_slots.len(), ROW_FIXED + layer_norms + spectral)?;
            if epochs.len() != row_slots.len() || row_slots.iter().any(|&s| s >= slots) {
                bail!("the checkpoint's metric rows name runs this stack does not have");
            }
            let mut progress =
                crate::progress::rows::from_state(state, "tracker.rows.progress", epochs.len())?.into_iter();
            for ((slot, epoch), values) in row_slots.into_iter().zip(epochs).zip(values) {
                let mut row = row_from_values(self.run_ids[slot], epoch, &values, layer_norms, self.has_embedding);
                row.progress = progress.next().flatten();
                rows[slot].push(row);
            }
        }
        let mut pending = BTreeMap::new();
        if state.contains_key("tracker.pending.epochs") {
            let epochs = all(state::read_integers(state, "tracker.pending.epochs")?, "tracker.pending.epochs")?;
            for epoch in epochs {
                let read = |name: &str, width: usize| {
                    state::read_matrix(state, &format!("tracker.pending.{epoch}.{name}"), active.len(), width)
                };
                pending.insert(
                    epoch,
                    PendingEpoch {
                        test: read("test", 4)?,
                        norms: read("norms", n_params)?,
                        spectral: read("spectral", n_spectral)?,
                        progress: Vec::new(),
                    },
                );
            }
        }
        *self = RunTracker {
            run_ids: std::mem::take(&mut self.run_ids),
            has_embedding: self.has_embedding,
            active,
            pending,
            rows,
            diverged_at,
            stopped_at,
        };
        Ok(())
    }

    /// Every run's summary and all rows, run-major.
    pub fn finish(self, epochs: usize) -> (Vec<RunResult>, MetricRows) {
        let results = (0..self.run_ids.len())
            .map(|slot| {
                summarize(self.run_ids[slot], &self.rows[slot], self.diverged_at[slot], self.stopped_at[slot], epochs)
            })
            .collect();
        (results, self.rows.into_iter().flatten().collect())
    }
}

/// Values of a row in a checkpoint before the per-layer norms: the seven metrics, the
/// Lipschitz bound and the embedding norm (NaN where they are `None`).
const ROW_FIXED: usize = 9;

fn row_values(r: &MetricRow) -> Vec<f64> {
    let mut v =
        vec![r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.weight_norm, r.softmax_collapse, r.zero_terms];
    v.push(r.lipschitz_bound.unwrap_or(f64::NAN));
    v.push(r.embedding_weight_norm.unwrap_or(f64::NAN));
    v.extend(&r.layer_weight_norms);
    v.extend(&r.layer_spectral_norms);
    v
}

/// The inverse of [`row_values`]: which values are `None` follows from the stack's shape
/// (an embedding or not, the Lipschitz bound on or off), never from a NaN.
fn row_from_values(run_id: usize, epoch: usize, v: &[f64], layer_norms: usize, has_embedding: bool) -> MetricRow {
    let spectral = v[ROW_FIXED + layer_norms..].to_vec();
    MetricRow {
        run_id,
        epoch,
        train_loss: v[0],
        train_acc: v[1],
        test_loss: v[2],
        test_acc: v[3],
        weight_norm: v[4],
        softmax_collapse: v[5],
        zero_terms: v[6],
        lipschitz_bound: (!spectral.is_empty()).then_some(v[7]),
        embedding_weight_norm: has_embedding.then_some(v[8]),
        layer_weight_norms: v[ROW_FIXED..ROW_FIXED + layer_norms].to_vec(),
        layer_spectral_norms: spectral,
        progress: None,
    }
}

/// A run's summary from its logged rows.
pub fn summarize(
    run_id: usize,
    rows: &[MetricRow],
    diverged_at: Option<usize>,
    stopped_at: Option<usize>,
    epochs: usize,
) -> RunResult {
    let first_at = |threshold: f64| rows.iter().find(|r| r.test_acc >= threshold);
    let grok = first_at(GROK_THRESHOLD);
    let last = rows.last();
    let final_of = |f: fn(&MetricRow) -> f64| last.map_or(f64::NAN, f);
    let (status, epochs_trained) = match (diverged_at, stopped_at) {
        (Some(e), _) => (Status::Diverged, e + 1),
        (None, Some(e)) => (Status::Stopped, e + 1),
        (None, None) => (Status::Done, epochs),
    };
    RunResult {
        run_id,
        status,
        epochs_trained,
        grok_epoch: grok.map(|r| r.epoch),
        solve_epoch: first_at(SOLVE_THRESHOLD).map(|r| r.epoch),
        lipschitz_at_grok: grok.and_then(|r| r.lipschitz_bound),
        final_train_acc: final_of(|r| r.train_acc),
        final_test_acc: final_of(|r| r.test_acc),
        final_train_loss: final_of(|r| r.train_loss),
        final_test_loss: final_of(|r| r.test_loss),
    }
}
