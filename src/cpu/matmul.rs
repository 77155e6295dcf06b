//! One single-threaded matrix product on row-major slices, through the `gemm` crate (the
//! GEMM candle's CPU backend uses). The CPU pass runs one per core at a time, on one run's
//! weights, so parallelism lives in the tasks and never inside a product.

use gemm::{gemm, Parallelism};

/// How an operand is stored: as the matrix itself or as its transpose (both row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Plain,
    Transposed,
}

/// c `[m, n]` = a `[m, k]` · b `[k, n]`, or c += a · b with `accumulate`.
///
/// a is stored `[m, k]` (Plain) or `[k, m]` (Transposed), and b `[k, n]` or `[n, k]`.
pub fn matmul<T: 'static + Copy + num_traits::One>(
    c: &mut [T],
    a: &[T],
    a_layout: Layout,
    b: &[T],
    b_layout: Layout,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(
        c.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "matmul: operands shorter than [{m}, {k}] · [{k}, {n}]"
    );
    // (row stride, column stride) of each operand as the product reads it.
    let (a_rs, a_cs) = match a_layout {
        Layout::Plain => (k, 1),
        Layout::Transposed => (1, m),
    };
    let (b_rs, b_cs) = match b_layout {
        Layout::Plain => (n, 1),
        Layout::Transposed => (1, k),
    };
    let one = T::one();
    // SAFETY: the assertion above keeps every index the strides reach, (m−1, k−1) of a,
    // (k−1, n−1) of b and (m−1, n−1) of c, inside its slice, and c does not alias a or b
    // (it is borrowed mutably). gemm supports f32 and f64, the only types the pass uses.
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            one,
            one,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}
