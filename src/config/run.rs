//! The typed configuration of one run, and the key that decides which runs can share a stack.

use super::progress::ProgressConfig;
use super::schema::{Keys, Value};
pub use crate::kernels::activation::Activation;
pub use crate::kernels::loss::Loss;
pub use crate::kernels::round::Precision;
use crate::models::{Arch, ModelConfig};
pub use crate::tasks::{is_prime, Op};
use crate::tasks::{pair_rows, PairRows, Symbols, TableFile, TaskShape, MAX_P};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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

#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The model kind and its settings.
    pub model: ModelConfig,
    pub op: Op,
    /// The modulus (a table's vocabulary V).
    pub p: usize,
    /// The rows of an expression or a table, shared by every run that trains them; the
    /// named tasks compute theirs (`crate::data::all_examples`).
    pub pair_rows: Option<Arc<PairRows>>,
    pub train_fraction: f64,
    /// Leave out the pairs with a = 0 or b = 0.
    pub skip_zero: bool,
    /// Bits of a `parity` string.
    pub bits: usize,
    /// Relevant and noise bits, and distinct strings per seed, of `sparse_parity`.
    pub parity_bits: usize,
    pub noise_bits: usize,
    pub samples: usize,
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
    pub progress: ProgressConfig,
}

/// Everything that must be equal for runs to share one stack: the model's architecture (its
/// tensor shapes and code path), the data's shapes and the training loop's. The per-run
/// quantities (seed, op, lr, weight decay, betas, eps, all_reg) are tensors with a leading R
/// axis and may differ inside a stack.
#[derive(Clone, Debug, PartialEq)]
pub struct StackKey {
    pub arch: Arch,
    pub n_examples: usize,
    pub n_train: usize,
    pub training: TrainingKey,
}

