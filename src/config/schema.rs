//! Every key a sweep file may set: its type, its default and its allowed values.
//!
//! One table drives parsing, validation, grid axes, `--set` overrides, the
//! resolved `sweep.toml` and the per-run columns of `runs.parquet`, so a new key
//! is added in exactly one place.

use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::fmt;

/// A value of one key, after type checking.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    IntList(Vec<i64>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Quoted and escaped by the TOML writer: a path or an expression reads back as itself.
            Value::Str(s) => write!(f, "{}", toml::Value::String(s.clone())),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{}", toml::Value::Float(*x)),
            Value::Bool(b) => write!(f, "{b}"),
            Value::IntList(list) => {
                let items: Vec<String> = list.iter().map(|i| i.to_string()).collect();
                write!(f, "[{}]", items.join(", "))
            }
        }
    }
}

/// A run's resolved keys, read by type: each part of the typed config (the task, each model
/// kind, training) reads its own keys through this, and a wrong type names the key.
#[derive(Clone, Copy)]
pub struct Keys<'a>(pub &'a BTreeMap<&'static str, Value>);

impl Keys<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.0.get(key).ok_or_else(|| anyhow!("key `{key}` is missing"))
    }

    pub fn string(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::Str(s) => Ok(s.as_str()),
            other => bail!("key `{key}`: expected a string, found {other}"),
        }
    }

    pub fn int(&self, key: &str) -> Result<usize> {
        match self.get(key)? {
            Value::Int(i) => Ok(*i as usize),
            other => bail!("key `{key}`: expected an integer, found {other}"),
        }
    }

    pub fn float(&self, key: &str) -> Result<f64> {
        match self.get(key)? {
            Value::Float(x) => Ok(*x),
            other => bail!("key `{key}`: expected a number, found {other}"),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<bool> {
        match self.get(key)? {
            Value::Bool(b) => Ok(*b),
            other => bail!("key `{key}`: expected a boolean, found {other}"),
        }
    }

    pub fn ints(&self, key: &str) -> Result<Vec<usize>> {
        match self.get(key)? {
            Value::IntList(list) => Ok(list.iter().map(|&i| i as usize).collect()),
            other => bail!("key `{key}`: expected a list of integers, found {other}"),
        }
    }

    /// A choice key as its enum: `choices` pairs each string the schema allows with its value.
    pub fn choice<T: Copy>(&self, key: &str, choices: &[(&str, T)]) -> Result<T> {
        let text = self.string(key)?;
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        choices
            .iter()
            .find(|(name, _)| *name == text)
            .map(|&(_, value)| value)
            .ok_or_else(|| anyhow!("key `{key}`: \"{text}\" is not one of {names:?}"))
    }
}

/// The type (and constraint) of a key.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// One of a fixed set of strings.
    Choice(&'static [&'static str]),
    /// Any string; the run's config checks what it means (an expression, a path).
    Text,
    /// An integer at least `min`.
    Int {
        min: i64,
    },
    /// A float in a range; `open_low`/`open_high` exclude the bound itself.
    Float {
        low: f64,
        high: f64,
        open_low: bool,
        open_high: bool,
    },
    Bool,
    /// A non-empty list of integers, each at least `min`.
    IntList {
        min: i64,
    },
}

pub struct KeySpec {
    pub key: &'static str,
    pub kind: Kind,
    pub default: fn() -> Value,
    pub help: &'static str,
}

const NON_NEGATIVE: Kind = Kind::Float { low: 0.0, high: f64::INFINITY, open_low: false, open_high: true };
const POSITIVE: Kind = Kind::Float { low: 0.0, high: f64::INFINITY, open_low: true, open_high: true };
const UNIT_OPEN: Kind = Kind::Float { low: 0.0, high: 1.0, open_low: true, open_high: true };
const UNIT_HALF_OPEN: Kind = Kind::Float { low: 0.0, high: 1.0, open_low: false, open_high: true };

/// The optimizers, losses, dtypes... that are implemented; the parser rejects anything else.
pub const OPTIMIZERS: &[&str] = &["adamw", "ortho_adamw", "sgd", "muon", "scion"];
pub const DTYPES: &[&str] = &["f32", "f64", "bf16", "bf16_mixed"];

