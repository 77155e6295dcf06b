//! `grokstack analyze DIR`: the analysis of a sweep's output, written to `DIR/analysis/`.

use super::Ending;
use crate::cli::AnalyzeArgs;
use anyhow::{bail, Result};
use grokstack_analysis::AnalyzeOptions;

pub fn run(args: AnalyzeArgs) -> Result<Ending> {
    let AnalyzeArgs { dir, threshold, group_by, grok_rule, study, circuit_threshold } = args;
    if !(threshold > 0.0 && threshold <= 1.0) {
        bail!("--threshold {threshold}: expected a test accuracy in (0, 1]");
    }
    let report = grokstack_analysis::analyze(
        &dir,
        &AnalyzeOptions { threshold, group_by, grok_rule, study, circuit_threshold },
    )?;
    println!("{}", report.headline);
    if report.missing_runs > 0 {
        println!("{} run(s) of the sweep are not finished yet and are left out.", report.missing_runs);
    }
    for line in &report.unfinished_shards {
        println!("{line}");
    }
    let page = report.out_dir.join("report.html");
    println!("wrote {} (the whole analysis on one page: {})", report.out_dir.display(), page.display());
    Ok(Ending::Success)
}
