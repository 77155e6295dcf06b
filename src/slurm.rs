//! `grokstack slurm`: a sweep as a Slurm job array. Each array task trains one shard
//! (`grokstack train --shard K/N --resume`) into `DIR/shards/K-of-N/`; Slurm does the
//! queueing, the retries (`--requeue`) and the GPU assignment, grokstack only writes the
//! batch script and, with `--submit`, hands it to `sbatch`.

use crate::files::write_atomic;
use crate::shard::{Shard, SHARDS_DIR};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the batch script and the tasks' logs go, under the sweep's output directory.
pub const SLURM_DIR: &str = "slurm";
pub const SCRIPT_FILE: &str = "array.sbatch";
pub const LOGS_DIR: &str = "logs";

/// Seconds before the time limit at which Slurm sends SIGTERM to the task: enough for the
/// trainer to finish its step and write a checkpoint before the job is killed.
const CHECKPOINT_GRACE_SECONDS: u32 = 120;

/// What each array task asks of the cluster (`#SBATCH` lines); `None` leaves Slurm's default.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// Memory per task in Slurm's notation, e.g. `16G`.
    pub mem: Option<String>,
    /// Time limit in Slurm's notation, e.g. `2:00:00` or `1-12:00:00`.
    pub time: Option<String>,
    pub partition: Option<String>,
    /// At most this many tasks run at once (`--array=0-(N-1)%K`).
    pub max_parallel: Option<usize>,
    /// Further `#SBATCH` lines as given, e.g. `--account=abc` or `#SBATCH --qos=short`.
    pub extra: Vec<String>,
}

/// One sweep as a job array of `shards` tasks.
#[derive(Clone, Debug)]
pub struct ArrayJob {
    /// The sweep's name (the job name is `grokstack-NAME`).
    pub name: String,
    /// The grokstack binary the tasks run (absolute).
    pub binary: PathBuf,
    /// The output directory (absolute); the tasks train `DIR/sweep.toml`.
    pub out: PathBuf,
    pub shards: usize,
    /// `--device` of each task: `cuda` when the task has a GPU (Slurm makes it device 0).
    pub device: String,
    pub resources: Resources,
}

impl ArrayJob {
    pub fn script_path(out: &Path) -> PathBuf {
        out.join(SLURM_DIR).join(SCRIPT_FILE)
    }

