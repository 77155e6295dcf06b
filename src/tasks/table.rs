//! `task.table`: a task read from a CSV or Parquet file with integer columns `a`, `b` and
//! `label`, and optionally `split` (`train`/`test`, or a boolean: true for train).
//!
//! The operands are symbols [0, V) with V = the largest operand + 1, the labels classes
//! [0, C) with C = the largest label + 1. Without a `split` column each run draws its split
//! from its seed and `task.train_fraction`, exactly as for a built-in task, so a table
//! written from a built-in task in row-major order trains bit-identically to it.

use super::pair_rows::PairRows;
use super::MAX_P;
use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::{Column, CsvReadOptions, DataFrame, DataType, ParquetReader, SerReader};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The columns a table may have.
const COLUMNS: &[&str] = &["a", "b", "label", "split"];

/// A table file, read and checked.
#[derive(Debug)]
pub struct TableFile {
    /// The absolute path it was read from.
    pub path: PathBuf,
    /// `table:FILE` with the file's name: its runs' `task.op`, so that the analysis, which
    /// tells tasks apart by `task.op`, keeps two tables apart.
    pub name: String,
    /// SHA-256 of its bytes, hex: the resolved sweep records it so a resume refuses a changed file.
    pub sha256: String,
    /// V: operands are in [0, V).
    pub vocab: usize,
    /// C: labels are in [0, C).
    pub classes: usize,
    pub rows: Arc<PairRows>,
}

/// Two runs train the same table when they read the same bytes from the same path.
impl PartialEq for TableFile {
    fn eq(&self, other: &TableFile) -> bool {
        self.path == other.path && self.sha256 == other.sha256
    }
}

impl Eq for TableFile {}

impl std::hash::Hash for TableFile {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.path.hash(state);
        self.sha256.hash(state);
    }
}

/// Tables by absolute path: every setting and run of a sweep reads the file once.
fn memo() -> &'static Mutex<HashMap<PathBuf, Arc<TableFile>>> {
    static MEMO: OnceLock<Mutex<HashMap<PathBuf, Arc<TableFile>>>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(HashMap::new()))
}

impl TableFile {
    /// The table at the absolute `path`, read once per process. Errors name the file, and
    /// the row for a bad value.
    pub fn read_shared(path: &Path) -> Result<Arc<TableFile>> {
        let mut memo = memo().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(table) = memo.get(path) {
            return Ok(table.clone());
        }
        let table = Arc::new(TableFile::read(path).with_context(|| format!("table file {}", path.display()))?);
        memo.insert(path.to_path_buf(), table.clone());
        Ok(table)
    }

    fn read(path: &Path) -> Result<TableFile> {
        let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read it: {e}"))?;
        let sha256 = Sha256::digest(&bytes).iter().map(|byte| format!("{byte:02x}")).collect();
        let frame = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(None)
                .into_reader_with_file_handle(Cursor::new(bytes))
                .finish()
                .map_err(|e| anyhow!("not a readable CSV file: {e}"))?,
            Some("parquet" | "pq") => ParquetReader::new(Cursor::new(bytes))
                .finish()
                .map_err(|e| anyhow!("not a readable Parquet file: {e}"))?,
            _ => bail!("expected a .csv or .parquet file"),
        };
        let rows = rows(&frame)?;
        let vocab = rows.operands.iter().flatten().max().map_or(0, |&m| m as usize + 1);
        let classes = rows.labels.iter().max().map_or(0, |&m| m as usize + 1);
        let name = format!("table:{}", path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()));
        Ok(TableFile { path: path.to_path_buf(), name, sha256, vocab, classes, rows: Arc::new(rows) })
    }
}

/// The rows of a table's columns, every value checked.
fn rows(frame: &DataFrame) -> Result<PairRows> {
    if let Some(other) = frame.get_column_names().iter().find(|name| !COLUMNS.contains(&name.as_str())) {
        bail!("unknown column `{other}` (a table has the columns a, b, label and optionally split)");
    }
    if frame.height() < 2 {
        bail!("{} rows; a task needs at least 2 (one to train on, one to test)", frame.height());
    }
    let (a, b, labels) = (symbols(frame, "a")?, symbols(frame, "b")?, symbols(frame, "label")?);
    let mut first_row_of = HashMap::with_capacity(a.len());
    let mut operands = Vec::with_capacity(a.len());
    for (row, pair) in a.into_iter().zip(b).enumerate() {
        if let Some(first) = first_row_of.insert(pair, row) {
            bail!("{} repeats the operands (a, b) = ({}, {}) of {}", row_name(row), pair.0, pair.1, row_name(first));
        }
        operands.push([pair.0, pair.1]);
    }
    let train = match frame.column("split") {
        Ok(column) => Some(split(column)?),
        Err(_) => None,
    };
    Ok(PairRows::new(operands, labels, train))
}

/// A row as a user finds it: its 1-based number, and its line in a CSV file with a header.
fn row_name(row: usize) -> String {
    format!("row {} (line {} of a CSV file)", row + 1, row + 2)
}

/// Column `name` as symbols: integers in [0, MAX_P), none missing.
fn symbols(frame: &DataFrame, name: &str) -> Result<Vec<u32>> {
    let column = frame.column(name).map_err(|_| anyhow!("no column `{name}` (a table has a, b, label)"))?;
    if !column.dtype().is_integer() {
        bail!("column `{name}` holds {}, not integers", column.dtype());
    }
    let values = column.cast(&DataType::Int64)?;
    let values = values.i64()?;
    values
        .iter()
        .enumerate()
        .map(|(row, value)| match value {
            None => bail!("{}: `{name}` is missing", row_name(row)),
            Some(v) if v < 0 || v >= MAX_P as i64 => {
                bail!("{}: `{name}` = {v} is outside [0, {MAX_P})", row_name(row))
            }
            Some(v) => Ok(v as u32),
        })
        .collect()
}

/// The `split` column: `train`/`test` strings or booleans (true: train); both splits non-empty.
fn split(column: &Column) -> Result<Vec<bool>> {
    let train: Vec<bool> = match column.dtype() {
        DataType::Boolean => column
            .bool()?
            .iter()
            .enumerate()
            .map(|(row, value)| value.ok_or_else(|| anyhow!("{}: `split` is missing", row_name(row))))
            .collect::<Result<_>>()?,
        DataType::String => column
            .str()?
            .iter()
            .enumerate()
            .map(|(row, value)| match value {
                Some("train") => Ok(true),
                Some("test") => Ok(false),
                Some(other) => bail!("{}: `split` is \"{other}\", not train or test", row_name(row)),
                None => bail!("{}: `split` is missing", row_name(row)),
            })
            .collect::<Result<_>>()?,
        other => bail!("column `split` holds {other}; expected train/test or booleans"),
    };
    if train.iter().all(|&t| t) || !train.iter().any(|&t| t) {
        bail!("column `split`: every row is in one split; both train and test need rows");
    }
    Ok(train)
}
