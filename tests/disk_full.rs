//! A full disk, for real: each test mounts a small tmpfs (it needs root, as CI has), fills it
//! with a ballast file to leave a chosen amount of space, and trains there. The write that
//! does not fit must stop the sweep with a message naming the file and the space left, leave
//! every file written before intact and no temporary behind, and `--resume` (once the ballast
//! is gone) must end with exactly what an uninterrupted sweep writes; a merge that does not fit
//! leaves the shards as they were and, run again, merges what one process would have trained.

mod common;

use common::{grokstack, read_metrics, read_runs, snapshot, temp_path};
use std::path::{Path, PathBuf};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (the test is skipped, saying so) when this process may not mount.
    fn mount(name: &str, megabytes: usize) -> Option<Tmpfs> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs these tests as root)");
            return None;
        }
        let dir = temp_path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "root could not mount a tmpfs on {}", dir.display());
        Some(Tmpfs(dir))
    }

    /// Fill the filesystem until `left` bytes are free.
    fn fill_to(&self, left: u64) -> PathBuf {
        let ballast = self.0.join("ballast");
        let free = grokstack::disk::free_bytes(&self.0).expect("statvfs of the tmpfs");
        let size = free.checked_sub(left).expect("the tmpfs is smaller than what should be left free");
        std::fs::write(&ballast, vec![1u8; size as usize]).unwrap();
        ballast
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn quick_sweep() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/quick.toml").to_str().unwrap().to_string()
}

fn train(out: &Path, overrides: &[&str], resume: bool) -> std::process::Output {
    let sweep = quick_sweep();
    let mut args = vec!["train", sweep.as_str(), "--out", out.to_str().unwrap()];
    for o in overrides {
        args.extend(["--set", o]);
    }
    if resume {
        args.push("--resume");
    }
    grokstack(&args)
}

/// Fill the tmpfs to `left` bytes, train until the disk is full, check the failure, free the
/// space and resume; the result must equal `reference`, a sweep trained on a roomy disk.
/// `left` is given the reference directory, to size the space by the files it holds.
fn full_then_resume(fs: &Tmpfs, left: impl Fn(&Path) -> u64, overrides: &[&str], failing_file: &str) {
    let reference = temp_path("disk-full-reference");
    let out = train(&reference, overrides, false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let ballast = fs.fill_to(left(&reference));
    let dir = fs.0.join("sweep");
    let out = train(&dir, overrides, false);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "training on a full disk: {stderr}");
    for expected in ["cannot write", failing_file, "no space left on its filesystem", "free in", "--resume"] {
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
    let before = snapshot(&dir);
    assert!(
        before.keys().all(|p| !p.to_string_lossy().contains(".tmp-")),
        "a temporary file was left: {:?}",
        before.keys()
    );
    assert!(dir.join("sweep.toml").is_file() && dir.join("plan.json").is_file());

    // Still full: a second attempt fails the same way and changes nothing.
    let again = train(&dir, overrides, true);
    assert_eq!(again.status.code(), Some(1), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(snapshot(&dir), before, "a failed resume changed the directory");

    std::fs::remove_file(ballast).unwrap();
    let resumed = train(&dir, overrides, true);
    assert!(resumed.status.success(), "resume after freeing space: {}", String::from_utf8_lossy(&resumed.stderr));
    assert!(read_runs(&dir).equals_missing(&read_runs(&reference)), "runs.parquet after the resume differs");
    assert!(read_metrics(&dir).equals_missing(&read_metrics(&reference)), "metrics after the resume differ");
    assert_eq!(
        std::fs::read(dir.join("weights/part-00000.safetensors")).unwrap(),
        std::fs::read(reference.join("weights/part-00000.safetensors")).unwrap()
    );
    std::fs::remove_dir_all(&reference).ok();
}

#[test]
fn disk_full_during_a_checkpoint() {
    let Some(fs) = Tmpfs::mount("disk-full-checkpoint", 24) else { return };
    // The stack's first checkpoint (its weights and AdamW moments, megabytes) does not fit.
    full_then_resume(
        &fs,
        |_| 512 << 10,
        &["train.epochs=40", "train.checkpoint_every=10"],
        "checkpoints/part-00000.step-",
    );
}

#[test]
fn disk_full_during_a_parquet_write() {
    let Some(fs) = Tmpfs::mount("disk-full-parquet", 24) else { return };
    // No checkpoints. The start files (three pages) and the stack's weights part (written
    // first) fit; its metrics part (a row per epoch, tens of KiB) does not.
    let left = |reference: &Path| {
        const PAGE: u64 = 4096;
        let weights = std::fs::metadata(reference.join("weights/part-00000.safetensors")).unwrap().len();
        weights.div_ceil(PAGE) * PAGE + 3 * PAGE + 4 * PAGE
    };
    full_then_resume(
        &fs,
        left,
        &["train.epochs=40", "train.checkpoint_every=0", "train.log_every=1"],
        "metrics.parquet/part-00000.parquet",
    );
}

#[test]
fn disk_full_during_a_merge() {
    let Some(fs) = Tmpfs::mount("disk-full-merge", 24) else { return };
    let overrides = ["train.epochs=40", "train.checkpoint_every=0"];
    let reference = temp_path("disk-full-merge-reference");
    assert!(train(&reference, &overrides, false).status.success());
    let dir = fs.0.join("sweep");
    let sweep = quick_sweep();
    for k in 0..3 {
        let shard = format!("{k}/3");
        let mut args = vec!["train", sweep.as_str(), "--out", dir.to_str().unwrap(), "--shard", shard.as_str()];
        for o in overrides {
            args.extend(["--set", o]);
        }
        let out = grokstack(&args);
        assert!(out.status.success(), "shard {shard}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let shards = snapshot(&dir.join("shards"));

    // A few pages left: the merged metrics and weights parts do not fit.
    let ballast = fs.fill_to(8 * 4096);
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "merge on a full disk: {stderr}");
    for expected in ["cannot write", "no space left on its filesystem", "the shards are intact", "grokstack merge"] {
        assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    }
    assert_eq!(snapshot(&dir.join("shards")), shards, "a failed merge changed a shard");
    assert!(!dir.join("runs.parquet").exists(), "a failed merge committed runs.parquet");

    std::fs::remove_file(ballast).unwrap();
    let out = grokstack(&["merge", dir.to_str().unwrap()]);
    assert!(out.status.success(), "merge after freeing space: {}", String::from_utf8_lossy(&out.stderr));
    assert!(snapshot(&dir).keys().all(|p| !p.to_string_lossy().contains(".tmp-")), "a temporary file was left");
    assert!(
        read_runs(&dir).equals_missing(&read_runs(&reference)),
        "the merged runs differ from the single-process sweep"
    );
    assert!(
        read_metrics(&dir).equals_missing(&read_metrics(&reference)),
        "the merged metrics differ from the single-process sweep"
    );
    std::fs::remove_dir_all(&reference).ok();
}
