//! The typed configuration of one run, and the key that decides which runs can share a stack.

use super::schema::Value;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

/// The task: a binary operation over [0, p)² (S5's over its 120 elements) or a bit task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Add,
    Sub,
    Mul,
    /// a·b⁻¹, b ≠ 0.
    Div,
    /// a^b.
    Exp,
    Gcd,
    /// x**2+y (openai/grok's `**2+`).
    SquarePlusY,
    /// x**3+y (`**3+`).
    CubePlusY,
    /// x**2+y**2.
    SquareSum,
    /// x**2+x*y+y**2.
    SquareSumCross,
    /// x**2+x*y+y**2+x.
    SquareSumCrossPlusX,
    /// x**3+x*y.
    CubeCross,
    /// x**3+x*y**2+y.
    CubeCrossSquare,
    /// x/y if y is odd, else x−y.
    Mix1,
    S5Compose,
    S5Conjugate,
    S5Aba,
    /// The parity of all `task.bits` bits.
    Parity,
    /// The parity of the first `task.parity_bits` of `parity_bits + noise_bits` bits.
    SparseParity,
}

/// Every string `task.op` accepts and its operation: the names, and openai/grok's own
/// operator strings so that they can be pasted (its `_mod_97` names mean mod `task.p`).
pub const OP_NAMES: &[(&str, Op)] = &[
    ("add", Op::Add),
    ("sub", Op::Sub),
    ("mul", Op::Mul),
    ("div", Op::Div),
    ("exp", Op::Exp),
    ("gcd", Op::Gcd),
    ("x**2+y", Op::SquarePlusY),
    ("x**3+y", Op::CubePlusY),
    ("x**2+y**2", Op::SquareSum),
    ("x**2+x*y+y**2", Op::SquareSumCross),
    ("x**2+x*y+y**2+x", Op::SquareSumCrossPlusX),
    ("x**3+x*y", Op::CubeCross),
    ("x**3+x*y**2+y", Op::CubeCrossSquare),
    ("x/y if y%2==1 else x-y", Op::Mix1),
    ("mix1", Op::Mix1),
    ("s5_compose", Op::S5Compose),
    ("s5_conjugate", Op::S5Conjugate),
    ("s5_aba", Op::S5Aba),
    ("parity", Op::Parity),
    ("sparse_parity", Op::SparseParity),
    // openai/grok's strings.
    ("+", Op::Add),
    ("-", Op::Sub),
    ("*", Op::Mul),
    ("/", Op::Div),
    ("**2+", Op::SquarePlusY),
    ("**3+", Op::CubePlusY),
    ("x**2+y**2_mod_97", Op::SquareSum),
    ("x**2+y**2+x*y_mod_97", Op::SquareSumCross),
    ("x**2+y**2+x*y+x_mod_97", Op::SquareSumCrossPlusX),
    ("x**3+x*y_mod_97", Op::CubeCross),
    ("x**3+x*y**2+y_mod_97", Op::CubeCrossSquare),
    ("(x._value//y)if(y._value%2==1)else(x-y)_mod_97", Op::Mix1),
    ("s5", Op::S5Compose),
    ("s5conj", Op::S5Conjugate),
    ("s5aba", Op::S5Aba),
];

/// The strings of [`OP_NAMES`], for the schema's list of choices.
pub const OP_STRINGS: [&str; OP_NAMES.len()] = {
    let mut out = [""; OP_NAMES.len()];
    let mut i = 0;
    while i < OP_NAMES.len() {
        out[i] = OP_NAMES[i].0;
        i += 1;
    }
    out
};

impl Op {
    pub fn parse(name: &str) -> Option<Op> {
        OP_NAMES.iter().find(|(n, _)| *n == name).map(|&(_, op)| op)
    }

    /// A task over bit strings rather than operand pairs.
    pub fn is_bits(self) -> bool {
        matches!(self, Op::Parity | Op::SparseParity)
    }

