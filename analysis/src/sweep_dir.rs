//! The trainer's output directory as analysis sees it: where runs.parquet,
//! the metrics parts and progress.json are, checked before anything is read.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::{col, len, lit, LazyFrame, PlRefPath, ScanArgsParquet, Schema};

use crate::columns;

pub(crate) struct SweepDir {
    root: PathBuf,
    runs_file: PathBuf,
    /// `metrics.parquet`, a folder of parts or (from other writers) one file.
    metrics_location: PathBuf,
    metric_parts: Vec<PathBuf>,
    run_columns: Vec<String>,
    metrics_have_lipschitz: bool,
}

impl SweepDir {
    /// Finds the documented files in `root` and checks the columns analysis needs.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!(
                "{} is not a directory (expected the --out DIR of `grokstack train`)",
                root.display()
            );
        }
        let runs_file = root.join("runs.parquet");
        if !runs_file.is_file() {
            bail!(
                "{} not found: is {} a grokstack output directory, and has a stack finished yet?",
                runs_file.display(),
                root.display()
            );
        }
        let metrics_location = root.join("metrics.parquet");
        let metric_parts = list_metric_parts(&metrics_location)?;

        let run_schema = scan(&runs_file)?
            .collect_schema()
            .with_context(|| format!("reading the schema of {}", runs_file.display()))?;
        require_columns(&run_schema, columns::REQUIRED_RUN_COLUMNS, &runs_file)?;
        let metric_schema = scan_many(&metric_parts)?
            .collect_schema()
            .with_context(|| format!("reading the schema of {}", metric_parts[0].display()))?;
        require_columns(
            &metric_schema,
            columns::REQUIRED_METRIC_COLUMNS,
            &metric_parts[0],
        )?;

        Ok(Self {
            root: root.to_path_buf(),
            runs_file,
            metrics_location,
            metric_parts,
            run_columns: run_schema.iter_names().map(|n| n.to_string()).collect(),
            metrics_have_lipschitz: metric_schema.contains(columns::LIPSCHITZ_BOUND),
        })
    }

    pub fn runs_file(&self) -> &Path {
        &self.runs_file
    }

    /// For error messages about queries that read both inputs.
    pub fn describe_inputs(&self) -> String {
        format!(
            "{} and {}",
            self.runs_file.display(),
            self.metrics_location.display()
        )
    }

    pub fn runs(&self) -> Result<LazyFrame> {
        scan(&self.runs_file)
    }

    pub fn metrics(&self) -> Result<LazyFrame> {
        scan_many(&self.metric_parts)
    }

    pub fn metrics_have_lipschitz(&self) -> bool {
        self.metrics_have_lipschitz
    }

    /// The `task.*`, `model.*`, `train.*` and `metrics.*` columns, in file order.
    pub fn config_columns(&self) -> Vec<String> {
        self.run_columns
            .iter()
            .filter(|c| columns::is_config_column(c))
            .cloned()
            .collect()
    }

    /// Rows of runs.parquet, i.e. runs the trainer has finished.
    pub fn listed_runs(&self) -> Result<usize> {
        self.count(self.runs()?, "the rows")
    }

    /// Rows of runs.parquet with status `skipped`: runs a sweep with seed waves
    /// never trained.
    pub fn skipped_runs(&self) -> Result<usize> {
        let skipped = self
            .runs()?
            .filter(col(columns::STATUS).eq(lit(columns::STATUS_SKIPPED)));
        self.count(skipped, "the skipped runs")
    }

    /// The text of `sweep.toml` (the resolved sweep the trainer wrote), None when
    /// the directory has none.
    pub fn resolved_sweep(&self) -> Result<Option<String>> {
        let path = self.root.join("sweep.toml");
        if !path.exists() {
            return Ok(None);
        }
        fs::read_to_string(&path)
            .map(Some)
            .with_context(|| format!("reading {}", path.display()))
    }

    /// The number of rows of a query over runs.parquet.
    fn count(&self, rows: LazyFrame, what: &str) -> Result<usize> {
        let counted = rows
            .select([len()])
            .collect()
            .with_context(|| format!("counting {what} of {}", self.runs_file.display()))?;
        let rows = counted.columns()[0].get(0)?.extract::<u64>().unwrap_or(0);
        Ok(rows as usize)
    }

    /// `total_runs` from progress.json; None when the file is absent.
    pub fn planned_runs(&self) -> Result<Option<usize>> {
        let path = self.root.join("progress.json");
        if !path.exists() {
            return Ok(None);
        }
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let progress: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let total = progress
            .get("total_runs")
            .and_then(|v| v.as_u64())
            .with_context(|| {
                format!(
                    "{} has no non-negative integer `total_runs`",
                    path.display()
                )
            })?;
        Ok(Some(total as usize))
    }
}

/// The parquet files of `metrics.parquet`: every `*.parquet` in the folder, in
/// name order. Files still being written by the trainer end otherwise (e.g. `.tmp`),
/// so they are not picked up.
fn list_metric_parts(location: &Path) -> Result<Vec<PathBuf>> {
    if location.is_file() {
        return Ok(vec![location.to_path_buf()]);
    }
    if !location.is_dir() {
        bail!(
            "{} not found: the sweep has written no metrics yet",
            location.display()
        );
    }
    let mut parts = Vec::new();
    for entry in
        fs::read_dir(location).with_context(|| format!("listing {}", location.display()))?
    {
        let path = entry
            .with_context(|| format!("listing {}", location.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "parquet") {
            parts.push(path);
        }
    }
    if parts.is_empty() {
        bail!("{} holds no .parquet parts yet", location.display());
    }
    parts.sort();
    Ok(parts)
}

fn pl_path(path: &Path) -> Result<PlRefPath> {
    PlRefPath::try_from_path(path).with_context(|| format!("unusable path {}", path.display()))
}

fn scan(file: &Path) -> Result<LazyFrame> {
    LazyFrame::scan_parquet(pl_path(file)?, ScanArgsParquet::default())
        .with_context(|| format!("opening {}", file.display()))
}

fn scan_many(files: &[PathBuf]) -> Result<LazyFrame> {
    let paths = files
        .iter()
        .map(|f| pl_path(f))
        .collect::<Result<Vec<_>>>()?;
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), ScanArgsParquet::default())
        .with_context(|| {
            format!(
                "opening the parts of {}",
                files[0].parent().unwrap_or(Path::new(".")).display()
            )
        })
}

fn require_columns(schema: &Schema, required: &[&str], file: &Path) -> Result<()> {
    for name in required {
        if !schema.contains(name) {
            bail!(
                "{} has no column `{name}` (see docs/OUTPUT.md)",
                file.display()
            );
        }
    }
    Ok(())
}
