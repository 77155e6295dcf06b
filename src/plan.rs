//! Grouping runs into stacks, and what each stack will cost: memory and FLOPs.

use crate::config::{Precision, RunConfig, RunSpec, StackKey};
pub use crate::models::Pass;
use crate::models::StackSize;
use crate::size::human_bytes;

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

/// Split every stack into chunks that fit in `max_bytes`, as evenly as possible.
pub fn chunk_to_fit(stacks: Vec<Vec<RunSpec>>, max_bytes: u64, pass: Pass) -> anyhow::Result<Vec<Vec<RunSpec>>> {
    let mut chunks = Vec::new();
    for stack in stacks {
        let config = &stack[0].config;
        let bytes = |runs: usize| stack_bytes(config, runs, pass) as u64;
        if bytes(1) > max_bytes {
            anyhow::bail!(
                "one run of {} rows of the {} needs about {}, more than --max-memory {}",
                config.n_examples(),
                config.arch().describe(),
                human_bytes(bytes(1) as f64),
                human_bytes(max_bytes as f64)
            );
        }
        // The largest chunk that fits: the estimate grows with the number of runs.
        let (mut fit, mut too_many) = (1, stack.len() + 1);
        while fit + 1 < too_many {
            let middle = (fit + too_many) / 2;
            if bytes(middle) <= max_bytes {
                fit = middle;
            } else {
                too_many = middle;
            }
        }
        let count = stack.len().div_ceil(fit);
        let size = stack.len().div_ceil(count);
        let mut runs = stack.into_iter().peekable();
        while runs.peek().is_some() {
            chunks.push(runs.by_ref().take(size).collect());
        }
    }
    Ok(chunks)
}

/// The default memory budget on `device`: 75% of the GPU's free memory on a CUDA device, else
/// of the memory available now (/proc/meminfo), or 8 GiB where that cannot be read.
pub fn default_max_memory(device: &candle_core::Device) -> u64 {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(gpu) = device {
        if let Ok((free, _total)) = gpu.cuda_stream().context().mem_get_info() {
            return free as u64 / 4 * 3;
        }
    }
    let _ = device; // only CUDA devices are asked
    let available_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        text.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    available_kib.map_or(8 << 30, |kib| kib * 1024 / 4 * 3)
}

fn bytes_per_value(precision: Precision) -> usize {
    // bf16 runs compute in f32 on the CPU and store their bf16 values as f32 (see
    // kernels::round), so only f64 differs.
    match precision {
        Precision::F64 => 8,
        Precision::F32 | Precision::Bf16 | Precision::Bf16Mixed => 4,
    }
}

/// Estimated peak bytes of a stack of `runs` runs trained by `pass`: what its model holds
/// ([`crate::models::Arch::stack_bytes`]: parameters, optimizer state, activations) plus its
/// data (K model inputs and a label per row).
pub fn stack_bytes(config: &RunConfig, runs: usize, pass: Pass) -> usize {
    let arch = config.arch();
    let data = (config.n_train() + config.n_test()) * (arch.row_width() + 1) * 4;
    let size = StackSize {
        runs,
        n_train: config.n_train(),
        n_test: config.n_test(),
        value_bytes: bytes_per_value(config.precision),
        param_copies: param_copies(config),
        pass,
    };
    // The progress measures keep a pass's logits `[R, N, C]` (of the larger split) and the test
    // half's logit sums per answer `[R, p, C]` in f64.
    let rows = config.n_train().max(config.n_test());
    let progress = if config.progress.enabled {
        (rows * bytes_per_value(config.precision) + config.p * 8) * config.classes()
    } else {
        0
    };
    arch.stack_bytes(&size) + (data + progress) * runs
}

/// Copies of the parameters a run holds during the update: the weights, their gradients, two
/// optimizer moments and the new weights and moments (7; bf16 rounds the new gradients,
/// weights and moments into copies of their own: 9), and 3 more for the snapshot a checkpoint
/// is written from (weights and two moments).
fn param_copies(config: &RunConfig) -> usize {
    let update = if config.precision == Precision::F32 || config.precision == Precision::F64 { 7 } else { 9 };
    update + if config.checkpoint_every > 0 { 3 } else { 0 }
}

/// Work of one run-epoch as the benchmark counts it: the forward FLOPs of a row
/// ([`crate::models::Arch::forward_flops_per_row`]; an MLP's first layer counted as if it were a
/// dense matmul) times 3·N_train (forward and backward) + N_test, plus N_train for the train
/// evaluation a minibatch epoch adds.
pub fn flops_per_run_epoch(config: &RunConfig) -> f64 {
    let (n_train, n_test) = (config.n_train(), config.n_test());
    let train_evaluation = if config.batch_size > 0 { n_train } else { 0 };
    config.arch().forward_flops_per_row() * (3 * n_train + n_test + train_evaluation) as f64
}
