//! The output directory: `sweep.toml`, `plan.json`, `runs.parquet`,
//! `metrics.parquet/part-*.parquet`, `weights/part-*.safetensors`, `progress.json` and, while
//! a stack trains, `checkpoints/`. Each file is written atomically (temporary file, fsync,
//! rename), so a reader never sees a half-written file and an interrupted sweep keeps what it
//! finished.
//!
//! A stack's results are committed when `runs.parquet` lists its runs: its metrics part and
//! weights part are written before, its checkpoint is removed after. `--resume` trusts
//! exactly that: a stack whose runs are in `runs.parquet` is done, any other one starts again
//! from its checkpoint (or its first epoch).

use crate::config::{RunSpec, Sweep, TableChanged, Value};
use crate::files::{read_parquet, write_atomic, write_parquet};
use crate::metrics::{MetricRow, RunResult};
use crate::train::FinalWeights;
use anyhow::{anyhow, bail, Context, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const SWEEP_FILE: &str = "sweep.toml";
pub const PLAN_FILE: &str = "plan.json";
pub const RUNS_FILE: &str = "runs.parquet";
pub const METRICS_DIR: &str = "metrics.parquet";
pub const WEIGHTS_DIR: &str = "weights";
pub const PROGRESS_FILE: &str = "progress.json";
/// Held (flock) by the process writing the directory, so two cannot write it at once.
pub const LOCK_FILE: &str = ".lock";

/// The stacks of a sweep as planned when it started: part `i` trains the runs `parts[i]`
/// (those of its runs whose setting is still standing, with seed waves).
/// Kept in the directory, so a resumed sweep has the same parts whatever memory it finds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub parts: Vec<Vec<usize>>,
    /// `train.seed_waves` when the sweep started (empty: one wave). Absent from the plans of
    /// sweeps without waves, as in directories written before waves existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seed_waves: Vec<usize>,
    /// The shard folders a `grokstack merge` combined (empty: the sweep was trained here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

impl Plan {
    /// A plan.json (a trained directory's, a shard's or a merge's), parsed.
    pub fn read(path: &Path) -> Result<Plan> {
        let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow!("{} is corrupted: {e}", path.display()))
    }
}

pub struct OutputDir {
    root: PathBuf,
    /// The per-parameter columns of every metrics part, so that all parts share one schema.
    columns: ParamColumns,
    /// Some run has `metrics.progress`: every part gets the progress columns.
    progress: bool,
    /// The runs of the whole sweep (a shard's directory holds some of them).
    sweep_runs: usize,
    /// Holds the directory's lock until dropped.
    _lock: File,
}

/// A metric or weights part's file name.
pub fn part_name(index: usize, extension: &str) -> String {
    format!("part-{index:05}.{extension}")
}

impl OutputDir {
    /// Open `root` for `sweep`: a new directory, or (with `resume`) one that holds this very
    /// sweep; the boolean says which. A directory that holds a different sweep is always
    /// refused, one that holds this sweep without `resume` too, and a refusal touches nothing.
    /// A new directory gets its plan and `sweep.toml` from [`OutputDir::start`].
    pub fn open(root: &Path, sweep: &Sweep, resume: bool) -> Result<(OutputDir, bool)> {
        if root.as_os_str().is_empty() {
            bail!("--out: the output directory name is empty");
        }
        if root.exists() && !root.is_dir() {
            bail!("--out {}: exists and is not a directory", root.display());
        }
        let resuming = holds_sweep(root, sweep)?;
        if resuming && !resume {
            bail!(
                "{} already holds this sweep; continue it with --resume, or choose a new --out directory",
                root.display()
            );
        }
        fs::create_dir_all(root.join(METRICS_DIR))
            .with_context(|| format!("cannot create output directory {}", root.display()))?;
        let lock = lock(&root.join(LOCK_FILE))?;
        let runs = sweep.runs()?;
        let columns = ParamColumns::of(&runs);
        let progress = runs.iter().any(|r| r.config.progress.enabled);
        let sweep_runs = sweep.run_count();
        Ok((OutputDir { root: root.to_path_buf(), columns, progress, sweep_runs, _lock: lock }, resuming))
    }

