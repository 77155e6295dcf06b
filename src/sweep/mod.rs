//! Training a whole sweep: plan the stacks (the parts of its directory), train them one after
//! another, and commit each part's results before the next starts.
//!
//! `stacks` plans a new sweep and `dry_run` describes that plan; a sweep's directory is
//! opened with its plan here, `parts` reads the plan back as runs, `resume` checks what an
//! earlier process left, `part` trains each part, `progress` reports, and `commit` writes a
//! part's results.

mod commit;
mod dry_run;
mod part;
mod parts;
mod progress;
mod resume;
mod stacks;
mod summary;

pub use dry_run::describe_plan;
pub use stacks::plan_chunks;
pub use summary::{Outcomes, SweepSummary};

use crate::checkpoint::{Checkpoints, Writer};
use crate::config::Sweep;
use crate::interrupt;
use crate::output::{holds_sweep, OutputDir, Plan, PLAN_FILE, RUNS_FILE, SWEEP_FILE};
use crate::shard::{self, Shard};
use anyhow::Result;
use candle_core::Device;
use commit::Commits;
use part::{run_epochs, PartTrainer};
use parts::{run_ids, Parts};
use progress::Progress;
use std::path::Path;

pub struct TrainOptions {
    /// Memory budget of one stack (bytes), for a sweep that starts.
    pub max_memory: u64,
    /// Continue the sweep already in the directory.
    pub resume: bool,
    /// Train only this shard, into `out/shards/K-of-N/`.
    pub shard: Option<Shard>,
}

/// Train every run of `sweep` into `out`, in stacks of at most `max_memory` bytes.
pub fn train_sweep(sweep: &Sweep, out: &Path, device: &Device, max_memory: u64) -> Result<SweepSummary> {
    train_sweep_with(sweep, out, device, &TrainOptions { max_memory, resume: false, shard: None })
}

/// Train `sweep` into `out`, or continue it there (`options.resume`): stacks whose runs are
/// in runs.parquet are done and skipped, the others start from their checkpoint or their
/// first epoch. The result files are the same as those of a sweep never interrupted.
/// A shard (`options.shard`) is trained the same way into its own directory in `out`, which
/// gets the sweep's `sweep.toml` (and must hold no other sweep).
pub fn train_sweep_with(sweep: &Sweep, out: &Path, device: &Device, options: &TrainOptions) -> Result<SweepSummary> {
    let Opened { output, existing, plan, total_runs } = open(sweep, out, device, options)?;
    let root = output.root();
    let parts = Parts::of(sweep, &plan, &root.join(PLAN_FILE))?;
    let checkpoints = Checkpoints::new(root);
    let runs_path = root.join(RUNS_FILE);
    let finished = if existing { output.read_runs()? } else { None };
    let done = resume::done_parts(&parts, finished.as_ref(), &runs_path)?;
    let finished_before = finished.as_ref().map_or(0, |df| df.height());
    if existing {
        resume::prepare(&output, &checkpoints, &parts, &done, finished.as_ref(), &runs_path, total_runs)?;
    }
    let mut commits = Commits::new(&output, &checkpoints, finished, &runs_path, parts.has_waves());
    let left = (0..parts.len()).filter(|&index| !done[index]);
    let worst_case = left.clone().map(|index| parts.runs(index)).map(|runs| run_epochs(runs, runs.len())).sum();
    let mut progress = Progress::new(worst_case, total_runs, finished_before, parts.len());
    progress.write(&output)?;
    let writer = Writer::new(checkpoints.clone());
    let mut trainer = PartTrainer { device, parts: &parts, checkpoints: &checkpoints, writer };
    let mut interrupted = false;
    for index in left {
        if interrupt::requested() || !trainer.run(index, &mut commits, &mut progress)? {
            interrupted = true;
            break;
        }
    }
    progress.finish();
    Ok(SweepSummary {
        runs: total_runs,
        finished_before,
        outcomes: Outcomes::of(commits.finished())?,
        seconds: progress.seconds(),
        interrupted,
        checkpoints: trainer.writer.written,
        checkpoint_seconds: trainer.writer.blocked_seconds,
    })
}

/// The directory this process trains into (the sweep's, or its shard's), opened.
struct Opened {
    output: OutputDir,
    /// Whether it held the sweep already (a resume).
    existing: bool,
    plan: Plan,
    /// The runs it trains.
    total_runs: usize,
}

/// Open the directory of `sweep` (or of its shard) in `out` with its plan. A new sweep is
/// planned before its directory is made, so a plan that fails (a run too large for
/// --max-memory) leaves nothing behind; a resumed one keeps the plan it had.
fn open(sweep: &Sweep, out: &Path, device: &Device, options: &TrainOptions) -> Result<Opened> {
    let root = match options.shard {
        Some(shard) => {
            holds_sweep(out, sweep)?;
            shard.dir(out)
        }
        None => out.to_path_buf(),
    };
    let own_runs = shard::runs_of(sweep, options.shard)?;
    let own_ids = run_ids(&own_runs);
    let new_plan = if root.join(SWEEP_FILE).exists() {
        None
    } else {
        let stacks = plan_chunks(sweep, own_runs, options.max_memory, device)?;
        let parts = stacks.iter().map(|stack| run_ids(stack)).collect();
        Some(Plan { format: 1, parts, seed_waves: sweep.seed_waves.clone(), merged_from: Vec::new() })
    };
    if options.shard.is_some() {
        shard::write_sweep_file(out, sweep)?;
    }
    let (output, existing) = OutputDir::open(&root, sweep, options.resume)?;
    let plan = match new_plan {
        Some(plan) if !existing => {
            output.start(sweep, &plan)?;
            plan
        }
        _ => output.read_plan(sweep, &own_ids)?,
    };
    Ok(Opened { output, existing, plan, total_runs: own_ids.len() })
}
