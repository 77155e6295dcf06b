//! The optimizer family of each setting: what the Pareto comparison colours and fronts group
//! by. A family is the optimizer, Scion's constrained or unconstrained step, and the weight
//! constraint projected after every step, e.g. `adamw`, `muon+spectral_hardcap`,
//! `scion_constrained`. Sweeps from before those keys existed have neither column: their
//! families are the optimizers.

use anyhow::{Context, Result};
use polars::prelude::*;

use crate::columns::*;

/// The family of one setting.
pub(crate) fn family_name(optimizer: &str, scion_constrained: Option<bool>, constraint: Option<&str>) -> String {
    let base = match (optimizer, scion_constrained) {
        ("scion", Some(true)) => "scion_constrained".to_string(),
        ("scion", _) => "scion_unconstrained".to_string(),
        (other, _) => other.to_string(),
    };
    match constraint {
        Some(c) if c != "none" => format!("{base}+{c}"),
        _ => base,
    }
}

/// `settings` with a `family` column after `setting_id`.
pub(crate) fn with_family(mut settings: DataFrame) -> Result<DataFrame> {
    let optimizer =
        Context::context(settings.column(OPTIMIZER)?.str(), "train.optimizer is not a string column")?.clone();
    let scion = match settings.column(SCION_CONSTRAINED) {
        Ok(c) => Some(Context::context(c.bool(), "train.scion_constrained is not a boolean column")?.clone()),
        Err(_) => None,
    };
    let constraint = match settings.column(CONSTRAINT) {
        Ok(c) => Some(Context::context(c.str(), "train.constraint is not a string column")?.clone()),
        Err(_) => None,
    };
    let families: Vec<Option<String>> = (0..settings.height())
        .map(|i| {
            let opt = optimizer.get(i)?;
            Some(family_name(opt, scion.as_ref().and_then(|s| s.get(i)), constraint.as_ref().and_then(|c| c.get(i))))
        })
        .collect();
    settings.insert_column(1, Column::new(FAMILY.into(), families))?;
    Ok(settings)
}
