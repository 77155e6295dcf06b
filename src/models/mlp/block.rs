//! The network on one block of one run's rows, forward and backward side by side.
//!
//! Shapes: B rows of the block, K table indices per row, C classes, H_i hidden widths, k
//! hidden layers.
//!   first layer:  z₀ = gather(table, indices)      table [V, H₀], indices [B, K] → [B, H₀]
//!   hidden layer: a_i = act(z_i);  z_{i+1} = a_i · W_{i+1}    W_{i+1} [H_i, H_{i+1}]
//!   output:       logits = α · a_{k−1} · W_k        W_k [H_{k−1}, C] → [B, C]
//! Values are rounded to bf16 where the tensor path stores them (see `kernels::round`).

use crate::cpu::matmul::{matmul, Layout};
use crate::kernels::activation::Activation;
use crate::kernels::loss::Loss;
use crate::kernels::loss::{self, N_STATS};
use crate::kernels::round::round_slice;
use crate::kernels::{activation, gather, Real};

/// What every block of a stack shares: shapes, kinds and one run's weights.
pub struct Net<'a, T> {
    pub classes: usize,
    /// Table indices per row (K).
    pub row_width: usize,
    pub hidden: &'a [usize],
    pub activation: Activation,
    pub alpha: T,
    pub loss: Loss,
    pub loss_bf16: bool,
    /// Activations, logits and gradients are stored in bf16.
    pub bf16: bool,
    /// The first layer's lookup table of this run, `[V, H₀]`.
    pub table: &'a [T],
    /// Linear layers 1..=k of this run: W_i `[H_{i−1}, H_i]`.
    pub weights: Vec<&'a [T]>,
}

/// The activations of one block, reused from block to block.
pub struct Buffers<T> {
    /// z_i, then a_i in place, `[B, H_i]` for every hidden layer.
    post: Vec<Vec<T>>,
    /// act'(z_i) `[B, H_i]` (training only).
    derivative: Vec<Vec<T>>,
    /// Logits `[B, C]`, then d(loss)/d(logits) in place.
    logits: Vec<T>,
    /// The backward pass's two gradients in flight, `[B, widest]` each.
    delta: [Vec<T>; 2],
}

impl<T> Buffers<T> {
    /// The buffers from a set of vectors of [`Net::buffer_lengths`].
    pub fn from_set(mut set: Vec<Vec<T>>) -> Buffers<T> {
        let k = (set.len() - 3) / 2;
        let delta = [set.pop().unwrap_or_default(), set.pop().unwrap_or_default()];
        let logits = set.pop().unwrap_or_default();
        let derivative = set.split_off(k);
        Buffers { post: set, derivative, logits, delta }
    }

    /// The first `len` logits `[B, C]` after [`Net::forward`].
    pub fn logits(&self, len: usize) -> &[T] {
        &self.logits[..len]
    }

    /// The vectors back, for the next block's buffers.
    pub fn into_set(self) -> Vec<Vec<T>> {
        let Buffers { mut post, derivative, logits, delta: [d0, d1] } = self;
        post.extend(derivative);
        post.extend([logits, d1, d0]);
        post
    }
}

/// What a chunk of rows adds to its run's gradients: the lookup table's `[V, H₀]`, then
/// dW_i `[H_{i−1}, H_i]` for i = 1..=k.
pub type Grads<T> = Vec<Vec<T>>;

impl<T: Real + 'static> Net<'_, T> {
    /// Widths of the layers' outputs: H₀, …, H_{k−1}, C.
    fn width(&self, layer: usize) -> usize {
        if layer < self.hidden.len() {
            self.hidden[layer]
        } else {
            self.classes
        }
    }

    /// Lengths of the [`Buffers`] for blocks of up to `rows` rows, in [`Buffers::from_set`]'s order.
    pub fn buffer_lengths(&self, rows: usize, training: bool) -> Vec<usize> {
        let widest = self.hidden.iter().copied().max().unwrap_or(0).max(self.classes);
        let mut lengths: Vec<usize> = self.hidden.iter().map(|&h| rows * h).collect(); // post
        lengths.extend(self.hidden.iter().map(|&h| if training { rows * h } else { 0 })); // derivative
        lengths.push(rows * self.classes); // logits
        lengths.extend([if training { rows * widest } else { 0 }; 2]); // delta
        lengths
    }

    /// Lengths of the [`Grads`]: the table's, then every dW_i's.
    pub fn grad_lengths(&self) -> Vec<usize> {
        let mut lengths = vec![self.table.len()];
        lengths.extend((1..=self.hidden.len()).map(|layer| self.width(layer - 1) * self.width(layer)));
        lengths
    }

