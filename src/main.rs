//! The `grokstack` command line: parse it, run the command ([`grokstack::commands`]), and turn
//! how it ended into the exit status.

use clap::Parser;
use grokstack::cli::{Cli, Command};
use grokstack::commands::{self, Ending};

// Activation tensors of hundreds of MB are allocated and freed every step. glibc returns
// them to the kernel (munmap) and faults them back in, zeroed, on the next step; jemalloc
// keeps freed pages for reuse, which removes most of that system time.
#[cfg(target_os = "linux")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Never give freed pages back: a stack's working set is the same every epoch, so what the
/// first epoch touched is reused by all the others instead of being faulted in again.
#[cfg(target_os = "linux")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf = MallocConf(c"dirty_decay_ms:-1,muzzy_decay_ms:-1".as_ptr());

/// jemalloc reads its options from a `const char *` named `malloc_conf`.
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);
// SAFETY: the pointer is to a static, immutable, NUL-terminated byte string.
unsafe impl Sync for MallocConf {}

/// Exit code of an interrupted sweep (as a shell reports a process ended by SIGINT).
const EXIT_INTERRUPTED: i32 = 130;
/// Exit code of a merge that wrote what the shards have, with runs missing or duplicated.
const EXIT_INCOMPLETE_MERGE: i32 = 2;

fn main() {
    let ending = match Cli::parse().command {
        Command::Train(args) => commands::train::run(args),
        Command::Merge(args) => commands::merge::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Analyze(args) => commands::analyze::run(args),
        Command::Slurm(args) => commands::slurm::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    let code = match ending {
        Ok(Ending::Success) => 0,
        Ok(Ending::Interrupted) => EXIT_INTERRUPTED,
        Ok(Ending::IncompleteMerge) => EXIT_INCOMPLETE_MERGE,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    };
    std::process::exit(code);
}
