//! `grokstack slurm`: the batch script for several option sets against golden files in
//! tests/slurm/golden/ (regenerate them with GROKSTACK_BLESS=1 after an intended change and
//! read the diff), and every refusal. The real Slurm run is tests/slurm.rs.

mod common;

use common::{grokstack, temp_path, TINY};
use grokstack::slurm::{ArrayJob, Resources};
use std::path::{Path, PathBuf};

fn job(shards: usize, device: &str, resources: Resources) -> ArrayJob {
    ArrayJob {
        name: "lipschitz".into(),
        binary: PathBuf::from("/opt/grokstack/bin/grokstack"),
        out: PathBuf::from("/scratch/runs/lipschitz"),
        shards,
        device: device.into(),
        resources,
    }
}

fn check_golden(name: &str, script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/golden").join(name);
    if std::env::var_os("GROKSTACK_BLESS").is_some() {
        std::fs::write(&path, script).expect("write the golden file");
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (GROKSTACK_BLESS=1 writes it)", path.display()));
    assert_eq!(script, golden, "{} differs from the script written now", path.display());
}

#[test]
fn cpu_array_with_slurm_defaults() {
    check_golden("cpu.sbatch", &job(3, "cpu", Resources::default()).script().unwrap());
}

#[test]
fn gpu_array_with_every_option() {
    let resources = Resources {
        gpus_per_task: Some(1),
        cpus_per_task: Some(4),
        mem: Some("32G".into()),
        time: Some("2:00:00".into()),
        partition: Some("gpu".into()),
        max_parallel: Some(4),
        extra: vec!["--account=grok".into(), "#SBATCH --qos=short".into()],
    };
    check_golden("gpu.sbatch", &job(8, "cuda", resources).script().unwrap());
}

#[test]
fn cpu_array_with_days_and_a_throttle() {
    let resources = Resources {
        cpus_per_task: Some(16),
        mem: Some("64000".into()),
        time: Some("1-12".into()),
        max_parallel: Some(2),
        ..Resources::default()
    };
    check_golden("cpu-days.sbatch", &job(40, "cpu", resources).script().unwrap());
}

#[test]
fn bad_options_are_named() {
    let cases: Vec<(Resources, &str)> = vec![
        (Resources { time: Some("2h".into()), ..Default::default() }, "--time 2h"),
        (Resources { time: Some("1-2:3:4:5".into()), ..Default::default() }, "--time 1-2:3:4:5"),
        (Resources { mem: Some("16GB".into()), ..Default::default() }, "--mem 16GB"),
        (Resources { mem: Some("0".into()), ..Default::default() }, "--mem 0"),
        (Resources { gpus_per_task: Some(2), ..Default::default() }, "--gpus-per-task 2"),
        (Resources { cpus_per_task: Some(0), ..Default::default() }, "--cpus-per-task 0"),
        (Resources { max_parallel: Some(0), ..Default::default() }, "--max-parallel 0"),
        (Resources { partition: Some("a b".into()), ..Default::default() }, "--partition"),
        (Resources { extra: vec!["--qos=a\n#SBATCH --x".into()], ..Default::default() }, "--extra"),
        (Resources { extra: vec!["qos=short".into()], ..Default::default() }, "--extra"),
    ];
    for (resources, expected) in cases {
        let error = job(2, "cpu", resources).script().unwrap_err().to_string();
        assert!(error.contains(expected), "expected {expected:?} in {error:?}");
    }
    let mut spaced = job(2, "cpu", Resources::default());
    spaced.out = PathBuf::from("/scratch/my runs");
    assert!(spaced.script().unwrap_err().to_string().contains("--out /scratch/my runs"));
    assert!(job(0, "cpu", Resources::default()).script().unwrap_err().to_string().contains("--shards 0"));
}

/// The command writes DIR/sweep.toml (the resolved sweep, overrides included) and the
/// script; it refuses a directory of another sweep, another shard count, and more shards than
/// settings, each time writing nothing.
#[test]
fn the_command_writes_the_sweep_and_refuses_what_would_mix_runs() {
    let dir = temp_path("slurm-cmd");
    let sweep = dir.with_extension("toml");
    std::fs::write(&sweep, format!("{TINY}\n[grid]\n\"train.lr\" = [0.01, 0.02, 0.03]\n")).unwrap();
    let (s, d) = (sweep.to_str().unwrap(), dir.to_str().unwrap());

    let out = grokstack(&["slurm", s, "--out", d, "--shards", "3", "--set", "train.epochs=2", "--time", "10"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(dir.join("sweep.toml")).unwrap();
    assert!(written.contains("epochs = 2"), "the override is in the resolved sweep:\n{written}");
    let script = std::fs::read_to_string(dir.join("slurm/array.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-2\n") && script.contains("#SBATCH --time=10\n"));
    assert!(script.contains(&format!(
        "train '{}/sweep.toml' --out '{d}' --shard \"${{SLURM_ARRAY_TASK_ID}}/3\" --resume --device cpu",
        d
    )));
    assert!(dir.join("slurm/logs").is_dir());

    let refused = |args: &[&str], expected: &str| {
        let out = grokstack(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && stderr.contains(expected), "expected {expected:?}, got {stderr:?}");
        assert_eq!(std::fs::read_to_string(dir.join("sweep.toml")).unwrap(), written, "a refusal rewrote sweep.toml");
        assert_eq!(
            std::fs::read_to_string(dir.join("slurm/array.sbatch")).unwrap(),
            script,
            "a refusal rewrote the script"
        );
    };
    refused(&["slurm", s, "--out", d, "--shards", "3", "--set", "train.epochs=3"], "already holds a different sweep");
    refused(
        &["slurm", s, "--out", d, "--shards", "4", "--set", "train.epochs=2"],
        "--shards 4: the sweep has 3 settings",
    );
    std::fs::create_dir_all(dir.join("shards/0-of-3")).unwrap();
    refused(&["slurm", s, "--out", d, "--shards", "2", "--set", "train.epochs=2"], "holds shards of a 3-shard split");
    refused(&["slurm", s, "--out", d, "--shards", "3", "--set", "train.epochs=2", "--mem", "lots"], "--mem lots");

    // The same request again (e.g. with a longer time limit) rewrites the script.
    let again = grokstack(&["slurm", s, "--out", d, "--shards", "3", "--set", "train.epochs=2", "--time", "20"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(std::fs::read_to_string(dir.join("slurm/array.sbatch")).unwrap().contains("#SBATCH --time=20\n"));

    // Without sbatch on the PATH, --submit says where the script is.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_grokstack"))
        .args(["slurm", s, "--out", d, "--shards", "3", "--set", "train.epochs=2", "--submit"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cannot run sbatch") && stderr.contains("array.sbatch"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_file(&sweep).ok();
}
