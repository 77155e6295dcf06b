//! `grokstack bench`: the canonical training step, timed per epoch at several stack sizes.
//!
//! Each stack size runs in a child process of its own, so the peak memory it reports
//! (VmHWM) belongs to that stack size alone.

use crate::config::Precision;
use crate::config::{RunSpec, Sweep};
use crate::models::compute_dtype;
use crate::plan::{flops_per_run_epoch, stack_bytes, Pass};
use crate::train::Stack;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchResult {
    pub runs: usize,
    pub dtype: String,
    pub device: String,
    pub epochs_timed: usize,
    pub median_epoch_seconds: f64,
    pub run_epochs_per_second: f64,
    /// Counted by `plan::flops_per_run_epoch` (the MLP: 2·Σ(fan_in·fan_out)·(3·N_train + N_test)).
    pub effective_gflops: f64,
    pub peak_rss_bytes: u64,
    pub peak_rss_per_run_bytes: f64,
    pub estimated_bytes: u64,
}

/// The canonical stack of `runs` runs with `overrides` applied (e.g. `train.dtype=f64`): the
/// canonical sweep of the model kind they ask for (`model.kind=transformer`; the MLP's by
/// default), which its folder under `models/` defines.
pub fn canonical_runs(runs: usize, overrides: &[String]) -> Result<Vec<RunSpec>> {
    let mut all = overrides.to_vec();
    all.push(format!("seeds={runs}"));
    let (mlp_sweep, mlp_name) = (crate::models::mlp::BENCH_SWEEP, "the canonical benchmark sweep");
    let specs = Sweep::parse(mlp_sweep, mlp_name, &all)?.runs()?;
    let (sweep, name) = specs[0].config.model.bench_sweep();
    if sweep == mlp_sweep {
        return Ok(specs);
    }
    Sweep::parse(sweep, name, &all)?.runs()
}

/// Time `epochs` epochs (after one warm-up epoch) of a stack of `runs` runs, in this process.
pub fn bench_one(runs: usize, epochs: usize, overrides: &[String], device: &Device) -> Result<BenchResult> {
    let specs = canonical_runs(runs, overrides)?;
    let config = specs[0].config.clone();
    let baseline = peak_rss_bytes().unwrap_or(0);
    let mut stack = Stack::new(specs, device)?;
    stack.epoch(0)?; // warm-up: first-touch allocations, thread pool start
    let mut times = Vec::with_capacity(epochs);
    for epoch in 1..=epochs {
        let start = Instant::now();
        stack.epoch(epoch)?;
        device.synchronize()?;
        times.push(start.elapsed().as_secs_f64());
    }
    let median = median(&mut times);
    let peak = peak_rss_bytes().unwrap_or(0);
    Ok(BenchResult {
        runs,
        dtype: format!("{:?}", config.precision).to_lowercase(),
        device: format!("{device:?}"),
        epochs_timed: epochs,
        median_epoch_seconds: median,
        run_epochs_per_second: runs as f64 / median,
        effective_gflops: flops_per_run_epoch(&config) * runs as f64 / median / 1e9,
        peak_rss_bytes: peak,
        peak_rss_per_run_bytes: peak.saturating_sub(baseline) as f64 / runs as f64,
        estimated_bytes: stack_bytes(&config, runs, Pass::on(device)) as u64,
    })
}

/// The GEMM rate the benchmark compares with: one large square matmul on random operands
/// (zeros run faster on some GPUs), median of 5.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GemmReference {
    pub dtype: String,
    pub n: usize,
    pub gflops: f64,
}

impl GemmReference {
    /// The reference for the canonical stack with `overrides` on `device`: a GEMM in the model's
    /// compute dtype, 2048³ on the CPU; on a GPU 8192³, and a bf16 model is held against the
    /// bf16 tensor-core rate (its matmuls run on the TF32 tensor cores, see `Stack::new`).
    pub fn measure(overrides: &[String], device: &Device) -> Result<GemmReference> {
        let precision = canonical_runs(1, overrides)?[0].config.precision;
        let (n, dtype) = match (device.is_cuda(), precision) {
            (false, p) => (2048, compute_dtype(p)),
            (true, Precision::Bf16 | Precision::Bf16Mixed) => (8192, DType::BF16),
            (true, p) => (8192, compute_dtype(p)),
        };
        let a = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
        a.matmul(&b)?;
        device.synchronize()?;
        let mut times = Vec::with_capacity(5);
        for _ in 0..5 {
            let start = Instant::now();
            a.matmul(&b)?;
            device.synchronize()?;
            times.push(start.elapsed().as_secs_f64());
        }
        let gflops = 2.0 * (n as f64).powi(3) / median(&mut times) / 1e9;
        Ok(GemmReference { dtype: format!("{dtype:?}").to_lowercase(), n, gflops })
    }
}

/// Run `bench_one` for each stack size in a child process (`grokstack bench --single`).
pub fn bench_in_children(
    runs: &[usize],
    epochs: usize,
    overrides: &[String],
    device: &str,
) -> Result<Vec<BenchResult>> {
    let exe = std::env::current_exe().context("cannot find the grokstack executable")?;
    let mut results = Vec::new();
    for &r in runs {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["bench", "--single", "--runs", &r.to_string(), "--epochs", &epochs.to_string(), "--device", device]);
        for o in overrides {
            cmd.args(["--set", o]);
        }
        let output = cmd.output().context("cannot start the benchmark child process")?;
        if !output.status.success() {
            bail!("benchmark at R = {r} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text.lines().last().context("the benchmark child printed nothing")?;
        results.push(
            serde_json::from_str(line).with_context(|| format!("cannot read the benchmark child's output: {line}"))?,
        );
    }
    Ok(results)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// The process's peak resident memory (VmHWM), where /proc has it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn format_table(results: &[BenchResult], gemm: Option<&GemmReference>) -> String {
    let mut out = String::from(
        "| R | dtype | median epoch (s) | run-epochs/s | effective GFLOP/s | peak RSS | peak \
        RSS per run | estimate |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.2} | {:.1} | {} | {} | {} |\n",
            r.runs,
            r.dtype,
            r.median_epoch_seconds,
            r.run_epochs_per_second,
            r.effective_gflops,
            crate::size::human_bytes(r.peak_rss_bytes as f64),
            crate::size::human_bytes(r.peak_rss_per_run_bytes),
            crate::size::human_bytes(r.estimated_bytes as f64),
        ));
    }
    if let Some(g) = gemm {
        out.push_str(&format!("\nsquare {} GEMM (candle, {}³): {:.1} GFLOP/s\n", g.dtype, g.n, g.gflops));
    }
    out
}
