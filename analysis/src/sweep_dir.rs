//! The trainer's output directory as analysis sees it: where runs.parquet,
//! the metrics parts and progress.json are, checked before anything is read.
//!
//! A directory trained in shards (`grokstack train --shard K/N`) and not merged
//! yet has no runs.parquet of its own: its runs and metric parts are those of
//! every `shards/K-of-N/` folder, read together.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::{col, len, lit, LazyFrame, PlRefPath, ScanArgsParquet, Schema};

use crate::columns;

pub(crate) struct SweepDir {
    root: PathBuf,
    /// runs.parquet, or the pattern of the shards' files, for messages.
    runs_location: PathBuf,
    runs_files: Vec<PathBuf>,
    /// `metrics.parquet`, a folder of parts or (from other writers) one file;
    /// the pattern of the shards' folders for a sharded directory.
    metrics_location: PathBuf,
    metric_parts: Vec<PathBuf>,
    run_columns: Vec<String>,
    metrics_have_lipschitz: bool,
    /// Whether the metrics have Nanda et al.'s progress measures (`metrics.progress`).
    metrics_have_progress: bool,
    /// The sweep's runs, from progress.json (None when absent).
    planned_runs: Option<usize>,
    /// A sharded directory's shards that are not finished, one line each.
    shard_notes: Vec<String>,
}

/// What the files of the directory are.
struct Files {
    runs_location: PathBuf,
    runs_files: Vec<PathBuf>,
    metrics_location: PathBuf,
    metric_parts: Vec<PathBuf>,
    planned_runs: Option<usize>,
    shard_notes: Vec<String>,
}

