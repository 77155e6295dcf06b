//! Muon (Jordan 2024) on the hidden 2-D weights: Nesterov momentum, then the update
//! orthogonalized by a Newton–Schulz quintic, batched over the stack as `[R, m, n]`.
//! The embedding, the output layer (and a two-hot first layer) use AdamW at `muon_adam_lr`.
//!
//!   b ← μ·b + (1 − μ)·g;   u = (1 − μ)·g + μ·b;   O = NS(u);
//!   p ← p·(1 − lr·wd) − lr·√max(1, fan_out/fan_in)·O

use super::{adamw::AdamW, load_optional, optional_state, select_state, Optimizer, RunHyper};
use crate::cpu::matmul::{matmul, Layout};
use crate::kernels::Real;
use crate::models::Model;
use crate::run_axis::per_run;
use crate::state::{State, StateDict};
use anyhow::Result;
use candle_core::{Tensor, D};
use rayon::prelude::*;

/// The quintic's coefficients (a, b, c).
pub const NS_COEFFICIENTS: (f64, f64, f64) = (3.4445, -4.7750, 2.0315);

/// An odd-polynomial iteration X ← a·X + (b·A + c·A²)·X with A = X·Xᵀ, on X/(‖X‖_F + eps):
/// Muon's Newton–Schulz quintic and Polar Express are both one of these.
#[derive(Clone, Debug)]
pub struct Iteration {
    /// (a, b, c) of each step, in order.
    pub coefficients: Vec<(f64, f64, f64)>,
    /// Added to the Frobenius norm before dividing by it.
    pub eps: f64,
    /// Round every op's result to bf16 (PyTorch's ops on bf16 tensors, f32 accumulation).
    pub bf16: bool,
}

impl Iteration {
    /// Muon's: `steps` of the quintic, eps 1e-7, in the input's precision.
    pub fn newton_schulz(steps: usize) -> Iteration {
        Iteration { coefficients: vec![NS_COEFFICIENTS; steps], eps: 1e-7, bf16: false }
    }
}

/// Newton–Schulz orthogonalization of each matrix of `x` `[R, m, n]`, on X/‖X‖_F, transposed
/// so that rows ≤ cols. The singular values of the result lie near 1 (roughly 0.7–1.2).
pub fn newton_schulz(x: &Tensor, steps: usize) -> Result<Tensor> {
    orthogonalize(x, &Iteration::newton_schulz(steps))
}

/// [`newton_schulz`] with batched candle ops (any device).
pub fn newton_schulz_tensors(x: &Tensor, steps: usize) -> Result<Tensor> {
    orthogonalize_tensors(x, &Iteration::newton_schulz(steps))
}

/// `iteration` on each matrix of `x` `[R, m, n]`, transposed so that rows ≤ cols. On the CPU
/// each run's matrix is one task with single-threaded GEMMs (as in the CPU pass), elsewhere
/// the batched tensor ops of [`orthogonalize_tensors`].
pub fn orthogonalize(x: &Tensor, iteration: &Iteration) -> Result<Tensor> {
    if crate::kernels::use_cpu_kernel(x) {
        crate::dispatch_real!(x, orthogonalize_cpu(x, iteration))
    } else {
        orthogonalize_tensors(x, iteration)
    }
}

fn orthogonalize_cpu<T: Real + 'static>(x: &Tensor, iteration: &Iteration) -> Result<Tensor> {
    let (runs, m, n) = x.dims3()?;
    let transposed = m > n;
    let (rows, cols) = (m.min(n), m.max(n));
    let x = if transposed { x.t()?.contiguous()? } else { x.contiguous()? }; // [R, rows, cols]
    let input: Vec<T> = x.flatten_all()?.to_vec1()?;
    let real = |v: f64| T::from(v).unwrap_or_else(T::nan);
    let coefficients: Vec<(T, T, T)> =
        iteration.coefficients.iter().map(|&(a, b, c)| (real(a), real(b), real(c))).collect();
    let epsilon = T::from(iteration.eps).unwrap_or_else(T::zero);
    let round = |v: T| if iteration.bf16 { v.round_bf16() } else { v };
    let round_all = |values: &mut [T]| values.iter_mut().for_each(|v| *v = round(*v));
    let mut output = vec![T::zero(); input.len()];
    output.par_chunks_mut(rows * cols).zip(input.par_chunks(rows * cols)).for_each(|(out, one_run)| {
        let one_run: Vec<T> = one_run.iter().map(|&v| round(v)).collect();
        let norm = round(round(one_run.iter().map(|&v| v * v).sum::<T>().sqrt()) + epsilon);
        let mut x: Vec<T> = one_run.iter().map(|&v| round(v / norm)).collect(); // [rows, cols]
        let (mut gram, mut poly, mut next) =
            (vec![T::zero(); rows * rows], vec![T::zero(); rows * rows], vec![T::zero(); rows * cols]);
        for &(a, b, c) in &coefficients {
            matmul(&mut gram, &x, Layout::Plain, &x, Layout::Transposed, (rows, cols, rows), false); // A = X·Xᵀ
            round_all(&mut gram);
            matmul(&mut poly, &gram, Layout::Plain, &gram, Layout::Plain, (rows, rows, rows), false); // A²
                                                                                                      // B = b·A + c·A²
            poly.iter_mut().zip(&gram).for_each(|(p, &g)| *p = round(round(b * g) + round(c * round(*p))));
            matmul(&mut next, &poly, Layout::Plain, &x, Layout::Plain, (rows, rows, cols), false); // B·X
            next.iter_mut().zip(&x).for_each(|(y, &v)| *y = round(round(a * v) + round(*y))); // X = a·X + B·X
            std::mem::swap(&mut x, &mut next);
        }
        out.copy_from_slice(&x);
    });
    let result = Tensor::from_vec(output, (runs, rows, cols), x.device())?;
    Ok(if transposed { result.t()?.contiguous()? } else { result })
}

