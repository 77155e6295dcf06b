//! The transformer's simple layers, forward and backward side by side: Linear, the norms, the
//! embeddings, dropout, and moving between all positions and the last ones.
//!
//! Every function works on the stack at once: a leading run axis R, and the rows of all of a
//! run's positions flattened into one axis M (M = N·T, or N·T' for the last T' positions), so
//! that a projection is one batched matmul `[R, M, in] · [R, in, out]`.

use super::{NormKind, NORM_EPS};
use crate::kernels::gather;
use anyhow::Result;
use candle_core::{Tensor, D};

/// y = x·W + b.  x `[R, M, in]`, W `[R, in, out]`, b `[R, out]` → `[R, M, out]`.
pub fn linear_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(w)?; // [R, M, out]
    Ok(match b {
        Some(b) => y.broadcast_add(&b.unsqueeze(1)?)?, // + [R, 1, out]
        None => y,
    })
}

/// Backward of [`linear_forward`]: (dx `[R, M, in]`, dW `[R, in, out]`, db `[R, out]` when
/// the layer has a bias) from dy `[R, M, out]` and the layer's input x `[R, M, in]`.
pub fn linear_backward(dy: &Tensor, x: &Tensor, w: &Tensor, bias: bool) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let dw = x.t()?.matmul(dy)?; // xᵀ·dy  [R, in, out]
    let db = if bias { Some(dy.sum(1)?) } else { None }; // Σ over rows  [R, out]
    let dx = dy.matmul(&w.t()?)?; // dy·Wᵀ  [R, M, in]
    Ok((dx, dw, db))
}

/// What a norm's backward pass needs.
pub struct NormCache {
    /// The normalized input x̂ (before gain and bias) `[R, M, d]`.
    pub xhat: Tensor,
    /// 1/√(mean square + ε) (RMSNorm) or 1/√(variance + ε) (LayerNorm) `[R, M, 1]`.
    pub inv: Tensor,
}

/// RMSNorm: y = x·s ⊙ g, s = 1/√(mean(x²) + ε); LayerNorm: y = (x − μ)·s ⊙ g + b,
/// s = 1/√(mean((x − μ)²) + ε). x `[R, M, d]`, g and b `[R, d]` → `[R, M, d]`.
pub fn norm_forward(kind: NormKind, x: &Tensor, gain: &Tensor, bias: Option<&Tensor>) -> Result<(Tensor, NormCache)> {
    let centered = match kind {
        NormKind::Layer => x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?, // x − μ  [R, M, d]
        NormKind::Rms | NormKind::None => x.clone(),
    };
    let inv = (centered.sqr()?.mean_keepdim(D::Minus1)? + NORM_EPS)?.sqrt()?.recip()?; // [R, M, 1]
    let xhat = centered.broadcast_mul(&inv)?; // [R, M, d]
    let mut y = xhat.broadcast_mul(&gain.unsqueeze(1)?)?; // ⊙ g  [R, M, d]
    if let Some(b) = bias {
        y = y.broadcast_add(&b.unsqueeze(1)?)?;
    }
    Ok((y, NormCache { xhat, inv }))
}

/// Backward of [`norm_forward`]: (dx `[R, M, d]`, dg `[R, d]`, db `[R, d]` with a bias).
/// With dx̂ = dy ⊙ g, RMSNorm's dx = s·(dx̂ − x̂·mean(dx̂ ⊙ x̂)); LayerNorm's also subtracts
/// mean(dx̂), since x̂ does not move when every input moves by the same amount.
pub fn norm_backward(
    kind: NormKind,
    dy: &Tensor,
    cache: &NormCache,
    gain: &Tensor,
    bias: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let dgain = (dy * &cache.xhat)?.sum(1)?; // Σ over rows  [R, d]
    let dbias = if bias { Some(dy.sum(1)?) } else { None }; // [R, d]
    let dxhat = dy.broadcast_mul(&gain.unsqueeze(1)?)?; // [R, M, d]
    let projection = (&dxhat * &cache.xhat)?.mean_keepdim(D::Minus1)?; // mean(dx̂ ⊙ x̂)  [R, M, 1]
    let mut inner = (&dxhat - cache.xhat.broadcast_mul(&projection)?)?; // [R, M, d]
    if kind == NormKind::Layer {
        inner = inner.broadcast_sub(&dxhat.mean_keepdim(D::Minus1)?)?;
    }
    let dx = inner.broadcast_mul(&cache.inv)?; // [R, M, d]
    Ok((dx, dgain, dbias))
}

