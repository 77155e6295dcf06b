//! Shards (`train --shard K/N`, `merge`, `analyze` of a sharded directory): the split is
//! disjoint, covering, deterministic, keeps the seeds of a setting together and is balanced;
//! merged shards are the single-process sweep row for row; missing, duplicated and foreign
//! shards are reported with their names.

mod common;

use common::{grokstack, read_metrics as metrics, read_parquet, read_runs, snapshot, temp_path};
use grokstack::config::Sweep;
use grokstack::shard::{self, Shard};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// 12 settings of unequal work (three widths × two epoch budgets × two learning rates) of
/// [`common::TINY`], 2 seeds.
fn sweep_text() -> String {
    format!(
        "{}\n[grid]\n\"model.hidden\" = [[5, 4], [12, 12], [8]]\n\"train.epochs\" = [4, 9]\n\"train.lr\" = [0.01, \
        0.03]\n",
        common::TINY
    )
}

fn sweep(text: &str) -> Sweep {
    Sweep::parse(text, "shards.toml", &[]).unwrap()
}

/// The sweep file of [`sweep_text`] and a fresh output directory next to it.
fn fixture(name: &str) -> (PathBuf, PathBuf) {
    let dir = temp_path(name);
    let file = dir.with_extension("toml");
    std::fs::write(&file, sweep_text()).unwrap();
    (dir, file)
}

fn train(file: &Path, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", file.to_str().unwrap(), "--out", dir.to_str().unwrap()];
    args.extend(extra);
    grokstack(&args)
}

