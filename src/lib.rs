//! grokstack: train hundreds to thousands of small grokking networks as one stacked model.
//!
//! Reading order: `config` (sweep files, the typed per-run config) → `tasks` and `data` (the
//! task, its rows and splits) → `models` (each model kind in its folder: its config, its `Arch`
//! and its passes; `mod.rs` is the seam the rest of the crate asks) → `kernels` (activations,
//! losses, the gather) and `cpu` (the CPU pass driver) → `optim` → `train` (one stack) →
//! `metrics` and `progress` (what is logged) → `sweep` (a whole sweep: its plan, resume,
//! progress and the commit of each part) → `output` (Parquet) → `checkpoint` (resuming) →
//! `export`; beyond one machine: `shard` (a sweep split into N) → `slurm` (a job array) →
//! `merge`. `commands` are the binary's commands over all of that. Leaves that depend on nothing
//! above them: `files` (atomic writes, Parquet), `disk` (a full disk named), `size` (byte
//! sizes), `runs_file` (runs.parquet read back), `run_axis` (per-run selection), `rng`, `device`.

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cpu;
pub mod data;
pub mod device;
pub mod disk;
pub mod export;
pub mod faults;
pub mod files;
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
pub mod run_axis;
pub mod runs_file;
pub mod shard;
pub mod size;
pub mod slurm;
pub mod state;
pub mod sweep;
pub mod tasks;
pub mod train;
pub mod waves;