/// Token embedding: x[r, n·T + t] = E[r, tokens[r, n, t]]. E `[R, V, d]`, tokens `[R, N, T]`
/// (u32, each < V) → `[R, N·T, d]`. A gather, never a one-hot matmul.
pub fn embedding_forward(table: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (r, n, t) = tokens.dims3()?;
    gather::gather_sum(table, &tokens.reshape((r, n * t, 1))?) // [R, N·T, d]
}

/// Backward of [`embedding_forward`]: dE `[R, V, d]`, the scatter-add of dx `[R, N·T, d]`
/// into the rows of the tokens.
pub fn embedding_backward(dx: &Tensor, tokens: &Tensor, vocab: usize) -> Result<Tensor> {
    let (r, n, t) = tokens.dims3()?;
    gather::scatter_sum(dx, &tokens.reshape((r, n * t, 1))?, vocab) // [R, V, d]
}

/// Learned positions: x[r, n, t] += P[r, t]. x `[R, N·T, d]`, P `[R, T, d]` → `[R, N·T, d]`.
pub fn position_forward(x: &Tensor, position: &Tensor, n: usize) -> Result<Tensor> {
    let (r, t, d) = position.dims3()?;
    let x = x.reshape((r, n, t, d))?.broadcast_add(&position.unsqueeze(1)?)?; // [R, N, T, d] + [R, 1, T, d]
    Ok(x.reshape((r, n * t, d))?)
}

/// Backward of [`position_forward`]: dP `[R, T, d]`, dx `[R, N·T, d]` summed over rows.
pub fn position_backward(dx: &Tensor, n: usize, t: usize) -> Result<Tensor> {
    let (r, _, d) = dx.dims3()?;
    Ok(dx.reshape((r, n, t, d))?.sum(1)?) // [R, T, d]
}

/// A 0/1 keep mask as the factor that inverted dropout multiplies by: mask / (1 − p).
pub fn dropout_factor(mask: &Tensor, p: f64) -> Result<Tensor> {
    Ok((mask * (1.0 / (1.0 - p)))?)
}

/// x ⊙ factor (dropout's forward), or x without a factor. Its backward is the same product on
/// the gradient, which is why forward and backward share it.
pub fn dropout(x: &Tensor, factor: Option<&Tensor>) -> Result<Tensor> {
    Ok(match factor {
        Some(f) => (x * f)?,
        None => x.clone(),
    })
}

/// The last `k` of `t` positions of every row: x `[R, N·t, d]` → `[R, N·k, d]`.
pub fn last_positions(x: &Tensor, n: usize, t: usize, k: usize) -> Result<Tensor> {
    if k == t {
        return Ok(x.clone());
    }
    let (r, _, d) = x.dims3()?;
    Ok(x.reshape((r, n, t, d))?.narrow(2, t - k, k)?.contiguous()?.reshape((r, n * k, d))?)
}

/// Backward of [`last_positions`]: dx `[R, N·k, d]` → `[R, N·t, d]`, zero at the first t − k
/// positions of every row.
pub fn pad_positions(dx: &Tensor, n: usize, t: usize, k: usize) -> Result<Tensor> {
    if k == t {
        return Ok(dx.clone());
    }
    let (r, _, d) = dx.dims3()?;
    Ok(dx.reshape((r, n, k, d))?.pad_with_zeros(2, t - k, 0)?.reshape((r, n * t, d))?)
}
