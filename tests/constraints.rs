//! The weight constraints against matrices of known singular values and hand computations,
//! and applied after every step of any optimizer without mixing runs.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::models::Place;
use grokstack::optim::constraints::{cap_rms, hardcap, msign, project, spectral_normalize};
use grokstack::optim::RunHyper;
use grokstack::train::Stack;

/// Three runs of `[m, n]` matrices with the singular values of `SIGMAS` times 1, 0.3 and 2.
const SIGMAS: [f64; 6] = [3.0, 1.8, 1.2, 0.5, 0.2, 0.05];
const RUN_SCALES: [f64; 3] = [1.0, 0.3, 2.0];

fn known(m: usize, n: usize) -> Tensor {
    let k = m.min(n);
    let data: Vec<f64> = RUN_SCALES
        .iter()
        .enumerate()
        .flat_map(|(run, scale)| {
            common::with_singular_values(
                m,
                n,
                &SIGMAS[..k].iter().map(|s| s * scale).collect::<Vec<_>>(),
                10 + run as u64,
            )
        })
        .collect();
    Tensor::from_vec(data, (3, m, n), &Device::Cpu).unwrap()
}

fn matrices(t: &Tensor) -> Vec<Vec<Vec<f64>>> {
    t.to_dtype(DType::F64).unwrap().to_vec3().unwrap()
}

const SHAPES: [(usize, usize); 3] = [(6, 9), (6, 6), (9, 6)];

