//! `grokstack merge DIR`: the shards in `DIR/shards/` combined into `DIR`'s ordinary layout.

use super::Ending;
use crate::cli::MergeArgs;
use crate::{disk, merge};
use anyhow::Result;

pub fn run(args: MergeArgs) -> Result<Ending> {
    let dir = args.dir;
    let report = merge::merge(&dir).map_err(|error| {
        disk::with_hint(error, || {
            format!("the shards are intact; free some space, then merge again: grokstack merge {}", dir.display())
        })
    })?;
    for line in report.missing.iter().chain(&report.duplicated) {
        eprintln!("{line}");
    }
    let gaps = if report.complete() {
        String::new()
    } else {
        format!(
            "; {} group(s) of runs missing, {} duplicated (listed above)",
            report.missing.len(),
            report.duplicated.len()
        )
    };
    println!(
        "merged {} of {} runs from {} shard folder(s) into {} ({} parts){gaps}",
        report.runs,
        report.total_runs,
        report.shards,
        dir.display(),
        report.parts
    );
    Ok(if report.complete() { Ending::Success } else { Ending::IncompleteMerge })
}
