//! `runs.parquet` read back: the runs a directory (a sweep's, a shard's or a merge's) lists as
//! finished. A part is committed when this file lists its runs, so what it lists is what a
//! resume, a merge and the analysis trust.

use crate::files::read_parquet;
use anyhow::{Context, Result};
use polars::prelude::DataFrame;
use std::collections::HashSet;
use std::path::Path;

/// The runs file at `path`, or None where there is none yet (no part committed).
pub fn read(path: &Path) -> Result<Option<DataFrame>> {
    if !path.exists() {
        return Ok(None);
    }
    read_parquet(path).map(Some)
}

/// The run ids listed in `frame`, read from the runs file at `path` (with `status`, only the
/// runs of that status, e.g. `"skipped"`).
pub fn listed_run_ids(frame: Option<&DataFrame>, path: &Path, status: Option<&str>) -> Result<HashSet<usize>> {
    let Some(df) = frame else { return Ok(HashSet::new()) };
    let ids = || -> Result<HashSet<usize>> {
        let ids = df.column("run_id")?.i64()?;
        let statuses = df.column("status")?.str()?;
        ids.iter()
            .zip(statuses.iter())
            .filter(|(_, s)| status.is_none_or(|wanted| *s == Some(wanted)))
            .map(|(id, _)| id.and_then(|id| usize::try_from(id).ok()).context("an invalid run_id"))
            .collect()
    };
    ids().with_context(|| format!("{} has no valid run_id and status columns", path.display()))
}
