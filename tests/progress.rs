//! Nanda et al.'s progress measures (`metrics.progress`): a hand-built logit table of known
//! frequencies measures what its construction says; the logged values agree with numpy's from
//! the exported weights (tests/progress_check.py, MLP and transformer, add, sub, mul, div); a
//! run measures the same alone as in a stack, and after a kill and `--resume`; tasks without a
//! cyclic group are refused with the key and the file named; a sweep without the keys writes
//! neither keys nor columns.

mod common;

use candle_core::{Device, Tensor};
use common::{grokstack, read_metrics, temp_path, train_sweep};
use grokstack::config::Sweep;
use grokstack::models::PassOptions;
use grokstack::progress::ProgressRow;
use grokstack::train::Stack;
use polars::prelude::*;
use std::f64::consts::PI;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const PROGRESS_COLUMNS: [&str; 6] =
    ["restricted_loss", "excluded_loss", "key_frequencies", "embedding_spectrum", "embedding_gini", "embedding_ipr"];

/// A table over every pair (a, b) of p = 11 and class c: two waves in the answer s = a + b,
/// 3·cos(2π·2(s − c)/p) + cos(2π·5(s − c)/p), a wave in a alone, 0.5·cos(2π·3(a − c)/p), which
/// projects to nothing on the directions of s, and a bias 0.1·c per class. Frequencies 2 and
/// 5 carry the energy (2 the most); with them as the key frequencies, the restricted logits are
/// the two waves and the bias, the excluded logits the wave in a and the bias.
const P: usize = 11;

fn wave(k: f64, x: f64) -> f64 {
    (2.0 * PI * k * x / P as f64).cos()
}

fn answer_waves(s: usize, c: usize) -> f64 {
    let d = (s + P - c) as f64;
    3.0 * wave(2.0, d) + wave(5.0, d)
}

fn operand_wave(a: usize, c: usize) -> f64 {
    0.5 * wave(3.0, (a + P - c) as f64)
}

fn bias(c: usize) -> f64 {
    0.1 * c as f64
}

/// The mean cross-entropy of rows (a, b) of logits `f(a, b, c)` against (a + b) mod p.
fn mean_cross_entropy(pairs: &[(usize, usize)], f: impl Fn(usize, usize, usize) -> f64) -> f64 {
    let total: f64 = pairs
        .iter()
        .map(|&(a, b)| {
            let logits: Vec<f64> = (0..P).map(|c| f(a, b, c)).collect();
            let log_sum = logits.iter().map(|x| x.exp()).sum::<f64>().ln();
            log_sum - logits[(a + b) % P]
        })
        .sum();
    total / pairs.len() as f64
}

/// The stack's rows of one run as pairs: the MLP's table indices are [a, p + b].
fn pairs(rows: &Tensor) -> Vec<(usize, usize)> {
    let rows: Vec<Vec<u32>> = rows.squeeze(0).unwrap().to_vec2().unwrap();
    rows.iter().map(|r| (r[0] as usize, r[1] as usize - P)).collect()
}

/// The measures of the table for one run whose key frequencies are chosen by `keys` (TOML).
fn measure_table(keys: &str) -> (ProgressRow, Vec<(usize, usize)>) {
    let toml = format!(
        "seeds = [3]\n[task]\np = {P}\ntrain_fraction = 0.4\n[model]\nembed_dim = 4\nhidden = \
        [8]\n[metrics]\nprogress = true\n{keys}\n"
    );
    let runs = Sweep::parse(&toml, "table.toml", &[]).unwrap().runs().unwrap();
    let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
    let table = |rows: &[(usize, usize)]| {
        let values: Vec<f64> = rows
            .iter()
            .flat_map(|&(a, b)| (0..P).map(move |c| answer_waves((a + b) % P, c) + operand_wave(a, c) + bias(c)))
            .collect();
        Tensor::from_vec(values, (1, rows.len(), P), &Device::Cpu).unwrap()
    };
    let (train, test) = (pairs(&stack.train.rows), pairs(&stack.test.rows));
    let progress = stack.progress.as_mut().expect("progress on");
    progress.record_test(0, &table(&test), &stack.model).unwrap();
    let row = progress.record_train(0, &table(&train)).unwrap().remove(0).expect("the run's measures");
    (row, train)
}

