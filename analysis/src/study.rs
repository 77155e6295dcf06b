//! The optimizer study of Tveit et al. (2025), made fairer (`study.md`, its CSVs and box
//! plots), written when asked for (`grokstack analyze --study`) of a sweep with two or more
//! optimizers:
//!
//! - the paper's comparison: each optimizer at its usual default learning rate ([`PAPER_LR`]),
//!   grok epochs pooled over tasks, output functions and seeds; Welch's and Student's t;
//! - the tuned comparison: each optimizer at its best learning rate for each task (most runs
//!   grokked, then the lowest mean grok epoch: the blog's way of tuning ⊥AdamW against AdamW);
//! - per task and per output function: medians, IQR, runs grokked, the winner and by how much;
//! - box plots of the grok epochs per optimizer (the paper's Fig. 4) and per task × optimizer.
//!
//! Runs that never grok are counted everywhere ("k/n grokked") and left out of means, medians
//! and tests, as the paper leaves them out; the winner of a group is decided over all runs,
//! a run that never grokked counting as later than any epoch.

use std::path::Path;

use anyhow::{bail, Context, Result};
use polars::prelude::*;

use crate::best::baseline_optimizer;
use crate::columns::*;
use crate::grok_rule::GrokCriterion;
use crate::plots::box_plot::{self, BoxStats};
use crate::staging::Staging;
use crate::student_t;
use crate::tables::{format_number, markdown_from_cells};
use crate::welch::{student_t_test, welch_t_test, SampleSummary, WelchTest};

pub(crate) const LOSS: &str = "train.loss";

/// The paper's single setting, which it does not publish: each optimizer at its usual default
/// learning rate, AdamW at PyTorch's 1e-3 and Muon at Jordan's 0.02.
pub(crate) const PAPER_LR: &[(&str, f64)] = &[("adamw", 1e-3), ("muon", 0.02)];

/// What Tveit et al. report: t = 5.0175 for AdamW against Muon (and p ≈ 6.33e-8).
const PAPER_T: f64 = 5.0175;
const PAPER_P: f64 = 6.33e-8;

// Columns of the study's summaries.
pub(crate) const RUNS: &str = "runs";
pub(crate) const GROKKED: &str = "grokked";
pub(crate) const MEAN: &str = "mean_grok_epoch";
pub(crate) const VARIANCE: &str = "variance_grok_epoch";
pub(crate) const MEDIAN: &str = "median_grok_epoch";
pub(crate) const Q25: &str = "q25_grok_epoch";
pub(crate) const Q75: &str = "q75_grok_epoch";
pub(crate) const MIN: &str = "min_grok_epoch";
pub(crate) const MAX: &str = "max_grok_epoch";
/// The median over all runs, a run that never grokked counting as infinitely late.
pub(crate) const MEDIAN_ALL: &str = "median_all_runs";

/// Every file the study may write.
pub(crate) const OUTPUT_FILES: &[&str] = &[
    "study.md",
    "study_paper.csv",
    "study_tuned.csv",
    "study_tuned_lr.csv",
    "study_tasks.csv",
    "study_losses.csv",
    "study_box_optimizers.png",
    "study_box_optimizers.svg",
    "study_box_tasks.png",
    "study_box_tasks.svg",
];

