//! Per run: the grok epoch at the analysis threshold, recomputed from the
//! logged metrics, and the Lipschitz bound at that epoch.

use polars::prelude::*;

use crate::columns::*;

/// One row per finished run: its configuration from runs.parquet, `grok_epoch`
/// (first logged epoch with test accuracy >= `threshold`, null if never),
/// `lipschitz_at_grok` (null if never grokked or the bound was off) and
/// `diverged`.
///
/// Runs listed in runs.parquet but without any metric rows are left out: they
/// count as missing, not as runs that failed to grok.
pub(crate) fn run_outcomes(
    runs: LazyFrame,
    metrics: LazyFrame,
    threshold: f64,
    metrics_have_lipschitz: bool,
) -> LazyFrame {
    // The upper bound also rejects NaN, which polars orders above every number.
    let reached = col(TEST_ACC)
        .gt_eq(lit(threshold))
        .and(col(TEST_ACC).lt_eq(lit(1.0)));
    let grok_epoch = col(EPOCH).filter(reached.clone()).min();
    let lipschitz = if metrics_have_lipschitz {
        col(LIPSCHITZ_BOUND).cast(DataType::Float64)
    } else {
        lit(NULL).cast(DataType::Float64)
    };
    let at_grok = reached.and(col(EPOCH).eq(grok_epoch.clone()));
    let outcomes = metrics.group_by([col(RUN_ID)]).agg([
        grok_epoch.alias(GROK_EPOCH),
        lipschitz.filter(at_grok).first().alias(LIPSCHITZ_AT_GROK),
    ]);

    // The trainer's own grok_epoch/solve_epoch/lipschitz_at_grok are at its
    // fixed thresholds; they are replaced, not kept beside the recomputed ones.
    let stale = [GROK_EPOCH, "solve_epoch", LIPSCHITZ_AT_GROK];
    let config = all().exclude_cols(stale).as_expr();
    runs.select([config])
        .join(
            outcomes,
            [col(RUN_ID)],
            [col(RUN_ID)],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column(col(STATUS).eq(lit(STATUS_DIVERGED)).alias(DIVERGED))
        .sort([RUN_ID], SortMultipleOptions::default())
}
