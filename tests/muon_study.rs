//! The Muon study's sweeps (issue 12): both parse and plan, and `make muon-cpu`'s design trains
//! a few epochs and analyzes into study.md with the after-train rule, when asked for (`--study`).

mod common;

use grokstack::config::Sweep;

#[test]
fn the_study_sweeps_parse_and_cross_tasks_losses_and_optimizers() {
    for (file, text, seeds, settings) in [
        ("muon.toml", include_str!("../sweeps/muon.toml"), 16, 6 * 3 * 6),
        ("muon-cpu.toml", include_str!("../sweeps/muon-cpu.toml"), 3, 6 * 3 * 4),
    ] {
        let sweep = Sweep::parse(text, file, &[]).unwrap();
        assert_eq!(sweep.setting_count(), settings, "{file}");
        let runs = sweep.runs().unwrap();
        assert_eq!(runs.len(), settings * seeds, "{file}");
        // Each task keeps its own train fraction, each optimizer its own learning rates.
        for run in &runs {
            let fraction = match run.values["task.op"].to_string().trim_matches('"') {
                "gcd" | "mul" | "parity" => 0.5,
                "add" | "div" => 0.8,
                "exp" => 0.7,
                other => panic!("{file}: unexpected task {other}"),
            };
            assert_eq!(run.config.train_fraction, fraction, "{file}");
            let lr = run.config.lr;
            match run.values["train.optimizer"].to_string().trim_matches('"') {
                "adamw" => assert!((3e-4..=3e-3).contains(&lr), "{file}: AdamW lr {lr}"),
                "muon" => assert!((0.01..=0.05).contains(&lr), "{file}: Muon lr {lr}"),
                other => panic!("{file}: unexpected optimizer {other}"),
            }
        }
        // The paper's setting (AdamW 1e-3, Muon 0.02) is in the grid.
        for (optimizer, lr) in [("adamw", 1e-3), ("muon", 0.02)] {
            assert!(
                runs.iter().any(|r| r.values["train.optimizer"].to_string().contains(optimizer) && r.config.lr == lr),
                "{file}: {optimizer} at {lr}"
            );
        }
    }
}

#[test]
fn the_cpu_study_trains_and_writes_its_report() {
    let sweep = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/muon-cpu.toml");
    let plan = common::grokstack(&["train", sweep.to_str().unwrap(), "--dry-run"]);
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    assert!(String::from_utf8_lossy(&plan.stdout).contains("216 runs"), "{}", String::from_utf8_lossy(&plan.stdout));

    let dir = common::temp_path("muon-cpu");
    let out = common::grokstack(&[
        "train",
        sweep.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "train.epochs=4",
        "--set",
        "seeds=1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let analyze = |study: &[&str]| {
        let mut args = vec!["analyze", dir.to_str().unwrap(), "--grok-rule", "after-train"];
        args.extend(["--group-by", "task.op,train.loss"]);
        args.extend(study);
        let analyzed = common::grokstack(&args);
        assert!(analyzed.status.success(), "{}", String::from_utf8_lossy(&analyzed.stderr));
    };
    analyze(&[]);
    assert!(dir.join("analysis/settings.csv").is_file());
    assert!(!dir.join("analysis/study.md").exists(), "study.md only with --study");
    analyze(&["--study"]);
    let report = std::fs::read_to_string(dir.join("analysis/study.md")).unwrap();
    for part in [
        "## The paper's comparison",
        "| adamw | ",
        "| muon | ",
        "## Per task, tuned",
        "## Per output function, at the paper's setting",
        "rule after-train",
    ] {
        assert!(report.contains(part), "study.md lacks {part:?}:\n{report}");
    }
    for file in ["study_box_optimizers.png", "study_box_tasks.svg", "study_tuned_lr.csv"] {
        assert!(dir.join("analysis").join(file).is_file(), "{file}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
