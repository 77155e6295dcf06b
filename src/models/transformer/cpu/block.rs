//! The transformer on one block of one run's rows, forward and backward side by side.
//!
//! Shapes: B rows of the block, T positions per row, T' positions a layer computes (T, or 1
//! in the last layer: the readout reads the last position only, so the last layer computes
//! the keys and values of every position but the query, attention output and FFN of the last
//! one), d model width, H heads, F FFN width, C classes. Matrices are `[in, out]` (y = x·W).
//!
//!   embedding:  x₀ = E[tokens] (+ P)                              [B, T, d]
//!   pre-norm:   h = norm1(x);  x1 = x_last + attn(h);  x' = x1 + ffn(norm2(x1))
//!   post-norm:  x1 = norm1(x_last + attn(x));  x' = norm2(x1 + ffn(x1))
//!   readout:    logits = norm(x_L) · W_u + b_u (the final norm with pre-norm only)  [B, C]
//!
//! x_last is x at the T' computed positions. The attention's keys and values come from all T
//! positions of its input, its queries from the last T'.

use super::ops::{self, AttnShape, RopeTable};
use crate::cpu::matmul::{matmul, Layout as Operand};
use crate::kernels::activation::Activation;
use crate::kernels::loss::Loss;
use crate::kernels::loss::{self, N_STATS};
use crate::kernels::{activation, Real};
use crate::models::transformer::{
    AttnAt, FfnAt, FfnKind, LayerAt, Layout, LinearAt, NormAt, NormKind, NormPlacement, RunLayerMasks, TransformerArch,
};
use std::ops::Range;

/// What every block of a run shares: the architecture and the run's weights.
pub struct Net<'a, T> {
    pub arch: &'a TransformerArch,
    pub(crate) layout: &'a Layout,
    /// The run's value of every parameter, in parameter order.
    pub params: Vec<&'a [T]>,
    pub rope: Option<&'a RopeTable<T>>,
    pub loss: Loss,
    pub loss_bf16: bool,
}

