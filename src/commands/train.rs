//! `grokstack train SWEEP --out DIR`: train every run of a sweep (or of one shard of it), or
//! with `--dry-run` print its plan.

use super::Ending;
use crate::cli::TrainArgs;
use crate::config::Sweep;
use crate::device::parse_device;
use crate::plan::{default_max_memory, Pass};
use crate::shard::Shard;
use crate::size::parse_bytes;
use crate::sweep::{describe_plan, train_sweep_with, SweepSummary, TrainOptions};
use crate::{disk, interrupt};
use anyhow::{anyhow, Result};
use candle_core::Device;
use std::path::Path;

pub fn run(args: TrainArgs) -> Result<Ending> {
    let TrainArgs { sweep: sweep_path, out, overrides, device, dry_run, max_memory, resume, shard: shard_text } = args;
    let sweep = Sweep::load(&sweep_path, &overrides)?;
    let shard = shard_text.as_deref().map(|text| Shard::parse(text, |name| std::env::var(name).ok())).transpose()?;
    // A dry run plans a GPU sweep even where the GPU cannot be opened (on RAM's budget).
    let opened = if dry_run { parse_device(&device).ok() } else { Some(parse_device(&device)?) };
    let max_memory = match max_memory {
        Some(text) => parse_bytes(&text)?,
        None => default_max_memory(opened.as_ref().unwrap_or(&Device::Cpu)),
    };
    if dry_run {
        let pass = if device == "cpu" { Pass::Cpu } else { Pass::Tensors };
        print!("{}", describe_plan(&sweep, max_memory, pass, shard)?);
        return Ok(Ending::Success);
    }
    let out = out.ok_or_else(|| anyhow!("--out DIR is required (or use --dry-run)"))?;
    let device = opened.ok_or_else(|| anyhow!("internal: no device"))?;
    interrupt::install();
    let shard_arg = shard_text.map_or(String::new(), |text| format!(" --shard {text}"));
    let (sweep_file, out_dir) = (sweep_path.display(), out.display());
    let resume_command = format!("grokstack train {sweep_file} --out {out_dir}{shard_arg} --resume");
    let options = TrainOptions { max_memory, resume, shard };
    let summary = train_sweep_with(&sweep, &out, &device, &options)
        .map_err(|error| disk::with_hint(error, || format!("free some space, then continue with: {resume_command}")))?;
    let checkpoints = checkpoint_note(&summary);
    if summary.interrupted {
        eprintln!("interrupted; continue with --resume: {resume_command}{checkpoints}");
        return Ok(Ending::Interrupted);
    }
    let dir = shard.map_or(out.clone(), |s| s.dir(&out));
    eprintln!("{}", trained_line(&summary, &checkpoints, &dir));
    Ok(Ending::Success)
}

/// What the checkpoints cost, for the last line (nothing without checkpoints).
fn checkpoint_note(summary: &SweepSummary) -> String {
    if summary.checkpoints == 0 {
        return String::new();
    }
    format!(
        "; {} checkpoint(s), training waited {:.2} s for them ({:.2}% of the time)",
        summary.checkpoints,
        summary.checkpoint_seconds,
        100.0 * summary.checkpoint_seconds / summary.seconds.max(1e-9)
    )
}

/// The last line of a sweep trained into `dir`: runs, time, how they ended.
fn trained_line(summary: &SweepSummary, checkpoints: &str, dir: &Path) -> String {
    let earlier = if summary.finished_before > 0 {
        format!(" ({} finished before)", summary.finished_before)
    } else {
        String::new()
    };
    let outcomes = &summary.outcomes;
    let skipped = if outcomes.skipped > 0 {
        format!(
            "; {} runs skipped by seed waves, saving up to {} run-epochs",
            outcomes.skipped, outcomes.skipped_run_epochs
        )
    } else {
        String::new()
    };
    format!(
        "trained {} runs{earlier} in {:.1} s: {} grokked, {} diverged{skipped}{checkpoints} → {}",
        summary.runs - outcomes.skipped,
        summary.seconds,
        outcomes.grokked,
        outcomes.diverged,
        dir.display()
    )
}
