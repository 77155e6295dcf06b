//! The phases of grokking (`metrics.progress`) on a hand-built sweep whose progress measures put
//! every phase at a known epoch; and that a sweep without them gets no phase outputs.

mod common;

use std::fs;
use std::path::Path;

use common::{read_csv, snapshot, write_fixture, Options};
use grokstack_analysis::{analyze, AnalyzeOptions};
use polars::prelude::*;

const EPOCHS: i64 = 20;

/// One run: its phase epochs as the curves below put them (memorization, circuit, grok,
/// cleanup end; None: never groks, so no cleanup) and its final key frequencies.
struct Run {
    setting: i64,
    op: &'static str,
    lr: f64,
    phases: (i64, i64, Option<(i64, i64)>),
    final_keys: &'static [i64],
}

/// Setting 0 (add mod 113, lr 0.01): memorization 2, 3, 4 (median 3, quartiles 2.5 and 3.5), circuit 5,
/// 6, 9 (6; 5.5, 7.5), grok 8, 10, 13 (10; 9, 11.5), cleanup end 12, 14, 16 (14; 13, 15); its
/// median seed is run 1. Setting 1 (mul mod 97, lr 0.02): memorization 1, 2, 1 (1; 1, 1.5), circuit 3,
/// 4, 2 (3; 2.5, 3.5), grok 5, never, 6 (5.5; 5.25, 5.75), cleanup end 7, never, 9 (8; 7.5, 8.5);
/// by grok epoch its runs are 3, 5, 4, so its median seed is run 5.
fn runs() -> Vec<Run> {
    let run = |setting, op, lr, phases, final_keys| Run { setting, op, lr, phases, final_keys };
    vec![
        run(0, "add", 0.01, (2, 5, Some((8, 12))), &[14, 35, 41]),
        run(0, "add", 0.01, (3, 6, Some((10, 14))), &[14, 35, 52]),
        run(0, "add", 0.01, (4, 9, Some((13, 16))), &[14, 41, 52]),
        run(1, "mul", 0.02, (1, 3, Some((5, 7))), &[7, 21]),
        run(1, "mul", 0.02, (2, 4, None), &[7]),
        run(1, "mul", 0.02, (1, 2, Some((6, 9))), &[21, 7]),
    ]
}