/// [`orthogonalize`] with batched candle ops (any device).
pub fn orthogonalize_tensors(x: &Tensor, iteration: &Iteration) -> Result<Tensor> {
    let round = |t: Tensor| if iteration.bf16 { crate::kernels::round::round_bf16(&t) } else { Ok(t) };
    let (_, m, n) = x.dims3()?;
    let transposed = m > n;
    let mut x = round(if transposed { x.t()?.contiguous()? } else { x.contiguous()? })?;
    let norm =
        // [R, 1, 1]
        round((round(x.sqr()?.flatten_from(1)?.sum_keepdim(D::Minus1)?.sqrt()?.unsqueeze(2)?)? + iteration.eps)?)?;
    x = round(x.broadcast_div(&norm)?)?;
    for &(a, b, c) in &iteration.coefficients {
        let gram = round(x.matmul(&x.t()?)?)?; // A = X·Xᵀ [R, rows, rows]
        let poly = round((round((&gram * b)?)? + round((round(gram.matmul(&gram)?)? * c)?)?)?)?; // B = b·A + c·A²
        x = round((round((&x * a)?)? + round(poly.matmul(&x)?)?)?)?; // X = a·X + B·X
    }
    Ok(if transposed { x.t()?.contiguous()? } else { x })
}

/// The new momentum buffer b' = μ·b + (1 − μ)·g and the Nesterov direction
/// u = (1 − μ)·g + μ·b', with μ per run: one pass over memory on the CPU.
pub fn momentum(buffer: &Tensor, grad: &Tensor, mu: &[f64]) -> Result<(Tensor, Tensor)> {
    if !crate::kernels::use_cpu_kernel(buffer) {
        let mu_t = per_run(mu, buffer)?;
        let one_minus_mu = per_run(&mu.iter().map(|m| 1.0 - m).collect::<Vec<_>>(), buffer)?;
        let new_buffer = (buffer.broadcast_mul(&mu_t)? + grad.broadcast_mul(&one_minus_mu)?)?;
        let nesterov = (grad.broadcast_mul(&one_minus_mu)? + new_buffer.broadcast_mul(&mu_t)?)?;
        return Ok((new_buffer, nesterov));
    }
    let (buffer, grad) = (buffer.contiguous()?, grad.contiguous()?);
    crate::dispatch_real!(buffer, momentum_cpu(&buffer, &grad, mu))
}

fn momentum_cpu<T: Real>(buffer: &Tensor, grad: &Tensor, mu: &[f64]) -> Result<(Tensor, Tensor)> {
    let per_run_len = buffer.elem_count() / mu.len().max(1);
    let (b_view, g_view) = (crate::kernels::cpu_view(buffer)?, crate::kernels::cpu_view(grad)?);
    let (b_in, g_in) = (b_view.slice::<T>()?, g_view.slice::<T>()?);
    let (mut new_buffer, mut nesterov) = (vec![T::zero(); b_in.len()], vec![T::zero(); b_in.len()]);
    new_buffer
        .par_chunks_mut(per_run_len)
        .zip(nesterov.par_chunks_mut(per_run_len))
        .zip(b_in.par_chunks(per_run_len).zip(g_in.par_chunks(per_run_len)))
        .zip(mu.par_iter())
        .for_each(|(((b_out, u_out), (b, g)), &mu)| {
            let mu = T::from(mu).unwrap_or_else(T::nan);
            let keep = T::one() - mu;
            for (((b_out, u_out), &b), &g) in b_out.iter_mut().zip(u_out.iter_mut()).zip(b).zip(g) {
                *b_out = mu * b + keep * g;
                *u_out = keep * g + mu * *b_out;
            }
        });
    let shape = buffer.shape();
    Ok((Tensor::from_vec(new_buffer, shape, buffer.device())?, Tensor::from_vec(nesterov, shape, buffer.device())?))
}

