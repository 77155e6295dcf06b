//! The phases of grokking (Nanda et al. 2023, "Progress measures for grokking via mechanistic
//! interpretability"), per run and per setting, from the progress measures a sweep with
//! `metrics.progress` logs (restricted and excluded loss, key frequencies): memorization,
//! circuit formation, the grok epoch and the cleanup that follows, and the key frequencies the
//! runs end with. Nothing here runs for a sweep without those columns, whose analysis is what
//! it was before them.
//!
//! Why the circuit-formation epoch comes from the restricted loss: it is the loss over all p²
//! pairs of the logits kept to the key frequencies, so it falls exactly as the Fourier circuit
//! comes to classify the pairs on its own, before test accuracy moves. The excluded loss rises
//! in the same phase, but from the train loss of a memorized network, close to zero, so a rise
//! relative to it is mostly noise; the restricted loss starts near or above log p. The epoch is
//! counted from memorization, not from the start, so the circuit is measured against the network
//! that memorized, and only from what happened before it, so a run stopped early gets the same
//! epoch as one trained on.

mod per_run;
mod per_setting;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use polars::prelude::{
    col, cols, Column, DataFrame, DataType, Expr, IntoLazy, JoinArgs, JoinType, SortMultipleOptions,
};

use crate::columns::*;
use crate::plots;
use crate::staging::Staging;
use crate::sweep_dir::SweepDir;
use crate::tables::{csv_bytes, format_number, format_value};
pub(crate) use per_setting::{stat_columns, MEDIAN_SEED_RUN_ID};
use per_setting::{FREQUENCY, RUNS_WITH_FREQUENCY};

/// The default `--circuit-threshold`: the circuit has formed once the restricted loss has halved.
pub const DEFAULT_CIRCUIT_THRESHOLD: f64 = 0.5;

/// The phase epoch columns, in the order the phases happen.
pub(crate) const PHASES: [&str; 4] = [MEMORIZATION_EPOCH, CIRCUIT_EPOCH, GROK_EPOCH, CLEANUP_END_EPOCH];
/// What the headline and the plots call them, in [`PHASES`] order.
pub(crate) const PHASE_NAMES: [&str; 4] = ["memorization", "circuit formation", "grok", "cleanup end"];

/// Every file the phase analysis may write.
pub(crate) const OUTPUT_FILES: &[&str] = &[
    RUNS_FILE,
    SETTINGS_FILE,
    FREQUENCIES_FILE,
    "phase_losses.png",
    "phase_losses.svg",
    "phase_epochs.png",
    "phase_epochs.svg",
    "phase_key_frequencies.png",
    "phase_key_frequencies.svg",
];
const RUNS_FILE: &str = "phase_runs.csv";
const SETTINGS_FILE: &str = "phase_settings.csv";
const FREQUENCIES_FILE: &str = "phase_key_frequencies.csv";
/// The columns that say which task a run learns: key frequencies are compared within a task.
/// `task.p` is optional (not every writer of runs.parquet has it).
const TASK_COLUMNS: [&str; 2] = [TASK_OP, TASK_P];
/// Frequencies named per task in the headline.
const HEADLINE_FREQUENCIES: usize = 5;

/// `--circuit-threshold`, checked: a fraction of the restricted loss strictly between 0 and 1.
pub(crate) fn check_circuit_threshold(threshold: f64) -> Result<()> {
    if !(threshold > 0.0 && threshold < 1.0) {
        bail!("--circuit-threshold must be in (0, 1), got {threshold}");
    }
    Ok(())
}

/// How often the runs of one task end with each key frequency.
pub(crate) struct TaskFrequencies {
    /// e.g. `add, p = 113`.
    pub task: String,
    /// Its runs with progress measures.
    pub runs: usize,
    /// (frequency, runs ending with it), most runs first, then the lower frequency.
    pub counts: Vec<(i64, i64)>,
}

