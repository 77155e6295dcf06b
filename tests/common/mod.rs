//! Helpers shared by the integration tests.
#![allow(dead_code)]

use grokstack::config::{RunSpec, Sweep};

/// Runs of a sweep given as TOML text plus `--set` overrides.
pub fn runs(toml: &str, overrides: &[&str]) -> Vec<RunSpec> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Sweep::parse(toml, "test sweep", &overrides).expect("valid test sweep").runs().expect("runs")
}

/// A tiny model and task, quick enough for finite differences.
pub const TINY: &str = r#"
name = "tiny"
seeds = 2
[task]
op = "add"
p = 7
train_fraction = 0.5
[model]
input = "embedding"
embed_dim = 3
hidden = [5, 4]
activation = "gelu"
[train]
epochs = 3
lr = 0.01
weight_decay = 1.0
"#;

/// A unique, empty temporary directory path (not created).
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("grokstack-test-{name}-{}-{nanos}", std::process::id()))
}

pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() / x.abs().max(y.abs()).max(1e-12) })
        .fold(0.0, f64::max)
}

/// Run the grokstack binary built for these tests.
pub fn grokstack(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_grokstack")).args(args).output().expect("run grokstack")
}

/// Write `toml` as a sweep file next to a fresh output directory and train it there with
/// `extra` arguments; panics unless training succeeds. Returns (output dir, sweep file).
pub fn train_sweep(name: &str, toml: &str, extra: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_path(name);
    let sweep = dir.with_extension("toml");
    std::fs::write(&sweep, toml).expect("write the sweep file");
    let mut args = vec!["train", sweep.to_str().expect("utf-8 path"), "--out", dir.to_str().expect("utf-8 path")];
    args.extend(extra);
    let out = grokstack(&args);
    assert!(out.status.success(), "train failed: {}", String::from_utf8_lossy(&out.stderr));
    (dir, sweep)
}

/// A Parquet file as a polars DataFrame.
pub fn read_parquet(path: &std::path::Path) -> polars::prelude::DataFrame {
    use polars::prelude::SerReader;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    polars::prelude::ParquetReader::new(file).finish().expect("a readable Parquet file")
}

/// Two weight decays on p = 47: wd 3 groks around epoch 115, wd 0.3 not within the budget
/// (tests/retirement.rs). `[train]` comes last, so that a test can append keys to it.
pub const GROKKING: &str = r#"
seeds = 2
[task]
p = 47
train_fraction = 0.6
[model]
embed_dim = 32
hidden = [128, 128]
[metrics]
lipschitz = true
power_iters = 3
[grid]
"train.weight_decay" = [3.0, 0.3]
[train]
epochs = 150
lr = 0.01
all_reg = true
log_every = 5
"#;

/// A sweep for seed waves (tests/waves.rs, tests/resume.rs), [`GROKKING`] with a third weight
/// decay and four seeds: on this machine weight decay 3 groks with every seed within its 150
/// epochs, 0.3 with none, and 2.2 with seed 1 but not seed 0; the seeds are listed with seed 1
/// first, so that with [`WAVES_SET`] the setting 2.2 fails in wave 2. The tests derive what
/// each wave must train from a sweep without waves, and check that the fixture still has
/// settings of all three kinds. `[train]` comes last, so that a test can append
/// `seed_waves = [...]` to it.
pub fn waves_sweep() -> String {
    let sweep = GROKKING.replace("seeds = 2", "name = \"waves\"\nseeds = [1, 0, 2, 3]").replace("[3.0, 0.3]", "[3.0, 2.2, 0.3]");
    sweep + "checkpoint_every = 20\nstop = \"grok\"\n"
}

/// The waves the tests give [`waves_sweep`].
pub const WAVES_SET: &str = "train.seed_waves=[1,1,2]";
