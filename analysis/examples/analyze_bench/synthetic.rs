//! A fake but realistic sweep output directory, laid out exactly as
//! docs/OUTPUT.md says the trainer writes it, for benchmarking analysis at
//! full scale without training anything.
//!
//! The grid is the blog's Lipschitz grid with the activation axis replaced by
//! the optimizer (adamw, muon), so that every part of the analysis runs:
//! 2 tasks × 2 optimizers × 7 learning rates × 5 weight decays = 140 settings.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame, ParquetWriter};

const OPS: [&str; 2] = ["add", "mul"];
const OPTIMIZERS: [&str; 2] = ["adamw", "muon"];
const LRS: [f64; 7] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];
const WEIGHT_DECAYS: [f64; 5] = [2.0, 4.0, 6.0, 8.0, 10.0];
const SETTINGS: usize = OPS.len() * OPTIMIZERS.len() * LRS.len() * WEIGHT_DECAYS.len();
/// Runs per metrics part, like one trained stack.
const RUNS_PER_PART: usize = 640;
const LINEAR_LAYERS: usize = 3;
const GROK_THRESHOLD: f64 = 0.95;

struct Setting {
    op: &'static str,
    optimizer: &'static str,
    lr: f64,
    weight_decay: f64,
}

fn setting(index: usize) -> Setting {
    let wd = index % WEIGHT_DECAYS.len();
    let lr = index / WEIGHT_DECAYS.len() % LRS.len();
    let optimizer = index / (WEIGHT_DECAYS.len() * LRS.len()) % OPTIMIZERS.len();
    let op = index / (WEIGHT_DECAYS.len() * LRS.len() * OPTIMIZERS.len());
    Setting { op: OPS[op], optimizer: OPTIMIZERS[optimizer], lr: LRS[lr], weight_decay: WEIGHT_DECAYS[wd] }
}

/// SplitMix64: tiny, seedable, and good enough for fake data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        // Box–Muller; 1 - u keeps the logarithm finite.
        let (u, v) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The per-run results runs.parquet reports, from the generated curves.
#[derive(Default)]
struct RunSummary {
    diverged: bool,
    epochs_trained: i64,
    grok_epoch: Option<i64>,
    solve_epoch: Option<i64>,
    lipschitz_at_grok: Option<f64>,
    final_train_acc: f64,
    final_test_acc: f64,
    final_train_loss: f64,
    final_test_loss: f64,
}

/// The metrics columns of one part, in docs/OUTPUT.md order.
#[derive(Default)]
struct MetricColumns {
    run_id: Vec<i64>,
    epoch: Vec<i64>,
    train_loss: Vec<f64>,
    train_acc: Vec<f64>,
    test_loss: Vec<f64>,
    test_acc: Vec<f64>,
    weight_norm: Vec<f64>,
    softmax_collapse: Vec<f64>,
    zero_terms: Vec<f64>,
    lipschitz_bound: Vec<f64>,
    embedding_weight_norm: Vec<f64>,
    layer_weight_norm: [Vec<f64>; LINEAR_LAYERS],
    layer_spectral_norm: [Vec<f64>; LINEAR_LAYERS],
}

