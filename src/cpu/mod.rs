//! What every CPU pass shares: the driver that spreads a stack's runs and chunks of rows over the
//! cores ([`drive`]), single-threaded GEMMs on one run's matrices, buffers pooled across
//! passes, and the fixed-order sum of a wave's chunk partials.

mod driver;
pub mod matmul;
pub mod pool;

pub use driver::{drive, Chunk, PassShape, PassSums};

use crate::kernels::loss::N_STATS;
use pool::Pooled;
use rayon::prelude::*;

/// What one chunk of one run's rows adds up: its row statistics, and when training its partial
/// gradient of every parameter slot.
type Partial<T> = ([f64; N_STATS], Option<Vec<Vec<T>>>);

/// Sum each run's chunk partials (`chunks_per_run` consecutive entries per run) in chunk
/// order, so that a run's bits depend neither on its stack nor on the thread count; append each
/// run's mean statistics over its `n` rows to `means` and its summed gradients to `stacked`
/// (one vector per parameter slot, runs one after another); give the buffers back to the pool.
fn reduce_wave<T: Pooled>(
    mut partials: Vec<Partial<T>>,
    chunks_per_run: usize,
    n: usize,
    means: &mut Vec<f64>,
    stacked: &mut [Vec<T>],
) {
    partials.par_chunks_mut(chunks_per_run).for_each(|chunks| {
        let (first, rest) = chunks.split_first_mut().expect("chunks_per_run ≥ 1");
        for (chunk_sums, chunk_grads) in rest.iter() {
            first.0.iter_mut().zip(chunk_sums).for_each(|(s, v)| *s += v);
            if let (Some(total), Some(part)) = (&mut first.1, chunk_grads) {
                for (t, g) in total.iter_mut().zip(part) {
                    t.iter_mut().zip(g).for_each(|(t, &g)| *t += g);
                }
            }
        }
    });
    for run_chunks in partials.chunks(chunks_per_run) {
        means.extend(run_chunks[0].0.map(|s| s / n as f64));
        if let Some(run_grads) = &run_chunks[0].1 {
            stacked.iter_mut().zip(run_grads).for_each(|(all, g)| all.extend_from_slice(g));
        }
    }
    let keep = partials.len() + 2 * rayon::current_num_threads();
    pool::give_back(partials.into_iter().filter_map(|(_, g)| g), keep);
}
