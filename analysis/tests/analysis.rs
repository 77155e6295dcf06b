//! Epochs-to-grok, medians, quartiles, qualification, the Pareto front, the
//! best-setting tables and missing runs, on the hand-built fixture of
//! tests/common with known answers.

mod common;

use std::fs;

use common::*;
use grokstack_analysis::{analyze, AnalyzeOptions, GrokRule};
use polars::prelude::*;

fn options(threshold: f64) -> AnalyzeOptions {
    AnalyzeOptions { threshold, ..AnalyzeOptions::default() }
}

/// (setting_id, column) of settings.csv as f64; None for null.
fn value(settings: &DataFrame, id: i64, column: &str) -> Option<f64> {
    let row = settings.clone().lazy().filter(col("setting_id").eq(lit(id))).collect().unwrap();
    assert_eq!(row.height(), 1, "setting {id} appears once");
    row.column(column).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().get(0)
}

fn qualified(settings: &DataFrame, id: i64) -> bool {
    flag(settings, id, "qualified")
}

/// (setting_id, boolean column) of settings.csv.
fn flag(settings: &DataFrame, id: i64, column: &str) -> bool {
    let row = settings.clone().lazy().filter(col("setting_id").eq(lit(id))).collect().unwrap();
    row.column(column).unwrap().bool().unwrap().get(0).unwrap()
}

#[test]
fn settings_have_known_grok_statistics() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    let report = analyze(dir.path(), &options(0.95)).unwrap();
    let settings = read_csv(&dir.path().join("analysis/settings.csv"));
    assert_eq!(settings.height(), 10);

    // Grok epochs 10, 20, 40: linear-interpolated quartiles as numpy's default.
    assert_eq!(value(&settings, 0, "median_grok_epoch"), Some(20.0));
    assert_eq!(value(&settings, 0, "q25_grok_epoch"), Some(15.0));
    assert_eq!(value(&settings, 0, "q75_grok_epoch"), Some(30.0));
    // Taken at the grok epoch itself, not at any other logged epoch.
    assert_eq!(value(&settings, 0, "median_lipschitz_at_grok"), Some(7.0));
    assert!(qualified(&settings, 0));

    // One seed never groks: statistics over the two that did, not qualified.
    assert_eq!(value(&settings, 2, "seeds"), Some(3.0));
    assert_eq!(value(&settings, 2, "grokked_seeds"), Some(2.0));
    assert!((value(&settings, 2, "grokked_fraction").unwrap() - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(value(&settings, 2, "median_grok_epoch"), Some(6.0));
    assert_eq!(value(&settings, 2, "q25_grok_epoch"), Some(5.5));
    assert!(!qualified(&settings, 2));

    // No seed groks: no statistics at all.
    assert_eq!(value(&settings, 7, "grokked_seeds"), Some(0.0));
    assert_eq!(value(&settings, 7, "median_grok_epoch"), None);
    assert_eq!(value(&settings, 7, "median_lipschitz_at_grok"), None);

    // The diverged seed's NaN accuracies never count as reaching the threshold.
    assert_eq!(value(&settings, 9, "diverged_seeds"), Some(1.0));
    assert_eq!(value(&settings, 9, "grokked_seeds"), Some(1.0));

    // The run listed without metrics is missing, not a failed seed.
    assert_eq!(value(&settings, 8, "seeds"), Some(3.0));
    assert!(qualified(&settings, 8));
    assert_eq!(report.missing_runs, TOTAL_RUNS - ANALYSED_RUNS);
    assert!(report.headline.contains("2 runs still missing"), "{}", report.headline);
    assert!(report.headline.contains("7 of 10 settings qualified"), "{}", report.headline);

    // Readable: the sweep's axes are in the table.
    for column in ["task.op", "train.optimizer", "train.lr", "train.weight_decay"] {
        assert!(settings.column(column).is_ok(), "settings.csv has {column}");
    }
    let markdown = fs::read_to_string(dir.path().join("analysis/settings.md")).unwrap();
    assert!(markdown.contains(&report.headline));
}

#[test]
fn threshold_one_gives_the_solve_epoch() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &options(1.0)).unwrap();
    let settings = read_csv(&dir.path().join("analysis/settings.csv"));
    assert_eq!(value(&settings, 0, "median_grok_epoch"), Some(20.0 + SOLVE_DELAY as f64));
    assert_eq!(value(&settings, 5, "median_grok_epoch"), Some(50.0 + SOLVE_DELAY as f64));
    // The bound is read at the solve epoch now.
    assert_eq!(value(&settings, 0, "median_lipschitz_at_grok"), Some(LIPSCHITZ_ELSEWHERE));
}