#[test]
fn a_table_of_known_frequencies_measures_what_it_is_made_of() {
    let all: Vec<(usize, usize)> = (0..P).flat_map(|a| (0..P).map(move |b| (a, b))).collect();
    let restricted = mean_cross_entropy(&all, |a, b, c| answer_waves((a + b) % P, c) + bias(c));
    for keys in ["key_frequencies = 2", "fixed_frequencies = [5, 2]"] {
        let (row, train) = measure_table(keys);
        assert_eq!(row.key_frequencies, vec![2, 5], "{keys}: 2 carries 9 times the energy of 5");
        let excluded = mean_cross_entropy(&train, |a, _, c| operand_wave(a, c) + bias(c));
        assert!(
            (row.restricted_loss - restricted).abs() < 1e-12,
            "{keys}: restricted {} vs {restricted}",
            row.restricted_loss
        );
        assert!((row.excluded_loss - excluded).abs() < 1e-12, "{keys}: excluded {} vs {excluded}", row.excluded_loss);
        assert_eq!(row.embedding_spectrum.len(), (P - 1) / 2);
    }
    // The strongest alone; a fixed list in order of energy, frequency 3 (no energy) last.
    assert_eq!(measure_table("key_frequencies = 1").0.key_frequencies, vec![2]);
    let (row, _) = measure_table("fixed_frequencies = [3, 5]");
    assert_eq!(row.key_frequencies, vec![5, 3]);
    let restricted_5 = mean_cross_entropy(&all, |a, b, c| wave(5.0, ((a + b) % P + P - c) as f64) + bias(c));
    assert!((row.restricted_loss - restricted_5).abs() < 1e-12, "{} vs {restricted_5}", row.restricted_loss);
}

/// Every kind of model input and operation the measures support, one run each.
const CHECKED: &str = r#"
name = "progress-check"
seeds = [4]
[task]
p = 23
train_fraction = 0.5
[model]
embed_dim = 12
hidden = [48]
layers = 1
d_model = 16
heads = 2
ffn_width = 32
[train]
epochs = 40
lr = 0.01
weight_decay = 1.0
log_every = 13
[metrics]
progress = true
key_frequencies = 3
[grid]
case = [
  { "model.kind" = "mlp", "model.input" = "embedding", "task.op" = "add" },
  { "model.kind" = "mlp", "model.input" = "two_hot", "task.op" = "mul" },
  { "model.kind" = "mlp", "model.input" = "two_hot", "task.op" = "sub" },
  { "model.kind" = "transformer", "model.input" = "embedding", "task.op" = "add" },
  { "model.kind" = "transformer", "model.input" = "embedding", "task.op" = "mul" },
  { "model.kind" = "transformer", "model.input" = "embedding", "task.op" = "div" },
]
"#;

/// The last logged row of `run` as the JSON tests/progress_check.py reads.
fn last_row_json(metrics: &DataFrame, run: usize) -> String {
    let rows = metrics
        .clone()
        .lazy()
        .filter(col("run_id").eq(lit(run as i64)))
        .sort(["epoch"], Default::default())
        .collect()
        .unwrap();
    let last = rows.height() - 1;
    let float = |name: &str| rows.column(name).unwrap().f64().unwrap().get(last).unwrap();
    let list = |name: &str| rows.column(name).unwrap().list().unwrap().get_as_series(last).unwrap();
    let keys: Vec<i64> = list("key_frequencies").i64().unwrap().into_no_null_iter().collect();
    let spectrum: Vec<f64> = list("embedding_spectrum").f64().unwrap().into_no_null_iter().collect();
    serde_json::json!({
        "restricted_loss": float("restricted_loss"), "excluded_loss": float("excluded_loss"),
        "key_frequencies": keys, "embedding_spectrum": spectrum,
        "embedding_gini": float("embedding_gini"), "embedding_ipr": float("embedding_ipr"),
    })
    .to_string()
}

