//! Seed waves (`train.seed_waves`): a qualification sweep trains the first seeds of every
//! setting, then the next seeds only of the settings whose seeds have all grokked so far, and
//! so on. A setting qualifies only if every seed groks within its budget, so once one of its
//! runs ends without a grok epoch (it reached its last epoch below 95% test accuracy, or
//! diverged before it got there) the setting can no longer qualify: its later seeds are never
//! trained, and runs.parquet lists them with status `skipped` and the reason.
//!
//! Which settings are still standing is decided at wave boundaries only, from the committed
//! runs.parquet: what wave w trains depends on the results of the waves before it, never on
//! how a wave was chunked or where a killed sweep was resumed. Seeds keep their run ids
//! whatever the wave, so a standing setting's runs are those of a sweep without waves.

use crate::config::{RunSpec, Sweep};
use crate::metrics::{RunResult, Status};
use anyhow::{Context, Result};
use polars::prelude::DataFrame;
use std::collections::BTreeMap;

/// The waves of a sweep: seeds per wave, in the order of the sweep's seeds.
#[derive(Clone, Debug)]
pub struct Waves {
    /// The first seed position of each wave, and the number of seeds.
    starts: Vec<usize>,
    seeds: usize,
}

impl Waves {
    pub fn of(sweep: &Sweep) -> Waves {
        let starts = sweep.waves().into_iter().scan(0, |start, n| {
            let first = *start;
            *start += n;
            Some(first)
        });
        Waves { starts: starts.collect(), seeds: sweep.seeds.len() }
    }

    pub fn count(&self) -> usize {
        self.starts.len()
    }

    /// The wave of run `run_id`: run ids are setting-major and seed-minor ([`Sweep::runs`]),
    /// so its seed is the (run_id mod seeds)-th of the sweep.
    pub fn of_run(&self, run_id: usize) -> usize {
        let position = run_id % self.seeds;
        self.starts.partition_point(|&start| start <= position) - 1
    }

    /// The runs of each wave, each in sweep order.
    pub fn split(&self, runs: Vec<RunSpec>) -> Vec<Vec<RunSpec>> {
        let mut waves = vec![Vec::new(); self.count()];
        for run in runs {
            waves[self.of_run(run.run_id)].push(run);
        }
        waves
    }

    /// "wave 2/3 " for a sweep with waves, nothing for one wave.
    pub fn label(&self, wave: usize) -> String {
        if self.count() > 1 {
            format!("wave {}/{} ", wave + 1, self.count())
        } else {
            String::new()
        }
    }
}

/// The settings that left the sweep before some wave, with the reason for each.
#[derive(Default)]
pub struct Departures {
    reasons: BTreeMap<usize, String>,
}

impl Departures {
    /// The settings with a run of a wave before `wave` that ended without a grok epoch, from
    /// the rows of runs.parquet (`runs`, None before anything finished). The reason names the
    /// setting's first such run.
    pub fn before(waves: &Waves, wave: usize, runs: Option<&DataFrame>) -> Result<Departures> {
        let mut reasons = BTreeMap::new();
        let Some(df) = runs else { return Ok(Departures { reasons }) };
        let ints = |name: &str| -> Result<Vec<Option<i64>>> {
            Ok(df.column(name).with_context(|| format!("runs.parquet has no column `{name}`"))?.i64()?.iter().collect())
        };
        let (run_ids, settings, seeds, grok, trained) =
            (ints("run_id")?, ints("setting_id")?, ints("seed")?, ints("grok_epoch")?, ints("epochs_trained")?);
        let status: Vec<Option<&str>> = df.column("status")?.str()?.iter().collect();
        let mut order: Vec<usize> = (0..df.height()).collect();
        order.sort_by_key(|&row| run_ids[row]);
        for row in order {
            let (Some(run_id), Some(setting)) = (run_ids[row], settings[row]) else { continue };
            let ended = status[row] != Some(Status::Skipped.as_str()) && grok[row].is_none();
            if !ended || waves.of_run(run_id as usize) >= wave || reasons.contains_key(&(setting as usize)) {
                continue;
            }
            let epochs = trained[row].unwrap_or(0);
            let what = if status[row] == Some(Status::Diverged.as_str()) {
                format!("diverged at epoch {} before grokking", epochs - 1)
            } else {
                format!("did not grok within {epochs} epochs")
            };
            let seed = seeds[row].map_or("?".into(), |s| s.to_string());
            reasons.insert(
                setting as usize,
                format!(
                    "its setting cannot qualify: run {run_id} (seed {seed}, wave {}) {what}",
                    waves.of_run(run_id as usize) + 1
                ),
            );
        }
        Ok(Departures { reasons })
    }

    /// Per run of `runs`: why it is skipped (its setting is out), or None if it trains.
    pub fn skip_reasons(&self, runs: &[RunSpec]) -> Vec<Option<String>> {
        runs.iter().map(|run| self.reasons.get(&run.setting_id).cloned()).collect()
    }
}

/// The result of a run that was never trained: nothing was measured.
pub fn skipped_result(run_id: usize) -> RunResult {
    RunResult {
        run_id,
        status: Status::Skipped,
        epochs_trained: 0,
        grok_epoch: None,
        solve_epoch: None,
        lipschitz_at_grok: None,
        final_train_acc: f64::NAN,
        final_test_acc: f64::NAN,
        final_train_loss: f64::NAN,
        final_test_loss: f64::NAN,
    }
}
