//! The losses (two cross-entropies and sparsemax), statistics and gradient side by side: per
//! row on slices (the CPU pass, which computes both in one pass over the row) and on whole
//! tensors with candle ops.
//!
//! softmax:   loss = (max − x_y) + ln Σ exp(x − max)
//! stablemax: s(x) = x + 1 (x ≥ 0), 1 / (1 − x + 1e-30) (x < 0); loss = −ln(s_y / Σ s)
//! sparsemax (Martins & Astudillo 2016): p = sparsemax(x) = max(x − τ, 0), τ the threshold
//!            with Σ p = 1 and support S = {j : x_j > τ};
//!            loss = −x_y + ½ Σ_{j∈S} (x_j² − τ²) + ½, gradient p − onehot(y)
//!
//! Both passes compute sparsemax on z = x − max, which changes neither p nor the loss, keeps
//! z_y and τ small, and puts τ in [−1, 0). The statistics:
//! - collapse: for softmax and stablemax, the softmax sum Σ exp(x − max) is exactly 1 (every
//!   other probability underflowed). Sparsemax's analogue: its output is exactly one-hot
//!   (support size 1), which happens exactly when the top logit wins by at least 1.
//! - zero terms: the row's loss is exactly 0; for sparsemax, when the label's logit wins by
//!   at least 1 (then p = onehot(y) and the gradient of the row is 0).
//!
//! Each run's loss is the mean over its own rows, so the gradient of a row is divided by N,
//! the run's row count, and never by the stack's.

use super::{expect_rank3, Real};
use anyhow::Result;
use candle_core::{DType, Tensor, D};

/// The loss of a run (`train.loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loss {
    Softmax,
    StableMax,
    Sparsemax,
}

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

/// One row's statistics (loss, correct, collapsed, loss exactly zero) in the loss
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
    let (row_loss, collapsed) = match loss {
        Loss::Softmax => {
            // x ← exp(x − max), kept for the gradient.
            let sum = exp_shifted(x, max);
            let exp_sum = loss_dtype(sum, bf16);
            if let Some(scale) = grad_scale {
                let inv = scale / sum;
                x.iter_mut().for_each(|v| *v *= inv);
                x[label] -= scale;
            }
            (loss_dtype((max - x_label) + exp_sum.ln(), bf16), exp_sum == T::one())
        }
        Loss::StableMax => {
            let total: T = x.iter().map(|&v| stablemax_s(v)).sum();
            let s_label = stablemax_s(x_label);
            let exp_sum: T = loss_dtype(x.iter().map(|&v| (v - max).exp_fast()).sum(), bf16);
            if let Some(scale) = grad_scale {
                for v in x.iter_mut() {
                    let ds = if *v >= T::zero() { T::one() } else { stablemax_s(*v) * stablemax_s(*v) };
                    *v = scale * ds / total;
                }
                let ds_label = if x_label >= T::zero() { T::one() } else { s_label * s_label };
                x[label] -= scale * ds_label / s_label;
            }
            (loss_dtype(-(s_label / total).ln(), bf16), exp_sum == T::one())
        }
        Loss::Sparsemax => {
            let (tau, support) = sparsemax_threshold(x, max);
            // One pass writes p · scale over x and sums p_j (z_j + τ), which is z_j² − τ² on
            // the support and 0 off it.
            let scale = grad_scale.unwrap_or_else(T::one);
            let mut squares = T::zero();
            for v in x.iter_mut() {
                let z = *v - max;
                let p = if z - tau < T::zero() { T::zero() } else { z - tau }; // a NaN stays NaN
                squares += p * (z + tau);
                *v = scale * p;
            }
            if let Some(scale) = grad_scale {
                x[label] -= scale;
            }
            let half = T::from(0.5).unwrap_or_else(T::zero);
            let row_loss = loss_dtype(half * loss_dtype(squares, bf16) - (x_label - max) + half, bf16);
            (row_loss, support == 1) // exactly one-hot: sparsemax's collapse (see the module doc)
        }
    };
    let as_f64 = |b: bool| if b { 1.0 } else { 0.0 };
    [
        row_loss.to_f64(),
        as_f64(argmax == label && !row_loss.is_nan()), // a row with a NaN is never correct
        as_f64(collapsed),
        as_f64(row_loss == T::zero()),
    ]
}

