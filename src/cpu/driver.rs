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
    /// Values per row the pass keeps (its logits' classes, for the progress measures); 0: none.
    pub kept_per_row: usize,
}

/// What one task gets: the index `run` of its run in the stack, its rows, its partial gradient
/// to add into when training, and where its rows' kept values go (`[rows, kept_per_row]`).
pub struct Chunk<'a, T> {
    pub run: usize,
    pub rows: Range<usize>,
    pub grads: Option<&'a mut Vec<Vec<T>>>,
    pub kept: Option<&'a mut [T]>,
}

/// What a pass returns: every run's mean statistics `[R, N_STATS]`, when training the summed
/// gradient of every parameter slot (runs one after another, `[R, ...]` per slot), and the kept
/// values `[R, N, kept_per_row]` (empty when none are kept). All flattened.
pub struct PassSums<T> {
    pub means: Vec<f64>,
    pub grads: Vec<Vec<T>>,
    pub kept: Vec<T>,
}

/// Drive one pass: `wave` prepares what the runs of a wave share (their dropout masks, say),
/// and `chunk` computes one chunk of one run's rows, returning its summed row statistics.
pub fn drive<T, W, Wave, Work>(shape: &PassShape, wave: Wave, chunk: Work) -> PassSums<T>
where
    T: Pooled,
    W: Sync,
    Wave: Fn(Range<usize>) -> W,
    Work: Fn(&W, Chunk<'_, T>) -> [f64; N_STATS] + Sync,
{
    let chunks_per_run = shape.rows.div_ceil(shape.chunk_rows);
    let mut grads: Vec<Vec<T>> = match &shape.grad_lengths {
        Some(lengths) => lengths.iter().map(|&len| Vec::with_capacity(shape.runs * len)).collect(),
        None => Vec::new(),
    };
    let mut means = Vec::with_capacity(shape.runs * N_STATS);
    let mut kept = vec![T::zero(); shape.runs * shape.rows * shape.kept_per_row];
    let kept_per_run = shape.rows * shape.kept_per_row;
    for wave_start in (0..shape.runs).step_by(shape.runs_per_wave) {
        let wave_runs = shape.runs_per_wave.min(shape.runs - wave_start);
        let shared = wave(wave_start..wave_start + wave_runs);
        // Each task's slice of the kept values, in the tasks' run-major order.
        let slots: Vec<Option<&mut [T]>> = if kept_per_run == 0 {
            (0..wave_runs * chunks_per_run).map(|_| None).collect()
        } else {
            kept[wave_start * kept_per_run..(wave_start + wave_runs) * kept_per_run]
                .chunks_mut(kept_per_run)
                .flat_map(|run| run.chunks_mut(shape.chunk_rows * shape.kept_per_row))
                .map(Some)
                .collect()
        };
        // One task per (run, chunk), in run-major order.
        let partials: Vec<Partial<T>> = slots
            .into_par_iter()
            .enumerate()
            .map(|(task, kept)| {
                let (run, index) = (wave_start + task / chunks_per_run, task % chunks_per_run);
                let rows = index * shape.chunk_rows..((index + 1) * shape.chunk_rows).min(shape.rows);
                let mut task_grads = shape.grad_lengths.as_ref().map(|lengths| pool::take(lengths));
                let sums = chunk(&shared, Chunk { run, rows, grads: task_grads.as_mut(), kept });
                (sums, task_grads)
            })
            .collect();
        drop(shared);
        reduce_wave(partials, chunks_per_run, shape.rows, &mut means, &mut grads);
    }
    PassSums { means, grads, kept }
}
