//! Transformer stacks end to end: a sweep groks, and every optimizer keeps runs apart.

mod common;

use candle_core::Device;
use grokstack::config::RunSpec;
use grokstack::metrics::MetricRow;
use grokstack::train::Stack;

#[test]
fn the_nanda_sweep_groks_on_the_cpu() {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sweeps/transformer-nanda-cpu.toml")).unwrap();
    let (dir, _) = common::train_sweep("nanda", &toml, &["--set", "seeds=[0, 1]"]);
    let runs = common::read_parquet(&dir.join("runs.parquet"));
    let grok = runs.column("grok_epoch").unwrap().i64().unwrap();
    assert_eq!(grok.null_count(), 0, "every run groks:\n{runs}");
    // Grokking, not memorizing from the start.
    assert!(grok.into_no_null_iter().all(|e| e >= 50), "{runs}");
}

/// A small transformer with every kind of parameter (learned positions, LayerNorm gains and
/// biases, Linear biases) and dropout everywhere, so the masks are part of what must not mix.
const SMALL: &str = r#"
[task]
p = 7
train_fraction = 0.5
[model]
kind = "transformer"
layers = 2
d_model = 8
heads = 2
ffn = "gelu"
ffn_width = 12
norm = "layer"
positional = "learned"
bias = true
tokens = "a_b_eq"
dropout_attention = 0.1
dropout_attention_output = 0.1
dropout_ffn_hidden = 0.2
dropout_ffn_output = 0.1
[train]
epochs = 6
lr = 0.01
weight_decay = 0.5
dtype = "f64"
"#;

fn row_values(r: &MetricRow) -> Vec<f64> {
    let mut v = vec![r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.weight_norm];
    v.extend(&r.layer_weight_norms);
    v.extend(r.embedding_weight_norm);
    v
}

#[test]
fn every_optimizer_trains_a_run_alone_as_inside_a_stack() {
    for optimizer in ["adamw", "ortho_adamw", "sgd", "muon"] {
        let with = |extra: &[&str]| {
            let mut all = vec![format!("train.optimizer={optimizer}")];
            all.extend(extra.iter().map(|s| s.to_string()));
            let all: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
            common::runs(SMALL, &all)
        };
        let mut target: RunSpec = with(&["seeds=[3]", "train.batch_size=10"]).remove(0);
        target.run_id = 100;
        let mut stacked = with(&["seeds=[0, 1, 2]", "train.batch_size=10", "train.lr=[0.003, 0.03]", "train.all_reg=true", "task.op=[\"add\", \"mul\"]"]);
        stacked.truncate(3);
        stacked.insert(1, target.clone());
        let (_, alone) = Stack::new(vec![target], &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
        let (_, together) = Stack::new(stacked, &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
        let together: Vec<&MetricRow> = together.iter().filter(|r| r.run_id == 100).collect();
        assert_eq!(alone.len(), 6);
        assert_eq!(together.len(), 6);
        for (a, b) in alone.iter().zip(together) {
            let diff = common::max_rel_diff(&row_values(a), &row_values(b));
            assert!(diff <= 1e-9, "{optimizer} epoch {}: alone vs stacked differ by {diff:e}", a.epoch);
        }
        assert!(alone.last().unwrap().train_loss < alone[0].train_loss, "{optimizer}: the loss falls");
    }
}

#[test]
fn transformer_settings_are_checked() {
    let refused = |set: &[&str], key: &str| {
        let err = grokstack::config::Sweep::parse(SMALL, "small.toml", &set.iter().map(|s| s.to_string()).collect::<Vec<_>>()).err().expect("refused");
        let text = format!("{err:#}");
        assert!(text.contains(key) && text.contains("small.toml"), "{text}");
    };
    refused(&["model.heads=3"], "model.heads");
    refused(&["metrics.lipschitz=true"], "metrics.lipschitz");
    refused(&["train.dtype=bf16"], "train.dtype");
    refused(&["model.positional=rope", "model.d_model=6", "model.heads=2"], "model.positional");
    refused(&["task.op=parity", "task.skip_zero=true"], "task.skip_zero");
}
