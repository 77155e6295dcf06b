//! Per setting (runs equal but for the seed): the phase epochs' median and quartiles over
//! seeds, the seed whose curves stand for the setting, and how often each key frequency is
//! among the seeds' final ones.

use polars::prelude::*;

use super::PHASES;
use crate::columns::*;

/// Runs of a setting that logged progress measures.
pub(crate) const SEEDS_WITH_PROGRESS: &str = "seeds";
/// The run shown in the loss-curve plot: the setting's median seed by grok epoch.
pub(crate) const MEDIAN_SEED_RUN_ID: &str = "median_seed_run_id";
// Columns of the key-frequency counts.
pub(crate) const FREQUENCY: &str = "frequency";
pub(crate) const RUNS_WITH_FREQUENCY: &str = "runs";
pub(crate) const FRACTION: &str = "fraction";

/// The statistic columns of a phase epoch column, e.g. `circuit_epoch` ->
/// (`circuit_seeds`, `median_circuit_epoch`, `q25_circuit_epoch`, `q75_circuit_epoch`).
pub(crate) fn stat_columns(phase: &str) -> [String; 4] {
    let name = phase.trim_end_matches("_epoch");
    [format!("{name}_seeds"), format!("median_{phase}"), format!("q25_{phase}"), format!("q75_{phase}")]
}

/// One row per setting of `phases` ([`super::per_run::run_phases`]), sorted by `setting_id`:
/// `seeds`, then per phase the seeds that reached it and the median and quartiles (linear
/// interpolation, numpy's default) of their epochs, and `median_seed_run_id`: with the runs
/// sorted by grok epoch (never grokked last, then by `run_id`), the run at position
/// ⌊(n − 1)/2⌋, the lower median.
pub(crate) fn setting_phases(phases: LazyFrame) -> LazyFrame {
    let mut aggregates = vec![len().cast(DataType::Int64).alias(SEEDS_WITH_PROGRESS)];
    for phase in PHASES {
        let epochs = || col(phase).cast(DataType::Float64);
        let [reached, median, q25, q75] = stat_columns(phase);
        aggregates.extend([
            // count() skips nulls: the seeds that never got there.
            col(phase).count().cast(DataType::Int64).alias(reached),
            epochs().median().alias(median),
            epochs().quantile(lit(0.25), QuantileMethod::Linear).alias(q25),
            epochs().quantile(lit(0.75), QuantileMethod::Linear).alias(q75),
        ]);
    }
    let by_grok = SortMultipleOptions::default().with_nulls_last(true);
    // Whatever division the integers get, the cast truncates it to ⌊(n − 1)/2⌋ (n ≥ 1).
    let lower_median = ((len() - lit(1)) / lit(2)).cast(DataType::Int64);
    aggregates.push(
        col(RUN_ID)
            .sort_by([col(GROK_EPOCH), col(RUN_ID)], by_grok)
            .gather(lower_median, false)
            .first()
            .alias(MEDIAN_SEED_RUN_ID),
    );
    phases.group_by([col(SETTING_ID)]).agg(aggregates).sort([SETTING_ID], SortMultipleOptions::default())
}

/// One row per setting and frequency among its runs' final key frequencies: `runs` that end
/// with it, `seeds` of the setting and their `fraction`; sorted by setting, then most runs,
/// then frequency.
pub(crate) fn key_frequency_counts(phases: LazyFrame) -> LazyFrame {
    let seeds =
        phases.clone().group_by([col(SETTING_ID)]).agg([len().cast(DataType::Int64).alias(SEEDS_WITH_PROGRESS)]);
    exploded_frequencies(phases, &[SETTING_ID])
        .join(seeds, [col(SETTING_ID)], [col(SETTING_ID)], JoinArgs::new(JoinType::Inner))
        .with_column(
            (col(RUNS_WITH_FREQUENCY).cast(DataType::Float64) / col(SEEDS_WITH_PROGRESS).cast(DataType::Float64))
                .alias(FRACTION),
        )
        .sort(
            [SETTING_ID, RUNS_WITH_FREQUENCY, FREQUENCY],
            SortMultipleOptions::default().with_order_descending_multi([false, true, false]),
        )
}

