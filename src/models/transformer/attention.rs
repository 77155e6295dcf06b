//! Multi-head self-attention over the stack, forward and backward side by side, with RoPE and
//! the softmax as layers of their own.
//!
//! Heads become batch entries: `[R, N·T, d]` → `[R·N·H, T, e]`, so that the scores of every
//! run, row and head are one batched matmul `[R·N·H, T', e] · [R·N·H, e, T]`. Queries come
//! from the last T' of the T positions (T' = T, or 1 in the last block), keys and values from
//! all of them; query i sits at position T − T' + i.

use super::grads::Grads;
use super::layers::{dropout, linear_forward};
use super::masks::BlockDropout;
use super::{AttnAt, Transformer};
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

/// RoPE's cos(t·θ_i) and sin(t·θ_i) for every position t and pair i, θ_i = base^(−2i/e).
#[derive(Clone, Debug)]
pub struct Rope {
    /// `[T, e/2]`.
    cos: Tensor,
    /// `[T, e/2]`.
    sin: Tensor,
}

impl Rope {
    pub fn new(base: f64, t: usize, e: usize, dtype: DType, device: &Device) -> Result<Rope> {
        let half = e / 2;
        // Angles in f64 whatever the dtype, so f32 runs do not lose the small θ_i.
        let angles: Vec<f64> =
            (0..t).flat_map(|pos| (0..half).map(move |i| pos as f64 * base.powf(-2.0 * i as f64 / e as f64))).collect();
        let cos =
            Tensor::from_vec(angles.iter().map(|a| a.cos()).collect::<Vec<_>>(), (t, half), device)?.to_dtype(dtype)?;
        let sin =
            Tensor::from_vec(angles.iter().map(|a| a.sin()).collect::<Vec<_>>(), (t, half), device)?.to_dtype(dtype)?;
        Ok(Rope { cos, sin })
    }

    /// Turn the pairs (2i, 2i+1) of x `[B, T', e]`, whose positions are the last T' of T.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.turn(x, false)
    }

    /// Backward of [`Rope::forward`]: a rotation's transpose turns by the opposite angle.
    pub fn backward(&self, dy: &Tensor) -> Result<Tensor> {
        self.turn(dy, true)
    }

    fn turn(&self, x: &Tensor, inverse: bool) -> Result<Tensor> {
        let (b, tq, e) = x.dims3()?;
        let t = self.cos.dims()[0];
        let cos = self.cos.narrow(0, t - tq, tq)?.unsqueeze(0)?; // [1, T', e/2]
        let mut sin = self.sin.narrow(0, t - tq, tq)?.unsqueeze(0)?; // [1, T', e/2]
        if inverse {
            sin = sin.neg()?;
        }
        let pairs = x.reshape((b, tq, e / 2, 2))?; // [B, T', e/2, 2]
        let even = pairs.narrow(3, 0, 1)?.squeeze(3)?; // x_{2i}  [B, T', e/2]
        let odd = pairs.narrow(3, 1, 1)?.squeeze(3)?; // x_{2i+1}  [B, T', e/2]
        let even_out = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?; // [B, T', e/2]
        let odd_out = (even.broadcast_mul(&sin)? + odd.broadcast_mul(&cos)?)?; // [B, T', e/2]
        Ok(Tensor::stack(&[even_out, odd_out], 3)?.reshape((b, tq, e))?) // [B, T', e]
    }
}

/// Heads as batch entries: `[R, N·T', d]` → `[R·N·H, T', e]`.
pub fn split_heads(x: &Tensor, n: usize, heads: usize) -> Result<Tensor> {
    let (r, m, d) = x.dims3()?;
    let (tq, e) = (m / n, d / heads);
    Ok(x.reshape((r, n, tq, heads, e))?.transpose(2, 3)?.contiguous()?.reshape((r * n * heads, tq, e))?)
    // [R·N·H, T', e]
}

