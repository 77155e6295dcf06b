//! The parts of a sweep's directory as its plan lists them: the runs of each, in plan order,
//! and its seed wave. A part trains the runs whose setting is still standing when its wave
//! starts; the others are skipped.

use crate::config::{RunSpec, Sweep};
use crate::output::Plan;
use crate::waves::{Departures, Waves};
use anyhow::{bail, Result};
use polars::prelude::DataFrame;
use std::path::Path;

pub struct Parts {
    /// Per part, its runs in plan order.
    runs: Vec<Vec<RunSpec>>,
    /// Per part, its seed wave.
    wave_of: Vec<usize>,
    waves: Waves,
}

/// What a part trains: the runs still standing, and per run of the part (in plan order) why
/// it is skipped, or None if it trains.
pub struct Standing {
    pub runs: Vec<RunSpec>,
    pub skip_reasons: Vec<Option<String>>,
}

impl Parts {
    /// The parts of `plan` (read from `plan_path`) as runs of `sweep`, checked: the runs of a
    /// part share one shape and one wave, and no part comes after a part of a later wave.
    pub fn of(sweep: &Sweep, plan: &Plan, plan_path: &Path) -> Result<Parts> {
        let all_runs = sweep.runs()?;
        let waves = Waves::of(sweep);
        let runs: Vec<Vec<RunSpec>> =
            plan.parts.iter().map(|ids| ids.iter().map(|&id| all_runs[id].clone()).collect()).collect();
        let wave_of: Vec<usize> = plan.parts.iter().map(|ids| waves.of_run(ids[0])).collect();
        for (index, part) in runs.iter().enumerate() {
            if part.iter().any(|r| r.config.stack_key() != part[0].config.stack_key()) {
                bail!("{} is corrupted: part {index} mixes runs of different shapes", plan_path.display());
            }
            // What a wave trains is decided from the results of the waves before it.
            let mixed = part.iter().any(|r| waves.of_run(r.run_id) != wave_of[index]);
            if mixed || (index > 0 && wave_of[index] < wave_of[index - 1]) {
                bail!(
                    "{} is corrupted: part {index} mixes seed waves, or comes after a part of a later wave",
                    plan_path.display()
                );
            }
        }
        Ok(Parts { runs, wave_of, waves })
    }

    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Every run of part `index`, in plan order.
    pub fn runs(&self, index: usize) -> &[RunSpec] {
        &self.runs[index]
    }

    /// The run ids of part `index`, in plan order.
    pub fn run_ids(&self, index: usize) -> Vec<usize> {
        run_ids(&self.runs[index])
    }

    /// "wave 2/3 " for a part of a sweep with waves, nothing with one wave.
    pub fn wave_label(&self, index: usize) -> String {
        self.waves.label(self.wave_of[index])
    }

    /// Whether the sweep has seed waves (its runs.parquet then says why a run was skipped).
    pub fn has_waves(&self) -> bool {
        self.waves.count() > 1
    }

    /// The runs of part `index` that train, from the runs committed so far (`finished`, the
    /// frame of runs.parquet; None before any).
    pub fn standing(&self, index: usize, finished: Option<&DataFrame>) -> Result<Standing> {
        let part = &self.runs[index];
        let skip_reasons = Departures::before(&self.waves, self.wave_of[index], finished)?.skip_reasons(part);
        let runs = part.iter().zip(&skip_reasons).filter(|(_, reason)| reason.is_none()).map(|(run, _)| run.clone());
        Ok(Standing { runs: runs.collect(), skip_reasons })
    }
}

pub fn run_ids(runs: &[RunSpec]) -> Vec<usize> {
    runs.iter().map(|r| r.run_id).collect()
}