    /// The batch script. Every value is checked first, so a typo is reported here rather
    /// than by `sbatch` (or, worse, by a task hours later).
    pub fn script(&self) -> Result<String> {
        self.check()?;
        let r = &self.resources;
        let out = self.out.display();
        let last = self.shards - 1;
        let throttle = r.max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
        let mut lines = vec![
            "#!/bin/bash".to_string(),
            format!(
                "# The sweep `{}` as a Slurm job array: {} shards, one per task. Written by `grokstack slurm`.",
                self.name, self.shards
            ),
            format!(
                "# Each task trains {out}/shards/K-of-{}/ and resumes from its checkpoint when requeued.",
                self.shards
            ),
            format!(
                "# Resubmit unfinished shards with `sbatch --array=K,L {}`; then `grokstack merge {out}`.",
                Self::script_path(&self.out).display()
            ),
            format!("#SBATCH --job-name=grokstack-{}", self.name),
            format!("#SBATCH --array=0-{last}{throttle}"),
            // One log per shard, appended to when the shard is requeued or resubmitted.
            format!("#SBATCH --output={out}/{SLURM_DIR}/{LOGS_DIR}/shard-%a.log"),
            "#SBATCH --open-mode=append".to_string(),
            "#SBATCH --requeue".to_string(),
            "#SBATCH --ntasks=1".to_string(),
        ];
        let mut option = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                lines.push(format!("#SBATCH --{name}={value}"));
            }
        };
        option("gpus-per-task", r.gpus_per_task.filter(|&g| g > 0).map(|g| g.to_string()));
        option("cpus-per-task", r.cpus_per_task.map(|c| c.to_string()));
        option("mem", r.mem.clone());
        option("time", r.time.clone());
        // SIGTERM to the batch shell, which `exec` made the trainer: it checkpoints and exits.
        option("signal", r.time.as_ref().map(|_| format!("B:TERM@{CHECKPOINT_GRACE_SECONDS}")));
        option("partition", r.partition.clone());
        for extra in &r.extra {
            let extra = extra.trim();
            lines.push(if extra.starts_with("#SBATCH") { extra.to_string() } else { format!("#SBATCH {extra}") });
        }
        lines.extend([
            "set -euo pipefail".to_string(),
            "# The CPU pass uses as many threads as the task was given cores.".to_string(),
            "export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"".to_string(),
            format!(
                "echo \"== shard ${{SLURM_ARRAY_TASK_ID}} of {}: job ${{SLURM_JOB_ID}} on $(hostname), $(date -u \
                +%FT%TZ)\"",
                self.shards
            ),
            // The shard count is written out rather than read from SLURM_ARRAY_TASK_COUNT:
            // resubmitting some tasks (`--array=3`) makes a smaller array of the same shards.
            format!(
                "exec {} train {} --out {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{}\" --resume --device {}",
                shell_quote(&self.binary.display().to_string()),
                shell_quote(&self.out.join(crate::output::SWEEP_FILE).display().to_string()),
                shell_quote(&out.to_string()),
                self.shards,
                self.device
            ),
        ]);
        Ok(lines.join("\n") + "\n")
    }

    fn check(&self) -> Result<()> {
        let r = &self.resources;
        if self.shards == 0 {
            bail!("--shards 0: expected at least one shard");
        }
        for (what, path) in [("--out", &self.out), ("the grokstack binary", &self.binary)] {
            let text = path.display().to_string();
            // `#SBATCH --output` takes the path unquoted and expands `%` patterns in it.
            if !path.is_absolute() || text.contains(|c: char| c.is_whitespace() || c == '%' || c == '"' || c == '\'') {
                bail!("{what} {text}: a Slurm batch script needs an absolute path without spaces, quotes or `%`");
            }
        }
        if r.gpus_per_task.is_some_and(|g| g > 1) {
            bail!(
                "--gpus-per-task {}: a task trains on one GPU; use more --shards to use more GPUs",
                r.gpus_per_task.unwrap_or(0)
            );
        }
        if r.cpus_per_task == Some(0) {
            bail!("--cpus-per-task 0: expected at least 1");
        }
        if r.max_parallel == Some(0) {
            bail!("--max-parallel 0: expected at least 1 task at a time");
        }
        if let Some(mem) = &r.mem {
            check_memory(mem)?;
        }
        if let Some(time) = &r.time {
            check_time(time)?;
        }
        if let Some(partition) = &r.partition {
            if partition.is_empty() || partition.contains(|c: char| c.is_whitespace()) {
                bail!("--partition {partition:?}: expected a partition name (a comma-separated list for several)");
            }
        }
        for extra in &r.extra {
            if extra.contains('\n') || extra.trim().is_empty() {
                bail!("--extra {extra:?}: expected one #SBATCH option on one line, e.g. --extra '--account=abc'");
            }
            if !extra.trim().trim_start_matches("#SBATCH").trim().starts_with('-') {
                bail!("--extra {extra:?}: expected an sbatch option, e.g. --extra '--qos=short'");
            }
        }
        Ok(())
    }

    /// Write `script` (this job's [`ArrayJob::script`]) into `DIR/slurm/`, and make the logs'
    /// folder, which Slurm does not.
    pub fn write(&self, script: &str) -> Result<PathBuf> {
        let path = Self::script_path(&self.out);
        let logs = self.out.join(SLURM_DIR).join(LOGS_DIR);
        std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
        write_atomic(&path, |f| Ok(f.write_all(script.as_bytes())?))?;
        Ok(path)
    }
}

/// Submit a batch script with `sbatch`; returns the job id.
pub fn submit(script: &Path) -> Result<String> {
    let output = Command::new("sbatch").arg("--parsable").arg(script).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run sbatch ({e}): is this a Slurm login node? The script is {}; submit it with `sbatch {}`",
            script.display(),
            script.display()
        )
    })?;
    if !output.status.success() {
        bail!("sbatch {} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch {} printed no job id: {:?}", script.display(), stdout.trim());
    }
    Ok(id)
}

