//! The MLP's training and evaluation passes on the CPU: one task per chunk of one run's rows.
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

use super::block::{Buffers, Net};
use super::Mlp;
use crate::cpu::pool::{self, Pooled};
use crate::cpu::{drive, Chunk, PassShape};
use crate::dispatch_real;
use crate::kernels::cpu_view;
use crate::kernels::loss::Loss;
use crate::kernels::loss::N_STATS;
use crate::models::PassOptions;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

/// Rows of one task: the unit of parallelism, and of the partial gradient sums.
pub const CHUNK_ROWS: usize = 1024;
/// Rows carried through the network at once: their activations stay in cache.
pub const BLOCK_ROWS: usize = 128;
/// Runs whose chunks are in flight at once: bounds the partial gradients' memory.
pub const RUNS_PER_WAVE: usize = 64;

/// Loss statistics `[R, 4]` of the current weights on `rows` `[R, N, K]` / `labels` `[R, N]`,
/// and the gradient of every parameter (see `crate::models::Model::train_pass`).
pub fn train_pass(
    mlp: &Mlp,
    rows: &Tensor,
    labels: &Tensor,
    loss: Loss,
    loss_bf16: bool,
) -> Result<(Tensor, Vec<Tensor>)> {
    let (stats, grads, _) = pass(mlp, rows, labels, &PassOptions::new(loss, loss_bf16, 1), true)?;
    Ok((stats, grads))
}

/// Loss statistics `[R, 4]` of the current weights on `rows` / `labels` (no backward pass).
pub fn evaluate(mlp: &Mlp, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool) -> Result<Tensor> {
    Ok(pass(mlp, rows, labels, &PassOptions::new(loss, loss_bf16, 1), false)?.0)
}

/// A training pass ([`train_pass`]) or, without `training`, an evaluation (no gradients); with
/// `options.keep_logits`, also the logits `[R, N, C]` it computes on the way. The MLP has no
/// dropout, and the CPU pass takes one run per task whatever `options.group` is.
pub fn pass(
    mlp: &Mlp,
    rows: &Tensor,
    labels: &Tensor,
    options: &PassOptions,
    training: bool,
) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
    let inputs = Inputs::new(mlp, rows, labels)?;
    let (stats, grads, logits) = dispatch_real!(inputs.table, run_pass(mlp, &inputs, options, training))?;
    if !training {
        return Ok((stats, grads, logits));
    }
    let mut grads = grads.into_iter();
    let d_table = grads.next().ok_or_else(|| anyhow::anyhow!("internal: no table gradient"))?;
    let later = grads.map(|g| mlp.model.storage.compute(g)).collect::<Result<Vec<_>>>()?;
    Ok((stats, mlp.grads_in_order(&d_table, later)?, logits))
}

/// The tensors a pass reads, made contiguous once.
struct Inputs {
    /// The first layer's lookup table `[R, V, H₀]`.
    table: Tensor,
    /// Linear layers 1..=k as the matmuls see them, `[R, H_{i−1}, H_i]`.
    weights: Vec<Tensor>,
    rows: Tensor,
    labels: Tensor,
}

impl Inputs {
    fn new(mlp: &Mlp, rows: &Tensor, labels: &Tensor) -> Result<Inputs> {
        let weights = (1..mlp.n_linear())
            .map(|i| Ok(mlp.model.compute_copy(mlp.linear(i))?.contiguous()?))
            .collect::<Result<_>>()?;
        Ok(Inputs {
            table: mlp.first_table()?.contiguous()?,
            weights,
            rows: rows.contiguous()?,
            labels: labels.contiguous()?,
        })
    }
}

