//! The run axis of a stack: every per-run vector `[R]` and the leading axis of every stacked
//! tensor `[R, ...]`. When runs retire, the stack keeps the runs at some positions of this axis.

use anyhow::Result;
use candle_core::{Device, Tensor};

/// The entries of a per-run vector for the runs at stack `positions` (stack compaction).
pub fn pick_runs<T: Clone>(values: &[T], positions: &[usize]) -> Vec<T> {
    positions.iter().map(|&p| values[p].clone()).collect()
}

/// Stack `positions` as a u32 index tensor `[positions.len()]`, for `index_select` along the
/// run axis.
pub fn run_index(positions: &[usize], device: &Device) -> Result<Tensor> {
    let index: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
    Ok(Tensor::from_vec(index, positions.len(), device)?)
}

/// A per-run scalar as a tensor `[R, 1, ...]` of the rank and dtype of `like`, which broadcasts
/// over a parameter `[R, ...]`.
pub fn per_run(values: &[f64], like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![values.len()];
    shape.resize(like.rank(), 1);
    Ok(Tensor::from_vec(values.to_vec(), shape, like.device())?.to_dtype(like.dtype())?)
}
