//! Fault isolation: a run whose loss or weights go NaN/inf is marked `diverged`, stops
//! updating (leaves its stack, whatever `train.stop` says), and every other run of its stack
//! gets exactly — bit for bit — the metrics it gets in the same stack without it.

mod common;

use candle_core::Device;
use grokstack::config::RunSpec;
use grokstack::metrics::{MetricRow, RunResult, Status};
use grokstack::train::Stack;

const BASE: &str = r#"
seeds = 3
[task]
p = 23
train_fraction = 0.6
[model]
embed_dim = 8
hidden = [24, 24]
[train]
epochs = 30
weight_decay = 1.0
[metrics]
power_iters = 2
[grid]
"train.lr" = [0.01, 1e6]
"#;

fn train(runs: Vec<RunSpec>) -> (Vec<RunResult>, Vec<MetricRow>, Vec<usize>) {
    let mut active = Vec::new();
    let (results, rows) = Stack::new(runs, &Device::Cpu).unwrap().train(|_, a| active.push(a)).unwrap();
    (results, rows, active)
}

fn check(sets: &[&str]) {
    let runs = common::runs(BASE, sets);
    // lr 0.01: runs 0, 1, 2; lr 1e6 (decay factor 1 − 1e6 per step): runs 3, 4, 5.
    let healthy: Vec<RunSpec> = runs[..3].to_vec();
    let diverging = runs[4].clone();
    let mut with = healthy.clone();
    with.insert(1, diverging.clone());

    let (alone_results, alone_rows, _) = train(healthy.clone());
    let (results, rows, active) = train(with);
    for run in &healthy {
        let pick = |rows: &[MetricRow]| rows.iter().filter(|r| r.run_id == run.run_id).cloned().collect::<Vec<_>>();
        let (a, b) = (pick(&alone_rows), pick(&rows));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{sets:?}: run {} changed when a diverging run shared its stack", run.run_id);
        let result = |results: &[RunResult]| results.iter().find(|r| r.run_id == run.run_id).cloned().unwrap();
        assert_eq!(result(&alone_results), result(&results));
        assert_eq!(result(&results).status, Status::Done);
    }
    let bad = results.iter().find(|r| r.run_id == diverging.run_id).unwrap();
    assert_eq!(bad.status, Status::Diverged, "{sets:?}: {bad:?}");
    let bad_rows: Vec<_> = rows.iter().filter(|r| r.run_id == diverging.run_id).collect();
    let last = bad_rows.last().unwrap();
    assert!(
        ![last.train_loss, last.test_loss, last.weight_norm].iter().all(|x| x.is_finite()),
        "the last row is the diverged one"
    );
    assert!(bad_rows[..bad_rows.len() - 1].iter().all(|r| r.train_loss.is_finite() && r.weight_norm.is_finite()));
    assert_eq!(bad.epochs_trained, last.epoch + 1, "marked diverged at the epoch it was found");
    assert!(bad.epochs_trained < 30);
    // It stops updating: it leaves the stack, with `train.stop = "none"` too.
    assert_eq!(active.first(), Some(&4));
    assert_eq!(active.last(), Some(&3), "{sets:?}: the diverged run still trains: {active:?}");
}

#[test]
fn a_diverging_adamw_run_changes_no_other_run() {
    check(&["train.optimizer=adamw"]);
    // Logged every 4 epochs (the run is NaN for a few steps before anyone looks), no
    // retirement at grok, the Lipschitz bound on (NaN power iterations in the same matmuls).
    check(&["train.optimizer=adamw", "train.log_every=4", "train.stop=none", "metrics.lipschitz=true"]);
    check(&["train.optimizer=adamw", "train.dtype=bf16", "train.log_every=3"]);
}

#[test]
fn a_diverging_run_changes_no_other_run_under_any_optimizer() {
    for optimizer in ["ortho_adamw", "sgd", "muon"] {
        check(&[
            &format!("train.optimizer={optimizer}"),
            "train.log_every=4",
            "train.stop=none",
            "metrics.lipschitz=true",
        ]);
    }
}
