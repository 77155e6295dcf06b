//! The real-Slurm test (`make slurm-test`, which starts a one-node cluster with
//! tests/slurm/cluster.sh and points SLURM_CONF at it): the quick sweep as a 3-task job array
//! submitted by `grokstack slurm --submit`, one task cancelled mid-run and resubmitted, another
//! requeued mid-run (as a preemption does), then merged; the merge must equal the same sweep
//! trained by one process.

mod common;

use common::{grokstack, read_metrics, read_runs, temp_path};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SHARDS: usize = 3;
/// The quick sweep, shortened so that a task trains for several seconds and checkpoints often.
const OVERRIDES: [&str; 4] = ["--set", "train.epochs=300", "--set", "train.checkpoint_every=10"];

fn slurm(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Wait until no task of `job` is pending or running; returns each task's final state.
fn wait_for(job: &str, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    while !slurm("squeue", &["-h", "-r", "-j", job, "-o", "%i"]).is_empty() {
        assert!(start.elapsed() < limit, "job {job} still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let shown = slurm("scontrol", &["show", "job", job]);
    shown.split_whitespace().filter_map(|w| w.strip_prefix("JobState=")).map(str::to_string).collect()
}

/// Wait until shard `k` has written a checkpoint (it is mid-run).
fn wait_for_checkpoint(dir: &Path, k: usize) {
    let checkpoints = dir.join(format!("shards/{k}-of-{SHARDS}/checkpoints"));
    let start = Instant::now();
    while !std::fs::read_dir(&checkpoints)
        .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".json"))))
    {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "task {k} wrote no checkpoint in {}",
            checkpoints.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs a running Slurm: run it with `make slurm-test`"]
fn a_job_array_with_a_cancelled_and_a_requeued_task_merges_into_the_single_process_result() {
    assert!(std::env::var_os("SLURM_CONF").is_some(), "SLURM_CONF is not set: run this test with `make slurm-test`");
    let sweep = Path::new(env!("CARGO_MANIFEST_DIR")).join("sweeps/quick.toml");
    let sweep = sweep.to_str().unwrap();
    let root = temp_path("slurm");
    let (single, sharded) = (root.join("single"), root.join("sharded"));

    let mut args = vec!["train", sweep, "--out", single.to_str().unwrap()];
    args.extend(OVERRIDES);
    let out = grokstack(&args);
    assert!(out.status.success(), "single-process train: {}", String::from_utf8_lossy(&out.stderr));

    let mut args =
        vec!["slurm", sweep, "--out", sharded.to_str().unwrap(), "--shards", "3", "--cpus-per-task", "1", "--submit"];
    args.extend(OVERRIDES);
    let out = grokstack(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "grokstack slurm --submit: {}", String::from_utf8_lossy(&out.stderr));
    let job =
        stdout.split("submitted job array ").nth(1).and_then(|s| s.split(':').next()).expect("a job id").to_string();

    // Cancel task 1 once it has written a checkpoint, i.e. mid-run; scancel's SIGTERM makes
    // it checkpoint again and stop.
    wait_for_checkpoint(&sharded, 1);
    slurm("scancel", &[&format!("{job}_1")]);
    // Requeue task 2 mid-run, as a preemption does: SIGTERM, then the same task runs again
    // (Slurm delays a requeued job; the test lets it start at once) and resumes.
    wait_for_checkpoint(&sharded, 2);
    let task2 = format!("{job}_2");
    slurm("scontrol", &["requeue", &task2]);
    let start = Instant::now();
    while slurm("squeue", &["-h", "-j", &task2, "-o", "%T"]) != "PENDING" {
        assert!(start.elapsed() < Duration::from_secs(60), "the requeued task 2 never became pending");
        std::thread::sleep(Duration::from_millis(200));
    }
    slurm("scontrol", &["update", &format!("JobId={task2}"), "StartTime=now"]);
    let states = wait_for(&job, Duration::from_secs(600));
    assert_eq!(states.iter().filter(|s| *s == "CANCELLED").count(), 1, "states of job {job}: {states:?}");
    assert_eq!(states.iter().filter(|s| *s == "COMPLETED").count(), 2, "states of job {job}: {states:?}");
    assert!(
        !sharded.join(format!("shards/1-of-{SHARDS}/runs.parquet")).exists(),
        "task 1 finished before it was cancelled"
    );
    let log = std::fs::read_to_string(sharded.join("slurm/logs/shard-2.log")).unwrap();
    assert_eq!(log.matches("== shard 2 of 3").count(), 2, "the requeued task ran twice, into one log:\n{log}");

    // A merge now reports shard 1's runs as missing.
    let merge = grokstack(&["merge", sharded.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&merge.stdout).to_string() + &String::from_utf8_lossy(&merge.stderr);
    assert!(!merge.status.success() && report.contains("missing"), "merge with a cancelled shard: {report}");

    // Resubmit the cancelled task alone; it resumes from its checkpoint.
    let script = sharded.join("slurm/array.sbatch");
    let resubmitted = slurm("sbatch", &["--parsable", "--array=1", script.to_str().unwrap()]);
    let states = wait_for(resubmitted.split(';').next().unwrap(), Duration::from_secs(600));
    assert_eq!(states, ["COMPLETED"], "the resubmitted task");
    let log = std::fs::read_to_string(sharded.join("slurm/logs/shard-1.log")).unwrap();
    assert!(
        log.contains("interrupted; continue with --resume") && log.matches("== shard 1 of 3").count() == 2,
        "shard 1's log:\n{log}"
    );

    let merge = grokstack(&["merge", sharded.to_str().unwrap()]);
    assert!(
        merge.status.success(),
        "merge: {}{}",
        String::from_utf8_lossy(&merge.stdout),
        String::from_utf8_lossy(&merge.stderr)
    );
    assert!(
        read_runs(&sharded).equals_missing(&read_runs(&single)),
        "merged runs.parquet differs from the single-process run"
    );
    assert!(
        read_metrics(&sharded).equals_missing(&read_metrics(&single)),
        "merged metrics differ from the single-process run"
    );
    std::fs::remove_dir_all(&root).ok();
}
