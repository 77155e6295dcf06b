//! Grouping runs into stacks, and what each stack will cost: memory and FLOPs.

use crate::config::{ModelKind, Precision, RunConfig, RunSpec, StackKey};
use crate::models::mlp::MlpArch;
use crate::models::transformer::TransformerArch;
use crate::models::Arch;

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

/// Which pass trains a stack: their activations take memory differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The CPU pass (`crate::models::mlp::cpu`, `crate::models::transformer::cpu`): block
    /// buffers per thread, partial gradients per chunk.
    Cpu,
    /// Tensor ops on groups of runs (other devices).
    Tensors,
}

impl Pass {
    pub fn on(device: &candle_core::Device) -> Pass {
        if device.is_cpu() {
            Pass::Cpu
        } else {
            Pass::Tensors
        }
    }
}

/// Split every stack into chunks that fit in `max_bytes`, as evenly as possible.
pub fn chunk_to_fit(stacks: Vec<Vec<RunSpec>>, max_bytes: u64, pass: Pass) -> anyhow::Result<Vec<Vec<RunSpec>>> {
    let mut chunks = Vec::new();
    for stack in stacks {
        let config = &stack[0].config;
        let bytes = |runs: usize| stack_bytes(config, runs, pass) as u64;
        if bytes(1) > max_bytes {
            anyhow::bail!(
                "one run of {} rows with hidden {:?} needs about {}, more than --max-memory {}",
                config.n_examples(),
                config.hidden,
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
        text.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    available_kib.map_or(8 << 30, |kib| kib * 1024 / 4 * 3)
}

/// `512MiB`, `8GiB`, `2.5G`, `1000000` (bytes).
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| anyhow::anyhow!("--max-memory {text}: expected a size like 8GiB or 512MiB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => anyhow::bail!("--max-memory {text}: unknown unit `{unit}`"),
    };
    let bytes = value * scale as f64;
    if !(bytes >= 1.0) {
        anyhow::bail!("--max-memory {text}: must be positive");
    }
    Ok(bytes as u64)
}

/// The entries of a per-run vector for the runs at stack `positions` (stack compaction).
pub fn pick_runs<T: Clone>(values: &[T], positions: &[usize]) -> Vec<T> {
    positions.iter().map(|&p| values[p].clone()).collect()
}

/// Stack `positions` as a u32 index tensor, for `index_select` along the run axis.
pub fn run_index(positions: &[usize], device: &candle_core::Device) -> anyhow::Result<candle_core::Tensor> {
    let index: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
    Ok(candle_core::Tensor::from_vec(index, positions.len(), device)?)
}

fn bytes_per_value(precision: Precision) -> usize {
    // bf16 runs compute in f32 on the CPU and store their bf16 values as f32 (see
    // kernels::round), so only f64 differs.
    match precision {
        Precision::F64 => 8,
        Precision::F32 | Precision::Bf16 | Precision::Bf16Mixed => 4,
    }
}

/// How many runs one pass of the tensor path over `rows` examples takes at a time: enough that
/// each activation tensor `[G, N, H]` holds about 256 M values (1 GiB in f32). The tensor path
/// is what a GPU runs: each op is one kernel launch over the group, and at this size a launch
/// (microseconds) is small against the pass over memory (about half a millisecond on an H200).
/// A big stack is processed group by group, which keeps its activation memory (a few GiB) from
/// growing with R.
pub fn runs_per_group(arch: &Arch, rows: usize) -> usize {
    const VALUES_PER_TENSOR: usize = 256 << 20;
    (VALUES_PER_TENSOR / (rows * arch.widest()).max(1)).max(1)
}

/// Estimated peak bytes of a stack of `runs` runs trained by `pass`.
///
/// Every run holds its parameters: during the update the weights, their gradients, two
/// optimizer moments and the new weights and moments the update writes (7 copies; 9 in bf16,
/// whose rounding makes copies too; 3 more for the snapshot a checkpoint is written from),
/// plus the first layer's lookup table and its data (K table indices and a label per row).
///
/// The CPU pass adds the partial gradients of each chunk of the train rows (the table's and
/// every later layer's) of one wave of runs. Its block buffers (about 1 MB per thread for the
/// canonical model) do not grow with the stack and are left out, so that a plan does not
/// depend on the machine's core count.
///
/// The tensor pass holds activations for one group of runs at a time: the larger of a train
/// pass (a and act'(z) of every hidden layer; logits, their gradient and the scaled copy; and
/// the backward pass's three temporaries of the widest layer: da, dz and the next layer's
/// input) and a test pass (z and a, logits).
pub fn stack_bytes(config: &RunConfig, runs: usize, pass: Pass) -> usize {
    let data = (config.n_train() + config.n_test()) * (config.row_width() + 1) * 4;
    let model = match config.kind {
        ModelKind::Mlp => mlp_stack_bytes(config, runs, pass),
        ModelKind::Transformer => transformer_stack_bytes(config, runs, pass),
    };
    // The progress measures keep a pass's logits `[R, N, C]` (of the larger split) and the test
    // half's logit sums per answer `[R, p, C]` in f64.
    let rows = config.n_train().max(config.n_test());
    let progress = if config.progress.enabled { (rows * bytes_per_value(config.precision) + config.p * 8) * config.classes() } else { 0 };
    model + (data + progress) * runs
}

/// Copies of the parameters a run holds during the update: the weights, their gradients, two
/// optimizer moments and the new weights and moments (7; bf16 rounds the new gradients,
/// weights and moments into copies of their own: 9), and 3 more for the snapshot a checkpoint
/// is written from (weights and two moments).
fn param_copies(config: &RunConfig) -> usize {
    let update = if config.precision == Precision::F32 || config.precision == Precision::F64 { 7 } else { 9 };
    update + if config.checkpoint_every > 0 { 3 } else { 0 }
}

/// A transformer stack's bytes besides its data: its parameters' copies (as the MLP's), plus what
/// a pass holds. The CPU pass (`crate::models::transformer::cpu`): the partial gradients of
/// every chunk of the train rows and the dropout masks (a byte per unit) of one wave of runs;
/// its block buffers do not grow with the stack and are left out, as the MLP's. The tensor
/// path: the activations of one group of runs.
fn transformer_stack_bytes(config: &RunConfig, runs: usize, pass: Pass) -> usize {
    use crate::models::transformer::cpu::{CHUNK_ROWS, RUNS_PER_WAVE};
    let arch = TransformerArch::from_config(config);
    let value = bytes_per_value(config.precision);
    let activations = match pass {
        Pass::Cpu => {
            let n = config.n_train();
            let (h, t, d, f) = (arch.heads, arch.seq_len, arch.d_model, arch.ffn_width);
            let p = arch.dropout;
            let mask_units: usize = [(p.attn_weights, h * t * t), (p.attn_out, t * d), (p.ffn_hidden, t * f), (p.ffn_out, t * d)].iter().filter(|(prob, _)| *prob > 0.0).map(|(_, units)| units).sum();
            let wave = runs.min(RUNS_PER_WAVE);
            (n.div_ceil(CHUNK_ROWS) * arch.param_count() * value + arch.layers * n * mask_units) * wave
        }
        Pass::Tensors => {
            let rows = config.n_train().max(config.n_test());
            let group = runs_per_group(&Arch::from_config(config), rows).min(runs);
            arch.values_per_row() * rows * group * value
        }
    };
    param_copies(config) * arch.param_count() * runs * value + activations
}

fn mlp_stack_bytes(config: &RunConfig, runs: usize, pass: Pass) -> usize {
    let arch = MlpArch::from_config(config);
    let value = bytes_per_value(config.precision);
    let (n_train, n_test) = (config.n_train(), config.n_test());
    let (hidden_sum, classes): (usize, usize) = (arch.hidden.iter().sum(), arch.classes);
    let widest = arch.hidden.iter().copied().max().unwrap_or(0).max(classes);
    let table = arch.table_rows() * arch.hidden[0];
    let params = param_copies(config) * arch.param_count() + table;
    let activations = match pass {
        Pass::Cpu => {
            let later_layers: usize = arch.linear_shapes().iter().skip(1).map(|(i, o)| i * o).sum();
            n_train.div_ceil(crate::models::mlp::cpu::CHUNK_ROWS) * (table + later_layers) * runs.min(crate::models::mlp::cpu::RUNS_PER_WAVE)
        }
        Pass::Tensors => {
            let train = n_train * (2 * hidden_sum + 3 * classes + 3 * widest) * runs_per_group(&Arch::Mlp(arch.clone()), n_train).min(runs);
            let test = n_test * (2 * hidden_sum + classes) * runs_per_group(&Arch::Mlp(arch.clone()), n_test).min(runs);
            train.max(test)
        }
    };
    (activations + params * runs) * value
}

/// Work of one run-epoch as the benchmark counts it: 2·Σ(fan_in·fan_out)·(3·N_train + N_test)
/// over the Linear layers (the first layer counted as if it were a dense matmul), plus
/// 2·Σ(fan_in·fan_out)·N_train for the train evaluation a minibatch epoch adds.
///
/// A transformer's row costs [`TransformerArch::forward_flops_per_row`] forward and three
/// times that with its backward pass.
pub fn flops_per_run_epoch(config: &RunConfig) -> f64 {
    let (n_train, n_test) = (config.n_train(), config.n_test());
    let train_evaluation = if config.batch_size > 0 { n_train } else { 0 };
    let forward_per_row = match config.kind {
        ModelKind::Mlp => 2.0 * MlpArch::from_config(config).linear_shapes().iter().map(|(i, o)| i * o).sum::<usize>() as f64,
        ModelKind::Transformer => TransformerArch::from_config(config).forward_flops_per_row(),
    };
    forward_per_row * (3 * n_train + n_test + train_evaluation) as f64
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
