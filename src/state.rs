//! Named state tensors: what a checkpoint holds of each part of a stack in training (model,
//! optimizer, power iteration, metric bookkeeping), and the checks that restore it.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// State to save: `[R, ...]` tensors per run, scalars as `[1]` i64.
pub type State = Vec<(String, Tensor)>;
/// State read back from a checkpoint (on the CPU).
pub type StateDict = HashMap<String, Tensor>;

/// The tensor `key`, which must exist.
pub fn get<'a>(state: &'a StateDict, key: &str) -> Result<&'a Tensor> {
    state.get(key).with_context(|| format!("the checkpoint lacks `{key}`"))
}

/// The tensor `key`, checked to have the shape and dtype of `like`, moved to its device.
pub fn restore_like(state: &StateDict, key: &str, like: &Tensor) -> Result<Tensor> {
    let t = get(state, key)?;
    if t.dims() != like.dims() || t.dtype() != like.dtype() {
        bail!(
            "`{key}` in the checkpoint is {:?} {:?}, expected {:?} {:?}",
            t.dtype(),
            t.dims(),
            like.dtype(),
            like.dims()
        );
    }
    Ok(t.to_device(like.device())?)
}

/// A count as a `[1]` i64 tensor.
pub fn scalar(value: usize) -> Result<Tensor> {
    Ok(Tensor::from_vec(vec![value as i64], 1, &Device::Cpu)?)
}

/// Integers `[n]` (i64) as a tensor; `None` as −1.
pub fn integers(values: impl IntoIterator<Item = Option<usize>>) -> Result<Tensor> {
    let data: Vec<i64> = values.into_iter().map(|v| v.map_or(-1, |v| v as i64)).collect();
    let n = data.len();
    Ok(Tensor::from_vec(data, n, &Device::Cpu)?)
}

/// The integers of a `[n]` i64 tensor `key` (−1 read as `None`).
pub fn read_integers(state: &StateDict, key: &str) -> Result<Vec<Option<usize>>> {
    let t = get(state, key)?;
    if t.dtype() != DType::I64 || t.rank() != 1 {
        bail!("`{key}` in the checkpoint is {:?} {:?}, expected i64 [n]", t.dtype(), t.dims());
    }
    t.to_vec1::<i64>()?
        .into_iter()
        .map(|v| match v {
            -1 => Ok(None),
            v if v >= 0 => Ok(Some(v as usize)),
            v => bail!("`{key}` in the checkpoint holds {v}"),
        })
        .collect()
}

/// The count stored by [`scalar`] under `key`.
pub fn read_scalar(state: &StateDict, key: &str) -> Result<usize> {
    match read_integers(state, key)?.as_slice() {
        [Some(v)] => Ok(*v),
        other => bail!("`{key}` in the checkpoint is {other:?}, expected one count"),
    }
}

/// Rows of f64 `[n, k]` as a tensor (`None` for n = 0: safetensors has no use for empty ones).
pub fn matrix(rows: &[Vec<f64>], k: usize) -> Result<Option<Tensor>> {
    if rows.is_empty() || k == 0 {
        return Ok(None);
    }
    let data: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    if data.len() != rows.len() * k {
        bail!("internal: ragged state rows");
    }
    Ok(Some(Tensor::from_vec(data, (rows.len(), k), &Device::Cpu)?))
}

/// The rows of an f64 `[n, k]` tensor `key`; no tensor reads as no rows.
pub fn read_matrix(state: &StateDict, key: &str, n: usize, k: usize) -> Result<Vec<Vec<f64>>> {
    let Some(t) = state.get(key) else {
        if n == 0 || k == 0 {
            return Ok(vec![Vec::new(); n]);
        }
        bail!("the checkpoint lacks `{key}`");
    };
    if t.dtype() != DType::F64 || t.dims() != [n, k] {
        bail!("`{key}` in the checkpoint is {:?} {:?}, expected f64 [{n}, {k}]", t.dtype(), t.dims());
    }
    Ok(t.to_vec2::<f64>()?)
}
