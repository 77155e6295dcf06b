//! The stacked bias-free MLP on tensors (what a GPU runs, and the reference of the CPU pass in
//! `cpu.rs` / `block.rs`): every weight is `[R, fan_in, fan_out]` and every layer is one
//! batched matmul over the R runs. Forward and backward are written side by side.
//!
//! Shapes: R runs, N rows, V table rows, C classes, d embedding width, H_i hidden widths.
//!   first layer:  z₀ = gather(table, rows)                 table [R, V, H₀] → z₀ [R, N, H₀]
//!   hidden layer: a_i = act(z_i);  z_{i+1} = a_i · W_{i+1}  W [R, H_i, H_{i+1}]
//!   output:       logits = α · a_k · W_out                   W_out [R, H_k, C] → [R, N, C]
//!
//! A row enters the first layer as the sum of some rows of a table: operands a and b pick
//! one row each of a `[2p, H₀]` table, a bit string picks the rows of its set bits of W₀
//! `[n, H₀]` (its 0/1 vector times W₀). Either way the layer is a gather, never a matmul.

pub mod block;
pub mod config;
mod cost;
pub mod cpu;

pub use config::{Input, MlpConfig};

use super::{compute_dtype, Group, Model, Param, Place};
use crate::data::Examples;
use crate::kernels::activation::Activation;
use crate::kernels::round::Precision;
use crate::kernels::round::Storage;
use crate::kernels::{activation, gather};
use crate::rng::{Rng, Stream};
use crate::tasks::{Symbols, TaskShape};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

/// How an exported MLP computes its logits (`grokstack export`'s metadata).
pub const EXPORT_DESCRIPTION: &str = "x = concat(embedding.weight[a], embedding.weight[b]) (two_hot: \
     concat(onehot(a), onehot(b))); x = act(x @ layers.i.weight.T) for every layer but the last; logits = alpha * \
     (x @ layers.K.weight.T); no biases";

/// The canonical step `grokstack bench` times: p = 113, embedding 113, hidden [200, 200], GELU,
/// train_fraction 0.4.
pub const BENCH_SWEEP: &str = r#"
name = "bench"
[task]
op = "add"
p = 113
train_fraction = 0.4
[model]
input = "embedding"
embed_dim = 113
hidden = [200, 200]
activation = "gelu"
[train]
# The benchmark times epochs and writes nothing, so its memory estimate counts no checkpoint.
checkpoint_every = 0
"#;

/// The shapes and code path shared by every run of an MLP stack.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpArch {
    pub symbols: Symbols,
    pub classes: usize,
    pub input: Input,
    pub embed_dim: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub alpha: f64,
}

impl MlpArch {
    /// The MLP of `config` on a task of this shape.
    pub fn new(config: &MlpConfig, task: &TaskShape) -> MlpArch {
        MlpArch {
            symbols: task.symbols,
            classes: task.classes,
            input: config.input,
            // Two-hot input has no embedding: its width must not tell stacks apart.
            embed_dim: if config.input == Input::Embedding { config.embed_dim } else { 0 },
            hidden: config.hidden.clone(),
            activation: config.activation,
            alpha: config.alpha,
        }
    }

    /// Rows V of the first layer's table: one per value of each operand (2p), or one per bit.
    pub fn table_rows(&self) -> usize {
        match self.symbols {
            Symbols::Operands { p } => 2 * p,
            Symbols::Bits { n } => n,
        }
    }

    /// Table indices K per row: a and b, or one per bit.
    pub fn row_width(&self) -> usize {
        match self.symbols {
            Symbols::Operands { .. } => 2,
            Symbols::Bits { n } => n,
        }
    }

    /// The values of a row's widest activation.
    pub fn widest(&self) -> usize {
        self.hidden.iter().copied().max().unwrap_or(1).max(self.classes)
    }

    /// One line for `--dry-run`.
    pub fn describe(&self) -> String {
        format!("MLP input {:?}, hidden {:?}, {:?}", self.input, self.hidden, self.activation)
    }

    /// `layer{i}_weight_norm`: the L2 norm of each Linear layer, first to last.
    pub fn norm_columns(&self) -> Vec<String> {
        (0..self.hidden.len() + 1).map(|i| format!("layer{i}_weight_norm")).collect()
    }

    /// `layer{i}_spectral_norm`: the spectral norm of each Linear layer (`metrics.lipschitz`).
    pub fn spectral_columns(&self) -> Vec<String> {
        (0..self.hidden.len() + 1).map(|i| format!("layer{i}_spectral_norm")).collect()
    }

    /// Rows of the embedding table: one per operand value (the config refuses an embedding
    /// for bit tasks).
    fn embedding_rows(&self) -> usize {
        self.table_rows() / 2
    }

