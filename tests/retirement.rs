//! Retiring runs (train.stop) and splitting stacks into memory-sized chunks never change a
//! run's results.

mod common;

use candle_core::Device;
use common::{read_parquet as read, GROKKING};
use grokstack::metrics::{MetricRow, Status};
use grokstack::train::Stack;

fn rows_of(rows: &[MetricRow], run_id: usize) -> Vec<&MetricRow> {
    rows.iter().filter(|r| r.run_id == run_id).collect()
}

#[test]
fn retiring_at_grok_changes_no_result() {
    let train = |stop: &str| {
        let runs = common::runs(GROKKING, &[&format!("train.stop={stop}"), "train.extra_epochs=10"]);
        let mut active_after_each_step = Vec::new();
        let outcome =
            Stack::new(runs, &Device::Cpu).unwrap().train(|_, active| active_after_each_step.push(active)).unwrap();
        (outcome, active_after_each_step)
    };
    let ((full_results, full_rows), full_active) = train("none");
    let ((retired_results, retired_rows), retired_active) = train("grok");
    assert!(full_active.iter().all(|&a| a == 4));
    assert!(retired_active.last() == Some(&2), "the two grokking runs retire: {retired_active:?}");
    assert!(retired_active.len() == 150);

    for (full, retired) in full_results.iter().zip(&retired_results) {
        assert_eq!(full.grok_epoch, retired.grok_epoch, "run {}", full.run_id);
        assert_eq!(full.lipschitz_at_grok, retired.lipschitz_at_grok);
        let (full_rows, retired_rows) = (rows_of(&full_rows, full.run_id), rows_of(&retired_rows, full.run_id));
        match full.grok_epoch {
            Some(grok) => {
                assert_eq!(retired.status, Status::Stopped);
                // Logged every 5 epochs: the first logged epoch ≥ grok + 10 is the last one.
                let last = retired_rows.last().unwrap().epoch;
                assert_eq!(last, (grok + 10).div_ceil(5) * 5, "run {}: rows end at {last}", full.run_id);
                assert_eq!(retired.epochs_trained, last + 1);
                assert_eq!(
                    &full_rows[..retired_rows.len()],
                    &retired_rows[..],
                    "metrics up to retirement are identical"
                );
            }
            None => {
                // Runs that stay in the compacted stack train exactly as before.
                assert_eq!(retired.status, Status::Done);
                assert_eq!(full_rows, retired_rows, "run {}: a compacted stack changed a remaining run", full.run_id);
            }
        }
    }
    assert!(full_results.iter().filter(|r| r.grok_epoch.is_some()).count() == 2, "the fixture needs two grokking runs");
}

/// `stop = "grok_after_train"` retires a run only after the first logged epoch with test
/// accuracy ≥ 0.95 and train accuracy ≥ 0.99 (the analysis's after-train rule), never earlier.
#[test]
fn retiring_after_train_waits_for_both_accuracies() {
    let train = |stop: &str| {
        let runs = common::runs(GROKKING, &[&format!("train.stop={stop}"), "train.extra_epochs=10"]);
        Stack::new(runs, &Device::Cpu).unwrap().train(|_, _| {}).unwrap()
    };
    let (full_results, full_rows) = train("none");
    let (retired_results, retired_rows) = train("grok_after_train");
    let mut retired = 0;
    for (full, after) in full_results.iter().zip(&retired_results) {
        let (full_rows, after_rows) = (rows_of(&full_rows, full.run_id), rows_of(&retired_rows, full.run_id));
        assert_eq!(
            &full_rows[..after_rows.len()],
            &after_rows[..],
            "run {}: metrics up to retirement are identical",
            full.run_id
        );
        match full_rows.iter().find(|r| r.test_acc >= 0.95 && r.train_acc >= 0.99) {
            Some(grokked) => {
                retired += 1;
                assert_eq!(after.status, Status::Stopped);
                let last = after_rows.last().unwrap().epoch;
                assert_eq!(last, (grokked.epoch + 10).div_ceil(5) * 5, "run {}: rows end at {last}", full.run_id);
            }
            None => assert_eq!(after.status, Status::Done, "run {} never met both", full.run_id),
        }
    }
    assert_eq!(retired, 2, "the fixture's two grokking runs retire");
}

#[test]
fn memory_chunks_give_the_same_results_as_one_stack() {
    let sweep = common::temp_path("chunks").with_extension("toml");
    std::fs::write(
        &sweep,
        "seeds = 5\n[task]\np = 13\ntrain_fraction = 0.5\n[model]\nembed_dim = 8\nhidden = \
        [16]\n[train]\nepochs = 20\n",
    )
    .unwrap();
    let train = |name: &str, extra: &[&str]| {
        let dir = common::temp_path(name);
        let mut args = vec!["train", sweep.to_str().unwrap(), "--out", dir.to_str().unwrap()];
        args.extend(extra);
        let out = common::grokstack(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        dir
    };
    let whole = train("one-chunk", &[]);
    // One run of this model needs about 28 KiB on the CPU: 64 KiB fits two runs per chunk.
    let chunked = train("three-chunks", &["--max-memory", "64KiB"]);
    let parts = |dir: &std::path::Path| std::fs::read_dir(dir.join("metrics.parquet")).unwrap().count();
    assert_eq!(parts(&whole), 1);
    assert_eq!(parts(&chunked), 3, "5 runs in chunks of at most 2");
    let a = read(&whole.join("runs.parquet"));
    let b = read(&chunked.join("runs.parquet"));
    assert!(a.equals_missing(&b), "runs.parquet differs:\n{a}\n{b}");
    let metrics = |dir: &std::path::Path| {
        let mut files: Vec<_> =
            std::fs::read_dir(dir.join("metrics.parquet")).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().map(|p| read(p)).reduce(|x, y| x.vstack(&y).unwrap()).unwrap()
    };
    assert!(metrics(&whole).equals_missing(&metrics(&chunked)), "metrics differ");

    let plan = common::grokstack(&["train", sweep.to_str().unwrap(), "--dry-run", "--max-memory", "64KiB"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("3 stack(s)"), "{text}");
    let too_small = common::grokstack(&["train", sweep.to_str().unwrap(), "--dry-run", "--max-memory", "1KiB"]);
    assert!(!too_small.status.success());
    for dir in [whole, chunked] {
        std::fs::remove_dir_all(dir).ok();
    }
}
