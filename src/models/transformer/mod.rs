//! The stacked transformer on the tensor path: every weight is `[R, ...]` over R runs, every
//! projection one batched matmul over the stack, and runs never mix. Forward and backward
//! passes are written side by side, layer by layer, as in llm.c.
//!
//! Shapes: R runs, N rows, T positions (tokens per row), V vocabulary, C classes, d model
//! width, H heads, e = d / H head width, F FFN width. A row's logits are read out at its last
//! position only.
//!
//!   embedding: x₀ = E[tokens] (+ P)                    E [R, V, d], P [R, T, d] → [R, N·T, d]
//!   pre-norm block:  x ← x + attn(norm1(x));  x ← x + ffn(norm2(x))
//!   post-norm block: x ← norm1(x + attn(x));  x ← norm2(x + ffn(x))   (nn.TransformerEncoderLayer)
//!   readout: logits = norm(x[:, last]) · W_u + b_u    (the final norm with pre-norm only) → [R, N, C]
//!
//! The last block computes only what the readout needs: the keys and values of every
//! position, but the query, attention output and FFN of the last position only
//! ([`Transformer::forward`]); [`Transformer::forward_full`] computes every position of
//! every block, which the tests compare the shortcut against.
//!
//! Matrices are stored `[R, in, out]` (y = x·W), the transpose of PyTorch's `[out, in]`.
//! Parameters, in this order (`i` = layer):
//!
//! | name                               | shape        | role      | present when            |
//! |------------------------------------|--------------|-----------|-------------------------|
//! | `embedding.weight`                 | `[R, V, d]`  | Embedding | always                  |
//! | `position.weight`                  | `[R, T, d]`  | Position  | learned positions       |
//! | `layers.i.norm1.weight`            | `[R, d]`     | Gain      | norm ≠ none             |
//! | `layers.i.norm1.bias`              | `[R, d]`     | Bias      | LayerNorm               |
//! | `layers.i.attn.{q,k,v,o}.weight`   | `[R, d, d]`  | Matrix    | always (q, k, v, o)     |
//! | `layers.i.attn.{q,k,v,o}.bias`     | `[R, d]`     | Bias      | biases on (after each weight) |
//! | `layers.i.norm2.weight` / `.bias`  | `[R, d]`     | Gain/Bias | as norm1                |
//! | `layers.i.ffn.w1.weight` / `.bias` | `[R, d, F]`, `[R, F]` | Matrix/Bias | always / biases on |
//! | `layers.i.ffn.w3.weight` / `.bias` | `[R, d, F]`, `[R, F]` | Matrix/Bias | SwiGLU           |
//! | `layers.i.ffn.w2.weight` / `.bias` | `[R, F, d]`, `[R, d]` | Matrix/Bias | always / biases on |
//! | `norm.weight` / `norm.bias`        | `[R, d]`     | Gain/Bias | pre-norm, as norm1      |
//! | `unembed.weight` / `unembed.bias`  | `[R, d, C]`, `[R, C]` | Matrix/Bias | always / biases on |
//!
//! Initialization as PyTorch's modules, per run from its own seed (so a run's weights do not
//! depend on its stack): Embedding and positions N(0, 1); Linear weights and biases
//! U(−1/√fan_in, 1/√fan_in); norm gains 1 and biases 0.
//!
//! Modules: [`layers`] (linear, norms, embedding, dropout), [`attention`] (RoPE, softmax,
//! attention), [`ffn`], [`block`] (a block and the whole pass), [`masks`] (dropout masks),
//! [`mask_bits`] (the definition of every mask bit, which a GPU kernel can repeat);
//! [`cpu`] is the fast CPU pass, one block of one run's rows at a time, which the tensor path
//! here is the reference of.

pub mod attention;
pub mod block;
pub mod config;
mod cost;
pub mod cpu;
pub mod ffn;
pub mod grads;
pub mod layers;
pub mod mask_bits;
pub mod masks;