fn train_ok(file: &Path, dir: &Path, extra: &[&str]) {
    let out = train(file, dir, extra);
    assert!(out.status.success(), "train {extra:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn shards_are_disjoint_covering_deterministic_and_balanced() {
    let lipschitz = sweep(include_str!("../sweeps/lipschitz.toml"));
    for (s, counts) in [(sweep(&sweep_text()), (1..=12).collect::<Vec<usize>>()), (lipschitz, vec![2, 3, 8, 16])] {
        let runs = s.runs().unwrap();
        let work = shard::setting_work(&runs);
        let largest = work.iter().copied().fold(0.0, f64::max);
        let mean_of = |n: usize| work.iter().sum::<f64>() / n as f64;
        for count in counts {
            let mut seen = vec![0; runs.len()];
            let mut loads = Vec::new();
            for index in 0..count {
                let mine = shard::runs_of(&s, Some(Shard { index, count })).unwrap();
                let again = shard::runs_of(&s, Some(Shard { index, count })).unwrap();
                assert_eq!(
                    mine.iter().map(|r| r.run_id).collect::<Vec<_>>(),
                    again.iter().map(|r| r.run_id).collect::<Vec<_>>(),
                    "deterministic"
                );
                assert!(!mine.is_empty(), "shard {index} of {count} is empty");
                let settings: BTreeSet<usize> = mine.iter().map(|r| r.setting_id).collect();
                assert_eq!(
                    mine.len(),
                    settings.len() * s.seeds.len(),
                    "shard {index} of {count} holds every seed of its settings"
                );
                assert!(mine.windows(2).all(|w| w[0].run_id < w[1].run_id), "in run-id order");
                for run in &mine {
                    seen[run.run_id] += 1;
                }
                loads.push(settings.iter().map(|&id| work[id]).sum::<f64>());
            }
            assert!(seen.iter().all(|&n| n == 1), "N = {count}: every run in exactly one shard");
            // The tolerance (README, Clusters): no shard exceeds the mean by more than the
            // largest setting's work, a guarantee of the least-loaded-first rule.
            let max = loads.iter().copied().fold(0.0, f64::max);
            assert!(max <= mean_of(count) + largest * (1.0 + 1e-12), "N = {count}: {loads:?}");
        }
    }
    // The Lipschitz grid (140 equal settings) at N = 8: 18 or 17 settings a shard.
    let lipschitz = sweep(include_str!("../sweeps/lipschitz.toml"));
    let summary = shard::describe(&lipschitz, 8).unwrap();
    assert!(summary.contains("balance: the largest shard has 1.029 × the mean work"), "{summary}");
    let refused = shard::runs_of(&sweep(&sweep_text()), Some(Shard { index: 0, count: 13 })).unwrap_err();
    assert!(format!("{refused:#}").contains("12 setting(s), fewer than the 13 shards"), "{refused:#}");
}

#[test]
fn shard_arguments_and_the_slurm_environment_are_checked() {
    let none = |_: &str| None;
    assert_eq!(Shard::parse("2/5", none).unwrap(), Shard { index: 2, count: 5 });
    for (bad, says) in [
        ("5/5", "shard 5 of 5 does not exist"),
        ("0/0", "N must be at least 1"),
        ("a/2", "`a` is not a non-negative integer"),
        ("3", "expected K/N"),
        ("-1/2", "`-1`"),
    ] {
        let error = format!("{:#}", Shard::parse(bad, none).unwrap_err());
        assert!(error.contains(&format!("--shard {bad}")) && error.contains(says), "{bad}: {error}");
    }
    let slurm = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    };
    const OK: [(&str, &str); 3] =
        [("SLURM_ARRAY_TASK_ID", "7"), ("SLURM_ARRAY_TASK_MIN", "4"), ("SLURM_ARRAY_TASK_COUNT", "8")];
    assert_eq!(Shard::parse("slurm", slurm(&OK)).unwrap(), Shard { index: 3, count: 8 });
    let cases: [(&'static [(&str, &str)], &str); 5] = [
        (&[("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_COUNT", "8")], "SLURM_ARRAY_TASK_ID is not set"),
        (&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "8")], "SLURM_ARRAY_TASK_MIN is not set"),
        (&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "0")], "SLURM_ARRAY_TASK_COUNT is not set"),
        (
            &[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_COUNT", "8")],
            "SLURM_ARRAY_TASK_ID=x is not a non-negative integer",
        ),
        (
            &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_MIN", "2"), ("SLURM_ARRAY_TASK_COUNT", "8")],
            "SLURM_ARRAY_TASK_ID=1 is below SLURM_ARRAY_TASK_MIN=2",
        ),
    ];
    for (vars, says) in cases {
        let error = format!("{:#}", Shard::parse("slurm", slurm(vars)).unwrap_err());
        assert!(error.contains(says), "{vars:?}: {error}");
    }
    const STRIDED: [(&str, &str); 3] =
        [("SLURM_ARRAY_TASK_ID", "8"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_COUNT", "4")];
    assert!(
        format!("{:#}", Shard::parse("slurm", slurm(&STRIDED)).unwrap_err()).contains("the array must be contiguous")
    );

    // The binary reads the real environment.
    let (dir, file) = fixture("slurm-env");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_grokstack"));
    command.args(["train", file.to_str().unwrap(), "--dry-run", "--shard", "slurm"]);
    for (k, v) in [("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "4")] {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    assert!(out.status.success() && text(&out).contains("shard 2-of-4: "), "{}", text(&out));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grokstack"))
        .args(["train", file.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--shard", "slurm"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("SLURM_ARRAY_TASK_ID is not set"), "{}", text(&out));
    assert!(!dir.exists(), "a refused shard writes nothing");
}

#[test]
fn the_dry_run_shows_every_shard_and_this_shards_stacks() {
    let (_, file) = fixture("dry-run");
    let out = grokstack(&["train", file.to_str().unwrap(), "--dry-run", "--shard", "1/3"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let s = sweep(&sweep_text());
    for index in 0..3 {
        let runs = shard::runs_of(&s, Some(Shard { index, count: 3 })).unwrap().len();
        assert!(printed.contains(&format!("shard {index}-of-3: {} settings, {runs} runs", runs / 2)), "{printed}");
    }
    assert!(printed.contains("balance: the largest shard has"), "{printed}");
    let mine = shard::runs_of(&s, Some(Shard { index: 1, count: 3 })).unwrap();
    assert!(
        printed.contains(&format!("shard 1-of-3: {} runs = {} settings × 2 seeds", mine.len(), mine.len() / 2)),
        "{printed}"
    );
    let stacked: usize = printed
        .lines()
        .filter_map(|l| l.trim().strip_prefix("stack "))
        .map(|l| l.split("R = ").nth(1).unwrap().split(',').next().unwrap().parse::<usize>().unwrap())
        .sum();
    assert_eq!(stacked, mine.len(), "the stacks listed are the shard's: {printed}");
    let bad = grokstack(&["train", file.to_str().unwrap(), "--dry-run", "--shard", "3/3"]);
    assert!(!bad.status.success() && text(&bad).contains("shard 3 of 3 does not exist"), "{}", text(&bad));
}

#[test]
fn merged_shards_are_the_single_process_sweep() {
    let (reference, file) = fixture("merge-reference");
    train_ok(&file, &reference, &[]);
    let (dir, _) = fixture("merge-sharded");
    // Shards do not depend on the memory budget: one is chunked finely.
    for (k, extra) in [("0/3", vec![]), ("1/3", vec!["--max-memory", "20KiB"]), ("2/3", vec![])] {
        train_ok(&file, &dir, &[&["--shard", k][..], &extra].concat());
    }
    assert_eq!(std::fs::read(dir.join("sweep.toml")).unwrap(), std::fs::read(reference.join("sweep.toml")).unwrap());

    // Analyzed before the merge, straight from the shards: the same tables.
    let report = grokstack_analysis::analyze(&dir, &grokstack_analysis::AnalyzeOptions::default()).unwrap();
    assert_eq!(report.missing_runs, 0);
    assert!(report.unfinished_shards.is_empty(), "{:?}", report.unfinished_shards);
    grokstack_analysis::analyze(&reference, &grokstack_analysis::AnalyzeOptions::default()).unwrap();
    let csv = |d: &Path| std::fs::read(d.join("analysis/settings.csv")).unwrap();
    assert_eq!(csv(&dir), csv(&reference), "the analysis of the unmerged shards differs");
    std::fs::remove_dir_all(dir.join("analysis")).unwrap();

    let shards_before = snapshot(&dir.join("shards"));
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("merged 24 of 24 runs from 3 shard folder(s)"), "{}", text(&out));
    let merged = read_parquet(&dir.join("runs.parquet"));
    assert!(
        merged.equals_missing(&read_runs(&reference)),
        "runs.parquet differs from the single-process sweep:\n{merged}"
    );
    assert!(metrics(&dir).equals_missing(&metrics(&reference)), "the metrics differ from the single-process sweep");
    assert_eq!(
        std::fs::read(dir.join("progress.json")).unwrap(),
        std::fs::read(reference.join("progress.json")).unwrap()
    );

    // Every run exports the weights the single-process sweep has.
    for run in 0..24 {
        let export = |d: &Path| {
            let path = d.join(format!("run-{run}.safetensors"));
            let out =
                grokstack(&["export", d.to_str().unwrap(), "--run", &run.to_string(), "--out", path.to_str().unwrap()]);
            assert!(out.status.success(), "{}", text(&out));
            let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
            let mut values: Vec<(String, Vec<f32>)> =
                tensors.into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect();
            values.sort_by(|a, b| a.0.cmp(&b.0));
            std::fs::remove_file(path).unwrap();
            values
        };
        assert_eq!(export(&dir), export(&reference), "run {run}");
    }
    // The merged directory analyzes as the single-process one.
    grokstack_analysis::analyze(&dir, &grokstack_analysis::AnalyzeOptions::default()).unwrap();
    assert_eq!(csv(&dir), csv(&reference));

    // A second merge replaces the first with the same files, and never touches the shards.
    let first = snapshot(&dir);
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot(&dir), first, "merging again changes the result");
    assert_eq!(snapshot(&dir.join("shards")), shards_before, "merging changed a shard");
}

#[test]
fn missing_and_duplicated_runs_are_reported() {
    let (dir, file) = fixture("merge-missing");
    train_ok(&file, &dir, &["--shard", "0/3"]);
    train_ok(&file, &dir, &["--shard", "2/3"]);
    let s = sweep(&sweep_text());
    let absent = shard::runs_of(&s, Some(Shard { index: 1, count: 3 })).unwrap();

    // Analysis of the unmerged shards counts what shard 1 of 3 would add.
    let report = grokstack_analysis::analyze(&dir, &grokstack_analysis::AnalyzeOptions::default()).unwrap();
    assert_eq!(report.missing_runs, absent.len());
    assert_eq!(report.unfinished_shards, vec!["shards/1-of-3: not started".to_string()]);
    let page = std::fs::read_to_string(report.out_dir.join("report.html")).unwrap();
    assert!(
        page.contains("Unfinished shards") && page.contains("<code>shards/1-of-3: not started</code>"),
        "report.html names the unfinished shard"
    );

    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("missing: shards/1-of-3 (not started)"), "{}", text(&out));
    let merged = read_parquet(&dir.join("runs.parquet"));
    assert_eq!(merged.height(), 24 - absent.len(), "what the shards have is merged");
    let listed: BTreeSet<i64> = merged.column("run_id").unwrap().i64().unwrap().into_no_null_iter().collect();
    assert!(absent.iter().all(|r| !listed.contains(&(r.run_id as i64))));

    // Shard 0 of 2 overlaps the shards of 3: its runs that they have are duplicated.
    train_ok(&file, &dir, &["--shard", "0/2"]);
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let printed = text(&out);
    assert!(
        printed.contains("listed by both shards/0-of-2 and shards/0-of-3")
            || printed.contains("listed by both shards/0-of-2 and shards/2-of-3"),
        "{printed}"
    );
    let two = shard::runs_of(&s, Some(Shard { index: 1, count: 2 })).unwrap();
    let still_missing: Vec<usize> =
        absent.iter().map(|r| r.run_id).filter(|id| two.iter().any(|r| r.run_id == *id)).collect();
    if !still_missing.is_empty() {
        assert!(printed.contains("shards/1-of-2 (not started) or shards/1-of-3 (not started)"), "{printed}");
    }
    let merged = read_parquet(&dir.join("runs.parquet"));
    assert_eq!(merged.height(), 24 - still_missing.len(), "every run once");
    let ids: Vec<i64> = merged.column("run_id").unwrap().i64().unwrap().into_no_null_iter().collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by run id, none twice");
    let merged_metrics = metrics(&dir);
    let keys: Vec<(i64, i64)> = merged_metrics
        .column("run_id")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .zip(merged_metrics.column("epoch").unwrap().i64().unwrap().into_no_null_iter())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] != w[1]), "no metric row twice");
    // Parts of which another shard has some runs keep their weights: every merged run exports.
    for id in ids {
        let path = dir.join("run.safetensors");
        let out =
            grokstack(&["export", dir.to_str().unwrap(), "--run", &id.to_string(), "--out", path.to_str().unwrap()]);
        assert!(out.status.success(), "run {id}: {}", text(&out));
    }

    // Unmerged shards of two N are refused by the analysis.
    std::fs::remove_file(dir.join("runs.parquet")).unwrap();
    let error = format!(
        "{:#}",
        grokstack_analysis::analyze(&dir, &grokstack_analysis::AnalyzeOptions::default()).err().unwrap()
    );
    assert!(error.contains("shards of different counts N [2, 3]"), "{error}");
}

