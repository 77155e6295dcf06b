//! A transformer block and the whole pass (embedding → blocks → readout), forward and
//! backward side by side.
//!
//! The residual stream is `[R, N·T, d]`. A block reads all T positions and writes the last
//! `tq` of them: every block but the last writes all T; the last writes only the last
//! position in [`Transformer::forward`], which is all the readout reads, and all T in
//! [`Transformer::forward_full`].

use super::attention::{AttnCache, Rope};
use super::ffn::FfnCache;
use super::grads::Grads;
use super::layers::{self, last_positions, linear_forward, norm_forward, pad_positions, NormCache};
use super::masks::{BlockDropout, Masks};
use super::{LayerAt, NormAt, NormPlacement, Position, Transformer};
use anyhow::{ensure, Context, Result};
use candle_core::Tensor;

/// What one block's backward pass needs.
pub struct BlockCache {
    /// Positions the block computed (the last tq of T).
    tq: usize,
    norm1: Option<NormCache>,
    attn: AttnCache,
    norm2: Option<NormCache>,
    ffn: FfnCache,
    dropout: BlockDropout,
}

/// What the backward pass needs from the forward pass.
pub struct Cache {
    n: usize,
    t: usize,
    rope: Option<Rope>,
    blocks: Vec<BlockCache>,
    final_norm: Option<NormCache>,
    /// The unembedding's input `[R, N, d]`.
    readout: Tensor,
}

impl Transformer {
    /// A norm (identity without one) on x `[R, M, d]`.
    fn norm(&self, at: &Option<NormAt>, x: &Tensor) -> Result<(Tensor, Option<NormCache>)> {
        match at {
            Some(at) => {
                let (y, cache) = norm_forward(self.arch.norm, x, self.at(at.gain), at.bias.map(|i| self.at(i)))?;
                Ok((y, Some(cache)))
            }
            None => Ok((x.clone(), None)),
        }
    }

    /// One block on x `[R, N·T, d]` → the last `tq` positions `[R, N·tq, d]`.
    fn block_forward(
        &self,
        at: &LayerAt,
        x: &Tensor,
        n: usize,
        tq: usize,
        dropout: BlockDropout,
        rope: Option<&Rope>,
    ) -> Result<(Tensor, BlockCache)> {
        let t = x.dims()[1] / n;
        let x_last = last_positions(x, n, t, tq)?; // the residual at the computed positions  [R, N·tq, d]
        let (out, norm1, attn, norm2, ffn) = match self.arch.placement {
            NormPlacement::Pre => {
                let (h, norm1) = self.norm(&at.norm1, x)?; // every position: keys and values need them  [R, N·T, d]
                let (a, attn) = self.attention_forward(&at.attn, &h, n, tq, &dropout, rope)?; // [R, N·tq, d]
                let x1 = (x_last + a)?; // [R, N·tq, d]
                let (h2, norm2) = self.norm(&at.norm2, &x1)?; // [R, N·tq, d]
                let (f, ffn) = self.ffn_forward(&at.ffn, &h2, &dropout)?; // [R, N·tq, d]
                ((x1 + f)?, norm1, attn, norm2, ffn)
            }
            NormPlacement::Post => {
                let (a, attn) = self.attention_forward(&at.attn, x, n, tq, &dropout, rope)?; // [R, N·tq, d]
                let (x1, norm1) = self.norm(&at.norm1, &(x_last + a)?)?; // [R, N·tq, d]
                let (f, ffn) = self.ffn_forward(&at.ffn, &x1, &dropout)?; // [R, N·tq, d]
                let (x2, norm2) = self.norm(&at.norm2, &(x1 + f)?)?; // [R, N·tq, d]
                (x2, norm1, attn, norm2, ffn)
            }
        };
        Ok((out, BlockCache { tq, norm1, attn, norm2, ffn, dropout }))
    }

