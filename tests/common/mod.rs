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

/// python3 (or $GROKSTACK_PYTHON) with numpy and safetensors, if there is one.
pub fn numpy_python() -> Option<String> {
    let python = std::env::var("GROKSTACK_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = std::process::Command::new(&python).args(["-c", "import numpy, safetensors"]).output().ok()?;
    probe.status.success().then_some(python)
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

/// `df` sorted by the columns `by`, so that frames from different writers compare.
pub fn sorted(df: polars::prelude::DataFrame, by: &[&str]) -> polars::prelude::DataFrame {
    df.sort(by.iter().map(|s| s.to_string()).collect::<Vec<_>>(), polars::prelude::SortMultipleOptions::default())
        .expect("sort")
}

/// An output directory's runs.parquet, by run.
pub fn read_runs(dir: &std::path::Path) -> polars::prelude::DataFrame {
    sorted(read_parquet(&dir.join("runs.parquet")), &["run_id"])
}

/// Every metrics part of an output directory, by run and epoch.
pub fn read_metrics(dir: &std::path::Path) -> polars::prelude::DataFrame {
    let parts = std::fs::read_dir(dir.join("metrics.parquet"))
        .expect("a metrics.parquet folder")
        .map(|e| read_parquet(&e.expect("a directory entry").path()));
    sorted(
        parts.reduce(|a, b| a.vstack(&b).expect("parts of one schema")).expect("at least one metrics part"),
        &["run_id", "epoch"],
    )
}

/// Every file under `dir` (relative path → bytes), the lock file left out.
pub fn snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    use std::path::{Path, PathBuf};
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("a readable folder") {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.file_name().is_some_and(|n| n != ".lock") {
                out.insert(
                    path.strip_prefix(root).expect("under root").to_path_buf(),
                    std::fs::read(&path).expect("a readable file"),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The singular values (descending, min(rows, cols) of them) and the polar factor U·Vᵀ of
/// `m` `[rows][cols]`, from Jacobi rotations on MᵀM: an SVD independent of the code under test.
/// Assumes full rank (U's columns are M·vᵢ/σᵢ).
pub fn svd(m: &[Vec<f64>]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (rows, cols) = (m.len(), m[0].len());
    let mut a = vec![vec![0.0; cols]; cols];
    for i in 0..cols {
        for j in 0..cols {
            a[i][j] = (0..rows).map(|k| m[k][i] * m[k][j]).sum();
        }
    }
    let mut v: Vec<Vec<f64>> = (0..cols).map(|i| (0..cols).map(|j| f64::from(u8::from(i == j))).collect()).collect();
    for _ in 0..100 {
        for p in 0..cols {
            for q in p + 1..cols {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = 0.5 * (2.0 * a[p][q]).atan2(a[q][q] - a[p][p]);
                let (c, s) = (theta.cos(), theta.sin());
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                // Rows p < q of a, side by side.
                let (above, from_q) = a.split_at_mut(q);
                for (apk, aqk) in above[p].iter_mut().zip(from_q[0].iter_mut()) {
                    let (x, y) = (*apk, *aqk);
                    *apk = c * x - s * y;
                    *aqk = s * x + c * y;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..cols).collect();
    order.sort_by(|&x, &y| a[y][y].total_cmp(&a[x][x]));
    order.truncate(rows.min(cols));
    let sigmas: Vec<f64> = order.iter().map(|&i| a[i][i].max(0.0).sqrt()).collect();
    let mut polar = vec![vec![0.0; cols]; rows];
    for (&i, &sigma) in order.iter().zip(&sigmas) {
        // uᵢ = M·vᵢ/σᵢ; U·Vᵀ = Σᵢ uᵢ·vᵢᵀ.
        let u: Vec<f64> = (0..rows).map(|r| (0..cols).map(|k| m[r][k] * v[k][i]).sum::<f64>() / sigma).collect();
        for r in 0..rows {
            for k in 0..cols {
                polar[r][k] += u[r] * v[k][i];
            }
        }
    }
    (sigmas, polar)
}

/// The singular values of `m`, descending.
pub fn singular_values(m: &[Vec<f64>]) -> Vec<f64> {
    svd(m).0
}

/// Q from Gram–Schmidt on a random n×n matrix.
pub fn orthogonal(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = grokstack::rng::Rng::new(seed, grokstack::rng::Stream::Synthetic);
    let mut q: Vec<Vec<f64>> = Vec::new();
    while q.len() < n {
        let mut v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        for u in &q {
            let d: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.iter().map(|a| a / norm).collect());
    }
    q
}

/// W = U·diag(s)·Vᵀ of shape [m, n] (min(m, n) singular values s).
pub fn with_singular_values(m: usize, n: usize, s: &[f64], seed: u64) -> Vec<f64> {
    let (u, v) = (orthogonal(m, seed), orthogonal(n, seed + 100));
    let mut w = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            w[i * n + j] = s.iter().enumerate().map(|(k, sk)| u[k][i] * sk * v[k][j]).sum();
        }
    }
    w
}

/// Per logged epoch of run `run_id`: losses, test accuracy, the weight norms and the spectral
/// norms (when logged).
pub fn metric_values(rows: &[grokstack::metrics::MetricRow], run_id: usize) -> Vec<Vec<f64>> {
    rows.iter()
        .filter(|r| r.run_id == run_id)
        .map(|r| {
            let mut v = vec![r.train_loss, r.test_loss, r.test_acc, r.weight_norm];
            v.extend(&r.layer_weight_norms);
            v.extend(r.embedding_weight_norm);
            v.extend(&r.layer_spectral_norms);
            v
        })
        .collect()
}

/// `target` trained alone and inserted at `position` among `neighbours` in one stack on the
/// CPU: its [`metric_values`] both ways.
pub fn alone_and_stacked(
    mut target: RunSpec,
    mut neighbours: Vec<RunSpec>,
    position: usize,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    use grokstack::train::Stack;
    target.run_id = 99_999; // distinct from the neighbours' ids
    neighbours.insert(position, target.clone());
    let (_, alone) =
        Stack::new(vec![target], &candle_core::Device::Cpu).expect("a stack").train(|_, _| {}).expect("training");
    let (_, together) =
        Stack::new(neighbours, &candle_core::Device::Cpu).expect("a stack").train(|_, _| {}).expect("training");
    (metric_values(&alone, 99_999), metric_values(&together, 99_999))
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
    let sweep = GROKKING
        .replace("seeds = 2", "name = \"waves\"\nseeds = [1, 0, 2, 3]")
        .replace("[3.0, 0.3]", "[3.0, 2.2, 0.3]");
    sweep + "checkpoint_every = 20\nstop = \"grok\"\n"
}

/// The waves the tests give [`waves_sweep`].
pub const WAVES_SET: &str = "train.seed_waves=[1,1,2]";