/// The fixture's test accuracy is 0.96 from the grok epoch g and 1.0 from g +
/// SOLVE_DELAY, and its train accuracy is 1.0 from epoch 5 (before every g).
#[test]
fn grok_rule_is_applied_and_named_in_every_table() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    // (rule, setting 0's median of 10, 20, 40 shifted as the rule says)
    for (rule, median, meaning) in [
        (GrokRule::First, 20.0, "test accuracy ≥ 0.95 (rule first)"),
        (GrokRule::AfterTrain, 20.0, "test accuracy ≥ 0.95 and train accuracy ≥ 0.99 (rule after-train)"),
        (
            GrokRule::NearMax,
            20.0 + SOLVE_DELAY as f64,
            "test accuracy ≥ 0.95 and within 0.01 of the run's best test accuracy (rule near-max)",
        ),
    ] {
        let opts = AnalyzeOptions { grok_rule: rule, ..AnalyzeOptions::default() };
        let report = analyze(dir.path(), &opts).unwrap();
        let settings = read_csv(&dir.path().join("analysis/settings.csv"));
        assert_eq!(value(&settings, 0, "median_grok_epoch"), Some(median), "{rule}");
        assert!(report.headline.contains(meaning), "{}", report.headline);
        for table in ["settings.md", "best.md", "ttest.md"] {
            let text = fs::read_to_string(dir.path().join("analysis").join(table)).unwrap();
            let header = text.split("\n|").next().unwrap();
            assert!(header.contains(meaning), "{rule}, {table}: {header}");
        }
    }
}

#[test]
fn pareto_front_keeps_ties_and_drops_dominated_and_unqualified() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &options(0.95)).unwrap();
    let front = read_csv(&dir.path().join("analysis/pareto.csv"))
        .lazy()
        .filter(col("front").eq(lit("overall")))
        .collect()
        .unwrap();
    let ops: Vec<&str> = front.column("task.op").unwrap().str().unwrap().no_null_iter().collect();
    let ids: Vec<i64> = front.column("setting_id").unwrap().i64().unwrap().no_null_iter().collect();
    // add: 0 and 3 tie at (20, 7); 4 at (20, 8) is dominated by both; 2 would
    // dominate everything but did not qualify. mul: 8 alone.
    assert_eq!(ops, ["add", "add", "add", "add", "add", "mul"]);
    assert_eq!(ids, [6, 0, 3, 1, 5, 8]);
}

/// (front, task.op, family, setting_id) of every row of pareto.csv, in order.
fn front_rows(dir: &std::path::Path) -> Vec<(String, String, String, i64)> {
    let front = read_csv(&dir.join("analysis/pareto.csv"));
    let text = |name: &str| -> Vec<String> {
        front.column(name).unwrap().str().unwrap().no_null_iter().map(str::to_string).collect()
    };
    let ids: Vec<i64> = front.column("setting_id").unwrap().i64().unwrap().no_null_iter().collect();
    let (fronts, ops, families) = (text("front"), text("task.op"), text("family"));
    (0..ids.len()).map(|i| (fronts[i].clone(), ops[i].clone(), families[i].clone(), ids[i])).collect()
}

