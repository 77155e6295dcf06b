//! grokstack: train hundreds to thousands of small grokking networks as one stacked model.
//!
//! Reading order: `config` (sweep files) → `data` (the task and splits) → `model` (the
//! stacked MLP, forward and backward) → `kernels` (the fused CPU loops) → `optim` → `train`
//! (one stack) → `metrics` → `runner` (a whole sweep) → `output` (Parquet).

pub mod bench;
pub mod config;
pub mod data;
pub mod kernels;
pub mod lipschitz;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod output;
pub mod plan;
pub mod rng;
pub mod runner;
pub mod train;