/// The phases of every run that logged progress measures, computed in full before anything is
/// written.
pub(crate) struct Phases {
    circuit_threshold: f64,
    /// Those of [`TASK_COLUMNS`] that runs.parquet has.
    task_columns: Vec<&'static str>,
    /// [`per_run::run_phases`], the key frequencies as lists.
    runs: DataFrame,
    /// [`per_setting::setting_phases`] with the settings' configuration columns.
    settings: DataFrame,
    /// [`per_setting::key_frequency_counts`].
    frequencies: DataFrame,
    /// Per task ([`TASK_COLUMNS`]) and frequency, the runs that end with it.
    by_task: DataFrame,
    /// The losses per logged epoch of the runs the loss-curve plot shows.
    curves: DataFrame,
}

impl Phases {
    /// None when the metrics have no progress measures or no run logged them.
    /// `outcomes`: [`crate::per_run::run_outcomes`]; `settings`: settings.csv's frame.
    pub fn compute(
        sweep: &SweepDir,
        outcomes: &DataFrame,
        settings: &DataFrame,
        config: &[String],
        circuit_threshold: f64,
    ) -> Result<Option<Self>> {
        if !sweep.metrics_have_progress() {
            return Ok(None);
        }
        let inputs = sweep.describe_inputs();
        let task_columns: Vec<&'static str> =
            TASK_COLUMNS.into_iter().filter(|c| config.iter().any(|k| k == c)).collect();
        let runs = per_run::run_phases(outcomes.clone().lazy(), sweep.metrics()?, circuit_threshold, &task_columns)
            .collect()
            .with_context(|| format!("computing the phases of grokking from {inputs}"))?;
        if runs.height() == 0 {
            return Ok(None);
        }
        let configuration =
            settings.clone().lazy().select([col(SETTING_ID), cols(config.iter().map(String::as_str)).as_expr()]);
        let per_setting = per_setting::setting_phases(runs.clone().lazy())
            .join(configuration, [col(SETTING_ID)], [col(SETTING_ID)], JoinArgs::new(JoinType::Inner))
            .sort([SETTING_ID], SortMultipleOptions::default())
            .collect()
            .context("aggregating the phases of grokking per setting")?;
        let frequencies = per_setting::key_frequency_counts(runs.clone().lazy())
            .collect()
            .context("counting the final key frequencies per setting")?;
        let by_task = per_setting::exploded_frequencies(runs.clone().lazy(), &task_columns)
            .collect()
            .context("counting the final key frequencies per task")?;
        let curves = plots::phase_losses::curves(sweep, &per_setting)?;
        Ok(Some(Self { circuit_threshold, task_columns, runs, settings: per_setting, frequencies, by_task, curves }))
    }

    /// Lines for the headline: the phase epochs' medians over every run, and per task the
    /// final key frequencies most runs end with.
    pub fn headline(&self) -> Result<String> {
        let pooled = self
            .runs
            .clone()
            .lazy()
            .select(
                PHASES
                    .iter()
                    .flat_map(|phase| {
                        [
                            col(*phase).cast(DataType::Float64).median().alias(format!("median {phase}")),
                            col(*phase).count().alias(format!("runs {phase}")),
                        ]
                    })
                    .collect::<Vec<Expr>>(),
            )
            .collect()
            .context("the phases of grokking over all runs")?;
        let cell = |name: String| -> Result<String> { Ok(format_value(&pooled.column(&name)?.get(0)?)) };
        let medians = PHASES
            .iter()
            .zip(PHASE_NAMES)
            .map(|(phase, name)| {
                Ok(format!("{name} {} ({} runs)", cell(format!("median {phase}"))?, cell(format!("runs {phase}"))?))
            })
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let mut text = format!(
            "Phases of grokking (Nanda et al. 2023) over the {} runs with progress measures, median epochs and \
             the runs that reached each: {medians}; the circuit has formed once the restricted loss is at most \
             {} × its value at memorization (--circuit-threshold {}).",
            self.runs.height(),
            format_number(1.0 - self.circuit_threshold),
            format_number(self.circuit_threshold),
        );
        for TaskFrequencies { task, runs, counts } in self.frequencies_per_task()? {
            let shown = counts
                .iter()
                .take(HEADLINE_FREQUENCIES)
                .map(|(frequency, n)| format!("{frequency} ({n} of {runs} runs)"))
                .collect::<Vec<_>>()
                .join(", ");
            text.push_str(&format!("\nFinal key frequencies most often found for {task}: {shown}."));
        }
        Ok(text)
    }

