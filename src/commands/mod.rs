//! The commands of the `grokstack` binary, one module each: each reads its arguments
//! ([`crate::cli`]), does its work through the library, prints what it did, and says how it
//! ended. The binary turns that into an exit status.

pub mod analyze;
pub mod bench;
pub mod export;
pub mod merge;
pub mod slurm;
pub mod train;

/// How a command that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Success,
    /// A sweep stopped by Ctrl-C or SIGTERM, after writing a checkpoint.
    Interrupted,
    /// A merge that wrote what the shards have, with runs missing or duplicated.
    IncompleteMerge,
}