#[test]
fn each_family_has_its_front_beside_the_overall_one() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    // Make setting 4 (20, 8) Muon with the hard cap, dominated overall but alone in its
    // family, and setting 5 (50, 2) constrained Scion; the rest keep adamw / ortho_adamw
    // with no constraint.
    let runs_path = dir.path().join("runs.parquet");
    let id = || col("setting_id");
    let mut runs = LazyFrame::scan_parquet(PlRefPath::try_from_path(&runs_path).unwrap(), Default::default())
        .unwrap()
        .with_columns([
            when(id().eq(lit(4)))
                .then(lit("muon"))
                .when(id().eq(lit(5)))
                .then(lit("scion"))
                .otherwise(col("train.optimizer"))
                .alias("train.optimizer"),
            when(id().eq(lit(4))).then(lit("spectral_hardcap")).otherwise(lit("none")).alias("train.constraint"),
            id().eq(lit(5)).alias("train.scion_constrained"),
        ])
        .collect()
        .unwrap();
    ParquetWriter::new(fs::File::create(&runs_path).unwrap()).finish(&mut runs).unwrap();
    analyze(dir.path(), &options(0.95)).unwrap();

    let row =
        |front: &str, op: &str, family: &str, id: i64| (front.to_string(), op.to_string(), family.to_string(), id);
    assert_eq!(
        front_rows(dir.path()),
        [
            // Overall, per task along the front: as before, each point naming its family.
            row("overall", "add", "ortho_adamw", 6),
            row("overall", "add", "adamw", 0),
            row("overall", "add", "adamw", 3),
            row("overall", "add", "adamw", 1),
            row("overall", "add", "scion_constrained", 5),
            row("overall", "mul", "adamw", 8),
            // adamw without 5: 0 and 3 tie at (20, 7), then 1 at (30, 3).
            row("adamw", "add", "adamw", 0),
            row("adamw", "add", "adamw", 3),
            row("adamw", "add", "adamw", 1),
            row("adamw", "mul", "adamw", 8),
            row("muon+spectral_hardcap", "add", "muon+spectral_hardcap", 4),
            // 7 and 9 never qualified.
            row("ortho_adamw", "add", "ortho_adamw", 6),
            row("scion_constrained", "add", "scion_constrained", 5),
        ]
    );
    let settings = read_csv(&dir.path().join("analysis/settings.csv"));
    let families: Vec<&str> = settings.column("family").unwrap().str().unwrap().no_null_iter().collect();
    assert_eq!(
        families,
        [
            "adamw",
            "adamw",
            "adamw",
            "adamw",
            "muon+spectral_hardcap",
            "scion_constrained",
            "ortho_adamw",
            "ortho_adamw",
            "adamw",
            "ortho_adamw"
        ]
    );
    assert!(dir.path().join("analysis/grok_vs_lipschitz.svg").exists());
}

/// A row of best.csv: task, optimizer, setting id, median grok epoch, difference to the baseline.
type BestRow = (String, String, Option<i64>, Option<f64>, Option<f64>);

#[test]
fn best_tables_compare_each_optimizer_with_adamw() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    let by_task = AnalyzeOptions { group_by: vec!["task.op".to_string()], ..AnalyzeOptions::default() };
    analyze(dir.path(), &by_task).unwrap();
    let best = read_csv(&dir.path().join("analysis/best.csv"));
    let rows: Vec<BestRow> = (0..best.height())
        .map(|i| {
            let text = |c: &str| best.column(c).unwrap().str().unwrap().get(i).unwrap().to_string();
            let number = |c: &str| best.column(c).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().get(i);
            let id = best.column("setting_id").unwrap().i64().unwrap().get(i);
            (
                text("task.op"),
                text("train.optimizer"),
                id,
                number("median_grok_epoch"),
                number("difference_to_baseline"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            // Settings 0, 3 and 4 tie at 20: the lowest setting_id wins.
            ("add".into(), "adamw".into(), Some(0), Some(20.0), Some(0.0)),
            ("add".into(), "ortho_adamw".into(), Some(6), Some(15.0), Some(-5.0)),
            ("mul".into(), "adamw".into(), Some(8), Some(100.0), Some(0.0)),
            ("mul".into(), "ortho_adamw".into(), None, None, None),
        ]
    );
    let markdown = fs::read_to_string(dir.path().join("analysis/best.md")).unwrap();
    assert!(markdown.contains("| task.op=add | 20 | 15 (-5) |"), "{markdown}");
    assert!(markdown.contains("| task.op=mul | 100 | >200 (>+100) |"), "{markdown}");
}

#[test]
fn default_groups_are_architecture_and_ttest_is_written() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &options(0.95)).unwrap();
    let markdown = fs::read_to_string(dir.path().join("analysis/best.md")).unwrap();
    assert!(markdown.contains("| model.hidden, model.input | adamw | ortho_adamw |"), "{markdown}");
    assert!(markdown.contains("| model.hidden=[200, 200], model.input=embedding | 20 | 15 (-5) |"), "{markdown}");

    // Pooled grok epochs of the grokked runs: adamw [10, 20, 40, 30, 30, 30, 5, 7,
    // 20 × 6, 50 × 3, 100 × 3], ortho_adamw [15, 15, 15, 60]. Expected values from
    // scipy 1.17.1, stats.ttest_ind(ortho, adamw, equal_var=False):
    // t = -0.8274341990, df = 5.4270915661, p = 0.4428428910.
    let ttest = fs::read_to_string(dir.path().join("analysis/ttest.md")).unwrap();
    assert!(ttest.contains("| adamw | 20 | 21 | 37.10 | 30.13 | baseline |"), "{ttest}");
    assert!(ttest.contains("| ortho_adamw | 4 | 9 | 26.25 | 22.50 | -0.8274 | 5.43 | 4.428e-1 |"), "{ttest}");
}