    /// (fan_in, fan_out) of every Linear layer, first to last.
    pub fn linear_shapes(&self) -> Vec<(usize, usize)> {
        let first_in = match self.input {
            Input::TwoHot => self.table_rows(),
            Input::Embedding => 2 * self.embed_dim,
        };
        let mut widths = vec![first_in];
        widths.extend(&self.hidden);
        widths.push(self.classes);
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Parameter count of one run.
    pub fn param_count(&self) -> usize {
        let embedding = if self.input == Input::Embedding { self.embedding_rows() * self.embed_dim } else { 0 };
        embedding + self.linear_shapes().iter().map(|(i, o)| i * o).sum::<usize>()
    }

    /// Each row's table indices `[N, K]` for the rows of `examples`: (a, p + b) for operands;
    /// for bits, i where bit i is set and V ("no row") where it is not.
    pub fn table_indices(&self, examples: &Examples) -> Vec<u32> {
        match self.symbols {
            Symbols::Operands { p } => {
                examples.symbols.chunks_exact(2).flat_map(|ab| [ab[0], p as u32 + ab[1]]).collect()
            }
            Symbols::Bits { n } => examples
                .symbols
                .chunks_exact(n)
                .flat_map(|bits| {
                    bits.iter().enumerate().map(move |(i, &bit)| if bit == 1 { i as u32 } else { n as u32 })
                })
                .collect(),
        }
    }
}

/// What the backward pass needs from the forward pass (empty after an evaluation pass).
pub struct Cache {
    /// act'(z_i) `[R, N, H_i]`, computed with the activation in the forward pass.
    derivative: Vec<Tensor>,
    /// Post-activations a_i `[R, N, H_i]`.
    post: Vec<Tensor>,
}

/// PyTorch's initialization, per run from its own seed: Embedding N(0, 1),
/// Linear U(−1/√fan_in, 1/√fan_in). The parameters in the order every gradient list follows.
pub fn init(arch: &MlpArch, seeds: &[u64], precision: Precision, device: &Device) -> Result<Vec<Param>> {
    let dtype = compute_dtype(precision);
    let storage = Storage::of(precision);
    let mut rngs: Vec<Rng> = seeds.iter().map(|&s| Rng::new(s, Stream::Init)).collect();
    let r = seeds.len();
    let mut params = Vec::new();
    if arch.input == Input::Embedding {
        let (p, d) = (arch.embedding_rows(), arch.embed_dim);
        let data: Vec<f64> =
            rngs.iter_mut().flat_map(|rng| (0..p * d).map(|_| rng.normal()).collect::<Vec<_>>()).collect();
        params.push(Param {
            name: "embedding.weight".into(),
            group: Group { always_decayed: false, muon: false, place: Place::Embedding },
            value: storage.state(Tensor::from_vec(data, (r, p, d), device)?.to_dtype(dtype)?)?,
        });
    }
    let shapes = arch.linear_shapes();
    for (index, &(fan_in, fan_out)) in shapes.iter().enumerate() {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let data: Vec<f64> = rngs
            .iter_mut()
            .flat_map(|rng| (0..fan_in * fan_out).map(|_| (2.0 * rng.uniform() - 1.0) * bound).collect::<Vec<_>>())
            .collect();
        let last = index + 1 == shapes.len();
        // The reference's groups: the two-hot first layer plays the embedding's part (decayed
        // only with all_reg); Muon takes the hidden matrices, not the input or output layer.
        let input_layer = index == 0 && arch.input == Input::TwoHot;
        let place = match (last, input_layer) {
            (true, _) => Place::OutputLayer,
            (false, true) => Place::InputLayer,
            (false, false) => Place::HiddenLayer,
        };
        params.push(Param {
            name: format!("layers.{index}.weight"),
            group: Group { always_decayed: !input_layer, muon: !input_layer && !last, place },
            value: storage.state(Tensor::from_vec(data, (r, fan_in, fan_out), device)?.to_dtype(dtype)?)?,
        });
    }
    Ok(params)
}

/// An MLP stack: its shapes and its parameters.
pub struct Mlp<'a> {
    pub arch: &'a MlpArch,
    pub model: &'a Model,
}

