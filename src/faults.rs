//! Fault points for the crash tests: `GROKSTACK_FAULT=pause:POINT[#N]` makes the process stop
//! and wait (for the test to SIGKILL it) the N-th time (default: first) it reaches POINT;
//! `fail:POINT[#N]` makes that operation fail as a full disk would. Not a user feature: the
//! variable is read once, and without it a point costs one load of a static.
//!
//! Points: `step` (after every optimizer step) and `write:FILE` (an atomic write of FILE,
//! e.g. `write:runs.parquet`, after its temporary file is written and fsynced, before the
//! rename that publishes it).

use anyhow::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub const ENV: &str = "GROKSTACK_FAULT";

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Pause,
    Fail,
}

struct Fault {
    action: Action,
    point: String,
    hit: usize,
    seen: AtomicUsize,
}

fn configured() -> Option<&'static Fault> {
    static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let text = std::env::var(ENV).ok()?;
            let (action, rest) = text.split_once(':')?;
            let action = match action {
                "pause" => Action::Pause,
                "fail" => Action::Fail,
                _ => return None,
            };
            let (point, hit) = match rest.rsplit_once('#') {
                Some((point, n)) => (point, n.parse().ok()?),
                None => (rest, 1),
            };
            Some(Fault { action, point: point.to_string(), hit, seen: AtomicUsize::new(0) })
        })
        .as_ref()
}

/// Whether a fault is configured (the process runs under a crash test).
pub fn configured_any() -> bool {
    configured().is_some()
}

/// Reached `point`: pause, fail or (almost always) do nothing.
pub fn point(point: &str) -> Result<()> {
    let Some(fault) = configured() else { return Ok(()) };
    if fault.point != point || fault.seen.fetch_add(1, Ordering::SeqCst) + 1 != fault.hit {
        return Ok(());
    }
    match fault.action {
        Action::Fail => Err(std::io::Error::from_raw_os_error(libc::ENOSPC).into()),
        Action::Pause => {
            eprintln!("grokstack-fault: paused at {point}");
            // Wait to be killed. A Ctrl-C or SIGTERM lets the process go on, so that the
            // interrupt path (checkpoint, then exit) can be tested from a known step too.
            while !crate::interrupt::requested() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(())
        }
    }
}
