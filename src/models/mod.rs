//! What every model kind offers the rest of the program: its parameters with their roles and
//! optimizer groups, a training pass (loss statistics and every gradient) and an evaluation
//! pass over a stack, and its inputs from a task's rows. The trainer, the optimizers,
//! checkpoints and export see only [`Model`]; each kind's math lives in its own module.
//!
//! Every pass has two paths: the kind's CPU pass on the CPU (f32/f64), and candle ops over
//! whole tensors elsewhere, a group of runs at a time (what a GPU runs, and the reference the
//! tests compare the CPU pass against).

pub mod mlp;
pub mod transformer;

use crate::config::schema::Keys;
use crate::data::Examples;
use crate::kernels::loss::{self, Loss};
use crate::kernels::round::{Precision, Storage};
use crate::tasks::TaskShape;
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use mlp::{Mlp, MlpArch, MlpConfig};
use transformer::{Masks, StepDropout, Tokens, Transformer, TransformerArch, TransformerConfig};

/// Hidden layers (MLP) or blocks (transformer) at most: keeps every size estimate far from
/// overflowing, and is far deeper than any grokking model.
pub const MAX_LAYERS: usize = 256;

/// Which model a run trains, with its settings (`model.kind` and the kind's own keys).
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    Mlp(MlpConfig),
    Transformer(TransformerConfig),
}

impl ModelConfig {
    /// `model.kind`'s model, its keys read and checked for a task of this shape.
    pub fn from_keys(keys: Keys, task: &TaskShape) -> Result<ModelConfig> {
        Ok(match keys.string("model.kind")? {
            "mlp" => ModelConfig::Mlp(MlpConfig::from_keys(keys, task)?),
            "transformer" => ModelConfig::Transformer(TransformerConfig::from_keys(keys)?),
            other => bail!("key `model.kind`: \"{other}\" is not one of mlp, transformer"),
        })
    }

    /// The canonical sweep `grokstack bench` times for this kind, and its name in errors.
    pub fn bench_sweep(&self) -> (&'static str, &'static str) {
        match self {
            ModelConfig::Mlp(_) => (mlp::BENCH_SWEEP, "the canonical benchmark sweep"),
            ModelConfig::Transformer(_) => (transformer::BENCH_SWEEP, "the canonical transformer benchmark sweep"),
        }
    }
}

/// Which pass trains a stack: their activations take memory differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The kind's CPU pass (`mlp::cpu`, `transformer::cpu`): block buffers per thread, partial
    /// gradients per chunk.
    Cpu,
    /// Tensor ops on groups of runs (other devices).
    Tensors,
}

impl Pass {
    pub fn on(device: &Device) -> Pass {
        if device.is_cpu() {
            Pass::Cpu
        } else {
            Pass::Tensors
        }
    }
}

/// What the memory estimate of a stack knows besides its architecture.
#[derive(Clone, Copy, Debug)]
pub struct StackSize {
    pub runs: usize,
    pub n_train: usize,
    pub n_test: usize,
    /// Bytes of one stored value (4, or 8 in f64).
    pub value_bytes: usize,
    /// Copies of the parameters a run holds during the update (see `plan::stack_bytes`).
    pub param_copies: usize,
    pub pass: Pass,
}

/// Where a parameter sits among a model's maps, for the optimizers and constraints that treat
/// layers by their place (Scion's norms, the spectral constraints, the embedding's RMS cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A token embedding table `[R, rows, d]`: `train.embed_rms_cap` caps each row.
    Embedding,
    /// A Linear layer's weight `[R, in, out]` that reads the input (the two-hot first layer).
    InputLayer,
    /// A hidden Linear layer's weight `[R, in, out]`.
    HiddenLayer,
    /// The Linear layer that writes the logits (a one-layer MLP's only layer).
    OutputLayer,
    /// Anything else (the transformer's matrices, norms, biases and positions).
    Other,
}

impl Place {
    /// A Linear layer's weight of a stack of Linear maps.
    pub fn is_linear_layer(self) -> bool {
        matches!(self, Place::InputLayer | Place::HiddenLayer | Place::OutputLayer)
    }
}

/// How the optimizers treat a parameter, decided by the model that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// Decayed (and projected by ⊥AdamW) in every run; otherwise only in runs with `all_reg`.
    pub always_decayed: bool,
    /// A hidden 2-D matrix whose update Muon orthogonalizes; the others take AdamW at
    /// `muon_adam_lr` under Muon (Jordan's rule).
    pub muon: bool,
    pub place: Place,
}

