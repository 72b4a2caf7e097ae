//! Child processes owned by a guard: stdout and stderr go to files, dropping the guard
//! terminates the process by its PID (SIGTERM, then SIGKILL) and reaps it.
//!
//! Does not own: namespaces (see [`crate::netns`]) or what the process is; callers build
//! the [`Command`] (typically `ip netns exec NS prog ...`, which execs, so the PID is the
//! program's own).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{read_text, Error, Result};

/// A running child process with its output files.
pub struct Proc {
    label: String,
    child: Child,
    exited: Option<ExitStatus>,
    out: PathBuf,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed, stdout to `DIR/LABEL.out` and stderr to `DIR/LABEL.log`.
    pub fn spawn(label: &str, mut cmd: Command, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = dir.join(format!("{label}.out"));
        let log = dir.join(format!("{label}.log"));
        cmd.stdin(Stdio::null()).stdout(File::create(&out)?).stderr(File::create(&log)?);
        let child = cmd.spawn().map_err(|e| Error::new(format!("cannot start {label} ({cmd:?}): {e}")))?;
        Ok(Self { label: label.to_owned(), child, exited: None, out, log })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The label given at spawn time.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Path of the stderr log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }

    /// What the process wrote to stdout so far.
    pub fn out_text(&self) -> String {
        read_text(&self.out)
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`, ...) if the process has not been reaped.
    ///
    /// The PID cannot have been reused: an exited child stays a zombie until we reap it.
    pub fn signal(&mut self, sig: &str) {
        if self.is_running() {
            let _ = Command::new("kill")
                .args(["-s", sig, &self.pid().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let every = Duration::from_millis(50);
        testkit::wait_for_every(every, timeout, "the process to exit", || self.try_exit()).ok()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status and whether it
    /// exited on its own within the grace period (`false` = it had to be killed).
    pub fn terminate(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        if let Some(st) = self.try_exit() {
            return (Some(st), true);
        }
        self.signal("TERM");
        if let Some(st) = self.wait_timeout(grace) {
            return (Some(st), true);
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
        (self.exited, false)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.terminate(Duration::from_secs(3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vg-proc-test-{tag}-{}", crate::unique_id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn output_goes_to_files_and_exit_is_seen() {
        let dir = tmp("out");
        let mut p = Proc::spawn("echo", command(&["sh", "-c", "echo out; echo err >&2"]), &dir).unwrap();
        let st = p.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(st.success());
        assert_eq!(p.out_text(), "out\n");
        assert_eq!(p.log_text(), "err\n");
        assert!(!p.is_running());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn drop_terminates_a_running_process() {
        let dir = tmp("drop");
        let p = Proc::spawn("sleeper", command(&["sleep", "600"]), &dir).unwrap();
        let pid = p.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(p);
        // Reaped by the guard, so the PID no longer names our child.
        let stat = read_text(Path::new(&format!("/proc/{pid}/cmdline")));
        assert!(!stat.contains("sleep"), "process {pid} still alive: {stat}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn terminate_reports_clean_exit_on_sigterm() {
        let dir = tmp("term");
        let script = "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done";
        let mut p = Proc::spawn("trap", command(&["sh", "-c", script]), &dir).unwrap();
        // Signal only once the trap is installed.
        crate::wait_for(Duration::from_secs(10), "trap installed", || p.out_text().contains("ready").then_some(()))
            .unwrap();
        let (st, clean) = p.terminate(Duration::from_secs(5));
        assert!(clean);
        assert!(st.unwrap().success());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
