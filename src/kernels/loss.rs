//! Cross-entropy losses per row, forward statistics and gradient side by side.
//!
//! softmax:   loss = (max − x_y) + ln Σ exp(x − max)
//! stablemax: s(x) = x + 1 (x ≥ 0), 1 / (1 − x + 1e-30) (x < 0); loss = −ln(s_y / Σ s)
//!
//! Each run's loss is the mean over its own rows, so the gradient of a row is divided by N,
//! the run's row count, and never by the stack's.

use super::{cpu_slice, expect_rank3, use_cpu_kernel, Real};
use crate::config::Loss;
use crate::dispatch_real;
use anyhow::Result;
use candle_core::{DType, Tensor, D};
use rayon::prelude::*;

/// Columns of the per-run statistics returned by [`stats`].
pub const STAT_LOSS: usize = 0;
pub const STAT_ACC: usize = 1;
pub const STAT_COLLAPSE: usize = 2;
pub const STAT_ZERO_TERMS: usize = 3;
pub const N_STATS: usize = 4;

const STABLEMAX_EPS: f64 = 1e-30;

fn stablemax_s<T: Real>(x: T) -> T {
    if x >= T::zero() {
        x + T::one()
    } else {
        T::one() / (T::one() - x + T::from(STABLEMAX_EPS).unwrap_or_else(T::zero))
    }
}

/// `x` rounded to bf16 when the loss is kept in bf16, else itself.
fn loss_dtype<T: Real>(x: T, bf16: bool) -> T {
    if bf16 {
        crate::kernels::round::to_bf16(x)
    } else {
        x
    }
}

/// Row statistics: (loss, correct, softmax collapsed, loss exactly zero), in the loss dtype:
/// the row's dtype, or bf16 (sums accumulated in f32 and rounded, as bf16 reductions do).
fn row_stats<T: Real>(loss: Loss, x: &[T], label: usize, bf16: bool) -> [f64; N_STATS] {
    let (mut max, mut argmax) = (x[0], 0);
    for (j, &v) in x.iter().enumerate().skip(1) {
        if v > max {
            max = v;
            argmax = j;
        }
    }
    let exp_sum: T = loss_dtype(x.iter().map(|&v| (v - max).exp()).sum(), bf16);
    let row_loss = loss_dtype(
        match loss {
            Loss::Softmax => (max - x[label]) + exp_sum.ln(),
            Loss::StableMax => {
                let total: T = x.iter().map(|&v| stablemax_s(v)).sum();
                -(stablemax_s(x[label]) / total).ln()
            }
        },
        bf16,
    );
    let as_f64 = |b: bool| if b { 1.0 } else { 0.0 };
    [
        row_loss.to_f64(),
        as_f64(argmax == label && max == max), // a NaN row is never correct
        as_f64(exp_sum == T::one()),
        as_f64(row_loss == T::zero()),
    ]
}

/// d(row loss)/dx for one row, scaled by `scale` (1/N).
fn row_grad<T: Real>(loss: Loss, x: &[T], label: usize, scale: T, out: &mut [T]) {
    match loss {
        Loss::Softmax => {
            let max = x.iter().copied().fold(T::neg_infinity(), num_traits::Float::max);
            let mut sum = T::zero();
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (v - max).exp();
                sum = sum + *o;
            }
            let inv = scale / sum;
            for o in out.iter_mut() {
                *o = *o * inv;
            }
        }
        Loss::StableMax => {
            let total: T = x.iter().map(|&v| stablemax_s(v)).sum();
            for (o, &v) in out.iter_mut().zip(x) {
                let s = stablemax_s(v);
                let ds = if v >= T::zero() { T::one() } else { s * s };
                *o = scale * ds / total;
            }
            let s_label = stablemax_s(x[label]);
            let ds_label = if x[label] >= T::zero() { T::one() } else { s_label * s_label };
            out[label] = out[label] - scale * ds_label / s_label;
            return;
        }
    }
    out[label] = out[label] - scale;
}

/// Per-run means of the row statistics: logits `[R, N, C]`, labels `[R, N]` → `[R, 4]` f64.
/// `bf16`: the loss and the softmax sum are kept in bf16.
pub fn stats(loss: Loss, logits: &Tensor, labels: &Tensor, bf16: bool) -> Result<Tensor> {
    if !use_cpu_kernel(logits) {
        return reference::stats(loss, logits, labels, bf16);
    }
    let logits = logits.contiguous()?;
    dispatch_real!(logits, stats_cpu(loss, &logits, labels, bf16))
}