impl Group {
    /// Whether a run with `all_reg` decays this parameter.
    pub fn decayed(self, all_reg: bool) -> bool {
        self.always_decayed || all_reg
    }
}

#[derive(Clone, Debug)]
pub struct Param {
    /// PyTorch-style name: `embedding.weight`, `layers.0.weight`, …
    pub name: String,
    pub group: Group,
    pub value: Tensor,
}

/// The shapes shared by every run of a stack, per model kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Arch {
    Mlp(MlpArch),
    Transformer(TransformerArch, Tokens),
}

impl Arch {
    /// The architecture of `config` on a task of this shape.
    pub fn new(config: &ModelConfig, task: &TaskShape) -> Arch {
        match config {
            ModelConfig::Mlp(c) => Arch::Mlp(MlpArch::new(c, task)),
            ModelConfig::Transformer(c) => {
                Arch::Transformer(TransformerArch::new(c, task), Tokens::new(c.tokens, task.symbols))
            }
        }
    }

    /// The model's input `[N, K]` (flattened) for the rows of `examples`: the MLP's table
    /// indices, or the transformer's tokens.
    pub fn inputs(&self, examples: &Examples) -> Vec<u32> {
        match self {
            Arch::Mlp(arch) => arch.table_indices(examples),
            Arch::Transformer(_, tokens) => tokens.encode(examples),
        }
    }

    /// Model inputs K per row: the MLP's table indices (a, b or the bits), or the tokens.
    pub fn row_width(&self) -> usize {
        match self {
            Arch::Mlp(arch) => arch.row_width(),
            Arch::Transformer(arch, _) => arch.seq_len,
        }
    }

    /// The values of a row's widest activation (which sizes the groups of the tensor path).
    pub fn widest(&self) -> usize {
        match self {
            Arch::Mlp(arch) => arch.widest(),
            Arch::Transformer(arch, _) => arch.widest(),
        }
    }

    /// One line for `--dry-run`.
    pub fn describe(&self) -> String {
        match self {
            Arch::Mlp(arch) => arch.describe(),
            Arch::Transformer(arch, _) => arch.describe(),
        }
    }

    /// FLOPs of one row's forward pass (matmuls; an MLP's first layer counted as a dense matmul).
    pub fn forward_flops_per_row(&self) -> f64 {
        match self {
            Arch::Mlp(arch) => arch.forward_flops_per_row(),
            Arch::Transformer(arch, _) => arch.forward_flops_per_row(),
        }
    }

    /// Estimated peak bytes of a stack's parameters, optimizer state and activations (its data
    /// aside: see `plan::stack_bytes`).
    pub fn stack_bytes(&self, size: &StackSize) -> usize {
        match self {
            Arch::Mlp(arch) => arch.stack_bytes(size),
            Arch::Transformer(arch, _) => arch.stack_bytes(size),
        }
    }

    /// How many runs one pass of the tensor path over `rows` examples takes at a time: enough
    /// that each activation tensor `[G, N, H]` holds about 256 M values (1 GiB in f32). The
    /// tensor path is what a GPU runs: each op is one kernel launch over the group, and at this
    /// size a launch (microseconds) is small against the pass over memory (about half a
    /// millisecond on an H200). A big stack is processed group by group, which keeps its
    /// activation memory (a few GiB) from growing with R.
    pub fn runs_per_group(&self, rows: usize) -> usize {
        runs_per_group(self.widest(), rows)
    }

    /// The `metrics.parquet` columns of this model's parameter norms besides the embedding's
    /// (`embedding_weight_norm`), in the order of its parameters.
    pub fn norm_columns(&self) -> Vec<String> {
        match self {
            Arch::Mlp(arch) => arch.norm_columns(),
            Arch::Transformer(arch, _) => arch.norm_columns(),
        }
    }

    /// The `metrics.parquet` columns of the spectral norms behind the Lipschitz bound (none where
    /// the model has no such bound).
    pub fn spectral_columns(&self) -> Vec<String> {
        match self {
            Arch::Mlp(arch) => arch.spectral_columns(),
            Arch::Transformer(..) => Vec::new(),
        }
    }

    /// How an exported run's tensors compute its logits (`grokstack export`'s metadata).
    pub fn export_description(&self) -> &'static str {
        match self {
            Arch::Mlp(_) => mlp::EXPORT_DESCRIPTION,
            Arch::Transformer(..) => transformer::EXPORT_DESCRIPTION,
        }
    }
}

