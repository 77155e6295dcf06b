//! Per setting (runs equal but for the seed): how many seeds grokked, how
//! fast, and whether the setting qualifies.

use anyhow::{Context, Result};
use polars::prelude::{
    col, cols, len, lit, DataFrame, DataType, Expr, LazyFrame, QuantileMethod, SortMultipleOptions,
};

use crate::columns::*;

/// One row per setting, sorted by `setting_id`: its configuration columns, then
/// `seeds`, `grokked_seeds`, `grokked_fraction`, `diverged_seeds`, the median
/// and quartiles (linear interpolation, as numpy's default) of the grok epochs
/// of the seeds that grokked, their median Lipschitz bound at the grok epoch,
/// and `qualified`: every seed grokked within the epoch budget.
pub(crate) fn setting_stats(runs: LazyFrame, config: &[String]) -> LazyFrame {
    let grok = || col(GROK_EPOCH).cast(DataType::Float64);
    let mut aggregates: Vec<Expr> = config.iter().map(|c| col(c.as_str()).first()).collect();
    aggregates.extend([
        len().cast(DataType::Int64).alias(SEEDS),
        // count() skips nulls, i.e. the seeds that never grokked.
        col(GROK_EPOCH)
            .count()
            .cast(DataType::Int64)
            .alias(GROKKED_SEEDS),
        col(DIVERGED)
            .cast(DataType::Int64)
            .sum()
            .alias(DIVERGED_SEEDS),
        grok().median().alias(MEDIAN_GROK_EPOCH),
        grok()
            .quantile(lit(0.25), QuantileMethod::Linear)
            .alias(Q25_GROK_EPOCH),
        grok()
            .quantile(lit(0.75), QuantileMethod::Linear)
            .alias(Q75_GROK_EPOCH),
        col(LIPSCHITZ_AT_GROK).median().alias(MEDIAN_LIPSCHITZ),
    ]);
    runs.group_by([col(SETTING_ID)])
        .agg(aggregates)
        .with_columns([
            (col(GROKKED_SEEDS).cast(DataType::Float64) / col(SEEDS).cast(DataType::Float64))
                .alias(GROKKED_FRACTION),
            col(GROKKED_SEEDS).eq(col(SEEDS)).alias(QUALIFIED),
        ])
        .select([
            col(SETTING_ID),
            cols(config.iter().map(String::as_str)).as_expr(),
            col(SEEDS),
            col(GROKKED_SEEDS),
            col(GROKKED_FRACTION),
            col(DIVERGED_SEEDS),
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
    let column = frame
        .column(name)
        .with_context(|| format!("no column {name}"))?;
    let values = column
        .str()
        .with_context(|| format!("{name} is not a string column"))?;
    let mut distinct: Vec<String> = values.iter().flatten().map(str::to_string).collect();
    distinct.sort();
    distinct.dedup();
    Ok(distinct)
}
