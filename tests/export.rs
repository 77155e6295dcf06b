//! `grokstack export`: one run's final weights under PyTorch's names and [out, in] layout,
//! its config as metadata; Python (numpy + safetensors, tests/export_check.py) rebuilds the
//! run's test split and forward pass from the file and gets the run's final test accuracy.

mod common;

use candle_core::{Device, Tensor};
use common::grokstack;
use std::path::Path;
use std::process::Command;

/// Embedding and two-hot input, GELU and ReLU: four stacks of one run. Runs retire at grok,
/// so some weights are those of the epoch a run retired on.
const SWEEP: &str = r#"
name = "export"
seeds = [5]
[task]
p = 31
train_fraction = 0.7
[model]
embed_dim = 16
hidden = [64, 64]
[train]
epochs = 200
lr = 0.01
weight_decay = 3.0
all_reg = true
log_every = 5
stop = "grok"
[grid]
"model.input" = ["embedding", "two_hot"]
"model.activation" = ["gelu", "relu"]
"#;

fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    header.metadata().clone().unwrap()
}

#[test]
fn exported_runs_load_in_pytorch_layout_and_reproduce_their_accuracy() {
    let (dir, sweep) = common::train_sweep("export", SWEEP, &[]);
    let python = common::numpy_python();
    if python.is_none() {
        eprintln!("skipped the Python check: no python3 with numpy and safetensors (set GROKSTACK_PYTHON to one)");
    }
    for run in 0..4usize {
        let file = dir.join(format!("run-{run}.safetensors"));
        let out =
            grokstack(&["export", dir.to_str().unwrap(), "--run", &run.to_string(), "--out", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        // Names, layout and metadata, checked from Rust.
        let meta = metadata(&file);
        let config: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
        assert_eq!(meta["run_id"], run.to_string());
        assert_eq!(meta["seed"], "5");
        assert_eq!(config["task.p"], 31);
        let two_hot = config["model.input"] == "two_hot";
        let exported = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
        let stacked = candle_core::safetensors::load(
            dir.join("weights/part-00000.safetensors").parent().unwrap().join(format!("part-{run:05}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let first_in = if two_hot { 62 } else { 32 };
        let mut expected_names = vec![
            ("layers.0.weight", vec![64, first_in]),
            ("layers.1.weight", vec![64, 64]),
            ("layers.2.weight", vec![31, 64]),
        ];
        if !two_hot {
            expected_names.push(("embedding.weight", vec![31, 16]));
        }
        assert_eq!(exported.len(), expected_names.len(), "{:?}", exported.keys());
        for (name, shape) in expected_names {
            let t = &exported[name];
            assert_eq!(t.dims(), shape.as_slice(), "{name}");
            let ours: Tensor = stacked[name].get(0).unwrap();
            let ours = if name.starts_with("layers.") { ours.t().unwrap() } else { ours };
            let same = t.eq(&ours).unwrap().flatten_all().unwrap().min(0).unwrap().to_scalar::<u8>().unwrap();
            assert_eq!(same, 1, "{name} is our [in, out] weight transposed");
        }
        let runs = grokstack::files::read_parquet(&dir.join("runs.parquet")).unwrap();
        let acc = runs.column("final_test_acc").unwrap().f64().unwrap().get(run).unwrap();
        assert_eq!(meta["final_test_acc"].parse::<f64>().unwrap(), acc);
        if run == 0 {
            // The embedding/GELU run groks (~0.98) and retires before the budget ends: its
            // weights are those of the epoch it retired on.
            assert_eq!(meta["status"], "stopped");
            assert!(acc > 0.95, "{acc}");
        }

        if let Some(python) = &python {
            let check = Command::new(python)
                .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/export_check.py"), file.to_str().unwrap()])
                .output()
                .unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
            assert!(check.status.success(), "run {run}: Python did not reproduce the test accuracy: {said}");
        }
    }

    // Refusals name what is wrong.
    let file = dir.join("x.safetensors");
    let out = grokstack(&["export", dir.to_str().unwrap(), "--run", "4", "--out", file.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no run 4"));
    std::fs::remove_file(dir.join("weights/part-00002.safetensors")).unwrap();
    let out = grokstack(&["export", dir.to_str().unwrap(), "--run", "2", "--out", file.to_str().unwrap()]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not finished"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = grokstack(&["export", "/nonexistent/dir", "--run", "0", "--out", file.to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/sweep.toml"));
    assert!(!file.exists());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&sweep).ok();
}
