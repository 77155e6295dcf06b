//! Sweep files: the key schema, parsing and validation, and the typed per-run config.

pub mod progress;
pub mod run;
pub mod schema;
pub mod sweep;

pub use run::{
    is_prime, Activation, Constraint, Loss, Op, Optimizer, Precision, RunConfig, StackKey, Stop, TrainingKey,
};
pub use schema::Value;
pub use sweep::{RunSpec, Sweep, TableChanged};
