//! Polar Express against an SVD computed here, and Scion's steps per group against hand
//! computations of the fork's talon.py.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::optim::muon::{orthogonalize, orthogonalize_tensors, Iteration};
use grokstack::optim::polar_express::{polar_express, schedule};
use grokstack::optim::scion::Lmo;
use grokstack::train::Stack;

fn random(runs: usize, m: usize, n: usize, seed: u64) -> Tensor {
    let mut rng = grokstack::rng::Rng::new(seed, grokstack::rng::Stream::Synthetic);
    let data: Vec<f64> = (0..runs * m * n).map(|_| rng.normal()).collect();
    Tensor::from_vec(data, (runs, m, n), &Device::Cpu).unwrap()
}

/// The composed polynomials of `steps` Polar Express steps at x.
fn composed(steps: usize, x: f64) -> f64 {
    schedule(steps).iter().fold(x, |x, &(a, b, c)| a * x + b * x.powi(3) + c * x.powi(5))
}

#[test]
fn the_schedule_is_the_forks_with_its_safety_factor() {
    let s = schedule(10);
    assert_eq!(s.len(), 10);
    assert!((s[0].0 - 8.28721201814563 / 1.01).abs() < 1e-14);
    assert!((s[0].1 - -23.595886519098837 / 1.030301).abs() < 1e-12, "b / 1.01³");
    assert!((s[6].2 - 0.3750001645474248 / 1.01f64.powi(5)).abs() < 1e-14, "c / 1.01⁵ up to the seventh");
    assert_eq!(s[7], (1.875, -1.25, 0.375), "the eighth has no safety factor");
    assert_eq!(s[9], s[7], "later steps repeat the last");
}

#[test]
fn polar_express_singular_values_are_the_polynomials_of_the_inputs_and_lie_in_the_band() {
    // The band the coefficients promise: the image of [1e-3, 1] under five steps, found on a
    // fine log grid here.
    let (lo, hi) = (0..=20_000)
        .map(|i| composed(5, 1e-3 * 1e3f64.powf(i as f64 / 20_000.0)))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    assert!(lo > 0.5 && hi < 1.2, "band [{lo}, {hi}]");
    for (m, n) in [(6, 10), (8, 8), (12, 5)] {
        let x = random(3, m, n, (m * 31 + n) as u64);
        let out = polar_express(&x, 5, false).unwrap();
        assert_eq!(out.dims(), &[3, m, n]);
        let x: Vec<Vec<Vec<f64>>> = x.to_vec3().unwrap();
        let out: Vec<Vec<Vec<f64>>> = out.to_vec3().unwrap();
        for run in 0..3 {
            let (sigmas, polar) = common::svd(&x[run]);
            let frobenius = sigmas.iter().map(|s| s * s).sum::<f64>().sqrt() + 1e-8;
            let (got, _) = common::svd(&out[run]);
            // An odd polynomial in X·Xᵀ keeps the singular vectors and maps each value.
            let mut want: Vec<f64> = sigmas.iter().map(|s| composed(5, s / frobenius)).collect();
            want.sort_by(|a, b| b.total_cmp(a));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-9, "{m}x{n} run {run}: σ {g} vs p(σ/‖X‖) {w}");
                assert!(
                    sigmas.last().unwrap() / frobenius < 1e-3 || (lo - 1e-9..=hi + 1e-9).contains(g),
                    "{m}x{n} run {run}: {g} outside [{lo}, {hi}]"
                );
            }
            // Against U·Vᵀ: ‖PE(X) − U·Vᵀ‖_F = √Σ(p(σᵢ) − 1)².
            let distance =
                out[run].iter().flatten().zip(polar.iter().flatten()).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
            let expected = want.iter().map(|w| (w - 1.0).powi(2)).sum::<f64>().sqrt();
            assert!((distance - expected).abs() < 1e-8, "{m}x{n} run {run}: ‖PE − UVᵀ‖ {distance} vs {expected}");
        }
    }
}