pub static SCHEMA: &[KeySpec] = &[
    KeySpec {
        key: "task.op",
        kind: Kind::Text,
        default: || Value::Str("add".into()),
        help: "the \
        task: a named operation mod p, an S5 product, or a parity (see the README's table), or any expression in x \
        and y mod p such as \"x**2 + 3*x*y\" (+ - * / ** % // and `A if COND else B`); div and mix1 need a prime \
        p, S5 needs p = 120",
    },
    KeySpec {
        key: "task.table",
        kind: Kind::Text,
        default: || Value::Str(String::new()),
        help: "a CSV or \
        Parquet file of rows (integer columns a, b, label; optionally split = train/test) that is the task instead \
        of task.op; relative to the sweep file",
    },
    KeySpec { key: "task.p", kind: Kind::Int { min: 2 }, default: || Value::Int(113), help: "the modulus" },
    KeySpec {
        key: "task.train_fraction",
        kind: UNIT_OPEN,
        default: || Value::Float(0.4),
        help: "fraction of all rows \
        in the train split",
    },
    KeySpec {
        key: "task.skip_zero",
        kind: Kind::Bool,
        default: || Value::Bool(false),
        help: "leave out the pairs with \
        a = 0 or b = 0 (Prieto et al.'s transformer data drew operands from [1, p))",
    },
    KeySpec {
        key: "task.bits",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(10),
        help: "parity: bits per string \
        (all 2^bits strings are the rows)",
    },
    KeySpec {
        key: "task.parity_bits",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(3),
        help: "sparse_parity: \
        the relevant bits k (the first k of each string)",
    },
    KeySpec {
        key: "task.noise_bits",
        kind: Kind::Int { min: 0 },
        default: || Value::Int(37),
        help: "sparse_parity: \
        the irrelevant bits after them",
    },
    KeySpec {
        key: "task.samples",
        kind: Kind::Int { min: 2 },
        default: || Value::Int(2000),
        help: "sparse_parity: \
        distinct random strings drawn per seed",
    },
    KeySpec {
        key: "model.kind",
        kind: Kind::Choice(&["mlp", "transformer"]),
        default: || Value::Str("mlp".into()),
        help: "the \
        stacked MLP, or the transformer (model.layers, model.d_model, …)",
    },
    KeySpec {
        key: "model.input",
        kind: Kind::Choice(&["two_hot", "embedding"]),
        default: || Value::Str("embedding".into()),
        help: "two_hot: \
        concat of one-hots; embedding: one shared table",
    },
    KeySpec {
        key: "model.embed_dim",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(113),
        help: "embedding width \
        (embedding input only)",
    },
    KeySpec {
        key: "model.hidden",
        kind: Kind::IntList { min: 1 },
        default: || Value::IntList(vec![200, 200]),
        help: "hidden layer widths",
    },
    KeySpec {
        key: "model.activation",
        kind: Kind::Choice(&["relu", "gelu", "tanh"]),
        default: || Value::Str("gelu".into()),
        help: "gelu is the erf form",
    },
    KeySpec { key: "model.layers", kind: Kind::Int { min: 1 }, default: || Value::Int(2), help: "transformer: blocks" },
    KeySpec {
        key: "model.d_model",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(128),
        help: "transformer: model width",
    },
    KeySpec {
        key: "model.heads",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(4),
        help: "transformer: attention \
        heads (must divide d_model)",
    },
    KeySpec {
        key: "model.ffn",
        kind: Kind::Choice(&["swiglu", "relu", "gelu"]),
        default: || Value::Str("swiglu".into()),
        help: "transformer: \
        FFN, swiglu is w2(silu(w1·x) ⊙ w3·x)",
    },
    KeySpec {
        key: "model.ffn_width",
        kind: Kind::Int { min: 0 },
        default: || Value::Int(0),
        help: "transformer: FFN \
        hidden width (0: 4·d_model)",
    },
    KeySpec {
        key: "model.norm",
        kind: Kind::Choice(&["rms", "layer", "none"]),
        default: || Value::Str("rms".into()),
        help: "transformer: \
        RMSNorm, LayerNorm (gain and bias) or none; eps 1e-5",
    },
    KeySpec {
        key: "model.norm_position",
        kind: Kind::Choice(&["pre", "post"]),
        default: || Value::Str("pre".into()),
        help: "transformer: \
        pre-norm (with a final norm) or post-norm (nn.TransformerEncoderLayer)",
    },
    KeySpec {
        key: "model.positional",
        kind: Kind::Choice(&["rope", "learned", "none"]),
        default: || Value::Str("rope".into()),
        help: "transformer: \
        RoPE on adjacent pairs, a learned absolute embedding, or none",
    },
    KeySpec {
        key: "model.rope_base",
        kind: POSITIVE,
        default: || Value::Float(1e6),
        help: "transformer: RoPE's base θ",
    },
    KeySpec {
        key: "model.causal",
        kind: Kind::Bool,
        default: || Value::Bool(true),
        help: "transformer: causal \
        attention mask",
    },
    KeySpec {
        key: "model.bias",
        kind: Kind::Bool,
        default: || Value::Bool(false),
        help: "transformer: biases in the \
        blocks' Linear layers and the unembedding",
    },
    KeySpec {
        key: "model.tokens",
        kind: Kind::Choice(&["a_op_b_eq", "a_b_eq", "a_b"]),
        default: || Value::Str("a_op_b_eq".into()),
        help: "transformer: \
        a row's tokens [a, op, b, =] (Tveit, Power), [a, b, =] (Nanda) or [a, b] (Prieto)",
    },
    KeySpec {
        key: "model.dropout_attention",
        kind: UNIT_HALF_OPEN,
        default: || Value::Float(0.0),
        help: "transformer: \
        dropout on the attention weights",
    },
    KeySpec {
        key: "model.dropout_attention_output",
        kind: UNIT_HALF_OPEN,
        default: || Value::Float(0.0),
        help: "transformer: \
        dropout on the attention output",
    },
    KeySpec {
        key: "model.dropout_ffn_hidden",
        kind: UNIT_HALF_OPEN,
        default: || Value::Float(0.0),
        help: "transformer: \
        dropout on the FFN's hidden units (Tveit's code: 0.2)",
    },
    KeySpec {
        key: "model.dropout_ffn_output",
        kind: UNIT_HALF_OPEN,
        default: || Value::Float(0.0),
        help: "transformer: \
        dropout on the FFN output",
    },
    KeySpec { key: "model.alpha", kind: POSITIVE, default: || Value::Float(1.0), help: "logit scale" },
    KeySpec { key: "train.epochs", kind: Kind::Int { min: 1 }, default: || Value::Int(1001), help: "epoch budget" },
    KeySpec {
        key: "train.batch_size",
        kind: Kind::Int { min: 0 },
        default: || Value::Int(0),
        help: "rows per \
        minibatch, reshuffled per run every epoch, last partial batch kept (0: full batch)",
    },
    KeySpec {
        key: "train.warmup",
        kind: Kind::Int { min: 0 },
        default: || Value::Int(0),
        help: "optimizer steps of \
        linear learning-rate warm-up: step t (from 1) uses lr·min(1, t/warmup)",
    },
    KeySpec {
        key: "train.optimizer",
        kind: Kind::Choice(OPTIMIZERS),
        default: || Value::Str("adamw".into()),
        help: "per-run optimizer",
    },
    KeySpec { key: "train.lr", kind: NON_NEGATIVE, default: || Value::Float(0.01), help: "learning rate" },
    KeySpec {
        key: "train.weight_decay",
        kind: NON_NEGATIVE,
        default: || Value::Float(4.0),
        help: "decoupled weight decay",
    },
    KeySpec {
        key: "train.beta1",
        kind: UNIT_HALF_OPEN,
        default: || Value::Float(0.9),
        help: "Adam beta1 (also SGD \
        momentum)",
    },
    KeySpec { key: "train.beta2", kind: UNIT_HALF_OPEN, default: || Value::Float(0.99), help: "Adam beta2" },
    KeySpec { key: "train.eps", kind: POSITIVE, default: || Value::Float(1e-25), help: "Adam epsilon" },
    KeySpec { key: "train.momentum", kind: UNIT_HALF_OPEN, default: || Value::Float(0.9), help: "SGD momentum" },
    KeySpec {
        key: "train.muon_momentum",
        kind: UNIT_HALF_OPEN,
        default: || Value::Float(0.95),
        help: "Muon's Nesterov momentum",
    },
    KeySpec {
        key: "train.muon_adam_lr",
        kind: NON_NEGATIVE,
        default: || Value::Float(0.01),
        help: "AdamW learning \
        rate of the embedding and output layer under Muon",
    },
    KeySpec {
        key: "train.ns_steps",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(5),
        help: "Muon's \
        Newton–Schulz iterations, Scion's Polar Express steps",
    },
    KeySpec {
        key: "train.scion_momentum",
        kind: Kind::Float { low: 0.0, high: 1.0, open_low: true, open_high: false },
        default: || Value::Float(0.1),
        help: "Scion's \
        momentum in its convention: d ← (1 − m)·d + m·g (1: no averaging)",
    },
    KeySpec {
        key: "train.scion_radius",
        kind: POSITIVE,
        default: || Value::Float(1.0),
        help: "Scion's radius of the \
        hidden (Spectral) and embedding (ColNorm) groups",
    },
    KeySpec {
        key: "train.scion_sign_radius",
        kind: POSITIVE,
        default: || Value::Float(20.0),
        help: "Scion's radius of \
        the output layer (Sign)",
    },
    KeySpec {
        key: "train.scion_constrained",
        kind: Kind::Bool,
        default: || Value::Bool(false),
        help: "Scion's \
        constrained step W ← (1 − lr)·W − lr·radius·lmo(d) on the hidden and output layers (the embedding too with \
        all_reg)",
    },
    KeySpec {
        key: "train.polar_dtype",
        kind: Kind::Choice(&["bf16", "f32"]),
        default: || Value::Str("bf16".into()),
        help: "Scion's \
        Polar Express precision: every op rounded to bf16 (the fork's) or the run's dtype",
    },
    KeySpec {
        key: "train.constraint",
        kind: Kind::Choice(&["none", "spectral_normalize", "spectral_hardcap", "spectral_clipped_wd", "stiefel"]),
        default: || Value::Str("none".into()),
        help: "project \
        every Linear weight after every step (Cesista 2025): W/max(1, σ_max), singular values capped at β, (1 − λ)·W + \
        λ·hardcap_β(W), or msign(W)",
    },
    KeySpec {
        key: "train.constraint_beta",
        kind: POSITIVE,
        default: || Value::Float(1.0),
        help: "the spectral cap β \
        of spectral_hardcap and spectral_clipped_wd",
    },
    KeySpec {
        key: "train.constraint_lambda",
        kind: Kind::Float { low: 0.0, high: 1.0, open_low: false, open_high: false },
        default: || Value::Float(0.1),
        help: "spectral_clipped_wd's \
        λ in [0, 1]",
    },
    KeySpec {
        key: "train.embed_rms_cap",
        kind: NON_NEGATIVE,
        default: || Value::Float(0.0),
        help: "cap each embedding \
        vector's RMS at this value after every step (0: no cap; Cesista capped at 1)",
    },
    KeySpec {
        key: "train.reference_ortho_defaults",
        kind: Kind::Bool,
        default: || Value::Bool(false),
        help: "⊥AdamW \
        with the reference code's (0.9, 0.999) and 1e-8",
    },
    KeySpec {
        key: "train.all_reg",
        kind: Kind::Bool,
        default: || Value::Bool(false),
        help: "decay the embedding (or \
        first layer) too",
    },
    KeySpec {
        key: "train.dtype",
        kind: Kind::Choice(DTYPES),
        default: || Value::Str("f32".into()),
        help: "storage and \
        compute precision",
    },
    KeySpec {
        key: "train.loss_dtype",
        kind: Kind::Choice(&["auto", "f32", "bf16"]),
        default: || Value::Str("auto".into()),
        help: "dtype \
        of the loss: auto is bf16 for pure bf16 runs, else the run's dtype",
    },
    KeySpec {
        key: "train.loss",
        kind: Kind::Choice(&["softmax", "stablemax", "sparsemax"]),
        default: || Value::Str("softmax".into()),
        help: "cross-entropy flavour",
    },
    KeySpec {
        key: "train.stop",
        kind: Kind::Choice(&["none", "diverged", "grok", "grok_after_train", "solve"]),
        default: || Value::Str("diverged".into()),
        help: "retire \
        a run once it groks (test accuracy ≥ 0.95; grok_after_train: with train accuracy ≥ 0.99 at the same epoch) / \
        solves (solve); a diverged run (NaN/inf) always stops, whatever this says",
    },
    KeySpec {
        key: "train.extra_epochs",
        kind: Kind::Int { min: 0 },
        default: || Value::Int(0),
        help: "epochs to keep \
        training after the grok/solve epoch before retiring",
    },
    KeySpec {
        key: "train.checkpoint_every",
        kind: Kind::Int { min: 0 },
        default: || Value::Int(50),
        help: "write a \
        checkpoint of each stack every this many epochs (0: never); --resume continues from it",
    },
    KeySpec {
        key: "train.log_every",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(1),
        help: "log metrics every \
        this many epochs",
    },
    KeySpec {
        key: "metrics.lipschitz",
        kind: Kind::Bool,
        default: || Value::Bool(false),
        help: "track the \
        spectral-norm product bound",
    },
    KeySpec {
        key: "metrics.lipschitz_norm",
        kind: Kind::Choice(&["l2", "rms"]),
        default: || Value::Str("l2".into()),
        help: "the \
        layer norm in the bound: l2 (the spectral norm, the blog's) or rms (spectral norm times √(fan_in/fan_out), \
        Cesista's)",
    },
    KeySpec {
        key: "metrics.power_iters",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(10),
        help: "power \
        iterations per layer per epoch",
    },
    KeySpec {
        key: "metrics.progress",
        kind: Kind::Bool,
        default: || Value::Bool(false),
        help: "log Nanda et al.'s \
        progress measures (restricted and excluded loss, key frequencies, embedding spectrum) at every logged epoch; \
        add, sub, mul, div on a prime p",
    },
    KeySpec {
        key: "metrics.key_frequencies",
        kind: Kind::Int { min: 1 },
        default: || Value::Int(5),
        help: "progress: \
        how many key frequencies to pick at each logged epoch (those of the most logit energy)",
    },
    KeySpec {
        key: "metrics.fixed_frequencies",
        kind: Kind::IntList { min: 1 },
        default: || Value::IntList(Vec::new()),
        help: "progress: \
        these key frequencies at every epoch instead of the online choice (default: none)",
    },
];

