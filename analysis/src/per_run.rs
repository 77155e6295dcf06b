//! Per run: the grok epoch under the analysis rule and threshold, recomputed
//! from the logged metrics, and the Lipschitz bound at that epoch.

use polars::prelude::*;

use crate::columns::*;
use crate::grok_rule::GrokCriterion;

/// One row per finished run: its configuration from runs.parquet, `grok_epoch`
/// (first logged epoch that meets `grok`, null if never),
/// `lipschitz_at_grok` (null if never grokked or the bound was off) and
/// `diverged`.
///
/// Runs listed in runs.parquet but without any metric rows are left out: they
/// count as missing, not as runs that failed to grok (or, with status `skipped`,
/// as skipped: see `crate::settings::setting_stats`).
pub(crate) fn run_outcomes(
    runs: LazyFrame,
    metrics: LazyFrame,
    grok: GrokCriterion,
    metrics_have_lipschitz: bool,
) -> LazyFrame {
    let reached = grok.reached();
    let grok_epoch = col(EPOCH).filter(reached.clone()).min();
    let lipschitz = if metrics_have_lipschitz {
        col(LIPSCHITZ_BOUND).cast(DataType::Float64)
    } else {
        lit(NULL).cast(DataType::Float64)
    };
    let at_grok = reached.and(col(EPOCH).eq(grok_epoch.clone()));
    let outcomes = metrics
        .group_by([col(RUN_ID)])
        .agg([grok_epoch.alias(GROK_EPOCH), lipschitz.filter(at_grok).first().alias(LIPSCHITZ_AT_GROK)]);

    // The trainer's own grok_epoch/solve_epoch/lipschitz_at_grok are at its
    // fixed thresholds; they are replaced, not kept beside the recomputed ones.
    let stale = [GROK_EPOCH, "solve_epoch", LIPSCHITZ_AT_GROK];
    let config = all().exclude_cols(stale).as_expr();
    runs.select([config])
        .join(outcomes, [col(RUN_ID)], [col(RUN_ID)], JoinArgs::new(JoinType::Inner))
        .with_column(col(STATUS).eq(lit(STATUS_DIVERGED)).alias(DIVERGED))
        .sort([RUN_ID], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grok_rule::GrokRule;

    /// Run 0 reaches 0.95 at epoch 3 with train accuracy 0.9, train accuracy
    /// reaches 0.99 at epoch 5, and its best test accuracy, 1.0 at epoch 8, is
    /// first within 0.01 at epoch 7 (0.995); epoch 6 is NaN. Run 1 never reaches
    /// 0.95. Run 2 reaches 0.96 at epoch 1 (best 0.99 at epoch 2) but train
    /// accuracy stays at 0.98.
    fn metrics() -> LazyFrame {
        let nan = f64::NAN;
        let run0_test = [0.1, 0.5, 0.9, 0.95, 0.96, 0.97, nan, 0.995, 1.0, 0.98];
        let run0_train = [0.5, 0.8, 0.85, 0.9, 0.95, 0.99, nan, 1.0, 1.0, 1.0];
        let run1_test = [0.5, 0.9, nan];
        let run1_train = [0.9, 1.0, nan];
        let run2_test = [0.5, 0.96, 0.99];
        let run2_train = [0.98; 3];
        let mut run_id = Vec::new();
        let mut epoch = Vec::new();
        let mut test = Vec::new();
        let mut train = Vec::new();
        for (id, (t, tr)) in
            [(&run0_test[..], &run0_train[..]), (&run1_test[..], &run1_train[..]), (&run2_test[..], &run2_train[..])]
                .into_iter()
                .enumerate()
        {
            run_id.extend(std::iter::repeat_n(id as i64, t.len()));
            epoch.extend(0..t.len() as i64);
            test.extend_from_slice(t);
            train.extend_from_slice(tr);
        }
        // The bound is 10 × the epoch, so it shows which epoch it was taken at.
        let bound: Vec<f64> = epoch.iter().map(|&e| 10.0 * e as f64).collect();
        df!(
            RUN_ID => run_id,
            EPOCH => epoch,
            TRAIN_ACC => train,
            TEST_ACC => test,
            LIPSCHITZ_BOUND => bound,
        )
        .unwrap()
        .lazy()
    }

    /// (grok_epoch, lipschitz_at_grok) per run under `rule` at 0.95.
    fn outcomes(rule: GrokRule) -> Vec<(Option<i64>, Option<f64>)> {
        let runs = df!(
            RUN_ID => [0i64, 1, 2],
            STATUS => ["done", "diverged", "done"],
            // The trainer's own values, which the recomputed ones replace.
            GROK_EPOCH => [-1i64; 3],
            "solve_epoch" => [-1i64; 3],
            LIPSCHITZ_AT_GROK => [-1.0f64; 3],
        )
        .unwrap()
        .lazy();
        let grok = GrokCriterion { threshold: 0.95, rule };
        let frame = run_outcomes(runs, metrics(), grok, true).collect().unwrap();
        let epochs = frame.column(GROK_EPOCH).unwrap().i64().unwrap().clone();
        let bounds = frame.column(LIPSCHITZ_AT_GROK).unwrap().f64().unwrap().clone();
        epochs.iter().zip(bounds.iter()).collect()
    }

    #[test]
    fn grok_rule_first_takes_the_first_epoch_at_the_threshold() {
        assert_eq!(outcomes(GrokRule::First), [(Some(3), Some(30.0)), (None, None), (Some(1), Some(10.0))]);
    }

    #[test]
    fn grok_rule_after_train_waits_for_train_accuracy() {
        assert_eq!(outcomes(GrokRule::AfterTrain), [(Some(5), Some(50.0)), (None, None), (None, None)]);
    }

    #[test]
    fn grok_rule_near_max_waits_for_the_best_test_accuracy_and_ignores_nan() {
        assert_eq!(outcomes(GrokRule::NearMax), [(Some(7), Some(70.0)), (None, None), (Some(2), Some(20.0))]);
    }
}
