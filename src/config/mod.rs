//! Sweep files: the key schema, parsing and validation, and the typed per-run config.

pub mod run;
pub mod schema;
pub mod sweep;

pub use run::{is_prime, Activation, Input, Loss, Op, Optimizer, Precision, RunConfig, StackKey, Stop};
pub use schema::Value;
pub use sweep::{RunSpec, Sweep};
