//! Transformer stacks end to end: a sweep groks, and every optimizer keeps runs apart.

mod common;

use candle_core::Device;
use grokstack::config::RunSpec;
use grokstack::metrics::MetricRow;
use grokstack::train::Stack;

#[test]
fn the_nanda_sweep_groks_on_the_cpu() {
    let toml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sweeps/transformer-nanda-cpu.toml")).unwrap();
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
        let mut stacked = with(&[
            "seeds=[0, 1, 2]",
            "train.batch_size=10",
            "train.lr=[0.003, 0.03]",
            "train.all_reg=true",
            "task.op=[\"add\", \"mul\"]",
        ]);
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
        let err = grokstack::config::Sweep::parse(
            SMALL,
            "small.toml",
            &set.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .expect_err("refused");
        let text = format!("{err:#}");
        assert!(text.contains(key) && text.contains("small.toml"), "{text}");
    };
    refused(&["model.heads=3"], "model.heads");
    refused(&["metrics.lipschitz=true"], "metrics.lipschitz");
    refused(&["train.dtype=bf16"], "train.dtype");
    refused(&["model.positional=rope", "model.d_model=6", "model.heads=2"], "model.positional");
    refused(&["task.op=parity", "task.skip_zero=true"], "task.skip_zero");
}

#[test]
fn a_diverging_run_changes_no_other_run_of_its_stack() {
    let runs = |lr: &str| common::runs(SMALL, &["seeds=[0, 1, 2]", &format!("train.lr={lr}")]);
    let calm = runs("0.01");
    let mut wild = runs("0.01");
    wild[1].config = common::runs(SMALL, &["train.lr=1e200"])[0].config.clone();
    let (_, expected) = Stack::new(calm, &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
    let (results, got) = Stack::new(wild, &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
    assert_eq!(results[1].status.as_str(), "diverged", "lr 1e200 diverges");
    for run in [0, 2] {
        let (a, b): (Vec<_>, Vec<_>) =
            (expected.iter().filter(|r| r.run_id == run).collect(), got.iter().filter(|r| r.run_id == run).collect());
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            assert_eq!(row_values(a), row_values(b), "run {run} epoch {}: a diverging neighbour changed it", a.epoch);
        }
    }
}

#[test]
fn export_writes_pytorch_names_and_layouts() {
    let toml = format!("name = \"tf-export\"\nseeds = 1\n{SMALL}");
    let (dir, _) = common::train_sweep("tf-export", &toml, &[]);
    let out = dir.join("run0.safetensors");
    let exported = grokstack::export::export_run(&dir, 0, &out, None).unwrap();
    let shapes: std::collections::HashMap<String, Vec<usize>> = exported.tensors.into_iter().collect();
    // p = 7 and [a, b, =]: vocabulary 8, 3 positions; d 8, FFN 12, 7 classes.
    assert_eq!(shapes["embedding.weight"], [8, 8]);
    assert_eq!(shapes["position.weight"], [3, 8]);
    assert_eq!(shapes["layers.0.attn.q.weight"], [8, 8]);
    assert_eq!(shapes["layers.1.ffn.w1.weight"], [12, 8], "Linear weights are [out, in]");
    assert_eq!(shapes["layers.1.ffn.w2.weight"], [8, 12]);
    assert_eq!(shapes["layers.0.norm1.weight"], [8]);
    assert_eq!(shapes["layers.0.norm1.bias"], [8]);
    assert_eq!(shapes["unembed.weight"], [7, 8]);
    assert_eq!(shapes["unembed.bias"], [7]);
}

/// A transformer run logs the norm of every parameter, one named column each
/// (`{name}_norm`, the embedding's as `embedding_weight_norm`), and no MLP layer or spectral
/// columns; the last logged norms are those of the exported final weights.
#[test]
fn every_parameter_has_its_own_norm_column() {
    let toml = format!("name = \"tf-columns\"\nseeds = 1\n{SMALL}");
    let (dir, _) = common::train_sweep("tf-columns", &toml, &[]);
    let metrics = common::read_parquet(&dir.join("metrics.parquet/part-00000.parquet"));
    let exported = dir.join("run0.safetensors");
    grokstack::export::export_run(&dir, 0, &exported, None).unwrap();
    let weights = candle_core::safetensors::load(&exported, &Device::Cpu).unwrap();

    let names: Vec<String> = metrics.get_column_names().iter().map(|n| n.to_string()).collect();
    assert!(!names.iter().any(|n| n.starts_with("layer") && !n.starts_with("layers.")), "{names:?}");
    let expected: Vec<String> =
        ["position.weight", "layers.0.norm1.weight", "layers.0.norm1.bias", "layers.0.attn.q.weight"]
            .iter()
            .map(|n| format!("{n}_norm"))
            .collect();
    let norm_columns: Vec<&String> = names.iter().filter(|n| n.ends_with("_norm") && n.contains('.')).collect();
    assert_eq!(norm_columns[..4].iter().map(|s| s.as_str()).collect::<Vec<_>>(), expected);
    // Every exported tensor but the embedding has its column, and nothing else does.
    assert_eq!(norm_columns.len(), weights.len() - 1, "{names:?}");

    let last = metrics.height() - 1;
    let norm_of = |name: &str| {
        let values: Vec<f64> =
            weights[name].to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        values.iter().map(|v| v * v).sum::<f64>().sqrt()
    };
    for name in weights.keys() {
        let column =
            if name == "embedding.weight" { "embedding_weight_norm".to_string() } else { format!("{name}_norm") };
        let logged = metrics.column(&column).unwrap().f64().unwrap().get(last).unwrap();
        assert!(
            (logged - norm_of(name)).abs() <= 1e-12 * logged.max(1.0),
            "{column}: logged {logged}, exported {}",
            norm_of(name)
        );
    }
}
