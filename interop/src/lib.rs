//! Interop harness: runs real gateways in Linux network namespaces and checks what crosses.
//!
//! Owns: the four-namespace site-to-site topology ([`netns`]), child processes that die
//! with their guard ([`process`]), the strongSwan reference peer ([`strongswan`]), the
//! vpngw daemon under test ([`vpngw`]), WAN captures ([`capture`]) and traffic checks
//! ([`traffic`]), continuous loss/gap measurement ([`stream`]), SA histories across
//! rekeys ([`sawatch`]), IKE exchanges read off the capture ([`ikewire`]) and what a
//! process costs in memory and CPU ([`procstat`]). Every resource is an RAII guard: dropping it (also while a test panics)
//! kills the processes it started, by PID, and deletes the namespaces it created.
//!
//! Does not own: any protocol logic. The harness only drives the binaries (`vpngw`,
//! `vpnctl`, `charon`, `swanctl`, `tcpdump`, `ping`, `nettool`) and reads their output.
#![forbid(unsafe_code)]

pub mod capture;
pub mod hold;
pub mod ikewire;
pub mod netns;
pub mod process;
pub mod procstat;
pub mod sawatch;
pub mod scenario;
pub mod stream;
pub mod strongswan;
pub mod traffic;
pub mod vpngw;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A harness failure: what was attempted and what went wrong, ready to print.
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

// Debug prints the message as is, so `Result` returned from a test reads well.
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

/// Result of harness operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns `Err` with the formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Error::new(format!($($arg)+)));
        }
    };
}

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

/// Polls `probe` every 100 ms until it yields `Some`, or fails after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::new(format!("timed out after {timeout:?} waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when this process runs with effective UID 0 (the scenarios need root).
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

/// A short identifier unique to this process and call (6 hex digits), for namespace names.
pub fn unique_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = std::process::id().wrapping_mul(2_654_435_761) ^ nanos ^ n.wrapping_mul(40_503);
    format!("{:06x}", mix & 0xff_ffff)
}

/// Locates one of the project's binaries: `$ENV_VAR` if set, else `target/<profile>/NAME`
/// next to the running executable (tests live in `target/<profile>/deps/`).
pub fn locate_binary(name: &str, env_var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        ensure!(p.is_file(), "{env_var}={} is not a file", p.display());
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        candidates.push(dir.join(name));
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        Error::new(format!(
            "binary {name} not found (looked in {candidates:?}); build it first \
                 (cargo build --release --workspace --bins) or set {env_var}"
        ))
    })
}

/// Paths of the binaries the scenarios drive.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The gateway daemon.
    pub vpngw: PathBuf,
    /// Its control CLI.
    pub vpnctl: PathBuf,
    /// The traffic tool of this crate.
    pub nettool: PathBuf,
}

impl Binaries {
    /// Locates vpngw and vpnctl (see [`locate_binary`]; env `VPNGW_BIN` and `VPNCTL_BIN`
    /// win) and takes nettool's path from the caller (tests know cargo's copy).
    pub fn locate(nettool: PathBuf) -> Result<Self> {
        Ok(Self {
            vpngw: locate_binary("vpngw", "VPNGW_BIN")?,
            vpnctl: locate_binary("vpnctl", "VPNCTL_BIN")?,
            nettool,
        })
    }
}

/// Reads a file as text (lossy), or an empty string if it does not exist.
pub fn read_text(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 3), "");
    }

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
}
