//! Minibatch epochs and the learning-rate warm-up, against hand computations.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::config::{Loss, RunSpec};
use grokstack::data::epoch_order;
use grokstack::metrics::MetricRow;
use grokstack::models::PassOptions;
use grokstack::optim::RunHyper;
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
epochs = 6
lr = 0.01
weight_decay = 1.0
dtype = "f64"
batch_size = 16
"#;

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn params(stack: &Stack) -> Vec<Vec<f64>> {
    stack.model.params.iter().map(|p| values(&p.value)).collect()
}

/// The rows `positions` of run 0's train batch, as table indices `[1, B, K]` and labels `[1, B]`.
fn rows_of(stack: &Stack, positions: &[usize]) -> (Tensor, Tensor) {
    let index =
        Tensor::from_vec(positions.iter().map(|&i| i as u32).collect::<Vec<_>>(), positions.len(), &Device::Cpu)
            .unwrap();
    let rows = stack.train.rows.get(0).unwrap().index_select(&index, 0).unwrap().unsqueeze(0).unwrap();
    let labels = stack.train.labels.get(0).unwrap().index_select(&index, 0).unwrap().unsqueeze(0).unwrap();
    (rows, labels)
}

#[test]
fn a_minibatch_epoch_steps_through_a_fresh_shuffle_of_every_train_row() {
    // Plain SGD (no momentum, no decay): each step is p ← p − lr·g on that step's rows, so the
    // epoch can be replayed by hand from the epoch's order.
    let runs = common::runs(
        BASE,
        &["seeds=[4]", "train.optimizer=sgd", "train.momentum=0.0", "train.weight_decay=0.0", "train.lr=0.5"],
    );
    let (seed, n_train) = (runs[0].seed, runs[0].config.n_train());
    assert_eq!(n_train, 60, "floor(0.5 · 121)");
    assert_eq!(runs[0].config.steps_per_epoch(), 4, "ceil(60 / 16): the last partial batch is kept");
    let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
    let mut by_hand = stack.model.clone();
    for epoch in 0..2 {
        let order = epoch_order(seed, epoch, n_train);
        for batch in order.chunks(16) {
            let (rows, labels) = rows_of(&stack, batch);
            let (_, grads, _) = by_hand.train_pass(&rows, &labels, &PassOptions::new(Loss::Softmax, false, 1)).unwrap();
            for (param, grad) in by_hand.params.iter_mut().zip(grads) {
                param.value = (&param.value - (grad * 0.5).unwrap()).unwrap();
            }
        }
        assert!(stack.epoch_steps(epoch).unwrap().is_none(), "a minibatch epoch measures itself");
        assert_eq!(stack.steps, 4 * (epoch + 1));
        for (got, expected) in params(&stack).iter().zip(by_hand.params.iter().map(|p| values(&p.value))) {
            assert!(
                common::max_rel_diff(got, &expected) < 1e-12,
                "epoch {epoch}: the stack's steps differ from the replay"
            );
        }
    }
}

#[test]
fn a_batch_as_large_as_the_train_set_is_the_full_batch_step() {
    let full = common::runs(BASE, &["seeds=[2]", "train.batch_size=0"]);
    let one_batch = common::runs(BASE, &["seeds=[2]", "train.batch_size=1000"]);
    let (mut a, mut b) = (Stack::new(full, &Device::Cpu).unwrap(), Stack::new(one_batch, &Device::Cpu).unwrap());
    a.epoch_steps(0).unwrap();
    b.epoch_steps(0).unwrap();
    for (x, y) in params(&a).iter().zip(params(&b)) {
        // The same rows in another order: the sums differ only by rounding.
        assert!(common::max_rel_diff(x, &y) < 1e-10);
    }
}

fn row_values(r: &MetricRow) -> Vec<f64> {
    let mut v =
        vec![r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.weight_norm, r.softmax_collapse, r.zero_terms];
    v.extend(&r.layer_weight_norms);
    v
}

#[test]
fn a_minibatch_run_alone_equals_it_inside_a_stack() {
    for dtype in ["f64", "f32"] {
        let dtype_key = format!("train.dtype={dtype}");
        let mut target: RunSpec = common::runs(BASE, &["seeds=[3]", &dtype_key, "train.warmup=3"]).remove(0);
        target.run_id = 1000;
        let mut stacked = common::runs(
            BASE,
            &[
                "seeds=[0, 1, 2, 5, 6, 7, 8]",
                &dtype_key,
                "train.lr=[0.003, 0.03]",
                "train.warmup=[0, 2]",
                "task.op=[\"add\", \"exp\"]",
            ],
        );
        stacked.truncate(7);
        stacked.insert(4, target.clone());
        let (_, alone) = Stack::new(vec![target.clone()], &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
        let (_, together) = Stack::new(stacked, &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
        let together: Vec<&MetricRow> = together.iter().filter(|r| r.run_id == 1000).collect();
        assert_eq!(alone.len(), 6);
        assert_eq!(together.len(), 6);
        for (a, b) in alone.iter().zip(together) {
            assert_eq!(
                row_values(a),
                row_values(b),
                "{dtype} epoch {}: alone vs stacked must be bit-identical",
                a.epoch
            );
        }
    }
}

#[test]
fn warmup_factors_by_hand() {
    let runs = common::runs(BASE, &["seeds=[0]", "train.warmup=[0, 1, 4]"]);
    let hyper = RunHyper::from_configs(runs.iter().map(|r| &r.config));
    assert_eq!(hyper.lr_scale(1), vec![1.0, 1.0, 0.25]);
    assert_eq!(hyper.lr_scale(2), vec![1.0, 1.0, 0.5]);
    assert_eq!(hyper.lr_scale(3), vec![1.0, 1.0, 0.75]);
    assert_eq!(hyper.lr_scale(4), vec![1.0, 1.0, 1.0]);
    assert_eq!(hyper.lr_scale(50), vec![1.0, 1.0, 1.0]);
}

#[test]
fn warmup_scales_the_first_steps_of_every_optimizer() {
    // Full batch, no decay. SGD without momentum moves by −lr·(t/W)·g; AdamW's first step
    // moves every weight by −lr·(1/W)·sign(g) (m̂/√v̂ = g/|g| when ε is negligible).
    for optimizer in ["sgd", "adamw"] {
        let runs = common::runs(
            BASE,
            &[
                "seeds=[1]",
                "train.batch_size=0",
                "train.weight_decay=0.0",
                "train.momentum=0.0",
                "train.warmup=4",
                "train.lr=0.1",
                &format!("train.optimizer={optimizer}"),
            ],
        );
        let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
        let before = params(&stack);
        let options = PassOptions::new(Loss::Softmax, false, 1);
        let (_, grads, _) = stack.model.train_pass(&stack.train.rows, &stack.train.labels, &options).unwrap();
        stack.step().unwrap();
        for ((after, before), grad) in params(&stack).iter().zip(&before).zip(grads.iter().map(values)) {
            for ((a, b), g) in after.iter().zip(before).zip(grad) {
                let expected = match optimizer {
                    "sgd" => b - 0.1 * 0.25 * g,
                    _ if g == 0.0 => *b,
                    _ => b - 0.1 * 0.25 * g.signum(),
                };
                assert!(
                    (a - expected).abs() < 1e-12 * (1.0 + b.abs()),
                    "{optimizer}: step 1 uses lr/4: {a} vs {expected}"
                );
            }
        }
    }
}