    /// Per task, in label order.
    pub fn frequencies_per_task(&self) -> Result<Vec<TaskFrequencies>> {
        let mut tasks: BTreeMap<String, (usize, Vec<(i64, i64)>)> = BTreeMap::new();
        for row in 0..self.runs.height() {
            tasks.entry(self.task_label(&self.runs, row)?).or_default().0 += 1;
        }
        let frequency = self.by_task.column(FREQUENCY)?.i64()?;
        let runs = self.by_task.column(RUNS_WITH_FREQUENCY)?.i64()?;
        for row in 0..self.by_task.height() {
            if let (Some(k), Some(n)) = (frequency.get(row), runs.get(row)) {
                tasks.entry(self.task_label(&self.by_task, row)?).or_default().1.push((k, n));
            }
        }
        Ok(tasks
            .into_iter()
            .map(|(task, (runs, mut counts))| {
                counts.sort_by_key(|&(frequency, n)| (-n, frequency));
                TaskFrequencies { task, runs, counts }
            })
            .collect())
    }

    /// The task of `row` of `frame`: the operation, then `p = 113` and any other task column.
    fn task_label(&self, frame: &DataFrame, row: usize) -> Result<String> {
        let mut parts = Vec::new();
        for (i, column) in self.task_columns.iter().enumerate() {
            let value = format_value(&frame.column(column)?.get(row)?);
            parts.push(if i == 0 { value } else { format!("{} = {value}", plots::short_name(column)) });
        }
        Ok(parts.join(", "))
    }

    /// The three tables and three plots.
    pub fn write(&self, stage: &mut Staging, varying: &[String]) -> Result<()> {
        // One row per run, thousands in a big sweep: a file beside the page, not a table on it.
        stage.write(RUNS_FILE, &csv_bytes(&frequencies_as_text(&self.runs)?)?)?;
        let mut shown = vec![SETTING_ID.to_string()];
        shown.extend(varying.iter().cloned());
        shown.push(per_setting::SEEDS_WITH_PROGRESS.to_string());
        for phase in PHASES {
            shown.extend(per_setting::stat_columns(phase));
        }
        shown.push(per_setting::MEDIAN_SEED_RUN_ID.to_string());
        stage.write_csv(
            SETTINGS_FILE,
            &format!(
                "one row per setting: its seeds with progress measures and, per phase epoch, the seeds that \
                 reached it with the median and quartiles of their epochs (each run's in {RUNS_FILE}): \
                 memorization = first logged epoch with train accuracy ≥ 0.99; circuit = first logged epoch from \
                 then on with restricted loss ≤ {} × its value at memorization; grok = the analysis's grok epoch; \
                 cleanup_end = first logged epoch from the grok epoch on with the weight norm within {} × |its \
                 value at the grok epoch − its final value| of its final value. median_seed_run_id: the run whose \
                 losses phase_losses shows (the lower median by grok epoch)",
                format_number(1.0 - self.circuit_threshold),
                format_number(per_run::CLEANUP_REMAINING),
            ),
            &self.settings.select(shown).context("selecting the phase_settings.csv columns")?,
        )?;
        stage.write_csv(
            FREQUENCIES_FILE,
            "per setting and key frequency: the runs whose final key frequencies hold it, of the setting's seeds",
            &self.frequencies,
        )?;
        plots::phase_losses::draw(stage, &self.curves, &self.runs, &self.settings, varying)?;
        plots::phase_epochs::draw(stage, &self.settings)?;
        plots::key_frequency_histogram::draw(stage, &self.frequencies_per_task()?)
    }
}

/// `runs` with `final_key_frequencies` as text, e.g. `14 35 41` (CSV has no lists).
fn frequencies_as_text(runs: &DataFrame) -> Result<DataFrame> {
    let lists = runs.column(FINAL_KEY_FREQUENCIES)?.list()?;
    let mut text: Vec<Option<String>> = Vec::with_capacity(lists.len());
    for row in 0..lists.len() {
        text.push(match lists.get_as_series(row) {
            None => None,
            Some(values) => Some(
                values
                    .cast(&DataType::Int64)?
                    .i64()?
                    .iter()
                    .flatten()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        });
    }
    let mut table = runs.clone();
    table.with_column(Column::new(FINAL_KEY_FREQUENCIES.into(), text))?;
    Ok(table)
}
