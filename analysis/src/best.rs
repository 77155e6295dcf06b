//! Best-setting tables: for each group (default: architecture) and optimizer,
//! the qualified setting with the lowest median grok epoch, and how far each
//! optimizer is from the baseline, in the layout of the blog's architecture
//! table (`143 (+19)`).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use polars::prelude::{col, lit, AnyValue, DataFrame, Expr, IntoLazy, JoinArgs, JoinType, SortMultipleOptions};

use crate::columns::*;
use crate::grok_rule::GrokCriterion;
use crate::settings::distinct_strings;
use crate::tables::{format_number, format_value, markdown_from_cells, markdown_table};

/// The optimizer the others are compared with, when the sweep has it.
const PREFERRED_BASELINE: &str = "adamw";
const EPOCH_BUDGET_MAX: &str = "epoch_budget";
const BASELINE_MEDIAN: &str = "baseline_median_grok_epoch";
const DIFFERENCE: &str = "difference_to_baseline";

pub(crate) struct BestTable {
    /// One row per group and optimizer; the setting columns are null where no
    /// setting of that optimizer qualified.
    pub frame: DataFrame,
    pub baseline: String,
    pub optimizers: Vec<String>,
}

/// `adamw` if the sweep ran it, else the alphabetically first optimizer.
pub(crate) fn baseline_optimizer(optimizers: &[String]) -> String {
    optimizers
        .iter()
        .find(|o| *o == PREFERRED_BASELINE)
        .or(optimizers.first())
        .map_or_else(|| PREFERRED_BASELINE.to_string(), String::clone)
}

pub(crate) fn best_settings(settings: &DataFrame, keys: &[String], varying: &[String]) -> Result<BestTable> {
    let optimizers = distinct_strings(settings, OPTIMIZER)?;
    let baseline = baseline_optimizer(&optimizers);

    let group: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).chain([col(OPTIMIZER)]).collect();
    let detail: Vec<&str> =
        varying.iter().map(String::as_str).filter(|c| *c != OPTIMIZER && !keys.iter().any(|k| k == c)).collect();
    let picked: Vec<&str> = [SETTING_ID, MEDIAN_GROK_EPOCH, Q25_GROK_EPOCH, Q75_GROK_EPOCH]
        .into_iter()
        .chain(detail.iter().copied())
        .collect();

    // Lowest median first; the lower setting_id breaks ties so the choice is deterministic.
    let order = SortMultipleOptions::default();
    let best_of =
        |name: &str| col(name).sort_by([col(MEDIAN_GROK_EPOCH), col(SETTING_ID)], order.clone()).first().alias(name);
    let lf = settings.clone().lazy();
    let budgets = lf.clone().group_by(group.clone()).agg([col(EPOCH_BUDGET).max().alias(EPOCH_BUDGET_MAX)]);
    let best =
        lf.filter(col(QUALIFIED)).group_by(group.clone()).agg(picked.iter().map(|c| best_of(c)).collect::<Vec<_>>());
    let with_best = budgets.join(best, group.clone(), group.clone(), JoinArgs::new(JoinType::Left));

    let key_exprs: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    let baseline_rows = with_best
        .clone()
        .filter(col(OPTIMIZER).eq(lit(baseline.as_str())))
        .select(key_exprs.iter().cloned().chain([col(MEDIAN_GROK_EPOCH).alias(BASELINE_MEDIAN)]).collect::<Vec<_>>());
    let mut sort_by: Vec<&str> = keys.iter().map(String::as_str).collect();
    sort_by.push(OPTIMIZER);
    let frame = with_best
        .join(baseline_rows, key_exprs.clone(), key_exprs, JoinArgs::new(JoinType::Left))
        .with_column((col(MEDIAN_GROK_EPOCH) - col(BASELINE_MEDIAN)).alias(DIFFERENCE))
        .select(
            group
                .into_iter()
                .chain(
                    [
                        SETTING_ID,
                        MEDIAN_GROK_EPOCH,
                        Q25_GROK_EPOCH,
                        Q75_GROK_EPOCH,
                        EPOCH_BUDGET_MAX,
                        BASELINE_MEDIAN,
                        DIFFERENCE,
                    ]
                    .map(col),
                )
                .chain(detail.iter().map(|c| col(*c)))
                .collect::<Vec<_>>(),
        )
        .sort(sort_by, SortMultipleOptions::default())
        .collect()
        .context("finding the best setting per optimizer")?;
    Ok(BestTable { frame, baseline, optimizers })
}

/// A best-table cell: the median grok epoch of the best qualified setting, or
/// the epoch budget it failed to beat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Outcome {
    Epoch(f64),
    NotWithin(f64),
}

