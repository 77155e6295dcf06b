//! `grokstack export DIR --run ID --out FILE`: one run's final weights as safetensors.

use super::Ending;
use crate::cli::ExportArgs;
use crate::export::export_run;
use anyhow::Result;

pub fn run(args: ExportArgs) -> Result<Ending> {
    let ExportArgs { dir, run, out, logits } = args;
    let exported = export_run(&dir, run, &out, logits.as_deref())?;
    for (name, shape) in &exported.tensors {
        println!("{name} {shape:?}");
    }
    println!(
        "run {run} ({}, final test accuracy {}) → {}",
        exported.status,
        exported.final_test_acc,
        exported.path.display()
    );
    if let Some(logits) = logits {
        println!("its logits on its train and test rows → {}", logits.display());
    }
    Ok(Ending::Success)
}