/// Inverse of [`split_heads`] (and its backward): `[R·N·H, T', e]` → `[R, N·T', d]`.
pub fn merge_heads(x: &Tensor, r: usize, n: usize, heads: usize) -> Result<Tensor> {
    let (_, tq, e) = x.dims3()?;
    Ok(x.reshape((r, n, heads, tq, e))?.transpose(2, 3)?.contiguous()?.reshape((r, n * tq, heads * e))?)
    // [R, N·T', d]
}

/// Softmax over the last axis (the keys): p = exp(s − max) / Σ exp(s − max). `[B, T', T]`.
pub fn softmax_forward(scores: &Tensor) -> Result<Tensor> {
    let max = scores.max_keepdim(D::Minus1)?; // [B, T', 1]; finite: a query always sees itself
    let exp = scores.broadcast_sub(&max)?.exp()?; // [B, T', T]
    Ok(exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)?)
}

/// Backward of [`softmax_forward`]: ds = p ⊙ (dp − Σ_j dp_j p_j). `[B, T', T]`.
pub fn softmax_backward(dprobs: &Tensor, probs: &Tensor) -> Result<Tensor> {
    let inner = (dprobs * probs)?.sum_keepdim(D::Minus1)?; // [B, T', 1]
    Ok((dprobs.broadcast_sub(&inner)? * probs)?)
}

/// The causal mask's additive term `[T', T]`: −∞ where key j lies after query i's position
/// T − T' + i, else 0; `None` when nothing is masked (T' = 1, the last position sees all).
pub fn causal_mask(tq: usize, t: usize, dtype: DType, device: &Device) -> Result<Option<Tensor>> {
    if tq <= 1 {
        return Ok(None);
    }
    let values: Vec<f64> =
        (0..tq).flat_map(|i| (0..t).map(move |j| if j > t - tq + i { f64::NEG_INFINITY } else { 0.0 })).collect();
    Ok(Some(Tensor::from_vec(values, (tq, t), device)?.to_dtype(dtype)?))
}

/// What the attention's backward pass needs.
pub struct AttnCache {
    /// Input at the query positions `[R, N·T', d]`.
    query_in: Tensor,
    /// Input at every position `[R, N·T, d]`.
    key_in: Tensor,
    /// Queries, keys and values per head, queries and keys after RoPE: `[R·N·H, T', e]`,
    /// `[R·N·H, T, e]`, `[R·N·H, T, e]`.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Attention weights `[R·N·H, T', T]`, and after dropout (what multiplies v).
    probs: Tensor,
    kept: Tensor,
    /// Heads merged, the o projection's input `[R, N·T', d]`.
    merged: Tensor,
}

impl Transformer {
    /// Self-attention of the last `tq` positions over all T. `x` `[R, N·T, d]` → `[R, N·tq, d]`
    /// (after the o projection and its dropout).
    pub(crate) fn attention_forward(
        &self,
        at: &AttnAt,
        x: &Tensor,
        n: usize,
        tq: usize,
        drop: &BlockDropout,
        rope: Option<&Rope>,
    ) -> Result<(Tensor, AttnCache)> {
        let (r, m, _) = x.dims3()?;
        let (t, heads) = (m / n, self.arch.heads);
        let scale = 1.0 / (self.arch.d_head() as f64).sqrt();
        let bias = |b: Option<usize>| b.map(|i| self.at(i));
        let query_in = super::layers::last_positions(x, n, t, tq)?; // [R, N·T', d]
        let q = linear_forward(&query_in, self.at(at.q.weight), bias(at.q.bias))?; // [R, N·T', d]
        let k = linear_forward(x, self.at(at.k.weight), bias(at.k.bias))?; // [R, N·T, d]
        let v = linear_forward(x, self.at(at.v.weight), bias(at.v.bias))?; // [R, N·T, d]
        let mut q = split_heads(&q, n, heads)?; // [R·N·H, T', e]
        let mut k = split_heads(&k, n, heads)?; // [R·N·H, T, e]
        let v = split_heads(&v, n, heads)?; // [R·N·H, T, e]
        if let Some(rope) = rope {
            q = rope.forward(&q)?;
            k = rope.forward(&k)?;
        }
        let mut scores = (q.matmul(&k.t()?)? * scale)?; // q·kᵀ/√e  [R·N·H, T', T]
        if self.arch.causal {
            if let Some(mask) = causal_mask(tq, t, scores.dtype(), scores.device())? {
                scores = scores.broadcast_add(&mask)?; // + [T', T]
            }
        }
        let probs = softmax_forward(&scores)?; // [R·N·H, T', T]
        let kept = dropout(&probs, drop.attn_weights.as_ref())?; // [R·N·H, T', T]
        let heads_out = kept.matmul(&v)?; // [R·N·H, T', e]
        let merged = merge_heads(&heads_out, r, n, heads)?; // [R, N·T', d]
        let out = linear_forward(&merged, self.at(at.o.weight), bias(at.o.bias))?; // [R, N·T', d]
        let out = dropout(&out, drop.attn_out.as_ref())?;
        Ok((out, AttnCache { query_in, key_in: x.clone(), q, k, v, probs, kept, merged }))
    }

