//! Training a whole sweep: plan the stacks, train them one after another, and write each
//! stack's results before the next starts.

use crate::config::{RunSpec, Sweep};
use crate::metrics::RunResult;
use crate::output::OutputDir;
use crate::plan::{bytes_per_run, chunk_to_fit, flops_per_run_epoch, group_into_stacks, human_bytes};
use crate::train::Stack;
use anyhow::{Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;

/// Parse `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("--device {name}: expected cpu, cuda or cuda:N"))?,
                None => anyhow::bail!("--device {name}: expected cpu, cuda or cuda:N"),
            };
            if !candle_core::utils::cuda_is_available() {
                anyhow::bail!("--device {name}: this grokstack was built without CUDA (build it with `make cuda`)");
            }
            Device::new_cuda(ordinal).with_context(|| format!("--device {name}: no CUDA device found"))
        }
    }
}

/// The stacks of `sweep`, split into chunks that fit in `max_memory` bytes.
pub fn plan_chunks(sweep: &Sweep, max_memory: u64) -> Result<Vec<Vec<RunSpec>>> {
    chunk_to_fit(group_into_stacks(sweep.runs()?), max_memory)
}

/// What `--dry-run` prints: runs, stacks, memory and FLOPs.
pub fn describe_plan(sweep: &Sweep, max_memory: u64) -> Result<String> {
    let runs = sweep.runs()?;
    let mut out = format!(
        "sweep `{}`: {} runs = {} settings × {} seeds\n",
        sweep.name,
        runs.len(),
        sweep.setting_count(),
        sweep.seeds.len()
    );
    let stacks = chunk_to_fit(group_into_stacks(runs), max_memory)?;
    out.push_str(&format!("{} stack(s) within --max-memory {}:\n", stacks.len(), human_bytes(max_memory as f64)));
    let mut total_flops = 0.0;
    for (i, stack) in stacks.iter().enumerate() {
        let c = &stack[0].config;
        let per_run = bytes_per_run(c);
        let flops = flops_per_run_epoch(c) * c.epochs as f64 * stack.len() as f64;
        total_flops += flops;
        out.push_str(&format!(
            "  stack {i}: R = {}, p = {}, input {:?}, hidden {:?}, {:?}, {:?}, {:?}, {} epochs: memory ≈ {} ({} per run), {:.1} TFLOP\n",
            stack.len(),
            c.p,
            c.input,
            c.hidden,
            c.activation,
            c.optimizer,
            c.precision,
            c.epochs,
            human_bytes((per_run * stack.len()) as f64),
            human_bytes(per_run as f64),
            flops / 1e12
        ));
    }
    out.push_str(&format!("total: {:.2} TFLOP (the first layer counted as a dense matmul)\n", total_flops / 1e12));
    Ok(out)
}

pub struct SweepSummary {
    pub runs: usize,
    pub grokked: usize,
    pub diverged: usize,
    pub seconds: f64,
}

/// Train every run of `sweep` into `out`, in stacks of at most `max_memory` bytes.
pub fn train_sweep(sweep: &Sweep, out: &Path, device: &Device, max_memory: u64) -> Result<SweepSummary> {
    let stacks = plan_chunks(sweep, max_memory)?;
    let total_runs: usize = stacks.iter().map(|s| s.len()).sum();
    let output = OutputDir::create(out, sweep)?;
    output.write_progress(total_runs, 0)?;
    let total_run_epochs: u64 = stacks.iter().map(|s| (s.len() * s[0].config.epochs) as u64).sum();
    let bar = ProgressBar::new(total_run_epochs).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent}% {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut finished: Vec<(RunSpec, RunResult)> = Vec::with_capacity(total_runs);
    let stack_count = stacks.len();
    for (index, runs) in stacks.into_iter().enumerate() {
        let r = runs.len();
        let epochs = runs[0].config.epochs;
        let done_before = bar.position();
        let stack_started = Instant::now();
        let stack = Stack::new(runs.clone(), device)?;
        let finished_runs = finished.len();
        let mut trained = 0u64;
        let mut last_line = Instant::now();
        let (results, rows) = stack.train(|step, active| {
            trained += active as u64;
            bar.set_position(done_before + trained);
            let rate = trained as f64 / stack_started.elapsed().as_secs_f64().max(1e-9);
            let status = format!(
                "stack {}/{stack_count} ({active}/{r} runs active) epoch {step}/{epochs} | runs {finished_runs}/{total_runs} | {rate:.1} run-epochs/s",
                index + 1
            );
            // Without a terminal (a batch job, a log file) the bar is hidden: print a line
            // every half minute instead.
            if bar.is_hidden() && last_line.elapsed().as_secs() >= 30 {
                eprintln!("[{:.0} s] {status}", started.elapsed().as_secs_f64());
                last_line = Instant::now();
            }
            bar.set_message(status);
        })?;
        // Epochs that retired runs did not need count as done.
        bar.set_position(done_before + (r * epochs) as u64);
        output.write_metrics_part(index, &rows)?;
        finished.extend(runs.into_iter().zip(results));
        let pairs: Vec<_> = finished.iter().map(|(s, r)| (s, r)).collect();
        output.write_runs(&pairs)?;
        output.write_progress(total_runs, finished.len())?;
        if bar.is_hidden() {
            eprintln!("[{:.0} s] stack {}/{stack_count} done: {}/{total_runs} runs finished", started.elapsed().as_secs_f64(), index + 1, finished.len());
        }
    }
    bar.finish_and_clear();
    let grokked = finished.iter().filter(|(_, r)| r.grok_epoch.is_some()).count();
    let diverged = finished.iter().filter(|(_, r)| r.status == crate::metrics::Status::Diverged).count();
    Ok(SweepSummary { runs: total_runs, grokked, diverged, seconds: started.elapsed().as_secs_f64() })
}
