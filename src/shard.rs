//! Shards (`--shard K/N`): a sweep split into N parts that N processes (a Slurm array, several
//! machines) train into `DIR/shards/K-of-N/`, each an ordinary output directory.
//!
//! The split depends on the sweep alone, never on the device or the memory, so every process
//! computes the same one. Whole settings are assigned (all seeds of a setting together), so
//! each shard's stacks hold all seeds of their settings and seed waves decide per setting as
//! in one process. Settings are balanced by estimated work (FLOPs per run-epoch × epoch budget
//! × seeds) with the longest-processing-time rule: the largest setting first, each onto the
//! least-loaded shard (ties: the lower setting id, the lower shard). That keeps every shard
//! within one setting's work of the mean.

use crate::config::{RunSpec, Sweep};
use crate::plan::flops_per_run_epoch;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The folder of `DIR` that holds the shards.
pub const SHARDS_DIR: &str = "shards";

/// Shard `index` (0-based) of `count`. Shards sort by N, then K (the field order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    pub count: usize,
    pub index: usize,
}

impl Shard {
    /// `K/N`, or `slurm` (K and N from the Slurm array's environment, read through `env`).
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        if text == "slurm" {
            return Self::from_slurm(env);
        }
        let (k, n) = text
            .split_once('/')
            .with_context(|| format!("--shard {text}: expected K/N (shard K of N, 0-based) or `slurm`"))?;
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .with_context(|| format!("--shard {text}: `{part}` is not a non-negative integer (expected K/N)"))
        };
        Self::new(number(k)?, number(n)?).with_context(|| format!("--shard {text}"))
    }

    fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            bail!("N must be at least 1");
        }
        if index >= count {
            bail!("shard {index} of {count} does not exist: shards are numbered 0 to {} (K is 0-based)", count - 1);
        }
        Ok(Shard { index, count })
    }

    /// A Slurm array task: K = SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN, N =
    /// SLURM_ARRAY_TASK_COUNT, so `--array=0-7` and `--array=1-8` both give shards 0 to 7.
    fn from_slurm(env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let var = |name: &str| -> Result<usize> {
            let value = env(name).with_context(|| {
                format!(
                    "--shard slurm: the environment variable {name} is not set \
                (run it as a task of an sbatch --array job)"
                )
            })?;
            value.trim().parse().with_context(|| format!("--shard slurm: {name}={value} is not a non-negative integer"))
        };
        let (id, min, count) =
            (var("SLURM_ARRAY_TASK_ID")?, var("SLURM_ARRAY_TASK_MIN")?, var("SLURM_ARRAY_TASK_COUNT")?);
        let index = id
            .checked_sub(min)
            .with_context(|| format!("--shard slurm: SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"))?;
        Self::new(index, count).with_context(|| {
            format!(
                "--shard slurm: SLURM_ARRAY_TASK_ID={id} − \
            SLURM_ARRAY_TASK_MIN={min} is shard {index}, SLURM_ARRAY_TASK_COUNT={count} (the array must be contiguous, \
            e.g. --array=0-{})",
                count.max(1) - 1
            )
        })
    }

    /// `K-of-N`, the shard's folder name.
    pub fn name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }

    /// Parse a folder name written by [`Shard::name`].
    pub fn from_name(name: &str) -> Option<Shard> {
        let (k, n) = name.split_once("-of-")?;
        Self::new(k.parse().ok()?, n.parse().ok()?).ok()
    }

    /// The shard's output directory inside the sweep's `root`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(SHARDS_DIR).join(self.name())
    }
}

/// The estimated work of every setting (FLOPs if each of its seeds trains its whole budget),
/// indexed by setting id, from the sweep's runs in order.
pub fn setting_work(runs: &[RunSpec]) -> Vec<f64> {
    let mut work: Vec<f64> = Vec::new();
    for run in runs {
        if work.len() <= run.setting_id {
            work.resize(run.setting_id + 1, 0.0);
        }
        work[run.setting_id] += flops_per_run_epoch(&run.config) * run.config.epochs as f64;
    }
    work
}

/// The settings of each of `count` shards, each list ascending, by the longest-processing-time
/// rule over `work` (per setting). More shards than settings is refused: a shard would have
/// nothing to train, and a Slurm task that finds nothing to do is more likely a mistake.
pub fn assign(work: &[f64], count: usize) -> Result<Vec<Vec<usize>>> {
    if count > work.len() {
        bail!(
            "--shard: the sweep has {} setting(s), fewer than the {count} shards asked for; a shard holds whole \
            settings (all their seeds), so use at most {} shards",
            work.len(),
            work.len()
        );
    }
    let mut order: Vec<usize> = (0..work.len()).collect();
    order.sort_by(|&a, &b| work[b].total_cmp(&work[a]).then(a.cmp(&b)));
    let mut load = vec![0.0f64; count];
    let mut shards = vec![Vec::new(); count];
    for setting in order {
        // The least-loaded shard; `min_by` keeps the first of equals, the lowest index.
        let (lightest, _) = load.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).context("internal: no shards")?;
        load[lightest] += work[setting];
        shards[lightest].push(setting);
    }
    for settings in &mut shards {
        settings.sort_unstable();
    }
    Ok(shards)
}

/// The runs `shard` trains (all runs with `None`), in run-id order; their run ids are the
/// sweep's.
pub fn runs_of(sweep: &Sweep, shard: Option<Shard>) -> Result<Vec<RunSpec>> {
    let runs = sweep.runs()?;
    let Some(shard) = shard else { return Ok(runs) };
    let mut mine = vec![false; sweep.setting_count()];
    for &setting in &assign(&setting_work(&runs), shard.count)?[shard.index] {
        mine[setting] = true;
    }
    Ok(runs.into_iter().filter(|run| mine[run.setting_id]).collect())
}

/// The dry run's table of all `count` shards: settings, runs and work of each, and the
/// balance (the largest shard's work over the mean).
pub fn describe(sweep: &Sweep, count: usize) -> Result<String> {
    let runs = sweep.runs()?;
    let work = setting_work(&runs);
    let shards = assign(&work, count)?;
    let total: f64 = work.iter().sum();
    let mut out = format!("{count} shard(s), whole settings balanced by estimated work:\n");
    let mut largest = 0.0f64;
    for (index, settings) in shards.iter().enumerate() {
        let shard_work: f64 = settings.iter().map(|&s| work[s]).sum();
        largest = largest.max(shard_work);
        let share = if total > 0.0 { 100.0 * shard_work / total } else { 0.0 };
        out.push_str(&format!(
            "  shard {}: {} settings, {} runs, {:.2} TFLOP ({share:.1}%)\n",
            Shard { index, count }.name(),
            settings.len(),
            settings.len() * sweep.seeds.len(),
            shard_work / 1e12
        ));
    }
    let mean = total / count as f64;
    out.push_str(&format!(
        "balance: the largest shard has {:.3} × the mean work\n",
        if mean > 0.0 { largest / mean } else { 1.0 }
    ));
    Ok(out)
}

/// Give the sweep's directory its `sweep.toml` if it has none yet (the first shard to start
/// writes it; [`crate::output::holds_sweep`] has refused a directory of another sweep).
pub fn write_sweep_file(root: &Path, sweep: &Sweep) -> Result<()> {
    if crate::output::holds_sweep(root, sweep)? {
        return Ok(());
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create output directory {}", root.display()))?;
    let text = sweep.to_toml();
    let path = root.join(crate::output::SWEEP_FILE);
    crate::files::write_atomic(&path, |f| Ok(std::io::Write::write_all(f, text.as_bytes())?))
}
