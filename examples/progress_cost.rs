//! The cost of logging the progress measures every epoch, measured side by side: two stacks of
//! the canonical benchmark step (p = 113, embedding 113, hidden [200, 200], f32), one with
//! `metrics.progress = true`, train in turns, epoch by epoch, in one process, so that both
//! see the same machine at the same moments. Prints the median epoch of each and their ratio.
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

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args
        .first()
        .context("usage: progress_cost RUNS EPOCHS [KEY=VALUE ...]")?
        .parse()?;
    let epochs: usize = args
        .get(1)
        .context("usage: progress_cost RUNS EPOCHS [KEY=VALUE ...]")?
        .parse()?;
    let overrides = &args[2..];
    let with = |progress: bool| -> Result<Stack> {
        let mut all = overrides.to_vec();
        all.push(format!("metrics.progress={progress}"));
        Stack::new(canonical_runs(runs, &all)?, &Device::Cpu)
    };
    let mut stacks = [with(false)?, with(true)?];
    let mut times = [Vec::with_capacity(epochs), Vec::with_capacity(epochs)];
    for stack in &mut stacks {
        stack.epoch(0)?; // warm-up
    }
    for epoch in 1..=epochs {
        for (stack, times) in stacks.iter_mut().zip(&mut times) {
            let start = Instant::now();
            stack.epoch(epoch)?;
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let [without, with_measures] = times.map(|mut t| median(&mut t));
    println!(
        "{}",
        serde_json::json!({
            "runs": runs, "epochs_timed": epochs, "overrides": overrides,
            "median_epoch_seconds_without": without, "median_epoch_seconds_with": with_measures,
            "overhead": with_measures / without - 1.0,
        })
    );
    Ok(())
}
