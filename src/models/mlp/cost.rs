//! What an MLP stack costs: FLOPs per row and bytes of memory, for the planner.

use super::MlpArch;
use crate::models::{Pass, StackSize};

impl MlpArch {
    /// FLOPs of one row's forward pass: 2·Σ(fan_in·fan_out) over the Linear layers, the first
    /// counted as if it were a dense matmul (it is a gather).
    pub fn forward_flops_per_row(&self) -> f64 {
        2.0 * self.linear_shapes().iter().map(|(i, o)| i * o).sum::<usize>() as f64
    }

    /// Every run holds its parameters (`size.param_copies` copies of them) and the first layer's
    /// lookup table. The CPU pass adds the partial gradients of each chunk of the train rows (the
    /// table's and every later layer's) of one wave of runs; its block buffers (about 1 MB per
    /// thread for the canonical model) do not grow with the stack and are left out, so that a
    /// plan does not depend on the machine's core count.
    ///
    /// The tensor pass holds activations for one group of runs at a time: the larger of a train
    /// pass (a and act'(z) of every hidden layer; logits, their gradient and the scaled copy; and
    /// the backward pass's three temporaries of the widest layer: da, dz and the next layer's
    /// input) and a test pass (z and a, logits).
    pub fn stack_bytes(&self, size: &StackSize) -> usize {
        let (n_train, n_test, runs) = (size.n_train, size.n_test, size.runs);
        let (hidden_sum, classes): (usize, usize) = (self.hidden.iter().sum(), self.classes);
        let widest = self.widest();
        let table = self.table_rows() * self.hidden[0];
        let params = size.param_copies * self.param_count() + table;
        let activations = match size.pass {
            Pass::Cpu => {
                let later_layers: usize = self.linear_shapes().iter().skip(1).map(|(i, o)| i * o).sum();
                let wave = runs.min(super::cpu::RUNS_PER_WAVE);
                n_train.div_ceil(super::cpu::CHUNK_ROWS) * (table + later_layers) * wave
            }
            Pass::Tensors => {
                let group = |rows: usize| crate::models::runs_per_group(widest, rows).min(runs);
                let train = n_train * (2 * hidden_sum + 3 * classes + 3 * widest) * group(n_train);
                let test = n_test * (2 * hidden_sum + classes) * group(n_test);
                train.max(test)
            }
        };
        (activations + params * runs) * size.value_bytes
    }
}
