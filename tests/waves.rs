//! Seed waves (`train.seed_waves`): a sweep with waves trains exactly the runs of the settings
//! still standing, each identical to the same run in a sweep without waves, and lists the
//! others as skipped with the reason; bad waves are refused with the key and the file named.

mod common;

use common::{read_metrics as metrics, read_runs as runs, waves_sweep, WAVES_SET};
use grokstack::config::Sweep;
use polars::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const SEEDS: usize = 4;
/// The waves of [`WAVES_SET`], as seed positions.
const WAVE_OF_POSITION: [usize; SEEDS] = [0, 1, 2, 2];

fn ints(df: &DataFrame, name: &str) -> Vec<Option<i64>> {
    df.column(name).unwrap().i64().unwrap().iter().collect()
}

fn strings(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name).unwrap().str().unwrap().iter().map(|s| s.map(str::to_string)).collect()
}

fn only_runs(df: &DataFrame, ids: &BTreeSet<i64>) -> DataFrame {
    let mask: BooleanChunked =
        ints(df, "run_id").iter().map(|id| Some(id.is_some_and(|id| ids.contains(&id)))).collect();
    df.filter(&mask).unwrap()
}

#[test]
fn waves_train_only_the_standing_settings_and_change_no_run() {
    let (reference, _) = common::train_sweep("waves-reference", &waves_sweep(), &[]);
    let (waved, sweep) = common::train_sweep("waves", &waves_sweep(), &["--set", WAVES_SET]);
    // About 1.6 MiB a run: chunks of two.
    let chunked = common::temp_path("waves-chunked");
    let out = common::grokstack(&[
        "train",
        sweep.to_str().unwrap(),
        "--out",
        chunked.to_str().unwrap(),
        "--set",
        WAVES_SET,
        "--max-memory",
        "3500KiB",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();

    // What the waves must do, from the sweep without them: a setting leaves after the wave of
    // its first seed (in the sweep's seed order) that does not grok.
    let full = runs(&reference);
    let (ids, settings, grok) = (ints(&full, "run_id"), ints(&full, "setting_id"), ints(&full, "grok_epoch"));
    let mut failed_in: BTreeMap<i64, usize> = BTreeMap::new();
    for i in 0..full.height() {
        let wave = WAVE_OF_POSITION[ids[i].unwrap() as usize % SEEDS];
        if grok[i].is_none() {
            let first = failed_in.entry(settings[i].unwrap()).or_insert(wave);
            *first = (*first).min(wave);
        }
    }
    let expected_skipped: BTreeSet<i64> = (0..full.height())
        .filter(|&i| {
            failed_in
                .get(&settings[i].unwrap())
                .is_some_and(|&w| WAVE_OF_POSITION[ids[i].unwrap() as usize % SEEDS] > w)
        })
        .map(|i| ids[i].unwrap())
        .collect();
    let all_settings: BTreeSet<i64> = settings.iter().flatten().copied().collect();
    let qualifying: BTreeSet<i64> = all_settings.iter().copied().filter(|s| !failed_in.contains_key(s)).collect();
    assert!(
        !qualifying.is_empty() && failed_in.values().any(|&w| w == 0) && failed_in.values().any(|&w| w > 0),
        "the fixture needs a qualifying setting, one failing in wave 1 and one failing later: {failed_in:?}"
    );

    let with_waves = runs(&waved);
    let status = strings(&with_waves, "status");
    let reasons = strings(&with_waves, "skip_reason");
    let skipped: BTreeSet<i64> = ints(&with_waves, "run_id")
        .into_iter()
        .zip(&status)
        .filter(|(_, s)| s.as_deref() == Some("skipped"))
        .map(|(id, _)| id.unwrap())
        .collect();
    assert_eq!(skipped, expected_skipped, "the runs of settings out of the sweep, and only those, are skipped");
    for (i, reason) in reasons.iter().enumerate() {
        assert_eq!(
            reason.is_some(),
            status[i].as_deref() == Some("skipped"),
            "row {i}: a reason exactly for the skipped runs"
        );
    }
    // A skipped run names the run that took its setting out: the setting's first failure.
    for (i, reason) in reasons.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| (i, r))) {
        let setting = ints(&with_waves, "setting_id")[i].unwrap();
        let culprit = (0..full.height())
            .find(|&j| settings[j] == Some(setting) && grok[j].is_none())
            .map(|j| ids[j].unwrap())
            .unwrap();
        assert!(reason.contains(&format!("run {culprit} ")), "{reason}");
    }
    assert_eq!(with_waves.height(), full.height(), "every run of the sweep is listed");
    let saved = expected_skipped.len() * 150;
    assert!(
        summary.contains(&format!(
            "{} runs skipped by seed waves, saving up to {saved} run-epochs",
            expected_skipped.len()
        )),
        "{summary}"
    );

    // The trained runs are those of the sweep without waves, row for row and metric for metric.
    let trained: BTreeSet<i64> = ids.iter().flatten().copied().filter(|id| !skipped.contains(id)).collect();
    let columns: Vec<String> = full.get_column_names().iter().map(|c| c.to_string()).collect();
    let trained_rows = only_runs(&with_waves, &trained).select(columns).unwrap();
    assert!(
        only_runs(&full, &trained).equals_missing(&trained_rows),
        "trained runs differ from the sweep without waves"
    );
    let waved_metrics = metrics(&waved);
    assert!(
        only_runs(&metrics(&reference), &trained).equals_missing(&waved_metrics),
        "metrics differ from the sweep without waves"
    );
    let logged: BTreeSet<i64> = ints(&waved_metrics, "run_id").into_iter().flatten().collect();
    assert_eq!(logged, trained, "a skipped run trains no epoch");

    // The same qualifying settings: every seed trained and grokked.
    let waved_grok = ints(&with_waves, "grok_epoch");
    let waved_settings = ints(&with_waves, "setting_id");
    let qualifying_with_waves: BTreeSet<i64> = all_settings
        .iter()
        .copied()
        .filter(|&s| (0..with_waves.height()).all(|i| waved_settings[i] != Some(s) || waved_grok[i].is_some()))
        .collect();
    assert_eq!(qualifying_with_waves, qualifying);

    // The analysis finds the same qualifying settings, and counts the skipped runs apart.
    let analysed = |dir: &Path| {
        let report = grokstack_analysis::analyze(dir, &grokstack_analysis::AnalyzeOptions::default()).unwrap();
        let csv = CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(dir.join("analysis/settings.csv")))
            .unwrap()
            .finish()
            .unwrap();
        let qualified: BTreeSet<i64> = ints(&csv, "setting_id")
            .into_iter()
            .zip(csv.column("qualified").unwrap().bool().unwrap().iter())
            .filter(|(_, q)| *q == Some(true))
            .map(|(id, _)| id.unwrap())
            .collect();
        (report, qualified)
    };
    let (report, qualified_by_analysis) = analysed(&waved);
    assert_eq!(qualified_by_analysis, qualifying);
    assert_eq!(analysed(&reference).1, qualifying);
    assert_eq!(report.missing_runs, 0, "skipped runs are not missing");
    assert!(report.headline.contains(&format!("{} runs skipped by seed waves", skipped.len())), "{}", report.headline);

    // Chunks inside each wave (some of them all skipped) change nothing either.
    assert!(runs(&waved).equals_missing(&runs(&chunked)), "chunked waves: runs.parquet differs");
    assert!(waved_metrics.equals_missing(&metrics(&chunked)), "chunked waves: metrics differ");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chunked.join("plan.json")).unwrap()).unwrap();
    assert!(plan["parts"].as_array().unwrap().len() > 3, "the chunked sweep has several parts per wave: {plan}");
    assert_eq!(plan["seed_waves"], serde_json::json!([1, 1, 2]));
    let unwaved_plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference.join("plan.json")).unwrap()).unwrap();
    assert!(
        unwaved_plan.get("seed_waves").is_none(),
        "a sweep without waves keeps the plan format of earlier versions: {unwaved_plan}"
    );

    // Exporting a skipped run says why there is nothing to export.
    let skipped_run = skipped.iter().next().unwrap().to_string();
    let export = common::grokstack(&[
        "export",
        waved.to_str().unwrap(),
        "--run",
        &skipped_run,
        "--out",
        common::temp_path("skipped.safetensors").to_str().unwrap(),
    ]);
    assert!(
        !export.status.success() && String::from_utf8_lossy(&export.stderr).contains("skipped by seed waves"),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    for dir in [reference, waved, chunked] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn dry_run_shows_the_waves_and_the_work() {
    let sweep = common::temp_path("waves-dry").with_extension("toml");
    std::fs::write(&sweep, waves_sweep()).unwrap();
    let out = common::grokstack(&["train", sweep.to_str().unwrap(), "--dry-run", "--set", WAVES_SET]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let settings = 3;
    let (all, first) = (settings * SEEDS * 150, settings * 150);
    assert!(text.contains("seed waves [1, 1, 2]") && text.contains("wave 3/3 stack 2: R = 6"), "{text}");
    assert!(
        text.contains(&format!(
            "worst case (every setting qualifies, every run trains its whole budget): {all} run-epochs"
        )),
        "{text}"
    );
    let percent = 100.0 * first as f64 / all as f64;
    assert!(text.contains(&format!("every setting leaves in wave 1: {first} run-epochs ({percent:.1}%)")), "{text}");
    std::fs::remove_file(sweep).ok();
}

#[test]
fn bad_seed_waves_are_refused_with_the_key_and_the_file() {
    let plain = waves_sweep();
    let with = |waves: &str| format!("{plain}seed_waves = {waves}\n");
    for (waves, expected) in [
        ("[1, 1]", "hold 2 seeds, but the sweep has 4"),
        ("[2, 0, 2]", "wave 2 has 0 seeds"),
        ("[5, -1]", "wave 2 has -1 seeds"),
        ("8", "expected a list of seed counts"),
        ("[2, \"two\"]", "wave 2: expected a seed count"),
        ("[]", "the list is empty"),
    ] {
        let error = Sweep::parse(&with(waves), "bad.toml", &[]).unwrap_err().to_string();
        assert!(
            error.contains("bad.toml") && error.contains("train.seed_waves") && error.contains(expected),
            "{waves}: {error}"
        );
    }
    let error = Sweep::parse(&plain, "bad.toml", &["train.seed_waves=[3,3]".into()]).unwrap_err().to_string();
    assert!(error.contains("train.seed_waves") && error.contains("hold 6 seeds"), "{error}");
    let grid = plain.replace("[grid]", "[grid]\n\"train.seed_waves\" = [[2, 2], [4]]");
    let error = Sweep::parse(&grid, "bad.toml", &[]).unwrap_err().to_string();
    assert!(
        error.contains("bad.toml") && error.contains("train.seed_waves") && error.contains("not a grid axis"),
        "{error}"
    );
    // One wave of every seed is the default, and reads back as it.
    let one = Sweep::parse(&with("[4]"), "one.toml", &[]).unwrap();
    assert_eq!(one.to_toml(), Sweep::parse(&plain, "none.toml", &[]).unwrap().to_toml());
    let waved = Sweep::parse(&with("[1, 3]"), "w.toml", &[]).unwrap();
    assert_eq!(Sweep::parse(&waved.to_toml(), "again.toml", &[]).unwrap(), waved, "sweep.toml keeps the waves");
}

#[test]
fn resuming_with_other_waves_is_refused_and_touches_nothing() {
    let tiny = common::TINY.replace("epochs = 3", "epochs = 3\nseed_waves = [1, 1]");
    let (dir, sweep) = common::train_sweep("waves-refused", &tiny, &[]);
    let files = || {
        let mut names: Vec<_> = walk(&dir).into_iter().filter(|(p, _)| !p.ends_with(".lock")).collect();
        names.sort();
        names
    };
    let before = files();
    let refused = |extra: &[&str]| {
        let mut args = vec!["train", sweep.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--resume"];
        args.extend(extra);
        let out = common::grokstack(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success()
                && stderr.contains(dir.to_str().unwrap())
                && stderr.contains("resumes only with the waves it started with"),
            "{extra:?}: {stderr}"
        );
        stderr
    };
    assert!(refused(&["--set", "train.seed_waves=[2]"])
        .contains("started with train.seed_waves = [1, 1], this command asks for one wave of all seeds"));
    std::fs::write(&sweep, common::TINY).unwrap();
    refused(&[]);
    assert!(before == files(), "a refused resume changed the directory");
    std::fs::remove_dir_all(&dir).ok();
}

fn walk(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    out
}
