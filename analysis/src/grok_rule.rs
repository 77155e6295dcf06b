//! Which logged epoch counts as a run's grok epoch: the rule (`--grok-rule`)
//! and the test-accuracy threshold it applies, as a polars condition and as
//! the sentence every table and plot title names it by.

use std::fmt;

use anyhow::{bail, Result};
use polars::prelude::{col, lit, Expr};

use crate::columns::{TEST_ACC, TRAIN_ACC};
use crate::tables::format_number;

/// Train accuracy that counts as "stabilized near 100%" for `after-train`, and
/// as memorized for the phases of grokking.
const TRAINED_ACC: f64 = 0.99;
/// How far below the run's best test accuracy `near-max` may still be.
const NEAR_MAX_MARGIN: f64 = 0.01;

/// The rules a grok epoch can be defined by; every one also needs test
/// accuracy at or above the threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrokRule {
    /// The first logged epoch with test accuracy at or above the threshold.
    #[default]
    First,
    /// The first such epoch at which train accuracy is also at least 0.99
    /// (Tveit et al.: after training accuracy has stabilized near 100%).
    AfterTrain,
    /// The first such epoch within 0.01 of the run's best test accuracy.
    NearMax,
}

impl GrokRule {
    pub const ALL: [GrokRule; 3] = [Self::First, Self::AfterTrain, Self::NearMax];

    /// The name on the command line and in titles.
    pub fn name(self) -> &'static str {
        match self {
            Self::First => "first",
            Self::AfterTrain => "after-train",
            Self::NearMax => "near-max",
        }
    }

    /// The rule called `name`.
    pub fn parse(name: &str) -> Result<Self> {
        match Self::ALL.into_iter().find(|rule| rule.name() == name) {
            Some(rule) => Ok(rule),
            None => bail!("unknown grok rule `{name}` (expected one of: {})", Self::ALL.map(Self::name).join(", ")),
        }
    }
}

impl fmt::Display for GrokRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule at a threshold: what analysis calls the grok epoch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrokCriterion {
    pub threshold: f64,
    pub rule: GrokRule,
}

/// `name >= at_least`. The upper bound 1 also rejects NaN, which polars orders
/// above every number, so a diverged run's NaN never counts.
fn accuracy_at_least(name: &str, at_least: f64) -> Expr {
    col(name).gt_eq(lit(at_least)).and(col(name).lt_eq(lit(1.0)))
}

/// Per metrics row: train accuracy is at least [`TRAINED_ACC`] (NaN never is).
pub(crate) fn memorized() -> Expr {
    accuracy_at_least(TRAIN_ACC, TRAINED_ACC)
}

impl GrokCriterion {
    /// Per metrics row, within one run's group: whether this epoch qualifies
    /// as the grok epoch under the rule (the grok epoch is the first that does).
    pub fn reached(&self) -> Expr {
        let test = accuracy_at_least(TEST_ACC, self.threshold);
        match self.rule {
            GrokRule::First => test,
            GrokRule::AfterTrain => test.and(memorized()),
            GrokRule::NearMax => {
                // max() skips NaN, but the filter says so rather than rely on it.
                let best = col(TEST_ACC).filter(col(TEST_ACC).is_not_nan()).max();
                test.and(col(TEST_ACC).gt_eq(best - lit(NEAR_MAX_MARGIN)))
            }
        }
    }

    /// What "grok epoch" means, for titles and headlines, e.g. "grok epoch =
    /// first logged epoch with test accuracy ≥ 0.95 and train accuracy ≥ 0.99
    /// (rule after-train)".
    pub fn meaning(&self) -> String {
        let test = if self.threshold >= 1.0 {
            "solve epoch = first logged epoch at 100% test accuracy".to_string()
        } else {
            format!("grok epoch = first logged epoch with test accuracy ≥ {}", format_number(self.threshold))
        };
        let extra = match self.rule {
            GrokRule::First => String::new(),
            GrokRule::AfterTrain => {
                format!(" and train accuracy ≥ {}", format_number(TRAINED_ACC))
            }
            GrokRule::NearMax => {
                format!(" and within {} of the run's best test accuracy", format_number(NEAR_MAX_MARGIN))
            }
        };
        format!("{test}{extra} (rule {})", self.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grok_rule_names_round_trip() {
        for rule in GrokRule::ALL {
            assert_eq!(GrokRule::parse(&rule.to_string()).unwrap(), rule);
        }
        let error = GrokRule::parse("last").unwrap_err().to_string();
        assert!(error.contains("`last`") && error.contains("first, after-train, near-max"), "{error}");
    }

    #[test]
    fn grok_rule_meaning_names_rule_and_threshold() {
        let at = |threshold, rule| GrokCriterion { threshold, rule }.meaning();
        assert_eq!(
            at(0.95, GrokRule::AfterTrain),
            "grok epoch = first logged epoch with test accuracy ≥ 0.95 and train accuracy ≥ 0.99 (rule after-train)"
        );
        assert_eq!(at(1.0, GrokRule::First), "solve epoch = first logged epoch at 100% test accuracy (rule first)");
        assert!(at(0.9, GrokRule::NearMax)
            .ends_with("≥ 0.9 and within 0.01 of the run's best test accuracy (rule near-max)"));
    }
}
