//! Sweeps that survive: a sweep killed (SIGKILL) at many moments — during training, during a
//! checkpoint write, between a checkpoint's state and its manifest, during a Parquet write —
//! or interrupted (SIGINT, SIGTERM), then resumed, ends with the same files, byte for byte,
//! as a sweep never interrupted. Refusals and damaged files stop with the file named and
//! leave the directory as it was.
//!
//! The kill points come from the binary's test hook `GROKSTACK_FAULT=pause:POINT#N`
//! (src/faults.rs): the child says where it paused, and the test kills it there.

mod common;

use common::snapshot;
use polars::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Four stacks (the optimizers) of four runs; lr 1e6 diverges within a few epochs, so each
/// stack retires two runs early and its checkpoints hold retired weights. Checkpoints every
/// 10 epochs, metrics every 3 (so a checkpoint often holds an epoch's pending test metrics),
/// power iteration on (its vectors carry over steps).
const SWEEP: &str = r#"
name = "resume"
seeds = 2
[task]
p = 23
train_fraction = 0.6
[model]
embed_dim = 8
hidden = [32, 32]
[train]
epochs = 60
weight_decay = 2.0
log_every = 3
checkpoint_every = 10
stop = "grok"
extra_epochs = 5
[metrics]
lipschitz = true
power_iters = 2
[grid]
"train.optimizer" = ["adamw", "muon", "sgd", "scion"]
"train.lr" = [0.01, 1e6]
"#;

fn sweep_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = common::temp_path("resume-sweep").with_extension("toml");
        std::fs::write(&path, SWEEP).unwrap();
        path
    })
}

fn grokstack_on(sweep: &Path, dir: &Path, extra: &[&str], fault: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_grokstack"));
    command.args(["train", sweep.to_str().unwrap(), "--out", dir.to_str().unwrap()]).args(extra);
    command.env_remove("GROKSTACK_FAULT");
    if let Some(fault) = fault {
        command.env("GROKSTACK_FAULT", fault);
    }
    command
}

fn grokstack(dir: &Path, extra: &[&str], fault: Option<&str>) -> Command {
    grokstack_on(sweep_file(), dir, extra, fault)
}

/// Train SWEEP to the end (with `--resume` when asked); the run must succeed.
fn finish_sweep(sweep: &Path, dir: &Path, resume: bool) -> Output {
    let out = grokstack_on(sweep, dir, if resume { &["--resume"] } else { &[] }, None).output().unwrap();
    assert!(out.status.success(), "train failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn finish(dir: &Path, resume: bool) -> Output {
    finish_sweep(sweep_file(), dir, resume)
}

/// Start SWEEP (resuming when asked), pause it at `fault`, then SIGKILL it there.
fn kill_sweep_at(sweep: &Path, dir: &Path, resume: bool, fault: &str) {
    let mut child = grokstack_on(sweep, dir, if resume { &["--resume"] } else { &[] }, Some(&format!("pause:{fault}")))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.starts_with("grokstack-fault: paused at") {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return;
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    panic!("the sweep never reached {fault} ({status}):\n{}", seen.join("\n"));
}

fn kill_at(dir: &Path, resume: bool, fault: &str) {
    kill_sweep_at(sweep_file(), dir, resume, fault)
}

/// A sweep that was never interrupted.
fn reference() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = common::temp_path("resume-reference");
        finish(&dir, false);
        dir
    })
}

fn frame(bytes: &[u8]) -> DataFrame {
    ParquetReader::new(std::io::Cursor::new(bytes.to_vec())).finish().unwrap()
}

/// The same files with the same bytes as the uninterrupted sweep (and no checkpoint or
/// temporary file left). Parquet files are compared as frames first, for a readable failure.
fn assert_same_as_reference(dir: &Path) {
    assert_same_files(reference(), dir)
}

fn assert_same_files(reference: &Path, dir: &Path) {
    let (expected, actual) = (snapshot(reference), snapshot(dir));
    assert_eq!(expected.keys().collect::<Vec<_>>(), actual.keys().collect::<Vec<_>>(), "the files differ");
    for (path, bytes) in &expected {
        if path.extension().is_some_and(|e| e == "parquet") {
            let (a, b) = (frame(bytes), frame(&actual[path]));
            assert!(a.equals_missing(&b), "{} differs:\n{a}\n{b}", path.display());
        }
        assert!(bytes == &actual[path], "{} differs in its bytes", path.display());
    }
    std::fs::remove_dir_all(dir).ok();
}

