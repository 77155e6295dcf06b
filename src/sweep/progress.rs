//! How far a sweep is: `progress.json` in its directory (runs finished of all), and on the
//! terminal a bar over the run-epochs left, or, without a terminal (a batch job, a log file),
//! a line every half minute and one per part done.

use crate::output::OutputDir;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

pub struct Progress {
    /// Over run-epochs: the worst case, every run of every part left trains its whole budget.
    /// Skipped and retired runs take their epochs off as they become known.
    bar: ProgressBar,
    started: Instant,
    total_runs: usize,
    finished_runs: usize,
    parts: usize,
}

impl Progress {
    /// A sweep of `total_runs` runs in `parts` parts, `finished_runs` of them finished before,
    /// with `run_epochs` run-epochs left in the worst case.
    pub fn new(run_epochs: u64, total_runs: usize, finished_runs: usize, parts: usize) -> Progress {
        let bar = ProgressBar::new(run_epochs).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent}% {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Progress { bar, started: Instant::now(), total_runs, finished_runs, parts }
    }

    /// Write `progress.json`.
    pub fn write(&self, output: &OutputDir) -> Result<()> {
        output.write_progress(self.total_runs, self.finished_runs)
    }

    /// `run_epochs` that will not be trained (the skipped runs of a part).
    pub fn skip(&self, run_epochs: u64) {
        self.bar.set_length(self.bar.length().unwrap_or(0).saturating_sub(run_epochs));
    }

    /// The progress of part `index` (labelled `wave`), training `runs` runs for `epochs`
    /// epochs from `first_step` (a checkpoint's, whose epochs count as done).
    pub fn part(&self, index: usize, wave: String, runs: usize, epochs: usize, first_step: usize) -> PartProgress<'_> {
        let done_before = self.bar.position();
        self.bar.set_position(done_before + (first_step * runs) as u64);
        let now = Instant::now();
        PartProgress {
            sweep: self,
            index,
            wave,
            runs,
            epochs,
            done_before,
            first_step,
            trained: 0,
            started: now,
            last_line: now,
        }
    }

    /// The runs of a part are committed: count them, and write `progress.json`.
    pub fn committed(&mut self, output: &OutputDir, runs: usize) -> Result<()> {
        self.finished_runs += runs;
        self.write(output)
    }

    /// Part `index` (labelled `wave`) is done, `skipped` of its runs skipped.
    pub fn part_done(&self, index: usize, wave: &str, skipped: usize) {
        if self.bar.is_hidden() {
            let skipped = if skipped > 0 { format!(" ({skipped} skipped)") } else { String::new() };
            eprintln!(
                "[{:.0} s] {wave}stack {}/{} done{skipped}: {}/{} runs finished",
                self.seconds(),
                index + 1,
                self.parts,
                self.finished_runs,
                self.total_runs
            );
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Seconds since the sweep's training started.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// The progress of one part while it trains.
pub struct PartProgress<'a> {
    sweep: &'a Progress,
    index: usize,
    wave: String,
    runs: usize,
    epochs: usize,
    /// The bar's position when the part started.
    done_before: u64,
    first_step: usize,
    /// Run-epochs trained by this process.
    trained: u64,
    started: Instant,
    last_line: Instant,
}

impl PartProgress<'_> {
    /// Epoch `step` trained, by the `active` runs not retired.
    pub fn step(&mut self, step: usize, active: usize) {
        let sweep = self.sweep;
        self.trained += active as u64;
        sweep.bar.set_position(self.done_before + (self.first_step * self.runs) as u64 + self.trained);
        let rate = self.trained as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let status = format!(
            "{}stack {}/{} ({active}/{} runs active) epoch {step}/{} | runs {}/{} | {rate:.1} run-epochs/s",
            self.wave,
            self.index + 1,
            sweep.parts,
            self.runs,
            self.epochs,
            sweep.finished_runs,
            sweep.total_runs
        );
        if sweep.bar.is_hidden() && self.last_line.elapsed().as_secs() >= 30 {
            eprintln!("[{:.0} s] {status}", sweep.seconds());
            self.last_line = Instant::now();
        }
        sweep.bar.set_message(status);
    }

    /// Every epoch of the part is done: those that retired runs did not need count too.
    pub fn trained(&self) {
        self.sweep.bar.set_position(self.done_before + (self.runs * self.epochs) as u64);
    }
}
