//! The transformer's keys (`model.layers`, `model.d_model`, `model.heads`, `model.ffn`, …),
//! read into real enums and checked once, together with the training keys the transformer does
//! not support yet.

use crate::config::schema::Keys;
use crate::models::MAX_LAYERS;
use crate::tasks::Symbols;
use anyhow::{bail, Result};

/// How a row of a binary operation becomes a transformer's tokens (op = p, = = p + 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenLayout {
    /// [a, op, b, =]: Tveit et al.'s code, Power et al.
    AOpBEq,
    /// [a, b, =]: Nanda et al.
    ABEq,
    /// [a, b]: Prieto et al.
    AB,
}

/// The FFN of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnKind {
    /// w2(silu(w1·x) ⊙ w3·x).
    SwiGlu,
    /// w2(relu(w1·x)).
    Relu,
    /// w2(gelu(w1·x)), GELU in its erf form.
    Gelu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// x / √(mean(x²) + ε) ⊙ g.
    Rms,
    /// (x − mean) / √(var + ε) ⊙ g + b.
    Layer,
    /// No norm (and no norm parameters).
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormPlacement {
    /// x + f(norm(x)), and a final norm before the unembedding.
    Pre,
    /// norm(x + f(x)), as PyTorch's nn.TransformerEncoderLayer; no final norm.
    Post,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Position {
    /// Rotary: adjacent pairs (2i, 2i+1) of each head's queries and keys turn by t·θ_i at
    /// position t, θ_i = base^(−2i/e).
    Rope { base: f64 },
    /// A learned absolute embedding `[T, d]` added to the token embedding.
    Learned,
    /// No positional information (the causal mask may still supply some).
    None,
}

/// Dropout probabilities (inverted dropout: kept units scale by 1/(1 − p)) at the four places
/// PyTorch's encoder layer has them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dropout {
    /// On the attention weights, after the softmax.
    pub attn_weights: f64,
    /// On the attention's output, after the o projection.
    pub attn_out: f64,
    /// On the FFN's hidden units, before w2.
    pub ffn_hidden: f64,
    /// On the FFN's output, after w2.
    pub ffn_out: f64,
}

impl Dropout {
    pub fn any(&self) -> bool {
        [self.attn_weights, self.attn_out, self.ffn_hidden, self.ffn_out].iter().any(|&p| p > 0.0)
    }
}

impl FfnKind {
    /// Its `model.ffn` name.
    pub fn name(self) -> &'static str {
        match self {
            FfnKind::SwiGlu => "swiglu",
            FfnKind::Relu => "relu",
            FfnKind::Gelu => "gelu",
        }
    }
}

impl NormKind {
    /// Its `model.norm` name.
    pub fn name(self) -> &'static str {
        match self {
            NormKind::Rms => "rms",
            NormKind::Layer => "layer",
            NormKind::None => "none",
        }
    }
}

impl Position {
    /// Its `model.positional` name.
    pub fn name(self) -> &'static str {
        match self {
            Position::Rope { .. } => "rope",
            Position::Learned => "learned",
            Position::None => "none",
        }
    }
}

/// The transformer's settings, as the sweep gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerConfig {
    pub layers: usize,
    pub d_model: usize,
    pub heads: usize,
    pub ffn: FfnKind,
    /// FFN hidden width F (`model.ffn_width`, 0 meaning 4·d_model, resolved).
    pub ffn_width: usize,
    pub norm: NormKind,
    pub placement: NormPlacement,
    pub position: Position,
    pub causal: bool,
    pub bias: bool,
    pub tokens: TokenLayout,
    pub dropout: Dropout,
}

