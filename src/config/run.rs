//! The typed configuration of one run, and the key that decides which runs can share a stack.

use super::schema::Value;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    TwoHot,
    Embedding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Optimizer {
    AdamW,
    OrthoAdamW,
    Sgd,
    Muon,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    F32,
    F64,
    /// Everything stored in bf16, as the reference's Lipschitz grid ran.
    Bf16,
    /// bf16 compute with f32 master weights and optimizer state.
    Bf16Mixed,
}

/// When a run leaves its stack before its epoch budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stop {
    /// Never early, except a diverged run, which always stops (see [`Stop::Diverged`]).
    Never,
    /// When its metrics go non-finite.
    Diverged,
    /// Diverged, or `extra_epochs` after test accuracy first reaches 0.95.
    Grok,
    /// Diverged, or `extra_epochs` after test accuracy first reaches 1.0.
    Solve,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Loss {
    Softmax,
    StableMax,
    Sparsemax,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    pub op: Op,
    pub p: usize,
    pub train_fraction: f64,
    pub input: Input,
    pub embed_dim: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub alpha: f64,
    pub epochs: usize,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub all_reg: bool,
    pub momentum: f64,
    pub muon_momentum: f64,
    pub muon_adam_lr: f64,
    pub ns_steps: usize,
    pub reference_ortho_defaults: bool,
    pub precision: Precision,
    pub loss: Loss,
    /// The loss and softmax sums are kept in bf16.
    pub loss_bf16: bool,
    pub log_every: usize,
    pub stop: Stop,
    pub extra_epochs: usize,
    /// Steps between checkpoints (0: none).
    pub checkpoint_every: usize,
    pub lipschitz: bool,
    pub power_iters: usize,
}

/// Everything that must be equal for runs to share one stack: the tensor shapes and the
/// code path. The per-run quantities (seed, op, lr, weight decay, betas, eps, all_reg) are
/// tensors with a leading R axis and may differ inside a stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    pub p: usize,
    pub n_pairs: usize,
    pub n_train: usize,
    pub input: Input,
    pub embed_dim: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub alpha_bits: u64,
    pub epochs: usize,
    pub optimizer: Optimizer,
    pub ns_steps: usize,
    pub precision: Precision,
    pub loss: Loss,
    /// The loss and softmax sums are kept in bf16.
    pub loss_bf16: bool,
    pub log_every: usize,
    pub stop: Stop,
    pub extra_epochs: usize,
    pub checkpoint_every: usize,
    pub lipschitz: bool,
    pub power_iters: usize,
}

impl RunConfig {
    /// Adam's beta2 as the optimizer uses it: the reference's ⊥AdamW forgot to pass its
    /// beta2 and eps, so it ran with PyTorch's defaults; `reference_ortho_defaults` repeats that.
    pub fn adam_beta2(&self) -> f64 {
        if self.optimizer == Optimizer::OrthoAdamW && self.reference_ortho_defaults {
            0.999
        } else {
            self.beta2
        }
    }

    pub fn adam_eps(&self) -> f64 {
        if self.optimizer == Optimizer::OrthoAdamW && self.reference_ortho_defaults {
            1e-8
        } else {
            self.eps
        }
    }