    /// Backward of [`Transformer::block_forward`]: dx `[R, N·T, d]` from dy `[R, N·tq, d]`.
    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        at: &LayerAt,
        cache: &BlockCache,
        dy: &Tensor,
        n: usize,
        t: usize,
        rope: Option<&Rope>,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let tq = cache.tq;
        let drop = &cache.dropout;
        match self.arch.placement {
            NormPlacement::Pre => {
                // x2 = x1 + ffn(norm2(x1)): dy reaches x1 directly and through the FFN.
                let dh2 = self.ffn_backward(&at.ffn, &cache.ffn, dy, drop, grads)?; // [R, N·tq, d]
                let dx1 = (dy + grads.norm(self, &at.norm2, &cache.norm2, &dh2)?)?; // [R, N·tq, d]
                                                                                    // x1 = x_last + attn(norm1(x)).
                let dh = self.attention_backward(&at.attn, &cache.attn, &dx1, n, drop, rope, grads)?; // [R, N·T, d]
                Ok((pad_positions(&dx1, n, t, tq)? + grads.norm(self, &at.norm1, &cache.norm1, &dh)?)?)
                // [R, N·T, d]
            }
            NormPlacement::Post => {
                let ds2 = grads.norm(self, &at.norm2, &cache.norm2, dy)?; // d(x1 + ffn(x1))  [R, N·tq, d]
                let dx1 = (&ds2 + self.ffn_backward(&at.ffn, &cache.ffn, &ds2, drop, grads)?)?; // [R, N·tq, d]
                let ds1 = grads.norm(self, &at.norm1, &cache.norm1, &dx1)?; // d(x_last + attn(x))  [R, N·tq, d]
                let dx = self.attention_backward(&at.attn, &cache.attn, &ds1, n, drop, rope, grads)?; // [R, N·T, d]
                Ok((pad_positions(&ds1, n, t, tq)? + dx)?) // [R, N·T, d]
            }
        }
    }

    /// Logits `[R, N, C]` of tokens `[R, N, T]` (u32, each < V), and the cache for
    /// [`Transformer::backward`]. The last block computes the last position only. `masks`:
    /// dropout masks for training (required for every dropout with p > 0), `None` to evaluate.
    pub fn forward(&self, tokens: &Tensor, masks: Option<&Masks>) -> Result<(Tensor, Cache)> {
        self.pass(tokens, masks, true)
    }

    /// [`Transformer::forward`] with every position of the last block computed: the same
    /// logits and gradients, at more cost. For tests.
    pub fn forward_full(&self, tokens: &Tensor, masks: Option<&Masks>) -> Result<(Tensor, Cache)> {
        self.pass(tokens, masks, false)
    }

    fn pass(&self, tokens: &Tensor, masks: Option<&Masks>, shortcut: bool) -> Result<(Tensor, Cache)> {
        let arch = &self.arch;
        let (r, n, t) = tokens.dims3().context("tokens must be [R, N, T]")?;
        ensure!(r == self.runs(), "tokens for {r} runs, the stack has {}", self.runs());
        ensure!(t == arch.seq_len, "rows of {t} tokens, the transformer reads {}", arch.seq_len);
        let rope = match arch.position {
            Position::Rope { base } => Some(Rope::new(base, t, arch.d_head(), self.dtype(), tokens.device())?),
            _ => None,
        };
        let mut x = layers::embedding_forward(self.at(self.layout.embedding), tokens)?; // [R, N·T, d]
        if let Some(position) = self.layout.position {
            x = layers::position_forward(&x, self.at(position), n)?; // [R, N·T, d]
        }
        let mut blocks = Vec::with_capacity(arch.layers);
        for (layer, at) in self.layout.layers.iter().enumerate() {
            let tq = if shortcut && layer + 1 == arch.layers { 1 } else { t };
            let dropout = BlockDropout::of(arch, masks, layer, r, n, tq)?;
            let (y, cache) = self.block_forward(at, &x, n, tq, dropout, rope.as_ref())?; // [R, N·tq, d]
            x = y;
            blocks.push(cache);
        }
        let tq = blocks.last().map_or(t, |b| b.tq);
        let last = last_positions(&x, n, tq, 1)?; // the readout's position  [R, N, d]
        let (readout, final_norm) = self.norm(&self.layout.final_norm, &last)?; // [R, N, d]
        let unembed = &self.layout.unembed;
        let logits = linear_forward(&readout, self.at(unembed.weight), unembed.bias.map(|i| self.at(i)))?; // [R, N, C]
        Ok((logits, Cache { n, t, rope, blocks, final_norm, readout }))
    }

    /// Every parameter's gradient, in the order of `self.params`, from d(loss)/d(logits)
    /// `[R, N, C]` and the cache of the forward pass on `tokens`.
    pub fn backward(&self, tokens: &Tensor, cache: &Cache, dlogits: &Tensor) -> Result<Vec<Tensor>> {
        let (n, t) = (cache.n, cache.t);
        let mut grads = Grads::new(self.params.len());
        let dreadout = grads.linear(self, &self.layout.unembed, dlogits, &cache.readout)?; // [R, N, d]
        let dlast = grads.norm(self, &self.layout.final_norm, &cache.final_norm, &dreadout)?; // [R, N, d]
        let tq = cache.blocks.last().map_or(t, |b| b.tq);
        let mut dx = pad_positions(&dlast, n, tq, 1)?; // [R, N·tq, d]
        for (at, block) in self.layout.layers.iter().zip(&cache.blocks).rev() {
            dx = self.block_backward(at, block, &dx, n, t, cache.rope.as_ref(), &mut grads)?;
            // [R, N·T, d]
        }
        if let Some(position) = self.layout.position {
            grads.put(position, layers::position_backward(&dx, n, t)?)?; // [R, T, d]
        }
        grads.put(self.layout.embedding, layers::embedding_backward(&dx, tokens, self.arch.vocab)?)?; // [R, V, d]
        grads.finish(self)
    }
}
