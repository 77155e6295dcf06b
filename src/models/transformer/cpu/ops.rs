//! The transformer's elementwise work on one block's slices, forward and backward side by
//! side: biases, norms, RoPE, attention over the T keys of each head, SwiGLU, dropout and the
//! embeddings. Generic over f32 and f64; the loops that run per value of a block have AVX2
//! twins. Shapes: M rows of width d (a block's positions), T positions of a row, T' of them
//! queried (the last T'), H heads of width e, F FFN units.
//!
//! Each mirrors a candle op of the tensor path (`layers.rs`, `attention.rs`, `ffn.rs`) in its
//! order of operations, so the two paths differ only in how sums are ordered.

use crate::kernels::Real;
use crate::models::transformer::{NormKind, NORM_EPS};

/// The factor inverted dropout multiplies a unit by: 1/(1 − p) where the mask keeps it, else 0
/// (as `mask · (1/(1 − p))` on the tensor path).
#[inline(always)]
fn keep<T: Real>(mask: u8, scale: T) -> T {
    if mask != 0 {
        scale
    } else {
        T::zero()
    }
}

crate::avx2_twin! {
    /// y[i, :] += b for every row of y `[M, n]`.
    pub fn add_bias<T>(y: &mut [T], b: &[T]) = add_bias_loop;
}

#[inline(always)]
fn add_bias_loop<T: Real>(y: &mut [T], b: &[T]) {
    for row in y.chunks_exact_mut(b.len()) {
        for (v, &x) in row.iter_mut().zip(b) {
            *v += x;
        }
    }
}

crate::avx2_twin! {
    /// db += Σ_i dy[i, :], over the rows of dy `[M, n]` in order: a bias's gradient.
    pub fn sum_rows<T>(dy: &[T], db: &mut [T]) = sum_rows_loop;
}

#[inline(always)]
fn sum_rows_loop<T: Real>(dy: &[T], db: &mut [T]) {
    for row in dy.chunks_exact(db.len()) {
        for (s, &g) in db.iter_mut().zip(row) {
            *s += g;
        }
    }
}

crate::avx2_twin! {
    /// y = a + b elementwise (a residual): a, b, y `[M, d]`.
    pub fn add<T>(a: &[T], b: &[T], y: &mut [T]) = add_loop;
}

#[inline(always)]
fn add_loop<T: Real>(a: &[T], b: &[T], y: &mut [T]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = a + b;
    }
}

crate::avx2_twin! {
    /// y += x elementwise: x, y `[M, d]`.
    pub fn add_assign<T>(y: &mut [T], x: &[T]) = add_assign_loop;
}

#[inline(always)]
fn add_assign_loop<T: Real>(y: &mut [T], x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += x;
    }
}