fn stats_cpu<T: Real>(loss: Loss, logits: &Tensor, labels: &Tensor, bf16: bool) -> Result<Tensor> {
    let (r, n, c) = expect_rank3(logits, "logits")?;
    let mut rows = vec![[0f64; N_STATS]; r * n];
    cpu_slice::<T, _>(logits, |x| {
        cpu_slice::<u32, _>(labels, |labels| {
            rows.par_iter_mut().enumerate().for_each(|(row, out)| {
                *out = row_stats(loss, &x[row * c..][..c], labels[row] as usize, bf16);
            })
        })
    })?;
    // Summed in row order, per run, so the result does not depend on the stack.
    let mut means = Vec::with_capacity(r * N_STATS);
    for run in rows.chunks(n) {
        for k in 0..N_STATS {
            means.push(run.iter().map(|row| row[k]).sum::<f64>() / n as f64);
        }
    }
    Ok(Tensor::from_vec(means, (r, N_STATS), logits.device())?)
}

/// Gradient of Σ_runs mean_rows(loss) with respect to the logits: `[R, N, C]`.
pub fn grad(loss: Loss, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernel(logits) {
        return reference::grad(loss, logits, labels);
    }
    let logits = logits.contiguous()?;
    dispatch_real!(logits, grad_cpu(loss, &logits, labels))
}

fn grad_cpu<T: Real>(loss: Loss, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (r, n, c) = expect_rank3(logits, "logits")?;
    let scale = T::one() / T::from(n).unwrap_or_else(T::one);
    let mut out = vec![T::zero(); r * n * c];
    cpu_slice::<T, _>(logits, |x| {
        cpu_slice::<u32, _>(labels, |labels| {
            out.par_chunks_mut(c).enumerate().for_each(|(row, dst)| {
                row_grad(loss, &x[row * c..][..c], labels[row] as usize, scale, dst);
            })
        })
    })?;
    Ok(Tensor::from_vec(out, (r, n, c), logits.device())?)
}

pub mod reference {
    use super::*;

    fn one_hot(labels: &Tensor, c: usize, dtype: DType) -> Result<Tensor> {
        let classes = Tensor::arange(0u32, c as u32, labels.device())?;
        Ok(labels.unsqueeze(2)?.broadcast_eq(&classes.reshape((1, 1, c))?)?.to_dtype(dtype)?)
    }

    /// s(x) and s'(x) of StableMax.
    fn stablemax(x: &Tensor) -> Result<(Tensor, Tensor)> {
        let positive = x.ge(0.0)?;
        let negative_branch = ((1.0 + STABLEMAX_EPS) - x)?.recip()?;
        let s = positive.where_cond(&(x + 1.0)?, &negative_branch)?;
        let ds = positive.where_cond(&x.ones_like()?, &s.sqr()?)?;
        Ok((s, ds))
    }

    pub fn stats(loss: Loss, logits: &Tensor, labels: &Tensor, bf16: bool) -> Result<Tensor> {
        let in_loss_dtype = |t: Tensor| if bf16 { crate::kernels::round::reference(&t) } else { Ok(t) };
        let max = logits.max_keepdim(D::Minus1)?;
        let exp_sum = in_loss_dtype(logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?)?;
        let label_logit = logits.gather(&labels.unsqueeze(2)?.contiguous()?, 2)?;
        let row_loss = in_loss_dtype(match loss {
            Loss::Softmax => ((max - &label_logit)? + exp_sum.log()?)?,
            Loss::StableMax => {
                let (s, _) = stablemax(logits)?;
                let total = s.sum_keepdim(D::Minus1)?;
                let s_label = s.gather(&labels.unsqueeze(2)?.contiguous()?, 2)?;
                (s_label / total)?.log()?.neg()?
            }
        })?;
        let correct = logits.argmax_keepdim(D::Minus1)?.eq(&labels.unsqueeze(2)?)?;
        let columns = [
            row_loss.to_dtype(DType::F64)?,
            correct.to_dtype(DType::F64)?,
            exp_sum.eq(1.0)?.to_dtype(DType::F64)?,
            row_loss.eq(0.0)?.to_dtype(DType::F64)?,
        ];
        Ok(Tensor::cat(&columns, 2)?.mean(1)?)
    }

    pub fn grad(loss: Loss, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let (_, n, c) = expect_rank3(logits, "logits")?;
        let one_hot = one_hot(labels, c, logits.dtype())?;
        let g = match loss {
            Loss::Softmax => candle_core::Tensor::sub(&softmax(logits)?, &one_hot)?,
            Loss::StableMax => {
                let (s, ds) = stablemax(logits)?;
                let total = s.sum_keepdim(D::Minus1)?;
                let label_term = (&ds / &s)?.mul(&one_hot)?;
                (ds.broadcast_div(&total)? - label_term)?
            }
        };
        Ok((g / n as f64)?)
    }

    fn softmax(x: &Tensor) -> Result<Tensor> {
        let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
        Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
    }
}
