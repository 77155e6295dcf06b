//! The optimizer comparison as Tveit et al. (2025) report it: mean grok epoch
//! per optimizer over all tasks and seeds, and Welch's t-test against the
//! baseline optimizer.

use anyhow::{Context, Result};
use polars::prelude::LazyFrame;

use crate::best::baseline_optimizer;
use crate::columns::OPTIMIZER;
use crate::grok_rule::GrokCriterion;
use crate::study;
use crate::tables::markdown_from_cells;
use crate::welch::{welch_t_test, SampleSummary};

/// ttest.md, or None when the sweep ran a single optimizer.
pub(crate) fn compare_optimizers(runs: LazyFrame, grok: GrokCriterion) -> Result<Option<String>> {
    let samples =
        study::epoch_summary(runs, &[OPTIMIZER]).collect().context("summarising grok epochs per optimizer")?;
    if samples.height() < 2 {
        return Ok(None);
    }
    let summaries: Vec<(String, usize, SampleSummary)> = study::rows(&samples, &[OPTIMIZER])?
        .into_iter()
        .map(|row| (row.keys[0].clone(), row.runs, row.sample))
        .collect();
    let optimizers: Vec<String> = summaries.iter().map(|(name, _, _)| name.clone()).collect();
    let baseline = baseline_optimizer(&optimizers);
    let baseline_summary = summaries
        .iter()
        .find(|(name, _, _)| *name == baseline)
        .map(|(_, _, s)| *s)
        .context("the baseline optimizer has no runs")?;

    let header: Vec<String> = vec![
        "optimizer".into(),
        "grokked runs".into(),
        "runs".into(),
        "mean grok epoch".into(),
        "std".into(),
        format!("t vs {baseline}"),
        "df".into(),
        "p (two-sided)".into(),
    ];
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|(name, runs, s)| {
            let test = (*name != baseline).then(|| welch_t_test(s, &baseline_summary));
            let (t, df, p) = match test {
                None => ("baseline".to_string(), "".to_string(), "".to_string()),
                Some(None) => ("n/a (needs 2+ grokked runs with spread)".to_string(), "".to_string(), "".to_string()),
                Some(Some(w)) => (format!("{:.4}", w.t), format!("{:.2}", w.df), format!("{:.3e}", w.p_two_sided)),
            };
            vec![
                name.clone(),
                s.n.to_string(),
                runs.to_string(),
                if s.n > 0 { format!("{:.2}", s.mean) } else { "—".to_string() },
                if s.n > 1 { format!("{:.2}", s.variance.sqrt()) } else { "—".to_string() },
                t,
                df,
                p,
            ]
        })
        .collect();

    Ok(Some(format!(
        "# Optimizer comparison (Welch's t-test)\n\n\
         Samples: the epoch ({meaning}) of every run that \
         grokked, pooled over all tasks, settings and seeds of each optimizer; runs that never \
         grokked are left out, as in Tveit et al. (2025). t is Welch's statistic for \
         (optimizer − {baseline}) with Welch–Satterthwaite degrees of freedom: negative t means \
         the optimizer groks earlier than {baseline}.\n\n{table}",
        meaning = grok.meaning(),
        table = markdown_from_cells(&header, &rows),
    )))
}