/// The progress measures of a run per epoch: train accuracy 1 from memorization on; restricted
/// loss 4 before the circuit, 1.5 from it and 0.5 two epochs later (so threshold 0.5 finds the
/// circuit epoch and 0.8 finds two epochs later); test accuracy 1 from the grok epoch; weight
/// norm 40 until the cleanup ends, 20 from then on.
fn write_sweep(dir: &Path, with_progress: bool) {
    let runs = runs();
    let mut metrics: Vec<Column> = Vec::new();
    let (mut run_id, mut epoch, mut train_acc, mut test_acc) = (vec![], vec![], vec![], vec![]);
    let (mut restricted, mut excluded, mut norm, mut keys) = (vec![], vec![], vec![], vec![]);
    for (id, run) in runs.iter().enumerate() {
        let (memorization, circuit, grok) = run.phases;
        for e in 0..EPOCHS {
            run_id.push(id as i64);
            epoch.push(e);
            train_acc.push(if e >= memorization { 1.0 } else { 0.5 });
            test_acc.push(if grok.is_some_and(|(g, _)| e >= g) { 1.0 } else { 0.1 });
            restricted.push(if e >= circuit + 2 {
                0.5
            } else if e >= circuit {
                1.5
            } else {
                4.0
            });
            excluded.push(if e >= circuit { 3.0 } else { 0.1 });
            norm.push(if grok.is_some_and(|(_, end)| e >= end) { 20.0 } else { 40.0 });
            let at_end: &[i64] = if e == EPOCHS - 1 { run.final_keys } else { &[1, 2] };
            keys.push(Series::new("".into(), at_end));
        }
    }
    let rows = run_id.len();
    metrics.extend([
        Column::new("run_id".into(), run_id),
        Column::new("epoch".into(), epoch),
        Column::new("train_loss".into(), vec![0.01; rows]),
        Column::new("train_acc".into(), train_acc),
        Column::new("test_loss".into(), vec![2.0; rows]),
        Column::new("test_acc".into(), test_acc),
        Column::new("weight_norm".into(), norm),
    ]);
    if with_progress {
        metrics.extend([
            Column::new("restricted_loss".into(), restricted),
            Column::new("excluded_loss".into(), excluded),
            Column::new("key_frequencies".into(), keys),
            Column::new("embedding_spectrum".into(), vec![Series::new("".into(), [0.5, 0.5]); rows]),
            Column::new("embedding_gini".into(), vec![0.3; rows]),
            Column::new("embedding_ipr".into(), vec![0.5; rows]),
        ]);
    }
    let n = runs.len();
    let mut runs_frame = df!(
        "run_id" => (0..n as i64).collect::<Vec<_>>(),
        "setting_id" => runs.iter().map(|r| r.setting).collect::<Vec<_>>(),
        "seed" => (0..n as i64).map(|i| i % 3).collect::<Vec<_>>(),
        "task.op" => runs.iter().map(|r| r.op).collect::<Vec<_>>(),
        "task.p" => runs.iter().map(|r| if r.setting == 0 { 113i64 } else { 97 }).collect::<Vec<_>>(),
        "train.epochs" => vec![EPOCHS; n],
        "train.optimizer" => vec!["adamw"; n],
        "train.lr" => runs.iter().map(|r| r.lr).collect::<Vec<_>>(),
        "train.weight_decay" => vec![1.0; n],
        "metrics.progress" => vec![with_progress; n],
        "status" => vec!["done"; n],
        // The trainer's own values, which the analysis recomputes.
        "grok_epoch" => vec![None::<i64>; n],
        "solve_epoch" => vec![None::<i64>; n],
        "lipschitz_at_grok" => vec![None::<f64>; n],
    )
    .unwrap();
    fs::create_dir_all(dir.join("metrics.parquet")).unwrap();
    let mut metrics = DataFrame::new(rows, metrics).unwrap();
    ParquetWriter::new(fs::File::create(dir.join("metrics.parquet/part-00000.parquet")).unwrap())
        .finish(&mut metrics)
        .unwrap();
    ParquetWriter::new(fs::File::create(dir.join("runs.parquet")).unwrap()).finish(&mut runs_frame).unwrap();
}

fn ints(frame: &DataFrame, name: &str) -> Vec<Option<i64>> {
    frame.column(name).unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().iter().collect()
}

fn floats(frame: &DataFrame, name: &str) -> Vec<Option<f64>> {
    frame.column(name).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().iter().collect()
}

#[test]
fn phase_epochs_per_run_are_where_the_curves_put_them() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), true);
    let report = analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let expected = runs();
    let runs = read_csv(&dir.path().join("analysis/phase_runs.csv"));
    assert_eq!(ints(&runs, "run_id"), (0..6).map(Some).collect::<Vec<_>>());
    let memorization: Vec<_> = expected.iter().map(|r| Some(r.phases.0)).collect();
    let circuit: Vec<_> = expected.iter().map(|r| Some(r.phases.1)).collect();
    let grok: Vec<_> = expected.iter().map(|r| r.phases.2.map(|p| p.0)).collect();
    let cleanup: Vec<_> = expected.iter().map(|r| r.phases.2.map(|p| p.1)).collect();
    assert_eq!(ints(&runs, "memorization_epoch"), memorization);
    assert_eq!(ints(&runs, "circuit_epoch"), circuit);
    assert_eq!(ints(&runs, "grok_epoch"), grok);
    assert_eq!(ints(&runs, "cleanup_end_epoch"), cleanup);
    assert_eq!(floats(&runs, "restricted_loss_at_memorization"), vec![Some(4.0); 6]);
    let finals: Vec<String> = runs
        .column("final_key_frequencies")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|text| text.unwrap().to_string())
        .collect();
    assert_eq!(finals, ["14 35 41", "14 35 52", "14 41 52", "7 21", "7", "21 7"]);

    assert!(
        report.headline.contains(
            "median epochs and the runs that reached each: memorization 2 (6 runs), circuit formation 4.5 (6 runs), \
         grok 8 (5 runs), cleanup end 12 (5 runs)"
        ),
        "{}",
        report.headline
    );
    assert!(report.headline.contains("--circuit-threshold 0.5"), "{}", report.headline);
    assert!(
        report.headline.contains(
            "Final key frequencies most often found for add, p = 113: 14 (3 of 3 runs), 35 (2 of 3 runs), \
             41 (2 of 3 runs), 52 (2 of 3 runs)."
        ),
        "{}",
        report.headline
    );
    assert!(report.headline.contains("for mul, p = 97: 7 (3 of 3 runs), 21 (2 of 3 runs)."), "{}", report.headline);
}

