//! The transformer's training and evaluation passes on the CPU: one task per chunk of one
//! run's rows, as the MLP's (`crate::models::mlp::cpu`).
//!
//! The tensor path runs each op over a whole `[R, N·T, d]` tensor, so every activation
//! streams through main memory several times per layer. Here a task carries a chunk of one
//! run's rows through the whole transformer, a block of rows at a time ([`block::Net`]): a
//! block's activations `[B, T, d]` stay in the core's cache, the elementwise work (norms,
//! RoPE, the attention over T keys, activations, residuals, dropout) happens in loops over
//! the block ([`ops`]), and each projection is a single-threaded GEMM on one run's weights
//! while rayon spreads the tasks over the cores.
//!
//! Chunks have a fixed size and their partial gradients are summed in a fixed order, so the
//! arithmetic of a run does not depend on the stack it is in, nor on the number of threads.
//! Dropout uses the masks the tensor path uses ([`RunMasks::draw`], each run's own generator
//! at the step), drawn for a wave of runs at a time.

pub mod block;
pub mod ops;

use super::{Position, RunMasks, Transformer};
use crate::config::Loss;
use crate::cpu::pool::{self, Pooled};
use crate::dispatch_real;
use crate::kernels::cpu_view;
use crate::kernels::loss::N_STATS;
use crate::models::DropoutDraw;
use anyhow::{bail, ensure, Result};
use block::{BlockMasks, Buffers, Net};
use candle_core::{Device, Tensor};
use ops::RopeTable;
use rayon::prelude::*;

/// Rows of one task: the unit of parallelism, and of the partial gradient sums.
pub const CHUNK_ROWS: usize = 512;
/// Positions (rows × T) carried through the transformer at once: their activations stay in cache.
pub const BLOCK_POSITIONS: usize = 256;
/// Runs whose chunks are in flight at once: bounds the partial gradients' and masks' memory.
pub const RUNS_PER_WAVE: usize = 4;

/// Rows of a block for rows of `seq_len` tokens.
pub fn block_rows(seq_len: usize) -> usize {
    (BLOCK_POSITIONS / seq_len).max(1)
}

/// Loss statistics `[R, 4]` of the current weights on tokens `[R, N, T]` / `labels` `[R, N]`,
/// and the gradient of every parameter in parameter order (see
/// `crate::models::Model::train_pass`). `dropout`: where a model with dropout draws its masks.
pub fn train_pass(model: &Transformer, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool, dropout: Option<&DropoutDraw>) -> Result<(Tensor, Vec<Tensor>)> {
    let (stats, grads, _) = pass(model, rows, labels, loss, loss_bf16, true, dropout, false)?;
    Ok((stats, grads))
}

/// Loss statistics `[R, 4]` of the current weights on `rows` / `labels` (no backward pass, no
/// dropout).
pub fn evaluate(model: &Transformer, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool) -> Result<Tensor> {
    Ok(pass(model, rows, labels, loss, loss_bf16, false, None, false)?.0)
}

/// A training pass ([`train_pass`]) or, without `training`, an evaluation (no gradients, no
/// dropout); with `keep_logits`, also the logits `[R, N, C]` it computes on the way.
#[allow(clippy::too_many_arguments)]
pub fn pass(model: &Transformer, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool, training: bool, dropout: Option<&DropoutDraw>, keep_logits: bool) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
    dispatch_real!(model.params[0].value, run_pass(model, rows, labels, loss, loss_bf16, training, dropout, keep_logits))
}

