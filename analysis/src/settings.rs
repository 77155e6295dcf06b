//! Per setting (runs equal but for the seed): how many seeds grokked, how
//! fast, and whether the setting qualifies.

use anyhow::{Context, Result};
use polars::prelude::{
    col, cols, len, lit, DataFrame, DataType, Expr, JoinArgs, JoinType, LazyFrame, QuantileMethod, SortMultipleOptions,
};

use crate::columns::*;

/// One row per setting, sorted by `setting_id`: its configuration columns, then
/// `seeds` (that trained), `grokked_seeds`, `grokked_fraction`, `diverged_seeds`,
/// `skipped_seeds` (never trained, seed waves) and `partial` (some were), the
/// median and quartiles (linear interpolation, as numpy's default) of the grok
/// epochs of the seeds that grokked, their median Lipschitz bound at the grok
/// epoch, and `qualified`: every seed trained and grokked within the epoch budget.
///
/// `runs` are the trained runs ([`crate::per_run::run_outcomes`]), `listed` every
/// row of runs.parquet, where the skipped runs are.
pub(crate) fn setting_stats(runs: LazyFrame, listed: LazyFrame, config: &[String]) -> LazyFrame {
    let grok = || col(GROK_EPOCH).cast(DataType::Float64);
    let mut aggregates: Vec<Expr> = config.iter().map(|c| col(c.as_str()).first()).collect();
    aggregates.extend([
        len().cast(DataType::Int64).alias(SEEDS),
        // count() skips nulls, i.e. the seeds that never grokked.
        col(GROK_EPOCH).count().cast(DataType::Int64).alias(GROKKED_SEEDS),
        col(DIVERGED).cast(DataType::Int64).sum().alias(DIVERGED_SEEDS),
        grok().median().alias(MEDIAN_GROK_EPOCH),
        grok().quantile(lit(0.25), QuantileMethod::Linear).alias(Q25_GROK_EPOCH),
        grok().quantile(lit(0.75), QuantileMethod::Linear).alias(Q75_GROK_EPOCH),
        col(LIPSCHITZ_AT_GROK).median().alias(MEDIAN_LIPSCHITZ),
    ]);
    let skipped = listed
        .filter(col(STATUS).eq(lit(STATUS_SKIPPED)))
        .group_by([col(SETTING_ID)])
        .agg([len().cast(DataType::Int64).alias(SKIPPED_SEEDS)]);
    runs.group_by([col(SETTING_ID)])
        .agg(aggregates)
        .join(skipped, [col(SETTING_ID)], [col(SETTING_ID)], JoinArgs::new(JoinType::Left))
        .with_columns([
            (col(GROKKED_SEEDS).cast(DataType::Float64) / col(SEEDS).cast(DataType::Float64)).alias(GROKKED_FRACTION),
            col(SKIPPED_SEEDS).fill_null(lit(0i64)).alias(SKIPPED_SEEDS),
            col(SKIPPED_SEEDS).is_not_null().alias(PARTIAL),
        ])
        .with_column(col(GROKKED_SEEDS).eq(col(SEEDS)).and(col(PARTIAL).not()).alias(QUALIFIED))
        .select([
            col(SETTING_ID),
            cols(config.iter().map(String::as_str)).as_expr(),
            col(SEEDS),
            col(GROKKED_SEEDS),
            col(GROKKED_FRACTION),
            col(DIVERGED_SEEDS),
            col(SKIPPED_SEEDS),
            col(PARTIAL),
            col(MEDIAN_GROK_EPOCH),
            col(Q25_GROK_EPOCH),
            col(Q75_GROK_EPOCH),
            col(MEDIAN_LIPSCHITZ),
            col(QUALIFIED),
        ])
        .sort([SETTING_ID], SortMultipleOptions::default())
}

/// The configuration columns that take more than one value across settings:
/// the axes of the sweep's grid.
pub(crate) fn varying_columns(settings: &DataFrame, config: &[String]) -> Result<Vec<String>> {
    let mut varying = Vec::new();
    for name in config {
        let distinct = settings
            .column(name)
            .and_then(|c| c.n_unique())
            .with_context(|| format!("counting the values of {name}"))?;
        if distinct > 1 {
            varying.push(name.clone());
        }
    }
    Ok(varying)
}

/// The distinct non-null values of a string column, sorted.
pub(crate) fn distinct_strings(frame: &DataFrame, name: &str) -> Result<Vec<String>> {
    let column = frame.column(name).with_context(|| format!("no column {name}"))?;
    let values = column.str().with_context(|| format!("{name} is not a string column"))?;
    let mut distinct: Vec<String> = values.iter().flatten().map(str::to_string).collect();
    distinct.sort();
    distinct.dedup();
    Ok(distinct)
}
