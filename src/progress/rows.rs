//! One run's progress measures at one logged epoch, and how a checkpoint keeps them.

use crate::state::{self, StateDict};
use anyhow::{anyhow, Result};
use candle_core::Tensor;

/// One run's progress measures at one logged epoch (the metric columns of docs/OUTPUT.md).
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressRow {
    pub restricted_loss: f64,
    pub excluded_loss: f64,
    /// Strongest first.
    pub key_frequencies: Vec<usize>,
    /// The shares of frequencies k = 1 … (p − 1)/2, in order of k.
    pub embedding_spectrum: Vec<f64>,
    pub embedding_gini: f64,
    pub embedding_ipr: f64,
}

/// Values of a row in a checkpoint before its shares and key frequencies (see [`to_state`]).
const FIXED: usize = 7;

/// The progress measures of metric rows as a checkpoint's table, one row each: 1 (0 for a row
/// without them), the restricted and excluded loss, Gini, IPR, the spectrum's length m and the
/// key frequencies' count K, then the m shares and the K frequencies, NaN-padded to the
/// widest; None when no row has them.
pub fn to_state<'a>(rows: impl Iterator<Item = Option<&'a ProgressRow>>) -> Result<Option<Tensor>> {
    let values: Vec<Vec<f64>> = rows
        .map(|row| match row {
            None => vec![0.0],
            Some(p) => {
                let mut v = vec![
                    1.0,
                    p.restricted_loss,
                    p.excluded_loss,
                    p.embedding_gini,
                    p.embedding_ipr,
                    p.embedding_spectrum.len() as f64,
                    p.key_frequencies.len() as f64,
                ];
                v.extend(&p.embedding_spectrum);
                v.extend(p.key_frequencies.iter().map(|&k| k as f64));
                v
            }
        })
        .collect();
    if values.iter().all(|v| v.len() == 1) {
        return Ok(None);
    }
    let width = values.iter().map(Vec::len).max().unwrap_or(0);
    let padded: Vec<Vec<f64>> = values
        .into_iter()
        .map(|mut v| {
            v.resize(width, f64::NAN);
            v
        })
        .collect();
    state::matrix(&padded, width)
}

/// The inverse of [`to_state`] for the `n` rows of the table `key`: none without the table.
pub fn from_state(state: &StateDict, key: &str, n: usize) -> Result<Vec<Option<ProgressRow>>> {
    let Some(t) = state.get(key) else {
        return Ok(vec![None; n]);
    };
    let width = t.dims().get(1).copied().unwrap_or(0);
    let bad = || anyhow!("`{key}` in the checkpoint is not a table of progress measures");
    state::read_matrix(state, key, n, width)?
        .into_iter()
        .map(|v| {
            if v.first() != Some(&1.0) {
                return Ok(None);
            }
            let fixed = v.get(..FIXED).ok_or_else(bad)?;
            let (m, k) = (fixed[5] as usize, fixed[6] as usize);
            let rest = v.get(FIXED..FIXED + m + k).ok_or_else(bad)?;
            Ok(Some(ProgressRow {
                restricted_loss: fixed[1],
                excluded_loss: fixed[2],
                embedding_gini: fixed[3],
                embedding_ipr: fixed[4],
                embedding_spectrum: rest[..m].to_vec(),
                key_frequencies: rest[m..].iter().map(|&f| f as usize).collect(),
            }))
        })
        .collect()
}
