//! The MLP's keys (`model.input`, `model.embed_dim`, `model.hidden`, `model.activation`,
//! `model.alpha`), read and checked once.

use crate::config::schema::Keys;
use crate::kernels::activation::Activation;
use crate::models::MAX_LAYERS;
use crate::tasks::{Symbols, TaskShape};
use anyhow::{bail, Result};

/// How a row's operands enter the first layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// concat(onehot(a), onehot(b)) into Linear(2p, H₀).
    TwoHot,
    /// One table Embedding(p, d) shared by both operands, concatenated to 2d.
    Embedding,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    pub input: Input,
    /// The embedding's width d (embedding input only).
    pub embed_dim: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// The logits' scale.
    pub alpha: f64,
}

impl MlpConfig {
    pub fn from_keys(keys: Keys, task: &TaskShape) -> Result<MlpConfig> {
        let config = MlpConfig {
            input: keys.choice("model.input", &[("two_hot", Input::TwoHot), ("embedding", Input::Embedding)])?,
            embed_dim: keys.int("model.embed_dim")?,
            hidden: keys.ints("model.hidden")?,
            activation: keys.choice(
                "model.activation",
                &[("relu", Activation::Relu), ("gelu", Activation::Gelu), ("tanh", Activation::Tanh)],
            )?,
            alpha: keys.float("model.alpha")?,
        };
        if keys.float("train.embed_rms_cap")? > 0.0 && config.input == Input::TwoHot {
            bail!(
                "key `train.embed_rms_cap`: model.input = \"two_hot\" has no embedding to cap; set it to 0 or \
                 model.input = \"embedding\""
            );
        }
        if matches!(task.symbols, Symbols::Bits { .. }) && config.input == Input::Embedding {
            bail!(
                "key `model.input`: a bit task enters the MLP as its 0/1 vector through the first Linear layer; \
                 set model.input = \"two_hot\""
            );
        }
        if config.hidden.iter().any(|&h| h > 1 << 16) || config.embed_dim > 1 << 16 {
            bail!("key `model.hidden`/`model.embed_dim`: widths above 65536 are not supported");
        }
        // Keeps every size estimate far from overflowing, and is far deeper than any grokking MLP.
        if config.hidden.len() > MAX_LAYERS {
            bail!("key `model.hidden`: {} hidden layers are more than the supported {MAX_LAYERS}", config.hidden.len());
        }
        Ok(config)
    }
}
