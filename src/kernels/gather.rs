//! The first layer as a gather: with two-hot input, `onehot(a) ⊕ onehot(b)` times W is the sum
//! of two rows of W; with an embedding, it is the sum of two rows of the per-operand tables
//! `E·W_a` and `E·W_b`. Either way the layer is a lookup in a table `[R, 2p, H]`, and its
//! backward is a scatter-add into that table.
//!
//! `rows` is `[R, N, 2]` (u32): row indices into the table (a, and p + b).

use super::{expect_rank3, Real};
use anyhow::Result;
use candle_core::{DType, Tensor};

crate::avx2_twin! {
    /// z[i, :] = table[pairs[i, 0], :] + table[pairs[i, 1], :] for the rows of one block.
    /// table `[V, H]`, pairs `[B, 2]` → z `[B, H]`.
    pub fn gather_rows<T>(table: &[T], pairs: &[u32], h: usize, z: &mut [T]) = gather_loop;
}

#[inline(always)]
fn gather_loop<T: Real>(table: &[T], pairs: &[u32], h: usize, z: &mut [T]) {
    for (dst, pair) in z.chunks_exact_mut(h).zip(pairs.chunks_exact(2)) {
        let first = &table[pair[0] as usize * h..][..h];
        let second = &table[pair[1] as usize * h..][..h];
        for ((d, &x), &y) in dst.iter_mut().zip(first).zip(second) {
            *d = x + y;
        }
    }
}

crate::avx2_twin! {
    /// Backward of [`gather_rows`]: d_table[pairs[i, k], :] += dz[i, :], in row order.
    /// dz `[B, H]`, pairs `[B, 2]`, d_table `[V, H]`.
    pub fn scatter_rows<T>(dz: &[T], pairs: &[u32], h: usize, d_table: &mut [T]) = scatter_loop;
}

#[inline(always)]
fn scatter_loop<T: Real>(dz: &[T], pairs: &[u32], h: usize, d_table: &mut [T]) {
    for (src, pair) in dz.chunks_exact(h).zip(pairs.chunks_exact(2)) {
        for &row in pair {
            let dst = &mut d_table[row as usize * h..][..h];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = *d + s;
            }
        }
    }
}

/// z[r, n, :] = table[r, rows[r,n,0], :] + table[r, rows[r,n,1], :] with candle ops.
/// table `[R, V, H]`, rows `[R, N, 2]` → `[R, N, H]`.
pub fn gather_pair_sum(table: &Tensor, rows: &Tensor) -> Result<Tensor> {
    let (r, v, h) = expect_rank3(table, "gather table")?;
    let n = rows.dim(1)?;
    let flat = table.reshape((r * v, h))?;
    let first = flat.index_select(&flat_rows(rows, v, 0)?, 0)?;
    let second = flat.index_select(&flat_rows(rows, v, 1)?, 0)?;
    Ok((first + second)?.reshape((r, n, h))?)
}

/// Backward of [`gather_pair_sum`]: d_table[r, rows[r,n,k], :] += dz[r, n, :].
/// dz `[R, N, H]`, rows `[R, N, 2]` → `[R, V, H]`.
pub fn scatter_pair_sum(dz: &Tensor, rows: &Tensor, v: usize) -> Result<Tensor> {
    let (r, n, h) = expect_rank3(dz, "scatter gradient")?;
    let src = dz.reshape((r * n, h))?;
    let mut table = Tensor::zeros((r * v, h), dz.dtype(), dz.device())?;
    for k in 0..2 {
        table = table.index_add(&flat_rows(rows, v, k)?, &src, 0)?;
    }
    Ok(table.reshape((r, v, h))?)
}

/// Global row indices into the table flattened to `[R·V, H]`: `[R·N]` for operand `k`.
fn flat_rows(rows: &Tensor, v: usize, k: usize) -> Result<Tensor> {
    let (r, n, _) = expect_rank3(rows, "rows")?;
    let offsets = (Tensor::arange(0u32, r as u32, rows.device())? * v as f64)?;
    let column = rows.narrow(2, k, 1)?.squeeze(2)?; // [R, N]
    Ok(column.broadcast_add(&offsets.unsqueeze(1)?)?.reshape(r * n)?)
}

/// `[R, N, 2]` row indices (a, p + b) for the examples of each run, as a u32 tensor.
pub fn pair_rows(runs: &[&[crate::data::Example]], p: usize, device: &candle_core::Device) -> Result<Tensor> {
    let n = runs.first().map_or(0, |r| r.len());
    let mut rows = Vec::with_capacity(runs.len() * n * 2);
    for examples in runs {
        for e in examples.iter() {
            rows.push(e.a);
            rows.push(p as u32 + e.b);
        }
    }
    Ok(Tensor::from_vec(rows, (runs.len(), n, 2), device)?.to_dtype(DType::U32)?)
}