    fn store(&self, values: &mut [T]) {
        if self.bf16 {
            round_slice(values);
        }
    }

    /// Forward pass of table `indices` `[B, K]` into `buf`; with `training`, act'(z) is kept.
    pub fn forward(&self, indices: &[u32], buf: &mut Buffers<T>, training: bool) {
        let b = indices.len() / self.row_width;
        let k = self.hidden.len();
        let z0 = &mut buf.post[0][..b * self.hidden[0]];
        gather::gather_rows(self.table, indices, self.row_width, self.hidden[0], z0); // z₀ [B, H₀]
        self.store(z0);
        for i in 0..k {
            let (h_in, h_out) = (self.width(i), self.width(i + 1));
            let (done, rest) = buf.post.split_at_mut(i + 1);
            let a = &mut done[i][..b * h_in];
            let derivative = if training { Some(&mut buf.derivative[i][..b * h_in]) } else { None };
            activation::forward_in_place(self.activation, a, derivative); // a_i = act(z_i) [B, H_i]
            self.store(a);
            let z_next = if i + 1 < k { &mut rest[0][..b * h_out] } else { &mut buf.logits[..b * h_out] };
            matmul(z_next, a, Layout::Plain, self.weights[i], Layout::Plain, (b, h_in, h_out), false); // [B, H_{i+1}]
            self.store(z_next);
        }
        if self.alpha != T::one() {
            let logits = &mut buf.logits[..b * self.classes];
            logits.iter_mut().for_each(|x| *x *= self.alpha);
            self.store(logits);
        }
    }

    /// Row statistics summed over the block, and with `grad_scale` (1/N of the run) the
    /// logits' gradient written over them.
    pub fn loss(&self, labels: &[u32], buf: &mut Buffers<T>, grad_scale: Option<T>) -> [f64; N_STATS] {
        let mut sums = [0.0; N_STATS];
        for (x, &label) in buf.logits.chunks_exact_mut(self.classes).zip(labels) {
            let row = loss::row(self.loss, x, label as usize, self.loss_bf16, grad_scale);
            sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        if grad_scale.is_some() {
            let dlogits = &mut buf.logits[..labels.len() * self.classes];
            self.store(dlogits);
            if self.alpha != T::one() {
                dlogits.iter_mut().for_each(|g| *g *= self.alpha); // d/dz of α·z
                self.store(dlogits);
            }
        }
        sums
    }

    /// Backward pass of the block from the logits' gradient in `buf` (after [`Net::loss`]),
    /// adding to `grads`.
    pub fn backward(&self, indices: &[u32], buf: &mut Buffers<T>, grads: &mut Grads<T>) {
        let b = indices.len() / self.row_width;
        let k = self.hidden.len();
        let Buffers { post, derivative, logits, delta } = buf;
        // dout: the gradient of layer i's output, [B, H_i]; it lives in `logits` first, then in
        // the two delta buffers in turn.
        let mut current: usize = 2; // 2 = logits, 0 or 1 = delta[_]
        for i in (1..=k).rev() {
            let (h_in, h_out) = (self.width(i - 1), self.width(i));
            let a_in = &post[i - 1][..b * h_in];
            let next = if current == 0 { 1 } else { 0 };
            let [d0, d1] = &mut *delta;
            let (dout, da): (&[T], &mut [T]) = match current {
                2 => (&logits[..b * h_out], &mut d0[..b * h_in]),
                0 => (&d0[..b * h_out], &mut d1[..b * h_in]),
                _ => (&d1[..b * h_out], &mut d0[..b * h_in]),
            };
            // dW_i += a_{i−1}ᵀ · dout
            matmul(&mut grads[i], a_in, Layout::Transposed, dout, Layout::Plain, (h_in, b, h_out), true);
            // da = dout · W_iᵀ [B, H_{i−1}]
            matmul(da, dout, Layout::Plain, self.weights[i - 1], Layout::Transposed, (b, h_out, h_in), false);
            self.store(da);
            activation::backward_in_place(da, &derivative[i - 1][..b * h_in]); // dz_{i−1} = da ⊙ act'(z_{i−1})
            self.store(da);
            current = next;
        }
        let dz0 = match current {
            2 => &logits[..b * self.hidden[0]],
            0 => &delta[0][..b * self.hidden[0]],
            _ => &delta[1][..b * self.hidden[0]],
        };
        gather::scatter_rows(dz0, indices, self.row_width, self.hidden[0], &mut grads[0]);
        // d_table += scatter(dz₀)
    }
}
