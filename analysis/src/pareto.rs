//! The Pareto fronts of the qualified settings over (median grok epoch, median
//! Lipschitz bound at the grok epoch), both minimized, per task: the front over
//! every setting (`overall`) and the front of each optimizer family.
//!
//! Tie rule: a setting is dominated when another setting of the same task is
//! at most as large on both coordinates and strictly smaller on at least one.
//! Settings with equal coordinates therefore never dominate each other: all of
//! them are on the front, or none is.

use polars::prelude::*;

use crate::columns::*;

const RIVAL_X: &str = "rival_grok_epoch";
const RIVAL_Y: &str = "rival_lipschitz";
const DOMINATED: &str = "dominated";

/// The overall front, then each family's front (families in name order): `front`
/// (`overall` or the family), `task.op`, `family`, `setting_id`, both coordinates,
/// then the `extra` columns (the sweep's axes); each front sorted by task and then
/// along the front.
pub(crate) fn pareto_fronts(settings: LazyFrame, extra: &[String]) -> Result<LazyFrame, PolarsError> {
    let overall = pareto_front(settings.clone(), extra, &[TASK_OP], lit(OVERALL_FRONT));
    let families = pareto_front(settings, extra, &[TASK_OP, FAMILY], col(FAMILY))
        .sort([FAMILY, TASK_OP, MEDIAN_GROK_EPOCH, MEDIAN_LIPSCHITZ, SETTING_ID], SortMultipleOptions::default());
    concat([overall, families], UnionArgs::default())
}

/// The front within each group of settings equal on `within` (the task, and the
/// family for a family's front), sorted by task and then along the front, named
/// `front` in the first column.
fn pareto_front(settings: LazyFrame, extra: &[String], within: &[&str], front: Expr) -> LazyFrame {
    let x = || col(MEDIAN_GROK_EPOCH);
    let y = || col(MEDIAN_LIPSCHITZ);
    let candidates = settings.filter(col(QUALIFIED).and(x().is_not_null()).and(y().is_not_null()));
    let keys = || within.iter().map(|k| col(*k)).collect::<Vec<_>>();
    let mut rival_columns = keys();
    rival_columns.extend([x().alias(RIVAL_X), y().alias(RIVAL_Y)]);
    let rivals = candidates.clone().select(rival_columns);

    // Every pair within a group; a few hundred settings make this tiny.
    let dominates =
        col(RIVAL_X).lt_eq(x()).and(col(RIVAL_Y).lt_eq(y())).and(col(RIVAL_X).lt(x()).or(col(RIVAL_Y).lt(y())));
    let mut own = vec![col(SETTING_ID), x(), y()];
    own.extend(keys());
    let dominated = candidates
        .clone()
        .select(own)
        .join(rivals, keys(), keys(), JoinArgs::new(JoinType::Inner))
        .group_by([col(SETTING_ID)])
        .agg([dominates.any(true).alias(DOMINATED)]);

    let extra: Vec<&str> = extra.iter().map(String::as_str).filter(|c| *c != TASK_OP && *c != FAMILY).collect();
    candidates
        .join(dominated, [col(SETTING_ID)], [col(SETTING_ID)], JoinArgs::new(JoinType::Inner))
        .filter(col(DOMINATED).not())
        .select([front.alias(FRONT), col(TASK_OP), col(FAMILY), col(SETTING_ID), x(), y(), cols(extra).as_expr()])
        .sort([TASK_OP, MEDIAN_GROK_EPOCH, MEDIAN_LIPSCHITZ, SETTING_ID], SortMultipleOptions::default())
}
