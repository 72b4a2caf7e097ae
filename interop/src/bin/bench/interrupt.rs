//! Ctrl-C handling without a signal handler (the crate forbids `unsafe`, and the bench
//! must not pull a new dependency into the harness crate).
//!
//! `bench` starts as a *supervisor* that re-runs itself as a *worker* in a new process
//! group, with a pipe as the worker's stdin. Ctrl-C (SIGINT to the terminal's foreground
//! group), SIGTERM or SIGHUP kill the supervisor; its end of the pipe closes; a thread in
//! the worker sees EOF and raises [`stopped`]. The worker and everything it started
//! (charon, vpngw, iperf3) sit in the worker's own process group, so they do not get the
//! terminal's SIGINT: the worker notices the flag at its next poll, returns an error, and
//! its RAII guards stop the daemons by PID and delete the namespaces.
//!
//! If `VG_BENCH_PIDFILE` is set, the supervisor writes the worker's PID there so that
//! `scripts/bench.sh` can wait for the tear-down to finish before it returns.
//!
//! Owns: the supervisor/worker split and the stop flag. Does not own: what is torn down.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Marks the worker process (value irrelevant).
const WORKER_ENV: &str = "VG_BENCH_WORKER";
/// Where the supervisor writes the worker's PID, if set.
const PIDFILE_ENV: &str = "VG_BENCH_PIDFILE";

static STOP: AtomicBool = AtomicBool::new(false);

/// True once the supervisor has gone away (Ctrl-C, SIGTERM, SIGHUP, closed terminal).
pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// In the supervisor: runs the worker to completion and returns its exit code (`Some`).
/// In the worker: starts the stdin watcher and returns `None` (go on and do the work).
///
/// If the worker cannot be spawned, the work runs in this process (`None`) after a
/// warning: then an interrupt kills it without tear-down.
pub fn supervise() -> Option<ExitCode> {
    if std::env::var_os(WORKER_ENV).is_some() {
        std::thread::spawn(watch_stdin);
        return None;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("bench: cannot find my own executable ({e}); running without Ctrl-C tear-down");
            return None;
        }
    };
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1)).env(WORKER_ENV, "1").stdin(Stdio::piped()).process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: cannot start the worker ({e}); running without Ctrl-C tear-down");
            return None;
        }
    };
    if let Some(path) = std::env::var_os(PIDFILE_ENV) {
        if let Err(e) = std::fs::write(&path, format!("{}\n", child.id())) {
            eprintln!("bench: cannot write {PIDFILE_ENV} {}: {e}", std::path::Path::new(&path).display());
        }
    }
    // Held (open) until this process exits or is killed: that is the worker's signal.
    let _pipe = child.stdin.take();
    let code = match child.wait() {
        Ok(st) => st.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            eprintln!("bench: lost the worker: {e}");
            1
        }
    };
    Some(ExitCode::from(code))
}

/// Reads stdin to EOF (or error), then raises the stop flag.
fn watch_stdin() {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    STOP.store(true, Ordering::Relaxed);
    eprintln!("\nbench: interrupted; stopping the gateways and deleting the namespaces ...");
}

/// `Err` once the bench has been interrupted (call between steps).
pub fn check() -> interop::Result<()> {
    if stopped() {
        return Err(interop::Error::new(INTERRUPTED));
    }
    Ok(())
}

/// The error message of an interrupted step.
pub const INTERRUPTED: &str = "interrupted";
