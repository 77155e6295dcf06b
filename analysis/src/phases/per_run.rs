//! Per run: the epochs that bound the phases of grokking, from the logged progress measures.

use polars::prelude::*;

use crate::columns::*;
use crate::grok_rule::memorized;

/// How close to its final value the weight norm must come, as a fraction of the distance
/// between its value at the grok epoch and its final value, for the cleanup to have ended.
pub(crate) const CLEANUP_REMAINING: f64 = 0.1;

/// One row per run that logged progress measures, sorted by `run_id`: `run_id`, `setting_id`,
/// `seed`, the `task_columns` of `outcomes`, then
/// - `memorization_epoch`: the first logged epoch with train accuracy ≥ 0.99;
/// - `restricted_loss_at_memorization`: the restricted loss at that epoch;
/// - `circuit_epoch`: the first logged epoch at or after memorization at which the restricted
///   loss is at most (1 − `circuit_threshold`) × its value at memorization;
/// - `grok_epoch`: the analysis's grok epoch, from `outcomes` ([`crate::per_run::run_outcomes`]);
/// - `cleanup_end_epoch`: the first logged epoch at or after the grok epoch at which the weight
///   norm is within [`CLEANUP_REMAINING`] × |norm at grok − final norm| of its final value
///   (the last logged epoch always is, so a cleanup still going on ends there);
/// - `final_key_frequencies`: the key frequencies of the last logged epoch.
///
/// Each epoch is null when its condition never holds or the epoch it counts from is null; NaN
/// (a diverged run) never meets a condition.
pub(crate) fn run_phases(
    outcomes: LazyFrame,
    metrics: LazyFrame,
    circuit_threshold: f64,
    task_columns: &[&str],
) -> LazyFrame {
    let mut from_outcomes = vec![col(RUN_ID), col(SETTING_ID), col(SEED), col(GROK_EPOCH)];
    from_outcomes.extend(task_columns.iter().map(|c| col(*c)));
    let progress = metrics
        .filter(col(RESTRICTED_LOSS).is_not_null())
        .select([
            col(RUN_ID),
            col(EPOCH),
            col(TRAIN_ACC),
            col(WEIGHT_NORM).cast(DataType::Float64),
            col(RESTRICTED_LOSS).cast(DataType::Float64),
            col(KEY_FREQUENCIES),
        ])
        .join(outcomes.select(from_outcomes), [col(RUN_ID)], [col(RUN_ID)], JoinArgs::new(JoinType::Inner));

    // Every expression below is evaluated within one run's rows.
    let at_epoch = |value: &str, epoch: Expr| col(value).filter(col(EPOCH).eq(epoch)).first();
    let memorization = col(EPOCH).filter(memorized()).min();
    let restricted_at_memorization = at_epoch(RESTRICTED_LOSS, memorization.clone());
    let circuit_formed = col(EPOCH)
        .gt_eq(memorization.clone())
        .and(col(RESTRICTED_LOSS).lt_eq(restricted_at_memorization.clone() * lit(1.0 - circuit_threshold)));
    let grok = col(GROK_EPOCH).first();
    let last_epoch = col(EPOCH).max();
    let final_norm = at_epoch(WEIGHT_NORM, last_epoch.clone());
    // Squares instead of absolute values: |a| ≤ c·|b| ⇔ a² ≤ (c·b)².
    let from_final = col(WEIGHT_NORM) - final_norm.clone();
    let allowed = (at_epoch(WEIGHT_NORM, grok.clone()) - final_norm) * lit(CLEANUP_REMAINING);
    let settled =
        col(EPOCH).gt_eq(grok.clone()).and((from_final.clone() * from_final).lt_eq(allowed.clone() * allowed));

    let mut per_run = vec![col(SETTING_ID).first(), col(SEED).first()];
    per_run.extend(task_columns.iter().map(|c| col(*c).first()));
    per_run.extend([
        memorization.alias(MEMORIZATION_EPOCH),
        restricted_at_memorization.alias(RESTRICTED_AT_MEMORIZATION),
        col(EPOCH).filter(circuit_formed).min().alias(CIRCUIT_EPOCH),
        grok.alias(GROK_EPOCH),
        col(EPOCH).filter(settled).min().alias(CLEANUP_END_EPOCH),
        at_epoch(KEY_FREQUENCIES, last_epoch).alias(FINAL_KEY_FREQUENCIES),
    ]);
    progress.group_by([col(RUN_ID)]).agg(per_run).sort([RUN_ID], SortMultipleOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (epoch, train_acc, restricted_loss, weight_norm, key_frequencies) per logged epoch.
    type Row = (i64, f64, f64, f64, Vec<i64>);

    /// Run 0 memorizes at epoch 3 (restricted loss 4 there; 1 at epoch 0, before it, must not
    /// count), its restricted loss is at most 2 (threshold 0.5) from epoch 6 and at most 2.8
    /// (threshold 0.3) from epoch 5; it groks at 7, where the weight norm is 30 with final norm
    /// 20, so the cleanup ends at epoch 8, the first from 7 on within 1 of 20 (epoch 0's 20 is
    /// before the grok). Run 1 never memorizes nor groks. Run 2 memorizes at 0, its restricted
    /// loss never falls, and its weight norm never moves, so its cleanup ends at its grok epoch 2.
    /// Run 3 logged no progress measures. Rows come newest first: nothing may rely on order.
    fn metrics() -> LazyFrame {
        let run0: Vec<Row> = vec![
            (0, 0.2, 1.0, 20.0, vec![1]),
            (1, 0.5, 5.0, 50.0, vec![1]),
            (2, 0.9, 4.8, 50.0, vec![1]),
            (3, 0.99, 4.0, 50.0, vec![2, 1]),
            (4, 1.0, 3.0, 48.0, vec![2, 1]),
            (5, 1.0, 2.5, 45.0, vec![2, 1]),
            (6, 1.0, 1.9, 40.0, vec![14, 2]),
            (7, 1.0, 1.0, 30.0, vec![14, 35]),
            (8, 1.0, 0.5, 21.0, vec![14, 35]),
            (9, 1.0, 0.4, 20.0, vec![14, 35, 41]),
        ];
        let run1: Vec<Row> = (0..4).map(|e| (e, 0.98, 4.0 - e as f64, 10.0, vec![3])).collect();
        let run2: Vec<Row> = (0..4).map(|e| (e, 1.0, 4.0, 10.0, vec![5, 7])).collect();
        let mut frame = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, rows) in [(0i64, run0), (1, run1), (2, run2)] {
            for (epoch, acc, restricted, norm, keys) in rows.into_iter().rev() {
                frame.0.push(id);
                frame.1.push(epoch);
                frame.2.push(acc);
                frame.3.push(Some(restricted));
                frame.4.push(norm);
                frame.5.push(Series::new("".into(), keys));
            }
        }
        // Run 3: its rows have null progress measures.
        frame.0.push(3);
        frame.1.push(0);
        frame.2.push(1.0);
        frame.3.push(None);
        frame.4.push(10.0);
        frame.5.push(Series::new_null("".into(), 0).cast(&DataType::Int64).unwrap());
        df!(
            RUN_ID => frame.0,
            EPOCH => frame.1,
            TRAIN_ACC => frame.2,
            RESTRICTED_LOSS => frame.3,
            WEIGHT_NORM => frame.4,
            KEY_FREQUENCIES => frame.5,
        )
        .unwrap()
        .lazy()
    }

    fn outcomes() -> LazyFrame {
        df!(
            RUN_ID => [0i64, 1, 2, 3],
            SETTING_ID => [0i64, 0, 1, 1],
            SEED => [0i64, 1, 0, 1],
            TASK_OP => ["add"; 4],
            GROK_EPOCH => [Some(7i64), None, Some(2), Some(0)],
        )
        .unwrap()
        .lazy()
    }

    fn column(frame: &DataFrame, name: &str) -> Vec<Option<i64>> {
        frame.column(name).unwrap().i64().unwrap().iter().collect()
    }

    #[test]
    fn phase_epochs_are_where_the_construction_puts_them() {
        let phases = run_phases(outcomes(), metrics(), 0.5, &[TASK_OP]).collect().unwrap();
        assert_eq!(column(&phases, RUN_ID), [Some(0), Some(1), Some(2)]);
        assert_eq!(column(&phases, MEMORIZATION_EPOCH), [Some(3), None, Some(0)]);
        let restricted = phases.column(RESTRICTED_AT_MEMORIZATION).unwrap().f64().unwrap().clone();
        let restricted: Vec<Option<f64>> = restricted.iter().collect();
        assert_eq!(restricted, [Some(4.0), None, Some(4.0)]);
        assert_eq!(column(&phases, CIRCUIT_EPOCH), [Some(6), None, None]);
        assert_eq!(column(&phases, GROK_EPOCH), [Some(7), None, Some(2)]);
        assert_eq!(column(&phases, CLEANUP_END_EPOCH), [Some(8), None, Some(2)]);
        let lists = phases.column(FINAL_KEY_FREQUENCIES).unwrap().list().unwrap().clone();
        let finals: Vec<Vec<i64>> = (0..lists.len())
            .map(|row| lists.get_as_series(row).unwrap().i64().unwrap().into_no_null_iter().collect())
            .collect();
        assert_eq!(finals, [vec![14, 35, 41], vec![3], vec![5, 7]]);
    }

    #[test]
    fn circuit_threshold_moves_the_circuit_epoch() {
        let phases = run_phases(outcomes(), metrics(), 0.3, &[TASK_OP]).collect().unwrap();
        assert_eq!(column(&phases, CIRCUIT_EPOCH), [Some(5), None, None]);
    }
}
