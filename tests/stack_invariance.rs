//! A run's results do not depend on which other runs share its stack.

mod common;

use candle_core::Device;
use grokstack::config::RunSpec;
use grokstack::metrics::MetricRow;
use grokstack::models::PassOptions;
use grokstack::train::Stack;

const BASE: &str = r#"
[task]
p = 11
train_fraction = 0.5
[model]
input = "embedding"
embed_dim = 8
hidden = [16, 12]
[train]
epochs = 12
lr = 0.01
weight_decay = 1.0
"#;

fn row_values(r: &MetricRow) -> Vec<f64> {
    let mut v =
        vec![r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.weight_norm, r.softmax_collapse, r.zero_terms];
    v.extend(&r.layer_weight_norms);
    v.extend(r.embedding_weight_norm);
    v
}

fn check(dtype: &str, input: &str, tolerance: f64) {
    let sets = [format!("train.dtype={dtype}"), format!("model.input={input}")];
    let with = |extra: &[&str]| {
        let mut all: Vec<&str> = sets.iter().map(|s| s.as_str()).collect();
        all.extend(extra);
        common::runs(BASE, &all)
    };
    let mut target: RunSpec = with(&["seeds=[3]"]).remove(0);
    target.run_id = 1000; // distinct from the neighbours' ids
                          // Seven neighbours with other seeds, ops, learning rates, weight decays and all_reg.
    let mut neighbours = with(&["seeds=[0, 1, 2, 4]", "task.op=[\"add\", \"mul\"]", "train.all_reg=true"]);
    neighbours.truncate(4);
    neighbours.extend(with(&["seeds=[9]", "train.lr=[0.003, 0.03, 0.05]", "train.weight_decay=0.1", "task.op=sub"]));
    assert_eq!(neighbours.len(), 7);
    let mut stacked = neighbours[..3].to_vec();
    stacked.push(target.clone());
    stacked.extend(neighbours[3..].iter().cloned());

    let (_, alone) = Stack::new(vec![target.clone()], &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
    let (_, together) = Stack::new(stacked, &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
    let together: Vec<&MetricRow> = together.iter().filter(|r| r.run_id == target.run_id).collect();
    assert_eq!(alone.len(), 12);
    assert_eq!(together.len(), alone.len());
    for (a, b) in alone.iter().zip(together) {
        assert_eq!(a.epoch, b.epoch);
        let diff = common::max_rel_diff(&row_values(a), &row_values(b));
        assert!(diff <= tolerance, "{dtype}/{input} epoch {}: alone vs stacked differ by {diff:e}", a.epoch);
    }
}

#[test]
fn alone_equals_stacked_f64() {
    check("f64", "embedding", 1e-9);
    check("f64", "two_hot", 1e-9);
}

#[test]
fn alone_equals_stacked_f32() {
    check("f32", "embedding", 1e-5);
    check("f32", "two_hot", 1e-5);
}

#[test]
fn passes_over_groups_of_runs_equal_one_pass() {
    for dtype in ["f64", "f32"] {
        let runs = common::runs(BASE, &[&format!("train.dtype={dtype}"), "seeds=5", "train.lr=[0.01, 0.03]"]);
        let stack = Stack::new(runs, &Device::Cpu).unwrap();
        let (rows, labels) = (&stack.train.rows, &stack.train.labels);
        let loss = grokstack::config::Loss::Softmax;
        let values = |t: &candle_core::Tensor| -> Vec<f64> {
            t.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        let (stats, grads, _) =
            stack.model.train_pass_tensors(rows, labels, &PassOptions::new(loss, false, 10)).unwrap();
        for group in [1, 3, 4] {
            let options = PassOptions::new(loss, false, group);
            let (g_stats, g_grads, _) = stack.model.train_pass_tensors(rows, labels, &options).unwrap();
            assert_eq!(values(&stats), values(&g_stats), "{dtype}: statistics in groups of {group}");
            for (a, b) in grads.iter().zip(&g_grads) {
                assert_eq!(values(a), values(b), "{dtype}: gradients in groups of {group}");
            }
            let (test_rows, test_labels) = (&stack.test.rows, &stack.test.labels);
            let (whole, _) =
                stack.model.evaluate_tensors(test_rows, test_labels, &PassOptions::new(loss, false, 10)).unwrap();
            let (grouped, _) = stack.model.evaluate_tensors(test_rows, test_labels, &options).unwrap();
            assert_eq!(values(&whole), values(&grouped), "{dtype}: evaluation in groups of {group}");
        }
    }
}
