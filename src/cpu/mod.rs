//! What every CPU pass shares: single-threaded GEMMs on one run's matrices (rayon spreads the
//! runs and chunks of rows over the cores) and buffers pooled across passes.

pub mod matmul;
pub mod pool;