impl SweepDir {
    /// Finds the documented files in `root` and checks the columns analysis needs.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            bail!("{} is not a directory (expected the --out DIR of `grokstack train`)", root.display());
        }
        let runs_file = root.join("runs.parquet");
        let shards = root.join(SHARDS_DIR);
        let files = if !runs_file.is_file() && shards.is_dir() {
            sharded_files(&shards)?
        } else {
            if !runs_file.is_file() {
                bail!(
                    "{} not found: is {} a grokstack output directory, and has a stack finished yet?",
                    runs_file.display(),
                    root.display()
                );
            }
            let metrics_location = root.join("metrics.parquet");
            Files {
                metric_parts: list_metric_parts(&metrics_location)?,
                metrics_location,
                runs_location: runs_file.clone(),
                runs_files: vec![runs_file],
                planned_runs: read_progress(root)?.map(|p| p.1),
                shard_notes: Vec::new(),
            }
        };
        let Files { runs_location, runs_files, metrics_location, metric_parts, planned_runs, shard_notes } = files;

        let run_schema = scan_many(&runs_files)?
            .collect_schema()
            .with_context(|| format!("reading the schema of {}", runs_files[0].display()))?;
        require_columns(&run_schema, columns::REQUIRED_RUN_COLUMNS, &runs_files[0])?;
        let metric_schema = scan_many(&metric_parts)?
            .collect_schema()
            .with_context(|| format!("reading the schema of {}", metric_parts[0].display()))?;
        require_columns(&metric_schema, columns::REQUIRED_METRIC_COLUMNS, &metric_parts[0])?;
        let metrics_have_progress = metric_schema.contains(columns::RESTRICTED_LOSS);
        if metrics_have_progress {
            require_columns(&metric_schema, columns::PROGRESS_METRIC_COLUMNS, &metric_parts[0])?;
        }

        Ok(Self {
            root: root.to_path_buf(),
            runs_location,
            runs_files,
            metrics_location,
            metric_parts,
            run_columns: run_schema.iter_names().map(|n| n.to_string()).collect(),
            metrics_have_lipschitz: metric_schema.contains(columns::LIPSCHITZ_BOUND),
            metrics_have_progress,
            planned_runs,
            shard_notes,
        })
    }

    pub fn runs_file(&self) -> &Path {
        &self.runs_location
    }

    /// For error messages about queries that read both inputs.
    pub fn describe_inputs(&self) -> String {
        format!("{} and {}", self.runs_location.display(), self.metrics_location.display())
    }

    pub fn runs(&self) -> Result<LazyFrame> {
        scan_many(&self.runs_files)
    }

    pub fn metrics(&self) -> Result<LazyFrame> {
        scan_many(&self.metric_parts)
    }

    pub fn metrics_have_lipschitz(&self) -> bool {
        self.metrics_have_lipschitz
    }

    pub fn metrics_have_progress(&self) -> bool {
        self.metrics_have_progress
    }

    /// The `task.*`, `model.*`, `train.*` and `metrics.*` columns, in file order.
    pub fn config_columns(&self) -> Vec<String> {
        self.run_columns.iter().filter(|c| columns::is_config_column(c)).cloned().collect()
    }

    /// Rows of runs.parquet, i.e. runs the trainer has finished.
    pub fn listed_runs(&self) -> Result<usize> {
        self.count(self.runs()?, "the rows")
    }

    /// Rows of runs.parquet with status `skipped`: runs a sweep with seed waves
    /// never trained.
    pub fn skipped_runs(&self) -> Result<usize> {
        let skipped = self.runs()?.filter(col(columns::STATUS).eq(lit(columns::STATUS_SKIPPED)));
        self.count(skipped, "the skipped runs")
    }

    /// The text of `sweep.toml` (the resolved sweep the trainer wrote), None when
    /// the directory has none.
    pub fn resolved_sweep(&self) -> Result<Option<String>> {
        let path = self.root.join("sweep.toml");
        if !path.exists() {
            return Ok(None);
        }
        fs::read_to_string(&path).map(Some).with_context(|| format!("reading {}", path.display()))
    }

    /// The number of rows of a query over runs.parquet.
    fn count(&self, rows: LazyFrame, what: &str) -> Result<usize> {
        let counted = rows
            .select([len()])
            .collect()
            .with_context(|| format!("counting {what} of {}", self.runs_location.display()))?;
        let rows = counted.columns()[0].get(0)?.extract::<u64>().unwrap_or(0);
        Ok(rows as usize)
    }

    /// The sweep's runs from progress.json (a shard's names the whole sweep's);
    /// None when there is none.
    pub fn planned_runs(&self) -> Option<usize> {
        self.planned_runs
    }

    /// The shards of a sharded directory that are not finished, one line each.
    pub fn shard_notes(&self) -> &[String] {
        &self.shard_notes
    }
}

/// The folder of a sharded directory that holds `K-of-N` shard folders (the
/// trainer's `shard::SHARDS_DIR`).
const SHARDS_DIR: &str = "shards";

/// A shard directory's progress.json: (the sweep's runs, this folder's runs,
/// those finished). A shard's `sweep_total_runs` is the whole sweep's.
fn read_progress(dir: &Path) -> Result<Option<(usize, usize, usize)>> {
    let path = dir.join("progress.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let progress: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let count = |key: &str| -> Result<Option<usize>> {
        match progress.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .with_context(|| format!("{}: `{key}` is not a non-negative integer", path.display())),
        }
    };
    let total = count("total_runs")?.with_context(|| format!("{} has no `total_runs`", path.display()))?;
    let finished = count("finished_runs")?.unwrap_or(0);
    Ok(Some((count("sweep_total_runs")?.unwrap_or(total), total, finished)))
}

