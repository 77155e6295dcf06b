//! Pure bf16: one step equals the f32 computation rounded to bf16 at the storage points,
//! computed here independently with plain candle ops; and a short bf16 sweep still groks.

mod common;

use candle_core::{DType, Device, Tensor, D};
use grokstack::train::Stack;

/// Round to bf16 through candle's own dtype conversion.
fn r(t: Tensor) -> Tensor {
    t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap()
}

fn bf16_representable(t: &Tensor) -> bool {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    v.iter().all(|&x| half::bf16::from_f32(x).to_f32() == x)
}

#[test]
fn one_pure_bf16_step_equals_rounded_f32() {
    let (p, lr, wd) = (7usize, 0.01, 1.0);
    let runs = common::runs(
        common::TINY,
        &["model.input=two_hot", "model.hidden=[6]", "model.activation=relu", "train.dtype=bf16", "train.all_reg=true"],
    );
    let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
    // [R, 2p, 6], [R, 6, p]
    let (w0, w1) = (stack.model.mlp().unwrap().linear(0).clone(), stack.model.mlp().unwrap().linear(1).clone());
    assert!(bf16_representable(&w0) && bf16_representable(&w1), "bf16 weights are stored rounded");
    let rows = stack.train.rows.clone(); // [R, N, 2]
    let labels = stack.train.labels.clone(); // [R, N]
    let (runs_count, n, _) = rows.dims3().unwrap();

    // Forward: z = W0[a] + W0[p + b], a = relu(z), logits = a·W1 — each stored in bf16.
    let mut z = Vec::new();
    for run in 0..runs_count {
        let table = w0.get(run).unwrap();
        let idx = rows.get(run).unwrap();
        let a = table.index_select(&idx.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(), 0).unwrap();
        let b = table.index_select(&idx.narrow(1, 1, 1).unwrap().squeeze(1).unwrap(), 0).unwrap();
        z.push((a + b).unwrap());
    }
    let z = r(Tensor::stack(&z, 0).unwrap());
    let a = r(z.relu().unwrap());
    let logits = r(a.matmul(&w1).unwrap());
    // Softmax cross-entropy gradient (mean over each run's rows), stored in bf16.
    let e = logits.broadcast_sub(&logits.max_keepdim(D::Minus1).unwrap()).unwrap().exp().unwrap();
    let softmax = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
    let one_hot = labels
        .unsqueeze(2)
        .unwrap()
        .broadcast_eq(&Tensor::arange(0u32, p as u32, &Device::Cpu).unwrap().reshape((1, 1, p)).unwrap())
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let dlogits = r(((softmax - one_hot).unwrap() / n as f64).unwrap());
    // Backward.
    let dw1 = r(a.t().unwrap().matmul(&dlogits).unwrap());
    let da = r(dlogits.matmul(&w1.t().unwrap()).unwrap());
    let dz = r((da * z.gt(0.0).unwrap().to_dtype(DType::F32).unwrap()).unwrap());
    let mut dw0 = Vec::new();
    for run in 0..runs_count {
        let idx = rows.get(run).unwrap();
        let mut table = Tensor::zeros((2 * p, 6), DType::F32, &Device::Cpu).unwrap();
        for k in 0..2 {
            table = table
                .index_add(
                    &idx.narrow(1, k, 1).unwrap().squeeze(1).unwrap().contiguous().unwrap(),
                    &dz.get(run).unwrap(),
                    0,
                )
                .unwrap();
        }
        dw0.push(table);
    }
    let dw0 = r(Tensor::stack(&dw0, 0).unwrap());
    // AdamW step 1 in f32 (m = 0.1·g, v = 0.01·g², bias corrections 0.1 and 0.01), stored in bf16.
    let adam = |w: &Tensor, g: &Tensor| {
        let m = r((g * 0.1).unwrap());
        let v = r((g.sqr().unwrap() * 0.01).unwrap());
        let denom = ((v.sqrt().unwrap() / 0.1).unwrap() + 1e-25).unwrap();
        r(((w * (1.0 - lr * wd)).unwrap() - ((m / denom).unwrap() * (lr / 0.1)).unwrap()).unwrap())
    };
    let expected = [adam(&w0, &dw0), adam(&w1, &dw1)];

    stack.step().unwrap();
    for (layer, want) in expected.iter().enumerate() {
        let got = stack.model.mlp().unwrap().linear(layer);
        assert!(bf16_representable(got), "layer {layer}: weights after the step are bf16");
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        let equal = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        // Sums in a different order can move a value across a bf16 rounding boundary: allow
        // a few such values, each at most one bf16 step (2⁻⁷ relative) away.
        assert!(equal as f64 >= 0.98 * got.len() as f64, "layer {layer}: only {equal}/{} values equal", got.len());
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= b.abs() * 2f32.powi(-7) + 1e-30, "layer {layer}: {a} vs {b}");
        }
    }
}

#[test]
fn a_short_bf16_sweep_still_groks() {
    let runs = common::runs(
        "[task]\np = 47\ntrain_fraction = 0.6\n[model]\nembed_dim = 32\nhidden = [128, 128]\n[train]\nepochs = \
            200\nweight_decay = 3.0\nall_reg = true\ndtype = \"bf16\"\nlog_every = 5\n",
        &["seeds=[5, 6]"],
    );
    let (results, _) = Stack::new(runs, &Device::Cpu).unwrap().train(|_, _| {}).unwrap();
    for result in results {
        assert!(result.grok_epoch.is_some(), "run {} did not grok in bf16: {result:?}", result.run_id);
    }
}
