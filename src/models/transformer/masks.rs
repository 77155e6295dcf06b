//! Dropout masks, passed into the forward pass as tensors so that tests can fix them and a
//! trainer can draw them from each run's own key ([`super::mask_bits`] defines every bit).
//!
//! A mask is 0/1 (1 = kept) in the parameters' dtype and covers every position, even where
//! the last block computes the last position only (it then reads the last position's part):
//! so the shortcut and the full computation see the same dropout.

use super::mask_bits::{DropoutPlace, StepDropout};
use super::TransformerArch;
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

/// One run's keep masks (1 = kept) of one block for `rows` rows; `None` where that dropout's
/// probability is 0. Shapes as [`LayerMasks`] without the run axis.
#[derive(Clone, Debug, Default)]
pub struct RunLayerMasks {
    /// `[N, H, T, T]`.
    pub attn_weights: Option<Vec<u8>>,
    /// `[N, T, d]`.
    pub attn_out: Option<Vec<u8>>,
    /// `[N, T, F]`.
    pub ffn_hidden: Option<Vec<u8>>,
    /// `[N, T, d]`.
    pub ffn_out: Option<Vec<u8>>,
}

/// One run's keep masks of every block.
#[derive(Clone, Debug, Default)]
pub struct RunMasks {
    pub layers: Vec<RunLayerMasks>,
}

impl RunMasks {
    /// The masks of one run at one step for `rows` rows: unit e of a site kept by
    /// [`super::mask_bits::DropoutSite::keeps`]`(e)`, units in row-major order. The one place
    /// masks are materialized: [`Masks::sample`] builds its tensors from these, and the CPU
    /// pass reads them as they are.
    pub fn draw(arch: &TransformerArch, dropout: &StepDropout, rows: usize) -> RunMasks {
        let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
        let p = arch.dropout;
        let layers = (0..arch.layers)
            .map(|layer| {
                let draw = |place: DropoutPlace, prob: f64, units: usize| {
                    (prob > 0.0).then(|| {
                        let mut mask = vec![0; units];
                        dropout.site(layer, place, prob).fill(0, &mut mask);
                        mask
                    })
                };
                RunLayerMasks {
                    attn_weights: draw(DropoutPlace::AttnWeights, p.attn_weights, rows * h * t * t),
                    attn_out: draw(DropoutPlace::AttnOut, p.attn_out, rows * t * d),
                    ffn_hidden: draw(DropoutPlace::FfnHidden, p.ffn_hidden, rows * t * f),
                    ffn_out: draw(DropoutPlace::FfnOut, p.ffn_out, rows * t * d),
                }
            })
            .collect();
        RunMasks { layers }
    }
}

impl Masks {
    /// Keep masks for `rows` rows of every run, unit kept with probability 1 − p; run r's from
    /// `runs[r]` alone (by [`RunMasks::draw`], what the CPU pass reads), so a run's masks do
    /// not depend on its stack.
    pub fn sample(
        arch: &TransformerArch,
        runs: &[StepDropout],
        rows: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Masks> {
        let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
        let r = runs.len();
        let runs: Vec<RunMasks> = runs.iter().map(|run| RunMasks::draw(arch, run, rows)).collect();
        // One kind of one layer, every run's units one after another: `[R, shape...]`.
        let stack = |pick: &dyn Fn(&RunLayerMasks) -> &Option<Vec<u8>>,
                     layer: usize,
                     shape: &[usize]|
         -> Result<Option<Tensor>> {
            if pick(&runs[0].layers[layer]).is_none() {
                return Ok(None);
            }
            let data: Vec<u8> = runs
                .iter()
                .flat_map(|run| pick(&run.layers[layer]).as_deref().unwrap_or_default().iter().copied())
                .collect();
            let mut full = vec![r];
            full.extend(shape);
            Ok(Some(Tensor::from_vec(data, full, device)?.to_dtype(dtype)?))
        };
        let layers = (0..arch.layers)
            .map(|l| {
                Ok(LayerMasks {
                    attn_weights: stack(&|m| &m.attn_weights, l, &[rows, h, t, t])?,
                    attn_out: stack(&|m| &m.attn_out, l, &[rows, t, d])?,
                    ffn_hidden: stack(&|m| &m.ffn_hidden, l, &[rows, t, f])?,
                    ffn_out: stack(&|m| &m.ffn_out, l, &[rows, t, d])?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Masks { layers })
    }

    /// The masks of the runs at `start..start + len`.
    pub fn narrow_runs(&self, start: usize, len: usize) -> Result<Masks> {
        let narrow = |m: &Option<Tensor>| -> Result<Option<Tensor>> {
            Ok(match m {
                Some(m) => Some(m.narrow(0, start, len)?),
                None => None,
            })
        };
        let layers = self
            .layers
            .iter()
            .map(|l| {
                Ok(LayerMasks {
                    attn_weights: narrow(&l.attn_weights)?,
                    attn_out: narrow(&l.attn_out)?,
                    ffn_hidden: narrow(&l.ffn_hidden)?,
                    ffn_out: narrow(&l.ffn_out)?,
                })
            })
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
    pub fn of(
        arch: &TransformerArch,
        masks: Option<&Masks>,
        layer: usize,
        r: usize,
        n: usize,
        tq: usize,
    ) -> Result<BlockDropout> {
        let Some(masks) = masks else { return Ok(BlockDropout::default()) };
        ensure!(
            masks.layers.len() == arch.layers,
            "dropout masks for {} layers, the transformer has {}",
            masks.layers.len(),
            arch.layers
        );
        let m = &masks.layers[layer];
        let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
        let p = arch.dropout;
        // The factor for a mask laid out `[R, N, T, width]`, at the last tq positions: [R, N·tq, width].
        let per_position = |mask: &Option<Tensor>, prob: f64, width: usize, what: &str| -> Result<Option<Tensor>> {
            if prob == 0.0 {
                return Ok(None);
            }
            let Some(mask) = mask else { anyhow::bail!("dropout {prob} on the {what} of layer {layer} but no mask") };
            ensure!(
                mask.dims() == [r, n, t, width],
                "layer {layer}'s {what} mask is {:?}, expected {:?}",
                mask.dims(),
                [r, n, t, width]
            );
            let last = mask.narrow(2, t - tq, tq)?.contiguous()?.reshape((r, n * tq, width))?; // [R, N·tq, width]
            Ok(Some(super::layers::dropout_factor(&last, prob)?))
        };
        let attn_weights = if p.attn_weights == 0.0 {
            None
        } else {
            let Some(mask) = &m.attn_weights else {
                anyhow::bail!("dropout on the attention weights of layer {layer} but no mask")
            };
            ensure!(
                mask.dims() == [r, n, h, t, t],
                "layer {layer}'s attention weight mask is {:?}, expected {:?}",
                mask.dims(),
                [r, n, h, t, t]
            );
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
