//! Sweep files: the key schema, parsing and validation, and the typed per-run config.

pub mod run;
pub mod schema;
pub mod sweep;

pub use run::{is_prime, Activation, Constraint, Input, Loss, ModelKind, Op, Optimizer, Precision, RunConfig, StackKey, Stop, TokenLayout, TransformerConfig};
pub use schema::Value;
pub use sweep::{RunSpec, Sweep};