/// Per group of `by` (columns of `phases`) and frequency: `runs` whose final key frequencies
/// hold it.
pub(crate) fn exploded_frequencies(phases: LazyFrame, by: &[&str]) -> LazyFrame {
    let mut kept: Vec<Expr> = by.iter().map(|c| col(*c)).collect();
    kept.push(col(FINAL_KEY_FREQUENCIES).alias(FREQUENCY));
    let mut groups: Vec<Expr> = by.iter().map(|c| col(*c)).collect();
    groups.push(col(FREQUENCY));
    phases
        .select(kept)
        .explode(cols([FREQUENCY]), ExplodeOptions { empty_as_null: false, keep_nulls: false })
        .filter(col(FREQUENCY).is_not_null())
        .group_by(groups)
        .agg([len().cast(DataType::Int64).alias(RUNS_WITH_FREQUENCY)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Setting 0: four runs with memorization 10, 20, 30, 40 (median 25, quartiles 17.5 and
    /// 32.5), circuit 100, 300, 200 and never (median 200, quartiles 150 and 250), grok 500, 700,
    /// never, 600, cleanup end 800, 900, never, 1000; by grok epoch the runs are 0 (500), 3 (600),
    /// 1 (700), 2 (never), so the lower median is run 3. Final key frequencies: 14 in three runs,
    /// 35 in two, 41 and 52 in one; run 2 ends with none. Setting 1: one run.
    fn phases() -> LazyFrame {
        let lists = |lists: &[&[i64]]| -> Vec<Series> { lists.iter().map(|l| Series::new("".into(), *l)).collect() };
        df!(
            RUN_ID => [0i64, 1, 2, 3, 4],
            SETTING_ID => [0i64, 0, 0, 0, 1],
            MEMORIZATION_EPOCH => [Some(10i64), Some(20), Some(30), Some(40), Some(5)],
            CIRCUIT_EPOCH => [Some(100i64), Some(300), None, Some(200), Some(6)],
            GROK_EPOCH => [Some(500i64), Some(700), None, Some(600), Some(7)],
            CLEANUP_END_EPOCH => [Some(800i64), Some(900), None, Some(1000), Some(8)],
            FINAL_KEY_FREQUENCIES => lists(&[&[14, 35], &[14, 41], &[], &[35, 14, 52], &[7]]),
        )
        .unwrap()
        .lazy()
    }

    fn floats(frame: &DataFrame, name: &str) -> Vec<Option<f64>> {
        frame.column(name).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().iter().collect()
    }

    #[test]
    fn medians_quartiles_and_the_median_seed() {
        let settings = setting_phases(phases()).collect().unwrap();
        assert_eq!(floats(&settings, SEEDS_WITH_PROGRESS), [Some(4.0), Some(1.0)]);
        let expected = [
            (MEMORIZATION_EPOCH, [4.0, 25.0, 17.5, 32.5], 5.0),
            (CIRCUIT_EPOCH, [3.0, 200.0, 150.0, 250.0], 6.0),
            (GROK_EPOCH, [3.0, 600.0, 550.0, 650.0], 7.0),
            (CLEANUP_END_EPOCH, [3.0, 900.0, 850.0, 950.0], 8.0),
        ];
        for (phase, stats, single) in expected {
            for (name, value) in stat_columns(phase).iter().zip(stats) {
                let single = if name.ends_with("_seeds") { 1.0 } else { single };
                assert_eq!(floats(&settings, name), [Some(value), Some(single)], "{name}");
            }
        }
        assert_eq!(floats(&settings, MEDIAN_SEED_RUN_ID), [Some(3.0), Some(4.0)]);
    }

    #[test]
    fn key_frequencies_are_counted_over_seeds() {
        let counts = key_frequency_counts(phases()).collect().unwrap();
        let rows: Vec<(i64, i64, i64, i64, f64)> = (0..counts.height())
            .map(|i| {
                let int = |name: &str| counts.column(name).unwrap().i64().unwrap().get(i).unwrap();
                let fraction = counts.column(FRACTION).unwrap().f64().unwrap().get(i).unwrap();
                (int(SETTING_ID), int(FREQUENCY), int(RUNS_WITH_FREQUENCY), int(SEEDS_WITH_PROGRESS), fraction)
            })
            .collect();
        assert_eq!(
            rows,
            [(0, 14, 3, 4, 0.75), (0, 35, 2, 4, 0.5), (0, 41, 1, 4, 0.25), (0, 52, 1, 4, 0.25), (1, 7, 1, 1, 1.0),]
        );
    }

    #[test]
    fn stat_columns_are_named_after_the_phase() {
        assert_eq!(
            stat_columns(CLEANUP_END_EPOCH),
            ["cleanup_end_seeds", "median_cleanup_end_epoch", "q25_cleanup_end_epoch", "q75_cleanup_end_epoch"]
        );
    }
}
