//! The slice kernels of the CPU pass against the candle-ops tensor versions they replace,
//! the fast f32 exp against f64's, and the properties of sparsemax (proptest).

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::config::{Activation, Loss};
use grokstack::kernels::{activation, gather, loss, sum_lanes, Real};
use proptest::prelude::*;

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

/// Largest difference relative to the largest expected value: gradients contain differences
/// of nearly equal terms whose own relative error in f32 says nothing about the kernel.
fn assert_close(got: &[f64], expected: &[f64], dtype: DType, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    let tol = if dtype == DType::F64 { 1e-12 } else { 2e-6 };
    let scale = expected.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    let diff = got.iter().zip(expected).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale;
    assert!(diff < tol, "{what} ({dtype:?}): slice kernel vs tensor ops differ by {diff:e} of the largest value");
}

fn random(shape: (usize, usize, usize), scale: f64, dtype: DType) -> Tensor {
    Tensor::randn(0f64, scale, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

/// Table indices `[r, n, k]` in [0, v), or with `none` in [0, v] where v names no row.
fn random_rows(r: usize, n: usize, k: usize, v: usize, none: bool) -> Tensor {
    let range = if none { v + 1 } else { v };
    let rows: Vec<u32> = (0..r * n * k).map(|i| ((i * 7919 + i / 3) % range) as u32).collect();
    Tensor::from_vec(rows, (r, n, k), &Device::Cpu).unwrap()
}

/// A slice kernel `f` applied in place to a copy of `t`'s values, in `t`'s dtype.
fn in_place<T: Real>(t: &Tensor, f: impl FnOnce(&mut [T])) -> Vec<f64> {
    let mut data: Vec<T> = t.flatten_all().unwrap().to_vec1().unwrap();
    f(&mut data);
    data.iter().map(|x| x.to_f64().unwrap()).collect()
}

#[test]
fn gather_and_scatter() {
    let (v, n, h) = (10, 37, 6);
    // Operand pairs (2 indices, always a row) and bit strings (5 indices, some naming no row).
    for (k, none) in [(2, false), (5, true)] {
        let rows = random_rows(1, n, k, v, none);
        let indices: Vec<u32> = rows.flatten_all().unwrap().to_vec1().unwrap();
        for dtype in [DType::F64, DType::F32] {
            let table = random((1, v, h), 1.0, dtype);
            let expected = values(&gather::gather_sum(&table, &rows).unwrap());
            let got = match dtype {
                DType::F64 => in_place::<f64>(&Tensor::zeros((n, h), dtype, &Device::Cpu).unwrap(), |z| {
                    gather::gather_rows(&table.flatten_all().unwrap().to_vec1::<f64>().unwrap(), &indices, k, h, z)
                }),
                _ => in_place::<f32>(&Tensor::zeros((n, h), dtype, &Device::Cpu).unwrap(), |z| {
                    gather::gather_rows(&table.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &indices, k, h, z)
                }),
            };
            assert_close(&got, &expected, dtype, "gather");
            // Independently: row 0 is the sum of the table rows its indices name.
            let t = values(&table);
            let by_hand: Vec<f64> = (0..h)
                .map(|c| indices[..k].iter().filter(|&&i| (i as usize) < v).map(|&i| t[i as usize * h + c]).sum())
                .collect();
            assert_close(&got[..h], &by_hand, dtype, "gather of row 0 by hand");

            let dz = random((1, n, h), 1.0, dtype);
            let expected = values(&gather::scatter_sum(&dz, &rows, v).unwrap());
            let zeros = Tensor::zeros((v, h), dtype, &Device::Cpu).unwrap();
            let got = match dtype {
                DType::F64 => in_place::<f64>(&zeros, |t| {
                    gather::scatter_rows(&dz.flatten_all().unwrap().to_vec1::<f64>().unwrap(), &indices, k, h, t)
                }),
                _ => in_place::<f32>(&zeros, |t| {
                    gather::scatter_rows(&dz.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &indices, k, h, t)
                }),
            };
            assert_close(&got, &expected, dtype, "scatter");
        }
    }
}

fn check_activation<T: Real>(kind: Activation, z: &Tensor, da: &Tensor) {
    let dtype = z.dtype();
    let expected_a = values(&activation::forward(kind, z).unwrap());
    let expected_d = values(&activation::derivative(kind, z).unwrap());
    assert_close(
        &in_place::<T>(z, |x| activation::forward_in_place(kind, x, None)),
        &expected_a,
        dtype,
        &format!("{kind:?} forward"),
    );
    let mut derivative: Vec<T> = vec![T::zero(); z.elem_count()];
    let a = in_place::<T>(z, |x| activation::forward_in_place(kind, x, Some(&mut derivative)));
    assert_close(&a, &expected_a, dtype, &format!("{kind:?} forward with derivative"));
    let d: Vec<f64> = derivative.iter().map(|x| x.to_f64().unwrap()).collect();
    assert_close(&d, &expected_d, dtype, &format!("{kind:?} derivative"));
    let expected_dz = values(&(da * activation::derivative(kind, z).unwrap()).unwrap());
    assert_close(
        &in_place::<T>(da, |g| activation::backward_in_place(g, &derivative)),
        &expected_dz,
        dtype,
        &format!("{kind:?} backward"),
    );
}

#[test]
fn activations_forward_and_backward() {
    // 3·67 values: not a multiple of the vector width, so the loops' tails run too.
    for kind in [Activation::Relu, Activation::Gelu, Activation::Tanh] {
        let (z, da) = (random((3, 67, 1), 2.5, DType::F64), random((3, 67, 1), 1.0, DType::F64));
        check_activation::<f64>(kind, &z, &da);
        check_activation::<f32>(kind, &z.to_dtype(DType::F32).unwrap(), &da.to_dtype(DType::F32).unwrap());
    }
}

/// Statistics and gradient of every row through `loss::row`, as `[4]` means and `[N·C]`.
fn rows_through_slices<T: Real>(kind: Loss, logits: &Tensor, labels: &[u32], bf16: bool) -> (Vec<f64>, Vec<f64>) {
    let (_, n, c) = logits.dims3().unwrap();
    let scale = T::one() / T::from(n).unwrap();
    let mut sums = [0.0; loss::N_STATS];
    let grads = in_place::<T>(logits, |x| {
        for (row, &label) in x.chunks_exact_mut(c).zip(labels) {
            let stats = loss::row(kind, row, label as usize, bf16, Some(scale));
            sums.iter_mut().zip(stats).for_each(|(s, v)| *s += v);
        }
    });
    let mut eval_sums = [0.0; loss::N_STATS];
    in_place::<T>(logits, |x| {
        for (row, &label) in x.chunks_exact_mut(c).zip(labels) {
            let stats = loss::row(kind, row, label as usize, bf16, None);
            eval_sums.iter_mut().zip(stats).for_each(|(s, v)| *s += v);
        }
    });
    assert_eq!(sums, eval_sums, "{kind:?}: statistics do not depend on whether the gradient is computed");
    (sums.iter().map(|s| s / n as f64).collect(), grads)
}

#[test]
fn losses_statistics_and_gradients() {
    let (n, c) = (23, 13);
    let labels: Vec<u32> = (0..n).map(|i| ((i * 31 + 5) % c) as u32).collect();
    let label_tensor = Tensor::from_vec(labels.clone(), (1, n), &Device::Cpu).unwrap();
    for dtype in [DType::F64, DType::F32] {
        let plain = random((1, n, c), 3.0, dtype);
        // Large label logits make every softmax collapse (sum exactly 1) and every loss 0.
        let one_hot = label_tensor
            .unsqueeze(2)
            .unwrap()
            .broadcast_eq(&Tensor::arange(0u32, c as u32, &Device::Cpu).unwrap().reshape((1, 1, c)).unwrap())
            .unwrap();
        let spiked = (&plain + (one_hot.to_dtype(dtype).unwrap() * 1e4).unwrap()).unwrap();
        for (logits, is_spiked) in [(&plain, false), (&spiked, true)] {
            for kind in [Loss::Softmax, Loss::StableMax, Loss::Sparsemax] {
                let (stats, grads) = match dtype {
                    DType::F64 => rows_through_slices::<f64>(kind, logits, &labels, false),
                    _ => rows_through_slices::<f32>(kind, logits, &labels, false),
                };
                assert_close(
                    &stats,
                    &values(&loss::stats(kind, logits, &label_tensor, false).unwrap()),
                    dtype,
                    &format!("{kind:?} stats"),
                );
                assert_close(
                    &grads,
                    &values(&loss::grad(kind, logits, &label_tensor).unwrap()),
                    dtype,
                    &format!("{kind:?} grad"),
                );
                if is_spiked {
                    assert_eq!(stats[loss::STAT_ACC], 1.0, "the spiked rows are always right");
                    if kind != Loss::StableMax {
                        assert_eq!(stats[loss::STAT_COLLAPSE], 1.0, "{kind:?}: the spiked rows collapse");
                        assert_eq!(stats[loss::STAT_ZERO_TERMS], 1.0, "and their losses are exactly 0");
                    }
                } else {
                    assert!(stats[loss::STAT_COLLAPSE] < 1.0 && stats[loss::STAT_ACC] < 1.0);
                }
            }
        }
    }
}

#[test]
fn the_loss_kept_in_bf16_matches_the_tensor_ops() {
    // f64 logits only: f32 sums in another order would sometimes round to the neighbouring bf16.
    let (n, c) = (31, 11);
    let labels: Vec<u32> = (0..n).map(|i| ((i * 7 + 2) % c) as u32).collect();
    let label_tensor = Tensor::from_vec(labels.clone(), (1, n), &Device::Cpu).unwrap();
    let logits = random((1, n, c), 2.0, DType::F64);
    for kind in [Loss::Softmax, Loss::StableMax, Loss::Sparsemax] {
        let (stats, _) = rows_through_slices::<f64>(kind, &logits, &labels, true);
        assert_close(
            &stats,
            &values(&loss::stats(kind, &logits, &label_tensor, true).unwrap()),
            DType::F64,
            &format!("{kind:?} stats, bf16 loss"),
        );
    }
}

/// One row through `loss::row` in f64: (loss, sparsemax p = gradient + onehot(label), stats).
fn sparsemax_row(z: &[f64], label: usize) -> (f64, Vec<f64>, [f64; loss::N_STATS]) {
    let mut p = z.to_vec();
    let stats = loss::row(Loss::Sparsemax, &mut p, label, false, Some(1.0));
    p[label] += 1.0;
    (stats[loss::STAT_LOSS], p, stats)
}

/// Sparsemax and its loss written apart from both passes, without sorting or shifting: j is
/// in the support when 1 + k_j·z_j > Σ_{z_i ≥ z_j} z_i with k_j = #{i : z_i ≥ z_j}.
fn sparsemax_by_counting(z: &[f64], label: usize) -> (f64, Vec<f64>) {
    let support: Vec<f64> = z
        .iter()
        .copied()
        .filter(|&zj| {
            let above = z.iter().filter(|&&zi| zi >= zj);
            1.0 + above.clone().count() as f64 * zj > above.sum::<f64>()
        })
        .collect();
    let tau = (support.iter().sum::<f64>() - 1.0) / support.len() as f64;
    let loss = -z[label] + 0.5 * support.iter().map(|zj| zj * zj - tau * tau).sum::<f64>() + 0.5;
    (loss, z.iter().map(|zj| (zj - tau).max(0.0)).collect())
}

/// A logit row of 1 to 40 classes, from nearly uniform to nearly one-hot, shifted anywhere,
/// and a label.
fn logit_row() -> impl Strategy<Value = (Vec<f64>, usize)> {
    (1usize..40, prop::sample::select(vec![0.1, 1.0, 3.0, 30.0]), -50.0f64..50.0).prop_flat_map(|(c, spread, shift)| {
        (prop::collection::vec((-1.0f64..1.0).prop_map(move |v| shift + spread * v), c), 0..c)
    })
}

/// Whether `row` with the label's logit at `label` gives a zero sparsemax loss, a one-hot
/// sparsemax, a zero gradient and the matching statistics, in `T` and with the loss in bf16.
fn check_label_wins<T: Real + std::fmt::Debug>(row: &[T], label: usize) {
    let as_f64 = |v: &T| v.to_f64().unwrap();
    let runner_up =
        row.iter().enumerate().filter(|&(j, _)| j != label).map(|(_, v)| as_f64(v)).fold(f64::NEG_INFINITY, f64::max);
    assert!(as_f64(&row[label]) - runner_up >= 1.0, "the test wants the label to win by at least 1");
    for bf16 in [false, true] {
        let mut x = row.to_vec();
        let stats = loss::row(Loss::Sparsemax, &mut x, label, bf16, Some(T::one()));
        assert_eq!(stats, [0.0, 1.0, 1.0, 1.0], "loss, correct, collapsed, zero terms of {row:?}");
        assert!(x.iter().all(|g| *g == T::zero()), "the gradient of {row:?} is exactly 0: {x:?}");
    }
}

proptest! {
    #[test]
    fn sparsemax_matches_a_sparsemax_by_counting((z, label) in logit_row()) {
        let (got_loss, p, stats) = sparsemax_row(&z, label);
        let (loss, expected) = sparsemax_by_counting(&z, label);
        let scale = 1.0 + z.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in p.iter().zip(&expected) {
            prop_assert!((a - b).abs() <= 1e-12 * scale, "p {p:?} vs {expected:?}");
        }
        prop_assert!((got_loss - loss).abs() <= 1e-12 * scale * scale, "loss {got_loss} vs {loss}");
        prop_assert!(got_loss >= 0.0, "loss {got_loss} < 0");
        let total = p.iter().sum::<f64>();
        prop_assert!(p.iter().all(|&v| v >= 0.0) && (total - 1.0).abs() <= 1e-12 * z.len() as f64, "p {p:?}");
        let support = p.iter().filter(|&&v| v > 0.0).count();
        prop_assert_eq!(stats[loss::STAT_COLLAPSE], if support == 1 { 1.0 } else { 0.0 });
        prop_assert_eq!(stats[loss::STAT_ZERO_TERMS], if got_loss == 0.0 { 1.0 } else { 0.0 });

        // The same row in f32 and with the loss kept in bf16.
        let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let mut x = z32.clone();
        let loss32 = loss::row(Loss::Sparsemax, &mut x, label, false, None)[loss::STAT_LOSS];
        prop_assert!((loss32 - loss).abs() <= 1e-5 * scale * scale, "f32 loss {loss32} vs {loss}");
        let mut x = z.clone();
        let loss_bf16 = loss::row(Loss::Sparsemax, &mut x, label, true, None)[loss::STAT_LOSS];
        prop_assert_eq!(loss_bf16, loss_bf16.round_bf16(), "a bf16 value");
        // E = Σ_S p_j (z_j + τ) ∈ [−2, 0) and the loss are each rounded once.
        prop_assert!((loss_bf16 - got_loss).abs() <= 2f64.powi(-8) * (1.0 + got_loss.abs()), "bf16 loss {loss_bf16} vs \
            {got_loss}");
    }

    #[test]
    fn sparsemax_gradient_matches_finite_differences((z, label) in logit_row()) {
        // The loss is quadratic while the support stays, so central differences are exact
        // there but for rounding; coordinates whose step changes the support are skipped.
        let h = 1e-5;
        let (_, p, _) = sparsemax_row(&z, label);
        let support = |p: &[f64]| p.iter().map(|&v| v > 0.0).collect::<Vec<_>>();
        let scale = 1.0 + z.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..z.len() {
            let at = |delta: f64| {
                let mut shifted = z.clone();
                shifted[i] += delta;
                sparsemax_row(&shifted, label)
            };
            let ((up, p_up, _), (down, p_down, _)) = (at(h), at(-h));
            if support(&p_up) != support(&p) || support(&p_down) != support(&p) {
                continue;
            }
            let numeric = (up - down) / (2.0 * h);
            let analytic = p[i] - if i == label { 1.0 } else { 0.0 };
            prop_assert!((numeric - analytic).abs() <= 1e-6 * scale * scale, "d/dz[{i}]: {analytic} vs finite \
                difference {numeric}");
        }
    }

    #[test]
    fn sparsemax_loss_is_zero_when_the_label_wins_by_more_than_one((z, label) in logit_row(), margin in 1.0f64..100.0) {
        let mut z = z;
        let others = z.iter().enumerate().filter(|&(j, _)| j != label).map(|(_, &v)| v);
        z[label] = others.fold(f64::NEG_INFINITY, f64::max).max(-1e3) + margin;
        check_label_wins::<f64>(&z, label);
        // In f32 the rounded logits may win by a hair less than 1: then the margin goes up.
        let mut z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let others = z32.iter().enumerate().filter(|&(j, _)| j != label).map(|(_, &v)| v);
        let runner_up = others.fold(f32::NEG_INFINITY, f32::max);
        while (z32[label] as f64) - (runner_up as f64) < 1.0 {
            z32[label] = z32[label].next_up();
        }
        check_label_wins::<f32>(&z32, label);
    }
}

#[test]
fn sparsemax_edge_rows() {
    // Winning by exactly 1 still collapses; by a little less, the runner-up enters the support.
    let (loss, p, stats) = sparsemax_row(&[0.5, 1.5, -3.0], 1);
    assert_eq!((loss, p, stats), (0.0, vec![0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]));
    let (loss, p, stats) = sparsemax_row(&[0.5, 1.5 - 1.0 / 64.0, -3.0], 1);
    assert!(loss > 0.0 && p[0] > 0.0 && stats[loss::STAT_COLLAPSE] == 0.0, "{loss} {p:?} {stats:?}");
    // Another logit winning by at least 1: collapsed onto the wrong class, loss z_max − z_y.
    let (loss, p, stats) = sparsemax_row(&[4.0, 1.5, -3.0], 1);
    assert_eq!((loss, p, stats), (2.5, vec![1.0, 0.0, 0.0], [2.5, 0.0, 1.0, 0.0]));
    // Equal logits: uniform, loss ½ − 1/(2C).
    let (loss, p, _) = sparsemax_row(&[7.0; 4], 2);
    assert_eq!((loss, p), (0.375, vec![0.25; 4]));
    // One class: always one-hot, loss 0.
    assert_eq!(sparsemax_row(&[-12.0], 0).0, 0.0);
    // Spread logits: sparse.
    let (_, p, _) = sparsemax_row(&[0.0, 0.3, -2.0, 0.9, -0.5, 5.0 / 8.0], 3);
    assert_eq!(p.iter().filter(|&&v| v == 0.0).count(), 3, "{p:?}");
}

#[test]
fn a_nan_row_has_a_nan_loss_and_is_never_correct() {
    for kind in [Loss::Softmax, Loss::StableMax, Loss::Sparsemax] {
        let mut row = [0.5f32, f32::NAN, 2.0, -1.0];
        let stats = loss::row(kind, &mut row, 2, false, Some(1.0));
        assert!(stats[loss::STAT_LOSS].is_nan(), "{kind:?}: {stats:?}");
        assert_eq!(stats[loss::STAT_ACC], 0.0, "{kind:?}: a NaN row counted as correct");
    }
}

#[test]
fn fast_exp_is_within_two_ulp_of_f64_exp() {
    let mut worst = 0.0f64;
    for i in 0..=200_000 {
        let x = -87.0 + 175.0 * i as f64 / 200_000.0;
        let x32 = x as f32;
        let exact = (x32 as f64).exp();
        let got = x32.exp_fast() as f64;
        worst = worst.max((got - exact).abs() / exact);
    }
    assert!(worst < 2.0 * f32::EPSILON as f64, "exp_fast relative error {worst:e}");
    assert!(f32::NAN.exp_fast().is_nan());
    assert_eq!((-100f32).exp_fast(), 0.0);
    assert_eq!(100f32.exp_fast(), f32::INFINITY);
    assert_eq!(f32::NEG_INFINITY.exp_fast(), 0.0);
    assert_eq!(0f32.exp_fast(), 1.0);
}

#[test]
fn lane_sums_equal_the_plain_sum() {
    for len in [0, 1, 7, 8, 9, 113, 1000] {
        let x: Vec<f64> = (0..len).map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.25).collect();
        assert_eq!(sum_lanes(&x), x.iter().sum::<f64>(), "length {len}"); // quarters: exact in any order
    }
}

#[test]
fn bf16_rounding_on_the_bits_matches_half() {
    use grokstack::kernels::round::{f32_to_bf16, round_slice};
    // Every 2^-8 step of the bit patterns, plus ties, infinities, NaNs and subnormals.
    let mut values: Vec<f32> = (0..=u32::MAX / 251).map(|i| f32::from_bits(i.wrapping_mul(251))).collect();
    values.extend([
        0.0,
        -0.0,
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE / 3.0,
    ]);
    let mut rounded = values.clone();
    round_slice(&mut rounded);
    for (&x, &got) in values.iter().zip(&rounded) {
        let expected = half::bf16::from_f32(x).to_f32();
        assert!(
            got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan()),
            "{x:e} ({:#x}): {got:e} vs half's {expected:e}",
            x.to_bits()
        );
        assert_eq!(got.to_bits(), f32_to_bf16(x).to_bits(), "the slice loop and the scalar function agree");
    }
}
