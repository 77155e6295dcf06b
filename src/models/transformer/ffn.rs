//! The blocks' feed-forward network, forward and backward side by side:
//!   SwiGLU:      w2(silu(w1·x) ⊙ w3·x)       silu(a) = a·σ(a), silu'(a) = σ(a)·(1 + a·(1 − σ(a)))
//!   ReLU, GELU:  w2(act(w1·x))               GELU in its erf form
//! with dropout on the hidden units (before w2) and on the output.

use super::grads::Grads;
use super::layers::{dropout, linear_forward};
use super::masks::BlockDropout;
use super::{FfnAt, FfnKind, Transformer};
use crate::kernels::activation;
use crate::kernels::activation::Activation;
use anyhow::Result;
use candle_core::Tensor;

/// What the FFN's backward pass needs.
pub struct FfnCache {
    /// Input `[R, M, d]`.
    input: Tensor,
    /// act(w1·x) `[R, M, F]` (SwiGLU: silu, which the gate's gradient needs).
    act: Tensor,
    /// act'(w1·x) `[R, M, F]`, computed with the activation.
    derivative: Tensor,
    /// SwiGLU's gate w3·x `[R, M, F]`.
    gate: Option<Tensor>,
    /// Hidden units after dropout, w2's input `[R, M, F]`.
    hidden: Tensor,
}

/// silu(a) and silu'(a), sharing σ(a).
fn silu_with_derivative(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let sigmoid = (a.neg()?.exp()? + 1.0)?.recip()?; // σ(a)
    let silu = (a * &sigmoid)?;
    let derivative = (&sigmoid * ((a * (1.0 - &sigmoid)?)? + 1.0)?)?; // σ·(1 + a·(1 − σ))
    Ok((silu, derivative))
}

impl Transformer {
    /// x `[R, M, d]` → `[R, M, d]` (after the output dropout).
    pub(crate) fn ffn_forward(&self, at: &FfnAt, x: &Tensor, drop: &BlockDropout) -> Result<(Tensor, FfnCache)> {
        let bias = |b: Option<usize>| b.map(|i| self.at(i));
        let pre = linear_forward(x, self.at(at.w1.weight), bias(at.w1.bias))?; // w1·x  [R, M, F]
        let (act, derivative) = match self.arch.ffn {
            FfnKind::SwiGlu => silu_with_derivative(&pre)?,
            FfnKind::Relu => {
                (activation::forward(Activation::Relu, &pre)?, activation::derivative(Activation::Relu, &pre)?)
            }
            FfnKind::Gelu => {
                (activation::forward(Activation::Gelu, &pre)?, activation::derivative(Activation::Gelu, &pre)?)
            }
        }; // [R, M, F] each
        let gate = match &at.w3 {
            Some(w3) => Some(linear_forward(x, self.at(w3.weight), bias(w3.bias))?), // w3·x  [R, M, F]
            None => None,
        };
        let hidden = match &gate {
            Some(gate) => (&act * gate)?, // [R, M, F]
            None => act.clone(),
        };
        let hidden = dropout(&hidden, drop.ffn_hidden.as_ref())?; // [R, M, F]
        let out = linear_forward(&hidden, self.at(at.w2.weight), bias(at.w2.bias))?; // [R, M, d]
        let out = dropout(&out, drop.ffn_out.as_ref())?;
        Ok((out, FfnCache { input: x.clone(), act, derivative, gate, hidden }))
    }

    /// Backward of [`Transformer::ffn_forward`]: dx `[R, M, d]` from dout `[R, M, d]`.
    pub(crate) fn ffn_backward(
        &self,
        at: &FfnAt,
        cache: &FfnCache,
        dout: &Tensor,
        drop: &BlockDropout,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let dout = dropout(dout, drop.ffn_out.as_ref())?; // [R, M, d]
        let dhidden = grads.linear(self, &at.w2, &dout, &cache.hidden)?; // [R, M, F]
        let dhidden = dropout(&dhidden, drop.ffn_hidden.as_ref())?;
        let (dact, dx_gate) = match (&cache.gate, &at.w3) {
            (Some(gate), Some(w3)) => {
                let dgate = (&dhidden * &cache.act)?; // [R, M, F]
                ((&dhidden * gate)?, Some(grads.linear(self, w3, &dgate, &cache.input)?))
                // dx via w3  [R, M, d]
            }
            _ => (dhidden, None),
        };
        let dpre = (dact * &cache.derivative)?; // [R, M, F]
        let dx = grads.linear(self, &at.w1, &dpre, &cache.input)?; // [R, M, d]
        Ok(match dx_gate {
            Some(g) => (dx + g)?,
            None => dx,
        })
    }
}
