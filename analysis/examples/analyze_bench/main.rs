//! Times `analyze` on a full-size synthetic sweep: 8,960 runs × 1,001 logged
//! epochs (about 9M metric rows), the blog's Lipschitz grid.
//!
//! cargo run --release -p grokstack-analysis --example analyze_bench [-- DIR]
//!
//! DIR (default: target/analyze-bench) is generated on the first run and reused.
//! Prints the analysis time and the peak resident memory of the process.

use std::path::PathBuf;
use std::time::Instant;

mod synthetic;

use anyhow::{Context, Result};
use grokstack_analysis::{analyze, AnalyzeOptions};
use synthetic::write_synthetic_sweep;

const RUNS: usize = 8_960;
const EPOCHS: usize = 1_001;
const SEED: u64 = 2025;

fn main() -> Result<()> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target/analyze-bench"));
    if !dir.join("runs.parquet").exists() {
        let started = Instant::now();
        write_synthetic_sweep(&dir, RUNS, EPOCHS, SEED)?;
        println!(
            "generated {} ({RUNS} runs × {EPOCHS} epochs) in {:.1} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    // Peak memory is for the analysis alone only when the data already existed.
    let started = Instant::now();
    // The synthetic grid has two optimizers, so with the study every part of the analysis runs.
    let options = AnalyzeOptions { study: true, ..AnalyzeOptions::default() };
    let report = analyze(&dir, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{}\n", report.headline);
    println!("analyze: {seconds:.2} s, peak RSS {:.0} MiB", peak_rss_mib()?);
    Ok(())
}

/// VmHWM, the peak resident set size of this process, from /proc/self/status.
fn peak_rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM in /proc/self/status")?;
    let kib: f64 = line.split_whitespace().nth(1).context("malformed VmHWM line")?.parse()?;
    Ok(kib / 1024.0)
}
