//! study.md, its CSVs and box plots on a hand-built sweep with known answers: AdamW and Muon,
//! two learning rates each, two tasks, two output functions, two seeds per setting (four runs
//! per optimizer, learning rate and task). Under the after-train rule a run groks at
//! max(test epoch, train epoch); one run reaches the test threshold at 10 but trains to 0.99
//! only at 30. The study is written only when asked for (`AnalyzeOptions::study`, `--study`).

mod common;

use std::fs;
use std::path::Path;

use common::read_csv;
use grokstack_analysis::{analyze, AnalyzeOptions, GrokRule};
use polars::prelude::*;

const EPOCHS: i64 = 100;
const N: Option<i64> = None;

/// (optimizer, lr, task, loss, [(test epoch, train epoch) per seed]); None: never at 0.95.
type Setting = (&'static str, f64, &'static str, &'static str, [(Option<i64>, i64); 2]);

fn settings() -> Vec<Setting> {
    let at = |e: i64| (Some(e), 0);
    vec![
        // The paper's setting: AdamW 1e-3 and Muon 0.02.
        ("adamw", 0.001, "add", "softmax", [at(20), at(30)]),
        ("adamw", 0.001, "add", "stablemax", [at(40), (N, 0)]),
        ("adamw", 0.001, "mul", "softmax", [at(50), at(60)]),
        ("adamw", 0.001, "mul", "stablemax", [(Some(10), 30), at(70)]),
        ("muon", 0.02, "add", "softmax", [at(10), at(20)]),
        ("muon", 0.02, "add", "stablemax", [at(15), at(25)]),
        ("muon", 0.02, "mul", "softmax", [(N, 0), (N, 0)]),
        ("muon", 0.02, "mul", "stablemax", [at(30), at(40)]),
        // The other learning rates: AdamW 3e-3 wins add, Muon 0.05 wins mul.
        ("adamw", 0.003, "add", "softmax", [at(5), at(5)]),
        ("adamw", 0.003, "add", "stablemax", [at(5), at(5)]),
        ("adamw", 0.003, "mul", "softmax", [(N, 0), (N, 0)]),
        ("adamw", 0.003, "mul", "stablemax", [(N, 0), (N, 0)]),
        ("muon", 0.05, "add", "softmax", [(N, 0), (N, 0)]),
        ("muon", 0.05, "add", "stablemax", [(N, 0), (N, 0)]),
        ("muon", 0.05, "mul", "softmax", [at(20), at(20)]),
        ("muon", 0.05, "mul", "stablemax", [at(20), at(20)]),
    ]
}

fn write_sweep(dir: &Path, settings: Vec<Setting>) {
    let (mut run_id, mut setting_id, mut seed, mut op, mut optimizer, mut lr, mut loss) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut m_run, mut m_epoch, mut m_train, mut m_test) = (vec![], vec![], vec![], vec![]);
    for (s, (opt, rate, task, output, seeds)) in settings.into_iter().enumerate() {
        for (k, (test_epoch, train_epoch)) in seeds.into_iter().enumerate() {
            let id = run_id.len() as i64;
            run_id.push(id);
            setting_id.push(s as i64);
            seed.push(k as i64);
            op.push(task);
            optimizer.push(opt);
            lr.push(rate);
            loss.push(output);
            for epoch in 0..EPOCHS {
                m_run.push(id);
                m_epoch.push(epoch);
                m_train.push(if epoch >= train_epoch { 1.0 } else { 0.5 });
                m_test.push(if test_epoch.is_some_and(|t| epoch >= t) { 0.96 } else { 0.2 });
            }
        }
    }
    let n = run_id.len();
    let mut runs = df!(
        "run_id" => run_id,
        "setting_id" => setting_id,
        "seed" => seed,
        "task.op" => op,
        "train.epochs" => vec![EPOCHS; n],
        "train.optimizer" => optimizer,
        "train.lr" => lr,
        "train.loss" => loss,
        "status" => vec!["done"; n],
        "grok_epoch" => vec![Some(-1i64); n],
        "solve_epoch" => vec![None::<i64>; n],
        "lipschitz_at_grok" => vec![None::<f64>; n],
    )
    .unwrap();
    ParquetWriter::new(fs::File::create(dir.join("runs.parquet")).unwrap()).finish(&mut runs).unwrap();
    let mut metrics = df!("run_id" => m_run, "epoch" => m_epoch, "train_acc" => m_train, "test_acc" => m_test).unwrap();
    fs::create_dir_all(dir.join("metrics.parquet")).unwrap();
    ParquetWriter::new(fs::File::create(dir.join("metrics.parquet/part-00000.parquet")).unwrap())
        .finish(&mut metrics)
        .unwrap();
}

