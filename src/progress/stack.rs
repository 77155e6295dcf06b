//! The progress measures of a stack in training, from the logits its passes compute anyway.
//!
//! A logged epoch e has two halves, as its other metrics do: its test rows' logits come from
//! the test evaluation right after step e, its train rows' from the forward pass of step
//! e + 1, which sees the same weights (or from the train evaluation with minibatches, at the
//! last epoch, or for a model with dropout, whose training pass drops units). The test half
//! keeps only each run's logit sums per answer `[n, C]` and the embedding spectrum; the train
//! half completes the sums, then measures everything else while its logits are at hand.

use super::fourier::Basis;
use super::group::CyclicIndex;
use super::logits::{self as measures, KeyChoice};
use super::rows::ProgressRow;
use super::spectrum;
use crate::config::RunSpec;
use crate::data::{Examples, Split};
use crate::kernels::cpu_view;
use crate::models::Model;
use crate::run_axis::pick_runs;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a run with the measures on measures with.
#[derive(Clone)]
struct RunMeasures {
    index: CyclicIndex,
    basis: Arc<Basis>,
    choice: KeyChoice,
    /// The answer in Z_n of each train and test row `[N]` (None: a pair left out).
    train_answers: Vec<Option<u32>>,
    test_answers: Vec<Option<u32>>,
}

/// The test half of a logged epoch of one run.
#[derive(Clone)]
struct TestHalf {
    /// The test rows' logits summed per answer `[n, C]`, and the rows per answer `[n]`.
    sums: Vec<f64>,
    counts: Vec<f64>,
    spectrum: Vec<f64>,
}

/// The measures of the runs of a stack that have them on.
pub struct StackProgress {
    classes: usize,
    /// Per stack position: the run's measures, None when they are off.
    runs: Vec<Option<RunMeasures>>,
    /// The logged epochs whose train half is still to come, per stack position.
    pending: BTreeMap<usize, Vec<Option<TestHalf>>>,
}

impl StackProgress {
    /// The measures of `runs` with their `splits`; None when no run has them on.
    pub fn new(runs: &[RunSpec], splits: &[Split]) -> Result<Option<StackProgress>> {
        if !runs.iter().any(|r| r.config.progress.enabled) {
            return Ok(None);
        }
        let mut bases: Vec<Arc<Basis>> = Vec::new();
        let mut measures = Vec::with_capacity(runs.len());
        for (run, split) in runs.iter().zip(splits) {
            if !run.config.progress.enabled {
                measures.push(None);
                continue;
            }
            let index = CyclicIndex::new(&run.config.op, run.config.p)?;
            let basis = match bases.iter().find(|b| b.n == index.n) {
                Some(basis) => basis.clone(),
                None => {
                    bases.push(Arc::new(Basis::new(index.n)));
                    bases[bases.len() - 1].clone()
                }
            };
            let answers = |examples: &Examples| -> Vec<Option<u32>> {
                (0..examples.len())
                    .map(|i| index.answer(examples.row(i)[0] as usize, examples.row(i)[1] as usize).map(|s| s as u32))
                    .collect()
            };
            let (train_answers, test_answers) = (answers(&split.train), answers(&split.test));
            measures.push(Some(RunMeasures {
                index,
                basis,
                choice: run.config.progress.choice(),
                train_answers,
                test_answers,
            }));
        }
        Ok(Some(StackProgress { classes: runs[0].config.classes(), runs: measures, pending: BTreeMap::new() }))
    }

    /// The test half of logged `epoch`: the test logits `[R, N_test, C]` and the model's weights.
    pub fn record_test(&mut self, epoch: usize, logits: &Tensor, model: &Model) -> Result<()> {
        let (table, two_hot) = operand_parameter(model)?;
        let table = table.to_dtype(DType::F64)?.to_device(&Device::Cpu)?.contiguous()?; // [R, V, d]
        let (_, vocabulary, width) = table.dims3()?;
        let table_view = cpu_view(&table)?;
        let tables = OperandTables { values: table_view.slice::<f64>()?, rows: vocabulary, width, two_hot };
        let (logits, rows) = (on_host(logits)?, logits.dim(1)?);
        let view = cpu_view(&logits)?;
        let halves = match logits.dtype() {
            DType::F32 => self.test_halves(view.slice::<f32>()?, rows, &tables),
            _ => self.test_halves(view.slice::<f64>()?, rows, &tables),
        };
        self.pending.insert(epoch, halves);
        Ok(())
    }

    /// Every run's test half from its test logits (`logits` `[R, N, C]`) and operand tables.
    fn test_halves<T: Copy + Into<f64> + Sync>(
        &self,
        logits: &[T],
        rows: usize,
        tables: &OperandTables,
    ) -> Vec<Option<TestHalf>> {
        let classes = self.classes;
        self.runs
            .par_iter()
            .enumerate()
            .map(|(r, run)| {
                run.as_ref().map(|m| {
                    let (sums, counts) = answer_sums(
                        &logits[r * rows * classes..][..rows * classes],
                        &m.test_answers,
                        m.index.n,
                        classes,
                    );
                    let operands = tables.in_group_order(r, &m.index);
                    let spectrum = spectrum::spectra(&m.basis, &operands, operands.len() / m.index.n).remove(0);
                    TestHalf { sums, counts, spectrum }
                })
            })
            .collect()
    }