/// Writes `runs` runs of `epochs` logged epochs each into `dir` (created if
/// needed): runs.parquet, metrics.parquet/part-NNNNN.parquet, sweep.toml and
/// progress.json. The same `seed` gives the same files.
pub fn write_synthetic_sweep(dir: &Path, runs: usize, epochs: usize, seed: u64) -> Result<()> {
    let parts_dir = dir.join("metrics.parquet");
    fs::create_dir_all(&parts_dir).with_context(|| format!("creating {}", parts_dir.display()))?;
    let seeds = runs.div_ceil(SETTINGS).max(1);

    let mut summaries = Vec::with_capacity(runs);
    for (part, first_run) in (0..runs).step_by(RUNS_PER_PART).enumerate() {
        let mut metrics = MetricColumns::default();
        for run_id in first_run..(first_run + RUNS_PER_PART).min(runs) {
            let mut rng = Rng(seed ^ (run_id as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            summaries.push(simulate_run(run_id, &setting(run_id / seeds), epochs, &mut rng, &mut metrics));
        }
        let path = parts_dir.join(format!("part-{part:05}.parquet"));
        write_parquet(&mut metrics.into_frame()?, &path)?;
    }
    write_parquet(&mut runs_frame(&summaries, seeds, epochs)?, &dir.join("runs.parquet"))?;
    fs::write(dir.join("sweep.toml"), sweep_toml(seeds, epochs))
        .with_context(|| format!("writing {}/sweep.toml", dir.display()))?;
    fs::write(dir.join("progress.json"), format!("{{\"total_runs\": {runs}, \"finished_runs\": {runs}}}\n"))
        .with_context(|| format!("writing {}/progress.json", dir.display()))
}

/// Appends one run's logged epochs to `out`: train accuracy rises early, test
/// accuracy jumps around a per-seed grok epoch, and large lr × wd can diverge.
fn simulate_run(run_id: usize, s: &Setting, epochs: usize, rng: &mut Rng, out: &mut MetricColumns) -> RunSummary {
    let lr_penalty = 1.0 + 2.4 * (s.lr / 0.01).log10().powi(2);
    let wd_penalty = 1.0 + 0.05 * (s.weight_decay - 6.0).powi(2);
    let op_factor = if s.op == "mul" { 1.15 } else { 1.0 };
    let optimizer_factor = if s.optimizer == "muon" { 0.85 } else { 1.0 };
    let grok = 130.0 * lr_penalty * wd_penalty * op_factor * optimizer_factor * (0.25 * rng.normal()).exp();
    let width = (grok / 20.0).max(2.0);
    // Where the logistic test curve is centred so that it crosses 0.95 at `grok`.
    let centre = grok - width * (0.9495f64 / 0.0505).ln();
    let solved_from = grok + 0.15 * grok + 3.0;
    let train_time = (grok / 8.0).max(5.0);
    let lipschitz_peak = (40.0 + 900.0 / (s.weight_decay * (s.lr * 100.0).sqrt())) * (0.15 * rng.normal()).exp();
    let diverges_at =
        (s.lr >= 0.1 && s.weight_decay >= 8.0 && rng.uniform() < 0.3).then(|| 50 + (rng.uniform() * 250.0) as usize);
    let last_epoch = diverges_at.unwrap_or(epochs - 1).min(epochs - 1);

    let mut summary =
        RunSummary { diverged: diverges_at.is_some(), epochs_trained: last_epoch as i64 + 1, ..Default::default() };
    for epoch in 0..=last_epoch {
        let e = epoch as f64;
        let train_acc = (1.0 - 0.99 * (-e / train_time).exp() + 0.002 * rng.normal()).clamp(0.0, 1.0);
        let test_acc = if e >= solved_from {
            1.0
        } else {
            (0.01 + 0.99 / (1.0 + (-(e - centre) / width).exp()) + 0.003 * rng.normal()).clamp(0.0, 0.999)
        };
        let lipschitz =
            lipschitz_peak * (1.0 - (-(e + 1.0) / 30.0).exp()) * (1.0 + 0.5 * (-(e - grok).max(0.0) / 100.0).exp());
        let weight_norm = 60.0 * (-e * s.lr * s.weight_decay * 0.02).exp() + 20.0;
        let train_loss = -(train_acc.max(1e-4)).ln() + 0.01;
        let test_loss = -(test_acc.max(1e-4)).ln() + 0.01;

        out.run_id.push(run_id as i64);
        out.epoch.push(epoch as i64);
        out.train_loss.push(train_loss);
        out.train_acc.push(train_acc);
        out.test_loss.push(test_loss);
        out.test_acc.push(test_acc);
        out.weight_norm.push(weight_norm);
        out.softmax_collapse.push(0.0);
        out.zero_terms.push(0.0);
        out.lipschitz_bound.push(lipschitz);
        out.embedding_weight_norm.push(0.6 * weight_norm);
        for layer in 0..LINEAR_LAYERS {
            out.layer_weight_norm[layer].push((0.3 - 0.05 * layer as f64) * weight_norm);
            out.layer_spectral_norm[layer].push(lipschitz.cbrt());
        }

        if summary.grok_epoch.is_none() && test_acc >= GROK_THRESHOLD {
            summary.grok_epoch = Some(epoch as i64);
            summary.lipschitz_at_grok = Some(lipschitz);
        }
        if summary.solve_epoch.is_none() && test_acc >= 1.0 {
            summary.solve_epoch = Some(epoch as i64);
        }
        summary.final_train_acc = train_acc;
        summary.final_test_acc = test_acc;
        summary.final_train_loss = train_loss;
        summary.final_test_loss = test_loss;
    }
    summary
}

impl MetricColumns {
    fn into_frame(self) -> Result<DataFrame> {
        let f = |name: &str, values: Vec<f64>| Column::new(name.into(), values);
        let mut columns = vec![
            Column::new("run_id".into(), self.run_id),
            Column::new("epoch".into(), self.epoch),
            f("train_loss", self.train_loss),
            f("train_acc", self.train_acc),
            f("test_loss", self.test_loss),
            f("test_acc", self.test_acc),
            f("weight_norm", self.weight_norm),
            f("softmax_collapse", self.softmax_collapse),
            f("zero_terms", self.zero_terms),
            f("lipschitz_bound", self.lipschitz_bound),
            f("embedding_weight_norm", self.embedding_weight_norm),
        ];
        for (layer, values) in self.layer_weight_norm.into_iter().enumerate() {
            columns.push(f(&format!("layer{layer}_weight_norm"), values));
        }
        for (layer, values) in self.layer_spectral_norm.into_iter().enumerate() {
            columns.push(f(&format!("layer{layer}_spectral_norm"), values));
        }
        DataFrame::new_infer_height(columns).context("assembling a synthetic metrics part")
    }
}

fn runs_frame(summaries: &[RunSummary], seeds: usize, epochs: usize) -> Result<DataFrame> {
    let n = summaries.len();
    let settings: Vec<Setting> = (0..n).map(|r| setting(r / seeds)).collect();
    let same = |v: &'static str| vec![v; n];
    let of = |get: fn(&RunSummary) -> f64| summaries.iter().map(get).collect::<Vec<f64>>();
    let frame = polars::df!(
        "run_id" => (0..n as i64).collect::<Vec<_>>(),
        "setting_id" => (0..n).map(|r| (r / seeds) as i64).collect::<Vec<_>>(),
        "seed" => (0..n).map(|r| (r % seeds) as i64).collect::<Vec<_>>(),
        "task.op" => settings.iter().map(|s| s.op).collect::<Vec<_>>(),
        "task.p" => vec![113i64; n],
        "task.train_fraction" => vec![0.4; n],
        "model.input" => same("embedding"),
        "model.embed_dim" => vec![113i64; n],
        "model.hidden" => same("[200, 200]"),
        "model.activation" => same("gelu"),
        "model.alpha" => vec![1.0; n],
        "train.epochs" => vec![epochs as i64; n],
        "train.optimizer" => settings.iter().map(|s| s.optimizer).collect::<Vec<_>>(),
        "train.lr" => settings.iter().map(|s| s.lr).collect::<Vec<_>>(),
        "train.weight_decay" => settings.iter().map(|s| s.weight_decay).collect::<Vec<_>>(),
        "train.beta1" => vec![0.9; n],
        "train.beta2" => vec![0.99; n],
        "train.eps" => vec![1e-25; n],
        "train.all_reg" => vec![true; n],
        "train.dtype" => same("bf16"),
        "train.loss" => same("softmax"),
        "train.stop" => same("none"),
        "train.log_every" => vec![1i64; n],
        "metrics.lipschitz" => vec![true; n],
        "status" => summaries.iter().map(|s| if s.diverged { "diverged" } else { "done" }).collect::<Vec<_>>(),
        "epochs_trained" => summaries.iter().map(|s| s.epochs_trained).collect::<Vec<_>>(),
        "grok_epoch" => summaries.iter().map(|s| s.grok_epoch).collect::<Vec<_>>(),
        "solve_epoch" => summaries.iter().map(|s| s.solve_epoch).collect::<Vec<_>>(),
        "lipschitz_at_grok" => summaries.iter().map(|s| s.lipschitz_at_grok).collect::<Vec<_>>(),
        "final_train_acc" => of(|s| s.final_train_acc),
        "final_test_acc" => of(|s| s.final_test_acc),
        "final_train_loss" => of(|s| s.final_train_loss),
        "final_test_loss" => of(|s| s.final_test_loss),
    )?;
    Ok(frame)
}

fn write_parquet(frame: &mut DataFrame, path: &Path) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(file).finish(frame).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn sweep_toml(seeds: usize, epochs: usize) -> String {
    let list = |values: &[f64]| values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "# Synthetic sweep written by the analyze_bench example (write_synthetic_sweep): fake metrics, \
         no training.\n\
         name = \"synthetic\"\nseeds = {seeds}\n\n\
         [task]\nop = \"add\"\np = 113\ntrain_fraction = 0.4\n\n\
         [model]\ninput = \"embedding\"\nembed_dim = 113\nhidden = [200, 200]\nactivation = \"gelu\"\nalpha = 1.0\n\n\
         [train]\nepochs = {epochs}\noptimizer = \"adamw\"\nlr = 0.01\nweight_decay = 4.0\nbeta1 = 0.9\nbeta2 = 0.99\n\
         eps = 1e-25\nall_reg = true\ndtype = \"bf16\"\nloss = \"softmax\"\nstop = \"none\"\nlog_every = 1\n\n\
         [metrics]\nlipschitz = true\n\n\
         [grid]\n\"task.op\" = [\"add\", \"mul\"]\n\"train.optimizer\" = [\"adamw\", \"muon\"]\n\
         \"train.lr\" = [{}]\n\"train.weight_decay\" = [{}]\n",
        list(&LRS),
        list(&WEIGHT_DECAYS),
    )
}
