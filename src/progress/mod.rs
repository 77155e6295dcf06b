//! Nanda et al.'s progress measures for grokking ("Progress measures for grokking via
//! mechanistic interpretability", ICLR 2023), logged for every run with `metrics.progress`.
//!
//! The task's answer lives in a cyclic group Z_n (`group`: add and sub directly, mul and div
//! through the discrete logarithm), whose Fourier basis (`fourier`) describes both the
//! embedding (`spectrum`: its energy per frequency, their Gini coefficient and inverse
//! participation ratio) and the logits over all pairs (`logits`: the key frequencies, the
//! restricted and the excluded loss). `stack` takes a stack's logits from the passes that
//! compute them anyway and measures every run that has the measures on.

pub mod columns;
pub mod cross_entropy;
pub mod fourier;
pub mod group;
pub mod logits;
pub mod rows;
pub mod spectrum;
pub mod stack;

pub use rows::ProgressRow;
pub use stack::StackProgress;