/// Statistics `[R, 4]` and, when `training`, every parameter's summed gradient `[R, ...]`; with
/// `keep_logits`, the logits `[R, N, C]`.
#[allow(clippy::too_many_arguments)]
fn run_pass<T: Pooled>(model: &Transformer, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool, training: bool, dropout: Option<&DropoutDraw>, keep_logits: bool) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
    let arch = &model.arch;
    let (rows, labels) = (rows.contiguous()?, labels.contiguous()?);
    let (runs, n, t) = rows.dims3()?;
    ensure!(runs == model.runs(), "tokens for {runs} runs, the stack has {}", model.runs());
    ensure!(t == arch.seq_len, "rows of {t} tokens, the transformer reads {}", arch.seq_len);
    if n == 0 {
        bail!("a pass over no rows");
    }
    let values = model.params.iter().map(|p| Ok(p.value.contiguous()?)).collect::<Result<Vec<_>>>()?;
    let views = values.iter().map(cpu_view).collect::<Result<Vec<_>>>()?;
    let params = views.iter().map(|v| v.slice::<T>()).collect::<Result<Vec<_>>>()?;
    let (token_view, label_view) = (cpu_view(&rows)?, cpu_view(&labels)?);
    let (tokens, labels) = (token_view.slice::<u32>()?, label_view.slice::<u32>()?);
    let rope = match arch.position {
        Position::Rope { base } => Some(RopeTable::<T>::new(base, t, arch.d_head())),
        _ => None,
    };
    let per_run: Vec<usize> = params.iter().map(|p| p.len() / runs).collect();
    let net = |run: usize| Net {
        arch,
        layout: &model.layout,
        params: params.iter().zip(&per_run).map(|(p, &len)| &p[run * len..][..len]).collect(),
        rope: rope.as_ref(),
        loss,
        loss_bf16,
    };
    let scale = T::one() / T::from(n).unwrap_or_else(T::one);
    let chunks_per_run = n.div_ceil(CHUNK_ROWS);
    let b = block_rows(t);
    let draw = dropout.filter(|_| training && arch.dropout.any());

    // The summed gradients of all runs, `[R, ...]` per parameter.
    let mut stacked: Vec<Vec<T>> = if training { per_run.iter().map(|&len| Vec::with_capacity(runs * len)).collect() } else { Vec::new() };
    let mut means = Vec::with_capacity(runs * N_STATS);
    let classes = arch.classes;
    let mut kept: Vec<T> = if keep_logits { vec![T::zero(); runs * n * classes] } else { Vec::new() }; // [R, N, C]

    // Runs a wave at a time, so that the chunks' partial gradients and the runs' masks exist
    // for one wave only.
    for wave_start in (0..runs).step_by(RUNS_PER_WAVE) {
        let wave_runs = RUNS_PER_WAVE.min(runs - wave_start);
        let masks: Vec<Option<RunMasks>> = (wave_start..wave_start + wave_runs).into_par_iter().map(|run| draw.map(|draw| RunMasks::draw(arch, &mut draw.rng(run), n))).collect();
        // One task per (run, chunk), in run-major order.
        let slots = crate::cpu::logit_slots(&mut kept, wave_start..wave_start + wave_runs, n, classes, CHUNK_ROWS, wave_runs * chunks_per_run);
        let partials: Vec<crate::cpu::Partial<T>> = slots
            .into_par_iter()
            .enumerate()
            .map(|(task, mut logits)| {
                let (run, chunk) = (wave_start + task / chunks_per_run, task % chunks_per_run);
                let net = net(run);
                let (start, end) = (chunk * CHUNK_ROWS, ((chunk + 1) * CHUNK_ROWS).min(n));
                let shape = net.shape(b, training);
                let mut buf = Buffers::from_set(net.shape(b, training), pool::take(&shape.lengths()));
                let mut grads = training.then(|| pool::take(&per_run));
                let mut sums = [0.0; N_STATS];
                for block in (start..end).step_by(b) {
                    let here = block..(block + b).min(end);
                    let block_tokens = &tokens[(run * n + here.start) * t..(run * n + here.end) * t];
                    let block_masks: Vec<BlockMasks<T>> = match &masks[run - wave_start] {
                        Some(m) => m.layers.iter().map(|layer| BlockMasks::of(arch, layer, &here)).collect(),
                        None => vec![BlockMasks::none(); arch.layers],
                    };
                    net.forward(block_tokens, &block_masks, &mut buf, training);
                    if let Some(out) = logits.as_deref_mut() {
                        // [B, C], before the loss overwrites them.
                        let offset = (here.start - start) * classes;
                        out[offset..offset + here.len() * classes].copy_from_slice(buf.logits(here.len() * classes));
                    }
                    let block_sums = net.loss(&labels[run * n + here.start..run * n + here.end], &mut buf, training.then_some(scale));
                    sums.iter_mut().zip(block_sums).for_each(|(s, v)| *s += v);
                    if let Some(grads) = &mut grads {
                        net.backward(block_tokens, &block_masks, &mut buf, grads);
                    }
                }
                pool::give_back([buf.into_set()], usize::MAX);
                (sums, grads)
            })
            .collect();
        drop(masks);

        crate::cpu::reduce_wave(partials, chunks_per_run, n, &mut means, &mut stacked);
    }

    let stats = Tensor::from_vec(means, (runs, N_STATS), &Device::Cpu)?;
    let grads = stacked
        .into_iter()
        .zip(&model.params)
        .map(|(values, p)| Ok(Tensor::from_vec(values, p.value.shape(), &Device::Cpu)?))
        .collect::<Result<Vec<_>>>()?;
    let logits = keep_logits.then(|| Tensor::from_vec(kept, (runs, n, classes), &Device::Cpu)).transpose()?;
    Ok((stats, grads, logits))
}
