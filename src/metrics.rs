//! Per-run bookkeeping of the logged metrics: assembling rows from the stack's tensors, and
//! each run's summary (status, grok and solve epochs, final metrics).

use crate::config::RunSpec;
use crate::kernels::loss::{STAT_ACC, STAT_COLLAPSE, STAT_LOSS, STAT_ZERO_TERMS};
use crate::model::{Model, Role};
use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// Test accuracy at which a run counts as grokked, and as solved.
pub const GROK_THRESHOLD: f64 = 0.95;
pub const SOLVE_THRESHOLD: f64 = 1.0;

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
    /// L2 norm of each Linear layer, first to last.
    pub layer_weight_norms: Vec<f64>,
    /// Spectral norm of each Linear layer (empty when the Lipschitz bound is off).
    pub layer_spectral_norms: Vec<f64>,
}

/// Rows of one stack, run-major and epoch-ascending.
pub type MetricRows = Vec<MetricRow>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Done,
    Diverged,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Diverged => "diverged",
            Status::Stopped => "stopped",
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

/// What is known of a logged epoch before its train metrics arrive one step later.
struct PendingEpoch {
    test: Vec<Vec<f64>>,
    norms: Vec<Vec<f64>>,
    /// Per run, per Linear layer; empty when the Lipschitz bound is off.
    spectral: Vec<Vec<f64>>,
}

pub struct RunTracker {
    run_ids: Vec<usize>,
    has_embedding: bool,
    pending: BTreeMap<usize, PendingEpoch>,
    rows: Vec<Vec<MetricRow>>,
    /// The epoch at which a run's metrics first went non-finite.
    diverged_at: Vec<Option<usize>>,
}

fn to_rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

impl RunTracker {
    pub fn new(runs: &[RunSpec], model: &Model) -> RunTracker {
        RunTracker {
            run_ids: runs.iter().map(|r| r.run_id).collect(),
            has_embedding: model.params.iter().any(|p| p.role == Role::Embedding),
            pending: BTreeMap::new(),
            rows: vec![Vec::new(); runs.len()],
            diverged_at: vec![None; runs.len()],
        }
    }

    /// Test statistics `[R, 4]`, parameter norms `[R, n_params]` and, with the Lipschitz
    /// bound on, spectral norms `[R, layers]` of a logged epoch.
    pub fn record_test(&mut self, epoch: usize, test_stats: &Tensor, norms: &Tensor, spectral: Option<&Tensor>) -> Result<()> {
        let spectral = match spectral {
            Some(s) => to_rows(s)?,
            None => vec![Vec::new(); self.run_ids.len()],
        };
        self.pending.insert(epoch, PendingEpoch { test: to_rows(test_stats)?, norms: to_rows(norms)?, spectral });
        Ok(())
    }

    /// Train statistics `[R, 4]` of a logged epoch: completes its rows.
    pub fn record_train(&mut self, epoch: usize, train_stats: &Tensor) -> Result<()> {
        let pending = self.pending.remove(&epoch).with_context(|| format!("internal: no test metrics for epoch {epoch}"))?;
        let train = to_rows(train_stats)?;
        for (run, rows) in self.rows.iter_mut().enumerate() {
            if self.diverged_at[run].is_some() {
                continue;
            }
            let (tr, te, norms, spectral) = (&train[run], &pending.test[run], &pending.norms[run], &pending.spectral[run]);
            let (embedding_weight_norm, layer_norms) = if self.has_embedding {
                (Some(norms[0]), norms[1..].to_vec())
            } else {
                (None, norms.clone())
            };
            let row = MetricRow {
                run_id: self.run_ids[run],
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
            };
            if ![row.train_loss, row.test_loss, row.weight_norm].iter().all(|x| x.is_finite()) {
                self.diverged_at[run] = Some(epoch);
            }
            rows.push(row);
        }
        Ok(())
    }

    /// Every run's summary and all rows, run-major.
    pub fn finish(self, epochs: usize) -> (Vec<RunResult>, MetricRows) {
        let results = self
            .rows
            .iter()
            .zip(&self.diverged_at)
            .zip(&self.run_ids)
            .map(|((rows, diverged_at), &run_id)| summarize(run_id, rows, *diverged_at, epochs))
            .collect();
        (results, self.rows.into_iter().flatten().collect())
    }
}

/// A run's summary from its logged rows.
pub fn summarize(run_id: usize, rows: &[MetricRow], diverged_at: Option<usize>, epochs: usize) -> RunResult {
    let first_at = |threshold: f64| rows.iter().find(|r| r.test_acc >= threshold);
    let grok = first_at(GROK_THRESHOLD);
    let last = rows.last();
    let final_of = |f: fn(&MetricRow) -> f64| last.map_or(f64::NAN, f);
    RunResult {
        run_id,
        status: if diverged_at.is_some() { Status::Diverged } else { Status::Done },
        epochs_trained: diverged_at.map_or(epochs, |e| e + 1),
        grok_epoch: grok.map(|r| r.epoch),
        solve_epoch: first_at(SOLVE_THRESHOLD).map(|r| r.epoch),
        lipschitz_at_grok: grok.and_then(|r| r.lipschitz_bound),
        final_train_acc: final_of(|r| r.train_acc),
        final_test_acc: final_of(|r| r.test_acc),
        final_train_loss: final_of(|r| r.train_loss),
        final_test_loss: final_of(|r| r.test_loss),
    }
}
