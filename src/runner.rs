//! Training a whole sweep: plan the stacks, train them one after another, and write each
//! stack's results before the next starts.

use crate::checkpoint::{Checkpoints, Writer};
use crate::config::{RunSpec, Sweep};
use crate::interrupt;
use crate::metrics::Status;
use crate::output::{holds_sweep, runs_frame, OutputDir, Plan, PLAN_FILE, RUNS_FILE, SWEEP_FILE};
use crate::shard::{self, Shard};
use crate::plan::{chunk_to_fit, flops_per_run_epoch, group_into_stacks, human_bytes, stack_bytes, Pass};
use crate::train::{Control, Outcome, Stack, Training};
use crate::waves::{skipped_result, Departures, Waves};
use anyhow::{bail, Context, Result};
use polars::prelude::DataFrame;
use std::collections::HashSet;
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;

/// Parse `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        _ => {
            let ordinal = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("--device {name}: expected cpu, cuda or cuda:N"))?,
                None => anyhow::bail!("--device {name}: expected cpu, cuda or cuda:N"),
            };
            if !candle_core::utils::cuda_is_available() {
                anyhow::bail!("--device {name}: this grokstack was built without CUDA (build it with `make cuda`)");
            }
            // candle's error carries a backtrace after its first line; the cause is that line.
            Device::new_cuda(ordinal).map_err(|e| {
                let cause = e.to_string();
                anyhow::anyhow!("--device {name}: no CUDA device found ({})", cause.lines().next().unwrap_or_default())
            })
        }
    }
}

/// The stacks of `runs` (of `sweep`), wave after wave, split into chunks that fit in
/// `max_memory` bytes.
pub fn plan_chunks(sweep: &Sweep, runs: Vec<RunSpec>, max_memory: u64, device: &Device) -> Result<Vec<Vec<RunSpec>>> {
    Ok(plan_waves(sweep, runs, max_memory, Pass::on(device))?.into_iter().flatten().collect())
}

/// Per wave, its runs grouped into stacks and split into chunks. A later wave is planned as
/// if every setting were still standing; its parts train the runs of those that are.
fn plan_waves(sweep: &Sweep, runs: Vec<RunSpec>, max_memory: u64, pass: Pass) -> Result<Vec<Vec<Vec<RunSpec>>>> {
    Waves::of(sweep).split(runs).into_iter().map(|runs| chunk_to_fit(group_into_stacks(runs), max_memory, pass)).collect()
}