    /// Write the plan, then `sweep.toml`, which marks the directory as holding the sweep.
    pub fn start(&self, sweep: &Sweep, plan: &Plan) -> Result<()> {
        let json = serde_json::to_string(plan)?;
        write_atomic(&self.root.join(PLAN_FILE), |f| Ok(f.write_all(json.as_bytes())?))?;
        write_atomic(&self.root.join(SWEEP_FILE), |f| Ok(f.write_all(sweep.to_toml().as_bytes())?))
    }

    /// The plan of a sweep being resumed, checked to cover `run_ids` (the sweep's runs, or a
    /// shard's) once each and to have been made for its seed waves.
    pub fn read_plan(&self, sweep: &Sweep, run_ids: &[usize]) -> Result<Plan> {
        let path = self.root.join(PLAN_FILE);
        let plan = Plan::read(&path).context("resuming needs the sweep's plan")?;
        if plan.seed_waves != sweep.seed_waves {
            bail!("{}", different_waves(&self.root, &plan.seed_waves, &sweep.seed_waves));
        }
        // Per run of the sweep: None if not expected here, else whether the plan lists it.
        let mut seen: Vec<Option<bool>> = vec![None; sweep.run_count()];
        for &id in run_ids {
            seen[id] = Some(false);
        }
        for &id in plan.parts.iter().flatten() {
            if seen.get(id).copied().flatten() != Some(false) {
                bail!(
                    "{} is corrupted: run {id} is listed twice or is not one of the runs to train here",
                    path.display()
                );
            }
            seen[id] = Some(true);
        }
        if plan.format != 1 || seen.contains(&Some(false)) || plan.parts.iter().any(|p| p.is_empty()) {
            bail!("{} is corrupted: its parts do not cover the {} runs to train here", path.display(), run_ids.len());
        }
        Ok(plan)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn metrics_part_path(&self, index: usize) -> PathBuf {
        self.root.join(METRICS_DIR).join(part_name(index, "parquet"))
    }

    pub fn weights_part_path(&self, index: usize) -> PathBuf {
        self.root.join(WEIGHTS_DIR).join(part_name(index, "safetensors"))
    }

    /// One stack's metric rows as part `index`.
    pub fn write_metrics_part(&self, index: usize, rows: &[MetricRow]) -> Result<()> {
        write_parquet(&self.metrics_part_path(index), &mut metrics_frame(rows, &self.columns, self.progress)?)
    }

    /// One stack's final weights as part `index`: a tensor `[R, ...]` per parameter (the
    /// model's layout, Linear weights `[in, out]`), the run ids in the metadata.
    pub fn write_weights_part(&self, index: usize, weights: &FinalWeights) -> Result<()> {
        let dir = self.root.join(WEIGHTS_DIR);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // One metadata entry: safetensors writes a map's entries in hash order, and the
        // part's bytes should not depend on the process.
        let info = serde_json::json!({ "run_ids": weights.run_ids, "layout": "[run, in, out] (Linear), [run, p, \
            embed_dim] (embedding)" });
        let metadata = HashMap::from([("grokstack".to_string(), info.to_string())]);
        let bytes = safetensors::tensor::serialize(weights.params.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| anyhow!("cannot serialize the weights of stack {index}: {e}"))?;
        write_atomic(&self.weights_part_path(index), |f| Ok(f.write_all(&bytes)?))
    }

    /// The finished runs so far (`runs.parquet`), if any.
    pub fn read_runs(&self) -> Result<Option<DataFrame>> {
        crate::runs_file::read(&self.root.join(RUNS_FILE))
    }

    /// Every finished run so far (replaces the previous runs.parquet).
    pub fn write_runs(&self, runs: &mut DataFrame) -> Result<()> {
        // One chunk per column, whether the frame was built at once or appended to after a
        // resume, so both write the same file.
        runs.rechunk_mut_par();
        write_parquet(&self.root.join(RUNS_FILE), runs)
    }

    /// A finished stack's parts must be readable: a resumed sweep will not train it again.
    pub fn check_finished_part(&self, index: usize) -> Result<()> {
        read_parquet(&self.metrics_part_path(index))?;
        let path = self.weights_part_path(index);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| anyhow!("{} is corrupted: {e}", path.display()))?;
        Ok(())
    }