pub use block::Cache;
pub use config::{Dropout, FfnKind, NormKind, NormPlacement, Position, TokenLayout, TransformerConfig};
pub use mask_bits::{DropoutPlace, DropoutSite, StepDropout};
pub use masks::{LayerMasks, Masks, RunLayerMasks, RunMasks};

use crate::data::Examples;
use crate::models::{Group, Param, Place};
use crate::rng::{Rng, Stream};
use crate::tasks::{Symbols, TaskShape};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};

/// How a task's rows become tokens: operands [a, b] as `layout` says (op = p, = = p + 1; or
/// = = p without op), a bit string's bits (0, 1) then = (2) unless the layout is [a, b].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tokens {
    pub layout: TokenLayout,
    /// The operands' range p; `None` for bit strings.
    pub modulus: Option<u32>,
}

impl Tokens {
    pub fn new(layout: TokenLayout, symbols: Symbols) -> Tokens {
        let modulus = match symbols {
            Symbols::Operands { p } => Some(p as u32),
            Symbols::Bits { .. } => None,
        };
        Tokens { layout, modulus }
    }

    /// The tokens `[N, T]` (flattened) of the rows of `examples`.
    pub fn encode(&self, examples: &Examples) -> Vec<u32> {
        let rows = examples.symbols.chunks_exact(examples.width);
        match self.modulus {
            None => {
                let eq = (self.layout != TokenLayout::AB).then_some(2);
                rows.flat_map(|bits| bits.iter().copied().chain(eq)).collect()
            }
            Some(p) => rows
                .flat_map(|ab| match self.layout {
                    TokenLayout::AOpBEq => vec![ab[0], p, ab[1], p + 1],
                    TokenLayout::ABEq => vec![ab[0], ab[1], p],
                    TokenLayout::AB => vec![ab[0], ab[1]],
                })
                .collect(),
        }
    }
}

/// How an exported transformer computes its logits (`grokstack export`'s metadata).
pub const EXPORT_DESCRIPTION: &str =
    "the transformer of grokstack's models::transformer (see its parameter table); config holds every model.* key";

/// The canonical transformer step `grokstack bench` times (`--set model.kind=transformer`):
/// Tveit et al.'s model on p = 97, [a, op, b, =], 2 layers, d 128, 4 heads, SwiGLU 512, pre-norm
/// RMSNorm, RoPE, causal, dropout 0.2 on the FFN hidden units, train fraction 0.5, full batch.
pub const BENCH_SWEEP: &str = r#"
name = "bench-transformer"
[task]
op = "add"
p = 97
train_fraction = 0.5
[model]
kind = "transformer"
layers = 2
d_model = 128
heads = 4
ffn = "swiglu"
ffn_width = 512
norm = "rms"
norm_position = "pre"
positional = "rope"
causal = true
tokens = "a_op_b_eq"
dropout_ffn_hidden = 0.2
[train]
checkpoint_every = 0
"#;

/// RoPE's default base θ (as in Qwen and Llama 3).
pub const DEFAULT_ROPE_BASE: f64 = 1e6;
/// The norms' ε, added to the mean square (RMSNorm) or the variance (LayerNorm).
pub const NORM_EPS: f64 = 1e-5;

/// The shapes and kinds shared by every run of a stack.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerArch {
    pub layers: usize,
    pub d_model: usize,
    /// Attention heads; must divide d_model.
    pub heads: usize,
    pub vocab: usize,
    /// Tokens per row (T).
    pub seq_len: usize,
    pub classes: usize,
    pub ffn: FfnKind,
    /// FFN hidden width F.
    pub ffn_width: usize,
    pub norm: NormKind,
    pub placement: NormPlacement,
    pub position: Position,
    /// Position t attends to positions ≤ t only.
    pub causal: bool,
    /// Biases in the blocks' Linear layers and the unembedding.
    pub bias: bool,
    pub dropout: Dropout,
}

