//! Interop harness: runs real gateways in Linux network namespaces and checks what crosses.
//!
//! Owns: the four-namespace site-to-site topology ([`netns`]), child processes that die
//! with their guard ([`process`]), the strongSwan reference peer ([`strongswan`]), the
//! vpngw daemon under test ([`vpngw`]), WAN captures ([`capture`]) and traffic checks
//! ([`traffic`]), continuous loss/gap measurement ([`stream`]), two peer gateways in front of
//! one remote LAN for active/standby tunnels ([`twopeers`]), kernel drop counters
//! ([`kernel_drops`]), several subnets per site ([`subnets`]), SA histories across rekeys ([`sa_history`]), IKE exchanges read off the capture ([`ikewire`]) and what a
//! process costs in memory and CPU ([`procstat`]). Every resource is an RAII guard: dropping it (also while a test panics)
//! kills the processes it started, by PID, and deletes the namespaces it created.
//!
//! Does not own: any protocol logic. The harness only drives the binaries (`vpngw`,
//! `vpnctl`, `charon`, `swanctl`, `tcpdump`, `ping`, `nettool`) and reads their output.
#![forbid(unsafe_code)]

pub mod capture;
pub mod hold;
pub mod ikewire;
pub mod kernel_drops;
pub mod netns;
pub mod process;
pub mod procstat;
pub mod sa_history;
pub mod scenario;
pub mod stream;
pub mod strongswan;
pub mod subnets;
pub mod traffic;
pub mod twopeers;
pub mod vpngw;

use std::path::{Path, PathBuf};

pub use testkit::{command, is_root, run, unique_id, wait_for, Error, Result};

/// Returns `Err` with the formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Error::new(format!($($arg)+)));
        }
    };
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
}
