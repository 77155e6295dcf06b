//! Training a whole sweep: plan the stacks, train them one after another, and write each
//! stack's results before the next starts.

use crate::checkpoint::{Checkpoints, Writer};
use crate::config::{ModelKind, RunSpec, Sweep};
use crate::interrupt;
use crate::metrics::Status;
use crate::output::{runs_frame, OutputDir, Plan, PLAN_FILE, RUNS_FILE, SWEEP_FILE};
use crate::plan::{chunk_to_fit, flops_per_run_epoch, group_into_stacks, human_bytes, stack_bytes, Pass};
use crate::train::{Control, Outcome, Stack, Training};
use anyhow::{bail, Context, Result};
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

/// The stacks of `sweep`, split into chunks that fit in `max_memory` bytes.
pub fn plan_chunks(sweep: &Sweep, max_memory: u64, device: &Device) -> Result<Vec<Vec<RunSpec>>> {
    chunk_to_fit(group_into_stacks(sweep.runs()?), max_memory, Pass::on(device))
}

/// What `--dry-run` prints: runs, stacks, memory and FLOPs.
pub fn describe_plan(sweep: &Sweep, max_memory: u64, pass: Pass) -> Result<String> {
    let runs = sweep.runs()?;
    let mut out = format!(
        "sweep `{}`: {} runs = {} settings × {} seeds\n",
        sweep.name,
        runs.len(),
        sweep.setting_count(),
        sweep.seeds.len()
    );
    let stacks = chunk_to_fit(group_into_stacks(runs), max_memory, pass)?;
    out.push_str(&format!("{} stack(s) within --max-memory {}:\n", stacks.len(), human_bytes(max_memory as f64)));
    let mut total_flops = 0.0;
    for (i, stack) in stacks.iter().enumerate() {
        let c = &stack[0].config;
        let stack_memory = stack_bytes(c, stack.len(), pass);
        let flops = flops_per_run_epoch(c) * c.epochs as f64 * stack.len() as f64;
        total_flops += flops;
        let model = match c.kind {
            ModelKind::Mlp => format!("MLP input {:?}, hidden {:?}, {:?}", c.input, c.hidden, c.activation),
            ModelKind::Transformer => {
                let t = &c.transformer;
                let (tokens, vocab) = c.token_shape();
                format!("transformer {} layer(s), d {}, {} heads, {} FFN, {}-norm {}, {} positions, {} tokens of {vocab}", t.layers, t.d_model, t.heads, t.ffn, if t.pre_norm { "pre" } else { "post" }, t.norm, t.positional, tokens)
            }
        };
        out.push_str(&format!(
            "  stack {i}: R = {}, {} rows ({} train, {} per step), {} classes, {model}, {:?}, {:?}, {} epochs: memory ≈ {}, {:.1} TFLOP\n",
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
    }
    out.push_str(&format!("total: {:.2} TFLOP (an MLP's first layer counted as a dense matmul)\n", total_flops / 1e12));
    Ok(out)
}

pub struct SweepSummary {
    pub runs: usize,
    /// Runs finished by an earlier process (a resumed sweep).
    pub finished_before: usize,
    pub grokked: usize,
    pub diverged: usize,
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
}

/// Train every run of `sweep` into `out`, in stacks of at most `max_memory` bytes.
pub fn train_sweep(sweep: &Sweep, out: &Path, device: &Device, max_memory: u64) -> Result<SweepSummary> {
    train_sweep_with(sweep, out, device, &TrainOptions { max_memory, resume: false })
}

/// Train `sweep` into `out`, or continue it there (`options.resume`): stacks whose runs are
/// in runs.parquet are done and skipped, the others start from their checkpoint or their
/// first epoch. The result files are the same as those of a sweep never interrupted.
pub fn train_sweep_with(sweep: &Sweep, out: &Path, device: &Device, options: &TrainOptions) -> Result<SweepSummary> {
    let all_runs = sweep.runs()?;
    let total_runs = all_runs.len();
    // A new sweep is planned before its directory is made, so a plan that fails (a run too
    // large for --max-memory) leaves nothing behind; a resumed one keeps the plan it had.
    let new_plan = if out.join(SWEEP_FILE).exists() {
        None
    } else {
        Some(Plan { format: 1, parts: plan_chunks(sweep, options.max_memory, device)?.iter().map(|c| c.iter().map(|r| r.run_id).collect()).collect() })
    };
    let (output, existing) = OutputDir::open(out, sweep, options.resume)?;
    let plan = match new_plan {
        Some(plan) if !existing => {
            output.start(sweep, &plan)?;
            plan
        }
        _ => output.read_plan(total_runs)?,
    };
    let plan_path = out.join(PLAN_FILE);
    let stacks: Vec<Vec<RunSpec>> = plan.parts.iter().map(|ids| ids.iter().map(|&id| all_runs[id].clone()).collect()).collect();
    for (index, runs) in stacks.iter().enumerate() {
        if runs.iter().any(|r| r.config.stack_key() != runs[0].config.stack_key()) {
            bail!("{} is corrupted: part {index} mixes runs of different shapes", plan_path.display());
        }
    }
    let checkpoints = Checkpoints::new(out);
    let mut finished_frame = if existing { output.read_runs()? } else { None };
    let runs_path = out.join(RUNS_FILE);
    let finished_ids: HashSet<usize> = match &finished_frame {
        Some(df) => df
            .column("run_id")
            .and_then(|c| Ok(c.i64()?.iter().collect::<Vec<Option<i64>>>()))
            .map_err(|e| anyhow::anyhow!("{} has no integer run_id column: {e}", runs_path.display()))?
            .into_iter()
            .map(|id| id.and_then(|id| usize::try_from(id).ok()).with_context(|| format!("{} holds an invalid run_id", runs_path.display())))
            .collect::<Result<_>>()?,
        None => HashSet::new(),
    };
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
    if existing {
        // Everything is checked before anything is trained or removed: a damaged file stops
        // the resume with its name, and the directory stays as it was.
        for (index, ids) in plan.parts.iter().enumerate() {
            if done[index] {
                output.check_finished_part(index)?;
            } else {
                checkpoints.verify(index, ids)?;
            }
        }
        output.remove_stale_temporaries()?;
        let mut resumed = Vec::new();
        for (index, ids) in plan.parts.iter().enumerate() {
            if done[index] {
                checkpoints.remove(index)?; // killed after the commit, before the clean-up
            } else if let Some(manifest) = checkpoints.manifest(index, ids)? {
                checkpoints.remove_states(index, Some(&manifest.state))?;
                resumed.push(format!("stack {} from epoch {}", index + 1, manifest.next_step));
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
    for (index, runs) in stacks.into_iter().enumerate() {
        if done[index] {
            continue;
        }
        if interrupt::requested() {
            interrupted = true;
            break;
        }
        let r = runs.len();
        let epochs = runs[0].config.epochs;
        let ids = &plan.parts[index];
        let training = match checkpoints.load(index, ids)? {
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
                "stack {}/{stack_count} ({active}/{r} runs active) epoch {step}/{epochs} | runs {finished_runs}/{total_runs} | {rate:.1} run-epochs/s",
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
        let pairs: Vec<_> = runs.iter().zip(&trained.results).collect();
        let frame = runs_frame(&pairs)?;
        let mut all = match finished_frame.take() {
            Some(mut earlier) => {
                earlier.vstack_mut(&frame).with_context(|| format!("{} does not have the columns of this sweep", runs_path.display()))?;
                earlier
            }
            None => frame,
        };
        output.write_runs(&mut all)?; // the commit point of this stack
        finished_frame = Some(all);
        finished_runs += r;
        output.write_progress(total_runs, finished_runs)?;
        checkpoints.remove(index)?;
        if bar.is_hidden() {
            eprintln!("[{:.0} s] stack {}/{stack_count} done: {finished_runs}/{total_runs} runs finished", started.elapsed().as_secs_f64(), index + 1);
        }
    }
    bar.finish_and_clear();
    let (grokked, diverged) = match &finished_frame {
        Some(df) => count_outcomes(df)?,
        None => (0, 0),
    };
    Ok(SweepSummary {
        runs: total_runs,
        finished_before,
        grokked,
        diverged,
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
        checkpoints: writer.written,
        checkpoint_seconds: writer.blocked_seconds,
    })
}

/// (grokked, diverged) runs of a runs.parquet frame.
fn count_outcomes(df: &polars::prelude::DataFrame) -> Result<(usize, usize)> {
    let grok = df.column("grok_epoch")?;
    let grokked = grok.len() - grok.null_count();
    let diverged = df.column("status")?.str()?.iter().filter(|s| *s == Some(Status::Diverged.as_str())).count();
    Ok((grokked, diverged))
}