/// [`Arch::runs_per_group`] for a model whose widest activation has `widest` values per row.
fn runs_per_group(widest: usize, rows: usize) -> usize {
    const VALUES_PER_TENSOR: usize = 256 << 20;
    (VALUES_PER_TENSOR / (rows * widest).max(1)).max(1)
}

/// Where a training pass draws its dropout masks: each run's own key at this optimizer step.
pub struct DropoutDraw<'a> {
    /// The seeds of the stack's runs, in stack order.
    pub seeds: &'a [u64],
    /// The optimizer steps taken so far.
    pub step: usize,
}

impl DropoutDraw<'_> {
    /// The dropout of the run at stack position `run` at this step: both passes draw from it.
    pub fn run(&self, run: usize) -> Result<StepDropout> {
        StepDropout::new(self.seeds[run], self.step)
    }
}

/// How a pass runs, beside its rows and labels: the loss and the precision of its sums, how
/// many runs the tensor path takes at a time (the CPU pass takes one run per task whatever
/// `group` is), where a training pass draws its dropout masks (an evaluation never drops
/// units), and whether the logits it computes anyway are kept (the progress measures read
/// them).
#[derive(Clone, Copy)]
pub struct PassOptions<'a> {
    pub loss: Loss,
    /// The loss and softmax sums are kept in bf16 (`train.loss_dtype`).
    pub loss_bf16: bool,
    /// Runs per group on the tensor path (see [`Model::runs_per_group`]).
    pub group: usize,
    /// None: no dropout, even in a model that has some.
    pub dropout: Option<&'a DropoutDraw<'a>>,
    pub keep_logits: bool,
}

impl PassOptions<'_> {
    /// A pass without dropout that keeps no logits.
    pub fn new(loss: Loss, loss_bf16: bool, group: usize) -> PassOptions<'static> {
        PassOptions { loss, loss_bf16, group, dropout: None, keep_logits: false }
    }
}

/// The parameters of a stack of runs.
#[derive(Clone, Debug)]
pub struct Model {
    pub arch: Arch,
    pub params: Vec<Param>,
    /// Where values are rounded to bf16 (nowhere in f32 and f64).
    pub storage: Storage,
}

/// What a kind's backward pass needs from its forward pass on the tensor path.
pub enum Cache {
    Mlp(mlp::Cache),
    Transformer(transformer::Cache),
}

/// The dtype tensors live in: bf16 runs compute in f32 on the CPU and round where they store.
pub fn compute_dtype(precision: Precision) -> DType {
    match precision {
        Precision::F64 => DType::F64,
        Precision::F32 | Precision::Bf16 | Precision::Bf16Mixed => DType::F32,
    }
}

/// Groups of runs joined back along the run axis (no copy for a single group).
fn cat_runs(mut parts: Vec<Tensor>) -> Result<Tensor> {
    Ok(if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(&parts, 0)? })
}

impl Model {
    /// Every run's initial parameters, each from its own seed.
    pub fn init(arch: &Arch, seeds: &[u64], precision: Precision, device: &Device) -> Result<Model> {
        let params = match arch {
            Arch::Mlp(mlp) => mlp::init(mlp, seeds, precision, device)?,
            Arch::Transformer(arch, _) => Transformer::init(arch, seeds, compute_dtype(precision), device)?.params,
        };
        Ok(Model { arch: arch.clone(), params, storage: Storage::of(precision) })
    }

    pub fn runs(&self) -> usize {
        self.params[0].value.dims()[0]
    }

