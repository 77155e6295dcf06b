//! ⊥AdamW, SGD and Muon: the math of each against independent computations, and stack
//! invariance for every optimizer.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::optim::muon::newton_schulz;
use grokstack::optim::orthogonal::orthogonal_grad;
use grokstack::train::Stack;

fn flat(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().flatten_from(1).unwrap().to_vec2().unwrap()
}

#[test]
fn orthogonal_gradient_is_orthogonal_per_run_and_keeps_the_norm() {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f64, 1.0, (3, 5, 4), &dev).unwrap();
    let g = Tensor::randn(0f64, 1.0, (3, 5, 4), &dev).unwrap();
    let projected = orthogonal_grad(&w, &g, &[true, true, false]).unwrap();
    let (w, g, p) = (flat(&w), flat(&g), flat(&projected));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    for run in 0..2 {
        let cosine = dot(&w[run], &p[run]).abs() / (dot(&w[run], &w[run]).sqrt() * dot(&p[run], &p[run]).sqrt());
        assert!(cosine < 1e-6, "run {run}: |w·g⊥| / (‖w‖‖g⊥‖) = {cosine:e}");
        let (g_norm, p_norm) = (dot(&g[run], &g[run]).sqrt(), dot(&p[run], &p[run]).sqrt());
        assert!((g_norm - p_norm).abs() < 1e-12 * g_norm, "run {run}: norm {p_norm} vs {g_norm}");
        // Each run's projection uses its own weights: recompute it here from w[run] and g[run].
        let coefficient = dot(&w[run], &g[run]) / dot(&w[run], &w[run]);
        let by_hand: Vec<f64> = g[run].iter().zip(&w[run]).map(|(gi, wi)| gi - coefficient * wi).collect();
        let hand_norm = dot(&by_hand, &by_hand).sqrt();
        for (got, want) in p[run].iter().zip(&by_hand) {
            assert!(
                (got - want * g_norm / hand_norm).abs() < 1e-12,
                "run {run}: {got} vs {}",
                want * g_norm / hand_norm
            );
        }
    }
    assert_eq!(p[2], g[2], "an unmasked run keeps its gradient");
}

#[test]
fn newton_schulz_puts_singular_values_in_the_quintic_band() {
    for (m, n) in [(6, 10), (8, 8), (12, 5)] {
        // Fixed draws: a Gaussian matrix can be nearly singular, and the quintic only lifts
        // singular values above ~1e-3·‖X‖_F into the band within 5 steps.
        let mut rng = grokstack::rng::Rng::new((m * 100 + n) as u64, grokstack::rng::Stream::Synthetic);
        let data: Vec<f64> = (0..3 * m * n).map(|_| rng.normal()).collect();
        let x = Tensor::from_vec(data, (3, m, n), &Device::Cpu).unwrap();
        let o = newton_schulz(&x, 5).unwrap();
        assert_eq!(o.dims(), &[3, m, n]);
        let o: Vec<Vec<Vec<f64>>> = o.to_vec3().unwrap();
        for (run, matrix) in o.iter().enumerate() {
            for s in common::singular_values(matrix) {
                assert!((0.6..=1.25).contains(&s), "{m}x{n} run {run}: singular value {s}");
            }
        }
    }
}

#[test]
fn newton_schulz_on_the_cpu_matches_the_tensor_ops() {
    for (m, n) in [(6, 10), (8, 8), (12, 5)] {
        let mut rng = grokstack::rng::Rng::new((m * 7 + n) as u64, grokstack::rng::Stream::Synthetic);
        let data: Vec<f64> = (0..4 * m * n).map(|_| rng.normal()).collect();
        let x = Tensor::from_vec(data, (4, m, n), &Device::Cpu).unwrap();
        for (x, tol) in [(x.clone(), 1e-12), (x.to_dtype(candle_core::DType::F32).unwrap(), 1e-5)] {
            let values = |t: Tensor| -> Vec<f64> {
                t.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
            };
            let (cpu, tensors) = (
                values(newton_schulz(&x, 5).unwrap()),
                values(grokstack::optim::muon::newton_schulz_tensors(&x, 5).unwrap()),
            );
            let diff = cpu.iter().zip(&tensors).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < tol, "{m}x{n} {:?}: CPU vs tensor ops differ by {diff:e}", x.dtype());
        }
    }
}

#[test]
fn one_newton_schulz_step_matches_a_hand_computation() {
    // A 1×2 matrix [3, 4]: X = [3, 4]·s with s = 1/(‖·‖_F + 1e-7) = 1/(5 + 1e-7); the Gram
    // "matrix" is the scalar A = 25·s²; one step gives X ← (a + b·A + c·A²)·X.
    let x = Tensor::new(&[[[3.0f64, 4.0]]], &Device::Cpu).unwrap();
    let o: Vec<Vec<Vec<f64>>> = newton_schulz(&x, 1).unwrap().to_vec3().unwrap();
    let s = 1.0 / (5.0 + 1e-7);
    let gram = 25.0 * s * s;
    let factor = (3.4445 - 4.7750 * gram + 2.0315 * gram * gram) * s;
    assert!((o[0][0][0] - 3.0 * factor).abs() < 1e-12 && (o[0][0][1] - 4.0 * factor).abs() < 1e-12, "{o:?}");
}

/// (name, muon, always decayed) of every parameter of a 3-layer MLP with `input`.
fn groups(input: &str) -> Vec<(String, bool, bool)> {
    let runs = common::runs(common::TINY, &[&format!("model.input={input}"), "model.hidden=[5, 4]"]);
    let model =
        grokstack::models::Model::init(&runs[0].config.arch(), &[0], grokstack::config::Precision::F32, &Device::Cpu)
            .unwrap();
    model.params.iter().map(|p| (p.name.clone(), p.group.muon, p.group.always_decayed)).collect()
}