    /// Backward of [`Transformer::attention_forward`]: dx `[R, N·T, d]` from dout
    /// `[R, N·tq, d]`; the weights' gradients go to `grads`. Its arguments are what the forward
    /// pass's cache and the block hand it, kept apart as the forward pass's are.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attention_backward(
        &self,
        at: &AttnAt,
        cache: &AttnCache,
        dout: &Tensor,
        n: usize,
        drop: &BlockDropout,
        rope: Option<&Rope>,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let (r, m, _) = cache.key_in.dims3()?;
        let (t, tq, heads) = (m / n, cache.query_in.dims()[1] / n, self.arch.heads);
        let scale = 1.0 / (self.arch.d_head() as f64).sqrt();
        let dout = dropout(dout, drop.attn_out.as_ref())?; // [R, N·T', d]
        let dmerged = grads.linear(self, &at.o, &dout, &cache.merged)?; // [R, N·T', d]
        let dheads = split_heads(&dmerged, n, heads)?; // [R·N·H, T', e]
        let dkept = dheads.matmul(&cache.v.t()?)?; // d·vᵀ  [R·N·H, T', T]
        let dv = cache.kept.t()?.matmul(&dheads)?; // keptᵀ·d  [R·N·H, T, e]
        let dprobs = dropout(&dkept, drop.attn_weights.as_ref())?; // [R·N·H, T', T]
                                                                   // The causal mask is a constant: masked weights are
                                                                   // 0, so softmax's backward gives them 0.
        let dscores = (softmax_backward(&dprobs, &cache.probs)? * scale)?; // [R·N·H, T', T]
        let mut dq = dscores.matmul(&cache.k)?; // [R·N·H, T', e]
        let mut dk = dscores.t()?.matmul(&cache.q)?; // [R·N·H, T, e]
        if let Some(rope) = rope {
            dq = rope.backward(&dq)?;
            dk = rope.backward(&dk)?;
        }
        let dq = merge_heads(&dq, r, n, heads)?; // [R, N·T', d]
        let dk = merge_heads(&dk, r, n, heads)?; // [R, N·T, d]
        let dv = merge_heads(&dv, r, n, heads)?; // [R, N·T, d]
        let dx_q = grads.linear(self, &at.q, &dq, &cache.query_in)?; // [R, N·T', d]
        let dx_k = grads.linear(self, &at.k, &dk, &cache.key_in)?; // [R, N·T, d]
        let dx_v = grads.linear(self, &at.v, &dv, &cache.key_in)?; // [R, N·T, d]
        Ok(((dx_k + dx_v)? + super::layers::pad_positions(&dx_q, n, t, tq)?)?) // [R, N·T, d]
    }
}