/// The blog's cell format: the value, then in parentheses its difference to the
/// baseline (positive: slower than the baseline). A side with no qualified
/// setting only bounds the difference, and two such sides leave it unknown.
pub(crate) fn format_cell(value: Outcome, baseline: Option<Outcome>) -> String {
    let shown = match value {
        Outcome::Epoch(v) => format_number(v),
        Outcome::NotWithin(budget) => format!(">{}", format_number(budget)),
    };
    let Some(baseline) = baseline else {
        return shown;
    };
    let signed = |d: f64| {
        if d < 0.0 {
            format_number(d)
        } else {
            format!("+{}", format_number(d))
        }
    };
    let difference = match (value, baseline) {
        (Outcome::Epoch(v), Outcome::Epoch(b)) => signed(v - b),
        (Outcome::Epoch(v), Outcome::NotWithin(b)) => format!("<{}", signed(v - b)),
        (Outcome::NotWithin(v), Outcome::Epoch(b)) => format!(">{}", signed(v - b)),
        (Outcome::NotWithin(_), Outcome::NotWithin(_)) => "±?".to_string(),
    };
    format!("{shown} ({difference})")
}

pub(crate) fn best_markdown(best: &BestTable, keys: &[String], grok: GrokCriterion) -> Result<String> {
    let frame = &best.frame;
    let mut columns_in_order = vec![best.baseline.clone()];
    columns_in_order.extend(best.optimizers.iter().filter(|o| **o != best.baseline).cloned());

    // (group label, optimizer) -> outcome; the frame has a few rows per group.
    let mut outcomes: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    let mut groups: Vec<String> = Vec::new();
    let optimizer_col = frame.column(OPTIMIZER)?;
    let median_col = frame.column(MEDIAN_GROK_EPOCH)?;
    let budget_col = frame.column(EPOCH_BUDGET_MAX)?;
    for i in 0..frame.height() {
        let label = keys
            .iter()
            .map(|k| Ok(format!("{k}={}", format_value(&frame.column(k)?.get(i)?))))
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        if !groups.contains(&label) {
            groups.push(label.clone());
        }
        let outcome = match median_col.get(i)? {
            AnyValue::Null => Outcome::NotWithin(budget_col.get(i)?.extract::<f64>().unwrap_or(f64::NAN)),
            v => Outcome::Epoch(v.extract::<f64>().unwrap_or(f64::NAN)),
        };
        outcomes.insert((label, format_value(&optimizer_col.get(i)?)), outcome);
    }

    let mut header = vec![if keys.is_empty() { "group".to_string() } else { keys.join(", ") }];
    header.extend(columns_in_order.iter().cloned());
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let baseline = outcomes.get(&(g.clone(), best.baseline.clone())).copied();
            let mut row = vec![g.clone()];
            for optimizer in &columns_in_order {
                let cell = match outcomes.get(&(g.clone(), optimizer.clone())) {
                    None => "—".to_string(),
                    Some(v) if *optimizer == best.baseline => format_cell(*v, None),
                    Some(v) => format_cell(*v, baseline),
                };
                row.push(cell);
            }
            row
        })
        .collect();

    Ok(format!(
        "# Best setting per optimizer\n\n\
         Each cell is the median epoch ({meaning}) of the best qualified setting (every seed reached it), \
         i.e. the lowest median; ties go to the lower setting_id. Non-baseline cells add, in \
         parentheses, the difference to the baseline `{baseline}`: positive means slower than \
         `{baseline}`. `>N`: no setting qualified within the N-epoch budget, so the difference \
         is only bounded (`±?` when neither side qualified).\n\n{pivot}\n\
         ## The chosen settings\n\n{detail}",
        meaning = grok.meaning(),
        baseline = best.baseline,
        pivot = markdown_from_cells(&header, &rows),
        detail = markdown_table(frame)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::{format_cell, Outcome::*};

    #[test]
    fn cells_follow_the_blog_layout() {
        assert_eq!(format_cell(Epoch(143.0), Some(Epoch(124.0))), "143 (+19)");
        assert_eq!(format_cell(Epoch(111.0), Some(Epoch(198.0))), "111 (-87)");
        assert_eq!(format_cell(Epoch(120.5), Some(Epoch(120.5))), "120.5 (+0)");
        assert_eq!(format_cell(Epoch(124.0), None), "124");
        assert_eq!(format_cell(NotWithin(400.0), Some(Epoch(146.0))), ">400 (>+254)");
        assert_eq!(format_cell(Epoch(146.0), Some(NotWithin(400.0))), "146 (<-254)");
        assert_eq!(format_cell(NotWithin(400.0), Some(NotWithin(400.0))), ">400 (±?)");
    }
}
