//! The training and evaluation passes on the CPU: one task per chunk of one run's rows.
//!
//! The tensor path (`Model::train_pass_tensors`) runs each op over a whole `[R, N, H]` tensor,
//! so every activation streams through main memory several times per layer. Here a task
//! carries a chunk of one run's rows through the whole network, block by block
//! ([`block::Net`]): a block's activations stay in the core's cache, the elementwise work
//! happens in loops over the block, and each matmul is a single-threaded GEMM on one run's
//! weights while rayon spreads the tasks over the cores.
//!
//! Chunks have a fixed size and their partial gradients are summed in a fixed order, so the
//! arithmetic of a run does not depend on the stack it is in, nor on the number of threads.

pub mod block;
pub mod matmul;
mod pool;

use crate::config::Loss;
use crate::dispatch_real;
use crate::kernels::loss::N_STATS;
use crate::kernels::cpu_view;
use crate::model::Model;
use anyhow::{bail, Result};
use block::{Buffers, Grads, Net};
use pool::Pooled;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

/// Rows of one task: the unit of parallelism, and of the partial gradient sums.
pub const CHUNK_ROWS: usize = 1024;
/// Rows carried through the network at once: their activations stay in cache.
pub const BLOCK_ROWS: usize = 128;

/// Whether the CPU pass runs `model`: its tensors are f32 or f64 on the CPU.
pub fn applies(model: &Model) -> bool {
    is_cpu_float(&model.params[0].value)
}

