//! The keys of the progress measures (`metrics.progress`, `metrics.key_frequencies`,
//! `metrics.fixed_frequencies`) and the runs that can have them; `crate::progress` measures them.

use super::schema::Value;
use crate::tasks::{is_prime, Op};
use anyhow::{bail, Result};
use std::collections::BTreeMap;

/// How a run picks its key frequencies.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyChoice {
    /// The this many frequencies of the most logit energy at each logged epoch.
    Strongest(usize),
    /// These frequencies (each in 1 … ⌊n/2⌋), at every epoch.
    Fixed(Vec<usize>),
}

/// A run's progress measures: off, or on with its choice of key frequencies.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgressConfig {
    pub enabled: bool,
    pub key_frequencies: usize,
    /// Empty: the `key_frequencies` strongest at each epoch.
    pub fixed_frequencies: Vec<usize>,
}

impl ProgressConfig {
    /// The keys from a run's resolved values; a sweep that sets none of them has none there
    /// (see `super::schema::LISTED_WHEN_SET`), and gets their defaults.
    pub fn from_values(values: &BTreeMap<&'static str, Value>) -> Result<ProgressConfig> {
        let value = |key: &str| values.get(key).cloned().or_else(|| super::schema::spec(key).map(|s| (s.default)()));
        let enabled = match value("metrics.progress") {
            Some(Value::Bool(b)) => b,
            other => bail!("key `metrics.progress`: expected a boolean, found {other:?}"),
        };
        let key_frequencies = match value("metrics.key_frequencies") {
            Some(Value::Int(k)) => k as usize,
            other => bail!("key `metrics.key_frequencies`: expected an integer, found {other:?}"),
        };
        let fixed_frequencies = match value("metrics.fixed_frequencies") {
            Some(Value::IntList(list)) => list.iter().map(|&k| k as usize).collect(),
            other => bail!("key `metrics.fixed_frequencies`: expected a list of integers, found {other:?}"),
        };
        Ok(ProgressConfig { enabled, key_frequencies, fixed_frequencies })
    }

    pub fn choice(&self) -> KeyChoice {
        if self.fixed_frequencies.is_empty() {
            KeyChoice::Strongest(self.key_frequencies)
        } else {
            KeyChoice::Fixed(self.fixed_frequencies.clone())
        }
    }

    /// The measures need a cyclic group behind the task and enough frequencies in it.
    pub fn check(&self, op: &Op, p: usize, skip_zero: bool) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let name = op.name();
        if !matches!(op, Op::Add | Op::Sub | Op::Mul | Op::Div) {
            // An expression or a table may list exactly add's rows, but only the name says
            // which cyclic group the measures project onto.
            let why = match op {
                Op::Expression(_) | Op::Table(_) => "is not one of those names (write add, sub, mul or div by name)",
                _ => "has no such structure",
            };
            bail!(
                "key `metrics.progress`: the progress measures (Nanda et al.'s Fourier projections) need add, sub, \
                 mul or div on a prime p; {name} {why}, or set it to false"
            );
        }
        if !is_prime(p) {
            bail!(
                "key `metrics.progress`: the progress measures need a prime p, {p} is not prime (task.p = {p}); set \
                 it to false or choose a prime task.p"
            );
        }
        if skip_zero && matches!(op, Op::Add | Op::Sub) {
            bail!(
                "key `metrics.progress`: {name} projects onto all p² pairs, and task.skip_zero leaves out those \
                 with a zero; set one of them to false"
            );
        }
        let frequencies = (p - 1) / 2;
        if self.fixed_frequencies.is_empty() && self.key_frequencies > frequencies {
            bail!(
                "key `metrics.key_frequencies`: {} key frequencies are more than the {frequencies} frequencies \
                 of p = {}",
                self.key_frequencies,
                p
            );
        }
        let mut seen = vec![false; frequencies + 1];
        for &k in &self.fixed_frequencies {
            if k == 0 || k > frequencies {
                bail!(
                    "key `metrics.fixed_frequencies`: frequency {k} is outside 1 … {frequencies} (the frequencies \
                     of p = {})",
                    p
                );
            }
            if std::mem::replace(&mut seen[k], true) {
                bail!("key `metrics.fixed_frequencies`: frequency {k} is listed twice");
            }
        }
        Ok(())
    }
}
