//! OrthoGrad (Prieto et al.): the part of the gradient orthogonal to the weights, rescaled to
//! the gradient's norm. Dot products and norms are per run, never across the stack.
//!
//!   g⊥ = g − (w·g) / (w·w + 1e-30) · w;   g⊥ ← g⊥ · ‖g‖ / (‖g⊥‖ + 1e-30)

use anyhow::Result;
use candle_core::{Tensor, D};

/// Project `grad` `[R, ...]` for the runs where `mask[r]` holds; other runs keep their gradient.
pub fn orthogonal_grad(weight: &Tensor, grad: &Tensor, mask: &[bool]) -> Result<Tensor> {
    if !mask.iter().any(|&m| m) {
        return Ok(grad.clone());
    }
    let w = weight.flatten_from(1)?; // [R, K]
    let g = grad.flatten_from(1)?; // [R, K]
    let dot = (&w * &g)?.sum_keepdim(D::Minus1)?; // [R, 1]
    let w_sq = w.sqr()?.sum_keepdim(D::Minus1)?;
    let projected = (&g - w.broadcast_mul(&(dot / (w_sq + 1e-30)?)?)?)?;
    let g_norm = g.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let p_norm = projected.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    let rescaled = projected.broadcast_mul(&(g_norm / (p_norm + 1e-30)?)?)?;
    let keep: Vec<u8> = mask.iter().map(|&m| u8::from(m)).collect();
    let keep = Tensor::from_vec(keep, (mask.len(), 1), grad.device())?.broadcast_as(g.shape())?;
    Ok(keep.where_cond(&rescaled, &g)?.reshape(grad.shape())?)
}
