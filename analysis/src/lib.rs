//! The analysis stage of grokstack: reads the Parquet files a sweep writes
//! (see `docs/OUTPUT.md`) and writes tables and plots to `DIR/analysis/`.
//!
//! Everything that touches the per-epoch metrics is a polars lazy query; the
//! plain Rust loops left are over settings (hundreds of rows at most).

mod best;
mod columns;
mod family;
mod grok_rule;
mod optimizer_comparison;
mod pareto;
mod per_run;
mod phases;
mod plots;
mod report;
mod settings;
mod staging;
mod student_t;
mod study;
mod summary;
mod sweep_dir;
mod tables;
mod welch;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::IntoLazy;

pub use grok_rule::GrokRule;
pub use phases::DEFAULT_CIRCUIT_THRESHOLD;

/// Every file analysis may write into `DIR/analysis/`. Files from an earlier
/// analysis that this one does not produce (say `ttest.md` after the sweep
/// was cut down to one optimizer) are removed so that no stale result stays.
const OUTPUT_FILES: &[&str] = &[
    "settings.csv",
    "settings.md",
    "pareto.csv",
    "best.csv",
    "best.md",
    "ttest.md",
    "grok_vs_lipschitz.png",
    "grok_vs_lipschitz.svg",
    "accuracy_curves.png",
    "accuracy_curves.svg",
    "lr_wd_heatmap.png",
    "lr_wd_heatmap.svg",
    report::FILE,
];

#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// Test accuracy a run must reach to count as grokked, in (0, 1]; 1.0 gives the solve epoch.
    pub threshold: f64,
    /// Columns of runs.parquet the best-setting tables are grouped by; empty means
    /// `model.hidden` and `model.input`.
    pub group_by: Vec<String>,
    /// Which epoch at or above the threshold counts as the grok epoch.
    pub grok_rule: GrokRule,
    /// Also write the optimizer study of Tveit et al. (2025): study.md, its CSVs and box plots.
    /// The sweep must have finished runs of two or more optimizers.
    pub study: bool,
    /// Fraction by which the restricted loss must fall from its value at memorization for the
    /// circuit to count as formed, in (0, 1) (only for sweeps with `metrics.progress`).
    pub circuit_threshold: f64,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            threshold: 0.95,
            group_by: Vec::new(),
            grok_rule: GrokRule::First,
            study: false,
            circuit_threshold: DEFAULT_CIRCUIT_THRESHOLD,
        }
    }
}

#[derive(Debug)]
pub struct AnalysisReport {
    /// The top of settings.md, for the terminal.
    pub headline: String,
    /// Runs of the sweep that have no results yet (from progress.json's `total_runs`).
    pub missing_runs: usize,
    /// A sharded directory's unfinished shards, one line each (empty otherwise).
    pub unfinished_shards: Vec<String>,
    /// `DIR/analysis`.
    pub out_dir: PathBuf,
}