#[test]
fn muon_updates_only_hidden_weights_and_all_reg_decides_the_input_side() {
    let s = |name: &str, muon, decayed| (name.to_string(), muon, decayed);
    assert_eq!(
        groups("embedding"),
        [
            s("embedding.weight", false, false),
            s("layers.0.weight", true, true),
            s("layers.1.weight", true, true),
            s("layers.2.weight", false, true)
        ]
    );
    assert_eq!(
        groups("two_hot"),
        [s("layers.0.weight", false, false), s("layers.1.weight", true, true), s("layers.2.weight", false, true)]
    );
}

#[test]
fn one_muon_step_matches_a_hand_computation() {
    // Muon's first step from a zero buffer with weight decay wd and lr:
    //   b = (1 − μ)·g;  u = (1 − μ)·g + μ·b;  p ← p·(1 − lr·wd) − lr·√max(1, out/in)·NS(u)
    let runs = common::runs(
        common::TINY,
        &[
            "train.optimizer=muon",
            "train.dtype=f64",
            "train.lr=0.02",
            "train.weight_decay=0.5",
            "train.muon_momentum=0.9",
        ],
    );
    let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
    let before = stack.model.mlp().unwrap().linear(1).clone(); // hidden [5, 4]
    let (logits, cache) = stack.model.forward(&stack.train.rows, true, None).unwrap();
    let dlogits =
        grokstack::kernels::loss::grad(grokstack::config::Loss::Softmax, &logits, &stack.train.labels).unwrap();
    let grad = stack.model.backward(&stack.train.rows, &cache, &dlogits).unwrap()[2].clone();
    stack.step().unwrap();
    let after = stack.model.mlp().unwrap().linear(1).clone();
    let u = ((&grad * 0.1).unwrap() + (&grad * (0.1 * 0.9)).unwrap()).unwrap();
    // out/in = 4/5 < 1
    let expected = ((before * (1.0 - 0.02 * 0.5)).unwrap() - (newton_schulz(&u, 5).unwrap() * 0.02).unwrap()).unwrap();
    let diff = common::max_rel_diff(&flat(&after).concat(), &flat(&expected).concat());
    assert!(diff < 1e-10, "Muon step differs from the hand computation by {diff:e}");
}

#[test]
fn sgd_step_matches_a_hand_computation() {
    let runs = common::runs(
        common::TINY,
        &["train.optimizer=sgd", "train.dtype=f64", "train.lr=0.1", "train.weight_decay=0.5", "train.momentum=0.5"],
    );
    let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
    let grad_of = |stack: &Stack| {
        let (logits, cache) = stack.model.forward(&stack.train.rows, true, None).unwrap();
        let d = grokstack::kernels::loss::grad(grokstack::config::Loss::Softmax, &logits, &stack.train.labels).unwrap();
        stack.model.backward(&stack.train.rows, &cache, &d).unwrap()[3].clone() // output layer (decayed)
    };
    let (p0, g0) = (stack.model.mlp().unwrap().linear(2).clone(), grad_of(&stack));
    stack.step().unwrap();
    let (p1, g1) = (stack.model.mlp().unwrap().linear(2).clone(), grad_of(&stack));
    stack.step().unwrap();
    // b₁ = g₀; p₁ = p₀·(1 − 0.05) − 0.1·g₀;  b₂ = 0.5·g₀ + g₁; p₂ = p₁·0.95 − 0.1·b₂
    let p1_hand = ((&p0 * 0.95).unwrap() - (&g0 * 0.1).unwrap()).unwrap();
    let p2_hand = ((&p1 * 0.95).unwrap() - (((&g0 * 0.5).unwrap() + &g1).unwrap() * 0.1).unwrap()).unwrap();
    assert!(common::max_rel_diff(&flat(&p1).concat(), &flat(&p1_hand).concat()) < 1e-12);
    assert!(
        common::max_rel_diff(&flat(stack.model.mlp().unwrap().linear(2)).concat(), &flat(&p2_hand).concat()) < 1e-12
    );
}

#[test]
fn every_optimizer_is_stack_invariant_with_the_lipschitz_bound() {
    for optimizer in ["adamw", "ortho_adamw", "sgd", "muon", "scion"] {
        let sets = [
            format!("train.optimizer={optimizer}"),
            "train.dtype=f64".into(),
            "metrics.lipschitz=true".into(),
            "train.epochs=6".into(),
        ];
        let sets: Vec<&str> = sets.iter().map(|s| s.as_str()).collect();
        let target = common::runs(common::TINY, &[&sets[..], &["seeds=[7]", "train.lr=0.02"]].concat()).remove(0);
        let neighbours = common::runs(
            common::TINY,
            &[&sets[..], &["seeds=4", "train.lr=[0.001, 0.05]", "train.all_reg=true"]].concat(),
        );
        let (alone, together) = common::alone_and_stacked(target, neighbours, 3);
        assert_eq!(alone.len(), 6);
        assert_eq!(
            alone[0].len(),
            4 + 3 + 1 + 3,
            "weight norms of 3 layers and the embedding, spectral norms of 3 layers"
        );
        for (a, b) in alone.iter().zip(&together) {
            assert!(common::max_rel_diff(a, b) < 1e-9, "{optimizer}: {a:?} vs {b:?}");
        }
    }
}
