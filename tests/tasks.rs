//! The tasks end to end on the MLP: every operation trains, and a polynomial and parity grok.

mod common;

use common::read_parquet as read;

/// Every task for a few epochs: each must train (its train accuracy after 30 epochs is well
/// above chance) on the stacks its shapes give (mod 13, S5, 10-bit parity, sparse parity).
const EVERY_TASK: &str = r#"
name = "every-task"
seeds = 1
[task]
p = 13
train_fraction = 0.5
bits = 8
parity_bits = 3
noise_bits = 9
samples = 600
[model]
input = "two_hot"
hidden = [64, 64]
[train]
epochs = 30
lr = 0.01
weight_decay = 0.1
log_every = 10
[grid]
"task.op" = [
    "add", "sub", "mul", "div", "exp", "gcd", "x**2+y", "x**3+y", "x**2+y**2", "x**2+x*y+y**2", "x**2+x*y+y**2+x",
    "x**3+x*y", "x**3+x*y**2+y", "mix1", "s5_compose", "s5_conjugate", "s5_aba", "parity", "sparse_parity",
]
"#;

#[test]
fn every_task_trains() {
    let (dir, _) = common::train_sweep("every-task", EVERY_TASK, &[]);
    let runs = read(&dir.join("runs.parquet"));
    assert_eq!(runs.height(), 19);
    let ops = runs.column("task.op").unwrap().str().unwrap().clone();
    let p = runs.column("task.p").unwrap().i64().unwrap().clone();
    let train_acc = runs.column("final_train_acc").unwrap().f64().unwrap().clone();
    for i in 0..runs.height() {
        let op = ops.get(i).unwrap();
        let classes = match op {
            "parity" | "sparse_parity" => 2.0,
            _ => p.get(i).unwrap() as f64,
        };
        if op.starts_with("s5") {
            assert_eq!(p.get(i), Some(120), "S5 sets task.p to 120");
        }
        // Three times chance, or 60% for the two-class tasks.
        let acc = train_acc.get(i).unwrap();
        assert!(
            acc > (3.0 / classes).min(0.6),
            "{op}: train accuracy {acc} after 30 epochs is near chance (1/{classes})"
        );
    }
}

/// The grok epochs of a sweep's runs (panics unless every one grokked).
fn grok_epochs(toml: &str, name: &str) -> Vec<i64> {
    let (dir, _) = common::train_sweep(name, toml, &[]);
    let runs = read(&dir.join("runs.parquet"));
    let grok = runs.column("grok_epoch").unwrap().i64().unwrap();
    assert_eq!(grok.null_count(), 0, "every run of {name} groks:\n{runs}");
    grok.into_no_null_iter().collect()
}

#[test]
fn a_polynomial_and_parity_grok() {
    // Power et al.'s x² + y² mod 31 on the CPU-sized blog setting of sweeps/tasks-cpu.toml.
    let polynomial = r#"
name = "x2y2"
seeds = 2
[task]
op = "x**2+y**2"
p = 31
train_fraction = 0.6
[model]
input = "two_hot"
hidden = [128, 128]
[train]
epochs = 300
lr = 0.01
weight_decay = 4.0
all_reg = true
log_every = 5
stop = "grok"
"#;
    // Parity of all 10 bits on 80% of the 1,024 strings, as sweeps/parity-cpu.toml.
    let parity = r#"
name = "parity"
seeds = 2
[task]
op = "parity"
bits = 10
train_fraction = 0.8
[model]
input = "two_hot"
hidden = [256, 256]
activation = "relu"
[train]
epochs = 600
lr = 0.001
weight_decay = 3.0
all_reg = true
log_every = 5
stop = "grok"
"#;
    for (name, toml) in [("x2y2", polynomial), ("parity", parity)] {
        let epochs = grok_epochs(toml, name);
        // Grokking, not memorizing from the start: test accuracy reaches 0.95 after a while.
        assert!(epochs.iter().all(|&e| e >= 20), "{name}: {epochs:?}");
    }
}