/// The training keys every run of a stack shares: one loop runs them all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingKey {
    pub batch_size: usize,
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

    /// A run's config from its resolved keys: the task's keys first (the model's checks need
    /// the task's shape), then the model kind's own, then training's.
    pub fn from_values(values: &BTreeMap<&'static str, Value>) -> Result<RunConfig> {
        let keys = Keys(values);
        let precision = keys.choice(
            "train.dtype",
            &[
                ("f32", Precision::F32),
                ("f64", Precision::F64),
                ("bf16", Precision::Bf16),
                ("bf16_mixed", Precision::Bf16Mixed),
            ],
        )?;
        let op = task_op(keys)?;
        let p = match &op {
            Op::Table(table) => table.vocab,
            _ => keys.int("task.p")?,
        };
        let skip_zero = keys.boolean("task.skip_zero")?;
        // An expression's rows are evaluated only for a p the check below accepts.
        let pair_rows = match &op {
            Op::Expression(expression) if p <= MAX_P => {
                Some(pair_rows::expression_rows(expression, p, skip_zero).map_err(|e| anyhow!("key `task.op`: {e}"))?)
            }
            Op::Table(table) => Some(table.rows.clone()),
            _ => None,
        };
        let (bits, parity_bits, noise_bits) =
            (keys.int("task.bits")?, keys.int("task.parity_bits")?, keys.int("task.noise_bits")?);
        let config = RunConfig {
            model: ModelConfig::from_keys(keys, &task_shape(&op, p, n_bits(&op, bits, parity_bits, noise_bits)))?,
            op,
            p,
            pair_rows,
            train_fraction: keys.float("task.train_fraction")?,
            skip_zero,
            bits,
            parity_bits,
            noise_bits,
            samples: keys.int("task.samples")?,
            epochs: keys.int("train.epochs")?,
            batch_size: keys.int("train.batch_size")?,
            warmup: keys.int("train.warmup")?,
            optimizer: keys.choice(
                "train.optimizer",
                &[
                    ("adamw", Optimizer::AdamW),
                    ("ortho_adamw", Optimizer::OrthoAdamW),
                    ("sgd", Optimizer::Sgd),
                    ("muon", Optimizer::Muon),
                    ("scion", Optimizer::Scion),
                ],
            )?,
            lr: keys.float("train.lr")?,
            weight_decay: keys.float("train.weight_decay")?,
            beta1: keys.float("train.beta1")?,
            beta2: keys.float("train.beta2")?,
            eps: keys.float("train.eps")?,
            all_reg: keys.boolean("train.all_reg")?,
            momentum: keys.float("train.momentum")?,
            muon_momentum: keys.float("train.muon_momentum")?,
            muon_adam_lr: keys.float("train.muon_adam_lr")?,
            ns_steps: keys.int("train.ns_steps")?,
            scion_momentum: keys.float("train.scion_momentum")?,
            scion_radius: keys.float("train.scion_radius")?,
            scion_sign_radius: keys.float("train.scion_sign_radius")?,
            scion_constrained: keys.boolean("train.scion_constrained")?,
            polar_bf16: keys.choice("train.polar_dtype", &[("bf16", true), ("f32", false)])?,
            constraint: keys.choice(
                "train.constraint",
                &[
                    ("none", Constraint::None),
                    ("spectral_normalize", Constraint::SpectralNormalize),
                    ("spectral_hardcap", Constraint::SpectralHardcap),
                    ("spectral_clipped_wd", Constraint::SpectralClippedWd),
                    ("stiefel", Constraint::Stiefel),
                ],
            )?,
            constraint_beta: keys.float("train.constraint_beta")?,
            constraint_lambda: keys.float("train.constraint_lambda")?,
            embed_rms_cap: keys.float("train.embed_rms_cap")?,
            reference_ortho_defaults: keys.boolean("train.reference_ortho_defaults")?,
            precision,
            loss: keys.choice(
                "train.loss",
                &[("softmax", Loss::Softmax), ("stablemax", Loss::StableMax), ("sparsemax", Loss::Sparsemax)],
            )?,
            loss_bf16: keys.choice(
                "train.loss_dtype",
                &[("bf16", true), ("f32", false), ("auto", precision == Precision::Bf16)],
            )?,
            log_every: keys.int("train.log_every")?,
            stop: keys.choice(
                "train.stop",
                &[
                    ("none", Stop::Never),
                    ("diverged", Stop::Diverged),
                    ("grok", Stop::Grok),
                    ("grok_after_train", Stop::GrokAfterTrain),
                    ("solve", Stop::Solve),
                ],
            )?,
            extra_epochs: keys.int("train.extra_epochs")?,
            checkpoint_every: keys.int("train.checkpoint_every")?,
            lipschitz: keys.boolean("metrics.lipschitz")?,
            lipschitz_rms: keys.choice("metrics.lipschitz_norm", &[("rms", true), ("l2", false)])?,
            power_iters: keys.int("metrics.power_iters")?,
            progress: ProgressConfig::from_values(values)?,
        };
        config.check()?;
        Ok(config)
    }

    /// Checks that involve several keys, or limits no single key's range expresses.
    fn check(&self) -> Result<()> {
        if let Op::Table(table) = &self.op {
            return self.check_table(table);
        }
        if self.p > MAX_P {
            bail!("key `task.p`: {} is larger than the supported {MAX_P}", self.p);
        }
        if self.op.divides() && !is_prime(self.p) {
            bail!(
                "key `task.p`: {} divides by b and needs a prime modulus (b⁻¹ must exist for every b ≠ 0), {} is not \
                prime",
                self.op_name(),
                self.p
            );
        }
        if self.op.is_s5() && self.p != crate::tasks::S5_ORDER {
            bail!(
                "key `task.p`: {} works on the {} permutations of 5 elements, so task.p must be {} (it is {})",
                self.op_name(),
                crate::tasks::S5_ORDER,
                crate::tasks::S5_ORDER,
                self.p
            );
        }
        if self.op == Op::Parity && self.bits > MAX_PARITY_BITS {
            bail!(
                "key `task.bits`: parity takes all 2^bits strings; {} bits are more than the supported \
                {MAX_PARITY_BITS}",
                self.bits
            );
        }
        if self.op == Op::SparseParity {
            let n = self.parity_bits + self.noise_bits;
            if n > 64 {
                bail!("keys `task.parity_bits` + `task.noise_bits`: {n} bits are more than the supported 64");
            }
            // Distinct strings are drawn by rejection: keep at least half the strings unused.
            if n < 64 && self.samples as u128 > (1u128 << n) / 2 {
                bail!(
                    "key `task.samples`: {} distinct strings of {n} bits are more than half of the 2^{n} there are",
                    self.samples
                );
            }
        }
        if self.skip_zero && (self.op.is_bits() || self.op.is_s5()) {
            bail!("key `task.skip_zero`: leaves out operands 0 of modular operations; {} has none", self.op_name());
        }
        self.progress.check(&self.op, self.p, self.skip_zero)?;
        self.check_split()
    }

    /// A table's own checks: what its rows allow (every value was checked as it was read).
    fn check_table(&self, table: &TableFile) -> Result<()> {
        if self.skip_zero {
            bail!("key `task.skip_zero`: a table file lists its rows; leave out the rows you do not want");
        }
        self.progress.check(&self.op, self.p, self.skip_zero)?;
        if table.rows.train.is_some() {
            return Ok(());
        }
        self.check_split()
    }

    /// Both splits of a drawn split are non-empty.
    fn check_split(&self) -> Result<()> {
        let n_examples = self.n_examples();
        let n_train = self.n_train();
        if n_train == 0 || n_train >= n_examples {
            bail!(
                "key `task.train_fraction`: {} of {n_examples} rows leaves {n_train} train and {} test rows; both must \
                    be non-empty",
                self.train_fraction,
                n_examples - n_train.min(n_examples)
            );
        }
        Ok(())
    }

    /// What the model sees of the task: a row's symbols and the classes.
    pub fn task_shape(&self) -> TaskShape {
        task_shape(&self.op, self.p, self.n_bits())
    }

    /// The architecture every run with this config trains.
    pub fn arch(&self) -> Arch {
        Arch::new(&self.model, &self.task_shape())
    }

    /// The operation's canonical name.
    pub fn op_name(&self) -> &str {
        self.op.name()
    }

    /// Bits per row of a bit task.
    pub fn n_bits(&self) -> usize {
        n_bits(&self.op, self.bits, self.parity_bits, self.noise_bits)
    }

    /// Every row of the task: p² pairs (p·(p−1) for div, whose b ≠ 0), 2^bits strings for
    /// parity, `task.samples` strings for sparse parity, an expression's defined pairs, a
    /// table's rows.
    pub fn n_examples(&self) -> usize {
        if let Some(rows) = &self.pair_rows {
            return rows.len();
        }
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

    /// Train rows: a table's `split` column, or the floor of train_fraction · N.
    pub fn n_train(&self) -> usize {
        if let Some(fixed) = self.pair_rows.as_ref().and_then(|rows| rows.fixed_train_count()) {
            return fixed;
        }
        (self.train_fraction * self.n_examples() as f64).floor() as usize
    }

    pub fn n_test(&self) -> usize {
        self.n_examples() - self.n_train()
    }

    /// Output classes: p residues (and p gcd values, p = 120 elements of S5), 2 for parity.
    pub fn classes(&self) -> usize {
        self.task_shape().classes
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
        StackKey {
            arch: self.arch(),
            n_examples: self.n_examples(),
            n_train: self.n_train(),
            training: TrainingKey {
                batch_size: self.batch_size,
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
            },
        }
    }
}