    pub fn is_s5(self) -> bool {
        matches!(self, Op::S5Compose | Op::S5Conjugate | Op::S5Aba)
    }

    /// The operation divides by b, so p must be prime.
    fn divides(self) -> bool {
        matches!(self, Op::Div | Op::Mix1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelKind {
    Mlp,
    Transformer,
}

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

/// The transformer's settings (see `crate::models::transformer`), as the sweep gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerConfig {
    pub layers: usize,
    pub d_model: usize,
    pub heads: usize,
    /// "swiglu", "relu" or "gelu".
    pub ffn: String,
    /// 0: 4·d_model.
    pub ffn_width: usize,
    /// "rms", "layer" or "none".
    pub norm: String,
    pub pre_norm: bool,
    /// "rope", "learned" or "none".
    pub positional: String,
    pub rope_base: f64,
    pub causal: bool,
    pub bias: bool,
    pub tokens: TokenLayout,
    /// Dropout on the attention weights, the attention output, the FFN hidden units and the
    /// FFN output.
    pub dropout: [f64; 4],
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
    Scion,
}

/// The projection of every Linear weight after every step (`train.constraint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Constraint {
    None,
    SpectralNormalize,
    SpectralHardcap,
    SpectralClippedWd,
    Stiefel,
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
    /// Diverged, or `extra_epochs` after the first epoch with test accuracy ≥ 0.95 and train
    /// accuracy ≥ 0.99 (the analysis's after-train grok rule, Tveit et al.'s definition), so
    /// that retiring never cuts a run before its grok epoch by that rule.
    GrokAfterTrain,
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
    pub kind: ModelKind,
    pub transformer: TransformerConfig,
    pub op: Op,
    pub p: usize,
    pub train_fraction: f64,
    /// Leave out the pairs with a = 0 or b = 0.
    pub skip_zero: bool,
    /// Bits of a `parity` string.
    pub bits: usize,
    /// Relevant and noise bits, and distinct strings per seed, of `sparse_parity`.
    pub parity_bits: usize,
    pub noise_bits: usize,
    pub samples: usize,
    pub input: Input,
    pub embed_dim: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub alpha: f64,
    pub epochs: usize,
    /// Rows per minibatch (0: full batch).
    pub batch_size: usize,
    /// Optimizer steps of linear learning-rate warm-up (0: none).
    pub warmup: usize,
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
    pub scion_momentum: f64,
    pub scion_radius: f64,
    pub scion_sign_radius: f64,
    pub scion_constrained: bool,
    /// Scion's Polar Express rounds every op to bf16.
    pub polar_bf16: bool,
    pub constraint: Constraint,
    pub constraint_beta: f64,
    pub constraint_lambda: f64,
    pub embed_rms_cap: f64,
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
    /// The bound's layer norms are RMS→RMS (`metrics.lipschitz_norm = "rms"`).
    pub lipschitz_rms: bool,
    pub power_iters: usize,
    /// Nanda et al.'s progress measures (`metrics.progress` and its keys).
    pub progress: crate::progress::ProgressConfig,
}

/// Everything that must be equal for runs to share one stack: the tensor shapes and the
/// code path. The per-run quantities (seed, op, lr, weight decay, betas, eps, all_reg) are
/// tensors with a leading R axis and may differ inside a stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    pub kind: ModelKind,
    /// The transformer's settings in a comparable form (empty for an MLP).
    pub transformer: String,
    /// Rows of the first layer's table, symbols per row and classes: the data's shapes.
    pub table_rows: usize,
    pub row_width: usize,
    pub classes: usize,
    pub n_examples: usize,
    pub n_train: usize,
    pub batch_size: usize,
    pub input: Input,
    pub embed_dim: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub alpha_bits: u64,
    pub epochs: usize,
    pub optimizer: Optimizer,
    pub ns_steps: usize,
    pub polar_bf16: bool,
    pub constraint: Constraint,
    pub precision: Precision,
    pub loss: Loss,
    /// The loss and softmax sums are kept in bf16.
    pub loss_bf16: bool,
    pub log_every: usize,
    pub stop: Stop,
    pub extra_epochs: usize,
    pub checkpoint_every: usize,
    pub lipschitz: bool,
    /// The bound's layer norms are RMS→RMS (`metrics.lipschitz_norm = "rms"`).
    pub lipschitz_rms: bool,
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
        let transformer = TransformerConfig {
            layers: int("model.layers")?,
            d_model: int("model.d_model")?,
            heads: int("model.heads")?,
            ffn: string("model.ffn")?.to_string(),
            ffn_width: int("model.ffn_width")?,
            norm: string("model.norm")?.to_string(),
            pre_norm: string("model.norm_position")? == "pre",
            positional: string("model.positional")?.to_string(),
            rope_base: float("model.rope_base")?,
            causal: boolean("model.causal")?,
            bias: boolean("model.bias")?,
            tokens: match string("model.tokens")? {
                "a_b_eq" => TokenLayout::ABEq,
                "a_b" => TokenLayout::AB,
                _ => TokenLayout::AOpBEq,
            },
            dropout: [float("model.dropout_attention")?, float("model.dropout_attention_output")?, float("model.dropout_ffn_hidden")?, float("model.dropout_ffn_output")?],
        };
        let config = RunConfig {
            kind: if string("model.kind")? == "transformer" { ModelKind::Transformer } else { ModelKind::Mlp },
            transformer,
            op: Op::parse(string("task.op")?).context("key `task.op`: unknown operation")?,
            p: int("task.p")?,
            train_fraction: float("task.train_fraction")?,
            skip_zero: boolean("task.skip_zero")?,
            bits: int("task.bits")?,
            parity_bits: int("task.parity_bits")?,
            noise_bits: int("task.noise_bits")?,
            samples: int("task.samples")?,
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
            batch_size: int("train.batch_size")?,
            warmup: int("train.warmup")?,
            optimizer: match string("train.optimizer")? {
                "ortho_adamw" => Optimizer::OrthoAdamW,
                "sgd" => Optimizer::Sgd,
                "muon" => Optimizer::Muon,
                "scion" => Optimizer::Scion,
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
            scion_momentum: float("train.scion_momentum")?,
            scion_radius: float("train.scion_radius")?,
            scion_sign_radius: float("train.scion_sign_radius")?,
            scion_constrained: boolean("train.scion_constrained")?,
            polar_bf16: string("train.polar_dtype")? == "bf16",
            constraint: match string("train.constraint")? {
                "spectral_normalize" => Constraint::SpectralNormalize,
                "spectral_hardcap" => Constraint::SpectralHardcap,
                "spectral_clipped_wd" => Constraint::SpectralClippedWd,
                "stiefel" => Constraint::Stiefel,
                _ => Constraint::None,
            },
            constraint_beta: float("train.constraint_beta")?,
            constraint_lambda: float("train.constraint_lambda")?,
            embed_rms_cap: float("train.embed_rms_cap")?,
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
                "grok_after_train" => Stop::GrokAfterTrain,
                "solve" => Stop::Solve,
                _ => Stop::Diverged,
            },
            extra_epochs: int("train.extra_epochs")?,
            checkpoint_every: int("train.checkpoint_every")?,
            lipschitz: boolean("metrics.lipschitz")?,
            lipschitz_rms: string("metrics.lipschitz_norm")? == "rms",
            power_iters: int("metrics.power_iters")?,
            progress: crate::progress::ProgressConfig::from_values(values)?,
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
        if self.op.divides() && !is_prime(self.p) {
            bail!("key `task.p`: {} divides by b and needs a prime modulus (b⁻¹ must exist for every b ≠ 0), {} is not prime", self.op_name(), self.p);
        }
        if self.op.is_s5() && self.p != crate::tasks::S5_ORDER {
            bail!("key `task.p`: {} works on the {} permutations of 5 elements, so task.p must be {} (it is {})", self.op_name(), crate::tasks::S5_ORDER, crate::tasks::S5_ORDER, self.p);
        }
        if self.op == Op::Parity && self.bits > MAX_PARITY_BITS {
            bail!("key `task.bits`: parity takes all 2^bits strings; {} bits are more than the supported {MAX_PARITY_BITS}", self.bits);
        }
        if self.op == Op::SparseParity {
            let n = self.parity_bits + self.noise_bits;
            if n > 64 {
                bail!("keys `task.parity_bits` + `task.noise_bits`: {n} bits are more than the supported 64");
            }
            // Distinct strings are drawn by rejection: keep at least half the strings unused.
            if n < 64 && self.samples as u128 > (1u128 << n) / 2 {
                bail!("key `task.samples`: {} distinct strings of {n} bits are more than half of the 2^{n} there are", self.samples);
            }
        }
        if self.skip_zero && (self.op.is_bits() || self.op.is_s5()) {
            bail!("key `task.skip_zero`: leaves out operands 0 of modular operations; {} has none", self.op_name());
        }
        self.progress.check(self)?;
        if self.kind == ModelKind::Transformer {
            self.check_transformer()?;
        } else if self.embed_rms_cap > 0.0 && self.input == Input::TwoHot {
            bail!("key `train.embed_rms_cap`: model.input = \"two_hot\" has no embedding to cap; set it to 0 or model.input = \"embedding\"");
        } else if self.op.is_bits() && self.input == Input::Embedding {
            bail!("key `model.input`: a bit task enters the MLP as its 0/1 vector through the first Linear layer; set model.input = \"two_hot\"");
        }
        let n_examples = self.n_examples();
        let n_train = self.n_train();
        if n_train == 0 || n_train >= n_examples {
            bail!(
                "key `task.train_fraction`: {} of {n_examples} rows leaves {n_train} train and {} test rows; both must be non-empty",
                self.train_fraction,
                n_examples - n_train.min(n_examples)
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

    fn check_transformer(&self) -> Result<()> {
        let t = &self.transformer;
        if t.d_model % t.heads != 0 {
            bail!("key `model.heads`: {} heads do not divide model.d_model = {}", t.heads, t.d_model);
        }
        if t.positional == "rope" && (t.d_model / t.heads) % 2 != 0 {
            bail!("key `model.positional`: RoPE rotates pairs, so the head width d_model / heads = {} must be even", t.d_model / t.heads);
        }
        if self.constraint != Constraint::None {
            bail!("key `train.constraint`: the spectral constraints project the MLP's Linear layers; the transformer's are not wired to them yet, so set it to \"none\" or model.kind = \"mlp\"");
        }
        if self.optimizer == Optimizer::Scion {
            bail!("key `train.optimizer`: scion's groups (Spectral, Sign, ColNorm) are set for the MLP's layers; the transformer's norms, biases and attention have none yet, so use another optimizer or model.kind = \"mlp\"");
        }
        if self.lipschitz {
            bail!("key `metrics.lipschitz`: the product of spectral norms bounds nothing for a transformer (attention is not a product of Linear maps); set it to false");
        }
        if !matches!(self.precision, Precision::F32 | Precision::F64) {
            bail!("key `train.dtype`: the transformer trains in f32 or f64 for now");
        }
        if t.layers > MAX_HIDDEN_LAYERS || t.d_model > 1 << 14 {
            bail!("key `model.layers`/`model.d_model`: more than {MAX_HIDDEN_LAYERS} layers or a width above 16384 are not supported");
        }
        Ok(())
    }

    /// The transformer's tokens per row and its vocabulary: a pair's tokens follow
    /// `model.tokens` (op = p, = = p + 1, or = = p without op); a bit string's tokens are its
    /// bits (0, 1) then = (2), except with `a_b`.
    pub fn token_shape(&self) -> (usize, usize) {
        let eq = self.transformer.tokens != TokenLayout::AB;
        if self.op.is_bits() {
            (self.n_bits() + usize::from(eq), 2 + usize::from(eq))
        } else {
            match self.transformer.tokens {
                TokenLayout::AOpBEq => (4, self.p + 2),
                TokenLayout::ABEq => (3, self.p + 1),
                TokenLayout::AB => (2, self.p),
            }
        }
    }

    /// The operation's canonical name.
    pub fn op_name(&self) -> &'static str {
        OP_NAMES.iter().find(|(_, op)| *op == self.op).map_or("?", |(name, _)| name)
    }

    /// Bits per row of a bit task.
    pub fn n_bits(&self) -> usize {
        match self.op {
            Op::Parity => self.bits,
            _ => self.parity_bits + self.noise_bits,
        }
    }

    /// Every row of the task: p² pairs (p·(p−1) for div, whose b ≠ 0), 2^bits strings for
    /// parity, `task.samples` strings for sparse parity.
    pub fn n_examples(&self) -> usize {
        if self.skip_zero {
            return (self.p - 1) * (self.p - 1);
        }
        match self.op {
            Op::Div => self.p * (self.p - 1),
            Op::Parity => 1 << self.bits,
            Op::SparseParity => self.samples,
            _ => self.p * self.p,
        }
    }

    pub fn n_train(&self) -> usize {
        (self.train_fraction * self.n_examples() as f64).floor() as usize
    }

    pub fn n_test(&self) -> usize {
        self.n_examples() - self.n_train()
    }

    /// Output classes: p residues (and p gcd values, p = 120 elements of S5), 2 for parity.
    pub fn classes(&self) -> usize {
        if self.op.is_bits() {
            2
        } else {
            self.p
        }
    }

    /// Model inputs per row: the MLP's table indices (a, b or the bits), or the tokens.
    pub fn row_width(&self) -> usize {
        if self.kind == ModelKind::Transformer {
            self.token_shape().0
        } else if self.op.is_bits() {
            self.n_bits()
        } else {
            2
        }
    }

    /// Rows of the MLP's first-layer table: one per value of each operand (2p), or one per bit.
    pub fn table_rows(&self) -> usize {
        if self.op.is_bits() {
            self.n_bits()
        } else {
            2 * self.p
        }
    }

    /// Optimizer steps per epoch: one full-batch step, or ceil(N_train / batch_size).
    pub fn steps_per_epoch(&self) -> usize {
        if self.batch_size == 0 {
            1
        } else {
            self.n_train().div_ceil(self.batch_size)
        }
    }

    pub fn stack_key(&self) -> StackKey {
        let mlp = self.kind == ModelKind::Mlp;
        StackKey {
            kind: self.kind,
            transformer: if mlp { String::new() } else { format!("{:?}", self.transformer) },
            table_rows: if mlp { self.table_rows() } else { self.token_shape().1 },
            row_width: self.row_width(),
            classes: self.classes(),
            n_examples: self.n_examples(),
            n_train: self.n_train(),
            batch_size: self.batch_size,
            input: self.input,
            embed_dim: if mlp && self.input == Input::Embedding { self.embed_dim } else { 0 },
            hidden: if mlp { self.hidden.clone() } else { Vec::new() },
            activation: self.activation,
            alpha_bits: self.alpha.to_bits(),
            epochs: self.epochs,
            optimizer: self.optimizer,
            ns_steps: self.ns_steps,
            polar_bf16: self.polar_bf16,
            constraint: self.constraint,
            precision: self.precision,
            loss: self.loss,
            loss_bf16: self.loss_bf16,
            log_every: self.log_every,
            stop: self.stop,
            extra_epochs: self.extra_epochs,
            checkpoint_every: self.checkpoint_every,
            lipschitz: self.lipschitz,
            lipschitz_rms: self.lipschitz_rms,
            power_iters: self.power_iters,
        }
    }
}

pub const MAX_HIDDEN_LAYERS: usize = 256;
/// 2^20 strings: a million rows.
pub const MAX_PARITY_BITS: usize = 20;

pub fn is_prime(n: usize) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