#[test]
fn polar_express_in_bf16_stays_near_the_exact_one_and_finite() {
    for (m, n) in [(6, 10), (16, 16), (24, 9)] {
        let x = random(2, m, n, (m + n) as u64).to_dtype(DType::F32).unwrap();
        let exact: Vec<f64> = polar_express(&x.to_dtype(DType::F64).unwrap(), 5, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (name, out) in [
            ("cpu", polar_express(&x, 5, true).unwrap()),
            (
                "tensor ops",
                orthogonalize_tensors(&x, &Iteration { coefficients: schedule(5), eps: 1e-8, bf16: true }).unwrap(),
            ),
        ] {
            let values: Vec<f64> = out.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                values.iter().all(|v| v.is_finite() && *v == grokstack::kernels::round::f64_to_bf16(*v)),
                "{name}: every value a finite bf16"
            );
            let diff = values.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 0.1, "{m}x{n} {name}: bf16 differs from exact by {diff}");
            assert!(diff > 0.0, "{m}x{n} {name}: bf16 rounding changes something");
        }
    }
}

#[test]
fn polar_express_on_the_cpu_matches_the_tensor_ops() {
    let iteration = Iteration { coefficients: schedule(5), eps: 1e-8, bf16: false };
    for (m, n) in [(6, 10), (8, 8), (12, 5)] {
        let x = random(4, m, n, (m * 7 + n) as u64);
        let values = |t: Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
        let (cpu, tensors) =
            (values(orthogonalize(&x, &iteration).unwrap()), values(orthogonalize_tensors(&x, &iteration).unwrap()));
        assert!(common::max_rel_diff(&cpu, &tensors) < 1e-9, "{m}x{n}: CPU vs tensor ops");
    }
}

#[test]
fn scion_groups_follow_the_fork() {
    for (input, want) in [
        ("embedding", vec![Lmo::ColNorm, Lmo::Spectral, Lmo::Spectral, Lmo::Sign]),
        ("two_hot", vec![Lmo::ColNorm, Lmo::Spectral, Lmo::Sign]),
    ] {
        let runs = common::runs(common::TINY, &[&format!("model.input={input}"), "model.hidden=[5, 4]"]);
        let model = grokstack::models::Model::init(
            &runs[0].config.arch(),
            &[0],
            grokstack::config::Precision::F32,
            &Device::Cpu,
        )
        .unwrap();
        let got: Vec<Lmo> = model.params.iter().map(|p| Lmo::of(p).unwrap()).collect();
        assert_eq!(got, want, "{input}");
    }
}

fn grads(stack: &Stack) -> Vec<Tensor> {
    let (logits, cache) = stack.model.forward(&stack.train.rows, true, None).unwrap();
    let d = grokstack::kernels::loss::grad(grokstack::config::Loss::Softmax, &logits, &stack.train.labels).unwrap();
    stack.model.backward(&stack.train.rows, &cache, &d).unwrap()
}

fn values3(t: &Tensor) -> Vec<Vec<Vec<f64>>> {
    t.to_dtype(DType::F64).unwrap().to_vec3().unwrap()
}