impl TransformerConfig {
    pub fn from_keys(keys: Keys) -> Result<TransformerConfig> {
        let d_model = keys.int("model.d_model")?;
        let ffn_width = keys.int("model.ffn_width")?;
        let config = TransformerConfig {
            layers: keys.int("model.layers")?,
            d_model,
            heads: keys.int("model.heads")?,
            ffn: keys.choice("model.ffn", &[FfnKind::SwiGlu, FfnKind::Relu, FfnKind::Gelu].map(|k| (k.name(), k)))?,
            ffn_width: if ffn_width == 0 { 4 * d_model } else { ffn_width },
            norm: keys
                .choice("model.norm", &[NormKind::Rms, NormKind::Layer, NormKind::None].map(|k| (k.name(), k)))?,
            placement: keys
                .choice("model.norm_position", &[("pre", NormPlacement::Pre), ("post", NormPlacement::Post)])?,
            position: match keys.string("model.positional")? {
                "rope" => Position::Rope { base: keys.float("model.rope_base")? },
                "learned" => Position::Learned,
                "none" => Position::None,
                other => bail!("key `model.positional`: \"{other}\" is not one of rope, learned, none"),
            },
            causal: keys.boolean("model.causal")?,
            bias: keys.boolean("model.bias")?,
            tokens: keys.choice(
                "model.tokens",
                &[("a_op_b_eq", TokenLayout::AOpBEq), ("a_b_eq", TokenLayout::ABEq), ("a_b", TokenLayout::AB)],
            )?,
            dropout: Dropout {
                attn_weights: keys.float("model.dropout_attention")?,
                attn_out: keys.float("model.dropout_attention_output")?,
                ffn_hidden: keys.float("model.dropout_ffn_hidden")?,
                ffn_out: keys.float("model.dropout_ffn_output")?,
            },
        };
        config.check(keys)?;
        Ok(config)
    }

    fn check(&self, keys: Keys) -> Result<()> {
        if !self.d_model.is_multiple_of(self.heads) {
            bail!("key `model.heads`: {} heads do not divide model.d_model = {}", self.heads, self.d_model);
        }
        if matches!(self.position, Position::Rope { .. }) && !(self.d_model / self.heads).is_multiple_of(2) {
            bail!(
                "key `model.positional`: RoPE rotates pairs, so the head width d_model / heads = {} must be even",
                self.d_model / self.heads
            );
        }
        if keys.string("train.constraint")? != "none" {
            bail!(
                "key `train.constraint`: the spectral constraints project the MLP's Linear layers; the transformer's \
                 are not wired to them yet, so set it to \"none\" or model.kind = \"mlp\""
            );
        }
        if keys.string("train.optimizer")? == "scion" {
            bail!(
                "key `train.optimizer`: scion's groups (Spectral, Sign, ColNorm) are set for the MLP's layers; the \
                 transformer's norms, biases and attention have none yet, so use another optimizer or \
                 model.kind = \"mlp\""
            );
        }
        if keys.boolean("metrics.lipschitz")? {
            bail!(
                "key `metrics.lipschitz`: the product of spectral norms bounds nothing for a transformer (attention \
                 is not a product of Linear maps); set it to false"
            );
        }
        if !matches!(keys.string("train.dtype")?, "f32" | "f64") {
            bail!("key `train.dtype`: the transformer trains in f32 or f64 for now");
        }
        if self.layers > MAX_LAYERS || self.d_model > 1 << 14 {
            bail!(
                "key `model.layers`/`model.d_model`: more than {MAX_LAYERS} layers or a width above 16384 are not \
                 supported"
            );
        }
        Ok(())
    }

    /// Tokens per row and the vocabulary: a pair's tokens follow `model.tokens` (op = p, = = p + 1,
    /// or = = p without op); a bit string's tokens are its bits (0, 1) then = (2), except with `a_b`.
    pub fn token_shape(&self, symbols: Symbols) -> (usize, usize) {
        let eq = self.tokens != TokenLayout::AB;
        match symbols {
            Symbols::Bits { n } => (n + usize::from(eq), 2 + usize::from(eq)),
            Symbols::Operands { p } => match self.tokens {
                TokenLayout::AOpBEq => (4, p + 2),
                TokenLayout::ABEq => (3, p + 1),
                TokenLayout::AB => (2, p),
            },
        }
    }
}