impl TransformerArch {
    /// The transformer of `config` on a task of this shape.
    pub fn new(config: &TransformerConfig, task: &TaskShape) -> TransformerArch {
        let (seq_len, vocab) = config.token_shape(task.symbols);
        TransformerArch {
            layers: config.layers,
            d_model: config.d_model,
            heads: config.heads,
            vocab,
            seq_len,
            classes: task.classes,
            ffn: config.ffn,
            ffn_width: config.ffn_width,
            norm: config.norm,
            placement: config.placement,
            position: config.position,
            causal: config.causal,
            bias: config.bias,
            dropout: config.dropout,
        }
    }

    /// Parameters of one run.
    pub fn param_count(&self) -> usize {
        specs(self).0.iter().map(|spec| spec.shape.iter().product::<usize>()).sum()
    }

    /// The values of a row's widest activation: the FFN's hidden units of every position, and
    /// the attention weights of every head.
    pub fn widest(&self) -> usize {
        self.seq_len * (self.ffn_width.max(self.d_model) + self.heads * self.seq_len)
    }

    /// One line for `--dry-run`.
    pub fn describe(&self) -> String {
        let placement = if self.placement == NormPlacement::Pre { "pre" } else { "post" };
        format!(
            "transformer {} layer(s), d {}, {} heads, {} FFN, {placement}-norm {}, {} positions, {} tokens of {}",
            self.layers,
            self.d_model,
            self.heads,
            self.ffn.name(),
            self.norm.name(),
            self.position.name(),
            self.seq_len,
            self.vocab
        )
    }

    /// One column per parameter but the embedding, `{name}_norm`: its L2 norm.
    pub fn norm_columns(&self) -> Vec<String> {
        specs(self).0.iter().skip(1).map(|spec| format!("{}_norm", spec.name)).collect()
    }

    /// Head width e = d / H.
    pub fn d_head(&self) -> usize {
        self.d_model / self.heads
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(self.layers >= 1, "a transformer needs at least one layer");
        ensure!(
            self.d_model >= 1 && self.vocab >= 1 && self.seq_len >= 1 && self.classes >= 1 && self.ffn_width >= 1,
            "transformer sizes must be positive: {self:?}"
        );
        ensure!(
            self.heads >= 1 && self.d_model.is_multiple_of(self.heads),
            "heads ({}) must divide d_model ({})",
            self.heads,
            self.d_model
        );
        if let Position::Rope { base } = self.position {
            ensure!(
                self.d_head().is_multiple_of(2),
                "RoPE turns pairs of a head's dimensions: d_head ({}) must be even",
                self.d_head()
            );
            ensure!(base > 0.0 && base.is_finite(), "RoPE base must be positive, got {base}");
        }
        let d = self.dropout;
        for (p, name) in [
            (d.attn_weights, "attention weights"),
            (d.attn_out, "attention output"),
            (d.ffn_hidden, "FFN hidden"),
            (d.ffn_out, "FFN output"),
        ] {
            ensure!((0.0..1.0).contains(&p), "dropout on the {name} must be in [0, 1), got {p}");
        }
        Ok(())
    }
}

/// The optimizer group of a parameter (Tveit's code decays every parameter, which
/// `all_reg = true` gives): the hidden matrices (q, k, v, o, FFN) are always decayed and are
/// Muon's; the embeddings, the unembedding, gains and biases are decayed with `all_reg` and
/// take AdamW under Muon (Jordan's rule).
fn group_of(role: Role, name: &str) -> Group {
    let hidden_matrix = role == Role::Matrix && !name.starts_with("unembed");
    let place = if role == Role::Embedding { Place::Embedding } else { Place::Other };
    Group { always_decayed: hidden_matrix, muon: hidden_matrix, place }
}

/// What a transformer parameter is (the table in the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The token embedding `[R, V, d]`.
    Embedding,
    /// The learned position embedding `[R, T, d]`.
    Position,
    /// A Linear layer's weight `[R, in, out]`.
    Matrix,
    /// A norm's gain `[R, d]`.
    Gain,
    /// A Linear layer's or a LayerNorm's bias `[R, n]`.
    Bias,
}

