//! Ctrl-C and SIGTERM (what a scheduler sends before it preempts a job): the first one asks
//! the trainer to finish its step, write a checkpoint and exit; a second one exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether an interrupt has been asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

#[cfg(unix)]
extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe calls here: an atomic swap, write(2) and _exit(2).
    if REQUESTED.swap(true, Ordering::SeqCst) {
        unsafe { libc::_exit(128 + signal) };
    }
    let message = b"\ngrokstack: interrupted; writing a checkpoint after this step (again to quit without it)\n";
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
}

/// Install the handlers for SIGINT and SIGTERM (the command line does; tests and library
/// users keep the default behaviour).
pub fn install() {
    #[cfg(unix)]
    unsafe {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}