/// Per group of `by`: the runs, how many grokked, and over the grokked runs' epochs the mean,
/// the variance (denominator n − 1), the quartiles (linear interpolation, numpy's default), min
/// and max; and [`MEDIAN_ALL`].
pub(crate) fn epoch_summary(runs: LazyFrame, by: &[&str]) -> LazyFrame {
    let epochs = || col(GROK_EPOCH).cast(DataType::Float64);
    runs.group_by(by.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .agg([
            len().cast(DataType::Int64).alias(RUNS),
            epochs().count().cast(DataType::Int64).alias(GROKKED),
            epochs().mean().alias(MEAN),
            epochs().var(1).alias(VARIANCE),
            epochs().median().alias(MEDIAN),
            epochs().quantile(lit(0.25), QuantileMethod::Linear).alias(Q25),
            epochs().quantile(lit(0.75), QuantileMethod::Linear).alias(Q75),
            epochs().min().alias(MIN),
            epochs().max().alias(MAX),
            epochs().fill_null(lit(f64::INFINITY)).median().alias(MEDIAN_ALL),
        ])
        .sort(by.iter().map(|c| c.to_string()).collect::<Vec<_>>(), SortMultipleOptions::default())
}

/// The runs of each optimizer at its [`PAPER_LR`] (other optimizers have no paper setting).
pub(crate) fn at_paper_setting(runs: LazyFrame) -> LazyFrame {
    let chosen = PAPER_LR.iter().fold(lit(false), |any, &(name, lr)| {
        let near = col(LR).gt_eq(lit(lr * (1.0 - 1e-9))).and(col(LR).lt_eq(lit(lr * (1.0 + 1e-9))));
        any.or(col(OPTIMIZER).eq(lit(name)).and(near))
    });
    runs.filter(chosen)
}

/// The learning rate each optimizer is tuned to for each task: the most runs grokked, then the
/// lowest mean grok epoch, then the smallest learning rate.
pub(crate) fn tuned_learning_rates(runs: LazyFrame) -> LazyFrame {
    epoch_summary(runs, &[OPTIMIZER, TASK_OP, LR])
        .sort(
            [GROKKED, MEAN, LR],
            SortMultipleOptions::default().with_order_descending_multi([true, false, false]).with_nulls_last(true),
        )
        .group_by_stable([col(OPTIMIZER), col(TASK_OP)])
        .agg([col(LR).first(), col(RUNS).first(), col(GROKKED).first(), col(MEAN).first()])
        .sort([OPTIMIZER, TASK_OP], SortMultipleOptions::default())
}

/// The runs at each optimizer's tuned learning rate for their task (`chosen`: the rows of
/// [`tuned_learning_rates`]).
fn at_tuned_setting(runs: LazyFrame, chosen: LazyFrame) -> LazyFrame {
    let chosen = chosen.select([col(OPTIMIZER), col(TASK_OP), col(LR)]);
    runs.join(
        chosen,
        [col(OPTIMIZER), col(TASK_OP), col(LR)],
        [col(OPTIMIZER), col(TASK_OP), col(LR)],
        JoinArgs::new(JoinType::Inner),
    )
}

/// One row of an [`epoch_summary`], read out.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// The group's values of the summary's `by` columns, as table cells.
    pub keys: Vec<String>,
    pub runs: usize,
    /// Over the grokked runs: their count, mean and variance.
    pub sample: SampleSummary,
    median: Option<f64>,
    q25: Option<f64>,
    q75: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    median_all: f64,
}

pub(crate) fn rows(summary: &DataFrame, by: &[&str]) -> Result<Vec<Row>> {
    let number = |name: &str, i: usize| -> Result<Option<f64>> { Ok(summary.column(name)?.get(i)?.extract::<f64>()) };
    let mut out = Vec::with_capacity(summary.height());
    for i in 0..summary.height() {
        let keys = by
            .iter()
            .map(|c| Ok(crate::tables::format_value(&summary.column(c)?.get(i)?)))
            .collect::<Result<Vec<_>>>()?;
        out.push(Row {
            keys,
            runs: number(RUNS, i)?.unwrap_or(0.0) as usize,
            sample: SampleSummary {
                n: number(GROKKED, i)?.unwrap_or(0.0) as usize,
                mean: number(MEAN, i)?.unwrap_or(f64::NAN),
                variance: number(VARIANCE, i)?.unwrap_or(f64::NAN),
            },
            median: number(MEDIAN, i)?,
            q25: number(Q25, i)?,
            q75: number(Q75, i)?,
            min: number(MIN, i)?,
            max: number(MAX, i)?,
            median_all: number(MEDIAN_ALL, i)?.unwrap_or(f64::INFINITY),
        });
    }
    Ok(out)
}

fn epochs_cell(row: &Row) -> String {
    match (row.median, row.q25, row.q75) {
        (Some(m), Some(a), Some(b)) => {
            format!("{} ({}–{}), {}/{}", format_number(m), format_number(a), format_number(b), row.sample.n, row.runs)
        }
        _ => format!("never, 0/{}", row.runs),
    }
}

