//! The `grokstack` command line: a thin layer over the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use grokstack::{bench, config::Sweep, runner};
use std::path::PathBuf;

// Activation tensors of hundreds of MB are allocated and freed every step. glibc returns
// them to the kernel (munmap) and faults them back in, zeroed, on the next step; jemalloc
// keeps freed pages for reuse, which removes most of that system time.
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Never give freed pages back: a stack's working set is the same every epoch, so what the
/// first epoch touched is reused by all the others instead of being faulted in again.
#[cfg(target_os = "linux")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf = MallocConf(b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0".as_ptr());

/// jemalloc reads its options from a `const char *` named `malloc_conf`.
#[repr(transparent)]
pub struct MallocConf(*const u8);
// SAFETY: the pointer is to a static, immutable, NUL-terminated byte string.
unsafe impl Sync for MallocConf {}

#[derive(Parser)]
#[command(name = "grokstack", version, about = "Train hundreds to thousands of small grokking networks as one stacked model")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train every run of a sweep file and write DIR.
    Train {
        /// The sweep file (TOML).
        sweep: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a key: `--set train.lr=0.02`; a list value makes it a grid axis.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Print runs, stacks, estimated memory and FLOPs; train nothing.
        #[arg(long)]
        dry_run: bool,
        /// Memory budget of one stack, e.g. `8GiB` (default: 75% of the available memory);
        /// larger stacks are split into chunks that fit.
        #[arg(long)]
        max_memory: Option<String>,
    },
    /// Analyze a sweep's output: epochs-to-grok, qualifying settings, Pareto front, tables, plots.
    Analyze {
        /// The output directory of `grokstack train`.
        dir: PathBuf,
        /// Test accuracy that counts as grokked (1.0 gives the solve epoch).
        #[arg(long, default_value_t = 0.95)]
        threshold: f64,
        /// Group keys of the best-setting tables, e.g. `model.hidden,model.input`.
        #[arg(long, value_delimiter = ',')]
        group_by: Vec<String>,
    },
    /// Measure the canonical training step at several stack sizes.
    Bench {
        /// Stack sizes (runs per stack).
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        runs: Vec<usize>,
        /// Timed epochs per stack size (after one warm-up epoch).
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Override a key of the canonical sweep, e.g. `--set train.dtype=f64`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Also write the results as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Skip the square-GEMM reference measurement.
        #[arg(long)]
        no_gemm: bool,
        /// Internal: measure one stack size in this process and print JSON.
        #[arg(long, hide = true)]
        single: bool,
    },
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { sweep, out, overrides, device, dry_run, max_memory } => {
            let sweep = Sweep::load(&sweep, &overrides)?;
            let max_memory = match max_memory {
                Some(text) => grokstack::plan::parse_bytes(&text)?,
                None => grokstack::plan::default_max_memory(),
            };
            if dry_run {
                print!("{}", runner::describe_plan(&sweep, max_memory)?);
                return Ok(());
            }
            let out = out.ok_or_else(|| anyhow::anyhow!("--out DIR is required (or use --dry-run)"))?;
            let device = runner::parse_device(&device)?;
            let summary = runner::train_sweep(&sweep, &out, &device, max_memory)?;
            eprintln!(
                "trained {} runs in {:.1} s: {} grokked, {} diverged → {}",
                summary.runs,
                summary.seconds,
                summary.grokked,
                summary.diverged,
                out.display()
            );
            Ok(())
        }
        Command::Analyze { dir, threshold, group_by } => {
            let report = grokstack_analysis::analyze(&dir, &grokstack_analysis::AnalyzeOptions { threshold, group_by })?;
            println!("{}", report.headline);
            if report.missing_runs > 0 {
                println!("{} run(s) of the sweep are not finished yet and are left out.", report.missing_runs);
            }
            println!("wrote {}", report.out_dir.display());
            Ok(())
        }
        Command::Bench { runs, epochs, overrides, device, json, no_gemm, single } => {
            if single {
                let dev = runner::parse_device(&device)?;
                let result = bench::bench_one(runs[0], epochs, &overrides, &dev)?;
                println!("{}", serde_json::to_string(&result)?);
                return Ok(());
            }
            let results = bench::bench_in_children(&runs, epochs, &overrides, &device)?;
            let gemm = if no_gemm { None } else { Some(bench::gemm_gflops(2048, 5, &runner::parse_device(&device)?)?) };
            print!("{}", bench::format_table(&results, gemm));
            if let Some(path) = json {
                let doc = serde_json::json!({ "results": results, "gemm_gflops": gemm });
                std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
            }
            Ok(())
        }
    }
}