#[test]
fn logged_measures_agree_with_numpy_from_the_exported_weights() {
    let Some(python) = common::numpy_python() else {
        eprintln!("skipped the numpy check: no python3 with numpy and safetensors (set GROKSTACK_PYTHON to one)");
        return;
    };
    let (dir, sweep) = train_sweep("progress-check", CHECKED, &[]);
    let metrics = read_metrics(&dir);
    for run in 0..6usize {
        let file = dir.join(format!("run-{run}.safetensors"));
        let expected = dir.join(format!("run-{run}.json"));
        let out =
            grokstack(&["export", dir.to_str().unwrap(), "--run", &run.to_string(), "--out", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&expected, last_row_json(&metrics, run)).unwrap();
        let check = Command::new(&python)
            .args([
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/progress_check.py"),
                file.to_str().unwrap(),
                expected.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
        println!("run {run}: {said}");
        assert!(check.status.success(), "run {run}: numpy does not agree: {said}");
    }
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&sweep).ok();
}

const STACKED: &str = r#"
name = "progress-stack"
seeds = 3
[task]
op = "mul"
p = 13
train_fraction = 0.5
[model]
embed_dim = 8
hidden = [32]
[train]
epochs = 12
lr = 0.02
weight_decay = 1.0
log_every = 4
[grid]
"metrics.progress" = [true, false]
"#;

/// The progress columns of `run`, by epoch, as text (null and NaN written out).
fn progress_columns(metrics: &DataFrame, run: i64) -> DataFrame {
    metrics.clone().lazy().filter(col("run_id").eq(lit(run))).select(PROGRESS_COLUMNS.map(col)).collect().unwrap()
}

#[test]
fn a_run_measures_the_same_alone_as_in_a_stack_and_runs_without_them_have_nulls() {
    let (stacked, sweep) = train_sweep("progress-stacked", STACKED, &[]);
    let metrics = read_metrics(&stacked);
    for seed in 0..3i64 {
        let (alone, alone_sweep) = train_sweep(
            "progress-alone",
            STACKED,
            &["--set", &format!("seeds=[{seed}]"), "--set", "metrics.progress=true"],
        );
        let mine = progress_columns(&metrics, seed);
        let theirs = progress_columns(&read_metrics(&alone), 0);
        assert_eq!(mine.height(), 4, "epochs 0, 4, 8, 11");
        assert!(mine.equals_missing(&theirs), "seed {seed}: in the stack\n{mine}\nalone\n{theirs}");
        assert_eq!(mine.column("restricted_loss").unwrap().null_count(), 0);
        let off = progress_columns(&metrics, 3 + seed);
        for name in PROGRESS_COLUMNS {
            assert_eq!(off.column(name).unwrap().null_count(), off.height(), "run {} has {name}", 3 + seed);
        }
        std::fs::remove_dir_all(&alone).ok();
        std::fs::remove_file(&alone_sweep).ok();
    }
    let keys = metrics.column("key_frequencies").unwrap();
    assert_eq!(keys.dtype(), &DataType::List(Box::new(DataType::Int64)));
    assert_eq!(metrics.column("embedding_spectrum").unwrap().dtype(), &DataType::List(Box::new(DataType::Float64)));
    std::fs::remove_dir_all(&stacked).ok();
    std::fs::remove_file(&sweep).ok();
}

/// Checkpoints every 5 epochs, metrics every 3: the checkpoint at epoch 10 (after step 9's
/// metrics) holds epoch 9's test half, which the resumed stack measures again. Two transformer
/// runs of the default layout and an MLP stack with a run that diverges (retired early).
const RESUMED: &str = r#"
name = "progress-resume"
seeds = 2
[task]
op = "add"
p = 13
train_fraction = 0.5
[model]
embed_dim = 8
hidden = [16]
layers = 1
d_model = 8
heads = 2
ffn_width = 16
[train]
epochs = 20
weight_decay = 1.0
log_every = 3
checkpoint_every = 5
[metrics]
progress = true
[grid]
"model.kind" = ["mlp", "transformer"]
"train.lr" = [0.01, 1e6]
"#;

fn train_command(sweep: &Path, dir: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_grokstack"));
    command.args(["train", sweep.to_str().unwrap(), "--out", dir.to_str().unwrap()]).env_remove("GROKSTACK_FAULT");
    if resume {
        command.arg("--resume");
    }
    command
}

#[test]
fn a_sweep_killed_and_resumed_logs_the_same_measures() {
    let (reference, sweep) = train_sweep("progress-resume-reference", RESUMED, &[]);
    let dir = temp_path("progress-resume");
    // Stack 2 of 2 (the transformer) at epoch 12: its last checkpoint is at 10.
    let mut child = train_command(&sweep, &dir, false)
        .env("GROKSTACK_FAULT", "pause:step#33")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let paused = stderr.lines().map_while(Result::ok).any(|line| line.starts_with("grokstack-fault: paused at"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(paused, "the sweep never reached its 33rd step");
    let out = train_command(&sweep, &dir, true).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (expected, actual) = (common::snapshot(&reference), common::snapshot(&dir));
    assert_eq!(expected.keys().collect::<Vec<_>>(), actual.keys().collect::<Vec<_>>());
    for (path, bytes) in &expected {
        assert!(bytes == &actual[path], "{} differs from the uninterrupted sweep's", path.display());
    }
    assert_eq!(read_metrics(&reference).column("excluded_loss").unwrap().null_count(), 0);
    for path in [&reference, &dir] {
        std::fs::remove_dir_all(path).ok();
    }
    std::fs::remove_file(&sweep).ok();
}

#[test]
fn tasks_without_a_cyclic_group_are_refused_with_the_key_and_the_file() {
    let base = "[task]\np = 13\n[model]\nhidden = [8]\n[metrics]\nprogress = true\n";
    // (a line of the base, what replaces it, the key named, what the error says)
    let refused = [
        ("p = 13", "p = 13\nop = \"gcd\"", "metrics.progress", "gcd"),
        ("p = 13", "p = 13\nop = \"x**2+y**2\"", "metrics.progress", "x**2+y**2"),
        ("p = 13", "op = \"s5_compose\"", "metrics.progress", "s5_compose"),
        ("p = 13", "p = 13\nop = \"x + y\"", "metrics.progress", "write add, sub, mul or div by name"),
        ("p = 13", "p = 21", "metrics.progress", "prime"),
        ("p = 13", "p = 13\nskip_zero = true", "metrics.progress", "skip_zero"),
        ("progress = true", "progress = true\nkey_frequencies = 7", "metrics.key_frequencies", "6 frequencies"),
        (
            "progress = true",
            "progress = true\nfixed_frequencies = [2, 7]",
            "metrics.fixed_frequencies",
            "outside 1 … 6",
        ),
        ("progress = true", "progress = true\nfixed_frequencies = [2, 2]", "metrics.fixed_frequencies", "twice"),
    ];
    for (line, change, key, says) in refused {
        let text = base.replacen(line, change, 1);
        let error = Sweep::parse(&text, "sweeps/bad.toml", &[]).expect_err(change).to_string();
        assert!(
            error.contains("sweeps/bad.toml") && error.contains(&format!("`{key}`")) && error.contains(says),
            "{change}: {error}"
        );
    }
    // Without the measures, the same tasks train, and mul and div with skip_zero have them.
    assert!(Sweep::parse(
        &base.replace("progress = true", "progress = false").replace("p = 13", "p = 13\nop = \"gcd\""),
        "ok.toml",
        &[]
    )
    .is_ok());
    assert!(Sweep::parse(&base.replace("p = 13", "p = 13\nop = \"div\"\nskip_zero = true"), "ok.toml", &[]).is_ok());
}

#[test]
fn a_sweep_without_the_keys_writes_neither_keys_nor_columns() {
    let toml =
        "name = \"plain\"\nseeds = 1\n[task]\np = 13\n[model]\nembed_dim = 4\nhidden = [8]\n[train]\nepochs = 3\n";
    let resolved = Sweep::parse(toml, "plain.toml", &[]).unwrap().to_toml();
    assert!(!resolved.contains("progress") && !resolved.contains("frequencies"), "{resolved}");
    let with = Sweep::parse(toml, "plain.toml", &["metrics.progress=true".into()]).unwrap().to_toml();
    assert!(
        with.contains("\n[metrics]\nlipschitz = false\nlipschitz_norm = \"l2\"\npower_iters = 10\nprogress = true\n"),
        "{with}"
    );
    assert_eq!(
        Sweep::parse(&with, "resolved.toml", &[]).unwrap().to_toml(),
        with,
        "the resolved sweep reads back as itself"
    );

    let (dir, sweep) = train_sweep("progress-plain", toml, &[]);
    let runs = common::read_runs(&dir);
    let metrics = read_metrics(&dir);
    for name in runs.get_column_names().into_iter().chain(metrics.get_column_names()) {
        assert!(
            !name.contains("progress") && !name.contains("frequenc") && !PROGRESS_COLUMNS.contains(&name.as_str()),
            "column {name}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&sweep).ok();
}

/// A bf16 stack trains on the tensor path (candle ops, not the CPU pass): its logits reach the
/// measures too, and the logits it keeps are its forward pass's.
#[test]
fn the_tensor_path_keeps_its_logits_for_the_measures() {
    let toml = "seeds = 2\n[task]\nop = \"div\"\np = 13\n[model]\nembed_dim = 4\nhidden = [8]\n[train]\nepochs = \
        6\ndtype = \"bf16\"\nlog_every = 2\n[metrics]\nprogress = true\n";
    let (dir, sweep) = train_sweep("progress-bf16", toml, &[]);
    let metrics = read_metrics(&dir);
    assert_eq!(metrics.height(), 8);
    for name in ["restricted_loss", "excluded_loss", "embedding_gini"] {
        let values = metrics.column(name).unwrap().f64().unwrap();
        assert!(values.into_no_null_iter().all(f64::is_finite) && values.null_count() == 0, "{name}");
    }
    let runs = Sweep::parse(toml, "bf16.toml", &[]).unwrap().runs().unwrap();
    let stack = Stack::new(runs, &Device::Cpu).unwrap();
    let (rows, labels) = (&stack.test.rows, &stack.test.labels);
    let options = PassOptions { keep_logits: true, ..PassOptions::new(grokstack::config::Loss::Softmax, false, 1) };
    let (_, logits) = stack.model.evaluate(rows, labels, &options).unwrap();
    let logits = logits.expect("kept");
    let (forward, _) = stack.model.forward(rows, false, None).unwrap();
    assert_eq!(
        logits.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        forward.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&sweep).ok();
}
