//! Test support shared by the tests of every crate (and the interop harness):
//!
//! - [`skip`]: the one rule for a test that cannot run here: under `CI=true` it fails
//!   with the reason; otherwise it prints one line `SKIPPED <test>: <reason>`, which
//!   `scripts/test.sh` counts. A kernel that lacks a feature prints the same line in
//!   any mode.
//! - [`wait_for`]: the one polling wait, with a bound and a message saying what it
//!   waited for.
//! - [`netns::Netns`]: the one network-namespace guard (deleted on drop, after killing
//!   by PID whatever still runs inside it).
//! - [`packet`]: IPv4/IPv6 packets with UDP, TCP or ICMP, built by etherparse with
//!   correct checksums, and the checks of those checksums.
//! - [`run`], [`command`], [`is_root`], [`find_command`], [`unique_id`]: running
//!   commands and asking about the machine.
//!
//! Does not own: any topology (the interop crate builds those from [`netns::Netns`]) or
//! anything about the gateway's own output.
#![forbid(unsafe_code)]

pub mod netns;
pub mod packet;
pub mod skip;

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use skip::{require, skip, Need, Skip};

/// A test-support failure: what was attempted and what went wrong, ready to print.
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Debug prints the message as is, so a `Result` returned from a test reads well.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self(format!("I/O error: {e}"))
    }
}

/// Result of test-support operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Runs a command to completion; `Err` (with its stderr) unless it exits 0. Returns stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| Error::new(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds a [`Command`] from a program and its arguments.
pub fn command(argv: &[&str]) -> Command {
    let (prog, args) = argv.split_first().map_or(("true", &[][..]), |(p, a)| (*p, a));
    let mut cmd = Command::new(prog);
    cmd.args(args);
    cmd
}

/// How often [`wait_for`] probes.
pub const POLL: Duration = Duration::from_millis(100);

/// Polls `probe` every [`POLL`] until it yields `Some`, or fails after `timeout` with
/// `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> Result<T> {
    wait_for_every(POLL, timeout, what, probe)
}

/// [`wait_for`], probing every `every` (for cheap in-memory probes).
pub fn wait_for_every<T>(
    every: Duration,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::new(format!("timed out after {timeout:?} waiting for {what}")));
        }
        std::thread::sleep(every);
    }
}

/// True when this process runs with effective UID 0.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Where the program `name` is: the first match in `$PATH`, then in the sbin and bin
/// directories (a root shell without a login environment may lack the sbins on its path).
pub fn find_command(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A short identifier unique to this process and call (6 hex digits), for namespace names.
pub fn unique_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = std::process::id().wrapping_mul(2_654_435_761) ^ nanos ^ n.wrapping_mul(40_503);
    format!("{:06x}", mix & 0xff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_differ_and_are_short() {
        let a = unique_id();
        let b = unique_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 6);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn run_reports_failure_with_stderr() {
        let err = run(&mut command(&["sh", "-c", "echo oops >&2; exit 3"])).unwrap_err();
        assert!(err.to_string().contains("oops"), "{err}");
        assert_eq!(run(&mut command(&["sh", "-c", "echo hi"])).unwrap(), "hi\n");
    }

    #[test]
    fn wait_for_returns_the_value_or_says_what_it_waited_for() {
        let mut n = 0;
        let got = wait_for_every(Duration::from_millis(1), Duration::from_secs(10), "n to reach 3", || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(got.unwrap(), 3);
        let err = wait_for(Duration::ZERO, "nothing", || None::<()>).unwrap_err();
        assert!(err.to_string().contains("waiting for nothing"), "{err}");
    }

    #[test]
    fn finds_sh_but_not_a_missing_program() {
        assert!(find_command("sh").is_some());
        assert!(find_command("no-such-program-here").is_none());
    }
}