/// Where a Linear layer's parameters sit in the parameter list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinearAt {
    pub weight: usize,
    pub bias: Option<usize>,
}

/// Where a norm's parameters sit (a norm of kind none has none, and no `NormAt`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NormAt {
    pub gain: usize,
    pub bias: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnAt {
    pub q: LinearAt,
    pub k: LinearAt,
    pub v: LinearAt,
    pub o: LinearAt,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FfnAt {
    pub w1: LinearAt,
    /// SwiGLU's gate projection.
    pub w3: Option<LinearAt>,
    pub w2: LinearAt,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerAt {
    pub norm1: Option<NormAt>,
    pub attn: AttnAt,
    pub norm2: Option<NormAt>,
    pub ffn: FfnAt,
}

/// The index of every parameter in the list, so forward and backward look them up by meaning.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub embedding: usize,
    pub position: Option<usize>,
    pub layers: Vec<LayerAt>,
    pub final_norm: Option<NormAt>,
    pub unembed: LinearAt,
}

/// How one parameter starts.
#[derive(Clone, Copy, Debug)]
enum Init {
    Normal,
    /// U(−bound, bound).
    Uniform(f64),
    Ones,
    Zeros,
}

/// A parameter's name, role, per-run shape and initialization.
#[derive(Clone, Debug)]
struct Spec {
    name: String,
    role: Role,
    shape: Vec<usize>,
    init: Init,
}

/// The parameter list of an architecture and where each parameter sits in it.
fn specs(arch: &TransformerArch) -> (Vec<Spec>, Layout) {
    let mut specs: Vec<Spec> = Vec::new();
    let mut push = |name: String, role: Role, shape: Vec<usize>, init: Init| {
        specs.push(Spec { name, role, shape, init });
        specs.len() - 1
    };
    let (d, f, bias) = (arch.d_model, arch.ffn_width, arch.bias);
    let linear =
        |push: &mut dyn FnMut(String, Role, Vec<usize>, Init) -> usize, name: &str, fan_in: usize, fan_out: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let weight = push(format!("{name}.weight"), Role::Matrix, vec![fan_in, fan_out], Init::Uniform(bound));
            let bias = bias.then(|| push(format!("{name}.bias"), Role::Bias, vec![fan_out], Init::Uniform(bound)));
            LinearAt { weight, bias }
        };
    let norm = |push: &mut dyn FnMut(String, Role, Vec<usize>, Init) -> usize, name: &str| match arch.norm {
        NormKind::None => None,
        kind => {
            let gain = push(format!("{name}.weight"), Role::Gain, vec![d], Init::Ones);
            let bias =
                (kind == NormKind::Layer).then(|| push(format!("{name}.bias"), Role::Bias, vec![d], Init::Zeros));
            Some(NormAt { gain, bias })
        }
    };
    let embedding = push("embedding.weight".into(), Role::Embedding, vec![arch.vocab, d], Init::Normal);
    let position = (arch.position == Position::Learned)
        .then(|| push("position.weight".into(), Role::Position, vec![arch.seq_len, d], Init::Normal));
    let mut layers = Vec::with_capacity(arch.layers);
    for i in 0..arch.layers {
        let norm1 = norm(&mut push, &format!("layers.{i}.norm1"));
        let attn = AttnAt {
            q: linear(&mut push, &format!("layers.{i}.attn.q"), d, d),
            k: linear(&mut push, &format!("layers.{i}.attn.k"), d, d),
            v: linear(&mut push, &format!("layers.{i}.attn.v"), d, d),
            o: linear(&mut push, &format!("layers.{i}.attn.o"), d, d),
        };
        let norm2 = norm(&mut push, &format!("layers.{i}.norm2"));
        let w1 = linear(&mut push, &format!("layers.{i}.ffn.w1"), d, f);
        let w3 = (arch.ffn == FfnKind::SwiGlu).then(|| linear(&mut push, &format!("layers.{i}.ffn.w3"), d, f));
        let w2 = linear(&mut push, &format!("layers.{i}.ffn.w2"), f, d);
        layers.push(LayerAt { norm1, attn, norm2, ffn: FfnAt { w1, w3, w2 } });
    }
    let final_norm = match arch.placement {
        NormPlacement::Pre => norm(&mut push, "norm"),
        NormPlacement::Post => None,
    };
    let unembed = linear(&mut push, "unembed", d, arch.classes);
    (specs, Layout { embedding, position, layers, final_norm, unembed })
}