    /// Remove temporary files that a killed process left (`.NAME.tmp-PID`): never read, and
    /// a directory is written by one process at a time (the lock).
    pub fn remove_stale_temporaries(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.root.join(METRICS_DIR),
            self.root.join(WEIGHTS_DIR),
            self.root.join(crate::checkpoint::CHECKPOINT_DIR),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(".tmp-") {
                    fs::remove_file(entry.path())
                        .with_context(|| format!("cannot remove {}", entry.path().display()))?;
                }
            }
        }
        Ok(())
    }

    /// `total_runs`: the runs of this directory; a shard's (fewer than the sweep's) also says
    /// the sweep's, so that the analysis of a sharded directory knows what is missing.
    pub fn write_progress(&self, total_runs: usize, finished_runs: usize) -> Result<()> {
        let sweep_runs = if total_runs != self.sweep_runs {
            format!(", \"sweep_total_runs\": {}", self.sweep_runs)
        } else {
            String::new()
        };
        let json = format!("{{\"total_runs\": {total_runs}, \"finished_runs\": {finished_runs}{sweep_runs}}}\n");
        write_atomic(&self.root.join(PROGRESS_FILE), |f| Ok(f.write_all(json.as_bytes())?))
    }
}

/// Whether `root` holds `sweep` (its `sweep.toml`), or none; a directory that holds a different
/// sweep is an error naming its `sweep.toml`.
pub fn holds_sweep(root: &Path, sweep: &Sweep) -> Result<bool> {
    let existing = root.join(SWEEP_FILE);
    if !existing.exists() {
        return Ok(false);
    }
    let previous = fs::read_to_string(&existing).with_context(|| format!("cannot read {}", existing.display()))?;
    // A sweep that differs only in its waves gets its own message: the waves decide
    // which runs exist as trained or skipped, so they cannot change halfway.
    let started = Sweep::parse(&previous, &existing.display().to_string(), &[]);
    if let Some(changed) = started.as_ref().err().and_then(|e| e.downcast_ref::<TableChanged>()) {
        bail!(
            "{changed}; {} was trained on the recorded file: restore it, or choose a new --out directory",
            root.display()
        );
    }
    if let Ok(started) = started {
        let same_but_waves = Sweep { seed_waves: sweep.seed_waves.clone(), ..started.clone() };
        if started.seed_waves != sweep.seed_waves && same_but_waves.to_toml() == sweep.to_toml() {
            bail!("{}", different_waves(root, &started.seed_waves, &sweep.seed_waves));
        }
    }
    if previous != sweep.to_toml() {
        bail!(
            "{} already holds a different sweep ({}); choose a new --out directory",
            root.display(),
            existing.display()
        );
    }
    Ok(true)
}

/// The refusal of a resume with other seed waves than the sweep in `root` started with.
fn different_waves(root: &Path, started: &[usize], asked: &[usize]) -> String {
    let describe = |waves: &[usize]| {
        if waves.is_empty() {
            "one wave of all seeds".to_string()
        } else {
            format!("train.seed_waves = {waves:?}")
        }
    };
    format!(
        "{} was started with {}, this command asks for {}; the waves decide which runs are trained and which skipped, \
            so a sweep resumes only with the waves it started with (or choose a new --out directory)",
        root.display(),
        describe(started),
        describe(asked)
    )
}

/// Take the directory's lock, or say who holds it.
fn lock(path: &Path) -> Result<File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let dir = path.parent().unwrap_or(path);
            bail!("{} is being written by another grokstack process (it holds {})", dir.display(), path.display());
        }
    }
    Ok(file)
}

/// The columns of the parameters' norms in `metrics.parquet`: the union over the sweep's model
/// architectures of their norm columns, then of their spectral-norm columns (each model's own
/// names: `layer{i}_weight_norm` for the MLP, one per parameter for the transformer), and which
/// of them each run fills.
struct ParamColumns {
    norms: Vec<String>,
    spectral: Vec<String>,
    /// Per run id, its architecture's columns as indices into `norms` and `spectral`.
    of_run: Vec<ColumnsAt>,
}

/// An architecture's norm and spectral-norm columns as indices into a sweep's.
type ColumnsAt = (Vec<usize>, Vec<usize>);