/// The study asked for, under `rule`.
fn study(rule: GrokRule) -> AnalyzeOptions {
    AnalyzeOptions { threshold: 0.95, group_by: vec![], grok_rule: rule, study: true, ..AnalyzeOptions::default() }
}

fn analyzed(rule: GrokRule) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), settings());
    analyze(dir.path(), &study(rule)).unwrap();
    dir
}

/// (optimizer, grokked, runs, mean, median) of a per-optimizer study CSV.
fn per_optimizer(path: &Path) -> Vec<(String, i64, i64, f64, f64)> {
    let frame = read_csv(path);
    let strings = |c: &str| {
        frame.column(c).unwrap().str().unwrap().iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>()
    };
    let ints = |c: &str| frame.column(c).unwrap().i64().unwrap().into_no_null_iter().collect::<Vec<_>>();
    let floats = |c: &str| {
        frame
            .column(c)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<_>>()
    };
    let (names, grokked, runs, mean, median) = (
        strings("train.optimizer"),
        ints("grokked"),
        ints("runs"),
        floats("mean_grok_epoch"),
        floats("median_grok_epoch"),
    );
    (0..frame.height()).map(|i| (names[i].clone(), grokked[i], runs[i], mean[i], median[i])).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn the_papers_comparison_takes_each_optimizer_at_its_default_and_counts_never_grokked_runs() {
    let dir = analyzed(GrokRule::AfterTrain);
    let rows = per_optimizer(&dir.path().join("analysis/study_paper.csv"));
    // AdamW 1e-3: 20, 30, 40, 50, 60, 30 (after-train), 70 and one never.
    let (name, grokked, runs, mean, median) = &rows[0];
    assert_eq!((name.as_str(), *grokked, *runs), ("adamw", 7, 8));
    assert!(close(*mean, 300.0 / 7.0) && close(*median, 40.0), "{rows:?}");
    // Muon 0.02: 10, 20, 15, 25, 30, 40 and two never.
    let (name, grokked, runs, mean, median) = &rows[1];
    assert_eq!((name.as_str(), *grokked, *runs), ("muon", 6, 8));
    assert!(close(*mean, 140.0 / 6.0) && close(*median, 22.5), "{rows:?}");

    let report = fs::read_to_string(dir.path().join("analysis/study.md")).unwrap();
    assert!(report.contains("| adamw | 7/8 | 42.86 |"), "{report}");
    assert!(report.contains("| muon | 6/8 | 23.33 |"), "{report}");
    assert!(report.contains("rule after-train"), "the report names its grok rule");
    // The paper's own t and p, and the smallest p its t allows.
    assert!(report.contains("t = 5.0175") && report.contains("5.23e-7"), "{report}");
}

#[test]
fn the_grok_rule_changes_the_grok_epoch() {
    let dir = analyzed(GrokRule::First);
    let rows = per_optimizer(&dir.path().join("analysis/study_paper.csv"));
    // Under the first rule the late-training run groks at 10, not 30.
    assert!(close(rows[0].3, 280.0 / 7.0), "{rows:?}");
}

#[test]
fn the_tuned_comparison_takes_the_best_learning_rate_per_task() {
    let dir = analyzed(GrokRule::AfterTrain);
    let chosen = read_csv(&dir.path().join("analysis/study_tuned_lr.csv"));
    let text = |c: &str| {
        chosen.column(c).unwrap().str().unwrap().iter().map(|v| v.unwrap_or_default().to_string()).collect::<Vec<_>>()
    };
    let lrs: Vec<f64> = chosen.column("train.lr").unwrap().f64().unwrap().into_no_null_iter().collect();
    let picked: Vec<(String, String, f64)> =
        text("train.optimizer").into_iter().zip(text("task.op")).zip(lrs).map(|((o, t), l)| (o, t, l)).collect();
    // Most runs grokked first: AdamW add 4/4 at 3e-3 against 3/4 at 1e-3; Muon mul 4/4 at 0.05.
    assert_eq!(
        picked,
        [
            ("adamw".into(), "add".into(), 0.003),
            ("adamw".into(), "mul".into(), 0.001),
            ("muon".into(), "add".into(), 0.02),
            ("muon".into(), "mul".into(), 0.05)
        ]
    );
    let rows = per_optimizer(&dir.path().join("analysis/study_tuned.csv"));
    assert_eq!((rows[0].1, rows[0].2), (8, 8));
    assert!(
        close(rows[0].3, (20.0 + 50.0 + 60.0 + 30.0 + 70.0) / 8.0),
        "AdamW: 5 ×4 and mul's 50, 60, 30, 70: {rows:?}"
    );
    assert!(close(rows[1].3, (10.0 + 20.0 + 15.0 + 25.0 + 80.0) / 8.0), "Muon: add at 0.02, mul 20 ×4: {rows:?}");
}

#[test]
fn per_task_winners_count_never_grokked_runs_as_latest() {
    let dir = analyzed(GrokRule::AfterTrain);
    let report = fs::read_to_string(dir.path().join("analysis/study.md")).unwrap();
    let section = &report[report.find("## Per task, at the paper's setting").unwrap()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    // add: AdamW 20, 30, 40, never (median over all runs 35) against Muon 10, 15, 20, 25 (17.5).
    assert!(section.contains("| add | 30 (25–35), 3/4 | 17.5 (13.75–21.25), 4/4 | muon | 17.5 |"), "{section}");
    // mul: Muon's 30, 40 and two never have an infinite median over all runs.
    assert!(
        section.contains("| mul | 55 (45–62.5), 4/4 | 35 (32.5–37.5), 2/4 | adamw | the other never |"),
        "{section}"
    );
}

/// The medians printed above the boxes, in drawing order.
fn svg_medians(path: &Path) -> Vec<String> {
    let svg = fs::read_to_string(path).unwrap();
    svg.split("median ").skip(1).map(|rest| rest.split('<').next().unwrap().trim().to_string()).collect()
}

#[test]
fn box_plots_are_valid_and_show_the_tables_medians() {
    let dir = analyzed(GrokRule::AfterTrain);
    let analysis = dir.path().join("analysis");
    for stem in ["study_box_optimizers", "study_box_tasks"] {
        let png = fs::read(analysis.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png is a PNG");
        let svg = fs::read_to_string(analysis.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{stem}.svg is an SVG");
    }
    let table: Vec<String> =
        per_optimizer(&analysis.join("study_paper.csv")).iter().map(|r| format!("{}", r.4)).collect();
    assert_eq!(svg_medians(&analysis.join("study_box_optimizers.svg")), table);
    assert_eq!(svg_medians(&analysis.join("study_box_tasks.svg")), ["30", "17.5", "55", "35"]);
}

#[test]
fn optimizers_without_a_paper_setting_still_get_the_tuned_study() {
    // The common fixture: AdamW and ⊥AdamW at learning rates 0.01–0.05, none at 1e-3.
    let dir = tempfile::tempdir().unwrap();
    common::write_fixture(dir.path(), &common::Options { lipschitz: false, progress_json: false });
    analyze(dir.path(), &study(GrokRule::First)).unwrap();
    let report = fs::read_to_string(dir.path().join("analysis/study.md")).unwrap();
    assert!(report.contains("This sweep has no runs at those learning rates."), "{report}");
    assert!(report.contains("| ortho_adamw |"), "the tuned comparison lists ⊥AdamW: {report}");
}

/// Every file the study writes of this sweep (it has a `train.loss` column, so study_losses.csv too).
const STUDY_FILES: [&str; 10] = [
    "study.md",
    "study_paper.csv",
    "study_tuned.csv",
    "study_tuned_lr.csv",
    "study_tasks.csv",
    "study_losses.csv",
    "study_box_optimizers.png",
    "study_box_optimizers.svg",
    "study_box_tasks.png",
    "study_box_tasks.svg",
];

fn study_files_present(analysis: &Path) -> Vec<&'static str> {
    STUDY_FILES.into_iter().filter(|f| analysis.join(f).exists()).collect()
}

#[test]
fn the_study_is_written_only_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), settings());
    let analysis = dir.path().join("analysis");
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    assert_eq!(study_files_present(&analysis), Vec::<&str>::new(), "no study without asking");
    assert!(analysis.join("ttest.md").is_file(), "the rest of the analysis is written");
    let report = fs::read_to_string(analysis.join("report.html")).unwrap();
    assert!(!report.contains("study"), "report.html shows no study");

    analyze(dir.path(), &study(GrokRule::First)).unwrap();
    assert_eq!(study_files_present(&analysis), STUDY_FILES);
    let report = fs::read_to_string(analysis.join("report.html")).unwrap();
    assert!(report.contains("Optimizer study (Tveit et al. 2025, made fairer)"), "report.html shows the study");

    // Analyzing again without the study removes its files, as any output the analysis no longer makes.
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    assert_eq!(study_files_present(&analysis), Vec::<&str>::new(), "no stale study left behind");
}

#[test]
fn the_study_of_one_optimizer_is_an_error_naming_the_runs_file() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), settings().into_iter().filter(|s| s.0 == "adamw").collect());
    let error = format!("{:#}", analyze(dir.path(), &study(GrokRule::First)).unwrap_err());
    let runs_file = dir.path().join("runs.parquet");
    let named = format!("{} used only adamw", runs_file.display());
    assert!(error.contains("--study") && error.contains(&named), "{error}");
    assert!(!dir.path().join("analysis").exists(), "nothing is written");
    // Without the study the same sweep analyzes.
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
}