#[test]
fn per_setting_medians_quartiles_and_key_frequency_counts() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), true);
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let settings = read_csv(&dir.path().join("analysis/phase_settings.csv"));
    assert_eq!(ints(&settings, "setting_id"), [Some(0), Some(1)]);
    assert_eq!(ints(&settings, "seeds"), [Some(3), Some(3)]);
    let expected: [(&str, [f64; 2]); 16] = [
        ("memorization_seeds", [3.0, 3.0]),
        ("median_memorization_epoch", [3.0, 1.0]),
        ("q25_memorization_epoch", [2.5, 1.0]),
        ("q75_memorization_epoch", [3.5, 1.5]),
        ("circuit_seeds", [3.0, 3.0]),
        ("median_circuit_epoch", [6.0, 3.0]),
        ("q25_circuit_epoch", [5.5, 2.5]),
        ("q75_circuit_epoch", [7.5, 3.5]),
        ("grok_seeds", [3.0, 2.0]),
        ("median_grok_epoch", [10.0, 5.5]),
        ("q25_grok_epoch", [9.0, 5.25]),
        ("q75_grok_epoch", [11.5, 5.75]),
        ("cleanup_end_seeds", [3.0, 2.0]),
        ("median_cleanup_end_epoch", [14.0, 8.0]),
        ("q25_cleanup_end_epoch", [13.0, 7.5]),
        ("q75_cleanup_end_epoch", [15.0, 8.5]),
    ];
    for (name, values) in expected {
        assert_eq!(floats(&settings, name), values.map(Some), "{name}");
    }
    assert_eq!(ints(&settings, "median_seed_run_id"), [Some(1), Some(5)]);
    // The varying columns name the setting.
    assert_eq!(floats(&settings, "train.lr"), [Some(0.01), Some(0.02)]);

    let counts = read_csv(&dir.path().join("analysis/phase_key_frequencies.csv"));
    assert_eq!(ints(&counts, "setting_id"), [0, 0, 0, 0, 1, 1].map(Some));
    assert_eq!(ints(&counts, "frequency"), [14, 35, 41, 52, 7, 21].map(Some));
    assert_eq!(ints(&counts, "runs"), [3, 2, 2, 2, 3, 2].map(Some));
    assert_eq!(ints(&counts, "seeds"), [Some(3); 6]);
    let two_thirds = 2.0 / 3.0;
    let fractions = floats(&counts, "fraction");
    for (got, want) in fractions.iter().zip([1.0, two_thirds, two_thirds, two_thirds, 1.0, two_thirds]) {
        assert!((got.unwrap() - want).abs() < 1e-12, "{fractions:?}");
    }
}

