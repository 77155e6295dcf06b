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
//! Dropout uses the masks the tensor path uses ([`RunMasks::draw`], each run's own key at the
//! step), drawn for a wave of runs at a time.

pub mod block;
pub mod ops;

use super::{Position, RunMasks, Transformer};
use crate::cpu::pool::{self, Pooled};
use crate::cpu::{drive, Chunk, PassShape};
use crate::dispatch_real;
use crate::kernels::cpu_view;
use crate::kernels::loss::Loss;
use crate::kernels::loss::N_STATS;
use crate::models::{DropoutDraw, PassOptions};
use anyhow::{bail, ensure, Result};
use block::{BlockMasks, Buffers, Net};
use candle_core::{Device, Tensor};
use ops::RopeTable;
use rayon::prelude::*;
use std::ops::Range;

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
pub fn train_pass(
    model: &Transformer,
    rows: &Tensor,
    labels: &Tensor,
    loss: Loss,
    loss_bf16: bool,
    dropout: Option<&DropoutDraw>,
) -> Result<(Tensor, Vec<Tensor>)> {
    let options = PassOptions { dropout, ..PassOptions::new(loss, loss_bf16, 1) };
    let (stats, grads, _) = pass(model, rows, labels, &options, true)?;
    Ok((stats, grads))
}

/// Loss statistics `[R, 4]` of the current weights on `rows` / `labels` (no backward pass, no
/// dropout).
pub fn evaluate(model: &Transformer, rows: &Tensor, labels: &Tensor, loss: Loss, loss_bf16: bool) -> Result<Tensor> {
    Ok(pass(model, rows, labels, &PassOptions::new(loss, loss_bf16, 1), false)?.0)
}

/// A training pass ([`train_pass`]) or, without `training`, an evaluation (no gradients, and no
/// dropout whatever `options.dropout` is); with `options.keep_logits`, also the logits
/// `[R, N, C]` it computes on the way. The CPU pass takes one run per task whatever
/// `options.group` is.
pub fn pass(
    model: &Transformer,
    rows: &Tensor,
    labels: &Tensor,
    options: &PassOptions,
    training: bool,
) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
    dispatch_real!(model.params[0].value, run_pass(model, rows, labels, options, training))
}

/// Statistics `[R, 4]` and, when `training`, every parameter's summed gradient `[R, ...]`; with
/// `keep_logits`, the logits `[R, N, C]`.
fn run_pass<T: Pooled>(
    model: &Transformer,
    rows: &Tensor,
    labels: &Tensor,
    options: &PassOptions,
    training: bool,
) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
    let PassOptions { loss, loss_bf16, dropout, keep_logits, .. } = *options;
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
    let b = block_rows(t);
    // Each run's dropout at this step (none to evaluate, or without dropout).
    let run_dropout = match dropout.filter(|_| training && arch.dropout.any()) {
        Some(draw) => Some((0..runs).map(|run| draw.run(run)).collect::<Result<Vec<_>>>()?),
        None => None,
    };
    let pass = PassShape {
        runs,
        rows: n,
        chunk_rows: CHUNK_ROWS,
        runs_per_wave: RUNS_PER_WAVE,
        grad_lengths: training.then(|| per_run.clone()),
        kept_per_row: if keep_logits { arch.classes } else { 0 },
    };
    // The first run of a wave, and its runs' dropout masks.
    type WaveMasks = (usize, Vec<Option<RunMasks>>);
    // A wave's runs draw their dropout masks together, so that they exist for one wave only.
    let wave_masks = |wave: Range<usize>| -> WaveMasks {
        let start = wave.start;
        let masks = wave.into_par_iter().map(|run| run_dropout.as_ref().map(|all| RunMasks::draw(arch, &all[run], n)));
        (start, masks.collect())
    };
    let classes = arch.classes;
    let chunk_pass = |(wave_start, masks): &WaveMasks, chunk: Chunk<'_, T>| {
        let Chunk { run, rows: chunk, mut grads, mut kept } = chunk;
        let net = net(run);
        let shape = net.shape(b, training);
        let mut buf = Buffers::from_set(net.shape(b, training), pool::take(&shape.lengths()));
        let mut sums = [0.0; N_STATS];
        for block in chunk.clone().step_by(b) {
            let here = block..(block + b).min(chunk.end);
            let block_tokens = &tokens[(run * n + here.start) * t..(run * n + here.end) * t];
            let block_masks: Vec<BlockMasks<T>> = match &masks[run - wave_start] {
                Some(m) => m.layers.iter().map(|layer| BlockMasks::of(arch, layer, &here)).collect(),
                None => vec![BlockMasks::none(); arch.layers],
            };
            net.forward(block_tokens, &block_masks, &mut buf, training);
            if let Some(out) = kept.as_deref_mut() {
                // [B, C], before the loss overwrites them.
                let (offset, len) = ((here.start - chunk.start) * classes, here.len() * classes);
                out[offset..offset + len].copy_from_slice(buf.logits(len));
            }
            let block_sums =
                net.loss(&labels[run * n + here.start..run * n + here.end], &mut buf, training.then_some(scale));
            sums.iter_mut().zip(block_sums).for_each(|(s, v)| *s += v);
            if let Some(grads) = grads.as_deref_mut() {
                net.backward(block_tokens, &block_masks, &mut buf, grads);
            }
        }
        pool::give_back([buf.into_set()], usize::MAX);
        sums
    };
    let sums = drive(&pass, wave_masks, chunk_pass);

    let stats = Tensor::from_vec(sums.means, (runs, N_STATS), &Device::Cpu)?;
    let grads = sums
        .grads
        .into_iter()
        .zip(model.params.iter())
        .map(|(values, p)| Ok(Tensor::from_vec(values, p.value.shape(), &Device::Cpu)?))
        .collect::<Result<Vec<_>>>()?;
    let logits = keep_logits.then(|| Tensor::from_vec(sums.kept, (runs, n, classes), &Device::Cpu)).transpose()?;
    Ok((stats, grads, logits))
}
