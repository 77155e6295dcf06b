//! Dropout masks, passed into the forward pass as tensors so that tests can fix them and a
//! trainer can draw them from each run's own generator.
//!
//! A mask is 0/1 (1 = kept) in the parameters' dtype and covers every position, even where
//! the last block computes the last position only (it then reads the last position's part):
//! so the shortcut and the full computation see the same dropout.

use super::TransformerArch;
use crate::rng::Rng;
use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor};

/// The masks of one block; `None` where that dropout's probability is 0.
#[derive(Clone, Debug, Default)]
pub struct LayerMasks {
    /// On the attention weights `[R, N, H, T, T]` (query, then key position).
    pub attn_weights: Option<Tensor>,
    /// On the attention output `[R, N, T, d]`.
    pub attn_out: Option<Tensor>,
    /// On the FFN's hidden units `[R, N, T, F]`.
    pub ffn_hidden: Option<Tensor>,
    /// On the FFN output `[R, N, T, d]`.
    pub ffn_out: Option<Tensor>,
}

/// The masks of every block.
#[derive(Clone, Debug, Default)]
pub struct Masks {
    pub layers: Vec<LayerMasks>,
}

impl Masks {
    /// Keep masks for `rows` rows of every run, unit kept with probability 1 − p; run r's from
    /// `rngs[r]` alone, so a run's masks do not depend on its stack.
    pub fn sample(arch: &TransformerArch, rngs: &mut [Rng], rows: usize, dtype: DType, device: &Device) -> Result<Masks> {
        let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
        let p = arch.dropout;
        let r = rngs.len();
        let mut draw = |prob: f64, shape: &[usize]| -> Result<Option<Tensor>> {
            if prob == 0.0 {
                return Ok(None);
            }
            let per_run: usize = shape.iter().product();
            let data: Vec<f64> = rngs.iter_mut().flat_map(|rng| (0..per_run).map(|_| f64::from(u8::from(rng.uniform() >= prob))).collect::<Vec<_>>()).collect();
            let mut full = vec![r];
            full.extend(shape);
            Ok(Some(Tensor::from_vec(data, full, device)?.to_dtype(dtype)?))
        };
        let layers = (0..arch.layers)
            .map(|_| {
                Ok(LayerMasks {
                    attn_weights: draw(p.attn_weights, &[rows, h, t, t])?,
                    attn_out: draw(p.attn_out, &[rows, t, d])?,
                    ffn_hidden: draw(p.ffn_hidden, &[rows, t, f])?,
                    ffn_out: draw(p.ffn_out, &[rows, t, d])?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Masks { layers })
    }

    /// The masks of the runs at `start..start + len`.
    pub fn narrow_runs(&self, start: usize, len: usize) -> Result<Masks> {
        let narrow = |m: &Option<Tensor>| -> Result<Option<Tensor>> { Ok(match m { Some(m) => Some(m.narrow(0, start, len)?), None => None }) };
        let layers = self
            .layers
            .iter()
            .map(|l| Ok(LayerMasks { attn_weights: narrow(&l.attn_weights)?, attn_out: narrow(&l.attn_out)?, ffn_hidden: narrow(&l.ffn_hidden)?, ffn_out: narrow(&l.ffn_out)? }))
            .collect::<Result<_>>()?;
        Ok(Masks { layers })
    }
}

/// One block's dropout factors (mask / (1 − p)) as the block's tensors are laid out, for the
/// last `tq` of T positions.
#[derive(Clone, Debug, Default)]
pub struct BlockDropout {
    /// `[R·N·H, tq, T]`.
    pub attn_weights: Option<Tensor>,
    /// `[R, N·tq, d]`.
    pub attn_out: Option<Tensor>,
    /// `[R, N·tq, F]`.
    pub ffn_hidden: Option<Tensor>,
    /// `[R, N·tq, d]`.
    pub ffn_out: Option<Tensor>,
}

impl BlockDropout {
    /// Block `layer`'s factors from `masks`; no dropout at all without masks (evaluation).
    /// r runs, n rows, t positions, tq of them computed.
    pub fn of(arch: &TransformerArch, masks: Option<&Masks>, layer: usize, r: usize, n: usize, tq: usize) -> Result<BlockDropout> {
        let Some(masks) = masks else { return Ok(BlockDropout::default()) };
        ensure!(masks.layers.len() == arch.layers, "dropout masks for {} layers, the transformer has {}", masks.layers.len(), arch.layers);
        let m = &masks.layers[layer];
        let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
        let p = arch.dropout;
        // The factor for a mask laid out `[R, N, T, width]`, at the last tq positions: [R, N·tq, width].
        let per_position = |mask: &Option<Tensor>, prob: f64, width: usize, what: &str| -> Result<Option<Tensor>> {
            if prob == 0.0 {
                return Ok(None);
            }
            let Some(mask) = mask else { anyhow::bail!("dropout {prob} on the {what} of layer {layer} but no mask") };
            ensure!(mask.dims() == [r, n, t, width], "layer {layer}'s {what} mask is {:?}, expected {:?}", mask.dims(), [r, n, t, width]);
            let last = mask.narrow(2, t - tq, tq)?.contiguous()?.reshape((r, n * tq, width))?; // [R, N·tq, width]
            Ok(Some(super::layers::dropout_factor(&last, prob)?))
        };
        let attn_weights = if p.attn_weights == 0.0 {
            None
        } else {
            let Some(mask) = &m.attn_weights else { anyhow::bail!("dropout on the attention weights of layer {layer} but no mask") };
            ensure!(mask.dims() == [r, n, h, t, t], "layer {layer}'s attention weight mask is {:?}, expected {:?}", mask.dims(), [r, n, h, t, t]);
            let last = mask.reshape((r * n * h, t, t))?.narrow(1, t - tq, tq)?.contiguous()?; // [R·N·H, tq, T]
            Some(super::layers::dropout_factor(&last, p.attn_weights)?)
        };
        Ok(BlockDropout {
            attn_weights,
            attn_out: per_position(&m.attn_out, p.attn_out, d, "attention output")?,
            ffn_hidden: per_position(&m.ffn_hidden, p.ffn_hidden, f, "FFN hidden")?,
            ffn_out: per_position(&m.ffn_out, p.ffn_out, d, "FFN output")?,
        })
    }
}