fn test_cells(test: Option<WelchTest>) -> [String; 3] {
    match test {
        Some(w) => [format!("{:.4}", w.t), format!("{:.2}", w.df), format!("{:.3e}", w.p_two_sided)],
        None => ["n/a".into(), "".into(), "".into()],
    }
}

/// The pooled comparison of the optimizers in `summary` (one row per optimizer): a Markdown
/// table with each optimizer's runs, grokked runs, mean, median and IQR, and Welch's and
/// Student's t of baseline − optimizer (positive: the optimizer groks earlier, as the paper
/// reports Muon against AdamW).
fn pooled_table(rows: &[Row]) -> String {
    let names: Vec<String> = rows.iter().map(|r| r.keys[0].clone()).collect();
    let baseline = baseline_optimizer(&names);
    let base = rows.iter().find(|r| r.keys[0] == baseline).map(|r| r.sample);
    let header: Vec<String> = [
        "optimizer",
        "grokked / runs",
        "mean grok epoch",
        "std",
        "median (IQR)",
        &format!("Welch t ({baseline} − it)"),
        "Welch df",
        "Welch p",
        &format!("Student t ({baseline} − it)"),
        "Student df",
        "Student p",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (welch, student) = match (base, r.keys[0] == baseline) {
                (Some(b), false) => {
                    (test_cells(welch_t_test(&b, &r.sample)), test_cells(student_t_test(&b, &r.sample)))
                }
                _ => (["baseline".into(), "".into(), "".into()], ["baseline".into(), "".into(), "".into()]),
            };
            let mut row = vec![
                r.keys[0].clone(),
                format!("{}/{}", r.sample.n, r.runs),
                if r.sample.n > 0 { format_number(r.sample.mean) } else { "—".into() },
                if r.sample.n > 1 { format_number(r.sample.variance.sqrt()) } else { "—".into() },
                match (r.median, r.q25, r.q75) {
                    (Some(m), Some(a), Some(b)) => {
                        format!("{} ({}–{})", format_number(m), format_number(a), format_number(b))
                    }
                    _ => "never".into(),
                },
            ];
            row.extend(welch);
            row.extend(student);
            row
        })
        .collect();
    markdown_from_cells(&header, &cells)
}

/// Per value of `group` (one summary row per group × optimizer): each optimizer's median
/// (IQR) and grokked runs, the winner (lowest median over all runs, never-grokked runs counting
/// as infinitely late) and its lead over the next optimizer.
fn winners_table(rows: &[Row], optimizers: &[String], group_title: &str) -> String {
    let mut header = vec![group_title.to_string()];
    header.extend(optimizers.iter().map(|o| format!("{o}: median (IQR), grokked")));
    header.extend(["winner".to_string(), "lead (epochs, medians over all runs)".to_string()]);
    let mut groups: Vec<&String> = rows.iter().map(|r| &r.keys[0]).collect();
    groups.dedup();
    let cells = groups
        .into_iter()
        .map(|group| {
            let of = |o: &String| rows.iter().find(|r| &r.keys[0] == group && &r.keys[1] == o);
            let mut row = vec![group.clone()];
            row.extend(optimizers.iter().map(|o| of(o).map_or_else(|| "—".to_string(), epochs_cell)));
            let mut ranked: Vec<(&String, f64)> =
                optimizers.iter().filter_map(|o| of(o).map(|r| (o, r.median_all))).collect();
            ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (winner, lead) = match ranked.as_slice() {
                [(best, b), (_, next), ..] if b.is_finite() && b < next => (
                    best.to_string(),
                    if next.is_finite() { format_number(next - b) } else { "the other never".into() },
                ),
                [(_, b), (_, next), ..] if b.is_finite() && b == next => ("tie".into(), "0".into()),
                _ => ("—".into(), "—".into()),
            };
            row.extend([winner, lead]);
            row
        })
        .collect::<Vec<_>>();
    markdown_from_cells(&header, &cells)
}