fn manifest_step(dir: &Path, part: usize) -> usize {
    let text = std::fs::read_to_string(dir.join(format!("checkpoints/part-{part:05}.json"))).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["next_step"].as_u64().unwrap() as usize
}

#[test]
fn killed_during_training_resumes_from_the_last_checkpoint() {
    let dir = common::temp_path("kill-step");
    kill_at(&dir, false, "step#25");
    assert_eq!(manifest_step(&dir, 0), 20, "checkpoints every 10 epochs");
    let out = finish(&dir, true);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stack 1 from epoch 20"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_as_reference(&dir);
}

/// Minibatches (3 steps an epoch, each run in its own fresh order every epoch), warm-up, and a
/// transformer with dropout: the orders and masks are functions of (seed, epoch or step), so a
/// resumed sweep draws the same ones.
const MINIBATCH_SWEEP: &str = r#"
name = "resume-minibatch"
seeds = 3
[task]
op = "x**2+y**2"
p = 13
train_fraction = 0.5
[model]
embed_dim = 8
hidden = [16]
d_model = 8
heads = 2
layers = 1
ffn_width = 16
dropout_ffn_hidden = 0.2
dropout_attention = 0.1
[train]
epochs = 20
lr = 0.01
weight_decay = 1.0
batch_size = 32
warmup = 5
log_every = 2
checkpoint_every = 4
[grid]
"train.optimizer" = ["adamw", "muon"]
"model.kind" = ["mlp", "transformer"]
"#;

#[test]
fn a_minibatch_sweep_killed_mid_training_resumes_to_the_same_files() {
    let sweep = common::temp_path("resume-minibatch-sweep").with_extension("toml");
    std::fs::write(&sweep, MINIBATCH_SWEEP).unwrap();
    let reference = common::temp_path("resume-minibatch-reference");
    finish_sweep(&sweep, &reference, false);
    let dir = common::temp_path("resume-minibatch");
    kill_sweep_at(&sweep, &dir, false, "step#30"); // stack 1 (the transformer), epoch 10: its checkpoint is at 8
    assert_eq!(manifest_step(&dir, 1), 8, "checkpoints every 4 epochs");
    finish_sweep(&sweep, &dir, true);
    assert_same_files(&reference, &dir);
}

#[test]
fn killed_while_writing_a_checkpoint_keeps_the_previous_one() {
    let dir = common::temp_path("kill-checkpoint");
    kill_at(&dir, false, "write:part-00000.step-000040.safetensors");
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        leftovers.iter().any(|n| n.contains(".tmp-")),
        "the half-written state stays a temporary file: {leftovers:?}"
    );
    assert_eq!(manifest_step(&dir, 0), 30);
    finish(&dir, true);
    assert_same_as_reference(&dir);
}

#[test]
fn killed_between_a_checkpoint_and_its_manifest_keeps_the_previous_one() {
    let dir = common::temp_path("kill-manifest");
    // The second manifest (step 20): its state file is already in place, the manifest not.
    kill_at(&dir, false, "write:part-00000.json#2");
    assert_eq!(manifest_step(&dir, 0), 10);
    assert!(dir.join("checkpoints/part-00000.step-000020.safetensors").exists());
    finish(&dir, true);
    assert_same_as_reference(&dir);
}