/// Whether `t` is an f32 or f64 tensor on the CPU.
pub fn is_cpu_float(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Loss statistics `[R, 4]` of the current weights on `rows` `[R, N, 2]` / `labels` `[R, N]`,
/// and the gradient of every parameter (see `Model::train_pass`).
pub fn train_pass(model: &Model, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool) -> Result<(Tensor, Vec<Tensor>)> {
    let inputs = Inputs::new(model, rows, labels)?;
    let (stats, grads) = dispatch_real!(inputs.table, run_pass(model, &inputs, loss, loss_bf16, true))?;
    let mut grads = grads.into_iter();
    let d_table = grads.next().ok_or_else(|| anyhow::anyhow!("internal: no table gradient"))?;
    let later = grads.map(|g| model.storage.compute(g)).collect::<Result<Vec<_>>>()?;
    Ok((stats, model.grads_in_order(&d_table, later)?))
}

/// Loss statistics `[R, 4]` of the current weights on `rows` / `labels` (no backward pass).
pub fn evaluate(model: &Model, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool) -> Result<Tensor> {
    let inputs = Inputs::new(model, rows, labels)?;
    Ok(dispatch_real!(inputs.table, run_pass(model, &inputs, loss, loss_bf16, false))?.0)
}

/// The tensors a pass reads, made contiguous once.
struct Inputs {
    /// The first layer's lookup table `[R, 2p, H₀]`.
    table: Tensor,
    /// Linear layers 1..=k as the matmuls see them, `[R, H_{i−1}, H_i]`.
    weights: Vec<Tensor>,
    rows: Tensor,
    labels: Tensor,
}

impl Inputs {
    fn new(model: &Model, rows: &Tensor, labels: &Tensor) -> Result<Inputs> {
        let weights = (1..model.n_linear()).map(|i| Ok(model.compute_copy(model.linear(i))?.contiguous()?)).collect::<Result<_>>()?;
        Ok(Inputs { table: model.first_table()?.contiguous()?, weights, rows: rows.contiguous()?, labels: labels.contiguous()? })
    }
}

/// Statistics `[R, 4]` and, when `training`, the summed gradients: the table's `[R, 2p, H₀]`,
/// then dW_i `[R, H_{i−1}, H_i]` for i = 1..=k.
fn run_pass<T: Pooled>(model: &Model, inputs: &Inputs, loss: Loss, loss_bf16: bool, training: bool) -> Result<(Tensor, Vec<Tensor>)> {
    let (runs, n) = (model.runs(), inputs.rows.dim(1)?);
    if n == 0 {
        bail!("a pass over no rows");
    }
    let arch = &model.arch;
    let views = [&inputs.table, &inputs.rows, &inputs.labels].into_iter().chain(&inputs.weights).map(cpu_view).collect::<Result<Vec<_>>>()?;
    let (table, rows, labels) = (views[0].slice::<T>()?, views[1].slice::<u32>()?, views[2].slice::<u32>()?);
    let weights = views[3..].iter().map(|v| v.slice::<T>()).collect::<Result<Vec<_>>>()?;
    let table_len = table.len() / runs;
    let net = |run: usize| Net {
        p: arch.p,
        hidden: &arch.hidden,
        activation: arch.activation,
        alpha: T::from(arch.alpha).unwrap_or_else(T::one),
        loss,
        loss_bf16,
        bf16: model.storage.bf16_compute,
        table: &table[run * table_len..][..table_len],
        weights: weights.iter().map(|w| &w[run * w.len() / runs..][..w.len() / runs]).collect(),
    };
    let scale = T::one() / T::from(n).unwrap_or_else(T::one);
    let chunks_per_run = n.div_ceil(CHUNK_ROWS);

    // One task per (run, chunk), in run-major order.
    let mut partials: Vec<([f64; N_STATS], Option<Grads<T>>)> = (0..runs * chunks_per_run)
        .into_par_iter()
        .map(|task| {
            let (run, chunk) = (task / chunks_per_run, task % chunks_per_run);
            let net = net(run);
            let (start, end) = (chunk * CHUNK_ROWS, ((chunk + 1) * CHUNK_ROWS).min(n));
            let mut buf = Buffers::from_set(pool::take(&net.buffer_lengths(BLOCK_ROWS, training)));
            let mut grads = training.then(|| pool::take(&net.grad_lengths()));
            let mut sums = [0.0; N_STATS];
            for block in (start..end).step_by(BLOCK_ROWS) {
                let rows_here = (run * n + block)..(run * n + (block + BLOCK_ROWS).min(end));
                let pairs = &rows[2 * rows_here.start..2 * rows_here.end];
                net.forward(pairs, &mut buf, training);
                let block_sums = net.loss(&labels[rows_here], &mut buf, training.then_some(scale));
                sums.iter_mut().zip(block_sums).for_each(|(s, v)| *s += v);
                if let Some(grads) = &mut grads {
                    net.backward(pairs, &mut buf, grads);
                }
            }
            pool::give_back([buf.into_set()], usize::MAX);
            (sums, grads)
        })
        .collect();

    // Each run's chunks summed in chunk order.
    let per_run: Vec<([f64; N_STATS], Option<Grads<T>>)> = partials
        .par_chunks_mut(chunks_per_run)
        .map(|chunks| {
            let (first, rest) = chunks.split_first_mut().expect("chunks_per_run ≥ 1");
            let (mut sums, mut grads) = (first.0, first.1.take());
            for (chunk_sums, chunk_grads) in rest {
                sums.iter_mut().zip(*chunk_sums).for_each(|(s, v)| *s += v);
                if let (Some(total), Some(part)) = (&mut grads, chunk_grads) {
                    for (t, g) in total.iter_mut().zip(part.iter()) {
                        t.iter_mut().zip(g).for_each(|(t, &g)| *t = *t + g);
                    }
                }
            }
            (sums, grads)
        })
        .collect();

    let means: Vec<f64> = per_run.iter().flat_map(|(sums, _)| sums.map(|s| s / n as f64)).collect();
    let stats = Tensor::from_vec(means, (runs, N_STATS), &Device::Cpu)?;
    let keep = runs * chunks_per_run + 2 * rayon::current_num_threads();
    if !training {
        pool::give_back(std::iter::empty::<Grads<T>>(), keep);
        return Ok((stats, Vec::new()));
    }
    let mut shapes = vec![(2 * arch.p, arch.hidden[0])];
    shapes.extend(arch.linear_shapes().into_iter().skip(1));
    let mut grads = Vec::with_capacity(shapes.len());
    for (slot, &(rows_of, cols)) in shapes.iter().enumerate() {
        let mut stacked = Vec::with_capacity(runs * rows_of * cols);
        for (_, run_grads) in &per_run {
            stacked.extend_from_slice(&run_grads.as_ref().expect("training pass has gradients")[slot]);
        }
        grads.push(Tensor::from_vec(stacked, (runs, rows_of, cols), &Device::Cpu)?);
    }
    let sets = per_run.into_iter().filter_map(|(_, g)| g).chain(partials.into_iter().filter_map(|(_, g)| g));
    pool::give_back(sets, keep);
    Ok((stats, grads))
}