/// Statistics `[R, 4]` and, when `training`, the summed gradients: the table's `[R, V, H₀]`,
/// then dW_i `[R, H_{i−1}, H_i]` for i = 1..=k; with `keep_logits`, the logits `[R, N, C]`.
fn run_pass<T: Pooled>(
    mlp: &Mlp,
    inputs: &Inputs,
    options: &PassOptions,
    training: bool,
) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
    let PassOptions { loss, loss_bf16, keep_logits, .. } = *options;
    let (runs, n, k) = inputs.rows.dims3()?;
    if n == 0 {
        bail!("a pass over no rows");
    }
    let arch = mlp.arch;
    let views = [&inputs.table, &inputs.rows, &inputs.labels]
        .into_iter()
        .chain(&inputs.weights)
        .map(cpu_view)
        .collect::<Result<Vec<_>>>()?;
    let (table, rows, labels) = (views[0].slice::<T>()?, views[1].slice::<u32>()?, views[2].slice::<u32>()?);
    let weights = views[3..].iter().map(|v| v.slice::<T>()).collect::<Result<Vec<_>>>()?;
    let table_len = table.len() / runs;
    let net = |run: usize| Net {
        classes: arch.classes,
        row_width: k,
        hidden: &arch.hidden,
        activation: arch.activation,
        alpha: T::from(arch.alpha).unwrap_or_else(T::one),
        loss,
        loss_bf16,
        bf16: mlp.model.storage.bf16_compute,
        table: &table[run * table_len..][..table_len],
        weights: weights.iter().map(|w| &w[run * w.len() / runs..][..w.len() / runs]).collect(),
    };
    let scale = T::one() / T::from(n).unwrap_or_else(T::one);
    let mut shapes = vec![(arch.table_rows(), arch.hidden[0])];
    shapes.extend(arch.linear_shapes().into_iter().skip(1));
    let classes = arch.classes;
    let pass = PassShape {
        runs,
        rows: n,
        chunk_rows: CHUNK_ROWS,
        runs_per_wave: RUNS_PER_WAVE,
        grad_lengths: training.then(|| shapes.iter().map(|&(r, c)| r * c).collect()),
        kept_per_row: if keep_logits { classes } else { 0 },
    };
    let sums = drive(
        &pass,
        |_| (),
        |_, chunk: Chunk<'_, T>| {
            let Chunk { run, rows: chunk_rows, mut grads, mut kept } = chunk;
            let net = net(run);
            let mut buf = Buffers::from_set(pool::take(&net.buffer_lengths(BLOCK_ROWS, training)));
            let mut sums = [0.0; N_STATS];
            for block in chunk_rows.clone().step_by(BLOCK_ROWS) {
                let rows_here = (run * n + block)..(run * n + (block + BLOCK_ROWS).min(chunk_rows.end));
                let indices = &rows[k * rows_here.start..k * rows_here.end];
                net.forward(indices, &mut buf, training);
                if let Some(out) = kept.as_deref_mut() {
                    // [B, C], before the loss overwrites them.
                    let (offset, len) = ((block - chunk_rows.start) * classes, rows_here.len() * classes);
                    out[offset..offset + len].copy_from_slice(buf.logits(len));
                }
                let block_sums = net.loss(&labels[rows_here], &mut buf, training.then_some(scale));
                sums.iter_mut().zip(block_sums).for_each(|(s, v)| *s += v);
                if let Some(grads) = grads.as_deref_mut() {
                    net.backward(indices, &mut buf, grads);
                }
            }
            pool::give_back([buf.into_set()], usize::MAX);
            sums
        },
    );
    let stats = Tensor::from_vec(sums.means, (runs, N_STATS), &Device::Cpu)?;
    let grads = sums
        .grads
        .into_iter()
        .zip(&shapes)
        .map(|(values, &(rows_of, cols))| Ok(Tensor::from_vec(values, (runs, rows_of, cols), &Device::Cpu)?))
        .collect::<Result<Vec<_>>>()?;
    let logits = keep_logits.then(|| Tensor::from_vec(sums.kept, (runs, n, classes), &Device::Cpu)).transpose()?;
    Ok((stats, grads, logits))
}
