//! What a resumed sweep trusts, checked before anything is trained or removed: a part is done
//! when runs.parquet lists all its runs (none: it trains; some: the file is not this sweep's),
//! a done part's files are readable, an unfinished part's checkpoint is whole. A damaged file
//! stops the resume with its name, and the directory stays as it was.

use super::parts::{run_ids, Parts};
use crate::checkpoint::Checkpoints;
use crate::metrics::Status;
use crate::output::OutputDir;
use crate::runs_file::listed_run_ids;
use anyhow::{bail, Result};
use polars::prelude::DataFrame;
use std::path::Path;

/// Per part, whether `finished` (the frame of runs.parquet, read from `runs_path`; None
/// before any part is committed) lists its runs.
pub fn done_parts(parts: &Parts, finished: Option<&DataFrame>, runs_path: &Path) -> Result<Vec<bool>> {
    let finished_ids = listed_run_ids(finished, runs_path, None)?;
    let mut done = Vec::with_capacity(parts.len());
    for index in 0..parts.len() {
        let ids = parts.run_ids(index);
        let present = ids.iter().filter(|id| finished_ids.contains(id)).count();
        if present != 0 && present != ids.len() {
            bail!(
                "{} lists {present} of the {} runs of part {index}: it was not written by this sweep",
                runs_path.display(),
                ids.len()
            );
        }
        done.push(present == ids.len());
    }
    let listed = finished.map_or(0, |df| df.height());
    let in_done_parts: usize = (0..parts.len()).filter(|&index| done[index]).map(|index| parts.runs(index).len()).sum();
    if listed != finished_ids.len() || listed != in_done_parts {
        bail!("{} lists runs twice or runs this sweep does not have", runs_path.display());
    }
    Ok(done)
}

/// Check every part of a sweep being resumed, then clear what a killed process left: stale
/// temporary files, the checkpoints of done parts (killed after the commit, before the
/// clean-up), the state files no manifest names; and say what is finished and where each
/// part with a checkpoint goes on (`wave 1/2 stack 3 from epoch 40`). `total_runs`: the runs
/// of the directory.
pub fn prepare(
    output: &OutputDir,
    checkpoints: &Checkpoints,
    parts: &Parts,
    done: &[bool],
    finished: Option<&DataFrame>,
    runs_path: &Path,
    total_runs: usize,
) -> Result<()> {
    let skipped_ids = listed_run_ids(finished, runs_path, Some(Status::Skipped.as_str()))?;
    let standing_ids = |index: usize| -> Result<Vec<usize>> { Ok(run_ids(&parts.standing(index, finished)?.runs)) };
    for (index, &part_done) in done.iter().enumerate() {
        if part_done {
            // A part whose runs were all skipped wrote no metrics or weights.
            if parts.run_ids(index).iter().any(|id| !skipped_ids.contains(id)) {
                output.check_finished_part(index)?;
            }
        } else {
            checkpoints.verify(index, &standing_ids(index)?)?;
        }
    }
    output.remove_stale_temporaries()?;
    let mut resumed = Vec::new();
    for (index, &part_done) in done.iter().enumerate() {
        if part_done {
            checkpoints.remove(index)?;
        } else if let Some(manifest) = checkpoints.manifest(index, &standing_ids(index)?)? {
            checkpoints.remove_states(index, Some(&manifest.state))?;
            resumed.push(format!("{}stack {} from epoch {}", parts.wave_label(index), index + 1, manifest.next_step));
        }
    }
    let resumed = if resumed.is_empty() { String::new() } else { format!("; {}", resumed.join(", ")) };
    eprintln!(
        "resuming {}: {} of {total_runs} runs finished ({} of {} stacks){resumed}",
        output.root().display(),
        finished.map_or(0, |df| df.height()),
        done.iter().filter(|d| **d).count(),
        parts.len()
    );
    Ok(())
}