/// The paper-setting and tuned summaries in one table, told apart by a `setting` column.
fn paper_and_tuned(paper: &DataFrame, tuned: &DataFrame) -> Result<DataFrame> {
    let labelled = |frame: &DataFrame, name: &str| -> Result<DataFrame> {
        let mut frame = frame.clone();
        frame.with_column(Column::new("setting".into(), vec![name; frame.height()]))?;
        Ok(frame)
    };
    Ok(labelled(paper, "paper")?.vstack(&labelled(tuned, "tuned")?)?)
}

fn boxes(rows: &[Row], label: impl Fn(&Row) -> String) -> Vec<BoxStats> {
    rows.iter()
        .map(|r| BoxStats {
            label: label(r),
            grokked: r.sample.n,
            runs: r.runs,
            quartiles: match (r.min, r.q25, r.median, r.q75, r.max) {
                (Some(lo), Some(a), Some(m), Some(b), Some(hi)) => Some([lo, a, m, b, hi]),
                _ => None,
            },
        })
        .collect()
}

/// The optimizers of `runs` (per-run outcomes read from `runs_file`), sorted: the study compares
/// them, so fewer than two is an error.
pub(crate) fn optimizers(runs: &DataFrame, runs_file: &Path) -> Result<Vec<String>> {
    let optimizers = crate::settings::distinct_strings(runs, OPTIMIZER)?;
    if optimizers.len() < 2 {
        bail!(
            "--study compares optimizers, but the finished runs of {} used {} (`{OPTIMIZER}`): \
             analyze without --study, or add an optimizer to the sweep",
            runs_file.display(),
            match optimizers.as_slice() {
                [only] => format!("only {only}"),
                _ => "none".to_string(),
            }
        );
    }
    Ok(optimizers)
}

