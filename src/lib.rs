//! grokstack: train hundreds to thousands of small grokking networks as one stacked model.
//!
//! Reading order: `config` (sweep files) → `data` (the task and splits) → `model` (the
//! stacked MLP, forward and backward) → `kernels` (activations, losses, the gather) → `cpu` (the fast CPU pass) → `transformer` (the stacked transformer, tensor path) → `optim` → `train`
//! (one stack) → `metrics` → `runner` (a whole sweep) → `output` (Parquet) → `checkpoint` (resuming) → `export`;
//! beyond one machine: `shard` (a sweep split into N) → `slurm` (a job array) → `merge`; `disk`
//! names a full disk.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod data;
pub mod disk;
pub mod export;
pub mod faults;
pub mod interrupt;
pub mod kernels;
pub mod lipschitz;
pub mod merge;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod output;
pub mod plan;
pub mod progress;
pub mod rng;
pub mod runner;
pub mod shard;
pub mod slurm;
pub mod state;
pub mod tasks;
pub mod train;
pub mod waves;
