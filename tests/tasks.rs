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
