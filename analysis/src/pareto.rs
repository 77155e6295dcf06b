//! The Pareto front of the qualified settings over (median grok epoch, median
//! Lipschitz bound at the grok epoch), both minimized, per task.
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

/// The front's settings, sorted by task and then along the front: `task.op`,
/// `setting_id`, both coordinates, then the `extra` columns (the sweep's axes).
pub(crate) fn pareto_front(settings: LazyFrame, extra: &[String]) -> LazyFrame {
    let x = || col(MEDIAN_GROK_EPOCH);
    let y = || col(MEDIAN_LIPSCHITZ);
    let candidates = settings.filter(col(QUALIFIED).and(x().is_not_null()).and(y().is_not_null()));
    let rivals = candidates
        .clone()
        .select([col(TASK_OP), x().alias(RIVAL_X), y().alias(RIVAL_Y)]);

    // Every pair within a task; a few hundred settings make this tiny.
    let dominates = col(RIVAL_X)
        .lt_eq(x())
        .and(col(RIVAL_Y).lt_eq(y()))
        .and(col(RIVAL_X).lt(x()).or(col(RIVAL_Y).lt(y())));
    let dominated = candidates
        .clone()
        .select([col(SETTING_ID), col(TASK_OP), x(), y()])
        .join(
            rivals,
            [col(TASK_OP)],
            [col(TASK_OP)],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by([col(SETTING_ID)])
        .agg([dominates.any(true).alias(DOMINATED)]);

    let extra: Vec<&str> = extra
        .iter()
        .map(String::as_str)
        .filter(|c| *c != TASK_OP)
        .collect();
    candidates
        .join(
            dominated,
            [col(SETTING_ID)],
            [col(SETTING_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(col(DOMINATED).not())
        .select([
            col(TASK_OP),
            col(SETTING_ID),
            x(),
            y(),
            cols(extra).as_expr(),
        ])
        .sort(
            [TASK_OP, MEDIAN_GROK_EPOCH, MEDIAN_LIPSCHITZ, SETTING_ID],
            SortMultipleOptions::default(),
        )
}
