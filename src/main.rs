//! The `grokstack` command line: a thin layer over the library.

use anyhow::{bail, Result};
use clap::Parser;
use grokstack::cli::{Cli, Command};
use grokstack::{bench, config::Sweep, disk, export, interrupt, merge, runner, shard::Shard, slurm};

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

fn main() {
    match run(Cli::parse()) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}

/// Exit code of an interrupted sweep (as a shell reports a process ended by SIGINT).
const EXIT_INTERRUPTED: i32 = 130;
/// Exit code of a merge that wrote what the shards have, with runs missing or duplicated.
const EXIT_INCOMPLETE_MERGE: i32 = 2;

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Train { sweep: sweep_path, out, overrides, device, dry_run, max_memory, resume, shard: shard_text } => {
            let sweep = Sweep::load(&sweep_path, &overrides)?;
            let shard = shard_text.as_deref().map(|text| Shard::parse(text, |name| std::env::var(name).ok())).transpose()?;
            // A dry run plans a GPU sweep even where the GPU cannot be opened (on RAM's budget).
            let opened = if dry_run { runner::parse_device(&device).ok() } else { Some(runner::parse_device(&device)?) };
            let max_memory = match max_memory {
                Some(text) => grokstack::plan::parse_bytes(&text)?,
                None => grokstack::plan::default_max_memory(opened.as_ref().unwrap_or(&candle_core::Device::Cpu)),
            };
            if dry_run {
                let pass = if device == "cpu" { grokstack::plan::Pass::Cpu } else { grokstack::plan::Pass::Tensors };
                print!("{}", runner::describe_plan(&sweep, max_memory, pass, shard)?);
                return Ok(0);
            }
            let out = out.ok_or_else(|| anyhow::anyhow!("--out DIR is required (or use --dry-run)"))?;
            let device = opened.ok_or_else(|| anyhow::anyhow!("internal: no device"))?;
            interrupt::install();
            let shard_arg = shard_text.map_or(String::new(), |text| format!(" --shard {text}"));
            let summary = runner::train_sweep_with(&sweep, &out, &device, &runner::TrainOptions { max_memory, resume, shard }).map_err(|error| {
                disk::with_hint(error, || format!("free some space, then continue with: grokstack train {} --out {}{shard_arg} --resume", sweep_path.display(), out.display()))
            })?;
            let checkpoints = if summary.checkpoints > 0 {
                format!(
                    "; {} checkpoint(s), training waited {:.2} s for them ({:.2}% of the time)",
                    summary.checkpoints,
                    summary.checkpoint_seconds,
                    100.0 * summary.checkpoint_seconds / summary.seconds.max(1e-9)
                )
            } else {
                String::new()
            };
            if summary.interrupted {
                eprintln!(
                    "interrupted; continue with --resume: grokstack train {} --out {}{shard_arg} --resume{checkpoints}",
                    sweep_path.display(),
                    out.display()
                );
                return Ok(EXIT_INTERRUPTED);
            }
            let earlier = if summary.finished_before > 0 { format!(" ({} finished before)", summary.finished_before) } else { String::new() };
            let outcomes = &summary.outcomes;
            let skipped = if outcomes.skipped > 0 {
                format!("; {} runs skipped by seed waves, saving up to {} run-epochs", outcomes.skipped, outcomes.skipped_run_epochs)
            } else {
                String::new()
            };
            eprintln!(
                "trained {} runs{earlier} in {:.1} s: {} grokked, {} diverged{skipped}{checkpoints} → {}",
                summary.runs - outcomes.skipped,
                summary.seconds,
                outcomes.grokked,
                outcomes.diverged,
                shard.map_or(out.clone(), |s| s.dir(&out)).display()
            );
            Ok(0)
        }
        Command::Merge { dir } => {
            let report = merge::merge(&dir)
                .map_err(|error| disk::with_hint(error, || format!("the shards are intact; free some space, then merge again: grokstack merge {}", dir.display())))?;
            for line in report.missing.iter().chain(&report.duplicated) {
                eprintln!("{line}");
            }
            println!(
                "merged {} of {} runs from {} shard folder(s) into {} ({} parts){}",
                report.runs,
                report.total_runs,
                report.shards,
                dir.display(),
                report.parts,
                if report.complete() { String::new() } else { format!("; {} group(s) of runs missing, {} duplicated (listed above)", report.missing.len(), report.duplicated.len()) }
            );
            Ok(if report.complete() { 0 } else { EXIT_INCOMPLETE_MERGE })
        }
        Command::Export { dir, run, out } => {
            let exported = export::export_run(&dir, run, &out)?;
            for (name, shape) in &exported.tensors {
                println!("{name} {shape:?}");
            }
            println!("run {run} ({}, final test accuracy {}) → {}", exported.status, exported.final_test_acc, exported.path.display());
            Ok(0)
        }
        Command::Analyze { dir, threshold, group_by, grok_rule, circuit_threshold } => {
            if !(threshold > 0.0 && threshold <= 1.0) {
                bail!("--threshold {threshold}: expected a test accuracy in (0, 1]");
            }
            let options = grokstack_analysis::AnalyzeOptions { threshold, group_by, grok_rule, circuit_threshold };
            let report = grokstack_analysis::analyze(&dir, &options)?;
            println!("{}", report.headline);
            if report.missing_runs > 0 {
                println!("{} run(s) of the sweep are not finished yet and are left out.", report.missing_runs);
            }
            for line in &report.unfinished_shards {
                println!("{line}");
            }
            println!("wrote {} (the whole analysis on one page: {})", report.out_dir.display(), report.out_dir.join("report.html").display());
            Ok(0)
        }
        Command::Slurm { sweep, out, overrides, shards, gpus_per_task, cpus_per_task, mem, time, partition, max_parallel, extra, device, submit } => {
            let sweep = Sweep::load(&sweep, &overrides)?;
            let resources = slurm::Resources { gpus_per_task, cpus_per_task, mem, time, partition, max_parallel, extra };
            let script = slurm::prepare(slurm::Request { sweep: &sweep, out: &out, shards, device, resources })?;
            println!("wrote {} ({shards} tasks)", script.display());
            if submit {
                let job = slurm::submit(&script)?;
                println!("submitted job array {job}: watch it with `squeue -j {job}`, then `grokstack merge {}`", out.display());
            } else {
                println!("submit it with `sbatch {}`", script.display());
            }
            Ok(0)
        }
        Command::Bench { runs, epochs, overrides, device, json, no_gemm, single } => {
            if runs.is_empty() || runs.contains(&0) || epochs == 0 {
                bail!("--runs needs stack sizes of at least 1, and --epochs at least 1");
            }
            if single {
                let dev = runner::parse_device(&device)?;
                let result = bench::bench_one(runs[0], epochs, &overrides, &dev)?;
                println!("{}", serde_json::to_string(&result)?);
                return Ok(0);
            }
            let results = bench::bench_in_children(&runs, epochs, &overrides, &device)?;
            let gemm = if no_gemm { None } else { Some(bench::GemmReference::measure(&overrides, &runner::parse_device(&device)?)?) };
            print!("{}", bench::format_table(&results, gemm.as_ref()));
            if let Some(path) = json {
                let doc = serde_json::json!({ "results": results, "gemm": gemm });
                std::fs::write(&path, serde_json::to_string_pretty(&doc)?).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            }
            Ok(0)
        }
    }
}
