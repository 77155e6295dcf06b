//! Rendering small result frames as CSV bytes and Markdown tables.

use anyhow::{Context, Result};
use polars::prelude::{AnyValue, CsvWriter, DataFrame, PolarsResult, SerWriter};

pub(crate) fn csv_bytes(frame: &DataFrame) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut frame = frame.clone();
    CsvWriter::new(&mut bytes).include_header(true).finish(&mut frame).context("formatting a table as CSV")?;
    Ok(bytes)
}

/// A GitHub-flavoured Markdown table of every column of `frame`.
pub(crate) fn markdown_table(frame: &DataFrame) -> Result<String> {
    let (header, rows) = cells(frame)?;
    Ok(markdown_from_cells(&header, &rows))
}

/// The column names and every row of `frame` as formatted cells ([`format_value`]).
pub(crate) fn cells(frame: &DataFrame) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let header: Vec<String> = frame.get_column_names().iter().map(|n| n.to_string()).collect();
    let mut rows = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        let row = frame
            .columns()
            .iter()
            .map(|c| c.get(i).map(|v| format_value(&v)))
            .collect::<PolarsResult<Vec<_>>>()
            .context("formatting the cells of a table")?;
        rows.push(row);
    }
    Ok((header, rows))
}

pub(crate) fn markdown_from_cells(header: &[String], rows: &[Vec<String>]) -> String {
    let line = |cells: &[String]| {
        format!("| {} |\n", cells.iter().map(|c| c.replace('|', "\\|")).collect::<Vec<_>>().join(" | "))
    };
    let mut out = line(header);
    out.push_str(&line(&vec!["---".to_string(); header.len()]));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// A cell as a reader wants it: no trailing `.0` on whole numbers, `—` for null.
pub(crate) fn format_value(value: &AnyValue) -> String {
    match value {
        AnyValue::Null => "—".to_string(),
        AnyValue::Float64(v) => format_number(*v),
        AnyValue::Float32(v) => format_number(f64::from(*v)),
        AnyValue::String(s) => s.to_string(),
        AnyValue::StringOwned(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// Whole numbers without decimals, tiny ones (eps = 1e-25) in exponent form,
/// everything else with at most four significant decimals.
pub(crate) fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    if v.abs() < 1e-3 {
        return format!("{v:e}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(1, 6) as usize;
    let text = format!("{v:.decimals$}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