/// One layer's dropout on a block of rows: the run's keep masks at those rows and the factor
/// 1/(1 − p) a kept unit is multiplied by; `None` without that dropout.
#[derive(Clone, Copy)]
pub struct BlockMasks<'a, T> {
    /// `[B, H, T, T]`.
    pub attn_weights: Option<(&'a [u8], T)>,
    /// `[B, T, d]`.
    pub attn_out: Option<(&'a [u8], T)>,
    /// `[B, T, F]`.
    pub ffn_hidden: Option<(&'a [u8], T)>,
    /// `[B, T, d]`.
    pub ffn_out: Option<(&'a [u8], T)>,
}

impl<'a, T: Real> BlockMasks<'a, T> {
    /// No dropout (evaluation, or none in the model).
    pub fn none() -> BlockMasks<'a, T> {
        BlockMasks { attn_weights: None, attn_out: None, ffn_hidden: None, ffn_out: None }
    }

    /// The masks of `rows` of one layer of a run's masks.
    pub fn of(arch: &TransformerArch, masks: &'a RunLayerMasks, rows: &Range<usize>) -> BlockMasks<'a, T> {
        let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
        let p = arch.dropout;
        let cut = |mask: &'a Option<Vec<u8>>, per_row: usize, prob: f64| {
            mask.as_ref().map(|m| {
                (&m[rows.start * per_row..rows.end * per_row], T::from(1.0 / (1.0 - prob)).unwrap_or_else(T::one))
            })
        };
        BlockMasks {
            attn_weights: cut(&masks.attn_weights, h * t * t, p.attn_weights),
            attn_out: cut(&masks.attn_out, t * d, p.attn_out),
            ffn_hidden: cut(&masks.ffn_hidden, t * f, p.ffn_hidden),
            ffn_out: cut(&masks.ffn_out, t * d, p.ffn_out),
        }
    }
}

/// What one layer keeps for its backward pass. `S` is a buffer (`Vec<T>`), or its length
/// (`usize`) in [`Net::shape`]; a buffer the options leave unused has length 0.
pub struct LayerBuffers<S> {
    /// norm1's x̂ and s: pre-norm at every position `[B, T, d]`, `[B, T]`; post-norm at the
    /// computed ones `[B, T', d]`, `[B, T']`.
    xhat1: S,
    inv1: S,
    /// Pre-norm: norm1(x), the attention's input `[B, T, d]`.
    h: S,
    /// The attention's input at the query positions, when T' < T `[B, T', d]`.
    query_in: S,
    /// Queries `[B, T', d]`, keys and values `[B, T, d]`; queries and keys after RoPE.
    q: S,
    k: S,
    v: S,
    /// Attention weights `[B, H, T', T]`.
    probs: S,
    /// The heads' outputs side by side, the o projection's input `[B, T', d]`.
    merged: S,
    /// Pre-norm: x_last + attn; post-norm: norm1(x_last + attn) (the FFN's input) `[B, T', d]`.
    x1: S,
    /// norm2's x̂ `[B, T', d]` and s `[B, T']`.
    xhat2: S,
    inv2: S,
    /// Pre-norm: norm2(x1), the FFN's input `[B, T', d]`.
    h2: S,
    /// SwiGLU: silu(w1·x) `[B, T', F]`.
    act: S,
    /// act'(w1·x) `[B, T', F]` (training).
    derivative: S,
    /// SwiGLU: w3·x `[B, T', F]`.
    gate: S,
    /// The hidden units after dropout, w2's input `[B, T', F]`.
    hidden: S,
}

impl<S> LayerBuffers<S> {
    /// Every buffer through `f`, in one fixed order (the order a pooled set is laid out in).
    fn map<U>(self, f: &mut impl FnMut(S) -> U) -> LayerBuffers<U> {
        LayerBuffers {
            xhat1: f(self.xhat1),
            inv1: f(self.inv1),
            h: f(self.h),
            query_in: f(self.query_in),
            q: f(self.q),
            k: f(self.k),
            v: f(self.v),
            probs: f(self.probs),
            merged: f(self.merged),
            x1: f(self.x1),
            xhat2: f(self.xhat2),
            inv2: f(self.inv2),
            h2: f(self.h2),
            act: f(self.act),
            derivative: f(self.derivative),
            gate: f(self.gate),
            hidden: f(self.hidden),
        }
    }
}

/// The backward pass's gradients in flight, shared by the layers (training only).
pub struct Temps<S> {
    /// A layer's own: `[B, T, d]` each.
    g1: S,
    g2: S,
    g3: S,
    /// The attention's and the FFN's: `[B, T, d]` each.
    da: S,
    dmerged: S,
    dq: S,
    dk: S,
    dv: S,
    /// The FFN's hidden units and SwiGLU's gate `[B, T, F]`.
    dhidden: S,
    dgate: S,
    /// One query's attention weights `[T]`.
    scratch: S,
}

impl<S> Temps<S> {
    fn map<U>(self, f: &mut impl FnMut(S) -> U) -> Temps<U> {
        Temps {
            g1: f(self.g1),
            g2: f(self.g2),
            g3: f(self.g3),
            da: f(self.da),
            dmerged: f(self.dmerged),
            dq: f(self.dq),
            dk: f(self.dk),
            dv: f(self.dv),
            dhidden: f(self.dhidden),
            dgate: f(self.dgate),
            scratch: f(self.scratch),
        }
    }
}

/// The activations of one block, reused from block to block.
pub struct Buffers<S> {
    /// The residual stream into every layer `[B, T, d]`, and out of the last `[B, 1, d]`.
    x: Vec<S>,
    layers: Vec<LayerBuffers<S>>,
    /// The final norm's x̂ `[B, d]` and s `[B]` (pre-norm with a norm), and its output, the
    /// unembedding's input `[B, d]`.
    final_xhat: S,
    final_inv: S,
    readout: S,
    /// Logits `[B, C]`, then their gradient in place.
    logits: S,
    /// An attention's or FFN's output before its residual `[B, T, d]`.
    sub: S,
    /// The gradient into a layer's output and out of its input `[B, T, d]` (training).
    dy: S,
    dx: S,
    temps: Temps<S>,
}

impl<S> Buffers<S> {
    fn map<U>(self, f: &mut impl FnMut(S) -> U) -> Buffers<U> {
        Buffers {
            x: self.x.into_iter().map(&mut *f).collect(),
            layers: self.layers.into_iter().map(|l| l.map(f)).collect(),
            final_xhat: f(self.final_xhat),
            final_inv: f(self.final_inv),
            readout: f(self.readout),
            logits: f(self.logits),
            sub: f(self.sub),
            dy: f(self.dy),
            dx: f(self.dx),
            temps: self.temps.map(f),
        }
    }
}

impl Buffers<usize> {
    /// The lengths, in the order of a pooled set.
    pub fn lengths(self) -> Vec<usize> {
        let mut lengths = Vec::new();
        self.map(&mut |n| lengths.push(n));
        lengths
    }
}

impl<T> Buffers<Vec<T>> {
    /// The buffers of `shape` from a set of vectors of its [`Buffers::lengths`].
    pub fn from_set(shape: Buffers<usize>, set: Vec<Vec<T>>) -> Buffers<Vec<T>> {
        let mut set = set.into_iter();
        shape.map(&mut |_| set.next().unwrap_or_default())
    }

    /// The first `len` logits `[B, C]` after [`Net::forward`].
    pub fn logits(&self, len: usize) -> &[T] {
        &self.logits[..len]
    }

    /// The vectors back, for the next task's buffers.
    pub fn into_set(self) -> Vec<Vec<T>> {
        let mut set = Vec::new();
        self.map(&mut |v| set.push(v));
        set
    }
}

/// What a chunk of rows adds to its run's gradients: one per parameter, in parameter order.
pub type Grads<T> = Vec<Vec<T>>;

impl<T: Real + 'static> Net<'_, T> {
    /// Positions layer `layer` computes: all T, or the last one in the last layer.
    fn tq(&self, layer: usize) -> usize {
        if layer + 1 == self.arch.layers {
            1
        } else {
            self.arch.seq_len
        }
    }

    /// The buffer lengths for blocks of up to `b` rows.
    pub fn shape(&self, b: usize, training: bool) -> Buffers<usize> {
        let a = self.arch;
        let (t, d, f, heads, layers) = (a.seq_len, a.d_model, a.ffn_width, a.heads, a.layers);
        let pre = a.placement == NormPlacement::Pre;
        let norm = a.norm != NormKind::None;
        let swiglu = a.ffn == FfnKind::SwiGlu;
        let when = |on: bool, n: usize| if on { n } else { 0 };
        let layer = |l: usize| {
            let tq = self.tq(l);
            let normed = if pre { t } else { tq }; // positions norm1 sees
            LayerBuffers {
                xhat1: when(norm, b * normed * d),
                inv1: when(norm, b * normed),
                h: when(pre, b * t * d),
                query_in: when(tq < t, b * tq * d),
                q: b * tq * d,
                k: b * t * d,
                v: b * t * d,
                probs: b * heads * tq * t,
                merged: b * tq * d,
                x1: b * tq * d,
                xhat2: when(norm, b * tq * d),
                inv2: when(norm, b * tq),
                h2: when(pre, b * tq * d),
                act: when(swiglu, b * tq * f),
                derivative: when(training, b * tq * f),
                gate: when(swiglu, b * tq * f),
                hidden: b * tq * f,
            }
        };
        let final_norm = self.layout.final_norm.is_some();
        let grad = |n: usize| when(training, n);
        Buffers {
            x: (0..=layers).map(|l| if l < layers { b * t * d } else { b * d }).collect(),
            layers: (0..layers).map(layer).collect(),
            final_xhat: when(final_norm, b * d),
            final_inv: when(final_norm, b),
            readout: when(final_norm, b * d),
            logits: b * a.classes,
            sub: b * t * d,
            dy: grad(b * t * d),
            dx: grad(b * t * d),
            temps: Temps {
                g1: grad(b * t * d),
                g2: grad(b * t * d),
                g3: grad(b * t * d),
                da: grad(b * t * d),
                dmerged: grad(b * t * d),
                dq: grad(b * t * d),
                dk: grad(b * t * d),
                dv: grad(b * t * d),
                dhidden: grad(b * t * f),
                dgate: grad(when(swiglu, b * t * f)),
                scratch: grad(t),
            },
        }
    }

    /// y = x·W + b: x `[m, in]`, W `[in, out]` → y `[m, out]`.
    fn linear(&self, at: &LinearAt, x: &[T], y: &mut [T], (m, fan_in, fan_out): (usize, usize, usize)) {
        let y = &mut y[..m * fan_out];
        matmul(
            y,
            &x[..m * fan_in],
            Operand::Plain,
            self.params[at.weight],
            Operand::Plain,
            (m, fan_in, fan_out),
            false,
        );
        if let Some(b) = at.bias {
            ops::add_bias(y, self.params[b]);
        }
    }

    /// Backward of [`Net::linear`]: dW += xᵀ·dy, db += Σ dy, and dx = dy·Wᵀ (added to dx with
    /// `accumulate`).
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        at: &LinearAt,
        x: &[T],
        dy: &[T],
        dx: Option<&mut [T]>,
        accumulate: bool,
        grads: &mut Grads<T>,
        (m, fan_in, fan_out): (usize, usize, usize),
    ) {
        let dy = &dy[..m * fan_out];
        matmul(
            &mut grads[at.weight],
            &x[..m * fan_in],
            Operand::Transposed,
            dy,
            Operand::Plain,
            (fan_in, m, fan_out),
            true,
        );
        if let Some(b) = at.bias {
            ops::sum_rows(dy, &mut grads[b]);
        }
        if let Some(dx) = dx {
            matmul(
                &mut dx[..m * fan_in],
                dy,
                Operand::Plain,
                self.params[at.weight],
                Operand::Transposed,
                (m, fan_out, fan_in),
                accumulate,
            );
        }
    }

    /// y = norm(x) over rows of x `[m, d]` (a copy without a norm), keeping x̂ and s.
    fn norm_forward(&self, at: &Option<NormAt>, x: &[T], y: &mut [T], xhat: &mut [T], inv: &mut [T]) {
        let d = self.arch.d_model;
        let y = &mut y[..x.len()];
        match at {
            Some(at) => ops::norm_forward(
                self.arch.norm,
                x,
                self.params[at.gain],
                at.bias.map(|b| self.params[b]),
                y,
                &mut xhat[..x.len()],
                &mut inv[..x.len() / d],
            ),
            None => y.copy_from_slice(x),
        }
    }

    /// Backward of [`Net::norm_forward`] from dy `[m, d]`: dx written (or added with
    /// `accumulate`), the gain's and bias's gradients added to `grads`.
    #[allow(clippy::too_many_arguments)]
    fn norm_backward(
        &self,
        at: &Option<NormAt>,
        dy: &[T],
        xhat: &[T],
        inv: &[T],
        dx: &mut [T],
        accumulate: bool,
        grads: &mut Grads<T>,
    ) {
        let d = self.arch.d_model;
        let dx = &mut dx[..dy.len()];
        match at {
            Some(at) => {
                let mut dgain = std::mem::take(&mut grads[at.gain]);
                let dbias = at.bias.map(|b| &mut grads[b][..]);
                ops::norm_backward(
                    self.arch.norm,
                    dy,
                    &xhat[..dy.len()],
                    &inv[..dy.len() / d],
                    self.params[at.gain],
                    &mut dgain,
                    dbias,
                    dx,
                    accumulate,
                );
                grads[at.gain] = dgain;
            }
            None if accumulate => ops::add_assign(dx, dy),
            None => dx.copy_from_slice(dy),
        }
    }

    fn attn_shape(&self, b: usize, tq: usize) -> AttnShape<T> {
        let a = self.arch;
        let scale = T::one() / T::from(a.d_head()).unwrap_or_else(T::one).sqrt();
        AttnShape { rows: b, d: a.d_model, t: a.seq_len, tq, heads: a.heads, scale, causal: a.causal }
    }

    /// Self-attention of the last `tq` positions of key_in `[B, T, d]` over all T → out
    /// `[B, T', d]` (after the o projection and its dropout).
    #[allow(clippy::too_many_arguments)]
    fn attention_forward(
        &self,
        at: &AttnAt,
        key_in: &[T],
        lb: &mut LayerBuffers<Vec<T>>,
        out: &mut [T],
        masks: &BlockMasks<T>,
        b: usize,
        tq: usize,
    ) {
        let (t, d) = (self.arch.seq_len, self.arch.d_model);
        let (m, mq) = (b * t, b * tq);
        let query_in: &[T] = if tq == t {
            key_in
        } else {
            ops::last_positions(key_in, &mut lb.query_in[..mq * d], t, tq, d, false);
            &lb.query_in[..mq * d]
        };
        let (q, k, v) = (&mut lb.q[..mq * d], &mut lb.k[..m * d], &mut lb.v[..m * d]);
        self.linear(&at.q, query_in, q, (mq, d, d)); // [B, T', d]
        self.linear(&at.k, key_in, k, (m, d, d)); // [B, T, d]
        self.linear(&at.v, key_in, v, (m, d, d)); // [B, T, d]
        if let Some(rope) = self.rope {
            rope.turn(q, t, tq, d, false);
            rope.turn(k, t, t, d, false);
        }
        let probs = &mut lb.probs[..b * self.arch.heads * tq * t]; // [B, H, T', T]
        let merged = &mut lb.merged[..mq * d]; // [B, T', d]
        ops::attention_forward(self.attn_shape(b, tq), q, k, v, masks.attn_weights, probs, merged);
        let out = &mut out[..mq * d];
        self.linear(&at.o, merged, out, (mq, d, d)); // [B, T', d]
        if let Some((mask, scale)) = masks.attn_out {
            ops::dropout(out, mask, scale, t, tq, d);
        }
    }

    /// Backward of [`Net::attention_forward`] from dout `[B, T', d]`: the gradient of key_in
    /// added to dx `[B, T, d]`.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        at: &AttnAt,
        key_in: &[T],
        lb: &LayerBuffers<Vec<T>>,
        dout: &[T],
        dx: &mut [T],
        temps: &mut Temps<Vec<T>>,
        masks: &BlockMasks<T>,
        grads: &mut Grads<T>,
        b: usize,
        tq: usize,
    ) {
        let (t, d) = (self.arch.seq_len, self.arch.d_model);
        let (m, mq) = (b * t, b * tq);
        let query_in: &[T] = if tq == t { key_in } else { &lb.query_in[..mq * d] };
        let da = &mut temps.da[..mq * d]; // [B, T', d]
        da.copy_from_slice(&dout[..mq * d]);
        if let Some((mask, scale)) = masks.attn_out {
            ops::dropout(da, mask, scale, t, tq, d);
        }
        let dmerged = &mut temps.dmerged[..mq * d]; // [B, T', d]
        self.linear_backward(&at.o, &lb.merged, da, Some(dmerged), false, grads, (mq, d, d));
        let (dq, dk, dv) = (&mut temps.dq[..mq * d], &mut temps.dk[..m * d], &mut temps.dv[..m * d]);
        let probs = &lb.probs[..b * self.arch.heads * tq * t];
        ops::attention_backward(
            self.attn_shape(b, tq),
            dmerged,
            &lb.q,
            &lb.k,
            &lb.v,
            probs,
            masks.attn_weights,
            dq,
            dk,
            dv,
            &mut temps.scratch,
        );
        if let Some(rope) = self.rope {
            rope.turn(dq, t, tq, d, true);
            rope.turn(dk, t, t, d, true);
        }
        let dx = &mut dx[..m * d];
        self.linear_backward(&at.k, key_in, dk, Some(dx), true, grads, (m, d, d));
        self.linear_backward(&at.v, key_in, dv, Some(dx), true, grads, (m, d, d));
        if tq == t {
            self.linear_backward(&at.q, query_in, dq, Some(dx), true, grads, (m, d, d));
        } else {
            self.linear_backward(&at.q, query_in, dq, Some(da), false, grads, (mq, d, d)); // [B, T', d]
            ops::add_at_last_positions(da, dx, t, tq, d);
        }
    }

    /// The FFN on x `[M, d]` (M = B·T') → out `[M, d]` (after the output dropout).
    #[allow(clippy::too_many_arguments)]
    fn ffn_forward(
        &self,
        at: &FfnAt,
        x: &[T],
        lb: &mut LayerBuffers<Vec<T>>,
        out: &mut [T],
        masks: &BlockMasks<T>,
        b: usize,
        tq: usize,
        training: bool,
    ) {
        let (t, d, f) = (self.arch.seq_len, self.arch.d_model, self.arch.ffn_width);
        let m = b * tq;
        let hidden = &mut lb.hidden[..m * f]; // [M, F]
        let derivative = if training { Some(&mut lb.derivative[..m * f]) } else { None };
        match (self.arch.ffn, &at.w3) {
            (FfnKind::SwiGlu, Some(w3)) => {
                let (act, gate) = (&mut lb.act[..m * f], &mut lb.gate[..m * f]);
                self.linear(&at.w1, x, act, (m, d, f)); // w1·x  [M, F]
                self.linear(w3, x, gate, (m, d, f)); // w3·x  [M, F]
                ops::swiglu_forward(act, derivative, gate, hidden); // silu(w1·x) ⊙ w3·x
            }
            (kind, _) => {
                self.linear(&at.w1, x, hidden, (m, d, f)); // w1·x  [M, F]
                let kind = if kind == FfnKind::Gelu { Activation::Gelu } else { Activation::Relu };
                activation::forward_in_place(kind, hidden, derivative);
            }
        }
        if let Some((mask, scale)) = masks.ffn_hidden {
            ops::dropout(hidden, mask, scale, t, tq, f);
        }
        let out = &mut out[..m * d];
        self.linear(&at.w2, hidden, out, (m, f, d)); // [M, d]
        if let Some((mask, scale)) = masks.ffn_out {
            ops::dropout(out, mask, scale, t, tq, d);
        }
    }

    /// Backward of [`Net::ffn_forward`] from dout `[M, d]`: the gradient of x added to dx.
    #[allow(clippy::too_many_arguments)]
    fn ffn_backward(
        &self,
        at: &FfnAt,
        x: &[T],
        lb: &LayerBuffers<Vec<T>>,
        dout: &[T],
        dx: &mut [T],
        temps: &mut Temps<Vec<T>>,
        masks: &BlockMasks<T>,
        grads: &mut Grads<T>,
        b: usize,
        tq: usize,
    ) {
        let (t, d, f) = (self.arch.seq_len, self.arch.d_model, self.arch.ffn_width);
        let m = b * tq;
        let dd = &mut temps.da[..m * d]; // [M, d]
        dd.copy_from_slice(&dout[..m * d]);
        if let Some((mask, scale)) = masks.ffn_out {
            ops::dropout(dd, mask, scale, t, tq, d);
        }
        let dhidden = &mut temps.dhidden[..m * f]; // [M, F]
        self.linear_backward(&at.w2, &lb.hidden, dd, Some(dhidden), false, grads, (m, f, d));
        if let Some((mask, scale)) = masks.ffn_hidden {
            ops::dropout(dhidden, mask, scale, t, tq, f);
        }
        let dx = &mut dx[..m * d];
        match &at.w3 {
            Some(w3) => {
                let dgate = &mut temps.dgate[..m * f]; // [M, F]
                ops::swiglu_backward(dhidden, &lb.act[..m * f], &lb.gate[..m * f], &lb.derivative[..m * f], dgate);
                self.linear_backward(&at.w1, x, dhidden, Some(&mut *dx), true, grads, (m, d, f));
                self.linear_backward(w3, x, dgate, Some(dx), true, grads, (m, d, f));
            }
            None => {
                activation::backward_in_place(dhidden, &lb.derivative[..m * f]); // d(w1·x)
                self.linear_backward(&at.w1, x, dhidden, Some(dx), true, grads, (m, d, f));
            }
        }
    }

    /// Layer `l` on x_in `[B, T, d]` → x_out `[B, T', d]`.
    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        at: &LayerAt,
        x_in: &[T],
        x_out: &mut [T],
        lb: &mut LayerBuffers<Vec<T>>,
        sub: &mut [T],
        masks: &BlockMasks<T>,
        b: usize,
        tq: usize,
        training: bool,
    ) {
        let (t, d) = (self.arch.seq_len, self.arch.d_model);
        let (m, mq) = (b * t, b * tq);
        let sub = &mut sub[..mq * d];
        match self.arch.placement {
            NormPlacement::Pre => {
                let mut h = std::mem::take(&mut lb.h);
                // every position  [B, T, d]
                self.norm_forward(&at.norm1, x_in, &mut h[..m * d], &mut lb.xhat1, &mut lb.inv1);
                self.attention_forward(&at.attn, &h[..m * d], lb, sub, masks, b, tq); // [B, T', d]
                lb.h = h;
                let x1 = &mut lb.x1[..mq * d];
                ops::last_positions(x_in, x1, t, tq, d, false);
                ops::add_assign(x1, sub); // x1 = x_last + attn  [B, T', d]
                let mut h2 = std::mem::take(&mut lb.h2);
                // [B, T', d]
                self.norm_forward(&at.norm2, &lb.x1[..mq * d], &mut h2[..mq * d], &mut lb.xhat2, &mut lb.inv2);
                self.ffn_forward(&at.ffn, &h2[..mq * d], lb, sub, masks, b, tq, training); // [B, T', d]
                lb.h2 = h2;
                ops::add(&lb.x1[..mq * d], sub, &mut x_out[..mq * d]); // x1 + ffn  [B, T', d]
            }
            NormPlacement::Post => {
                self.attention_forward(&at.attn, x_in, lb, sub, masks, b, tq); // [B, T', d]
                ops::last_positions(x_in, sub, t, tq, d, true); // x_last + attn  [B, T', d]
                let mut x1 = std::mem::take(&mut lb.x1);
                self.norm_forward(&at.norm1, sub, &mut x1[..mq * d], &mut lb.xhat1, &mut lb.inv1); // [B, T', d]
                self.ffn_forward(&at.ffn, &x1[..mq * d], lb, sub, masks, b, tq, training); // [B, T', d]
                ops::add_assign(sub, &x1[..mq * d]); // x1 + ffn  [B, T', d]
                lb.x1 = x1;
                self.norm_forward(&at.norm2, sub, &mut x_out[..mq * d], &mut lb.xhat2, &mut lb.inv2);
                // [B, T', d]
            }
        }
    }

    /// Backward of [`Net::layer_forward`]: dx `[B, T, d]` from dy `[B, T', d]`.
    #[allow(clippy::too_many_arguments)]
    fn layer_backward(
        &self,
        at: &LayerAt,
        x_in: &[T],
        lb: &LayerBuffers<Vec<T>>,
        dy: &[T],
        dx: &mut [T],
        temps: &mut Temps<Vec<T>>,
        masks: &BlockMasks<T>,
        grads: &mut Grads<T>,
        b: usize,
        tq: usize,
    ) {
        let (t, d) = (self.arch.seq_len, self.arch.d_model);
        let (m, mq) = (b * t, b * tq);
        let (dy, dx) = (&dy[..mq * d], &mut dx[..m * d]);
        let mut g1 = std::mem::take(&mut temps.g1);
        let mut g2 = std::mem::take(&mut temps.g2);
        let mut g3 = std::mem::take(&mut temps.g3);
        match self.arch.placement {
            NormPlacement::Pre => {
                // x' = x1 + ffn(norm2(x1)): dy reaches x1 directly and through the FFN.
                let dh2 = &mut g1[..mq * d]; // [B, T', d]
                dh2.fill(T::zero());
                self.ffn_backward(&at.ffn, &lb.h2[..mq * d], lb, dy, dh2, temps, masks, grads, b, tq);
                let dx1 = &mut g2[..mq * d]; // [B, T', d]
                dx1.copy_from_slice(dy);
                self.norm_backward(&at.norm2, dh2, &lb.xhat2, &lb.inv2, dx1, true, grads);
                // x1 = x_last + attn(norm1(x)).
                let dh = &mut g3[..m * d]; // [B, T, d]
                dh.fill(T::zero());
                self.attention_backward(&at.attn, &lb.h[..m * d], lb, dx1, dh, temps, masks, grads, b, tq);
                dx.fill(T::zero());
                ops::add_at_last_positions(dx1, dx, t, tq, d);
                self.norm_backward(&at.norm1, dh, &lb.xhat1, &lb.inv1, dx, true, grads);
                // [B, T, d]
            }
            NormPlacement::Post => {
                let ds2 = &mut g1[..mq * d]; // d(x1 + ffn(x1))  [B, T', d]
                self.norm_backward(&at.norm2, dy, &lb.xhat2, &lb.inv2, ds2, false, grads);
                let dx1 = &mut g2[..mq * d]; // [B, T', d]
                dx1.copy_from_slice(ds2);
                self.ffn_backward(&at.ffn, &lb.x1[..mq * d], lb, ds2, dx1, temps, masks, grads, b, tq);
                let ds1 = &mut g3[..mq * d]; // d(x_last + attn(x))  [B, T', d]
                self.norm_backward(&at.norm1, dx1, &lb.xhat1, &lb.inv1, ds1, false, grads);
                dx.fill(T::zero());
                ops::add_at_last_positions(ds1, dx, t, tq, d);
                self.attention_backward(&at.attn, x_in, lb, ds1, dx, temps, masks, grads, b, tq);
                // [B, T, d]
            }
        }
        (temps.g1, temps.g2, temps.g3) = (g1, g2, g3);
    }

    /// Forward pass of `tokens` `[B, T]` into `buf`, through the logits; with `training`, what
    /// the backward pass needs. `masks`: each layer's dropout (none to evaluate).
    pub fn forward(&self, tokens: &[u32], masks: &[BlockMasks<T>], buf: &mut Buffers<Vec<T>>, training: bool) {
        let a = self.arch;
        let (t, d) = (a.seq_len, a.d_model);
        let b = tokens.len() / t;
        let position = self.layout.position.map(|p| self.params[p]);
        // x₀ [B, T, d]
        ops::embed(tokens, self.params[self.layout.embedding], position, &mut buf.x[0][..b * t * d], t, d);
        for (l, at) in self.layout.layers.iter().enumerate() {
            let (done, rest) = buf.x.split_at_mut(l + 1);
            let tq = self.tq(l);
            self.layer_forward(
                at,
                &done[l][..b * t * d],
                &mut rest[0][..b * tq * d],
                &mut buf.layers[l],
                &mut buf.sub,
                &masks[l],
                b,
                tq,
                training,
            );
        }
        let last = &buf.x[a.layers][..b * d]; // the readout's position  [B, d]
        let readout: &[T] = match &self.layout.final_norm {
            Some(_) => {
                self.norm_forward(
                    &self.layout.final_norm,
                    last,
                    &mut buf.readout,
                    &mut buf.final_xhat,
                    &mut buf.final_inv,
                );
                &buf.readout[..b * d]
            }
            None => last,
        };
        self.linear(&self.layout.unembed, readout, &mut buf.logits, (b, d, a.classes));
        // [B, C]
    }

    /// Row statistics summed over the block, and with `grad_scale` (1/N of the run) the
    /// logits' gradient written over them.
    pub fn loss(&self, labels: &[u32], buf: &mut Buffers<Vec<T>>, grad_scale: Option<T>) -> [f64; N_STATS] {
        let mut sums = [0.0; N_STATS];
        for (x, &label) in buf.logits.chunks_exact_mut(self.arch.classes).zip(labels) {
            let row = loss::row(self.loss, x, label as usize, self.loss_bf16, grad_scale);
            sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        sums
    }

    /// Backward pass of the block from the logits' gradient in `buf` (after [`Net::loss`]),
    /// adding to `grads`.
    pub fn backward(&self, tokens: &[u32], masks: &[BlockMasks<T>], buf: &mut Buffers<Vec<T>>, grads: &mut Grads<T>) {
        let a = self.arch;
        let (t, d) = (a.seq_len, a.d_model);
        let b = tokens.len() / t;
        let Buffers { x, layers, final_xhat, final_inv, readout, logits, dy, dx, temps, .. } = buf;
        let last = &x[a.layers][..b * d]; // [B, d]
        let readout: &[T] = if self.layout.final_norm.is_some() { &readout[..b * d] } else { last };
        let dreadout = &mut temps.g1[..b * d]; // [B, d]
        self.linear_backward(
            &self.layout.unembed,
            readout,
            &logits[..b * a.classes],
            Some(dreadout),
            false,
            grads,
            (b, d, a.classes),
        );
        // d(x_L)  [B, 1, d]
        self.norm_backward(&self.layout.final_norm, dreadout, final_xhat, final_inv, &mut dy[..b * d], false, grads);
        for (l, at) in self.layout.layers.iter().enumerate().rev() {
            let tq = self.tq(l);
            // [B, T, d]
            self.layer_backward(at, &x[l][..b * t * d], &layers[l], dy, dx, temps, &masks[l], grads, b, tq);
            std::mem::swap(dy, dx);
        }
        let mut d_position = self.layout.position.map(|p| std::mem::take(&mut grads[p]));
        ops::embed_backward(
            tokens,
            &dy[..b * t * d],
            &mut grads[self.layout.embedding],
            d_position.as_deref_mut(),
            t,
            d,
        );
        if let (Some(p), Some(g)) = (self.layout.position, d_position) {
            grads[p] = g;
        }
    }
}