/// y[r, i, :] = x[r, T − T' + i, :] (+ y[r, i, :] with `accumulate`): the last T' of T positions
/// of each row. x `[B, T, w]` → y `[B, T', w]`.
pub fn last_positions<T: Real>(x: &[T], y: &mut [T], t: usize, tq: usize, w: usize, accumulate: bool) {
    for (src, dst) in x.chunks_exact(t * w).zip(y.chunks_exact_mut(tq * w)) {
        let src = &src[(t - tq) * w..];
        if accumulate {
            add_assign(dst, src);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// y[r, T − T' + i, :] += x[r, i, :]: the backward of [`last_positions`] added into y.
/// x `[B, T', w]`, y `[B, T, w]`.
pub fn add_at_last_positions<T: Real>(x: &[T], y: &mut [T], t: usize, tq: usize, w: usize) {
    for (src, dst) in x.chunks_exact(tq * w).zip(y.chunks_exact_mut(t * w)) {
        add_assign(&mut dst[(t - tq) * w..], src);
    }
}

crate::avx2_twin! {
    /// x[r, i, :] ⊙= the keep factors of its position T − T' + i in mask `[B, T, w]`:
    /// dropout on the last T' positions of x `[B, T', w]` (and its backward, the same product
    /// on the gradient).
    pub fn dropout<T>(x: &mut [T], mask: &[u8], scale: T, t: usize, tq: usize, w: usize) = dropout_loop;
}

#[inline(always)]
fn dropout_loop<T: Real>(x: &mut [T], mask: &[u8], scale: T, t: usize, tq: usize, w: usize) {
    for (row, m) in x.chunks_exact_mut(tq * w).zip(mask.chunks_exact(t * w)) {
        for (v, &k) in row.iter_mut().zip(&m[(t - tq) * w..]) {
            *v *= keep(k, scale);
        }
    }
}

crate::avx2_twin! {
    /// A norm of every row of x `[M, d]`: RMSNorm y = x·s ⊙ g, s = 1/√(mean(x²) + ε);
    /// LayerNorm y = (x − μ)·s ⊙ g + b, s = 1/√(mean((x − μ)²) + ε). Keeps x̂ `[M, d]` and
    /// s `[M]` for the backward pass.
    pub fn norm_forward<T>(
        kind: NormKind, x: &[T], gain: &[T], bias: Option<&[T]>, y: &mut [T], xhat: &mut [T], inv: &mut [T]
    ) = norm_forward_loop;
}

#[inline(always)]
fn norm_forward_loop<T: Real>(
    kind: NormKind,
    x: &[T],
    gain: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    xhat: &mut [T],
    inv: &mut [T],
) {
    let d = gain.len();
    let width = T::from(d).unwrap_or_else(T::one);
    let eps = T::from(NORM_EPS).unwrap_or_else(T::zero);
    for (((x, y), xhat), s) in
        x.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(xhat.chunks_exact_mut(d)).zip(inv.iter_mut())
    {
        // x̂ holds the centered input first.
        if kind == NormKind::Layer {
            let mean = crate::kernels::sum_lanes(x) / width;
            xhat.iter_mut().zip(x).for_each(|(c, &v)| *c = v - mean);
        } else {
            xhat.copy_from_slice(x);
        }
        let mut squares = [T::zero(); 8];
        let chunks = xhat.chunks_exact(8);
        let tail: T = chunks.remainder().iter().map(|&c| c * c).sum();
        for chunk in chunks {
            for (lane, &c) in squares.iter_mut().zip(chunk) {
                *lane += c * c;
            }
        }
        let mean_square = (squares.iter().copied().sum::<T>() + tail) / width;
        *s = T::one() / (mean_square + eps).sqrt();
        for ((y, c), &g) in y.iter_mut().zip(xhat.iter_mut()).zip(gain) {
            *c *= *s;
            *y = *c * g;
        }
        if let Some(b) = bias {
            add_assign_loop(y, b);
        }
    }
}

crate::avx2_twin! {
    /// Backward of [`norm_forward`] over rows of dy `[M, d]`: dg += Σ dy ⊙ x̂, db += Σ dy (with
    /// a bias), and dx = s·(dx̂ − x̂·mean(dx̂ ⊙ x̂)) with dx̂ = dy ⊙ g, LayerNorm also subtracting
    /// mean(dx̂); written over dx `[M, d]`, or added to it with `accumulate`.
    #[allow(clippy::too_many_arguments)]
    pub fn norm_backward<T>(
        kind: NormKind, dy: &[T], xhat: &[T], inv: &[T], gain: &[T], dgain: &mut [T], dbias: Option<&mut [T]>,
        dx: &mut [T], accumulate: bool
    ) = norm_backward_loop;
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn norm_backward_loop<T: Real>(
    kind: NormKind,
    dy: &[T],
    xhat: &[T],
    inv: &[T],
    gain: &[T],
    dgain: &mut [T],
    mut dbias: Option<&mut [T]>,
    dx: &mut [T],
    accumulate: bool,
) {
    let d = gain.len();
    let width = T::from(d).unwrap_or_else(T::one);
    for (((dy, xhat), &s), dx) in dy.chunks_exact(d).zip(xhat.chunks_exact(d)).zip(inv).zip(dx.chunks_exact_mut(d)) {
        let (mut projection, mut total) = (T::zero(), T::zero());
        for (((dg, &g), &y), &h) in dgain.iter_mut().zip(gain).zip(dy).zip(xhat) {
            *dg += y * h;
            let dh = y * g;
            projection += dh * h;
            total += dh;
        }
        if let Some(db) = dbias.as_deref_mut() {
            db.iter_mut().zip(dy).for_each(|(b, &y)| *b += y);
        }
        let projection = projection / width;
        let mean = if kind == NormKind::Layer { total / width } else { T::zero() };
        for (((dx, &y), &g), &h) in dx.iter_mut().zip(dy).zip(gain).zip(xhat) {
            let inner = (y * g - h * projection) - mean;
            *dx = if accumulate { *dx + inner * s } else { inner * s };
        }
    }
}

/// RoPE's cos(t·θ_i) and sin(t·θ_i) for every position t and pair i, θ_i = base^(−2i/e),
/// computed in f64 (as the tensor path's [`crate::models::transformer::attention::Rope`]).
pub struct RopeTable<T> {
    /// `[T, e/2]`.
    cos: Vec<T>,
    /// `[T, e/2]`.
    sin: Vec<T>,
    half: usize,
}

impl<T: Real> RopeTable<T> {
    pub fn new(base: f64, t: usize, e: usize) -> RopeTable<T> {
        let half = e / 2;
        let angles: Vec<f64> =
            (0..t).flat_map(|pos| (0..half).map(move |i| pos as f64 * base.powf(-2.0 * i as f64 / e as f64))).collect();
        let cast = |v: f64| T::from(v).unwrap_or_else(T::zero);
        RopeTable {
            cos: angles.iter().map(|a| cast(a.cos())).collect(),
            sin: angles.iter().map(|a| cast(a.sin())).collect(),
            half,
        }
    }

    /// Turn the pairs (2i, 2i+1) of every head of x `[B, T', d]`, whose positions are the last
    /// T' of T, by t·θ_i; with `inverse` by −t·θ_i (the backward pass: a rotation's transpose).
    pub fn turn(&self, x: &mut [T], t: usize, tq: usize, d: usize, inverse: bool) {
        rope_turn(x, &self.cos, &self.sin, self.half, t, tq, d, inverse);
    }
}

crate::avx2_twin! {
    #[allow(clippy::too_many_arguments)]
    fn rope_turn<T>(
        x: &mut [T], cos: &[T], sin: &[T], half: usize, t: usize, tq: usize, d: usize, inverse: bool
    ) = rope_loop;
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rope_loop<T: Real>(x: &mut [T], cos: &[T], sin: &[T], half: usize, t: usize, tq: usize, d: usize, inverse: bool) {
    for row in x.chunks_exact_mut(tq * d) {
        for (i, position) in row.chunks_exact_mut(d).enumerate() {
            let at = (t - tq + i) * half;
            let (cos, sin) = (&cos[at..at + half], &sin[at..at + half]);
            for head in position.chunks_exact_mut(2 * half) {
                for ((pair, &c), &s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                    let s = if inverse { -s } else { s };
                    let (even, odd) = (pair[0], pair[1]);
                    pair[0] = even * c - odd * s;
                    pair[1] = even * s + odd * c;
                }
            }
        }
    }
}

/// What the attention of a block reads besides its q, k, v.
#[derive(Clone, Copy)]
pub struct AttnShape<T> {
    /// Rows B of the block, and the model width d.
    pub rows: usize,
    pub d: usize,
    /// Positions T of a row and queries T' (the last T').
    pub t: usize,
    pub tq: usize,
    pub heads: usize,
    /// 1/√e.
    pub scale: T,
    /// Query at position i sees keys ≤ i only.
    pub causal: bool,
}

impl<T> AttnShape<T> {
    /// Keys the query at position `pos` sees.
    #[inline(always)]
    fn keys(&self, pos: usize) -> usize {
        if self.causal {
            pos + 1
        } else {
            self.t
        }
    }
}

#[inline(always)]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ca.remainder().iter().zip(cb.remainder()).map(|(&x, &y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += x * y;
        }
    }
    lanes.iter().copied().sum::<T>() + tail
}

/// y += a·x elementwise.
#[inline(always)]
fn axpy<T: Real>(a: T, x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

crate::avx2_twin! {
    /// Self-attention of each row's last T' positions over its T: per head, scores q·kᵀ/√e
    /// (causal: keys after the query's position left out), probs = softmax over the keys
    /// `[B, H, T', T]` (0 at masked keys), and merged[r, i, head] = Σ_j kept_ij·v[r, j, head],
    /// kept = probs ⊙ the dropout factors of `mask` `[B, H, T, T]`. q `[B, T', d]`, k and v
    /// `[B, T, d]` → merged `[B, T', d]`.
    pub fn attention_forward<T>(
        shape: AttnShape<T>, q: &[T], k: &[T], v: &[T], mask: Option<(&[u8], T)>, probs: &mut [T], merged: &mut [T]
    ) = attention_forward_loop;
}

#[inline(always)]
fn attention_forward_loop<T: Real>(
    shape: AttnShape<T>,
    q: &[T],
    k: &[T],
    v: &[T],
    mask: Option<(&[u8], T)>,
    probs: &mut [T],
    merged: &mut [T],
) {
    let AttnShape { rows, d, t, tq, heads, scale, .. } = shape;
    let e = d / heads;
    merged[..rows * tq * d].fill(T::zero());
    for r in 0..rows {
        let (q, k, v) = (&q[r * tq * d..][..tq * d], &k[r * t * d..][..t * d], &v[r * t * d..][..t * d]);
        let merged = &mut merged[r * tq * d..][..tq * d];
        for h in 0..heads {
            let span = h * e..(h + 1) * e;
            for i in 0..tq {
                let pos = t - tq + i;
                let keys = shape.keys(pos);
                let p = &mut probs[((r * heads + h) * tq + i) * t..][..t];
                let qi = &q[i * d..][span.clone()];
                let mut max = T::neg_infinity();
                for (j, p) in p[..keys].iter_mut().enumerate() {
                    *p = dot(qi, &k[j * d..][span.clone()]) * scale;
                    max = if *p > max { *p } else { max };
                }
                let mut sum = T::zero();
                for p in p[..keys].iter_mut() {
                    *p = (*p - max).exp_fast();
                    sum += *p;
                }
                p[..keys].iter_mut().for_each(|p| *p /= sum);
                p[keys..].fill(T::zero());
                let out = &mut merged[i * d..][span.clone()];
                for (j, &pj) in p[..keys].iter().enumerate() {
                    let kept = match mask {
                        Some((m, s)) => pj * keep(m[((r * heads + h) * t + pos) * t + j], s),
                        None => pj,
                    };
                    axpy(kept, &v[j * d..][span.clone()], out);
                }
            }
        }
    }
}

crate::avx2_twin! {
    /// Backward of [`attention_forward`] from dmerged `[B, T', d]`: dv = keptᵀ·dmerged, and
    /// through the dropout and the softmax ds = probs ⊙ (dp − Σ_j dp_j·probs_j)/√e, dq = ds·k,
    /// dk = dsᵀ·q, per head. Written over dq `[B, T', d]`, dk and dv `[B, T, d]`; `scratch` `[T]`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward<T>(
        shape: AttnShape<T>, dmerged: &[T], q: &[T], k: &[T], v: &[T], probs: &[T], mask: Option<(&[u8], T)>,
        dq: &mut [T], dk: &mut [T], dv: &mut [T], scratch: &mut [T]
    ) = attention_backward_loop;
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attention_backward_loop<T: Real>(
    shape: AttnShape<T>,
    dmerged: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    probs: &[T],
    mask: Option<(&[u8], T)>,
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    scratch: &mut [T],
) {
    let AttnShape { rows, d, t, tq, heads, scale, .. } = shape;
    let e = d / heads;
    dq[..rows * tq * d].fill(T::zero());
    dk[..rows * t * d].fill(T::zero());
    dv[..rows * t * d].fill(T::zero());
    for r in 0..rows {
        let (q, k, v) = (&q[r * tq * d..][..tq * d], &k[r * t * d..][..t * d], &v[r * t * d..][..t * d]);
        let dmerged = &dmerged[r * tq * d..][..tq * d];
        let (dq, dk, dv) =
            (&mut dq[r * tq * d..][..tq * d], &mut dk[r * t * d..][..t * d], &mut dv[r * t * d..][..t * d]);
        for h in 0..heads {
            let span = h * e..(h + 1) * e;
            for i in 0..tq {
                let pos = t - tq + i;
                let keys = shape.keys(pos);
                let p = &probs[((r * heads + h) * tq + i) * t..][..keys];
                let dmi = &dmerged[i * d..][span.clone()];
                let dp = &mut scratch[..keys];
                // dkept_j = dmerged_i·v_j; dv_j += kept_ij·dmerged_i; dp = dkept ⊙ factor.
                for (j, (dp, &pj)) in dp.iter_mut().zip(p).enumerate() {
                    let factor = match mask {
                        Some((m, s)) => keep(m[((r * heads + h) * t + pos) * t + j], s),
                        None => T::one(),
                    };
                    let vj = &v[j * d..][span.clone()];
                    *dp = dot(dmi, vj) * factor;
                    axpy(pj * factor, dmi, &mut dv[j * d..][span.clone()]);
                }
                let inner = dp.iter().zip(p).fold(T::zero(), |s, (&g, &pj)| s + g * pj);
                let qi = &q[i * d..][span.clone()];
                for (j, (&g, &pj)) in dp.iter().zip(p).enumerate() {
                    let ds = (g - inner) * pj * scale;
                    axpy(ds, &k[j * d..][span.clone()], &mut dq[i * d..][span.clone()]);
                    axpy(ds, qi, &mut dk[j * d..][span.clone()]);
                }
            }
        }
    }
}

crate::avx2_twin! {
    /// SwiGLU's units in place: pre (w1·x) `[M, F]` ← silu(pre), σ·(1 + pre·(1 − σ)) into
    /// `derivative` (training), and hidden = silu ⊙ gate (gate = w3·x).
    pub fn swiglu_forward<T>(
        pre: &mut [T], derivative: Option<&mut [T]>, gate: &[T], hidden: &mut [T]
    ) = swiglu_forward_loop;
}

#[inline(always)]
fn swiglu_forward_loop<T: Real>(pre: &mut [T], derivative: Option<&mut [T]>, gate: &[T], hidden: &mut [T]) {
    let sigmoid = |a: T| T::one() / ((-a).exp_fast() + T::one());
    match derivative {
        Some(derivative) => {
            for (((a, dv), &g), hv) in pre.iter_mut().zip(derivative.iter_mut()).zip(gate).zip(hidden.iter_mut()) {
                let s = sigmoid(*a);
                *dv = s * (*a * (T::one() - s) + T::one());
                *a *= s;
                *hv = *a * g;
            }
        }
        None => {
            for ((a, &g), hv) in pre.iter_mut().zip(gate).zip(hidden.iter_mut()) {
                *a = *a * sigmoid(*a);
                *hv = *a * g;
            }
        }
    }
}

crate::avx2_twin! {
    /// Backward of SwiGLU's product: dgate = dhidden ⊙ silu, then dhidden ← dhidden ⊙ gate ⊙
    /// silu' (the gradient of w1·x). All `[M, F]`.
    pub fn swiglu_backward<T>(
        dhidden: &mut [T], act: &[T], gate: &[T], derivative: &[T], dgate: &mut [T]
    ) = swiglu_backward_loop;
}

#[inline(always)]
fn swiglu_backward_loop<T: Real>(dhidden: &mut [T], act: &[T], gate: &[T], derivative: &[T], dgate: &mut [T]) {
    for ((((dh, &a), &g), &dv), dg) in dhidden.iter_mut().zip(act).zip(gate).zip(derivative).zip(dgate.iter_mut()) {
        *dg = *dh * a;
        *dh = (*dh * g) * dv;
    }
}

/// x[r, t, :] = E[tokens[r, t], :] (+ P[t, :]): tokens `[B, T]`, E `[V, d]`, P `[T, d]` →
/// x `[B, T, d]`.
pub fn embed<T: Real>(tokens: &[u32], table: &[T], position: Option<&[T]>, x: &mut [T], t: usize, d: usize) {
    for (i, (&token, x)) in tokens.iter().zip(x.chunks_exact_mut(d)).enumerate() {
        x.copy_from_slice(&table[token as usize * d..][..d]);
        if let Some(p) = position {
            add_assign(x, &p[(i % t) * d..][..d]);
        }
    }
}

/// Backward of [`embed`]: dE[tokens[r, t], :] += dx[r, t, :] and dP[t, :] += dx[r, t, :], in
/// row order.
pub fn embed_backward<T: Real>(
    tokens: &[u32],
    dx: &[T],
    d_table: &mut [T],
    mut d_position: Option<&mut [T]>,
    t: usize,
    d: usize,
) {
    for (i, (&token, g)) in tokens.iter().zip(dx.chunks_exact(d)).enumerate() {
        add_assign(&mut d_table[token as usize * d..][..d], g);
        if let Some(dp) = d_position.as_deref_mut() {
            add_assign(&mut dp[(i % t) * d..][..d], g);
        }
    }
}
