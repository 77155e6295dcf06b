//! The first layer as a gather: with two-hot input, `onehot(a) ⊕ onehot(b)` times W is the sum
//! of two rows of W; with an embedding, it is the sum of two rows of the per-operand tables
//! `E·W_a` and `E·W_b`. Either way the layer is a lookup in a table `[R, 2p, H]`, and its
//! backward is a scatter-add into that table.
//!
//! `rows` is `[R, N, 2]` (u32): row indices into the table (a, and p + b).

use super::{cpu_slice, expect_rank3, use_cpu_kernel, Real};
use crate::dispatch_real;
use anyhow::Result;
use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// z[r, n, :] = table[r, rows[r,n,0], :] + table[r, rows[r,n,1], :]
/// table `[R, V, H]`, rows `[R, N, 2]` → `[R, N, H]`.
pub fn gather_pair_sum(table: &Tensor, rows: &Tensor) -> Result<Tensor> {
    if !use_cpu_kernel(table) {
        return reference::gather_pair_sum(table, rows);
    }
    let table = table.contiguous()?;
    dispatch_real!(table, gather_cpu(&table, rows))
}

fn gather_cpu<T: Real>(table: &Tensor, rows: &Tensor) -> Result<Tensor> {
    let (r, v, h) = expect_rank3(table, "gather table")?;
    let n = rows.dim(1)?;
    let mut out = vec![T::zero(); r * n * h];
    cpu_slice::<T, _>(table, |table| {
        cpu_slice::<u32, _>(rows, |rows| {
            out.par_chunks_mut(h).enumerate().for_each(|(row, dst)| {
                let run = row / n;
                let first = &table[(run * v + rows[2 * row] as usize) * h..][..h];
                let second = &table[(run * v + rows[2 * row + 1] as usize) * h..][..h];
                for ((d, &x), &y) in dst.iter_mut().zip(first).zip(second) {
                    *d = x + y;
                }
            })
        })
    })?;
    Ok(Tensor::from_vec(out, (r, n, h), table.device())?)
}

/// Backward of [`gather_pair_sum`]: d_table[r, rows[r,n,k], :] += dz[r, n, :].
/// dz `[R, N, H]`, rows `[R, N, 2]` → `[R, V, H]`.
pub fn scatter_pair_sum(dz: &Tensor, rows: &Tensor, v: usize) -> Result<Tensor> {
    if !use_cpu_kernel(dz) {
        return reference::scatter_pair_sum(dz, rows, v);
    }
    let dz = dz.contiguous()?;
    dispatch_real!(dz, scatter_cpu(&dz, rows, v))
}

fn scatter_cpu<T: Real>(dz: &Tensor, rows: &Tensor, v: usize) -> Result<Tensor> {
    let (r, n, h) = expect_rank3(dz, "scatter gradient")?;
    let mut out = vec![T::zero(); r * v * h];
    cpu_slice::<T, _>(dz, |dz| {
        cpu_slice::<u32, _>(rows, |rows| {
            // One task per run: runs never write to each other's table, and the order of
            // the additions inside a run is fixed, so results do not depend on the stack.
            out.par_chunks_mut(v * h).enumerate().for_each(|(run, table)| {
                for i in 0..n {
                    let row = run * n + i;
                    let src = &dz[row * h..][..h];
                    for k in 0..2 {
                        let dst = &mut table[rows[2 * row + k] as usize * h..][..h];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = *d + s;
                        }
                    }
                }
            })
        })
    })?;
    Ok(Tensor::from_vec(out, (r, v, h), dz.device())?)
}

pub mod reference {
    use super::*;

    /// Global row indices into the table flattened to `[R·V, H]`: `[R·N]` for operand `k`.
    fn flat_rows(rows: &Tensor, v: usize, k: usize) -> Result<Tensor> {
        let (r, n, _) = expect_rank3(rows, "rows")?;
        let offsets = (Tensor::arange(0u32, r as u32, rows.device())? * v as f64)?;
        let column = rows.narrow(2, k, 1)?.squeeze(2)?; // [R, N]
        Ok(column.broadcast_add(&offsets.unsqueeze(1)?)?.reshape(r * n)?)
    }

    pub fn gather_pair_sum(table: &Tensor, rows: &Tensor) -> Result<Tensor> {
        let (r, v, h) = expect_rank3(table, "gather table")?;
        let n = rows.dim(1)?;
        let flat = table.reshape((r * v, h))?;
        let first = flat.index_select(&flat_rows(rows, v, 0)?, 0)?;
        let second = flat.index_select(&flat_rows(rows, v, 1)?, 0)?;
        Ok((first + second)?.reshape((r, n, h))?)
    }

    pub fn scatter_pair_sum(dz: &Tensor, rows: &Tensor, v: usize) -> Result<Tensor> {
        let (r, n, h) = expect_rank3(dz, "scatter gradient")?;
        let src = dz.reshape((r * n, h))?;
        let mut table = Tensor::zeros((r * v, h), dz.dtype(), dz.device())?;
        for k in 0..2 {
            table = table.index_add(&flat_rows(rows, v, k)?, &src, 0)?;
        }
        Ok(table.reshape((r, v, h))?)
    }
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
