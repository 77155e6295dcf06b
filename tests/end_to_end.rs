//! The command line end to end: train a small sweep, read the Parquet files back; refuse bad
//! input without writing anything.

mod common;

use common::{grokstack, read_parquet as read};
use polars::prelude::*;

const SMALL: &str = r#"
name = "e2e"
seeds = 2
[task]
op = "add"
p = 47
train_fraction = 0.6
[model]
input = "embedding"
embed_dim = 32
hidden = [128, 128]
[train]
epochs = 200
lr = 0.01
weight_decay = 3.0
all_reg = true
log_every = 5
[grid]
"train.dtype" = ["f32", "bf16"]
"#;

#[test]
fn small_sweep_groks_and_writes_the_documented_files() {
    let (dir, sweep) = common::train_sweep("e2e", SMALL, &[]);

    let runs = read(&dir.join("runs.parquet"));
    assert_eq!(runs.height(), 4);
    for column in [
        "run_id",
        "setting_id",
        "seed",
        "task.op",
        "task.p",
        "train.dtype",
        "train.lr",
        "train.weight_decay",
        "status",
        "epochs_trained",
        "grok_epoch",
        "solve_epoch",
        "lipschitz_at_grok",
        "final_train_acc",
        "final_test_acc",
        "final_train_loss",
        "final_test_loss",
    ] {
        assert!(runs.column(column).is_ok(), "runs.parquet lacks {column}");
    }
    let grok = runs.column("grok_epoch").unwrap().i64().unwrap();
    assert_eq!(grok.null_count(), 0, "every run groks: {runs}");
    let settings = runs.column("setting_id").unwrap().i64().unwrap();
    assert_eq!(settings.into_no_null_iter().collect::<Vec<_>>(), vec![0, 0, 1, 1]);

    let metrics_dir = dir.join("metrics.parquet");
    let parts: Vec<_> = std::fs::read_dir(&metrics_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(parts.len(), 2, "one part per stack (f32, bf16)");
    let metrics = parts.iter().map(|p| read(p)).reduce(|a, b| a.vstack(&b).unwrap()).unwrap();
    // Logged epochs 0, 5, …, 195 and the last one, 199.
    assert_eq!(metrics.height(), 4 * 41);
    for column in [
        "run_id",
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "weight_norm",
        "softmax_collapse",
        "zero_terms",
        "lipschitz_bound",
        "layer0_weight_norm",
        "layer2_weight_norm",
    ] {
        assert!(metrics.column(column).is_ok(), "metrics lack {column}");
    }
    let acc = metrics.column("test_acc").unwrap().f64().unwrap();
    assert!(acc.into_no_null_iter().all(|a| (0.0..=1.0).contains(&a)));
    let resolved = std::fs::read_to_string(dir.join("sweep.toml")).unwrap();
    let reread = grokstack::config::Sweep::parse(&resolved, "sweep.toml", &[]).unwrap();
    assert_eq!(
        reread.base["train.eps"],
        grokstack::config::Value::Float(1e-25),
        "defaults are written out: {resolved}"
    );
    assert_eq!(reread.seeds, vec![0, 1]);

    // The analysis stage on what was just trained: one settings.csv row per setting.
    let analyzed = grokstack(&["analyze", dir.to_str().unwrap()]);
    assert!(analyzed.status.success(), "analyze failed: {}", String::from_utf8_lossy(&analyzed.stderr));
    let settings = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(dir.join("analysis/settings.csv")))
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(settings.height(), 2, "two settings (f32, bf16): {settings}");
    for column in [
        "setting_id",
        "train.dtype",
        "seeds",
        "grokked_fraction",
        "median_grok_epoch",
        "q25_grok_epoch",
        "q75_grok_epoch",
        "qualified",
    ] {
        assert!(settings.column(column).is_ok(), "settings.csv lacks {column}: {settings}");
    }
    let qualified = settings.column("qualified").unwrap().bool().unwrap();
    assert_eq!(qualified.sum(), Some(2), "both settings grok in every seed");
    assert!(String::from_utf8_lossy(&analyzed.stdout).contains("setting"), "the headline is printed");
    let headline = String::from_utf8_lossy(&analyzed.stdout).into_owned();
    assert!(headline.contains("(rule first)"), "the default rule is named: {headline}");
    let near_max = grokstack(&["analyze", dir.to_str().unwrap(), "--grok-rule", "near-max"]);
    assert!(
        near_max.status.success(),
        "analyze --grok-rule near-max failed: {}",
        String::from_utf8_lossy(&near_max.stderr)
    );
    assert!(String::from_utf8_lossy(&near_max.stdout).contains("(rule near-max)"));
    let unknown = grokstack(&["analyze", dir.to_str().unwrap(), "--grok-rule", "last"]);
    let error = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success() && error.contains("--grok-rule") && error.contains("after-train"), "{error}");
    // Without metrics.progress there are no phases, but a circuit threshold outside (0, 1) is still refused.
    let circuit = grokstack(&["analyze", dir.to_str().unwrap(), "--circuit-threshold", "1.5"]);
    let error = String::from_utf8_lossy(&circuit.stderr);
    assert!(!circuit.status.success() && error.contains("--circuit-threshold"), "{error}");
    assert!(!dir.join("analysis/phase_runs.csv").exists(), "no progress measures, no phase tables");

    // The same directory again is refused and left as it was.
    let before = std::fs::read(dir.join("runs.parquet")).unwrap();
    let again =
        grokstack(&["train", sweep.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--set", "train.lr=0.02"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("different sweep"));
    assert_eq!(std::fs::read(dir.join("runs.parquet")).unwrap(), before);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&sweep).ok();
}