/// What `--dry-run` prints: runs, waves, stacks, memory and FLOPs; with a shard, the work of
/// every shard, then the plan of this one.
pub fn describe_plan(sweep: &Sweep, max_memory: u64, pass: Pass, shard: Option<Shard>) -> Result<String> {
    let mut out = format!("sweep `{}`: {} runs = {} settings × {} seeds\n", sweep.name, sweep.run_count(), sweep.setting_count(), sweep.seeds.len());
    let runs = shard::runs_of(sweep, shard)?;
    if let Some(shard) = shard {
        out.push_str(&shard::describe(sweep, shard.count)?);
        out.push_str(&format!("shard {}: {} runs = {} settings × {} seeds\n", shard.name(), runs.len(), runs.len() / sweep.seeds.len(), sweep.seeds.len()));
    }
    let waves = Waves::of(sweep);
    if waves.count() > 1 {
        out.push_str(&format!(
            "seed waves {:?}: wave 1 trains the first {} seeds of every setting; each later wave only the settings whose seeds have all grokked so far\n",
            sweep.seed_waves, sweep.seed_waves[0]
        ));
    }
    let planned = plan_waves(sweep, runs, max_memory, pass)?;
    out.push_str(&format!("{} stack(s) within --max-memory {}:\n", planned.iter().map(Vec::len).sum::<usize>(), human_bytes(max_memory as f64)));
    // Per wave: (run-epochs, FLOPs) if every run trains its whole budget.
    let mut work = Vec::new();
    let mut i = 0;
    for (wave, stacks) in planned.iter().enumerate() {
        let (mut run_epochs, mut wave_flops) = (0usize, 0.0);
        for stack in stacks {
            let c = &stack[0].config;
            let stack_memory = stack_bytes(c, stack.len(), pass);
            let flops = flops_per_run_epoch(c) * c.epochs as f64 * stack.len() as f64;
            run_epochs += c.epochs * stack.len();
            wave_flops += flops;
            let model = c.arch().describe();
            out.push_str(&format!(
                "  {}stack {i}: R = {}, {} rows ({} train, {} per step), {} classes, {model}, {:?}, {:?}, {} epochs: memory ≈ {}, {:.1} TFLOP\n",
                waves.label(wave),
                stack.len(),
                c.n_examples(),
                c.n_train(),
                if c.batch_size == 0 { c.n_train() } else { c.batch_size.min(c.n_train()) },
                c.classes(),
                c.optimizer,
                c.precision,
                c.epochs,
                human_bytes(stack_memory as f64),
                flops / 1e12
            ));
            i += 1;
        }
        work.push((run_epochs, wave_flops));
    }
    let (run_epochs, total_flops) = work.iter().fold((0, 0.0), |(e, f), (we, wf)| (e + we, f + wf));
    if waves.count() == 1 {
        out.push_str(&format!("total: {:.2} TFLOP (an MLP's first layer counted as a dense matmul)\n", total_flops / 1e12));
        return Ok(out);
    }
    // Retirement (train.stop) only lowers these: they count every trained run's whole budget.
    let (first_epochs, first_flops) = work[0];
    let fraction = first_epochs as f64 / run_epochs.max(1) as f64;
    let percent = |q: f64| 100.0 * (fraction + q * (1.0 - fraction));
    out.push_str(&format!(
        "work, worst case (every setting qualifies, every run trains its whole budget): {run_epochs} run-epochs, {:.2} TFLOP (an MLP's first layer counted as a dense matmul)\n\
         work if every setting leaves in wave 1: {first_epochs} run-epochs ({:.1}%), {:.2} TFLOP\n\
         expected if a fraction q of the settings qualify and the others leave in wave 1: {:.1}% + q × {:.1}% of the worst case (q = 0.25: {:.1}%, q = 0.5: {:.1}%, q = 0.75: {:.1}%)\n",
        total_flops / 1e12,
        percent(0.0),
        first_flops / 1e12,
        percent(0.0),
        100.0 - percent(0.0),
        percent(0.25),
        percent(0.5),
        percent(0.75)
    ));
    Ok(out)
}

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

pub struct TrainOptions {
    /// Memory budget of one stack (bytes), for a sweep that starts.
    pub max_memory: u64,
    /// Continue the sweep already in the directory.
    pub resume: bool,
    /// Train only this shard, into `out/shards/K-of-N/`.
    pub shard: Option<Shard>,
}

/// Train every run of `sweep` into `out`, in stacks of at most `max_memory` bytes.
pub fn train_sweep(sweep: &Sweep, out: &Path, device: &Device, max_memory: u64) -> Result<SweepSummary> {
    train_sweep_with(sweep, out, device, &TrainOptions { max_memory, resume: false, shard: None })
}