/// p·decay − step·o with decay and step per run: one pass over memory on the CPU.
pub fn decay_and_step(p: &Tensor, o: &Tensor, decay: &[f64], step: &[f64]) -> Result<Tensor> {
    if !crate::kernels::use_cpu_kernel(p) {
        return Ok((p.broadcast_mul(&per_run(decay, p)?)? - o.broadcast_mul(&per_run(step, p)?)?)?);
    }
    let (p, o) = (p.contiguous()?, o.contiguous()?);
    crate::dispatch_real!(p, decay_and_step_cpu(&p, &o, decay, step))
}

fn decay_and_step_cpu<T: Real>(p: &Tensor, o: &Tensor, decay: &[f64], step: &[f64]) -> Result<Tensor> {
    let per_run_len = p.elem_count() / decay.len().max(1);
    let (p_view, o_view) = (crate::kernels::cpu_view(p)?, crate::kernels::cpu_view(o)?);
    let (p_in, o_in) = (p_view.slice::<T>()?, o_view.slice::<T>()?);
    let mut out = vec![T::zero(); p_in.len()];
    out.par_chunks_mut(per_run_len)
        .zip(p_in.par_chunks(per_run_len).zip(o_in.par_chunks(per_run_len)))
        .zip(decay.par_iter().zip(step))
        .for_each(|((out, (p, o)), (&decay, &step))| {
            let (decay, step) = (T::from(decay).unwrap_or_else(T::nan), T::from(step).unwrap_or_else(T::nan));
            for ((y, &p), &o) in out.iter_mut().zip(p).zip(o) {
                *y = p * decay - step * o;
            }
        });
    Ok(Tensor::from_vec(out, p.shape(), p.device())?)
}

pub struct Muon {
    hyper: RunHyper,
    ns_steps: usize,
    buffers: Vec<Option<Tensor>>,
    adamw: AdamW,
}

impl Muon {
    pub fn new(model: &Model, hyper: &RunHyper, ns_steps: usize) -> Result<Muon> {
        let is_muon: Vec<bool> = model.params.iter().map(|p| p.group.muon).collect();
        let adamw = AdamW::for_params(model, hyper, &hyper.muon_adam_lr, |i| !is_muon[i])?;
        let buffers = model
            .params
            .iter()
            .zip(&is_muon)
            .map(|(p, &muon)| if muon { Ok(Some(p.value.zeros_like()?)) } else { Ok(None) })
            .collect::<Result<_>>()?;
        Ok(Muon { hyper: hyper.clone(), ns_steps, buffers, adamw })
    }
}

impl Optimizer for Muon {
    fn step(&mut self, model: &mut Model, grads: &[Tensor], lr_scale: &[f64]) -> Result<()> {
        self.adamw.step(model, grads, lr_scale)?;
        let lr = self.hyper.scaled_lr(lr_scale);
        let storage = model.storage;
        for (i, (param, grad)) in model.params.iter_mut().zip(grads).enumerate() {
            let Some(buffer) = &self.buffers[i] else { continue };
            let p = &param.value;
            let (new_buffer, nesterov) = momentum(buffer, grad, &self.hyper.muon_momentum)?;
            let (_, fan_in, fan_out) = p.dims3()?;
            let scale = (fan_out as f64 / fan_in as f64).max(1.0).sqrt();
            let ortho = newton_schulz(&nesterov, self.ns_steps)?;
            let decay: Vec<f64> =
                self.hyper.decay_for(param.group).iter().zip(&lr).map(|(wd, lr)| 1.0 - lr * wd).collect();
            let step: Vec<f64> = lr.iter().map(|lr| lr * scale).collect();
            param.value = storage.state(decay_and_step(p, &ortho, &decay, &step)?)?;
            self.buffers[i] = Some(storage.state(new_buffer)?);
        }
        Ok(())
    }

    fn state(&self) -> Result<State> {
        let mut out = self.adamw.state_with_prefix("optimizer.adamw.")?;
        out.extend(optional_state("optimizer.muon.buffer.", &self.buffers));
        Ok(out)
    }

    fn load_state(&mut self, model: &Model, state: &StateDict) -> Result<()> {
        self.adamw.load_state_with_prefix("optimizer.adamw.", model, state)?;
        load_optional("optimizer.muon.buffer.", &mut self.buffers, model, false, state)
    }

    fn keep_runs(&mut self, positions: &[usize], index: &Tensor) -> Result<()> {
        self.hyper = self.hyper.select(positions);
        self.adamw.keep_runs(positions, index)?;
        select_state(&mut self.buffers, index)
    }
}
