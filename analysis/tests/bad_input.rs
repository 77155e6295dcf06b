//! Bad input fails with an error naming what is wrong, and writes or
//! overwrites nothing.

mod common;

use std::fs;

use common::*;
use grokstack_analysis::{analyze, AnalyzeOptions};

fn message(result: anyhow::Result<grokstack_analysis::AnalysisReport>) -> String {
    format!("{:#}", result.expect_err("analysis must fail"))
}

#[test]
fn directory_without_runs_parquet() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "not a sweep").unwrap();
    let before = snapshot(dir.path());
    let error = message(analyze(dir.path(), &AnalyzeOptions::default()));
    assert!(error.contains("runs.parquet"), "{error}");
    assert_eq!(snapshot(dir.path()), before);
    assert!(!dir.path().join("analysis").exists());
}

#[test]
fn missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("no-such-sweep");
    let error = message(analyze(&absent, &AnalyzeOptions::default()));
    assert!(error.contains("no-such-sweep"), "{error}");
    assert!(!absent.exists());
}

#[test]
fn threshold_outside_zero_one() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    let before = snapshot(dir.path());
    for threshold in [0.0, -0.5, 1.0001, 95.0, f64::NAN] {
        let error = message(analyze(dir.path(), &AnalyzeOptions { threshold, ..AnalyzeOptions::default() }));
        assert!(error.contains("threshold"), "{threshold}: {error}");
    }
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn group_key_that_is_not_a_column_leaves_an_earlier_analysis_alone() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let before = snapshot(dir.path());
    let opts = AnalyzeOptions {
        threshold: 0.9,
        group_by: vec!["model.hidden".into(), "model.widht".into()],
        ..AnalyzeOptions::default()
    };
    let error = message(analyze(dir.path(), &opts));
    assert!(error.contains("model.widht") && error.contains("runs.parquet"), "{error}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn runs_without_metrics_folder() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    fs::remove_dir_all(dir.path().join("metrics.parquet")).unwrap();
    let before = snapshot(dir.path());
    let error = message(analyze(dir.path(), &AnalyzeOptions::default()));
    assert!(error.contains("metrics.parquet"), "{error}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn runs_parquet_that_is_not_parquet() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    fs::write(dir.path().join("runs.parquet"), "garbage").unwrap();
    let before = snapshot(dir.path());
    let error = message(analyze(dir.path(), &AnalyzeOptions::default()));
    assert!(error.contains("runs.parquet"), "{error}");
    assert_eq!(snapshot(dir.path()), before);
}