/// The study of `runs` (per-run outcomes under `grok`) of the [`optimizers`] into `stage`.
pub(crate) fn write(stage: &mut Staging, runs: &DataFrame, optimizers: &[String], grok: GrokCriterion) -> Result<()> {
    let collect =
        |frame: LazyFrame, what: &str| Context::with_context(frame.collect(), || format!("the study: {what}"));
    // The runs of each comparison, selected once; every table below summarizes one of them.
    let tuned_lr = collect(tuned_learning_rates(runs.clone().lazy()), "the tuned learning rates")?;
    let paper = collect(at_paper_setting(runs.clone().lazy()), "the paper's setting")?;
    let tuned = collect(at_tuned_setting(runs.clone().lazy(), tuned_lr.clone().lazy()), "the tuned setting")?;
    let summary = |runs: &DataFrame, by: &[&str], what: &str| collect(epoch_summary(runs.clone().lazy(), by), what);

    let paper_by_optimizer = summary(&paper, &[OPTIMIZER], "the paper's comparison")?;
    let tuned_by_optimizer = summary(&tuned, &[OPTIMIZER], "the tuned comparison")?;
    let paper_tasks = summary(&paper, &[TASK_OP, OPTIMIZER], "per task")?;
    let tuned_tasks = summary(&tuned, &[TASK_OP, OPTIMIZER], "per task, tuned")?;
    // Outputs of grokstack before train.loss existed have no such column: one output function.
    let losses = if runs.column(LOSS).is_ok() {
        Some((
            summary(&paper, &[LOSS, OPTIMIZER], "per output function")?,
            summary(&tuned, &[LOSS, OPTIMIZER], "per output function, tuned")?,
        ))
    } else {
        None
    };

    let paper_rows = rows(&paper_by_optimizer, &[OPTIMIZER])?;
    let paper_lrs: Vec<String> = PAPER_LR.iter().map(|(o, lr)| format!("{o} lr {}", format_number(*lr))).collect();
    let mut md = format!(
        "# Optimizer study (Tveit et al. 2025, made fairer)\n\n\
         Grok epoch: {meaning}. Every table counts the runs that never grokked (k/n); means, \
         medians, IQRs and the t-tests are over the runs that grokked, as in the paper. \
         Welch's and Student's t are for baseline − optimizer: positive t means the optimizer \
         groks earlier.\n\n",
        meaning = grok.meaning()
    );
    md.push_str(&format!(
        "## The paper's comparison\n\nEach optimizer at its usual default learning rate ({}; the paper \
         publishes none), pooled over tasks, output functions and seeds.\n\n",
        paper_lrs.join(", ")
    ));
    if paper_rows.is_empty() {
        md.push_str("This sweep has no runs at those learning rates.\n\n");
    } else {
        md.push_str(&pooled_table(&paper_rows));
    }
    let p_at_any_df = student_t::two_sided_p(PAPER_T, 1e12);
    md.push_str(&format!(
        "\nThe paper reports t = {PAPER_T} with p ≈ {PAPER_P:e}. These disagree: for |t| = {PAPER_T} the \
         two-sided p is at least {p_at_any_df:.2e} at any degrees of freedom (its normal limit; fewer degrees \
         of freedom only raise it). Both t and p above are computed from this sweep's runs.\n\n"
    ));

    md.push_str(
        "## The tuned comparison\n\nEach optimizer at its best learning rate for each task (most runs \
         grokked, then the lowest mean grok epoch), pooled as above.\n\n",
    );
    md.push_str(&pooled_table(&rows(&tuned_by_optimizer, &[OPTIMIZER])?));
    md.push_str("\nThe learning rate chosen per optimizer and task:\n\n");
    md.push_str(&crate::tables::markdown_table(&tuned_lr)?);

    let mut per_group = vec![
        ("Per task, at the paper's setting", &paper_tasks, TASK_OP, "task"),
        ("Per task, tuned", &tuned_tasks, TASK_OP, "task"),
    ];
    if let Some((paper, tuned)) = &losses {
        per_group.insert(1, ("Per output function, at the paper's setting", paper, LOSS, "output function"));
        per_group.push(("Per output function, tuned", tuned, LOSS, "output function"));
    }
    for (title, frame, group, group_title) in per_group {
        md.push_str(&format!("\n## {title}\n\n"));
        md.push_str(&winners_table(&rows(frame, &[group, OPTIMIZER])?, optimizers, group_title));
    }
    md.push_str(
        "\n## Plots\n\n`study_box_optimizers.png`/`.svg`: grok epochs per optimizer at the paper's setting \
         (the paper's Fig. 4). `study_box_tasks.png`/`.svg`: per task × optimizer at the paper's setting. \
         Boxes span the quartiles, whiskers the extremes, the line is the median (its value printed above), \
         k/n under each box counts the runs that grokked.\n",
    );

    stage.write_markdown("study.md", &md)?;
    stage.write_csv(
        "study_paper.csv",
        "per optimizer at the paper's learning rate: runs, runs grokked and the grok-epoch statistics of those \
         that did",
        &paper_by_optimizer,
    )?;
    stage.write_csv(
        "study_tuned.csv",
        "per optimizer at its tuned learning rate for each task: runs, runs grokked and their grok-epoch statistics",
        &tuned_by_optimizer,
    )?;
    stage.write_csv(
        "study_tuned_lr.csv",
        "the learning rate each optimizer is tuned to per task, with its runs, runs grokked and mean grok epoch",
        &tuned_lr,
    )?;
    stage.write_csv(
        "study_tasks.csv",
        "per task × optimizer, at the paper's (setting = paper) and the tuned (tuned) learning rates: grok-epoch \
         statistics",
        &paper_and_tuned(&paper_tasks, &tuned_tasks)?,
    )?;
    if let Some((paper, tuned)) = &losses {
        stage.write_csv(
            "study_losses.csv",
            "per output function × optimizer, at the paper's and the tuned learning rates: grok-epoch statistics",
            &paper_and_tuned(paper, tuned)?,
        )?;
    }

    let title = |what: &str| format!("Grok epochs {what} at the paper's setting ({})", grok.meaning());
    box_plot::draw(stage, "study_box_optimizers", &title("per optimizer"), &boxes(&paper_rows, |r| r.keys[0].clone()))?;
    let task_rows = rows(&paper_tasks, &[TASK_OP, OPTIMIZER])?;
    box_plot::draw(
        stage,
        "study_box_tasks",
        &title("per task × optimizer"),
        &boxes(&task_rows, |r| format!("{} {}", r.keys[0], r.keys[1])),
    )?;
    Ok(())
}