impl ParamColumns {
    fn of(runs: &[RunSpec]) -> ParamColumns {
        let mut columns = ParamColumns { norms: Vec::new(), spectral: Vec::new(), of_run: Vec::new() };
        // Each distinct architecture's (norm columns, spectral columns) and where they sit.
        let mut layouts: Vec<(Vec<String>, Vec<String>, ColumnsAt)> = Vec::new();
        columns.of_run = vec![(Vec::new(), Vec::new()); runs.iter().map(|r| r.run_id + 1).max().unwrap_or(0)];
        for run in runs {
            let arch = run.config.arch();
            let (norms, spectral) = (arch.norm_columns(), arch.spectral_columns());
            let known = layouts.iter().find(|(n, s, _)| *n == norms && *s == spectral).map(|(.., at)| at.clone());
            let at = match known {
                Some(at) => at,
                None => {
                    let at = (union_into(&mut columns.norms, &norms), union_into(&mut columns.spectral, &spectral));
                    layouts.push((norms, spectral, at.clone()));
                    at
                }
            };
            columns.of_run[run.run_id] = at;
        }
        columns
    }
}

/// Add the `names` that `all` lacks to its end; the index of each name in `all`.
fn union_into(all: &mut Vec<String>, names: &[String]) -> Vec<usize> {
    names
        .iter()
        .map(|name| match all.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                all.push(name.clone());
                all.len() - 1
            }
        })
        .collect()
}

fn metrics_frame(rows: &[MetricRow], params: &ParamColumns, progress: bool) -> Result<DataFrame> {
    let float =
        |name: &str, f: fn(&MetricRow) -> f64| Column::new(name.into(), rows.iter().map(f).collect::<Vec<f64>>());
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
        Column::new(
            "embedding_weight_norm".into(),
            rows.iter().map(|r| r.embedding_weight_norm).collect::<Vec<Option<f64>>>(),
        ),
    ];
    // Column `column` of a row: the value its run's architecture logs there, if any.
    let value = |values: &[f64], at: &[usize], column: usize| {
        at.iter().position(|&c| c == column).and_then(|i| values.get(i).copied())
    };
    for (column, name) in params.norms.iter().enumerate() {
        let norms: Vec<Option<f64>> =
            rows.iter().map(|r| value(&r.layer_weight_norms, &params.of_run[r.run_id].0, column)).collect();
        columns.push(Column::new(name.into(), norms));
    }
    for (column, name) in params.spectral.iter().enumerate() {
        let norms: Vec<Option<f64>> =
            rows.iter().map(|r| value(&r.layer_spectral_norms, &params.of_run[r.run_id].1, column)).collect();
        columns.push(Column::new(name.into(), norms));
    }
    if progress {
        columns.extend(crate::progress::columns::columns(rows)?);
    }
    Ok(DataFrame::new(rows.len(), columns)?)
}

/// One row per run: its ids, every resolved key, and its summary; with `skip_reasons` (a
/// sweep with seed waves), a `skip_reason` column after `status`: why a skipped run was not
/// trained, null for the others.
pub fn runs_frame(runs: &[(&RunSpec, &RunResult)], skip_reasons: Option<&[Option<String>]>) -> Result<DataFrame> {
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
                Value::Int(_) => Column::new(
                    name,
                    values.map(|v| if let Value::Int(i) = v { Some(*i) } else { None }).collect::<Vec<_>>(),
                ),
                Value::Float(_) => Column::new(
                    name,
                    values.map(|v| if let Value::Float(x) = v { Some(*x) } else { None }).collect::<Vec<_>>(),
                ),
                Value::Bool(_) => Column::new(
                    name,
                    values.map(|v| if let Value::Bool(b) = v { Some(*b) } else { None }).collect::<Vec<_>>(),
                ),
            });
        }
    }
    let opt_int =
        |f: fn(&RunResult) -> Option<usize>| runs.iter().map(|(_, r)| f(r).map(|e| e as i64)).collect::<Vec<_>>();
    let float = |f: fn(&RunResult) -> f64| runs.iter().map(|(_, r)| f(r)).collect::<Vec<f64>>();
    columns.extend([Column::new("status".into(), runs.iter().map(|(_, r)| r.status.as_str()).collect::<Vec<&str>>())]);
    if let Some(reasons) = skip_reasons {
        columns.push(Column::new("skip_reason".into(), reasons.to_vec()));
    }
    columns.extend([
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
