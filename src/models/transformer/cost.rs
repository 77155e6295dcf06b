//! What a transformer stack costs: FLOPs per row and bytes of memory, for the planner.

use super::{FfnKind, TransformerArch};
use crate::models::{Pass, StackSize};

impl TransformerArch {
    /// FLOPs of one row's forward pass (matmuls only, every position of every block; the last
    /// block's shortcut does less): per block 8·T·d² (q, k, v, o), 4·T²·d (scores and the
    /// weighted sum), 2·T·d·F per FFN matrix (3 for SwiGLU, else 2); then 2·d·C to read out.
    pub fn forward_flops_per_row(&self) -> f64 {
        let (t, d, f) = (self.seq_len as f64, self.d_model as f64, self.ffn_width as f64);
        let ffn_matrices = if self.ffn == FfnKind::SwiGlu { 3.0 } else { 2.0 };
        let block = 8.0 * t * d * d + 4.0 * t * t * d + 2.0 * ffn_matrices * t * d * f;
        self.layers as f64 * block + 2.0 * d * self.classes as f64
    }

    /// Values the tensor path keeps per row of a training pass, an upper estimate: per block
    /// about 14 `[T, d]` tensors (norms, q, k, v, attention output, residuals and their
    /// gradients), 5 `[T, F]` (FFN hidden units, gates, dropout masks) and 4 `[H, T, T]`
    /// (scores, weights, mask, their gradient).
    pub fn values_per_row(&self) -> usize {
        let (t, d, f, h) = (self.seq_len, self.d_model, self.ffn_width, self.heads);
        self.layers * t * (14 * d + 5 * f + 4 * h * t) + 3 * self.classes
    }

    /// The parameters' copies (as the MLP's), plus what a pass holds. The CPU pass
    /// (`super::cpu`): the partial gradients of every chunk of the train rows and the dropout
    /// masks (a byte per unit) of one wave of runs; its block buffers do not grow with the stack
    /// and are left out, as the MLP's. The tensor path: the activations of one group of runs.
    pub fn stack_bytes(&self, size: &StackSize) -> usize {
        use super::cpu::{CHUNK_ROWS, RUNS_PER_WAVE};
        let (runs, value) = (size.runs, size.value_bytes);
        let activations = match size.pass {
            Pass::Cpu => {
                let n = size.n_train;
                let (h, t, d, f) = (self.heads, self.seq_len, self.d_model, self.ffn_width);
                let p = self.dropout;
                let mask_units: usize =
                    [(p.attn_weights, h * t * t), (p.attn_out, t * d), (p.ffn_hidden, t * f), (p.ffn_out, t * d)]
                        .iter()
                        .filter(|(prob, _)| *prob > 0.0)
                        .map(|(_, units)| units)
                        .sum();
                let wave = runs.min(RUNS_PER_WAVE);
                (n.div_ceil(CHUNK_ROWS) * self.param_count() * value + self.layers * n * mask_units) * wave
            }
            Pass::Tensors => {
                let rows = size.n_train.max(size.n_test);
                let group = crate::models::runs_per_group(self.widest(), rows).min(runs);
                self.values_per_row() * rows * group * value
            }
        };
        size.param_copies * self.param_count() * runs * value + activations
    }
}