#[test]
fn hardcap_caps_every_singular_value_at_beta_and_leaves_smaller_ones() {
    let beta = [1.0, 0.4, 7.0]; // run 2's σ_max is 6 ≤ 7: unchanged
    for (m, n) in SHAPES {
        let w = known(m, n);
        let capped = hardcap(&w, &beta).unwrap();
        for (run, (before, after)) in matrices(&w).iter().zip(matrices(&capped)).enumerate() {
            let got = common::singular_values(&after);
            for (g, s) in got.iter().zip(SIGMAS.iter().map(|s| s * RUN_SCALES[run])) {
                assert!((g - s.min(beta[run])).abs() < 1e-9, "{m}x{n} run {run}: σ {g} vs min(β, {s})");
            }
            if run == 2 {
                let diff =
                    before.iter().flatten().zip(after.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                assert!(diff < 1e-10, "{m}x{n}: σ_max ≤ β must leave W unchanged, moved {diff:e}");
            }
        }
        // In f32 no singular value ends above β either.
        let capped32 = hardcap(&w.to_dtype(DType::F32).unwrap(), &beta).unwrap();
        for (run, after) in matrices(&capped32).iter().enumerate() {
            assert!(common::singular_values(after)[0] <= beta[run] * (1.0 + 1e-5), "{m}x{n} run {run} f32");
        }
    }
}

#[test]
fn spectral_normalize_divides_by_sigma_max_above_one_only() {
    for (m, n) in SHAPES {
        let w = known(m, n);
        let normalized = spectral_normalize(&w).unwrap();
        for (run, (before, after)) in matrices(&w).iter().zip(matrices(&normalized)).enumerate() {
            let top = SIGMAS[0] * RUN_SCALES[run];
            let divisor = top.max(1.0); // run 1's σ_max is 0.9: unchanged
            for (a, b) in before.iter().flatten().zip(after.iter().flatten()) {
                assert!((b - a / divisor).abs() < 1e-9, "{m}x{n} run {run}: {b} vs {a}/{divisor}");
            }
            assert!(common::singular_values(&after)[0] <= 1.0 + 1e-9, "{m}x{n} run {run}: σ_max ≤ 1");
        }
    }
}

#[test]
fn stiefel_gives_all_singular_values_one() {
    for (m, n) in SHAPES {
        for dtype in [DType::F64, DType::F32] {
            let w = known(m, n).to_dtype(dtype).unwrap();
            for (run, after) in matrices(&msign(&w).unwrap()).iter().enumerate() {
                let tol = if dtype == DType::F64 { 1e-9 } else { 1e-5 };
                assert!(
                    common::singular_values(after).iter().all(|s| (s - 1.0).abs() < tol),
                    "{m}x{n} {dtype:?} run {run}: {:?}",
                    common::singular_values(after)
                );
            }
        }
    }
}

fn hyper_of(runs: usize, beta: &[f64], lambda: &[f64], cap: &[f64]) -> RunHyper {
    let configs = common::runs(common::TINY, &[&format!("seeds={runs}")]);
    let mut hyper = RunHyper::from_configs(configs.iter().map(|r| &r.config));
    (hyper.constraint_beta, hyper.constraint_lambda, hyper.embed_rms_cap) =
        (beta.to_vec(), lambda.to_vec(), cap.to_vec());
    hyper
}

#[test]
fn clipped_weight_decay_on_a_diagonal_matrix_by_hand() {
    // W = diag(3, −2, 0.5), β = 1: hardcap(W) = diag(1, −1, 0.5), and (1 − λ)·W + λ·hardcap(W)
    // with λ = 0.25 is diag(2.5, −1.75, 0.5); with λ = 1 (second run) diag(1, −1, 0.5).
    let w = Tensor::new(&[[[3.0f64, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, 0.5]]; 2], &Device::Cpu).unwrap();
    let hyper = hyper_of(2, &[1.0, 1.0], &[0.25, 1.0], &[0.0, 0.0]);
    let got = matrices(&project(grokstack::config::Constraint::SpectralClippedWd, &w, &hyper).unwrap());
    for (run, diagonal) in [[2.5, -1.75, 0.5], [1.0, -1.0, 0.5]].iter().enumerate() {
        for (i, row) in got[run].iter().enumerate() {
            for (j, &value) in row.iter().enumerate() {
                let want = if i == j { diagonal[i] } else { 0.0 };
                assert!((value - want).abs() < 1e-9, "run {run} [{i}][{j}]: {value} vs {want}");
            }
        }
    }
}

#[test]
fn the_embedding_cap_scales_only_vectors_above_it() {
    // Rows [3, 4] (RMS √12.5) and [0.1, −0.2] (RMS below 1); run 1 has no cap (0).
    let e = Tensor::new(&[[[3.0f64, 4.0], [0.1, -0.2]]; 2], &Device::Cpu).unwrap();
    let got = matrices(&cap_rms(&e, &[1.0, 0.0]).unwrap());
    let rms = 12.5f64.sqrt();
    assert!((got[0][0][0] - 3.0 / rms).abs() < 1e-12 && (got[0][0][1] - 4.0 / rms).abs() < 1e-12, "{:?}", got[0][0]);
    assert_eq!(got[0][1], vec![0.1, -0.2]);
    assert_eq!(got[1], vec![vec![3.0, 4.0], vec![0.1, -0.2]]);
}

const CONSTRAINTS: [&str; 4] = ["spectral_normalize", "spectral_hardcap", "spectral_clipped_wd", "stiefel"];

#[test]
fn every_step_ends_inside_the_constraint() {
    for optimizer in ["adamw", "muon", "scion"] {
        let runs = common::runs(
            common::TINY,
            &[
                &format!("train.optimizer={optimizer}"),
                "train.dtype=f64",
                "train.constraint=spectral_hardcap",
                "train.constraint_beta=[0.3, 0.5]",
                "train.embed_rms_cap=0.5",
                "train.lr=0.1",
                "seeds=1",
            ],
        );
        let mut stack = Stack::new(runs, &Device::Cpu).unwrap();
        for _ in 0..3 {
            stack.step().unwrap();
        }
        for param in &stack.model.params {
            for (run, matrix) in matrices(&param.value).iter().enumerate() {
                match param.group.place {
                    place if place.is_linear_layer() => {
                        let beta = [0.3, 0.5][run];
                        assert!(
                            common::singular_values(matrix)[0] <= beta + 1e-9,
                            "{optimizer} {} run {run}",
                            param.name
                        );
                    }
                    Place::Embedding => {
                        for row in matrix {
                            let rms = (row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64).sqrt();
                            assert!(rms <= 0.5 + 1e-12, "{optimizer}: embedding RMS {rms}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn every_constraint_is_bit_identical_alone_and_in_a_stack_and_finite_in_bf16() {
    for constraint in CONSTRAINTS {
        for dtype in ["bf16", "f32"] {
            let sets = [
                format!("train.constraint={constraint}"),
                format!("train.dtype={dtype}"),
                "train.optimizer=muon".into(),
                "train.epochs=4".into(),
                "train.embed_rms_cap=1".into(),
            ];
            let sets: Vec<&str> = sets.iter().map(|s| s.as_str()).collect();
            let target = common::runs(common::TINY, &[&sets[..], &["seeds=[7]", "train.lr=0.05"]].concat()).remove(0);
            let neighbours = common::runs(
                common::TINY,
                &[
                    &sets[..],
                    &[
                        "seeds=2",
                        "train.lr=[0.001, 1e3]",
                        "train.constraint_beta=[0.5, 2]",
                        "train.constraint_lambda=0.9",
                        "train.embed_rms_cap=[0, 0.3]",
                    ],
                ]
                .concat(),
            );
            let (alone, together) = common::alone_and_stacked(target, neighbours, 3);
            assert_eq!(alone.len(), 4);
            assert_eq!(alone, together, "{constraint} {dtype}: alone vs stacked");
            assert!(alone.iter().flatten().all(|v| v.is_finite()), "{constraint} {dtype}: finite");
        }
    }
}

#[test]
fn constraints_are_refused_where_they_cannot_apply_naming_the_key() {
    for (toml, key) in [
        ("seeds = 1\n[model]\nkind = \"transformer\"\n[train]\nconstraint = \"stiefel\"\n", "train.constraint"),
        ("seeds = 1\n[model]\ninput = \"two_hot\"\n[train]\nembed_rms_cap = 1.0\n", "train.embed_rms_cap"),
        ("seeds = 1\n[train]\nconstraint_lambda = 1.5\n", "train.constraint_lambda"),
    ] {
        let err = grokstack::config::Sweep::parse(toml, "c.toml", &[]).and_then(|s| s.runs()).expect_err("an error");
        let message = format!("{err:#}");
        assert!(message.contains(key) && message.contains("c.toml"), "{message}");
    }
}

#[test]
fn a_nan_run_changes_no_other_run_under_any_constraint() {
    use grokstack::config::Constraint;
    let w = known(6, 9);
    let nan_run = Tensor::full(f64::NAN, (1, 6, 9), &Device::Cpu).unwrap();
    let poisoned = Tensor::cat(&[w.narrow(0, 0, 1).unwrap(), nan_run, w.narrow(0, 2, 1).unwrap()], 0).unwrap();
    let hyper = hyper_of(3, &[1.0, 1.0, 2.0], &[0.5, 0.5, 0.25], &[1.0, 1.0, 0.5]);
    let alone = |run: usize, kind: Constraint| -> Vec<Vec<f64>> {
        let one =
            hyper_of(1, &[hyper.constraint_beta[run]], &[hyper.constraint_lambda[run]], &[hyper.embed_rms_cap[run]]);
        matrices(&project(kind, &w.narrow(0, run, 1).unwrap(), &one).unwrap()).remove(0)
    };
    for kind in
        [Constraint::SpectralNormalize, Constraint::SpectralHardcap, Constraint::SpectralClippedWd, Constraint::Stiefel]
    {
        let got = matrices(&project(kind, &poisoned, &hyper).unwrap());
        for run in [0, 2] {
            assert_eq!(got[run], alone(run, kind), "{kind:?}: run {run} beside a NaN run");
            assert!(got[run].iter().flatten().all(|v| v.is_finite()), "{kind:?}: run {run} finite");
        }
    }
    let capped = matrices(&cap_rms(&poisoned, &hyper.embed_rms_cap).unwrap());
    assert_eq!(capped[0], matrices(&cap_rms(&w.narrow(0, 0, 1).unwrap(), &[1.0]).unwrap())[0]);
    assert_eq!(capped[2], matrices(&cap_rms(&w.narrow(0, 2, 1).unwrap(), &[0.5]).unwrap())[0]);
}
