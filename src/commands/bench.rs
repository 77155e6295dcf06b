//! `grokstack bench`: the training step measured at several stack sizes, each in a child
//! process (`--single` is the child's side).

use super::Ending;
use crate::bench::{self, GemmReference};
use crate::cli::BenchArgs;
use crate::device::parse_device;
use anyhow::{anyhow, bail, Result};

pub fn run(args: BenchArgs) -> Result<Ending> {
    let BenchArgs { runs, epochs, overrides, device, json, no_gemm, single } = args;
    if runs.is_empty() || runs.contains(&0) || epochs == 0 {
        bail!("--runs needs stack sizes of at least 1, and --epochs at least 1");
    }
    if single {
        let result = bench::bench_one(runs[0], epochs, &overrides, &parse_device(&device)?)?;
        println!("{}", serde_json::to_string(&result)?);
        return Ok(Ending::Success);
    }
    let results = bench::bench_in_children(&runs, epochs, &overrides, &device)?;
    let gemm = if no_gemm { None } else { Some(GemmReference::measure(&overrides, &parse_device(&device)?)?) };
    print!("{}", bench::format_table(&results, gemm.as_ref()));
    if let Some(path) = json {
        let doc = serde_json::json!({ "results": results, "gemm": gemm });
        std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(Ending::Success)
}
