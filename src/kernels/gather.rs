//! The first layer as a gather: a row's input (two-hot operands, an embedding's per-operand
//! products, or a 0/1 bit vector) times W is the sum of some rows of a table `[R, V, H]`, and
//! its backward is a scatter-add into that table.
//!
//! `rows` is `[R, N, K]` (u32): K table indices per row; an index ≥ V (a bit that is not
//! set) names no row and adds nothing.

use super::{expect_rank3, Real};
use anyhow::Result;
use candle_core::Tensor;

crate::avx2_twin! {
    /// z[i, :] = Σ_k table[indices[i, k], :] for the rows of one block (indices ≥ V skipped).
    /// table `[V, H]`, indices `[B, K]` → z `[B, H]`.
    pub fn gather_rows<T>(table: &[T], indices: &[u32], k: usize, h: usize, z: &mut [T]) = gather_loop;
}

#[inline(always)]
fn gather_loop<T: Real>(table: &[T], indices: &[u32], k: usize, h: usize, z: &mut [T]) {
    let v = table.len() / h;
    for (dst, row) in z.chunks_exact_mut(h).zip(indices.chunks_exact(k)) {
        if let [a, b] = *row {
            // Operand pairs, the common case: both rows always exist.
            let (first, second) = (&table[a as usize * h..][..h], &table[b as usize * h..][..h]);
            for ((d, &x), &y) in dst.iter_mut().zip(first).zip(second) {
                *d = x + y;
            }
        } else {
            dst.fill(T::zero());
            for &index in row.iter().filter(|&&i| (i as usize) < v) {
                for (d, &x) in dst.iter_mut().zip(&table[index as usize * h..][..h]) {
                    *d += x;
                }
            }
        }
    }
}

crate::avx2_twin! {
    /// Backward of [`gather_rows`]: d_table[indices[i, k], :] += dz[i, :], in row order.
    /// dz `[B, H]`, indices `[B, K]`, d_table `[V, H]`.
    pub fn scatter_rows<T>(dz: &[T], indices: &[u32], k: usize, h: usize, d_table: &mut [T]) = scatter_loop;
}

#[inline(always)]
fn scatter_loop<T: Real>(dz: &[T], indices: &[u32], k: usize, h: usize, d_table: &mut [T]) {
    let v = d_table.len() / h;
    for (src, row) in dz.chunks_exact(h).zip(indices.chunks_exact(k)) {
        for &index in row.iter().filter(|&&i| (i as usize) < v) {
            let dst = &mut d_table[index as usize * h..][..h];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    }
}

/// z[r, n, :] = Σ_k table[r, rows[r,n,k], :] with candle ops (indices ≥ V add nothing).
/// table `[R, V, H]`, rows `[R, N, K]` → `[R, N, H]`.
pub fn gather_sum(table: &Tensor, rows: &Tensor) -> Result<Tensor> {
    let (r, v, h) = expect_rank3(table, "gather table")?;
    let (_, n, k) = expect_rank3(rows, "rows")?;
    // A zero row V at the end of each run's table stands for "no row".
    let padded = Tensor::cat(&[table, &Tensor::zeros((r, 1, h), table.dtype(), table.device())?], 1)?;
    let flat = padded.reshape((r * (v + 1), h))?;
    let mut sum = flat.index_select(&flat_rows(rows, v, 0)?, 0)?;
    for slot in 1..k {
        sum = (sum + flat.index_select(&flat_rows(rows, v, slot)?, 0)?)?;
    }
    Ok(sum.reshape((r, n, h))?)
}

/// Backward of [`gather_sum`]: d_table[r, v, :] = Σ over (n, k) with rows[r,n,k] = v of
/// dz[r, n, :], as one batched matmul countsᵀ·dz, where counts[r, n, v] is how many of row n's
/// K indices are v (indices ≥ V count nowhere). Not candle's index_add: its CUDA kernel gives
/// each of only H threads all R·N indices to walk in turn, which made this one op most of a
/// GPU epoch. The counts are small integers, exact in every dtype, so each product is exact.
/// dz `[R, N, H]`, rows `[R, N, K]` → `[R, V, H]`.
pub fn scatter_sum(dz: &Tensor, rows: &Tensor, v: usize) -> Result<Tensor> {
    expect_rank3(dz, "scatter gradient")?;
    expect_rank3(rows, "rows")?;
    let values = Tensor::arange(0u32, v as u32, rows.device())?.reshape((1, 1, 1, v))?;
    let counts = rows.unsqueeze(3)?.broadcast_eq(&values)?.to_dtype(dz.dtype())?.sum(2)?; // [R, N, V]
    Ok(counts.t()?.matmul(dz)?) // [R, V, N]·[R, N, H] → [R, V, H]
}

/// Global row indices into the tables padded to V + 1 rows and flattened to `[R·(V+1), H]`:
/// `[R·N]` for slot `k`, every index ≥ V sent to its run's zero row V.
fn flat_rows(rows: &Tensor, v: usize, k: usize) -> Result<Tensor> {
    let (r, n, _) = expect_rank3(rows, "rows")?;
    let offsets = (Tensor::arange(0u32, r as u32, rows.device())? * (v + 1) as f64)?;
    let column = rows.narrow(2, k, 1)?.squeeze(2)?.minimum(v as u32)?; // [R, N]
    Ok(column.broadcast_add(&offsets.unsqueeze(1)?)?.reshape(r * n)?)
}
