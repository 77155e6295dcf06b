//! One part of a sweep trained and committed: its standing runs train from their checkpoint
//! (or from their first epoch) while the progress shows it, then the part is committed.

use super::commit::Commits;
use super::parts::{run_ids, Parts};
use super::progress::Progress;
use crate::checkpoint::{Checkpoints, Writer};
use crate::config::RunSpec;
use crate::interrupt;
use crate::train::{Control, Outcome, Stack, Trained, Training};
use anyhow::{Context, Result};
use candle_core::Device;

/// What trains the parts of a sweep, one after another.
pub struct PartTrainer<'a> {
    pub device: &'a Device,
    pub parts: &'a Parts,
    pub checkpoints: &'a Checkpoints,
    /// Writes the checkpoints in the background.
    pub writer: Writer,
}

impl PartTrainer<'_> {
    /// Train and commit part `index`. False: the sweep was interrupted (after a checkpoint)
    /// and the part was not committed.
    pub fn run(&mut self, index: usize, commits: &mut Commits, progress: &mut Progress) -> Result<bool> {
        let part = self.parts.runs(index);
        let standing = self.parts.standing(index, commits.finished())?;
        let skipped = part.len() - standing.runs.len();
        progress.skip(run_epochs(part, skipped));
        let trained = if standing.runs.is_empty() {
            None
        } else {
            let Some(trained) = self.train(index, standing.runs, progress)? else { return Ok(false) };
            Some(trained)
        };
        commits.part(index, part, &standing.skip_reasons, trained, progress)?;
        progress.part_done(index, &self.parts.wave_label(index), skipped);
        Ok(true)
    }

    /// Train the standing `runs` of part `index`. None: the sweep was interrupted.
    fn train(&mut self, index: usize, runs: Vec<RunSpec>, progress: &Progress) -> Result<Option<Trained>> {
        let (epochs, checkpoint_every) = (self.parts.runs(index)[0].config.epochs, runs[0].config.checkpoint_every);
        let ids = run_ids(&runs);
        let training = match self.checkpoints.load(index, &ids)? {
            Some((_, path, state)) => Training::resume(runs, &state, self.device)
                .with_context(|| format!("cannot resume part {index} from checkpoint {}", path.display()))?,
            None => Training::new(Stack::new(runs, self.device)?),
        };
        let mut shown = progress.part(index, self.parts.wave_label(index), ids.len(), epochs, training.next_step());
        let writer = &mut self.writer;
        let mut save = |t: &Training| writer.save(index, t);
        let control = Control { checkpoint_every, interrupted: &interrupt::requested, checkpoint: &mut save };
        let outcome = training.run(control, |step, active| shown.step(step, active));
        // The last checkpoint is on disk (or its error known) before the part's results are
        // committed, before its checkpoint is removed, and before an interrupted sweep exits.
        self.writer.wait()?;
        match outcome? {
            Outcome::Interrupted => Ok(None),
            Outcome::Finished(trained) => {
                shown.trained();
                Ok(Some(trained))
            }
        }
    }
}

/// The run-epochs of `runs` runs of `part` if each trains the part's whole budget.
pub fn run_epochs(part: &[RunSpec], runs: usize) -> u64 {
    (runs as u64).saturating_mul(part[0].config.epochs as u64)
}