/// Two steps of three runs (unconstrained; constrained; constrained with all_reg) against the
/// fork's update written out per group. lr differs per run, m = 0.2, radii 1.5 and 7.
fn check_two_steps(input: &str) {
    let grid = r#"
[grid]
case = [
  { "train.scion_constrained" = false, "train.all_reg" = false, "train.lr" = 0.05 },
  { "train.scion_constrained" = true, "train.all_reg" = false, "train.lr" = 0.1 },
  { "train.scion_constrained" = true, "train.all_reg" = true, "train.lr" = 0.2 },
]
"#;
    let runs = common::runs(
        &format!("{}{grid}", common::TINY),
        &[
            "train.optimizer=scion",
            "train.dtype=f64",
            "train.polar_dtype=f32",
            "train.scion_momentum=0.2",
            "train.scion_radius=1.5",
            "train.scion_sign_radius=7",
            &format!("model.input={input}"),
            "seeds=[4]",
        ],
    );
    let lr = [0.05, 0.1, 0.2];
    // Is each group decayed by (1 − lr) in each run: hidden and output in runs 1 and 2, the
    // input side (ColNorm) only in run 2 (all_reg).
    let constrained = |lmo: Lmo, run: usize| run > 0 && (lmo != Lmo::ColNorm || run == 2);
    let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
    let lmos: Vec<Lmo> = stack.model.params.iter().map(|p| Lmo::of(p).unwrap()).collect();
    let mut buffers: Vec<Vec<Vec<Vec<f64>>>> =
        stack.model.params.iter().map(|p| values3(&p.value.zeros_like().unwrap())).collect();
    for step in 0..2 {
        let (before, g): (Vec<_>, Vec<_>) =
            (stack.model.params.iter().map(|p| values3(&p.value)).collect(), grads(&stack));
        stack.step().unwrap();
        for (i, lmo) in lmos.iter().enumerate() {
            let g = values3(&g[i]);
            let after = values3(&stack.model.params[i].value);
            for run in 0..3 {
                let d = &mut buffers[i][run];
                for (row, g_row) in d.iter_mut().zip(&g[run]) {
                    row.iter_mut().zip(g_row).for_each(|(d, g)| *d = 0.8 * *d + 0.2 * g);
                }
                let (fan_in, fan_out) = (d.len(), d[0].len());
                let direction: Vec<Vec<f64>> = match lmo {
                    Lmo::Sign => d
                        .iter()
                        .map(|row| {
                            row.iter()
                                .map(|v| 7.0 * v.signum() * f64::from(u8::from(*v != 0.0)) / fan_in as f64)
                                .collect()
                        })
                        .collect(),
                    Lmo::ColNorm => d
                        .iter()
                        .map(|row| {
                            let rms = (row.iter().map(|v| v * v).sum::<f64>() / fan_out as f64).sqrt();
                            row.iter().map(|v| 1.5 * v / (rms + 1e-8)).collect()
                        })
                        .collect(),
                    Lmo::Spectral => {
                        let t = Tensor::new(d.clone(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                        let o: Vec<Vec<f64>> =
                            polar_express(&t, 5, false).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
                        let scale = 1.5 * (fan_out as f64 / fan_in as f64).sqrt();
                        o.iter().map(|row| row.iter().map(|v| scale * v).collect()).collect()
                    }
                };
                let keep = if constrained(*lmo, run) { 1.0 - lr[run] } else { 1.0 };
                for ((w0, w1), u) in
                    before[i][run].iter().flatten().zip(after[run].iter().flatten()).zip(direction.iter().flatten())
                {
                    let want = keep * w0 - lr[run] * u;
                    assert!(
                        (w1 - want).abs() < 1e-12 * want.abs().max(1.0),
                        "{input} step {step} {lmo:?} run {run}: {w1} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn two_scion_steps_match_the_forks_update_per_group() {
    check_two_steps("embedding");
    check_two_steps("two_hot");
}

#[test]
fn a_scion_run_alone_is_bit_identical_inside_a_stack_and_bf16_stays_finite() {
    for dtype in ["bf16", "f32"] {
        let base = ["train.optimizer=scion", "metrics.lipschitz=true", "train.epochs=5"];
        let mut sets: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        sets.push(format!("train.dtype={dtype}"));
        let sets: Vec<&str> = sets.iter().map(|s| s.as_str()).collect();
        let target = common::runs(common::TINY, &[&sets[..], &["seeds=[7]", "train.lr=0.02"]].concat()).remove(0);
        let neighbours = common::runs(
            common::TINY,
            &[
                &sets[..],
                &["seeds=3", "train.lr=[0.001, 0.5]", "train.scion_constrained=[true, false]", "train.all_reg=true"],
            ]
            .concat(),
        );
        let (alone, together) = common::alone_and_stacked(target, neighbours, 2);
        assert_eq!(alone.len(), 5);
        assert_eq!(alone, together, "{dtype}: alone vs stacked");
        assert!(alone.iter().flatten().all(|v| v.is_finite()), "{dtype}: finite metrics");
    }
}

#[test]
fn scion_is_refused_for_the_transformer_naming_the_key() {
    let toml = "seeds = 1\n[model]\nkind = \"transformer\"\n[train]\noptimizer = \"scion\"\n";
    let err = grokstack::config::Sweep::parse(toml, "scion.toml", &[]).and_then(|s| s.runs()).expect_err("an error");
    let message = format!("{err:#}");
    assert!(message.contains("train.optimizer") && message.contains("scion.toml"), "{message}");
}

#[test]
fn a_nan_run_changes_no_other_run_of_polar_express() {
    let x = random(3, 8, 5, 11).to_dtype(DType::F32).unwrap();
    let nan_run = Tensor::full(f32::NAN, (1, 8, 5), &Device::Cpu).unwrap();
    let poisoned = Tensor::cat(&[x.narrow(0, 0, 1).unwrap(), nan_run, x.narrow(0, 2, 1).unwrap()], 0).unwrap();
    for bf16 in [true, false] {
        let got = values3(&polar_express(&poisoned, 5, bf16).unwrap());
        for run in [0, 2] {
            let alone = values3(&polar_express(&x.narrow(0, run, 1).unwrap(), 5, bf16).unwrap()).remove(0);
            assert_eq!(got[run], alone, "bf16 {bf16}: run {run} beside a NaN run");
        }
    }
}
