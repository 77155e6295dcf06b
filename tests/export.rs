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

/// `export --logits`: the trainer's own logits on the run's train and test rows. Their loss
/// and accuracy are the run's final metrics, the rows are its split, and for an MLP they equal
/// a forward pass written here from the exported weights.
#[test]
fn exported_logits_are_the_trainers() {
    let sweep = r#"
name = "logits"
seeds = [3]
[task]
p = 13
train_fraction = 0.6
[model]
embed_dim = 8
hidden = [32]
layers = 1
d_model = 16
heads = 2
ffn_width = 32
[train]
epochs = 40
lr = 0.01
weight_decay = 0.1
log_every = 10
[grid]
"model.kind" = ["mlp", "transformer"]
"#;
    let (dir, _) = common::train_sweep("export-logits", sweep, &[]);
    let runs = common::read_runs(&dir);
    let metric = |name: &str, run: usize| runs.column(name).unwrap().f64().unwrap().get(run).unwrap();
    for run in 0..2usize {
        let (weights, logits_file) =
            (dir.join(format!("run-{run}.safetensors")), dir.join(format!("logits-{run}.safetensors")));
        let args = ["export", dir.to_str().unwrap(), "--run", &run.to_string(), "--out", weights.to_str().unwrap()];
        let out = grokstack(&[&args[..], &["--logits", logits_file.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let tensors = candle_core::safetensors::load(&logits_file, &Device::Cpu).unwrap();
        let mut rows = Vec::new();
        for split in ["train", "test"] {
            let logits: Vec<Vec<f64>> =
                tensors[&format!("{split}.logits")].to_dtype(candle_core::DType::F64).unwrap().to_vec2().unwrap();
            let labels: Vec<i64> = tensors[&format!("{split}.labels")].to_vec1().unwrap();
            let symbols: Vec<Vec<i64>> = tensors[&format!("{split}.symbols")].to_vec2().unwrap();
            assert_eq!((logits.len(), labels.len(), symbols.len()), (labels.len(), symbols.len(), logits.len()));
            // Softmax cross-entropy and accuracy, in f64.
            let (mut loss, mut correct) = (0.0, 0usize);
            for (row, &label) in logits.iter().zip(&labels) {
                let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let log_sum = row.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
                loss += log_sum - row[label as usize];
                let best = (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap();
                correct += usize::from(best == label as usize);
            }
            let n = labels.len() as f64;
            let (loss, acc) = (loss / n, correct as f64 / n);
            let (want_loss, want_acc) =
                (metric(&format!("final_{split}_loss"), run), metric(&format!("final_{split}_acc"), run));
            assert!(((loss - want_loss) / want_loss).abs() < 1e-5, "run {run} {split}: loss {loss} vs {want_loss}");
            assert_eq!(acc, want_acc, "run {run} {split}: accuracy");
            for (symbols, label) in symbols.iter().zip(&labels) {
                assert_eq!((symbols[0] + symbols[1]) % 13, *label, "run {run}: (a + b) mod 13");
                rows.push((symbols[0], symbols[1]));
            }
            if run == 0 {
                // The MLP by hand: GELU(concat(E[a], E[b]) · W0ᵀ) · W1ᵀ, weights as exported.
                let weights = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
                let matrix = |name: &str| -> Vec<Vec<f64>> {
                    weights[name].to_dtype(candle_core::DType::F64).unwrap().to_vec2().unwrap()
                };
                let (embedding, w0, w1) =
                    (matrix("embedding.weight"), matrix("layers.0.weight"), matrix("layers.1.weight"));
                let gelu = |x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
                for (symbols, row) in symbols.iter().zip(&logits) {
                    let input: Vec<f64> =
                        [embedding[symbols[0] as usize].as_slice(), embedding[symbols[1] as usize].as_slice()].concat();
                    let hidden: Vec<f64> =
                        w0.iter().map(|w| gelu(w.iter().zip(&input).map(|(w, x)| w * x).sum())).collect();
                    let ours: Vec<f64> = w1.iter().map(|w| w.iter().zip(&hidden).map(|(w, h)| w * h).sum()).collect();
                    // f32 against f64: within 1e-5 of the row's largest logit.
                    let scale = row.iter().fold(1.0f64, |m, x| m.max(x.abs()));
                    let worst = ours.iter().zip(row).map(|(o, r)| (o - r).abs()).fold(0.0, f64::max);
                    assert!(worst < 1e-5 * scale, "run 0: {ours:?} vs {row:?}");
                }
            }
        }
        // The same run exports to the same bytes (the metadata is written in key order).
        let again = dir.join(format!("again-{run}.safetensors"));
        let out = grokstack(&[&args[..4], &["--out", again.to_str().unwrap()]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&weights).unwrap(), "run {run}: two exports differ");
        rows.sort_unstable();
        assert_eq!(rows, (0..13).flat_map(|a| (0..13).map(move |b| (a, b))).collect::<Vec<_>>(), "every pair once");
    }
}
