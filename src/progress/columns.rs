//! The metric columns of the progress measures (docs/OUTPUT.md), null in the rows of runs
//! that have them off.

use super::rows::ProgressRow;
use crate::metrics::MetricRow;
use polars::prelude::*;

/// `restricted_loss`, `excluded_loss` (f64), `key_frequencies` (list of i64, strongest
/// first), `embedding_spectrum` (list of f64, in order of k), `embedding_gini`,
/// `embedding_ipr` (f64).
pub fn columns(rows: &[MetricRow]) -> PolarsResult<Vec<Column>> {
    let float = |name: &str, f: fn(&ProgressRow) -> f64| {
        Column::new(name.into(), rows.iter().map(|r| r.progress.as_ref().map(f)).collect::<Vec<Option<f64>>>())
    };
    let keys: ListChunked = rows
        .iter()
        .map(|r| {
            r.progress.as_ref().map(|p| {
                Series::new(PlSmallStr::EMPTY, p.key_frequencies.iter().map(|&k| k as i64).collect::<Vec<i64>>())
            })
        })
        .collect();
    let spectrum: ListChunked = rows
        .iter()
        .map(|r| r.progress.as_ref().map(|p| Series::new(PlSmallStr::EMPTY, p.embedding_spectrum.clone())))
        .collect();
    Ok(vec![
        float("restricted_loss", |p| p.restricted_loss),
        float("excluded_loss", |p| p.excluded_loss),
        list_column("key_frequencies", keys, DataType::Int64)?,
        list_column("embedding_spectrum", spectrum, DataType::Float64)?,
        float("embedding_gini", |p| p.embedding_gini),
        float("embedding_ipr", |p| p.embedding_ipr),
    ])
}

/// A list column named `name` whose lists hold `inner` values, also when every row is null.
fn list_column(name: &str, values: ListChunked, inner: DataType) -> PolarsResult<Column> {
    // A part whose rows are all null would otherwise have lists of nulls.
    Ok(values.into_series().cast(&DataType::List(Box::new(inner)))?.with_name(name.into()).into_column())
}
