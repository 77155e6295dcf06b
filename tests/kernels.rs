//! The slice kernels of the CPU pass against the candle-ops tensor versions they replace,
//! and the fast f32 exp against f64's.

mod common;

use candle_core::{DType, Device, Tensor};
use grokstack::config::{Activation, Loss};
use grokstack::kernels::{activation, gather, loss, sum_lanes, Real};

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
                DType::F64 => in_place::<f64>(&Tensor::zeros((n, h), dtype, &Device::Cpu).unwrap(), |z| gather::gather_rows(&table.flatten_all().unwrap().to_vec1::<f64>().unwrap(), &indices, k, h, z)),
                _ => in_place::<f32>(&Tensor::zeros((n, h), dtype, &Device::Cpu).unwrap(), |z| gather::gather_rows(&table.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &indices, k, h, z)),
            };
            assert_close(&got, &expected, dtype, "gather");
            // Independently: row 0 is the sum of the table rows its indices name.
            let t = values(&table);
            let by_hand: Vec<f64> = (0..h).map(|c| indices[..k].iter().filter(|&&i| (i as usize) < v).map(|&i| t[i as usize * h + c]).sum()).collect();
            assert_close(&got[..h], &by_hand, dtype, "gather of row 0 by hand");

            let dz = random((1, n, h), 1.0, dtype);
            let expected = values(&gather::scatter_sum(&dz, &rows, v).unwrap());
            let zeros = Tensor::zeros((v, h), dtype, &Device::Cpu).unwrap();
            let got = match dtype {
                DType::F64 => in_place::<f64>(&zeros, |t| gather::scatter_rows(&dz.flatten_all().unwrap().to_vec1::<f64>().unwrap(), &indices, k, h, t)),
                _ => in_place::<f32>(&zeros, |t| gather::scatter_rows(&dz.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &indices, k, h, t)),
            };
            assert_close(&got, &expected, dtype, "scatter");
        }
    }
}

fn check_activation<T: Real>(kind: Activation, z: &Tensor, da: &Tensor) {
    let dtype = z.dtype();
    let expected_a = values(&activation::forward(kind, z).unwrap());
    let expected_d = values(&activation::derivative(kind, z).unwrap());
    assert_close(&in_place::<T>(z, |x| activation::forward_in_place(kind, x, None)), &expected_a, dtype, &format!("{kind:?} forward"));
    let mut derivative: Vec<T> = vec![T::zero(); z.elem_count()];
    let a = in_place::<T>(z, |x| activation::forward_in_place(kind, x, Some(&mut derivative)));
    assert_close(&a, &expected_a, dtype, &format!("{kind:?} forward with derivative"));
    let d: Vec<f64> = derivative.iter().map(|x| x.to_f64().unwrap()).collect();
    assert_close(&d, &expected_d, dtype, &format!("{kind:?} derivative"));
    let expected_dz = values(&(da * activation::derivative(kind, z).unwrap()).unwrap());
    assert_close(&in_place::<T>(da, |g| activation::backward_in_place(g, &derivative)), &expected_dz, dtype, &format!("{kind:?} backward"));
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
fn rows_through_slices<T: Real>(kind: Loss, logits: &Tensor, labels: &[u32]) -> (Vec<f64>, Vec<f64>) {
    let (_, n, c) = logits.dims3().unwrap();
    let scale = T::one() / T::from(n).unwrap();
    let mut sums = [0.0; loss::N_STATS];
    let grads = in_place::<T>(logits, |x| {
        for (row, &label) in x.chunks_exact_mut(c).zip(labels) {
            let stats = loss::row(kind, row, label as usize, false, Some(scale));
            sums.iter_mut().zip(stats).for_each(|(s, v)| *s += v);
        }
    });
    let mut eval_sums = [0.0; loss::N_STATS];
    in_place::<T>(logits, |x| {
        for (row, &label) in x.chunks_exact_mut(c).zip(labels) {
            let stats = loss::row(kind, row, label as usize, false, None);
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
        let one_hot = label_tensor.unsqueeze(2).unwrap().broadcast_eq(&Tensor::arange(0u32, c as u32, &Device::Cpu).unwrap().reshape((1, 1, c)).unwrap()).unwrap();
        let spiked = (&plain + (one_hot.to_dtype(dtype).unwrap() * 1e4).unwrap()).unwrap();
        for (logits, is_spiked) in [(&plain, false), (&spiked, true)] {
            for kind in [Loss::Softmax, Loss::StableMax] {
                let (stats, grads) = match dtype {
                    DType::F64 => rows_through_slices::<f64>(kind, logits, &labels),
                    _ => rows_through_slices::<f32>(kind, logits, &labels),
                };
                assert_close(&stats, &values(&loss::stats(kind, logits, &label_tensor, false).unwrap()), dtype, &format!("{kind:?} stats"));
                assert_close(&grads, &values(&loss::grad(kind, logits, &label_tensor).unwrap()), dtype, &format!("{kind:?} grad"));
                if is_spiked {
                    assert_eq!(stats[loss::STAT_ACC], 1.0, "the spiked rows are always right");
                    if kind == Loss::Softmax {
                        assert_eq!(stats[loss::STAT_COLLAPSE], 1.0, "the spiked rows' softmax collapses");
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
fn a_nan_row_has_a_nan_loss_and_is_never_correct() {
    for kind in [Loss::Softmax, Loss::StableMax] {
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
    values.extend([0.0, -0.0, 1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX, f32::MIN_POSITIVE / 3.0]);
    let mut rounded = values.clone();
    round_slice(&mut rounded);
    for (&x, &got) in values.iter().zip(&rounded) {
        let expected = half::bf16::from_f32(x).to_f32();
        assert!(got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan()), "{x:e} ({:#x}): {got:e} vs half's {expected:e}", x.to_bits());
        assert_eq!(got.to_bits(), f32_to_bf16(x).to_bits(), "the slice loop and the scalar function agree");
    }
}
