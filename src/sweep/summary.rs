//! What a `grokstack train` reports when it ends: the runs, how they ended, the time, and what
//! the checkpoints cost.

use crate::metrics::Status;
use anyhow::Result;
use polars::prelude::DataFrame;

pub struct SweepSummary {
    pub runs: usize,
    /// Runs finished by an earlier process (a resumed sweep).
    pub finished_before: usize,
    pub outcomes: Outcomes,
    pub seconds: f64,
    /// Stopped by Ctrl-C or SIGTERM after writing a checkpoint.
    pub interrupted: bool,
    pub checkpoints: usize,
    /// Time the training waited for checkpoints (they are written in the background).
    pub checkpoint_seconds: f64,
}

/// How the finished runs of a sweep ended.
#[derive(Default)]
pub struct Outcomes {
    pub grokked: usize,
    pub diverged: usize,
    /// Runs never trained (seed waves), and the epoch budgets they did not spend.
    pub skipped: usize,
    pub skipped_run_epochs: u64,
}

impl Outcomes {
    /// The outcomes of the runs in `finished` (the frame of runs.parquet; None: no run).
    pub fn of(finished: Option<&DataFrame>) -> Result<Outcomes> {
        let Some(df) = finished else { return Ok(Outcomes::default()) };
        let grok = df.column("grok_epoch")?;
        let status = df.column("status")?.str()?;
        let is = |s: Option<&str>, wanted: Status| s == Some(wanted.as_str());
        let count = |wanted: Status| status.iter().filter(|s| is(*s, wanted)).count();
        let budgets = df.column("train.epochs")?.i64()?;
        let skipped_budgets = status.iter().zip(budgets.iter()).filter(|(s, _)| is(*s, Status::Skipped));
        let skipped_run_epochs = skipped_budgets.map(|(_, e)| e.unwrap_or(0).max(0) as u64).sum();
        Ok(Outcomes {
            grokked: grok.len() - grok.null_count(),
            diverged: count(Status::Diverged),
            skipped: count(Status::Skipped),
            skipped_run_epochs,
        })
    }
}
