//! Where herd's daemons write their own log lines: stderr, and never fatally. A log line
//! that cannot be written (stderr on a full disk, a pipe whose reader died) is counted and
//! dropped: the daemon keeps serving, and reports the count as a condition. (The one I/O in
//! this crate: the orchestrator and the agent share it.)
//!
//! NB: `tracing-subscriber`'s own fallback for a failed write is an `eprintln!`, which
//! panics when stderr fails too; with this writer no write ever fails, so it never runs.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

static FAILED: AtomicU64 = AtomicU64::new(0);

/// Log lines that could not be written since the process started.
pub fn failed_writes() -> u64 {
    FAILED.load(Ordering::Relaxed)
}

/// The condition a daemon reports once some of its log lines were lost, `None` before.
pub fn condition() -> Option<String> {
    let n = failed_writes();
    (n > 0).then(|| {
        format!(
            "LogWriteFailed: {n} of herd's own log lines could not be written to stderr (full disk, or a log pipe \
             whose reader died); herd keeps running: free the disk or restart the log collector"
        )
    })
}

/// stderr for a log layer (`tracing_subscriber::fmt().with_writer(|| Stderr)`): a failed
/// write is counted and reported as done.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if io::stderr().write_all(buf).is_err() {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// One line on stdout that must not take the process down if stdout is gone (e.g. the
/// orchestrator's "listening on" line after the reader left).
pub fn stdout_line(line: &str) {
    let mut out = io::stdout();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
