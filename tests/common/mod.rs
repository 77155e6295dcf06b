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
