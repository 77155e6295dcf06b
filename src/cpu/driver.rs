//! The driver every CPU pass plugs its per-chunk work into: a stack's runs a wave at a time,
//! each (run, chunk of rows) one rayon task, the chunks' partials summed in a fixed order.

use super::pool::{self, Pooled};
use super::{reduce_wave, Partial};
use crate::kernels::loss::N_STATS;
use rayon::prelude::*;
use std::ops::Range;

/// The shape of one CPU pass over a stack.
pub struct PassShape {
    pub runs: usize,
    /// Rows per run.
    pub rows: usize,
    /// Rows per task: a chunk's partial gradients are summed in chunk order.
    pub chunk_rows: usize,
    /// Runs whose chunks' partials (and per-run state, such as dropout masks) exist at once.
    pub runs_per_wave: usize,
    /// Per parameter slot, its values in one run's gradient; `None` for an evaluation pass.
    pub grad_lengths: Option<Vec<usize>>,
}

/// Drive one pass: `wave` prepares what the runs of a wave share (their dropout masks, say), and
/// `chunk` computes one run's rows `rows` (its index `run` in the stack), adding its gradient
/// into `grads` when training and returning the chunk's summed row statistics.
///
/// Returns every run's mean statistics `[R, N_STATS]` (flattened) and, when training, the summed
/// gradient of every parameter slot, runs one after another (`[R, ...]` flattened per slot).
pub fn drive<T, W, Wave, Chunk>(shape: &PassShape, wave: Wave, chunk: Chunk) -> (Vec<f64>, Vec<Vec<T>>)
where
    T: Pooled,
    W: Sync,
    Wave: Fn(Range<usize>) -> W,
    Chunk: Fn(&W, usize, Range<usize>, Option<&mut Vec<Vec<T>>>) -> [f64; N_STATS] + Sync,
{
    let chunks_per_run = shape.rows.div_ceil(shape.chunk_rows);
    let mut stacked: Vec<Vec<T>> = match &shape.grad_lengths {
        Some(lengths) => lengths.iter().map(|&len| Vec::with_capacity(shape.runs * len)).collect(),
        None => Vec::new(),
    };
    let mut means = Vec::with_capacity(shape.runs * N_STATS);
    for wave_start in (0..shape.runs).step_by(shape.runs_per_wave) {
        let wave_runs = shape.runs_per_wave.min(shape.runs - wave_start);
        let shared = wave(wave_start..wave_start + wave_runs);
        // One task per (run, chunk), in run-major order.
        let partials: Vec<Partial<T>> = (0..wave_runs * chunks_per_run)
            .into_par_iter()
            .map(|task| {
                let (run, index) = (wave_start + task / chunks_per_run, task % chunks_per_run);
                let rows = index * shape.chunk_rows..((index + 1) * shape.chunk_rows).min(shape.rows);
                let mut grads = shape.grad_lengths.as_ref().map(|lengths| pool::take(lengths));
                let sums = chunk(&shared, run, rows, grads.as_mut());
                (sums, grads)
            })
            .collect();
        drop(shared);
        reduce_wave(partials, chunks_per_run, shape.rows, &mut means, &mut stacked);
    }
    (means, stacked)
}
