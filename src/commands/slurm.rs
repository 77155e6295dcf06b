//! `grokstack slurm SWEEP --out DIR --shards N`: a Slurm job array that trains the sweep in
//! N shards, written and (with `--submit`) submitted.

use super::Ending;
use crate::cli::SlurmArgs;
use crate::config::Sweep;
use crate::slurm::{self, Request, Resources};
use anyhow::Result;

pub fn run(args: SlurmArgs) -> Result<Ending> {
    let SlurmArgs {
        sweep,
        out,
        overrides,
        shards,
        gpus_per_task,
        cpus_per_task,
        mem,
        time,
        partition,
        max_parallel,
        extra,
        device,
        submit,
    } = args;
    let sweep = Sweep::load(&sweep, &overrides)?;
    let resources = Resources { gpus_per_task, cpus_per_task, mem, time, partition, max_parallel, extra };
    let script = slurm::prepare(Request { sweep: &sweep, out: &out, shards, device, resources })?;
    println!("wrote {} ({shards} tasks)", script.display());
    if submit {
        let job = slurm::submit(&script)?;
        let merge = format!("grokstack merge {}", out.display());
        println!("submitted job array {job}: watch it with `squeue -j {job}`, then `{merge}`");
    } else {
        println!("submit it with `sbatch {}`", script.display());
    }
    Ok(Ending::Success)
}