impl<'a> Mlp<'a> {
    fn embedding(&self) -> Option<&'a Tensor> {
        self.model.params.iter().find(|p| p.group.place == Place::Embedding).map(|p| &p.value)
    }

    /// Weight of Linear layer `index`, `[R, fan_in, fan_out]`.
    pub fn linear(&self, index: usize) -> &'a Tensor {
        let offset = usize::from(self.embedding().is_some());
        &self.model.params[offset + index].value
    }

    /// Every Linear weight, first to last.
    pub fn linear_weights(&self) -> Vec<&'a Tensor> {
        (0..self.n_linear()).map(|i| self.linear(i)).collect()
    }

    pub(crate) fn n_linear(&self) -> usize {
        self.arch.hidden.len() + 1
    }

    /// The first layer's lookup table `[R, V, H₀]`. With two-hot (or bit) input it is W₀
    /// itself; with an embedding, rows 0..p answer operand a and rows p..2p operand b: it is
    /// [E·W₀ₐ ; E·W₀ᵦ], where W₀ₐ, W₀ᵦ are the halves of W₀ that see each operand.
    pub(crate) fn first_table(&self) -> Result<Tensor> {
        let w0 = self.model.compute_copy(self.linear(0))?;
        match self.embedding() {
            None => Ok(w0),
            Some(e) => {
                let e = self.model.compute_copy(e)?;
                let d = self.arch.embed_dim;
                let w_a = w0.narrow(1, 0, d)?.contiguous()?; // [R, d, H₀]
                let w_b = w0.narrow(1, d, d)?.contiguous()?;
                Ok(Tensor::cat(&[e.matmul(&w_a)?, e.matmul(&w_b)?], 1)?)
            }
        }
    }

    /// Forward pass on table indices `[R, N, K]` → logits `[R, N, C]`, and with `for_backward` the
    /// cache the backward pass needs.
    pub fn forward(&self, rows: &Tensor, for_backward: bool) -> Result<(Tensor, Cache)> {
        let store = |t: Tensor| self.model.storage.compute(t);
        let mut z = store(gather::gather_sum(&self.first_table()?, rows)?)?; // z₀ [R, N, H₀]
        let mut cache = Cache { derivative: Vec::new(), post: Vec::new() };
        for index in 1..self.n_linear() {
            let a = if for_backward {
                let (a, derivative) =
                    (activation::forward(self.arch.activation, &z)?, activation::derivative(self.arch.activation, &z)?);
                cache.derivative.push(derivative);
                store(a)? // [R, N, H_{i-1}]
            } else {
                store(activation::forward(self.arch.activation, &z)?)?
            };
            z = store(a.matmul(&self.model.compute_copy(self.linear(index))?)?)?; // [R, N, H_i] (or logits [R, N, p])
            if for_backward {
                cache.post.push(a);
            }
        }
        let mut logits = z;
        if self.arch.alpha != 1.0 {
            logits = store((logits * self.arch.alpha)?)?;
        }
        Ok((logits, cache))
    }

    /// Backward pass from d(loss)/d(logits) `[R, N, C]`: one gradient per parameter, in the
    /// order of `self.params`.
    pub fn backward(&self, rows: &Tensor, cache: &Cache, dlogits: &Tensor) -> Result<Vec<Tensor>> {
        let k = self.n_linear() - 1; // index of the output layer
        let mut linear_grads: Vec<Option<Tensor>> = vec![None; k + 1];
        let store = |t: Tensor| self.model.storage.compute(t);
        // [R, N, out]
        let mut dout = if self.arch.alpha != 1.0 { store((dlogits * self.arch.alpha)?)? } else { dlogits.clone() };
        for index in (1..=k).rev() {
            let a_in = &cache.post[index - 1]; // [R, N, H_in]
            let w = self.model.compute_copy(self.linear(index))?; // [R, H_in, H_out]
            linear_grads[index] = Some(store(a_in.t()?.matmul(&dout)?)?); // dW = aᵀ·dout  [R, H_in, H_out]
            let da = store(dout.matmul(&w.t()?)?)?; // da = dout·Wᵀ  [R, N, H_in]
            dout = store((da * &cache.derivative[index - 1])?)?; // dz = da ⊙ act'(z)  [R, N, H_in]
        }
        // First layer: the gradient of the lookup table is a scatter-add of dz₀.
        let d_table = gather::scatter_sum(&dout, rows, self.arch.table_rows())?; // [R, V, H₀]
        let linear_grads = linear_grads.into_iter().skip(1).collect::<Option<Vec<_>>>();
        self.grads_in_order(&d_table, linear_grads.context("internal: a Linear layer got no gradient")?)
    }

    /// Every parameter's gradient in the order of `self.params`, from the lookup table's
    /// gradient `[R, V, H₀]` and those of Linear layers 1..=k.
    pub(crate) fn grads_in_order(&self, d_table: &Tensor, later_layers: Vec<Tensor>) -> Result<Vec<Tensor>> {
        let store = |t: Tensor| self.model.storage.compute(t);
        let p = self.arch.embedding_rows();
        let mut grads = Vec::with_capacity(self.model.params.len());
        match self.embedding() {
            None => grads.push(store(d_table.clone())?),
            Some(e) => {
                let d = self.arch.embed_dim;
                let (e, w0) = (self.model.compute_copy(e)?, self.model.compute_copy(self.linear(0))?);
                let (dt_a, dt_b) = (d_table.narrow(1, 0, p)?, d_table.narrow(1, p, p)?); // [R, p, H₀]
                let (w_a, w_b) = (w0.narrow(1, 0, d)?, w0.narrow(1, d, d)?); // [R, d, H₀]
                let e_t = e.t()?; // [R, d, p]
                grads.push(store((dt_a.matmul(&w_a.t()?)? + dt_b.matmul(&w_b.t()?)?)?)?); // dE [R, p, d]
                grads.push(store(Tensor::cat(&[e_t.matmul(&dt_a)?, e_t.matmul(&dt_b)?], 1)?)?);
                // dW₀ [R, 2d, H₀]
            }
        }
        grads.extend(later_layers);
        Ok(grads)
    }
}