/// Analyses the sweep output directory `dir` and writes `dir/analysis/`.
///
/// All inputs are validated and every result is computed before anything is
/// written, and files are staged and renamed into place, so a failed analysis
/// leaves an earlier `dir/analysis/` exactly as it was.
pub fn analyze(dir: &Path, opts: &AnalyzeOptions) -> Result<AnalysisReport> {
    if !(opts.threshold > 0.0 && opts.threshold <= 1.0) {
        bail!("--threshold must be in (0, 1], got {}", opts.threshold);
    }
    phases::check_circuit_threshold(opts.circuit_threshold)?;
    let sweep = sweep_dir::SweepDir::open(dir)?;
    let config = sweep.config_columns();
    let group_keys = resolve_group_keys(&sweep, &opts.group_by)?;
    let grok = grok_rule::GrokCriterion { threshold: opts.threshold, rule: opts.grok_rule };

    let runs = per_run::run_outcomes(sweep.runs()?, sweep.metrics()?, grok, sweep.metrics_have_lipschitz())
        .collect()
        .with_context(|| format!("computing grok epochs from {}", sweep.describe_inputs()))?;
    if runs.height() == 0 {
        bail!("{} has no finished runs with metrics yet", sweep.runs_file().display());
    }
    let planned = match sweep.planned_runs() {
        Some(total) => total,
        None => sweep.listed_runs()?,
    };
    let skipped_runs = sweep.skipped_runs()?;
    let study_optimizers = opts.study.then(|| study::optimizers(&runs, sweep.runs_file())).transpose()?;
    let missing_runs = planned.saturating_sub(runs.height() + skipped_runs);

    let settings = settings::setting_stats(runs.clone().lazy(), sweep.runs()?, &config)
        .collect()
        .context("aggregating runs into settings")?;
    let settings = family::with_family(settings)?;
    let varying = settings::varying_columns(&settings, &config)?;
    let front =
        pareto::pareto_fronts(settings.clone().lazy(), &varying)?.collect().context("computing the Pareto front")?;
    let best_table = best::best_settings(&settings, &group_keys, &varying)?;
    let comparison = optimizer_comparison::compare_optimizers(runs.clone().lazy(), grok)?;
    let curves = plots::accuracy_curves::curve_quantiles(&sweep, runs.clone().lazy(), &settings)?;

    let summary = summary::Summary {
        dir,
        grok,
        runs: &runs,
        settings: &settings,
        config: &config,
        varying: &varying,
        missing_runs,
        skipped_runs,
    };
    let phases = phases::Phases::compute(&sweep, &runs, &settings, &config, opts.circuit_threshold)?;
    let headline = match &phases {
        Some(phases) => format!("{}\n{}", summary.headline()?, phases.headline()?),
        None => summary.headline()?,
    };

    let out_dir = dir.join("analysis");
    let mut stage = staging::Staging::create(&out_dir)?;
    stage.write_csv(
        "settings.csv",
        "one row per setting (runs equal but for the seed): every configuration column, seeds, grokked and \
         diverged seeds, grok-epoch median and quartiles, median Lipschitz bound at the grok epoch, qualified",
        &settings,
    )?;
    stage.write_markdown("settings.md", &summary.settings_markdown(&headline)?)?;
    stage.write_csv(
        "pareto.csv",
        "per task, the qualified settings on the Pareto front of (median grok epoch, median Lipschitz bound): \
         the overall front, then each family's own",
        &front,
    )?;
    stage.write_csv(
        "best.csv",
        "per group and optimizer, the qualified setting with the lowest median grok epoch and its difference to \
         the baseline optimizer",
        &best_table.frame,
    )?;
    stage.write_markdown("best.md", &best::best_markdown(&best_table, &group_keys, grok)?)?;
    if let Some(ttest) = comparison {
        stage.write_markdown("ttest.md", &ttest)?;
    }
    if let Some(optimizers) = &study_optimizers {
        study::write(&mut stage, &runs, optimizers, grok)?;
    }
    let has_lipschitz = settings.column(columns::MEDIAN_LIPSCHITZ)?.null_count() < settings.height();
    if has_lipschitz {
        plots::pareto_scatter::draw(&mut stage, &settings, &front, grok)?;
    }
    plots::accuracy_curves::draw(&mut stage, &curves, &settings, &varying)?;
    if varying.iter().any(|c| c == columns::LR) && varying.iter().any(|c| c == columns::WEIGHT_DECAY) {
        plots::lr_wd_heatmap::draw(&mut stage, &settings, &varying, grok)?;
    }
    if let Some(phases) = &phases {
        phases.write(&mut stage, &varying)?;
    }
    let sweep_toml = sweep.resolved_sweep()?;
    let page = report::Page {
        headline: &headline,
        sweep_toml: sweep_toml.as_deref(),
        missing_runs,
        unfinished_shards: sweep.shard_notes(),
        skipped_runs,
        runs: &runs,
        varying: &varying,
    };
    // Written last: the page shows every other output, as staged.
    let html = report::render(&page, stage.report_contents())?;
    stage.write(report::FILE, html.as_bytes())?;
    stage.commit(&[OUTPUT_FILES, study::OUTPUT_FILES, phases::OUTPUT_FILES].concat())?;

    Ok(AnalysisReport { headline, missing_runs, unfinished_shards: sweep.shard_notes().to_vec(), out_dir })
}

/// The group keys to use, each checked to be a configuration column of runs.parquet.
fn resolve_group_keys(sweep: &sweep_dir::SweepDir, requested: &[String]) -> Result<Vec<String>> {
    let config = sweep.config_columns();
    if requested.is_empty() {
        let present: Vec<String> = columns::DEFAULT_GROUP_KEYS
            .iter()
            .filter(|k| config.iter().any(|c| c == *k))
            .map(|k| k.to_string())
            .collect();
        // task.op is a required column, so a table always has some grouping.
        return Ok(if present.is_empty() { vec![columns::TASK_OP.to_string()] } else { present });
    }
    for key in requested {
        if !config.contains(key) {
            bail!(
                "--group-by key `{key}` is not a configuration column of {} (they are: {})",
                sweep.runs_file().display(),
                config.join(", ")
            );
        }
    }
    Ok(requested.to_vec())
}