    pub fn from_values(values: &BTreeMap<&'static str, Value>) -> Result<RunConfig> {
        let get = |key: &str| values.get(key).ok_or_else(|| anyhow!("key `{key}` is missing"));
        let string = |key: &str| match get(key)? {
            Value::Str(s) => Ok(s.as_str()),
            other => bail!("key `{key}`: expected a string, found {other}"),
        };
        let int = |key: &str| match get(key)? {
            Value::Int(i) => Ok(*i as usize),
            other => bail!("key `{key}`: expected an integer, found {other}"),
        };
        let float = |key: &str| match get(key)? {
            Value::Float(x) => Ok(*x),
            other => bail!("key `{key}`: expected a number, found {other}"),
        };
        let boolean = |key: &str| match get(key)? {
            Value::Bool(b) => Ok(*b),
            other => bail!("key `{key}`: expected a boolean, found {other}"),
        };
        let config = RunConfig {
            op: match string("task.op")? {
                "add" => Op::Add,
                "sub" => Op::Sub,
                "mul" => Op::Mul,
                _ => Op::Div,
            },
            p: int("task.p")?,
            train_fraction: float("task.train_fraction")?,
            input: match string("model.input")? {
                "two_hot" => Input::TwoHot,
                _ => Input::Embedding,
            },
            embed_dim: int("model.embed_dim")?,
            hidden: match get("model.hidden")? {
                Value::IntList(list) => list.iter().map(|&h| h as usize).collect(),
                other => bail!("key `model.hidden`: expected a list of integers, found {other}"),
            },
            activation: match string("model.activation")? {
                "relu" => Activation::Relu,
                "tanh" => Activation::Tanh,
                _ => Activation::Gelu,
            },
            alpha: float("model.alpha")?,
            epochs: int("train.epochs")?,
            optimizer: match string("train.optimizer")? {
                "ortho_adamw" => Optimizer::OrthoAdamW,
                "sgd" => Optimizer::Sgd,
                "muon" => Optimizer::Muon,
                _ => Optimizer::AdamW,
            },
            lr: float("train.lr")?,
            weight_decay: float("train.weight_decay")?,
            beta1: float("train.beta1")?,
            beta2: float("train.beta2")?,
            eps: float("train.eps")?,
            all_reg: boolean("train.all_reg")?,
            momentum: float("train.momentum")?,
            muon_momentum: float("train.muon_momentum")?,
            muon_adam_lr: float("train.muon_adam_lr")?,
            ns_steps: int("train.ns_steps")?,
            reference_ortho_defaults: boolean("train.reference_ortho_defaults")?,
            precision: match string("train.dtype")? {
                "f64" => Precision::F64,
                "bf16" => Precision::Bf16,
                "bf16_mixed" => Precision::Bf16Mixed,
                _ => Precision::F32,
            },
            loss: match string("train.loss")? {
                "stablemax" => Loss::StableMax,
                "sparsemax" => Loss::Sparsemax,
                _ => Loss::Softmax,
            },
            loss_bf16: false,
            log_every: int("train.log_every")?,
            stop: match string("train.stop")? {
                "none" => Stop::Never,
                "grok" => Stop::Grok,
                "solve" => Stop::Solve,
                _ => Stop::Diverged,
            },
            extra_epochs: int("train.extra_epochs")?,
            checkpoint_every: int("train.checkpoint_every")?,
            lipschitz: boolean("metrics.lipschitz")?,
            power_iters: int("metrics.power_iters")?,
        };
        let mut config = config;
        config.loss_bf16 = match string("train.loss_dtype")? {
            "bf16" => true,
            "f32" => false,
            _ => config.precision == Precision::Bf16,
        };
        config.check()?;
        Ok(config)
    }

    /// Checks that involve several keys, or limits no single key's range expresses.
    fn check(&self) -> Result<()> {
        if self.p > 4096 {
            bail!("key `task.p`: {} is larger than the supported 4096", self.p);
        }
        if self.op == Op::Div && !is_prime(self.p) {
            bail!("key `task.p`: div needs a prime modulus (b⁻¹ must exist for every b ≠ 0), {} is not prime", self.p);
        }
        let n_pairs = self.n_pairs();
        let n_train = self.n_train();
        if n_train == 0 || n_train >= n_pairs {
            bail!(
                "key `task.train_fraction`: {} of {n_pairs} pairs leaves {n_train} train and {} test rows; both must be non-empty",
                self.train_fraction,
                n_pairs - n_train.min(n_pairs)
            );
        }
        if self.hidden.iter().any(|&h| h > 1 << 16) || self.embed_dim > 1 << 16 {
            bail!("key `model.hidden`/`model.embed_dim`: widths above 65536 are not supported");
        }
        // Keeps every size estimate far from overflowing, and is far deeper than any grokking MLP.
        if self.hidden.len() > MAX_HIDDEN_LAYERS {
            bail!("key `model.hidden`: {} hidden layers are more than the supported {MAX_HIDDEN_LAYERS}", self.hidden.len());
        }
        Ok(())
    }

    /// Every (a, b) pair of the task: p², or p·(p−1) for div.
    pub fn n_pairs(&self) -> usize {
        match self.op {
            Op::Div => self.p * (self.p - 1),
            _ => self.p * self.p,
        }
    }

    pub fn n_train(&self) -> usize {
        (self.train_fraction * self.n_pairs() as f64).floor() as usize
    }

    pub fn stack_key(&self) -> StackKey {
        StackKey {
            p: self.p,
            n_pairs: self.n_pairs(),
            n_train: self.n_train(),
            input: self.input,
            embed_dim: if self.input == Input::Embedding { self.embed_dim } else { 0 },
            hidden: self.hidden.clone(),
            activation: self.activation,
            alpha_bits: self.alpha.to_bits(),
            epochs: self.epochs,
            optimizer: self.optimizer,
            ns_steps: self.ns_steps,
            precision: self.precision,
            loss: self.loss,
            loss_bf16: self.loss_bf16,
            log_every: self.log_every,
            stop: self.stop,
            extra_epochs: self.extra_epochs,
            checkpoint_every: self.checkpoint_every,
            lipschitz: self.lipschitz,
            power_iters: self.power_iters,
        }
    }
}

pub const MAX_HIDDEN_LAYERS: usize = 256;

pub fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