/// The parameters of a stack of runs.
#[derive(Clone, Debug)]
pub struct Transformer {
    pub arch: TransformerArch,
    /// In the order of the module documentation's table.
    pub params: Vec<Param>,
    pub(crate) layout: Layout,
}

impl Transformer {
    /// PyTorch's initialization, each run from its own seed's [`Stream::Init`] generator, in
    /// `dtype` (f64 or f32).
    pub fn init(arch: &TransformerArch, seeds: &[u64], dtype: DType, device: &Device) -> Result<Transformer> {
        arch.validate()?;
        ensure!(!seeds.is_empty(), "a stack needs at least one run");
        let (specs, layout) = specs(arch);
        let mut rngs: Vec<Rng> = seeds.iter().map(|&s| Rng::new(s, Stream::Init)).collect();
        let r = seeds.len();
        let mut params = Vec::with_capacity(specs.len());
        for spec in specs {
            let count: usize = spec.shape.iter().product();
            // Run by run, each from its own generator: a run draws the same numbers in any stack.
            let data: Vec<f64> = rngs
                .iter_mut()
                .flat_map(|rng| {
                    (0..count)
                        .map(|_| match spec.init {
                            Init::Normal => rng.normal(),
                            Init::Uniform(bound) => (2.0 * rng.uniform() - 1.0) * bound,
                            Init::Ones => 1.0,
                            Init::Zeros => 0.0,
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let mut shape = vec![r];
            shape.extend(&spec.shape);
            let value = Tensor::from_vec(data, shape, device)?.to_dtype(dtype)?;
            let group = group_of(spec.role, &spec.name);
            params.push(Param { name: spec.name, group, value });
        }
        Ok(Transformer { arch: arch.clone(), params, layout })
    }

    /// A stack from given parameter values (say, a checkpoint's), checked against the
    /// architecture's names and shapes.
    pub fn from_params(arch: &TransformerArch, params: Vec<Param>) -> Result<Transformer> {
        arch.validate()?;
        let (specs, layout) = specs(arch);
        ensure!(params.len() == specs.len(), "expected {} transformer parameters, got {}", specs.len(), params.len());
        let r = params[0].value.dims().first().copied().context("a parameter has no run axis")?;
        for (p, spec) in params.iter().zip(&specs) {
            let mut shape = vec![r];
            shape.extend(&spec.shape);
            if p.name != spec.name || p.value.dims() != shape.as_slice() {
                bail!("parameter {} {:?} where {} {shape:?} belongs", p.name, p.value.dims(), spec.name);
            }
        }
        Ok(Transformer { arch: arch.clone(), params, layout })
    }

    /// Whether parameter `name` is a Linear layer's weight, stored `[in, out]` (PyTorch's `[out, in]`
    /// transposed).
    pub fn is_matrix(arch: &TransformerArch, name: &str) -> bool {
        specs(arch).0.iter().any(|spec| spec.name == name && spec.role == Role::Matrix)
    }

    /// The parameter names of an architecture, in order.
    pub fn param_names(arch: &TransformerArch) -> Vec<String> {
        specs(arch).0.into_iter().map(|s| s.name).collect()
    }

    pub fn runs(&self) -> usize {
        self.params[0].value.dims()[0]
    }

    pub fn dtype(&self) -> DType {
        self.params[0].value.dtype()
    }

    /// A parameter's value by index.
    pub(crate) fn at(&self, index: usize) -> &Tensor {
        &self.params[index].value
    }
}