/// Train `sweep` into `out`, or continue it there (`options.resume`): stacks whose runs are
/// in runs.parquet are done and skipped, the others start from their checkpoint or their
/// first epoch. The result files are the same as those of a sweep never interrupted.
/// A shard (`options.shard`) is trained the same way into its own directory in `out`, which
/// gets the sweep's `sweep.toml` (and must hold no other sweep).
pub fn train_sweep_with(sweep: &Sweep, out: &Path, device: &Device, options: &TrainOptions) -> Result<SweepSummary> {
    let root = match options.shard {
        Some(shard) => {
            holds_sweep(out, sweep)?;
            shard.dir(out)
        }
        None => out.to_path_buf(),
    };
    let sweep_dir = out;
    let out = root.as_path();
    let all_runs = sweep.runs()?;
    let own_runs = shard::runs_of(sweep, options.shard)?;
    let own_ids: Vec<usize> = own_runs.iter().map(|r| r.run_id).collect();
    let total_runs = own_runs.len();
    let waves = Waves::of(sweep);
    // A new sweep is planned before its directory is made, so a plan that fails (a run too
    // large for --max-memory) leaves nothing behind; a resumed one keeps the plan it had.
    let new_plan = if out.join(SWEEP_FILE).exists() {
        None
    } else {
        let parts = plan_chunks(sweep, own_runs, options.max_memory, device)?.iter().map(|c| c.iter().map(|r| r.run_id).collect()).collect();
        Some(Plan { format: 1, parts, seed_waves: sweep.seed_waves.clone(), merged_from: Vec::new() })
    };
    if options.shard.is_some() {
        shard::write_sweep_file(sweep_dir, sweep)?;
    }
    let (output, existing) = OutputDir::open(out, sweep, options.resume)?;
    let plan = match new_plan {
        Some(plan) if !existing => {
            output.start(sweep, &plan)?;
            plan
        }
        _ => output.read_plan(sweep, &own_ids)?,
    };
    let plan_path = out.join(PLAN_FILE);
    let stacks: Vec<Vec<RunSpec>> = plan.parts.iter().map(|ids| ids.iter().map(|&id| all_runs[id].clone()).collect()).collect();
    let part_waves: Vec<usize> = plan.parts.iter().map(|ids| waves.of_run(ids[0])).collect();
    for (index, runs) in stacks.iter().enumerate() {
        if runs.iter().any(|r| r.config.stack_key() != runs[0].config.stack_key()) {
            bail!("{} is corrupted: part {index} mixes runs of different shapes", plan_path.display());
        }
        // What a wave trains is decided from the results of the waves before it.
        if runs.iter().any(|r| waves.of_run(r.run_id) != part_waves[index]) || (index > 0 && part_waves[index] < part_waves[index - 1]) {
            bail!("{} is corrupted: part {index} mixes seed waves, or comes after a part of a later wave", plan_path.display());
        }
    }
    let checkpoints = Checkpoints::new(out);
    let mut finished_frame = if existing { output.read_runs()? } else { None };
    let runs_path = out.join(RUNS_FILE);
    let finished_ids = listed_run_ids(finished_frame.as_ref(), None).with_context(|| format!("{} has no valid run_id and status columns", runs_path.display()))?;
    let mut done = Vec::with_capacity(stacks.len());
    for (index, ids) in plan.parts.iter().enumerate() {
        let present = ids.iter().filter(|id| finished_ids.contains(id)).count();
        if present != 0 && present != ids.len() {
            bail!("{} lists {present} of the {} runs of part {index}: it was not written by this sweep", runs_path.display(), ids.len());
        }
        done.push(present == ids.len());
    }
    let listed = finished_frame.as_ref().map_or(0, |df| df.height());
    if listed != finished_ids.len() || listed != done.iter().zip(&plan.parts).filter(|(d, _)| **d).map(|(_, ids)| ids.len()).sum::<usize>() {
        bail!("{} lists runs twice or runs this sweep does not have", runs_path.display());
    }
    let finished_before = finished_ids.len();
    // The runs of part `index` that train: those whose setting is still standing in its wave.
    let standing = |index: usize, frame: Option<&DataFrame>| -> Result<(Vec<RunSpec>, Vec<Option<String>>)> {
        let reasons = Departures::before(&waves, part_waves[index], frame)?.skip_reasons(&stacks[index]);
        let trained = stacks[index].iter().zip(&reasons).filter(|(_, reason)| reason.is_none()).map(|(run, _)| run.clone()).collect();
        Ok((trained, reasons))
    };
    let run_ids = |runs: &[RunSpec]| runs.iter().map(|r| r.run_id).collect::<Vec<usize>>();
    if existing {
        // Everything is checked before anything is trained or removed: a damaged file stops
        // the resume with its name, and the directory stays as it was.
        let skipped_ids = listed_run_ids(finished_frame.as_ref(), Some(Status::Skipped))?;
        for (index, ids) in plan.parts.iter().enumerate() {
            if done[index] {
                // A part whose runs were all skipped wrote no metrics or weights.
                if ids.iter().any(|id| !skipped_ids.contains(id)) {
                    output.check_finished_part(index)?;
                }
            } else {
                checkpoints.verify(index, &run_ids(&standing(index, finished_frame.as_ref())?.0))?;
            }
        }
        output.remove_stale_temporaries()?;
        let mut resumed = Vec::new();
        for (index, _) in plan.parts.iter().enumerate() {
            if done[index] {
                checkpoints.remove(index)?; // killed after the commit, before the clean-up
            } else if let Some(manifest) = checkpoints.manifest(index, &run_ids(&standing(index, finished_frame.as_ref())?.0))? {
                checkpoints.remove_states(index, Some(&manifest.state))?;
                resumed.push(format!("{}stack {} from epoch {}", waves.label(part_waves[index]), index + 1, manifest.next_step));
            }
        }
        let resumed = if resumed.is_empty() { String::new() } else { format!("; {}", resumed.join(", ")) };
        eprintln!(
            "resuming {}: {finished_before} of {total_runs} runs finished ({} of {} stacks){resumed}",
            out.display(),
            done.iter().filter(|d| **d).count(),
            stacks.len()
        );
    }
    output.write_progress(total_runs, finished_before)?;

    // The worst case: every run of every part left trains its whole budget. Skipped runs
    // and retired runs take their epochs off as they become known.
    let total_run_epochs: u64 = stacks.iter().zip(&done).filter(|(_, d)| !**d).map(|(s, _)| (s.len() as u64).saturating_mul(s[0].config.epochs as u64)).sum();
    let bar = ProgressBar::new(total_run_epochs).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent}% {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let mut finished_runs = finished_before;
    let mut writer = Writer::new(checkpoints.clone());
    let mut interrupted = false;
    let stack_count = stacks.len();
    let with_skip_reasons = waves.count() > 1;
    for (index, all_of_part) in stacks.iter().enumerate() {
        if done[index] {
            continue;
        }
        if interrupt::requested() {
            interrupted = true;
            break;
        }
        let wave = waves.label(part_waves[index]);
        let epochs = all_of_part[0].config.epochs;
        let (runs, skip_reasons) = standing(index, finished_frame.as_ref())?;
        let skipped = all_of_part.len() - runs.len();
        bar.set_length(bar.length().unwrap_or(0).saturating_sub((skipped * epochs) as u64));
        let mut results = Vec::new();
        if !runs.is_empty() {
            let r = runs.len();
            let ids = run_ids(&runs);
            let training = match checkpoints.load(index, &ids)? {
                Some((_, path, state)) => Training::resume(runs.clone(), &state, device).with_context(|| format!("cannot resume part {index} from checkpoint {}", path.display()))?,
                None => Training::new(Stack::new(runs.clone(), device)?),
            };
            let done_before = bar.position();
            // A resumed stack counts its checkpointed epochs as done.
            bar.set_position(done_before + (training.next_step() * r) as u64);
            let stack_started = Instant::now();
            let mut trained = 0u64;
            let mut last_line = Instant::now();
            let first_step = training.next_step();
            let mut save = |t: &Training| writer.save(index, t);
            let control = Control { checkpoint_every: runs[0].config.checkpoint_every, interrupted: &interrupt::requested, checkpoint: &mut save };
            let outcome = training.run(control, |step, active| {
                trained += active as u64;
                bar.set_position(done_before + (first_step * r) as u64 + trained);
                let rate = trained as f64 / stack_started.elapsed().as_secs_f64().max(1e-9);
                let status = format!(
                    "{wave}stack {}/{stack_count} ({active}/{r} runs active) epoch {step}/{epochs} | runs {finished_runs}/{total_runs} | {rate:.1} run-epochs/s",
                    index + 1
                );
                // Without a terminal (a batch job, a log file) the bar is hidden: print a line
                // every half minute instead.
                if bar.is_hidden() && last_line.elapsed().as_secs() >= 30 {
                    eprintln!("[{:.0} s] {status}", started.elapsed().as_secs_f64());
                    last_line = Instant::now();
                }
                bar.set_message(status);
            });
            // The last checkpoint is on disk (or its error known) before the stack's results are
            // committed, before its checkpoint is removed, and before an interrupted sweep exits.
            writer.wait()?;
            let trained = match outcome? {
                Outcome::Interrupted => {
                    interrupted = true;
                    break;
                }
                Outcome::Finished(trained) => trained,
            };
            // Epochs that retired runs did not need count as done.
            bar.set_position(done_before + (r * epochs) as u64);
            output.write_weights_part(index, &trained.weights)?;
            output.write_metrics_part(index, &trained.rows)?;
            results = trained.results;
        }
        // Every run of the part in plan order: a trained run's result (in the order the stack
        // was built, which is the part's), or a skipped one's.
        let mut trained_results = results.into_iter();
        let part_results = all_of_part
            .iter()
            .zip(&skip_reasons)
            .map(|(run, reason)| match reason {
                Some(_) => Ok(skipped_result(run.run_id)),
                None => trained_results.next().context("internal: a trained run has no result"),
            })
            .collect::<Result<Vec<_>>>()?;
        let pairs: Vec<_> = all_of_part.iter().zip(&part_results).collect();
        let frame = runs_frame(&pairs, with_skip_reasons.then_some(skip_reasons.as_slice()))?;
        let mut all = match finished_frame.take() {
            Some(mut earlier) => {
                earlier.vstack_mut(&frame).with_context(|| format!("{} does not have the columns of this sweep", runs_path.display()))?;
                earlier
            }
            None => frame,
        };
        output.write_runs(&mut all)?; // the commit point of this stack
        finished_frame = Some(all);
        finished_runs += all_of_part.len();
        output.write_progress(total_runs, finished_runs)?;
        checkpoints.remove(index)?;
        if bar.is_hidden() {
            let skipped = if skipped > 0 { format!(" ({skipped} skipped)") } else { String::new() };
            eprintln!("[{:.0} s] {wave}stack {}/{stack_count} done{skipped}: {finished_runs}/{total_runs} runs finished", started.elapsed().as_secs_f64(), index + 1);
        }
    }
    bar.finish_and_clear();
    let outcomes = match &finished_frame {
        Some(df) => count_outcomes(df)?,
        None => Outcomes::default(),
    };
    Ok(SweepSummary {
        runs: total_runs,
        finished_before,
        outcomes,
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
        checkpoints: writer.written,
        checkpoint_seconds: writer.blocked_seconds,
    })
}