#[test]
fn shards_of_another_sweep_are_refused() {
    let (dir, file) = fixture("merge-foreign");
    train_ok(&file, &dir, &["--shard", "0/2"]);
    let before = snapshot(&dir);
    // Another sweep into the same directory: refused, the file named, nothing touched.
    let out = train(&file, &dir, &["--shard", "1/2", "--set", "train.weight_decay=2.0"]);
    assert!(
        !out.status.success()
            && text(&out).contains(&format!("already holds a different sweep ({})", dir.join("sweep.toml").display())),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&dir), before);

    // A shard folder of another sweep, copied in: merge names it and writes nothing.
    let (other, _) = fixture("merge-foreign-other");
    train_ok(&file, &other, &["--shard", "1/2", "--set", "train.weight_decay=2.0"]);
    std::fs::rename(other.join("shards/1-of-2"), dir.join("shards/1-of-2")).unwrap();
    let before = snapshot(&dir);
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} holds a different sweep", dir.join("shards/1-of-2").display())),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&dir), before);

    // A directory trained in one process is not a merge target.
    let (single, _) = fixture("merge-single");
    train_ok(&file, &single, &[]);
    std::fs::create_dir_all(single.join("shards")).unwrap();
    std::fs::rename(dir.join("shards/0-of-2"), single.join("shards/0-of-2")).unwrap();
    let out = grokstack(&["merge", single.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("holds a sweep trained there, not a merge"), "{}", text(&out));
}