/// The runs files and metric parts of every shard folder in `shards` that has
/// finished a stack, and what the others lack. Shards of one N only: shards of
/// two N overlap, which `grokstack merge` sorts out and reports.
fn sharded_files(shards: &Path) -> Result<Files> {
    let mut found: Vec<(usize, usize, PathBuf)> = Vec::new();
    for entry in fs::read_dir(shards).with_context(|| format!("listing {}", shards.display()))? {
        let path = entry.with_context(|| format!("listing {}", shards.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parsed =
            name.split_once("-of-").and_then(|(k, n)| Some((k.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
        match parsed {
            Some((k, n)) if path.is_dir() && k < n => found.push((n, k, path)),
            _ if path.is_dir() && !name.starts_with('.') => {
                bail!("{} is not a shard folder (expected K-of-N, 0 <= K < N)", path.display())
            }
            _ => {}
        }
    }
    found.sort();
    let counts: Vec<usize> = found.iter().map(|f| f.0).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let count = match counts.as_slice() {
        [] => bail!("{} holds no shard folders (K-of-N)", shards.display()),
        [count] => *count,
        _ => bail!(
            "{} holds shards of different counts N {counts:?}, which overlap: combine them with \
             `grokstack merge`, which reports the runs listed twice, and analyze the merged directory",
            shards.display()
        ),
    };
    let (mut runs_files, mut metric_parts, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    let mut planned_runs = None;
    for k in 0..count {
        let name = format!("{k}-of-{count}");
        let Some((_, _, dir)) = found.iter().find(|f| f.1 == k) else {
            notes.push(format!("{SHARDS_DIR}/{name}: not started"));
            continue;
        };
        let progress = read_progress(dir)?;
        if let Some((sweep_runs, total, finished)) = progress {
            planned_runs = Some(sweep_runs);
            if finished < total {
                notes.push(format!("{SHARDS_DIR}/{name}: {finished} of {total} runs finished"));
            }
        } else {
            notes.push(format!("{SHARDS_DIR}/{name}: no stack finished yet"));
        }
        let runs_file = dir.join("runs.parquet");
        if runs_file.is_file() {
            runs_files.push(runs_file);
            let metrics = dir.join("metrics.parquet");
            // A shard whose finished parts were all skipped (seed waves) has no metrics.
            if metrics.is_dir() {
                metric_parts.extend(parquet_files(&metrics)?);
            }
        }
    }
    if runs_files.is_empty() || metric_parts.is_empty() {
        bail!("no shard in {} has finished a stack yet", shards.display());
    }
    Ok(Files {
        runs_location: shards.join("*").join("runs.parquet"),
        runs_files,
        metrics_location: shards.join("*").join("metrics.parquet"),
        metric_parts,
        planned_runs,
        shard_notes: notes,
    })
}

/// The parquet files of `metrics.parquet`: every `*.parquet` in the folder, in
/// name order. Files still being written by the trainer end otherwise (e.g. `.tmp`),
/// so they are not picked up.
fn list_metric_parts(location: &Path) -> Result<Vec<PathBuf>> {
    if location.is_file() {
        return Ok(vec![location.to_path_buf()]);
    }
    if !location.is_dir() {
        bail!("{} not found: the sweep has written no metrics yet", location.display());
    }
    let parts = parquet_files(location)?;
    if parts.is_empty() {
        bail!("{} holds no .parquet parts yet", location.display());
    }
    Ok(parts)
}

/// The `*.parquet` files of the folder `dir`, in name order.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "parquet") {
            parts.push(path);
        }
    }
    parts.sort();
    Ok(parts)
}

fn pl_path(path: &Path) -> Result<PlRefPath> {
    PlRefPath::try_from_path(path).with_context(|| format!("unusable path {}", path.display()))
}

fn scan_many(files: &[PathBuf]) -> Result<LazyFrame> {
    let paths = files.iter().map(|f| pl_path(f)).collect::<Result<Vec<_>>>()?;
    LazyFrame::scan_parquet_files(paths.into_iter().collect(), ScanArgsParquet::default())
        .with_context(|| format!("opening the parts of {}", files[0].parent().unwrap_or(Path::new(".")).display()))
}

fn require_columns(schema: &Schema, required: &[&str], file: &Path) -> Result<()> {
    for name in required {
        if !schema.contains(name) {
            bail!("{} has no column `{name}` (see docs/OUTPUT.md)", file.display());
        }
    }
    Ok(())
}
