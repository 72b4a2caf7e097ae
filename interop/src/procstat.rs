//! What a running process costs: resident memory (now and its peak) and CPU time, read
//! from `/proc/PID/status` and `/proc/PID/stat`; resetting the peak (`clear_refs`) so a
//! phase of a test can be measured on its own; capping its address space (`prlimit`) so
//! a runaway allocation aborts the process instead of starving the machine.
//!
//! Does not own: the process (see [`crate::process`]).

use std::fmt;
use std::path::Path;

use crate::{command, run, Error, Result};

/// Memory figures of `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mem {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most resident since start (or since [`reset_peak`]).
    pub hwm_kib: u64,
    /// `VmSize`: address space in use.
    pub size_kib: u64,
}

impl fmt::Display for Mem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RSS {:.1} MiB (peak {:.1} MiB, address space {:.1} MiB)",
            mib(self.rss_kib),
            mib(self.hwm_kib),
            mib(self.size_kib)
        )
    }
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Parses the `Vm*` lines of `/proc/PID/status` text.
pub fn parse_status(text: &str) -> Option<Mem> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Mem { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")?, size_kib: field("VmSize:")? })
}

/// The process's memory now; `Err` if it is gone.
pub fn mem(pid: u32) -> Result<Mem> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::new(format!("reading {path}: {e}")))?;
    parse_status(&text).ok_or_else(|| Error::new(format!("{path} has no VmRSS/VmHWM/VmSize lines")))
}

/// Resets the process's `VmHWM` to its current RSS (`echo 5 > /proc/PID/clear_refs`), so
/// the next [`mem`] shows the peak of what happened since.
pub fn reset_peak(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").map_err(|e| Error::new(format!("writing {path}: {e}")))
}

/// User plus system CPU time the process (all its threads) used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let ticks = process_ticks(pid).ok_or_else(|| Error::new(format!("cannot read CPU times in /proc/{pid}/stat")))?;
    Ok(ticks as f64 / clock_ticks())
}

/// utime + stime of a process (all its threads), in clock ticks, from `/proc/PID/stat`.
pub fn process_ticks(pid: u32) -> Option<u64> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime (field 14) + stime (field 15) of a `/proc/PID/stat` line; the command name
/// (field 2) may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_proc_stat(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11); // fields 3..=13
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> f64 {
    run(&mut command(&["getconf", "CLK_TCK"]))
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Caps the process's address space (`RLIMIT_AS`, soft and hard) at `bytes` with
/// `prlimit`: an allocation beyond it fails (a Rust process aborts) instead of taking the
/// machine's memory.
pub fn limit_address_space(pid: u32, bytes: u64) -> Result<()> {
    let limit = format!("--as={bytes}:{bytes}");
    run(&mut command(&["prlimit", "--pid", &pid.to_string(), &limit])).map(drop)
}

/// True while `/proc/PID` exists (a zombie counts as gone only once reaped).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tvpngw\nVmPeak:\t  9000 kB\nVmSize:\t  8000 kB\nVmHWM:\t  4096 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(parse_status(status), Some(Mem { rss_kib: 2048, hwm_kib: 4096, size_kib: 8000 }));
        assert_eq!(parse_status("Name: x\n"), None);
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 1 2 3";
        assert_eq!(parse_proc_stat(stat), Some(300));
        assert_eq!(parse_proc_stat("42 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let m = mem(me).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib && m.size_kib >= m.rss_kib, "{m:?}");
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(exists(me));
        assert!(mem(u32::MAX).is_err());
    }
}