/// Keys that the resolved `sweep.toml` and `runs.parquet` list only when a sweep sets them (in
/// a section, a grid axis or `--set`): sweeps written before they existed keep their bytes.
pub const LISTED_WHEN_SET: &[&str] =
    &["task.table", "metrics.progress", "metrics.key_frequencies", "metrics.fixed_frequencies"];

pub fn spec(key: &str) -> Option<&'static KeySpec> {
    SCHEMA.iter().find(|s| s.key == key)
}

/// Type-check and range-check one TOML value for `spec`. The error says what was expected;
/// the caller adds the key and the file.
pub fn check_value(spec: &KeySpec, raw: &toml::Value) -> Result<Value, String> {
    match (spec.kind, raw) {
        (Kind::Text, toml::Value::String(s)) => Ok(Value::Str(s.clone())),
        (Kind::Choice(options), toml::Value::String(s)) => {
            if options.contains(&s.as_str()) {
                Ok(Value::Str(s.clone()))
            } else {
                Err(format!("\"{s}\" is not one of {}", options.join(", ")))
            }
        }
        (Kind::Int { min }, toml::Value::Integer(i)) => {
            if *i >= min {
                Ok(Value::Int(*i))
            } else {
                Err(format!("{i} is below the minimum {min}"))
            }
        }
        (Kind::Float { low, high, open_low, open_high }, toml::Value::Float(_) | toml::Value::Integer(_)) => {
            let x = match raw {
                toml::Value::Float(x) => *x,
                toml::Value::Integer(i) => *i as f64,
                _ => unreachable!("matched above"),
            };
            let above_low = if open_low { x > low } else { x >= low };
            let below_high = if open_high { x < high } else { x <= high };
            if x.is_finite() && above_low && below_high {
                Ok(Value::Float(x))
            } else {
                let (l, h) = (if open_low { "(" } else { "[" }, if open_high { ")" } else { "]" });
                Err(format!("{x} is outside {l}{low}, {high}{h}"))
            }
        }
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (Kind::IntList { min }, toml::Value::Array(items)) => {
            if items.is_empty() {
                return Err("the list is empty".into());
            }
            items
                .iter()
                .map(|item| match item {
                    toml::Value::Integer(i) if *i >= min => Ok(*i),
                    toml::Value::Integer(i) => Err(format!("{i} is below the minimum {min}")),
                    other => Err(format!("expected integers, found {}", other.type_str())),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::IntList)
        }
        (kind, other) => Err(format!("expected {}, found {}", kind_name(kind), other.type_str())),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Choice(_) | Kind::Text => "a string",
        Kind::Int { .. } => "an integer",
        Kind::Float { .. } => "a number",
        Kind::Bool => "a boolean",
        Kind::IntList { .. } => "a list of integers",
    }
}
