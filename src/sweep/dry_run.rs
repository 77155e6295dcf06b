//! What `grokstack train --dry-run` prints: the runs, the seed waves, every stack with its
//! estimated memory and FLOPs, and with a shard the work of every shard.

use super::stacks::plan_waves;
use crate::config::{Op, RunSpec, Sweep};
use crate::plan::{flops_per_run_epoch, stack_bytes, Pass};
use crate::shard::{self, Shard};
use crate::size::human_bytes;
use crate::waves::Waves;
use anyhow::Result;

/// What `--dry-run` prints: runs, waves, stacks, memory and FLOPs; with a shard, the work of
/// every shard, then the plan of this one.
pub fn describe_plan(sweep: &Sweep, max_memory: u64, pass: Pass, shard: Option<Shard>) -> Result<String> {
    let (settings, seeds) = (sweep.setting_count(), sweep.seeds.len());
    let (name, run_count) = (&sweep.name, sweep.run_count());
    let mut out = format!("sweep `{name}`: {run_count} runs = {settings} settings × {seeds} seeds\n");
    let runs = shard::runs_of(sweep, shard)?;
    if let Some(shard) = shard {
        out.push_str(&shard::describe(sweep, shard.count)?);
        let (name, count) = (shard.name(), runs.len());
        out.push_str(&format!("shard {name}: {count} runs = {} settings × {seeds} seeds\n", count / seeds));
    }
    let waves = Waves::of(sweep);
    if waves.count() > 1 {
        out.push_str(&format!(
            "seed waves {:?}: wave 1 trains the first {} seeds of every setting; \
             each later wave only the settings whose seeds have all grokked so far\n",
            sweep.seed_waves, sweep.seed_waves[0]
        ));
    }
    out.push_str(&describe_expressions(&runs));
    let planned = plan_waves(sweep, runs, max_memory, pass)?;
    let stack_count = planned.iter().map(Vec::len).sum::<usize>();
    out.push_str(&format!("{stack_count} stack(s) within --max-memory {}:\n", human_bytes(max_memory as f64)));
    // Per wave: (run-epochs, FLOPs) if every run trains its whole budget.
    let mut work = Vec::new();
    let mut i = 0;
    for (wave, stacks) in planned.iter().enumerate() {
        let (mut run_epochs, mut wave_flops) = (0usize, 0.0);
        for stack in stacks {
            let c = &stack[0].config;
            let flops = flops_per_run_epoch(c) * c.epochs as f64 * stack.len() as f64;
            run_epochs += c.epochs * stack.len();
            wave_flops += flops;
            out.push_str(&describe_stack(&waves.label(wave), i, stack, pass, flops));
            i += 1;
        }
        work.push((run_epochs, wave_flops));
    }
    out.push_str(&describe_work(&work));
    Ok(out)
}

/// One line per `task.op` expression (and p): how many of its pairs have a value, and how
/// many it leaves out (a division by a residue without an inverse, a `% 0`).
fn describe_expressions(runs: &[RunSpec]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::new();
    for c in runs.iter().map(|run| &run.config) {
        if !matches!(c.op, Op::Expression(_)) || !seen.insert((c.op_name().to_string(), c.p, c.skip_zero)) {
            continue;
        }
        let operands = if c.skip_zero { c.p - 1 } else { c.p };
        let pairs = operands * operands;
        let (name, p, rows) = (c.op_name(), c.p, c.n_examples());
        out.push_str(&format!(
            "task.op \"{name}\" mod {p}: {rows} of the {pairs} pairs have a value, {} left out\n",
            pairs - rows
        ));
    }
    out
}

/// The line of stack `i` (of `wave`, e.g. "wave 1/2 "): its shape, model, memory and `flops`.
fn describe_stack(wave: &str, i: usize, stack: &[RunSpec], pass: Pass, flops: f64) -> String {
    let c = &stack[0].config;
    let stack_memory = stack_bytes(c, stack.len(), pass);
    let model = c.arch().describe();
    format!(
        "  {wave}stack {i}: R = {}, {} rows ({} train, {} per step), {} classes, {model}, {:?}, {:?}, \
         {} epochs: memory ≈ {}, {:.1} TFLOP\n",
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
    )
}

/// The work of the whole plan from the (run-epochs, FLOPs) of each wave: with seed waves, the
/// worst case, the least, and what to expect in between.
fn describe_work(work: &[(usize, f64)]) -> String {
    let (run_epochs, total_flops) = work.iter().fold((0, 0.0), |(e, f), (we, wf)| (e + we, f + wf));
    if work.len() == 1 {
        return format!("total: {:.2} TFLOP (an MLP's first layer counted as a dense matmul)\n", total_flops / 1e12);
    }
    // Retirement (train.stop) only lowers these: they count every trained run's whole budget.
    let (first_epochs, first_flops) = work[0];
    let fraction = first_epochs as f64 / run_epochs.max(1) as f64;
    let percent = |q: f64| 100.0 * (fraction + q * (1.0 - fraction));
    format!(
        "work, worst case (every setting qualifies, every run trains its whole budget): {run_epochs} run-epochs, \
         {:.2} TFLOP (an MLP's first layer counted as a dense matmul)\n\
         work if every setting leaves in wave 1: {first_epochs} run-epochs ({:.1}%), {:.2} TFLOP\n\
         expected if a fraction q of the settings qualify and the others leave in wave 1: \
         {:.1}% + q × {:.1}% of the worst case (q = 0.25: {:.1}%, q = 0.5: {:.1}%, q = 0.75: {:.1}%)\n",
        total_flops / 1e12,
        percent(0.0),
        first_flops / 1e12,
        percent(0.0),
        100.0 - percent(0.0),
        percent(0.25),
        percent(0.5),
        percent(0.75)
    )
}