    /// The train half of logged `epoch` from the train logits `[R, N_train, C]`: every run's
    /// measures (None for the runs that have them off).
    pub fn record_train(&mut self, epoch: usize, logits: &Tensor) -> Result<Vec<Option<ProgressRow>>> {
        let halves = self
            .pending
            .remove(&epoch)
            .with_context(|| format!("internal: no test half of the progress measures of epoch {epoch}"))?;
        if halves.len() != self.runs.len() {
            bail!(
                "internal: the progress measures of epoch {epoch} are for {} runs, the stack has {}",
                halves.len(),
                self.runs.len()
            );
        }
        let (logits, rows) = (on_host(logits)?, logits.dim(1)?);
        let view = cpu_view(&logits)?;
        Ok(match logits.dtype() {
            DType::F32 => self.measure_all(&halves, view.slice::<f32>()?, rows),
            _ => self.measure_all(&halves, view.slice::<f64>()?, rows),
        })
    }

    /// Every run's measures from its test half and its train logits (`logits` `[R, N, C]`).
    fn measure_all<T: Copy + Into<f64> + Sync>(
        &self,
        halves: &[Option<TestHalf>],
        logits: &[T],
        rows: usize,
    ) -> Vec<Option<ProgressRow>> {
        let classes = self.classes;
        self.runs
            .par_iter()
            .zip(halves.par_iter())
            .enumerate()
            .map(|(r, (run, half))| match (run, half) {
                (Some(m), Some(half)) => {
                    Some(measure(m, half, &logits[r * rows * classes..][..rows * classes], classes))
                }
                _ => None,
            })
            .collect()
    }

    /// The logged epochs whose train half is still to come.
    pub fn pending_epochs(&self) -> Vec<usize> {
        self.pending.keys().copied().collect()
    }

    /// Keep the runs at these stack positions (in this order); the others have retired.
    pub fn keep(&mut self, positions: &[usize]) {
        self.runs = pick_runs(&self.runs, positions);
        for halves in self.pending.values_mut() {
            *halves = pick_runs(halves, positions);
        }
    }
}

/// A run's measures from its test half and its train logits `[N_train, C]`.
fn measure<T: Copy + Into<f64>>(m: &RunMeasures, half: &TestHalf, train_logits: &[T], classes: usize) -> ProgressRow {
    let (n, basis) = (m.index.n, &*m.basis);
    let (mut sums, mut counts) = answer_sums(train_logits, &m.train_answers, n, classes);
    sums.iter_mut().zip(&half.sums).for_each(|(s, t)| *s += t);
    counts.iter_mut().zip(&half.counts).for_each(|(c, t)| *c += t);
    let means: Vec<f64> =
        // [n, C]
        sums.chunks_exact(classes).zip(&counts).flat_map(|(row, count)| row.iter().map(move |v| v / count)).collect();
    let coefficients = measures::coefficients(basis, &means, classes);
    let keys = measures::key_frequencies(basis, &coefficients, classes, &m.choice);
    let part = measures::key_part(basis, &coefficients, classes, &keys);
    let class_of = |s: usize| m.index.residue(s);
    ProgressRow {
        restricted_loss: measures::restricted_loss(basis, &coefficients, &part, classes, class_of),
        excluded_loss: measures::excluded_loss(train_logits, &m.train_answers, &part, classes, class_of),
        key_frequencies: keys,
        embedding_gini: spectrum::gini(&half.spectrum),
        embedding_ipr: spectrum::ipr(&half.spectrum),
        embedding_spectrum: half.spectrum.clone(),
    }
}

/// The logits `[N, C]` summed per answer `[n, C]`, and the rows per answer `[n]`.
fn answer_sums<T: Copy + Into<f64>>(
    logits: &[T],
    answers: &[Option<u32>],
    n: usize,
    classes: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut sums, mut counts) = (vec![0.0; n * classes], vec![0.0; n]);
    for (row, answer) in logits.chunks_exact(classes).zip(answers) {
        if let Some(s) = answer.map(|s| s as usize) {
            sums[s * classes..(s + 1) * classes].iter_mut().zip(row).for_each(|(sum, &x)| *sum += x.into());
            counts[s] += 1.0;
        }
    }
    (sums, counts)
}

/// `logits` on the host, contiguous, as f32 or f64 (a view when they are so already).
fn on_host(logits: &Tensor) -> Result<Tensor> {
    let logits = logits.to_device(&Device::Cpu)?;
    let logits =
        if matches!(logits.dtype(), DType::F32 | DType::F64) { logits } else { logits.to_dtype(DType::F32)? };
    Ok(logits.contiguous()?)
}

/// The parameter whose rows are the operands' tables (see [`Model::operand_table`]).
fn operand_parameter(model: &Model) -> Result<(&Tensor, bool)> {
    model.operand_table().context("internal: a model without an embedding or a two-hot first layer")
}

/// The operand parameter of every run on the host, `[R, rows, width]` (f64).
struct OperandTables<'a> {
    values: &'a [f64],
    rows: usize,
    width: usize,
    /// The first layer of two-hot input: rows 0..p see operand a, p..2p operand b.
    two_hot: bool,
}

impl OperandTables<'_> {
    /// Run `r`'s operand table in group order `[n, w]`: row s is the row of residue(s); with
    /// two-hot input, operand a's row then operand b's (w = 2·width).
    fn in_group_order(&self, r: usize, index: &CyclicIndex) -> Vec<f64> {
        let table = &self.values[r * self.rows * self.width..][..self.rows * self.width];
        let row = |v: usize| &table[v * self.width..(v + 1) * self.width];
        let b_rows = self.rows / 2; // operand b's first row, with two-hot input [2p, width]
        (0..index.n)
            .flat_map(|s| {
                let v = index.residue(s);
                let b_row = if self.two_hot { row(b_rows + v) } else { &[][..] };
                row(v).iter().chain(b_row).copied()
            })
            .collect()
    }
}