/// Bits per row of a bit task: all of parity's, or sparse parity's relevant and noise bits.
fn n_bits(op: &Op, bits: usize, parity_bits: usize, noise_bits: usize) -> usize {
    match op {
        Op::Parity => bits,
        _ => parity_bits + noise_bits,
    }
}

/// A task's shape: operand pairs mod p with p classes, a table's V symbols and C classes, or
/// bit strings with 2.
fn task_shape(op: &Op, p: usize, n_bits: usize) -> TaskShape {
    match op {
        Op::Parity | Op::SparseParity => TaskShape { symbols: Symbols::Bits { n: n_bits }, classes: 2 },
        Op::Table(table) => TaskShape { symbols: Symbols::Operands { p: table.vocab }, classes: table.classes },
        _ => TaskShape { symbols: Symbols::Operands { p }, classes: p },
    }
}

/// The task of `task.table` (an absolute path once the sweep is read), or of `task.op`.
fn task_op(keys: Keys) -> Result<Op> {
    if let Ok(path) = keys.string(TABLE_KEY) {
        return Ok(Op::Table(
            TableFile::read_shared(Path::new(path)).map_err(|e| anyhow!("key `{TABLE_KEY}`: {e:#}"))?,
        ));
    }
    Op::parse(keys.string("task.op")?).map_err(|e| anyhow!("key `task.op`: {e}"))
}

/// The key of a table file.
pub const TABLE_KEY: &str = "task.table";

/// 2^20 strings: a million rows.
pub const MAX_PARITY_BITS: usize = 20;
