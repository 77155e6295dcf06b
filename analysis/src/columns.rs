//! Column names: those of the trainer's files (docs/OUTPUT.md) that analysis
//! relies on, and those analysis itself writes.

// runs.parquet
pub const RUN_ID: &str = "run_id";
pub const SETTING_ID: &str = "setting_id";
pub const SEED: &str = "seed";
pub const STATUS: &str = "status";
pub const TASK_OP: &str = "task.op";
pub const TASK_P: &str = "task.p";
pub const OPTIMIZER: &str = "train.optimizer";
pub const EPOCH_BUDGET: &str = "train.epochs";
pub const LR: &str = "train.lr";
pub const WEIGHT_DECAY: &str = "train.weight_decay";
/// Optional: absent from sweeps written before Scion and the weight constraints.
pub const SCION_CONSTRAINED: &str = "train.scion_constrained";
pub const CONSTRAINT: &str = "train.constraint";
pub const REQUIRED_RUN_COLUMNS: &[&str] = &[RUN_ID, SETTING_ID, SEED, STATUS, TASK_OP, OPTIMIZER, EPOCH_BUDGET];
/// Configuration columns are the resolved sweep keys, named by their section.
pub const CONFIG_PREFIXES: &[&str] = &["task.", "model.", "train.", "metrics."];
pub const DEFAULT_GROUP_KEYS: &[&str] = &["model.hidden", "model.input"];
pub const STATUS_DIVERGED: &str = "diverged";
/// Never trained: a sweep with seed waves dropped its setting before the run's wave.
pub const STATUS_SKIPPED: &str = "skipped";

// metrics.parquet parts
pub const EPOCH: &str = "epoch";
pub const TRAIN_ACC: &str = "train_acc";
pub const TEST_ACC: &str = "test_acc";
pub const LIPSCHITZ_BOUND: &str = "lipschitz_bound";
pub const REQUIRED_METRIC_COLUMNS: &[&str] = &[RUN_ID, EPOCH, TRAIN_ACC, TEST_ACC];
pub const TRAIN_LOSS: &str = "train_loss";
pub const TEST_LOSS: &str = "test_loss";
pub const WEIGHT_NORM: &str = "weight_norm";
// Nanda et al.'s progress measures, only in sweeps with `metrics.progress` (null for runs without).
pub const RESTRICTED_LOSS: &str = "restricted_loss";
pub const EXCLUDED_LOSS: &str = "excluded_loss";
/// List[Int64]: that epoch's key frequencies, strongest first.
pub const KEY_FREQUENCIES: &str = "key_frequencies";
/// What the phase analysis reads besides the required columns.
pub const PROGRESS_METRIC_COLUMNS: &[&str] =
    &[TRAIN_LOSS, TEST_LOSS, WEIGHT_NORM, RESTRICTED_LOSS, EXCLUDED_LOSS, KEY_FREQUENCIES];

// Per run, recomputed under the analysis rule and threshold.
pub const GROK_EPOCH: &str = "grok_epoch";
pub const LIPSCHITZ_AT_GROK: &str = "lipschitz_at_grok";
pub const DIVERGED: &str = "diverged";

// Per run, the phases of grokking (crate::phases).
pub const MEMORIZATION_EPOCH: &str = "memorization_epoch";
pub const CIRCUIT_EPOCH: &str = "circuit_epoch";
pub const CLEANUP_END_EPOCH: &str = "cleanup_end_epoch";
pub const RESTRICTED_AT_MEMORIZATION: &str = "restricted_loss_at_memorization";
pub const FINAL_KEY_FREQUENCIES: &str = "final_key_frequencies";

// Per setting.
pub const SEEDS: &str = "seeds";
pub const GROKKED_SEEDS: &str = "grokked_seeds";
pub const GROKKED_FRACTION: &str = "grokked_fraction";
pub const DIVERGED_SEEDS: &str = "diverged_seeds";
pub const SKIPPED_SEEDS: &str = "skipped_seeds";
/// Some seeds were skipped: the statistics are over the seeds that trained.
pub const PARTIAL: &str = "partial";
pub const MEDIAN_GROK_EPOCH: &str = "median_grok_epoch";
pub const Q25_GROK_EPOCH: &str = "q25_grok_epoch";
pub const Q75_GROK_EPOCH: &str = "q75_grok_epoch";
pub const MEDIAN_LIPSCHITZ: &str = "median_lipschitz_at_grok";
pub const QUALIFIED: &str = "qualified";
/// The optimizer family (see family.rs), and which front a row of pareto.csv is on.
pub const FAMILY: &str = "family";
pub const FRONT: &str = "front";
/// pareto.csv's `front` of the front over every family.
pub const OVERALL_FRONT: &str = "overall";

pub fn is_config_column(name: &str) -> bool {
    CONFIG_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}
