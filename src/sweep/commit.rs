//! Committing a part. Its metrics part and weights part are written first, then runs.parquet
//! with the part's runs appended: the commit point. Then `progress.json`, and last the part's
//! checkpoint is removed. A process killed before the commit point trains the part again (from
//! its checkpoint); after it, the part is done, and a resume removes a checkpoint left behind.

use super::progress::Progress;
use crate::checkpoint::Checkpoints;
use crate::config::RunSpec;
use crate::output::{runs_frame, OutputDir};
use crate::train::Trained;
use crate::waves::skipped_result;
use anyhow::{Context, Result};
use polars::prelude::DataFrame;
use std::path::{Path, PathBuf};

/// The runs committed so far (the frame of runs.parquet), and the commits of the next parts.
pub struct Commits<'a> {
    output: &'a OutputDir,
    checkpoints: &'a Checkpoints,
    finished: Option<DataFrame>,
    runs_path: PathBuf,
    /// With seed waves, runs.parquet says why a skipped run was not trained.
    skip_reasons_column: bool,
}

impl<'a> Commits<'a> {
    /// The commits of `output`, which holds runs.parquet at `runs_path` as `finished` (None:
    /// no part committed yet).
    pub fn new(
        output: &'a OutputDir,
        checkpoints: &'a Checkpoints,
        finished: Option<DataFrame>,
        runs_path: &Path,
        skip_reasons_column: bool,
    ) -> Commits<'a> {
        Commits { output, checkpoints, finished, runs_path: runs_path.to_path_buf(), skip_reasons_column }
    }

    /// The runs committed so far, None before any.
    pub fn finished(&self) -> Option<&DataFrame> {
        self.finished.as_ref()
    }

    /// Commit part `index`: its `runs` in plan order, per run why it was skipped (None: it
    /// trained), and what its trained runs gave (None when every run was skipped).
    pub fn part(
        &mut self,
        index: usize,
        runs: &[RunSpec],
        skip_reasons: &[Option<String>],
        trained: Option<Trained>,
        progress: &mut Progress,
    ) -> Result<()> {
        let results = match trained {
            Some(trained) => {
                self.output.write_weights_part(index, &trained.weights)?;
                self.output.write_metrics_part(index, &trained.rows)?;
                trained.results
            }
            None => Vec::new(),
        };
        // Every run of the part in plan order: a trained run's result (in the order the stack
        // was built, which is the part's), or a skipped one's.
        let mut trained_results = results.into_iter();
        let part_results = runs
            .iter()
            .zip(skip_reasons)
            .map(|(run, reason)| match reason {
                Some(_) => Ok(skipped_result(run.run_id)),
                None => trained_results.next().context("internal: a trained run has no result"),
            })
            .collect::<Result<Vec<_>>>()?;
        let pairs: Vec<_> = runs.iter().zip(&part_results).collect();
        let frame = runs_frame(&pairs, self.skip_reasons_column.then_some(skip_reasons))?;
        let mut all = match self.finished.take() {
            Some(mut earlier) => {
                let mismatch = || format!("{} does not have the columns of this sweep", self.runs_path.display());
                earlier.vstack_mut(&frame).with_context(mismatch)?;
                earlier
            }
            None => frame,
        };
        self.output.write_runs(&mut all)?; // the commit point of this part
        self.finished = Some(all);
        progress.committed(self.output, runs.len())?;
        self.checkpoints.remove(index)
    }
}