#[test]
fn killed_while_writing_a_metrics_part_keeps_the_finished_stacks() {
    let dir = common::temp_path("kill-parquet");
    kill_at(&dir, false, "write:part-00001.parquet");
    let modified = |p: &str| std::fs::metadata(dir.join(p)).unwrap().modified().unwrap();
    let before = (modified("metrics.parquet/part-00000.parquet"), modified("weights/part-00000.safetensors"));
    let out = finish(&dir, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 of 16 runs finished (1 of 4 stacks); stack 2 from epoch 50"), "{stderr}");
    let after = (modified("metrics.parquet/part-00000.parquet"), modified("weights/part-00000.safetensors"));
    assert_eq!(before, after, "a finished stack is not trained (or written) again");
    assert_same_as_reference(&dir);
}

#[test]
fn killed_while_writing_runs_parquet_resumes() {
    let dir = common::temp_path("kill-runs");
    kill_at(&dir, false, "write:runs.parquet#2");
    finish(&dir, true);
    assert_same_as_reference(&dir);
}

#[test]
fn killed_again_and_again() {
    let dir = common::temp_path("kill-repeat");
    kill_at(&dir, false, "step#15");
    kill_at(&dir, true, "step#31"); // from step 10: killed after the checkpoint at step 40
    assert_eq!(manifest_step(&dir, 0), 40);
    kill_at(&dir, true, "write:part-00002.json#1");
    kill_at(&dir, true, "step#3");
    finish(&dir, true);
    assert_same_as_reference(&dir);
}

#[cfg(unix)]
fn interrupt_at(dir: &Path, fault: &str, signal: i32) -> Output {
    let mut child =
        grokstack(dir, &["--resume"], Some(&format!("pause:{fault}"))).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("grokstack-fault: paused at") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the sweep never reached {fault}");
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    Output { status, stdout: Vec::new(), stderr: rest.into_bytes() }
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigterm_checkpoint_the_step_they_interrupt() {
    let dir = common::temp_path("interrupt");
    let out = interrupt_at(&dir, "step#25", libc::SIGINT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted; continue with --resume"), "{stderr}");
    assert_eq!(manifest_step(&dir, 0), 25, "nothing trained is lost");
    // SIGTERM (a preempted job) in the second stack, 5 steps after the resumed first one ends.
    let out = interrupt_at(&dir, "step#40", libc::SIGTERM);
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(manifest_step(&dir, 1), 5);
    assert!(dir.join("metrics.parquet/part-00000.parquet").exists());
    finish(&dir, true);
    assert_same_as_reference(&dir);
}

fn failing(dir: &Path, extra: &[&str], fault: Option<&str>) -> String {
    let out = grokstack(dir, extra, fault).output().unwrap();
    assert!(!out.status.success(), "expected a failure, got success: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn a_directory_with_a_sweep_is_refused_and_untouched() {
    let copy = common::temp_path("refused");
    copy_dir(reference(), &copy);
    let dir = copy.as_path();
    let before = snapshot(dir);
    let stderr = failing(dir, &[], None);
    assert!(stderr.contains("already holds this sweep") && stderr.contains("--resume"), "{stderr}");
    let stderr = failing(dir, &["--resume", "--set", "train.weight_decay=1.0"], None);
    assert!(stderr.contains("different sweep"), "{stderr}");
    let stderr = failing(dir, &["--set", "train.weight_decay=1.0"], None);
    assert!(stderr.contains("different sweep"), "{stderr}");
    assert!(before == snapshot(dir), "a refusal changed the directory");
    // Resuming a finished sweep trains nothing and changes no result.
    let out = finish(dir, true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("16 of 16 runs finished"));
    assert!(before == snapshot(dir));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unwritable_and_full_output_directories_fail_with_the_file_named() {
    // A path under a regular file can never be created, for root too.
    let file = common::temp_path("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let stderr = failing(&file.join("out"), &[], None);
    assert!(stderr.contains(file.join("out").to_str().unwrap()), "{stderr}");
    let stderr = failing(&file, &[], None);
    assert!(stderr.contains("not a directory"), "{stderr}");
    std::fs::remove_file(&file).ok();

    // A full disk while the second stack's results are committed (injected ENOSPC).
    let dir = common::temp_path("full");
    let stderr = failing(&dir, &[], Some("fail:write:runs.parquet#2"));
    assert!(stderr.contains("runs.parquet") && stderr.contains("No space left"), "{stderr}");
    let files = snapshot(&dir);
    assert!(
        files.keys().all(|p| !p.to_string_lossy().contains(".tmp-")),
        "no temporary file is left: {:?}",
        files.keys()
    );
    assert_eq!(frame(&files[Path::new("runs.parquet")]).height(), 4, "the first stack's results are intact");
    finish(&dir, true);
    assert_same_as_reference(&dir);

    // A read-only directory (permissions do not stop root: then only the cases above run).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("skipped the read-only directory case: running as root, where permissions do not block writes");
        } else {
            let dir = common::temp_path("read-only");
            kill_at(&dir, false, "step#25");
            let before = snapshot(&dir);
            let set_mode = |mode: u32| {
                for sub in ["", "checkpoints", "metrics.parquet"] {
                    std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(mode)).unwrap();
                }
            };
            set_mode(0o555);
            let stderr = failing(&dir, &["--resume"], None);
            set_mode(0o755);
            assert!(stderr.contains(dir.to_str().unwrap()), "{stderr}");
            assert!(before == snapshot(&dir));
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

#[test]
fn damaged_checkpoints_and_parts_are_refused_with_their_names() {
    let dir = common::temp_path("damaged");
    kill_at(&dir, false, "step#25");
    let state = dir.join("checkpoints/part-00000.step-000020.safetensors");
    let manifest = dir.join("checkpoints/part-00000.json");
    let good = std::fs::read(&state).unwrap();

    std::fs::write(&state, &good[..good.len() / 2]).unwrap();
    let before = snapshot(&dir);
    let stderr = failing(&dir, &["--resume"], None);
    assert!(stderr.contains(state.to_str().unwrap()) && stderr.contains("truncated"), "{stderr}");
    assert!(before == snapshot(&dir), "a failed resume changed the directory");

    let mut flipped = good.clone();
    flipped[good.len() - 9] ^= 0x10;
    std::fs::write(&state, &flipped).unwrap();
    let stderr = failing(&dir, &["--resume"], None);
    assert!(stderr.contains(state.to_str().unwrap()) && stderr.contains("checksum"), "{stderr}");

    std::fs::write(&state, &good).unwrap();
    let manifest_text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, b"{\"format\": 1, \"part\": ").unwrap();
    let stderr = failing(&dir, &["--resume"], None);
    assert!(stderr.contains(manifest.to_str().unwrap()) && stderr.contains("corrupted"), "{stderr}");
    std::fs::write(&manifest, &manifest_text).unwrap();

    // A finished stack's damaged metrics part, and a damaged runs.parquet.
    kill_at(&dir, true, "write:part-00001.parquet");
    for name in ["metrics.parquet/part-00000.parquet", "runs.parquet"] {
        let path = dir.join(name);
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, &good[..good.len() - 100]).unwrap();
        let stderr = failing(&dir, &["--resume"], None);
        assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
        std::fs::write(&path, &good).unwrap();
    }
    finish(&dir, true);
    assert_same_as_reference(&dir);
}

/// The seed-wave sweep of tests/common (three waves, one stack each; settings leave in waves
/// 1 and 2), and the same sweep trained without interruption.
fn waves_sweep() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let sweep = common::temp_path("resume-waves-sweep").with_extension("toml");
        std::fs::write(&sweep, format!("{}seed_waves = [1, 1, 2]\n", common::waves_sweep())).unwrap();
        let reference = common::temp_path("resume-waves-reference");
        finish_sweep(&sweep, &reference, false);
        (sweep, reference)
    })
}

#[test]
fn a_sweep_with_seed_waves_killed_in_wave_1_and_between_waves_resumes_to_the_same_files() {
    let (sweep, reference) = waves_sweep();
    let dir = common::temp_path("resume-waves-1");
    kill_sweep_at(sweep, &dir, false, "step#30"); // wave 1, epoch 30: its checkpoint is at 20
    assert_eq!(manifest_step(&dir, 0), 20);
    // Resumed, then killed as wave 1's results are committed: wave 2 is not decided yet.
    kill_sweep_at(sweep, &dir, true, "write:runs.parquet#1");
    assert!(!dir.join("runs.parquet").exists());
    let out = finish_sweep(sweep, &dir, true);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wave 1/3 stack 1 from epoch 140"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_files(reference, &dir);
}

#[test]
fn a_sweep_with_seed_waves_killed_in_waves_2_and_3_keeps_the_earlier_waves() {
    let (sweep, reference) = waves_sweep();
    let dir = common::temp_path("resume-waves-2");
    // Killed while writing wave 2's checkpoint at epoch 40: the one at 20 stays.
    kill_sweep_at(sweep, &dir, false, "write:part-00001.json#2");
    assert_eq!(manifest_step(&dir, 1), 20);
    let wave_1 = std::fs::read(dir.join("metrics.parquet/part-00000.parquet")).unwrap();
    kill_sweep_at(sweep, &dir, true, "write:part-00002.json#2");
    assert_eq!(manifest_step(&dir, 2), 20);
    assert_eq!(
        std::fs::read(dir.join("metrics.parquet/part-00000.parquet")).unwrap(),
        wave_1,
        "wave 1 is not trained again"
    );
    let out = finish_sweep(sweep, &dir, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(2 of 3 stacks); wave 3/3 stack 3 from epoch 20"), "{stderr}");
    assert_same_files(reference, &dir);
}