#[test]
fn a_sparsemax_sweep_fits_its_train_rows() {
    // Weak weight decay, so that margins grow past 1 and rows drop out of the loss.
    let toml =
        "name = \"sparsemax\"\nseeds = 2\n[task]\np = 23\ntrain_fraction = 0.6\n[model]\nembed_dim = 16\nhidden \
        = [64]\n[train]\nepochs = 60\nweight_decay = 0.1\nloss = \"sparsemax\"\nlog_every = 1000\n";
    let (dir, sweep) = common::train_sweep("sparsemax", toml, &[]);
    let parts: Vec<_> = std::fs::read_dir(dir.join("metrics.parquet")).unwrap().map(|e| e.unwrap().path()).collect();
    let metrics = parts.iter().map(|p| read(p)).reduce(|a, b| a.vstack(&b).unwrap()).unwrap();
    let sorted = metrics.sort(["run_id", "epoch"], SortMultipleOptions::default()).unwrap();
    let column = |name: &str| sorted.column(name).unwrap().f64().unwrap().into_no_null_iter().collect::<Vec<_>>();
    // Epochs 0 and 59 of each run.
    let (acc, collapse, zero_terms) = (column("train_acc"), column("softmax_collapse"), column("zero_terms"));
    assert_eq!(acc.len(), 4, "{sorted}");
    for run in 0..2 {
        let (first, last) = (2 * run, 2 * run + 1);
        assert!(
            acc[last] > acc[first] + 0.5 && acc[last] > 0.9,
            "run {run}: train accuracy {} -> {}",
            acc[first],
            acc[last]
        );
        // A zero loss needs a one-hot sparsemax.
        assert!(zero_terms[last] > 0.5 && collapse[last] >= zero_terms[last], "run {run}: {collapse:?} {zero_terms:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&sweep).ok();
}

#[test]
fn bad_sweeps_are_refused_before_anything_is_written() {
    for (text, key) in [
        ("[train]\nlr = -0.5\n", "train.lr"),
        ("[task]\ntrain_fraction = 1.5\n", "task.train_fraction"),
        ("[model]\nwidth = 3\n", "model.width"),
    ] {
        let dir = common::temp_path("bad");
        let sweep = dir.with_extension("toml");
        std::fs::write(&sweep, text).unwrap();
        let out = grokstack(&["train", sweep.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key) && stderr.contains(sweep.to_str().unwrap()), "{stderr}");
        assert!(!dir.exists(), "nothing may be written for a bad sweep");
        std::fs::remove_file(&sweep).ok();
    }
    let missing = grokstack(&["train", "/nonexistent/sweep.toml", "--out", "/tmp/never"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/sweep.toml"));
}

#[test]
fn dry_run_prints_the_plan_and_trains_nothing() {
    let out = grokstack(&["train", "sweeps/quick.toml", "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("stack") && text.contains("TFLOP") && text.contains("memory"), "{text}");
}