#[test]
fn circuit_threshold_is_applied_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), true);
    let strict = AnalyzeOptions { circuit_threshold: 0.8, ..AnalyzeOptions::default() };
    let report = analyze(dir.path(), &strict).unwrap();
    let runs = read_csv(&dir.path().join("analysis/phase_runs.csv"));
    // Restricted loss 0.5 ≤ 0.2 × 4 is first reached two epochs after the circuit epoch at 0.5.
    let later: Vec<_> = runs_circuits().iter().map(|c| Some(c + 2)).collect();
    assert_eq!(ints(&runs, "circuit_epoch"), later);
    assert!(report.headline.contains("at most 0.2 × its value at memorization"), "{}", report.headline);

    let before = snapshot(dir.path());
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let options = AnalyzeOptions { circuit_threshold: bad, ..AnalyzeOptions::default() };
        let error = format!("{:#}", analyze(dir.path(), &options).expect_err("refused"));
        assert!(error.contains("--circuit-threshold"), "{bad}: {error}");
    }
    assert_eq!(snapshot(dir.path()), before, "a refused analysis changes nothing");
}

fn runs_circuits() -> Vec<i64> {
    runs().iter().map(|r| r.phases.1).collect()
}

#[test]
fn phase_plots_and_tables_are_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), true);
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let analysis = dir.path().join("analysis");
    for stem in ["phase_losses", "phase_epochs", "phase_key_frequencies"] {
        for ext in ["png", "svg"] {
            let file = analysis.join(format!("{stem}.{ext}"));
            assert!(fs::metadata(&file).unwrap().len() > 0, "{}", file.display());
        }
    }
    let html = fs::read_to_string(analysis.join("report.html")).unwrap();
    for id in ["phase_losses", "phase_epochs", "phase_key_frequencies"] {
        assert!(html.contains(&format!("<figure id=\"{id}\">")), "{id}");
    }
    for table in ["phase_settings.csv", "phase_key_frequencies.csv"] {
        assert!(html.contains(&format!("data-file=\"{table}\"")), "{table}");
    }
    // One row per run is too long for the page: phase_runs.csv is only a file.
    assert!(!html.contains("data-file=\"phase_runs.csv\""));
    // The loss curves are the median seeds': run 1 for setting 0, run 5 for setting 1.
    let losses = fs::read_to_string(analysis.join("phase_losses.svg")).unwrap();
    assert!(losses.contains("(run 1)") && losses.contains("(run 5)"), "median seeds named in the panels");
    for legend in ["restricted", "excluded", "circuit formation", "cleanup end"] {
        assert!(losses.contains(legend), "{legend}");
    }
}

#[test]
fn without_progress_columns_there_are_no_phase_outputs_and_stale_ones_go() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), true);
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    assert!(dir.path().join("analysis/phase_runs.csv").exists());

    write_sweep(dir.path(), false);
    let report = analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    assert!(!report.headline.contains("Phases"), "{}", report.headline);
    let files: Vec<String> = fs::read_dir(dir.path().join("analysis"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| !f.starts_with("phase_")), "{files:?}");
    let html = fs::read_to_string(dir.path().join("analysis/report.html")).unwrap();
    assert!(!html.contains("phase_"), "no phase plot or table in the report");
}

#[test]
fn the_shared_fixture_without_progress_columns_gets_no_phase_outputs() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path(), &Options { lipschitz: true, progress_json: true });
    analyze(dir.path(), &AnalyzeOptions::default()).unwrap();
    let files: Vec<String> = fs::read_dir(dir.path().join("analysis"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| !f.starts_with("phase_")), "{files:?}");
}

#[test]
fn progress_columns_without_the_weight_norm_name_the_column_and_file() {
    let dir = tempfile::tempdir().unwrap();
    write_sweep(dir.path(), true);
    let part = dir.path().join("metrics.parquet/part-00000.parquet");
    let mut metrics = LazyFrame::scan_parquet(PlRefPath::try_from_path(&part).unwrap(), Default::default())
        .unwrap()
        .drop(cols(["weight_norm"]))
        .collect()
        .unwrap();
    ParquetWriter::new(fs::File::create(&part).unwrap()).finish(&mut metrics).unwrap();
    let error = format!("{:#}", analyze(dir.path(), &AnalyzeOptions::default()).expect_err("refused"));
    assert!(error.contains("`weight_norm`") && error.contains("part-00000.parquet"), "{error}");
}