/// Sparsemax's τ of z = x − max, and its support size |S|, without sorting and without a
/// buffer (Michelot's fixed point): from τ = −1, a lower bound, the support {z > τ} only
/// shrinks and τ = (Σ_S z − 1)/|S| only grows, until the support stays the same: at most C
/// passes over the row, and a few in practice.
fn sparsemax_threshold<T: Real>(x: &[T], max: T) -> (T, usize) {
    let mut tau = -T::one();
    let mut support = usize::MAX;
    loop {
        let (mut sum, mut count) = (T::zero(), 0usize);
        for &v in x {
            if v - max > tau {
                sum += v - max;
                count += 1;
            }
        }
        // `>=` rather than `==`: should rounding ever grow the support, stop all the same.
        if count >= support {
            return (tau, support);
        }
        support = count;
        tau = (sum - T::one()) / T::from(count).unwrap_or_else(T::one);
    }
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
/// `bf16`: the loss and the sum it is made of (Σ exp, or sparsemax's Σ p(z + τ)) are kept in bf16.
pub fn stats(loss: Loss, logits: &Tensor, labels: &Tensor, bf16: bool) -> Result<Tensor> {
    let in_loss_dtype = |t: Tensor| if bf16 { crate::kernels::round::reference(&t) } else { Ok(t) };
    let max = logits.max_keepdim(D::Minus1)?; // [R, N, 1]
    let exp_sum = || in_loss_dtype(logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?);
    let labels = labels.unsqueeze(2)?.contiguous()?; // [R, N, 1]
    let (row_loss, collapsed) = match loss {
        Loss::Softmax => {
            let exp_sum = exp_sum()?;
            let label_logit = logits.gather(&labels, 2)?;
            (((&max - label_logit)? + exp_sum.log()?)?, exp_sum.eq(1.0)?)
        }
        Loss::StableMax => {
            let (s, _) = stablemax(logits)?;
            let total = s.sum_keepdim(D::Minus1)?;
            let s_label = s.gather(&labels, 2)?;
            ((s_label / total)?.log()?.neg()?, exp_sum()?.eq(1.0)?)
        }
        Loss::Sparsemax => {
            let rows = sparsemax(logits, &max)?;
            // Σ_j p_j (z_j + τ) = Σ_{j∈S} (z_j² − τ²)
            let squares = in_loss_dtype(rows.p.mul(&rows.z.broadcast_add(&rows.tau)?)?.sum_keepdim(D::Minus1)?)?;
            let z_label = rows.z.gather(&labels, 2)?;
            ((((squares * 0.5)? - z_label)? + 0.5)?, rows.last.eq(0.0)?)
        }
    };
    let row_loss = in_loss_dtype(row_loss)?;
    let correct = logits.argmax_keepdim(D::Minus1)?.eq(&labels)?;
    let columns = [
        row_loss.to_dtype(DType::F64)?,
        correct.to_dtype(DType::F64)?,
        collapsed.to_dtype(DType::F64)?,
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
        Loss::Sparsemax => (sparsemax(logits, &logits.max_keepdim(D::Minus1)?)?.p - one_hot)?,
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

/// Sparsemax of logit rows, on z = x − max.
struct SparsemaxRows {
    /// x − max `[R, N, C]`.
    z: Tensor,
    /// τ of z `[R, N, 1]`.
    tau: Tensor,
    /// |S| − 1 `[R, N, 1]` u32: 0 when p is one-hot.
    last: Tensor,
    /// p = max(z − τ, 0) `[R, N, C]`.
    p: Tensor,
}

/// Sparsemax of `x` `[R, N, C]` with row maxima `max` `[R, N, 1]`, by sorting: with
/// z_(1) ≥ z_(2) ≥ … the support size is |S| = max{k : 1 + k·z_(k) > Σ_{i≤k} z_(i)} and
/// τ = (Σ_{i≤|S|} z_(i) − 1)/|S|.
fn sparsemax(x: &Tensor, max: &Tensor) -> Result<SparsemaxRows> {
    let (_, _, c) = expect_rank3(x, "logits")?;
    let z = x.broadcast_sub(max)?;
    let (sorted, _) = z.sort_last_dim(false)?; // descending
    let prefix = sorted.cumsum(D::Minus1)?; // Σ_{i≤k} z_(i)
    let positions = Tensor::arange(0u32, c as u32, x.device())?.reshape((1, 1, c))?; // k − 1
    let k = (positions.to_dtype(x.dtype())? + 1.0)?;
    let qualifies = (sorted.broadcast_mul(&k)? + 1.0)?.gt(&prefix)?; // k = 1 always does (1 > 0)
    let last = qualifies.to_dtype(DType::U32)?.broadcast_mul(&positions)?.max_keepdim(D::Minus1)?;
    let size = (last.to_dtype(x.dtype())? + 1.0)?;
    let tau = ((prefix.gather(&last, D::Minus1)? - 1.0)? / size)?;
    let shifted = z.broadcast_sub(&tau)?;
    let p = shifted.lt(0.0)?.where_cond(&shifted.zeros_like()?, &shifted)?; // a NaN stays NaN
    Ok(SparsemaxRows { z, tau, last, p })
}

fn softmax(x: &Tensor) -> Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}