/// A small MLP on a task given by `task` (TOML lines of the [task] section).
fn table_sweep(name: &str, task: &str) -> String {
    format!(
        "name = \"{name}\"\nseeds = 2\n[task]\n{task}\ntrain_fraction = 0.5\n[model]\ninput = \"two_hot\"\nhidden = \
         [32]\n[train]\nepochs = 12\nlr = 0.01\nweight_decay = 0.1\nlog_every = 3\n"
    )
}

/// add mod p as table rows (a, b, label) in row-major order, as `task.op = "add"` lists them.
fn add_rows(p: u32) -> Vec<[u32; 3]> {
    (0..p).flat_map(|a| (0..p).map(move |b| [a, b, (a + b) % p])).collect()
}

fn csv(header: &str, rows: impl IntoIterator<Item = String>) -> String {
    rows.into_iter().fold(format!("{header}\n"), |text, row| text + &row + "\n")
}

/// A table written from a built-in task (CSV and Parquet) trains bit-identically to that task:
/// the same rows in the same order, the same per-seed splits, the same metrics to the last bit.
#[test]
fn a_table_of_a_built_in_task_trains_bit_identically_to_it() {
    use polars::prelude::ParquetWriter;
    let folder = common::temp_path("tables");
    std::fs::create_dir_all(&folder).unwrap();
    let rows = add_rows(13);
    std::fs::write(folder.join("add13.csv"), csv("a,b,label", rows.iter().map(|[a, b, l]| format!("{a},{b},{l}"))))
        .unwrap();
    let column = |i: usize| rows.iter().map(|row| row[i] as i64).collect::<Vec<_>>();
    let mut frame = polars::df!("a" => column(0), "b" => column(1), "label" => column(2)).unwrap();
    ParquetWriter::new(std::fs::File::create(folder.join("add13.parquet")).unwrap()).finish(&mut frame).unwrap();

    let (built_in, _) = common::train_sweep("table-built-in", &table_sweep("t", "op = \"add\"\np = 13"), &[]);
    for file in ["add13.csv", "add13.parquet"] {
        // The sweep file sits in `folder`, so the table's path is relative to it.
        let sweep = folder.join(format!("{file}.toml"));
        std::fs::write(&sweep, table_sweep("t", &format!("table = \"{file}\""))).unwrap();
        let out_dir = folder.join(format!("{file}.out"));
        let out = common::grokstack(&["train", sweep.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(common::read_metrics(&out_dir), common::read_metrics(&built_in), "{file}: metrics");
        let runs = common::read_runs(&out_dir);
        let op = format!("table:{file}");
        assert_eq!(runs.column("task.op").unwrap().str().unwrap().get(0), Some(op.as_str()), "{file}: its name");
        assert_eq!(runs.column("task.p").unwrap().i64().unwrap().get(0), Some(13), "{file}: p is the vocabulary");
        let listed = runs.column("task.table").unwrap().str().unwrap().get(0).unwrap().to_string();
        assert_eq!(std::path::Path::new(&listed), folder.join(file), "{file}: the absolute path");
        let resolved = std::fs::read_to_string(out_dir.join("sweep.toml")).unwrap();
        assert!(resolved.contains("[tables]"), "{file}: the hash is recorded:\n{resolved}");
        let built_in_runs = common::read_runs(&built_in);
        for metric in ["final_train_loss", "final_test_loss", "final_test_acc"] {
            assert_eq!(runs.column(metric).unwrap(), built_in_runs.column(metric).unwrap(), "{file}: {metric}");
        }
    }
}

/// A `split` column fixes the train and test rows (train_fraction is not used), and a table's
/// vocabulary and classes come from its values.
#[test]
fn a_split_column_fixes_the_rows_and_the_values_fix_the_shape() {
    let path = common::temp_path("split-table").with_extension("csv");
    // Labels in [0, 5) from operands in [0, 9): a task that is not a group.
    let rows: Vec<String> = (0..9u32)
        .flat_map(|a| (0..9u32).map(move |b| (a, b)))
        .map(|(a, b)| format!("{a},{b},{},{}", (a * b + 1) % 5, if (a + b) % 3 == 0 { "test" } else { "train" }))
        .collect();
    std::fs::write(&path, csv("a,b,label,split", rows)).unwrap();
    let runs = common::runs(&table_sweep("split", &format!("table = {:?}", path.to_str().unwrap())), &[]);
    let config = &runs[0].config;
    assert_eq!(config.task_shape().classes, 5);
    assert_eq!(config.p, 9, "the vocabulary: operands 0..9");
    assert_eq!((config.n_examples(), config.n_train()), (81, 54), "the split column's 54 train rows");
    for seed in [0, 1] {
        let split = grokstack::data::split(config, seed);
        assert!((0..split.train.len()).all(|i| split.train.row(i).iter().sum::<u32>() % 3 != 0), "train rows");
        assert!((0..split.test.len()).all(|i| split.test.row(i).iter().sum::<u32>() % 3 == 0), "test rows");
    }
}

/// A table whose classes differ from its vocabulary (9 operands, 5 labels) trains on both
/// model kinds and exports with its own shapes: the models take V and C from the table.
#[test]
fn both_models_train_a_table_with_its_own_vocabulary_and_classes() {
    let table = common::temp_path("shape-table").with_extension("csv");
    let rows = (0..9u32).flat_map(|a| (0..9u32).map(move |b| format!("{a},{b},{}", (a * b + 1) % 5)));
    std::fs::write(&table, csv("a,b,label", rows)).unwrap();
    let sweep = format!(
        "name = \"shapes\"\nseeds = 2\n[task]\ntable = {:?}\ntrain_fraction = 0.7\n[model]\ninput = \"two_hot\"\nlayers \
         = 1\nd_model = 16\nheads = 2\nffn_width = 32\nhidden = [64]\n[train]\nepochs = 60\nlr = 0.01\nweight_decay = \
         0.1\nlog_every = 20\n[grid]\n\"model.kind\" = [\"mlp\", \"transformer\"]\n",
        table.to_str().unwrap()
    );
    let (dir, _) = common::train_sweep("table-shapes", &sweep, &[]);
    let runs = common::read_runs(&dir);
    let train_acc = runs.column("final_train_acc").unwrap().f64().unwrap();
    for (run, acc) in train_acc.into_no_null_iter().enumerate() {
        assert!(acc > 0.6, "run {run}: train accuracy {acc} after 60 epochs is near chance (1/5)");
    }
    for run in ["0", "2"] {
        let out = dir.join(format!("run{run}.safetensors"));
        let export =
            common::grokstack(&["export", dir.to_str().unwrap(), "--run", run, "--out", out.to_str().unwrap()]);
        assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
        let bytes = std::fs::read(&out).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let shapes: Vec<Vec<usize>> = tensors.tensors().into_iter().map(|(_, t)| t.shape().to_vec()).collect();
        assert!(shapes.iter().any(|s| s.contains(&5)), "run {run}: a layer with the 5 classes: {shapes:?}");
    }
}

/// Malformed tables are refused before anything is written, naming the file and the row.
#[test]
fn malformed_tables_are_refused_naming_the_row() {
    let good = |i: u32| format!("{},{},{}", i / 5, i % 5, i % 5);
    let cases: Vec<(&str, String, &str)> = vec![
        ("missing", csv("a,b,label", (0..8).map(good).chain(["1,3,".to_string()])), "row 9 (line 10"),
        (
            "duplicate",
            csv("a,b,label", (0..8).map(good).chain(["0,2,4".to_string()])),
            "repeats the operands (a, b) = (0, 2) of row 3",
        ),
        (
            "negative",
            csv("a,b,label", (0..8).map(good).chain(["2,-1,0".to_string()])),
            "row 9 (line 10 of a CSV file): `b` = -1",
        ),
        ("float", csv("a,b,label", (0..8).map(good).chain(["2,4,1.5".to_string()])), "column `label` holds f64"),
        ("column", csv("a,b,lable", (0..8).map(good)), "unknown column `lable`"),
        ("one-split", csv("a,b,label,split", (0..8).map(|i| good(i) + ",train")), "both train and test"),
        (
            "split-word",
            csv("a,b,label,split", (0..8).map(|i| good(i) + if i == 4 { ",val" } else { ",test" })),
            "row 5 (line 6 of a CSV file): `split` is \"val\"",
        ),
    ];
    for (name, text, expected) in cases {
        let table = common::temp_path(name).with_extension("csv");
        std::fs::write(&table, text).unwrap();
        let sweep = common::temp_path(name).with_extension("toml");
        std::fs::write(&sweep, table_sweep(name, &format!("table = {:?}", table.to_str().unwrap()))).unwrap();
        let out_dir = common::temp_path(name);
        let out = common::grokstack(&["train", sweep.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: trained a malformed table");
        for part in [expected, "task.table", table.to_str().unwrap(), sweep.to_str().unwrap()] {
            assert!(stderr.contains(part), "{name}: `{part}` missing from:\n{stderr}");
        }
        assert!(!out_dir.exists(), "{name}: nothing is written");
    }
    // task.op beside a table would be ignored, so it is refused.
    let error = grokstack::config::Sweep::parse("[task]\nop = \"mul\"\ntable = \"t.csv\"\n", "sweeps/bad.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("sweeps/bad.toml") && error.contains("leave task.op out"), "{error}");
}

/// `--resume` refuses a table file that changed since the sweep started, and writes nothing.
#[test]
fn a_resume_refuses_a_changed_table() {
    let folder = common::temp_path("changed-table");
    std::fs::create_dir_all(&folder).unwrap();
    let table = folder.join("add7.csv");
    let rows = add_rows(7);
    std::fs::write(&table, csv("a,b,label", rows.iter().map(|[a, b, l]| format!("{a},{b},{l}")))).unwrap();
    let sweep = folder.join("sweep.toml");
    std::fs::write(&sweep, table_sweep("changed", "table = \"add7.csv\"")).unwrap();
    let out_dir = folder.join("out");
    let args = ["train", sweep.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--resume"];
    let out = common::grokstack(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = common::snapshot(&out_dir);
    // One label changed: the same shape, a different task.
    std::fs::write(
        &table,
        csv("a,b,label", rows.iter().map(|[a, b, l]| format!("{a},{b},{}", if a + b == 0 { 1 } else { *l }))),
    )
    .unwrap();
    let out = common::grokstack(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "resumed on a changed table");
    for part in ["has changed since the sweep was resolved", table.to_str().unwrap(), "restore it"] {
        assert!(stderr.contains(part), "`{part}` missing from:\n{stderr}");
    }
    assert_eq!(common::snapshot(&out_dir), before, "nothing in the output directory changed");
}

/// The dry run counts an expression's pairs and the ones it leaves out.
#[test]
fn the_dry_run_counts_the_pairs_an_expression_leaves_out() {
    let sweep = common::temp_path("dry-expression").with_extension("toml");
    std::fs::write(&sweep, table_sweep("dry", "op = \"x / y\"\np = 15")).unwrap();
    let out = common::grokstack(&["train", sweep.to_str().unwrap(), "--out", "/nonexistent/out", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // b must be a unit mod 15: 8 of the 15 residues.
    assert!(stdout.contains("task.op \"x / y\" mod 15: 120 of the 225 pairs have a value, 105 left out"), "{stdout}");
}