#[test]
fn no_progress_file_means_nothing_announced_missing_beyond_runs_without_metrics() {
    let dir = fixture(Options { lipschitz: true, progress_json: false });
    let report = analyze(dir.path(), &options(0.95)).unwrap();
    assert_eq!(report.missing_runs, 1);
}

#[test]
fn without_lipschitz_there_is_no_front_and_no_scatter() {
    let dir = fixture(Options { lipschitz: false, progress_json: true });
    analyze(dir.path(), &options(0.95)).unwrap();
    let out = dir.path().join("analysis");
    assert_eq!(read_csv(&out.join("pareto.csv")).height(), 0);
    assert!(!out.join("grok_vs_lipschitz.png").exists());
    assert!(out.join("accuracy_curves.png").exists());
}

#[test]
fn one_optimizer_writes_no_ttest_and_removes_a_stale_one() {
    let dir = fixture(Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &options(0.95)).unwrap();
    assert!(dir.path().join("analysis/ttest.md").exists());

    // Rewrite runs.parquet with adamw everywhere.
    let runs_path = dir.path().join("runs.parquet");
    let mut runs = LazyFrame::scan_parquet(PlRefPath::try_from_path(&runs_path).unwrap(), Default::default())
        .unwrap()
        .with_column(lit("adamw").alias("train.optimizer"))
        .collect()
        .unwrap();
    ParquetWriter::new(fs::File::create(&runs_path).unwrap()).finish(&mut runs).unwrap();
    analyze(dir.path(), &options(0.95)).unwrap();
    assert!(!dir.path().join("analysis/ttest.md").exists());
}

#[test]
fn skipped_runs_leave_their_settings_partial_and_unqualified() {
    let dir = fixture_with_skipped_runs();
    let report = analyze(dir.path(), &options(0.95)).unwrap();
    let settings = read_csv(&dir.path().join("analysis/settings.csv"));
    for &(id, _) in SKIPPED {
        assert!(flag(&settings, id, "partial"), "setting {id}");
        assert!(!qualified(&settings, id), "setting {id}");
    }
    assert_eq!(value(&settings, 9, "skipped_seeds"), Some(2.0));
    // Statistics over the runs that trained: setting 5's three seeds grokked at 50.
    assert_eq!(value(&settings, 5, "seeds"), Some(3.0));
    assert_eq!(value(&settings, 5, "skipped_seeds"), Some(1.0));
    assert_eq!(value(&settings, 5, "grokked_fraction"), Some(1.0));
    assert_eq!(value(&settings, 5, "median_grok_epoch"), Some(50.0));
    assert_eq!(value(&settings, 0, "skipped_seeds"), Some(0.0));
    assert!(!flag(&settings, 0, "partial") && qualified(&settings, 0));

    // Skipped runs are neither missing nor analysed as runs that failed to grok.
    assert_eq!(report.missing_runs, TOTAL_RUNS - ANALYSED_RUNS);
    let partial = SKIPPED.iter().map(|s| s.0).collect::<std::collections::BTreeSet<_>>().len();
    assert!(
        report.headline.contains(&format!("{} runs skipped by seed waves: {partial} settings", SKIPPED.len())),
        "{}",
        report.headline
    );
    assert!(report.headline.contains("6 of 10 settings qualified"), "{}", report.headline);
    // An unqualified setting leaves the Pareto front: setting 5 was on it.
    let front = read_csv(&dir.path().join("analysis/pareto.csv"));
    let ids: Vec<i64> = front.column("setting_id").unwrap().i64().unwrap().iter().flatten().collect();
    assert!(!ids.contains(&5), "{ids:?}");
    let markdown = fs::read_to_string(dir.path().join("analysis/settings.md")).unwrap();
    assert!(markdown.contains("skipped_seeds") && markdown.contains("partial"), "{markdown}");
}
