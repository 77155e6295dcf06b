//! Grouping runs into stacks, and what each stack will cost: memory and FLOPs.

use crate::config::{Precision, RunConfig, RunSpec, StackKey};
use crate::model::Arch;

/// Runs grouped by [`StackKey`], in the order their first run appears in the sweep.
pub fn group_into_stacks(runs: Vec<RunSpec>) -> Vec<Vec<RunSpec>> {
    let mut keys: Vec<StackKey> = Vec::new();
    let mut stacks: Vec<Vec<RunSpec>> = Vec::new();
    for run in runs {
        let key = run.config.stack_key();
        match keys.iter().position(|k| *k == key) {
            Some(i) => stacks[i].push(run),
            None => {
                keys.push(key);
                stacks.push(vec![run]);
            }
        }
    }
    stacks
}

fn bytes_per_value(precision: Precision) -> usize {
    match precision {
        Precision::F64 => 8,
        Precision::F32 | Precision::Bf16Mixed => 4,
        Precision::Bf16 => 2,
    }
}

/// Estimated peak bytes of one run inside a stack.
///
/// Parameters: the weights, their gradients, two optimizer moments, and the new copies the
/// update writes (5 copies). Activations: the larger of a train step (z and a of every
/// hidden layer, logits and their gradient, and two backward temporaries of the widest layer)
/// and a test evaluation (z and a, logits).
pub fn bytes_per_run(config: &RunConfig) -> usize {
    let arch = Arch::from_config(config);
    let value = bytes_per_value(config.precision);
    let (n_train, n_test) = (config.n_train(), config.n_pairs() - config.n_train());
    let hidden_sum: usize = arch.hidden.iter().sum();
    let widest = arch.hidden.iter().copied().max().unwrap_or(0).max(config.p);
    let train = n_train * (2 * hidden_sum + 2 * config.p + 2 * widest);
    let test = n_test * (2 * hidden_sum + config.p);
    let params = 5 * arch.param_count() + 2 * config.p * arch.hidden[0];
    let data = (config.n_train() + n_test) * 3 * 4;
    (train.max(test) + params) * value + data
}

/// Work of one run-epoch as the benchmark counts it: 2·Σ(fan_in·fan_out)·(3·N_train + N_test)
/// over the Linear layers (the first layer counted as if it were a dense matmul).
pub fn flops_per_run_epoch(config: &RunConfig) -> f64 {
    let weights: usize = Arch::from_config(config).linear_shapes().iter().map(|(i, o)| i * o).sum();
    let (n_train, n_test) = (config.n_train(), config.n_pairs() - config.n_train());
    2.0 * weights as f64 * (3 * n_train + n_test) as f64
}

pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
