//! The network-namespace guard every root test uses.
//!
//! Owns: creating a namespace (loopback up, IPv6 off), running commands in it, and on
//! drop killing, by PID, whatever still runs inside (only processes the test started
//! there: the name is the test's alone), then deleting it.

use std::process::{Command, Stdio};

use crate::{command, find_command, run, Result};

/// The `ip` program (`ip` on the path if nowhere else).
pub fn ip_program() -> String {
    find_command("ip").map_or_else(|| "ip".to_owned(), |p| p.to_string_lossy().into_owned())
}

/// One network namespace; dropping it deletes the namespace.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` with loopback up and IPv6 off (keeps captures to IPv4).
    pub fn create(name: &str) -> Result<Self> {
        run(command(&[&ip_program(), "netns", "add", name]).stderr(Stdio::piped()))?;
        let ns = Self { name: name.to_owned() };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME argv...` (exec's the program, so the child's PID is its own).
    pub fn exec(&self, argv: &[&str]) -> Command {
        let mut cmd = command(&[&ip_program(), "netns", "exec", &self.name]);
        cmd.args(argv);
        cmd
    }

    /// Runs a command inside the namespace; its stdout, or `Err` unless it exits 0.
    pub fn run(&self, argv: &[&str]) -> Result<String> {
        run(&mut self.exec(argv))
    }

    /// `ip -n NAME args...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut cmd = command(&[&ip_program(), "-n", &self.name]);
        cmd.args(args);
        run(&mut cmd)
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")]).map(drop)
    }

    /// PIDs of processes living in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        run(&mut command(&[&ip_program(), "netns", "pids", &self.name]))
            .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Anything still inside was started by this test (the name is ours alone).
        for pid in self.pids() {
            let _ = run(command(&["kill", "-s", "KILL", &pid.to_string()]).stderr(Stdio::null()));
        }
        let _ = run(&mut command(&[&ip_program(), "netns", "del", &self.name]));
    }
}
