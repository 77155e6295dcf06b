//! The output directory: `sweep.toml`, `runs.parquet`, `metrics.parquet/part-*.parquet` and
//! `progress.json`, each written atomically (temporary file, fsync, rename), so a reader
//! never sees a half-written file and an interrupted sweep keeps what it finished.

use crate::config::{RunSpec, Sweep, Value};
use crate::metrics::{MetricRow, RunResult};
use anyhow::{bail, Context, Result};
use polars::prelude::*;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SWEEP_FILE: &str = "sweep.toml";
pub const RUNS_FILE: &str = "runs.parquet";
pub const METRICS_DIR: &str = "metrics.parquet";
pub const PROGRESS_FILE: &str = "progress.json";

pub struct OutputDir {
    root: PathBuf,
    /// The largest number of Linear layers in the sweep: every part gets that many
    /// `layer{i}_*` columns, so all parts share one schema.
    max_layers: usize,
}

impl OutputDir {
    /// Create `root` for `sweep`. A directory that already holds a sweep is refused and
    /// left untouched.
    pub fn create(root: &Path, sweep: &Sweep) -> Result<OutputDir> {
        let existing = root.join(SWEEP_FILE);
        if existing.exists() {
            let previous = fs::read_to_string(&existing).with_context(|| format!("cannot read {}", existing.display()))?;
            if previous == sweep.to_toml() {
                bail!("{} already holds this sweep; choose a new --out directory", root.display());
            }
            bail!("{} already holds a different sweep ({}); choose a new --out directory", root.display(), existing.display());
        }
        fs::create_dir_all(root.join(METRICS_DIR)).with_context(|| format!("cannot create output directory {}", root.display()))?;
        let max_layers = sweep.runs()?.iter().map(|r| r.config.hidden.len() + 1).max().unwrap_or(1);
        let out = OutputDir { root: root.to_path_buf(), max_layers };
        write_atomic(&out.root.join(SWEEP_FILE), |f| Ok(f.write_all(sweep.to_toml().as_bytes())?))?;
        Ok(out)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// One stack's metric rows as part `index`.
    pub fn write_metrics_part(&self, index: usize, rows: &[MetricRow]) -> Result<()> {
        let mut df = metrics_frame(rows, self.max_layers)?;
        let path = self.root.join(METRICS_DIR).join(format!("part-{index:05}.parquet"));
        write_atomic(&path, |f| {
            ParquetWriter::new(f).finish(&mut df)?;
            Ok(())
        })
    }

    /// Every finished run so far (replaces the previous runs.parquet).
    pub fn write_runs(&self, runs: &[(&RunSpec, &RunResult)]) -> Result<()> {
        let mut df = runs_frame(runs)?;
        write_atomic(&self.root.join(RUNS_FILE), |f| {
            ParquetWriter::new(f).finish(&mut df)?;
            Ok(())
        })
    }

    pub fn write_progress(&self, total_runs: usize, finished_runs: usize) -> Result<()> {
        let json = format!("{{\"total_runs\": {total_runs}, \"finished_runs\": {finished_runs}}}\n");
        write_atomic(&self.root.join(PROGRESS_FILE), |f| Ok(f.write_all(json.as_bytes())?))
    }
}

/// Write `path` through a temporary file in the same directory, fsync it, then rename.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let name = path.file_name().context("output path has no file name")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result: Result<()> = (|| {
        let mut file = File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn metrics_frame(rows: &[MetricRow], max_layers: usize) -> Result<DataFrame> {
    let float = |name: &str, f: fn(&MetricRow) -> f64| Column::new(name.into(), rows.iter().map(f).collect::<Vec<f64>>());
    let mut columns = vec![
        Column::new("run_id".into(), rows.iter().map(|r| r.run_id as i64).collect::<Vec<i64>>()),
        Column::new("epoch".into(), rows.iter().map(|r| r.epoch as i64).collect::<Vec<i64>>()),
        float("train_loss", |r| r.train_loss),
        float("train_acc", |r| r.train_acc),
        float("test_loss", |r| r.test_loss),
        float("test_acc", |r| r.test_acc),
        float("weight_norm", |r| r.weight_norm),
        float("softmax_collapse", |r| r.softmax_collapse),
        float("zero_terms", |r| r.zero_terms),
        Column::new("lipschitz_bound".into(), rows.iter().map(|r| r.lipschitz_bound).collect::<Vec<Option<f64>>>()),
        Column::new("embedding_weight_norm".into(), rows.iter().map(|r| r.embedding_weight_norm).collect::<Vec<Option<f64>>>()),
    ];
    for layer in 0..max_layers {
        let norms: Vec<Option<f64>> = rows.iter().map(|r| r.layer_weight_norms.get(layer).copied()).collect();
        columns.push(Column::new(format!("layer{layer}_weight_norm").into(), norms));
    }
    for layer in 0..max_layers {
        let norms: Vec<Option<f64>> = rows.iter().map(|r| r.layer_spectral_norms.get(layer).copied()).collect();
        columns.push(Column::new(format!("layer{layer}_spectral_norm").into(), norms));
    }
    Ok(DataFrame::new(rows.len(), columns)?)
}

fn runs_frame(runs: &[(&RunSpec, &RunResult)]) -> Result<DataFrame> {
    let mut columns = vec![
        Column::new("run_id".into(), runs.iter().map(|(s, _)| s.run_id as i64).collect::<Vec<i64>>()),
        Column::new("setting_id".into(), runs.iter().map(|(s, _)| s.setting_id as i64).collect::<Vec<i64>>()),
        Column::new("seed".into(), runs.iter().map(|(s, _)| s.seed as i64).collect::<Vec<i64>>()),
    ];
    if let Some((first, _)) = runs.first() {
        for (&key, sample) in &first.values {
            let name: PlSmallStr = key.into();
            let values = runs.iter().map(|(s, _)| &s.values[key]);
            columns.push(match sample {
                Value::Str(_) | Value::IntList(_) => Column::new(name, values.map(value_text).collect::<Vec<String>>()),
                Value::Int(_) => Column::new(name, values.map(|v| if let Value::Int(i) = v { Some(*i) } else { None }).collect::<Vec<_>>()),
                Value::Float(_) => Column::new(name, values.map(|v| if let Value::Float(x) = v { Some(*x) } else { None }).collect::<Vec<_>>()),
                Value::Bool(_) => Column::new(name, values.map(|v| if let Value::Bool(b) = v { Some(*b) } else { None }).collect::<Vec<_>>()),
            });
        }
    }
    let opt_int = |f: fn(&RunResult) -> Option<usize>| runs.iter().map(|(_, r)| f(r).map(|e| e as i64)).collect::<Vec<_>>();
    let float = |f: fn(&RunResult) -> f64| runs.iter().map(|(_, r)| f(r)).collect::<Vec<f64>>();
    columns.extend([
        Column::new("status".into(), runs.iter().map(|(_, r)| r.status.as_str()).collect::<Vec<&str>>()),
        Column::new("epochs_trained".into(), runs.iter().map(|(_, r)| r.epochs_trained as i64).collect::<Vec<i64>>()),
        Column::new("grok_epoch".into(), opt_int(|r| r.grok_epoch)),
        Column::new("solve_epoch".into(), opt_int(|r| r.solve_epoch)),
        Column::new("lipschitz_at_grok".into(), runs.iter().map(|(_, r)| r.lipschitz_at_grok).collect::<Vec<_>>()),
        Column::new("final_train_acc".into(), float(|r| r.final_train_acc)),
        Column::new("final_test_acc".into(), float(|r| r.final_test_acc)),
        Column::new("final_train_loss".into(), float(|r| r.final_train_loss)),
        Column::new("final_test_loss".into(), float(|r| r.final_test_loss)),
    ]);
    Ok(DataFrame::new(runs.len(), columns)?)
}

/// Strings as themselves; integer lists as written in TOML (`[200, 200]`).
fn value_text(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}
