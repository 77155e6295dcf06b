//! The cost of logging the progress measures every epoch, measured side by side: two stacks of
//! the canonical benchmark step (p = 113, embedding 113, hidden [200, 200], f32), one with
//! `metrics.progress = true`, train in turns, epoch by epoch, in one process, so that both
//! see the same machine at the same moments. Prints the median epoch of each, in wall-clock
//! seconds and in CPU seconds of the process (user + system, all threads: on a shared machine
//! the wall clock also counts the time other processes held the cores), and the overheads.
//!
//!     cargo run --release --example progress_cost -- RUNS EPOCHS [KEY=VALUE ...]

use anyhow::{Context, Result};
use candle_core::Device;
use grokstack::bench::canonical_runs;
use grokstack::train::Stack;
use std::time::Instant;

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// CPU seconds (user + system) this process has used so far, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.first().context("usage: progress_cost RUNS EPOCHS [KEY=VALUE ...]")?.parse()?;
    let epochs: usize = args.get(1).context("usage: progress_cost RUNS EPOCHS [KEY=VALUE ...]")?.parse()?;
    let overrides = &args[2..];
    let with = |progress: bool| -> Result<Stack> {
        let mut all = overrides.to_vec();
        all.push(format!("metrics.progress={progress}"));
        Stack::new(canonical_runs(runs, &all)?, &Device::Cpu)
    };
    let mut stacks = [with(false)?, with(true)?];
    let mut times = [Vec::with_capacity(epochs), Vec::with_capacity(epochs)];
    let mut cpu = [Vec::with_capacity(epochs), Vec::with_capacity(epochs)];
    for stack in &mut stacks {
        stack.epoch(0)?; // warm-up
    }
    for epoch in 1..=epochs {
        for ((stack, times), cpu) in stacks.iter_mut().zip(&mut times).zip(&mut cpu) {
            let (start, cpu_start) = (Instant::now(), cpu_seconds());
            stack.epoch(epoch)?;
            times.push(start.elapsed().as_secs_f64());
            cpu.push(cpu_seconds() - cpu_start);
        }
    }
    let [without, with_measures] = times.map(|mut t| median(&mut t));
    let [cpu_without, cpu_with] = cpu.map(|mut t| median(&mut t));
    println!(
        "{}",
        serde_json::json!({
            "runs": runs, "epochs_timed": epochs, "overrides": overrides,
            "median_epoch_seconds_without": without, "median_epoch_seconds_with": with_measures,
            "overhead": with_measures / without - 1.0,
            "median_epoch_cpu_seconds_without": cpu_without, "median_epoch_cpu_seconds_with": cpu_with,
            "cpu_overhead": cpu_with / cpu_without - 1.0,
        })
    );
    Ok(())
}
