//! Cross-entropy losses, statistics and gradient side by side: per row on slices (the CPU
//! pass, which computes both in one pass over the row) and on whole tensors with candle ops.
//!
//! softmax:   loss = (max − x_y) + ln Σ exp(x − max)
//! stablemax: s(x) = x + 1 (x ≥ 0), 1 / (1 − x + 1e-30) (x < 0); loss = −ln(s_y / Σ s)
//!
//! Each run's loss is the mean over its own rows, so the gradient of a row is divided by N,
//! the run's row count, and never by the stack's.

use super::{expect_rank3, Real};
use crate::config::Loss;
use anyhow::Result;
use candle_core::{DType, Tensor, D};

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
        x.round_bf16()
    } else {
        x
    }
}

/// One row's statistics (loss, correct, softmax collapsed, loss exactly zero) in the loss
/// dtype: the row's dtype, or bf16 (sums accumulated in f32 and rounded, as bf16 reductions
/// do). With `grad_scale` = Some(1/N), `x` is overwritten with d(row loss)/dx · (1/N);
/// otherwise `x` is left holding scratch values.
pub fn row<T: Real>(loss: Loss, x: &mut [T], label: usize, bf16: bool, grad_scale: Option<T>) -> [f64; N_STATS] {
    let (mut max, mut argmax) = (x[0], 0);
    for (j, &v) in x.iter().enumerate().skip(1) {
        if v > max {
            max = v;
            argmax = j;
        }
    }
    let x_label = x[label];
    let (row_loss, exp_sum) = match loss {
        Loss::Softmax => {
            // x ← exp(x − max), kept for the gradient.
            let sum = exp_shifted(x, max);
            let exp_sum = loss_dtype(sum, bf16);
            if let Some(scale) = grad_scale {
                let inv = scale / sum;
                x.iter_mut().for_each(|v| *v = *v * inv);
                x[label] = x[label] - scale;
            }
            (loss_dtype((max - x_label) + exp_sum.ln(), bf16), exp_sum)
        }
        Loss::StableMax => {
            let total: T = x.iter().map(|&v| stablemax_s(v)).sum();
            let s_label = stablemax_s(x_label);
            let exp_sum = loss_dtype(x.iter().map(|&v| (v - max).exp_fast()).sum(), bf16);
            if let Some(scale) = grad_scale {
                for v in x.iter_mut() {
                    let ds = if *v >= T::zero() { T::one() } else { stablemax_s(*v) * stablemax_s(*v) };
                    *v = scale * ds / total;
                }
                let ds_label = if x_label >= T::zero() { T::one() } else { s_label * s_label };
                x[label] = x[label] - scale * ds_label / s_label;
            }
            (loss_dtype(-(s_label / total).ln(), bf16), exp_sum)
        }
    };
    let as_f64 = |b: bool| if b { 1.0 } else { 0.0 };
    [
        row_loss.to_f64(),
        as_f64(argmax == label && !row_loss.is_nan()), // a row with a NaN is never correct
        as_f64(exp_sum == T::one()),
        as_f64(row_loss == T::zero()),
    ]
}

crate::avx2_twin! {
    /// x ← exp(x − max) in place; returns Σ exp(x − max).
    fn exp_shifted<T>(x: &mut [T], max: T) -> T = exp_shifted_loop;
}

#[inline(always)]
fn exp_shifted_loop<T: Real>(x: &mut [T], max: T) -> T {
    for v in x.iter_mut() {
        *v = (*v - max).exp_fast();
    }
    super::sum_lanes(x)
}

/// Per-run means of the row statistics: logits `[R, N, C]`, labels `[R, N]` → `[R, 4]` f64.
/// `bf16`: the loss and the softmax sum are kept in bf16.
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

/// Gradient of Σ_runs mean_rows(loss) with respect to the logits: `[R, N, C]`.
pub fn grad(loss: Loss, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (_, n, c) = expect_rank3(logits, "logits")?;
    let one_hot = one_hot(labels, c, logits.dtype())?;
    let g = match loss {
        Loss::Softmax => Tensor::sub(&softmax(logits)?, &one_hot)?,
        Loss::StableMax => {
            let (s, ds) = stablemax(logits)?;
            let total = s.sum_keepdim(D::Minus1)?;
            let label_term = (&ds / &s)?.mul(&one_hot)?;
            (ds.broadcast_div(&total)? - label_term)?
        }
    };
    Ok((g / n as f64)?)
}

fn one_hot(labels: &Tensor, c: usize, dtype: DType) -> Result<Tensor> {
    let classes = Tensor::arange(0u32, c as u32, labels.device())?;
    Ok(labels.unsqueeze(2)?.broadcast_eq(&classes.reshape((1, 1, c))?)?.to_dtype(dtype)?)
}

/// s(x) and s'(x) of StableMax, as tensors.
fn stablemax(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let positive = x.ge(0.0)?;
    let negative_branch = ((1.0 + STABLEMAX_EPS) - x)?.recip()?;
    let s = positive.where_cond(&(x + 1.0)?, &negative_branch)?;
    let ds = positive.where_cond(&x.ones_like()?, &s.sqr()?)?;
    Ok((s, ds))
}

fn softmax(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}
