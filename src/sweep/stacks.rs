//! The stacks a new sweep is planned into: per seed wave, its runs grouped by shape and split
//! into chunks that fit the memory budget. A later wave is planned as if every setting were
//! still standing; its parts train the runs of those that are.

use crate::config::{RunSpec, Sweep};
use crate::plan::{chunk_to_fit, group_into_stacks, Pass};
use crate::waves::Waves;
use anyhow::Result;
use candle_core::Device;

/// The stacks of `runs` (of `sweep`), wave after wave, split into chunks that fit in
/// `max_memory` bytes.
pub fn plan_chunks(sweep: &Sweep, runs: Vec<RunSpec>, max_memory: u64, device: &Device) -> Result<Vec<Vec<RunSpec>>> {
    Ok(plan_waves(sweep, runs, max_memory, Pass::on(device))?.into_iter().flatten().collect())
}

/// Per wave, its runs grouped into stacks and split into chunks.
pub(super) fn plan_waves(
    sweep: &Sweep,
    runs: Vec<RunSpec>,
    max_memory: u64,
    pass: Pass,
) -> Result<Vec<Vec<Vec<RunSpec>>>> {
    let waves = Waves::of(sweep).split(runs);
    waves.into_iter().map(|runs| chunk_to_fit(group_into_stacks(runs), max_memory, pass)).collect()
}