/// Seed waves decide per setting, and a shard holds whole settings: sharded, a sweep with waves
/// trains and skips exactly the runs it does in one process.
#[test]
fn shards_keep_seed_waves() {
    let waves = common::waves_sweep();
    let (reference, file) = common::train_sweep("shards-waves-reference", &waves, &["--set", common::WAVES_SET]);
    let dir = temp_path("shards-waves");
    for k in ["0/2", "1/2"] {
        train_ok(&file, &dir, &["--set", common::WAVES_SET, "--shard", k]);
    }
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let merged = read_parquet(&dir.join("runs.parquet"));
    assert!(merged.equals_missing(&read_runs(&reference)), "{merged}");
    assert!(metrics(&dir).equals_missing(&metrics(&reference)));
}

/// A shard is an ordinary output directory: one that stopped (here at a full disk while its
/// second stack commits) says how to continue, and `--resume` finishes it to the same merge.
#[test]
fn a_stopped_shard_resumes_with_its_shard_argument() {
    let (reference, file) = fixture("resume-reference");
    train_ok(&file, &reference, &[]);
    let (dir, _) = fixture("resume-sharded");
    train_ok(&file, &dir, &["--shard", "0/2"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grokstack"))
        .args(["train", file.to_str().unwrap(), "--out", dir.to_str().unwrap(), "--shard", "1/2"])
        .env("GROKSTACK_FAULT", "fail:write:runs.parquet#2")
        .output()
        .unwrap();
    assert!(
        !out.status.success() && text(&out).contains(&format!("--out {} --shard 1/2 --resume", dir.display())),
        "{}",
        text(&out)
    );
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "shard 1 is unfinished: {}", text(&out));
    assert!(text(&out).contains("shards/1-of-2 (unfinished: 2 of "), "{}", text(&out));
    train_ok(&file, &dir, &["--shard", "1/2", "--resume"]);
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(read_runs(&dir).equals_missing(&read_runs(&reference)));
    assert!(metrics(&dir).equals_missing(&metrics(&reference)));
}