/// Slurm's memory: a number with an optional unit K, M, G or T (megabytes without one).
fn check_memory(mem: &str) -> Result<()> {
    let digits = mem.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(mem);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.parse::<u64>().ok() == Some(0) {
        bail!(
            "--mem {mem}: expected Slurm's notation, a positive number with an optional unit K, M, G or T (e.g. 16G)"
        );
    }
    Ok(())
}

/// Slurm's time limits: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M` or `D-H:M:S`.
fn check_time(time: &str) -> Result<()> {
    let number = |s: &str| !s.is_empty() && s.len() <= 6 && s.chars().all(|c| c.is_ascii_digit());
    let (days, clock) = match time.split_once('-') {
        Some((days, clock)) => (Some(days), clock),
        None => (None, time),
    };
    let fields: Vec<&str> = clock.split(':').collect();
    let fits = days.is_none_or(number) && (1..=3).contains(&fields.len()) && fields.iter().all(|f| number(f));
    if !fits {
        bail!("--time {time}: expected Slurm's notation, e.g. 90 (minutes), 2:00:00 or 1-12:00:00");
    }
    Ok(())
}

/// `text` as one word for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// What `grokstack slurm` asks for, before anything is written.
pub struct Request<'a> {
    pub sweep: &'a crate::config::Sweep,
    pub out: &'a Path,
    pub shards: usize,
    /// `--device`, or (when `None`) `cuda` for tasks with a GPU and `cpu` otherwise.
    pub device: Option<String>,
    pub resources: Resources,
}

/// Check the request against the output directory, then write the resolved `DIR/sweep.toml`
/// (the file every task trains) and the batch script. Returns the script's path.
///
/// A directory that holds a different sweep, or shards of another shard count (whose runs a
/// merge would see twice), is refused before anything is written.
pub fn prepare(request: Request) -> Result<PathBuf> {
    let out = std::path::absolute(request.out).with_context(|| format!("--out {}", request.out.display()))?;
    let binary = std::env::current_exe().context("cannot find this grokstack binary's path")?;
    let device = request.device.unwrap_or_else(|| {
        if request.resources.gpus_per_task.unwrap_or(0) > 0 {
            "cuda".into()
        } else {
            "cpu".into()
        }
    });
    let job = ArrayJob {
        name: request.sweep.name.clone(),
        binary,
        out: out.clone(),
        shards: request.shards,
        device,
        resources: request.resources,
    };
    let script = job.script()?;
    let settings = request.sweep.setting_count();
    if request.shards > settings {
        bail!(
            "--shards {}: the sweep has {settings} settings, and a shard holds whole settings (all their seeds)",
            request.shards
        );
    }
    crate::output::holds_sweep(&out, request.sweep)?;
    if let Some(other) = other_shard_counts(&out, request.shards)?.first() {
        bail!(
            "{} holds shards of a {other}-shard split ({}); a {}-shard array would train their runs again. Use \
                --shards {other}, or a new --out directory",
            out.display(),
            out.join(SHARDS_DIR).display(),
            request.shards
        );
    }
    crate::shard::write_sweep_file(&out, request.sweep)?;
    job.write(&script)
}

/// The shard counts other than `shards` that `DIR/shards/K-of-N/` folders already use.
fn other_shard_counts(out: &Path, shards: usize) -> Result<Vec<usize>> {
    let dir = out.join(SHARDS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => bail!("cannot read {}: {e}", dir.display()),
    };
    let mut counts = Vec::new();
    for entry in entries {
        let name = entry.with_context(|| format!("cannot read {}", dir.display()))?.file_name();
        let count = Shard::from_name(&name.to_string_lossy()).map(|s| s.count);
        if let Some(n) = count.filter(|&n| n != shards && !counts.contains(&n)) {
            counts.push(n);
        }
    }
    counts.sort();
    Ok(counts)
}
