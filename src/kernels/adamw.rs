//! The AdamW update of one stacked parameter `[R, ...]` with per-run hyperparameters,
//! in torch.optim.AdamW's order of operations:
//!
//!   p ← p·(1 − lr·wd);  m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
//!   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)

use super::{cpu_slice, use_cpu_kernel, Real};
use crate::dispatch_real;
use anyhow::Result;
use candle_core::Tensor;
use rayon::prelude::*;

/// Per-run AdamW hyperparameters for one parameter group (length R each).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamHyper {
    pub lr: Vec<f64>,
    pub weight_decay: Vec<f64>,
    pub beta1: Vec<f64>,
    pub beta2: Vec<f64>,
    pub eps: Vec<f64>,
}

impl AdamHyper {
    /// The hyperparameters of the runs at `positions`.
    pub fn select(&self, positions: &[usize]) -> AdamHyper {
        let pick = |v: &[f64]| crate::run_axis::pick_runs(v, positions);
        AdamHyper {
            lr: pick(&self.lr),
            weight_decay: pick(&self.weight_decay),
            beta1: pick(&self.beta1),
            beta2: pick(&self.beta2),
            eps: pick(&self.eps),
        }
    }
}

/// The per-run scalars of step `t` (1-based): (decay factor, step size, √(1−β2ᵗ)).
fn step_scalars(h: &AdamHyper, run: usize, t: usize) -> (f64, f64, f64) {
    let decay = 1.0 - h.lr[run] * h.weight_decay[run];
    let step_size = h.lr[run] / (1.0 - h.beta1[run].powi(t as i32));
    let bias2_sqrt = (1.0 - h.beta2[run].powi(t as i32)).sqrt();
    (decay, step_size, bias2_sqrt)
}

/// One AdamW step: returns the new (param, m, v). With `bf16_state` the moments are stored in
/// bf16, so the update reads them rounded, as a bf16 model's optimizer does; the caller rounds
/// the returned tensors.
pub fn step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    h: &AdamHyper,
    t: usize,
    bf16_state: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    if !use_cpu_kernel(param) {
        return reference::step(param, grad, m, v, h, t, bf16_state);
    }
    let grad = grad.contiguous()?;
    dispatch_real!(param, step_cpu(param, &grad, m, v, h, t, bf16_state))
}

fn step_cpu<T: Real>(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    h: &AdamHyper,
    t: usize,
    bf16_state: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let stored = |x: T| if bf16_state { x.round_bf16() } else { x };
    let runs = param.dim(0)?;
    let per_run = param.elem_count() / runs;
    let (mut p_out, mut m_out, mut v_out) =
        (vec![T::zero(); param.elem_count()], vec![T::zero(); param.elem_count()], vec![T::zero(); param.elem_count()]);
    let cast = |x: f64| T::from(x).unwrap_or_else(T::nan);
    cpu_slice::<T, _>(param, |p_in| {
        cpu_slice::<T, _>(grad, |g_in| {
            cpu_slice::<T, _>(m, |m_in| {
                cpu_slice::<T, _>(v, |v_in| {
                    p_out
                        .par_chunks_mut(per_run)
                        .zip(m_out.par_chunks_mut(per_run))
                        .zip(v_out.par_chunks_mut(per_run))
                        .enumerate()
                        .for_each(|(run, ((p_o, m_o), v_o))| {
                            let (decay, step_size, bias2_sqrt) = step_scalars(h, run, t);
                            let (decay, step_size, bias2_sqrt) = (cast(decay), cast(step_size), cast(bias2_sqrt));
                            let (b1, b2, eps) = (cast(h.beta1[run]), cast(h.beta2[run]), cast(h.eps[run]));
                            let (one_minus_b1, one_minus_b2) = (cast(1.0 - h.beta1[run]), cast(1.0 - h.beta2[run]));
                            let range = run * per_run..(run + 1) * per_run;
                            for i in 0..per_run {
                                let j = range.start + i;
                                let g = g_in[j];
                                let m_new = stored(b1 * m_in[j] + one_minus_b1 * g);
                                let v_new = stored(b2 * v_in[j] + one_minus_b2 * g * g);
                                let denom = v_new.sqrt() / bias2_sqrt + eps;
                                p_o[i] = p_in[j] * decay - step_size * (m_new / denom);
                                m_o[i] = m_new;
                                v_o[i] = v_new;
                            }
                        })
                })
            })
        })
    })?;
    let (shape, device) = (param.shape(), param.device());
    Ok((
        Tensor::from_vec(p_out, shape, device)?,
        Tensor::from_vec(m_out, shape, device)?,
        Tensor::from_vec(v_out, shape, device)?,
    ))
}

pub mod reference {
    use super::*;
    use crate::run_axis::per_run;

    pub fn step(
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        h: &AdamHyper,
        t: usize,
        bf16_state: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let stored = |x: Tensor| if bf16_state { crate::kernels::round::reference(&x) } else { Ok(x) };
        let scalars: Vec<_> = (0..param.dim(0)?).map(|run| step_scalars(h, run, t)).collect();
        let column = |f: fn(&(f64, f64, f64)) -> f64| scalars.iter().map(f).collect::<Vec<f64>>();
        let one_minus = |values: &[f64]| values.iter().map(|b| 1.0 - b).collect::<Vec<f64>>();
        let decay = per_run(&column(|s| s.0), param)?;
        let step_size = per_run(&column(|s| s.1), param)?;
        let bias2_sqrt = per_run(&column(|s| s.2), param)?;
        let b1 = per_run(&h.beta1, param)?;
        let b2 = per_run(&h.beta2, param)?;
        let one_minus_b1 = per_run(&one_minus(&h.beta1), param)?;
        let one_minus_b2 = per_run(&one_minus(&h.beta2), param)?;
        let eps = per_run(&h.eps, param)?;

        let m_new = stored((m.broadcast_mul(&b1)? + grad.broadcast_mul(&one_minus_b1)?)?)?;
        let v_new = stored((v.broadcast_mul(&b2)? + grad.sqr()?.broadcast_mul(&one_minus_b2)?)?)?;
        let denom = v_new.sqrt()?.broadcast_div(&bias2_sqrt)?.broadcast_add(&eps)?;
        let update = (&m_new / denom)?.broadcast_mul(&step_size)?;
        let p_new = (param.broadcast_mul(&decay)? - update)?;
        Ok((p_new, m_new, v_new))
    }
}