    /// The MLP view of an MLP stack.
    pub fn mlp(&self) -> Option<Mlp<'_>> {
        match &self.arch {
            Arch::Mlp(arch) => Some(Mlp { arch, model: self }),
            Arch::Transformer(..) => None,
        }
    }

    /// The transformer of a transformer stack (its parameters are shared, not copied).
    fn transformer(&self, arch: &TransformerArch) -> Result<Transformer> {
        Transformer::from_params(arch, self.params.clone())
    }

    /// The parameter whose rows are the operands' tables, and whether it is a two-hot first
    /// layer: the token embedding `[R, V, d]` (a residue's row is its token's), or with two-hot
    /// input the first Linear layer `[R, 2p, H₀]` (rows 0..p see operand a, p..2p operand b).
    pub fn operand_table(&self) -> Option<(&Tensor, bool)> {
        let find = |place: Place| self.params.iter().find(|p| p.group.place == place).map(|p| &p.value);
        find(Place::Embedding).map(|e| (e, false)).or_else(|| find(Place::InputLayer).map(|w| (w, true)))
    }

    /// The matrices whose spectral norms bound the Lipschitz constant (`metrics.lipschitz`).
    pub fn spectral_weights(&self) -> Vec<&Tensor> {
        match &self.arch {
            Arch::Mlp(arch) => Mlp { arch, model: self }.linear_weights(),
            Arch::Transformer(..) => Vec::new(),
        }
    }

    /// A weight as the matmuls see it: mixed bf16 rounds the f32 master copy at use.
    pub(crate) fn compute_copy(&self, weight: &Tensor) -> Result<Tensor> {
        if self.storage.bf16_compute && !self.storage.bf16_state {
            self.storage.compute(weight.clone())
        } else {
            Ok(weight.clone())
        }
    }

    /// The runs at `start..start + len` as a model of their own (views, no copies).
    pub fn narrow_runs(&self, start: usize, len: usize) -> Result<Model> {
        let params = self
            .params
            .iter()
            .map(|p| Ok(Param { value: p.value.narrow(0, start, len)?, ..p.clone() }))
            .collect::<Result<_>>()?;
        Ok(Model { arch: self.arch.clone(), params, storage: self.storage })
    }

    /// Whether the passes take the kind's CPU pass: the tensors are f32 or f64 on the CPU.
    fn on_cpu_pass(&self) -> bool {
        crate::kernels::use_cpu_kernel(&self.params[0].value)
    }

    /// Runs per group in a pass over `rows` examples (see [`Arch::runs_per_group`]).
    pub fn runs_per_group(&self, rows: usize) -> usize {
        self.arch.runs_per_group(rows)
    }

    /// Forward pass on the tensor path: inputs `[R, N, K]` → logits `[R, N, C]`, and with
    /// `for_backward` what the backward pass needs. `masks`: a training pass's dropout.
    pub fn forward(&self, rows: &Tensor, for_backward: bool, masks: Option<&Masks>) -> Result<(Tensor, Cache)> {
        match &self.arch {
            Arch::Mlp(arch) => {
                Mlp { arch, model: self }.forward(rows, for_backward).map(|(logits, cache)| (logits, Cache::Mlp(cache)))
            }
            Arch::Transformer(arch, _) => {
                self.transformer(arch)?.forward(rows, masks).map(|(logits, cache)| (logits, Cache::Transformer(cache)))
            }
        }
    }

    /// The dropout masks of runs `start..start + len` for a training pass over `rows` rows
    /// (none for a model without dropout).
    fn masks(&self, draw: Option<&DropoutDraw>, start: usize, len: usize, rows: usize) -> Result<Option<Masks>> {
        match (&self.arch, draw) {
            (Arch::Transformer(arch, _), Some(draw)) if arch.dropout.any() => {
                let runs = (start..start + len).map(|run| draw.run(run)).collect::<Result<Vec<_>>>()?;
                let param = &self.params[0].value;
                Ok(Some(Masks::sample(arch, &runs, rows, param.dtype(), param.device())?))
            }
            _ => Ok(None),
        }
    }

    /// Backward pass on the tensor path from d(loss)/d(logits) `[R, N, C]`: one gradient per
    /// parameter, in the order of `self.params`.
    pub fn backward(&self, rows: &Tensor, cache: &Cache, dlogits: &Tensor) -> Result<Vec<Tensor>> {
        match (&self.arch, cache) {
            (Arch::Mlp(arch), Cache::Mlp(cache)) => Mlp { arch, model: self }.backward(rows, cache, dlogits),
            (Arch::Transformer(arch, _), Cache::Transformer(cache)) => {
                self.transformer(arch)?.backward(rows, cache, dlogits)
            }
            _ => anyhow::bail!("internal: a cache of another model kind"),
        }
    }

    /// Loss statistics `[R, 4]` of the current weights (before the update), the gradient of
    /// every parameter in the order of `self.params`, and the logits `[R, N, C]` when
    /// `options.keep_logits`: the kind's CPU pass on the CPU, else the tensor ops.
    pub fn train_pass(
        &self,
        rows: &Tensor,
        labels: &Tensor,
        options: &PassOptions,
    ) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
        if !self.on_cpu_pass() {
            return self.train_pass_tensors(rows, labels, options);
        }
        match &self.arch {
            Arch::Mlp(arch) => mlp::cpu::pass(&Mlp { arch, model: self }, rows, labels, options, true),
            Arch::Transformer(arch, _) => transformer::cpu::pass(&self.transformer(arch)?, rows, labels, options, true),
        }
    }

    /// [`Model::train_pass`] with candle ops on `[G, N, …]` tensors, `options.group` runs at a
    /// time (public so that tests compare the CPU pass against it).
    pub fn train_pass_tensors(
        &self,
        rows: &Tensor,
        labels: &Tensor,
        options: &PassOptions,
    ) -> Result<(Tensor, Vec<Tensor>, Option<Tensor>)> {
        let PassOptions { loss: loss_kind, loss_bf16, group, dropout, keep_logits } = *options;
        let runs = self.runs();
        let mut stats = Vec::new();
        let mut kept = Vec::new();
        let mut grads: Vec<Vec<Tensor>> = vec![Vec::new(); self.params.len()];
        for start in (0..runs).step_by(group.max(1)) {
            let len = group.min(runs - start);
            let part = if len == runs { self.clone() } else { self.narrow_runs(start, len)? };
            let (rows, labels) = (rows.narrow(0, start, len)?, labels.narrow(0, start, len)?);
            let masks = self.masks(dropout, start, len, rows.dim(1)?)?;
            let (logits, cache) = part.forward(&rows, true, masks.as_ref())?; // [G, N, C]
            stats.push(loss::stats(loss_kind, &logits, &labels, loss_bf16)?); // [G, 4]
            let dlogits = self.storage.compute(loss::grad(loss_kind, &logits, &labels)?)?; // [G, N, C]
            for (all, g) in grads.iter_mut().zip(part.backward(&rows, &cache, &dlogits)?) {
                all.push(g);
            }
            if keep_logits {
                kept.push(logits);
            }
        }
        let logits = keep_logits.then(|| cat_runs(kept)).transpose()?;
        Ok((cat_runs(stats)?, grads.into_iter().map(cat_runs).collect::<Result<_>>()?, logits))
    }

    /// Loss statistics `[R, 4]` on `rows` (no backward pass, no dropout: `options.dropout` is
    /// not read), and the logits `[R, N, C]` when `options.keep_logits`: the kind's CPU pass on
    /// the CPU, else the tensor ops.
    pub fn evaluate(&self, rows: &Tensor, labels: &Tensor, options: &PassOptions) -> Result<(Tensor, Option<Tensor>)> {
        if !self.on_cpu_pass() {
            return self.evaluate_tensors(rows, labels, options);
        }
        let (stats, _, logits) = match &self.arch {
            Arch::Mlp(arch) => mlp::cpu::pass(&Mlp { arch, model: self }, rows, labels, options, false)?,
            Arch::Transformer(arch, _) => {
                transformer::cpu::pass(&self.transformer(arch)?, rows, labels, options, false)?
            }
        };
        Ok((stats, logits))
    }

    /// [`Model::evaluate`] with candle ops on `[G, N, …]` tensors, `options.group` runs at a
    /// time (public so that tests compare the CPU pass against it).
    pub fn evaluate_tensors(
        &self,
        rows: &Tensor,
        labels: &Tensor,
        options: &PassOptions,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let PassOptions { loss: loss_kind, loss_bf16, group, keep_logits, .. } = *options;
        let runs = self.runs();
        let mut stats = Vec::new();
        let mut kept = Vec::new();
        for start in (0..runs).step_by(group.max(1)) {
            let len = group.min(runs - start);
            let part = if len == runs { self.clone() } else { self.narrow_runs(start, len)? };
            let (logits, _) = part.forward(&rows.narrow(0, start, len)?, false, None)?; // [G, N, C]
            stats.push(loss::stats(loss_kind, &logits, &labels.narrow(0, start, len)?, loss_bf16)?);
            if keep_logits {
                kept.push(logits);
            }
        }
        Ok((cat_runs(stats)?, keep_logits.then(|| cat_runs(kept)).transpose()?))
    }

    /// Per-run L2 norm of every parameter, `[R, n_params]` f64.
    pub fn param_norms(&self) -> Result<Tensor> {
        let norms = self
            .params
            .iter()
            .map(|p| Ok(p.value.to_dtype(DType::F64)?.sqr()?.flatten_from(1)?.sum_keepdim(1)?.sqrt()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&norms, 1)?)
    }
}
