//! The gradients of a transformer's backward pass, stored as each layer's backward reaches its
//! parameters: the block, the attention and the FFN all write into one [`Grads`].

use super::layers::{linear_backward, norm_backward, NormCache};
use super::{LinearAt, NormAt, Transformer};
use anyhow::{bail, ensure, Context, Result};
use candle_core::Tensor;

/// Gradients filled in as the backward pass reaches each parameter, in parameter order.
pub struct Grads(Vec<Option<Tensor>>);

impl Grads {
    pub(super) fn new(count: usize) -> Grads {
        Grads(vec![None; count])
    }

    pub(super) fn put(&mut self, index: usize, grad: Tensor) -> Result<()> {
        ensure!(self.0[index].is_none(), "internal: parameter {index} got two gradients");
        self.0[index] = Some(grad);
        Ok(())
    }

    /// Backward of a Linear layer with the weights at `at`: stores dW (and db), returns dx.
    pub(crate) fn linear(&mut self, model: &Transformer, at: &LinearAt, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        let (dx, dw, db) = linear_backward(dy, x, model.at(at.weight), at.bias.is_some())?;
        self.put(at.weight, dw)?;
        if let (Some(index), Some(db)) = (at.bias, db) {
            self.put(index, db)?;
        }
        Ok(dx)
    }

    /// Backward of a norm (identity without one): stores dg (and db), returns dx.
    pub(super) fn norm(
        &mut self,
        model: &Transformer,
        at: &Option<NormAt>,
        cache: &Option<NormCache>,
        dy: &Tensor,
    ) -> Result<Tensor> {
        match (at, cache) {
            (Some(at), Some(cache)) => {
                let gain = model.at(at.gain);
                let (dx, dgain, dbias) = norm_backward(model.arch.norm, dy, cache, gain, at.bias.is_some())?;
                self.put(at.gain, dgain)?;
                if let (Some(index), Some(db)) = (at.bias, dbias) {
                    self.put(index, db)?;
                }
                Ok(dx)
            }
            (None, None) => Ok(dy.clone()),
            _ => bail!("internal: a norm's cache does not match its parameters"),
        }
    }

    pub(super) fn finish(self, model: &Transformer) -> Result<Vec<Tensor>> {
        let named = |(i, grad): (usize, Option<Tensor>)| {
            grad.with_context(|| format!("internal: {} got no gradient", model.params[i].name))
        };
        self.0.into_iter().enumerate().map(named).collect()
    }
}
