//! The command line's grammar (clap), in the library so that the tests can fuzz it.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use grokstack_analysis::GrokRule;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "grokstack",
    version,
    about = "Train hundreds to thousands of small grokking networks as one stacked model"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train every run of a sweep file and write DIR.
    Train(TrainArgs),
    /// Combine the shards in DIR/shards/ into DIR's ordinary layout; lists missing and
    /// duplicated runs (exit status 2 when there are any, after writing what is there).
    Merge(MergeArgs),
    /// Write one run's final weights as safetensors under PyTorch's names and layout.
    Export(ExportArgs),
    /// Analyze a sweep's output: epochs-to-grok, qualifying settings, Pareto front, tables, plots.
    Analyze(AnalyzeArgs),
    /// Write a Slurm job array that trains the sweep in N shards (one per task), and submit it.
    Slurm(SlurmArgs),
    /// Measure the canonical training step at several stack sizes.
    Bench(BenchArgs),
}

/// The arguments of `grokstack train`.
#[derive(Args)]
pub struct TrainArgs {
    /// The sweep file (TOML).
    pub sweep: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override a key: `--set train.lr=0.02`; a list value makes it a grid axis.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print runs, stacks, estimated memory and FLOPs; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Memory budget of one stack, e.g. `8GiB` (default: 75% of the available memory);
    /// larger stacks are split into chunks that fit.
    #[arg(long)]
    pub max_memory: Option<String>,
    /// Continue the sweep already in --out: finished runs are kept, unfinished stacks go on
    /// from their last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Train shard K of N (0-based) into DIR/shards/K-of-N/, or `slurm`: K and N from the
    /// Slurm array's SLURM_ARRAY_TASK_ID, _MIN and _COUNT. Combine them with `merge`.
    #[arg(long, value_name = "K/N|slurm")]
    pub shard: Option<String>,
}

/// The arguments of `grokstack merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The --out DIR the shards were trained into.
    pub dir: PathBuf,
}

/// The arguments of `grokstack export`.
#[derive(Args)]
pub struct ExportArgs {
    /// The output directory of `grokstack train`.
    pub dir: PathBuf,
    /// The run to export (`run_id` in runs.parquet).
    #[arg(long = "run")]
    pub run: usize,
    /// The file to write, e.g. `run.safetensors`.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the run's logits on its own train and test rows, computed by the trainer's
    /// evaluation pass, with the rows' symbols and labels (safetensors: `train.symbols`,
    /// `train.labels`, `train.logits`, then `test.…`).
    #[arg(long, value_name = "FILE")]
    pub logits: Option<PathBuf>,
}

/// The arguments of `grokstack analyze`.
#[derive(Args)]
pub struct AnalyzeArgs {
    /// The output directory of `grokstack train`.
    pub dir: PathBuf,
    /// Test accuracy that counts as grokked (1.0 gives the solve epoch).
    #[arg(long, default_value_t = 0.95)]
    pub threshold: f64,
    /// Group keys of the best-setting tables, e.g. `model.hidden,model.input`.
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Which logged epoch with test accuracy >= --threshold is the grok epoch: the first
    /// (first), the first with train accuracy >= 0.99 too (after-train), or the first within
    /// 0.01 of the run's best test accuracy (near-max).
    #[arg(long, default_value_t = GrokRule::First, value_parser = grok_rule_parser())]
    pub grok_rule: GrokRule,
    /// Also write the optimizer study of Tveit et al. (2025), made fairer: study.md, its CSVs
    /// and box plots (the sweep needs two or more optimizers).
    #[arg(long)]
    pub study: bool,
    /// For sweeps with `metrics.progress`: the circuit has formed at the first logged epoch
    /// from memorization on at which the restricted loss has fallen by this fraction of its
    /// value at memorization, in (0, 1).
    #[arg(long, default_value_t = grokstack_analysis::DEFAULT_CIRCUIT_THRESHOLD)]
    pub circuit_threshold: f64,
}

/// The arguments of `grokstack slurm`.
#[derive(Args)]
pub struct SlurmArgs {
    /// The sweep file (TOML).
    pub sweep: PathBuf,
    /// Output directory, shared by the tasks (on a filesystem every node sees).
    #[arg(long)]
    pub out: PathBuf,
    /// Override a key, as for `train`; the resolved sweep is written to DIR/sweep.toml.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Number of shards, one array task each.
    #[arg(long)]
    pub shards: usize,
    /// GPUs per task: 0 or 1 (a task trains on one device).
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// CPU cores per task (the CPU pass uses as many threads).
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per task, e.g. `16G`.
    #[arg(long)]
    pub mem: Option<String>,
    /// Time limit per task, e.g. `2:00:00`; the task checkpoints 2 minutes before it.
    #[arg(long)]
    pub time: Option<String>,
    #[arg(long)]
    pub partition: Option<String>,
    /// Run at most K tasks at once.
    #[arg(long, value_name = "K")]
    pub max_parallel: Option<usize>,
    /// Another #SBATCH line, e.g. `--extra '--account=abc'` (repeatable).
    #[arg(long, value_name = "SBATCH LINE", allow_hyphen_values = true)]
    pub extra: Vec<String>,
    /// --device of every task (default: cuda with --gpus-per-task 1, else cpu).
    #[arg(long)]
    pub device: Option<String>,
    /// Submit the script with sbatch and print the job id.
    #[arg(long)]
    pub submit: bool,
}

/// The arguments of `grokstack bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Stack sizes (runs per stack).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub runs: Vec<usize>,
    /// Timed epochs per stack size (after one warm-up epoch).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Override a key of the canonical sweep, e.g. `--set train.dtype=f64`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the square-GEMM reference measurement.
    #[arg(long)]
    pub no_gemm: bool,
    /// Internal: measure one stack size in this process and print JSON.
    #[arg(long, hide = true)]
    pub single: bool,
}

/// `--grok-rule`: clap lists the names in --help and in the error for any other value.
fn grok_rule_parser() -> impl TypedValueParser<Value = GrokRule> {
    PossibleValuesParser::new(GrokRule::ALL.map(GrokRule::name)).try_map(|name| GrokRule::parse(&name))
}