/// The run ids listed in a runs.parquet frame (with `status`, only the runs of that status).
pub(crate) fn listed_run_ids(frame: Option<&DataFrame>, status: Option<Status>) -> Result<HashSet<usize>> {
    let Some(df) = frame else { return Ok(HashSet::new()) };
    let ids = df.column("run_id")?.i64()?;
    let statuses = df.column("status")?.str()?;
    ids.iter()
        .zip(statuses.iter())
        .filter(|(_, s)| status.is_none_or(|wanted| *s == Some(wanted.as_str())))
        .map(|(id, _)| id.and_then(|id| usize::try_from(id).ok()).context("an invalid run_id"))
        .collect()
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

/// The [`Outcomes`] of a runs.parquet frame.
fn count_outcomes(df: &DataFrame) -> Result<Outcomes> {
    let grok = df.column("grok_epoch")?;
    let status = df.column("status")?.str()?;
    let count = |wanted: Status| status.iter().filter(|s| *s == Some(wanted.as_str())).count();
    let budgets = df.column("train.epochs")?.i64()?;
    let skipped_run_epochs = status.iter().zip(budgets.iter()).filter(|(s, _)| *s == Some(Status::Skipped.as_str())).map(|(_, e)| e.unwrap_or(0).max(0) as u64).sum();
    Ok(Outcomes { grokked: grok.len() - grok.null_count(), diverged: count(Status::Diverged), skipped: count(Status::Skipped), skipped_run_epochs })
}
