//! What a process costs, read from `/proc/PID`: CPU time (`utime + stime` of all its
//! threads, from `stat`), resident memory now and at its peak (`VmRSS`, `VmHWM` of
//! `status`), and resetting that peak (`clear_refs`) so it covers one measured window.

use std::time::Instant;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// CPU seconds used so far (user + system, all threads).
    pub cpu_s: f64,
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// Peak resident set since start or the last [`reset_peak`], KiB.
    pub hwm_kib: u64,
}

/// Clock ticks per second of the `stat` CPU fields (`getconf CLK_TCK`; 100 on Linux).
pub fn clock_ticks() -> f64 {
    interop::run(&mut interop::command(&["getconf", "CLK_TCK"]))
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// Reads `pid` now; `None` once it is gone.
pub fn sample(pid: u32, ticks_per_s: f64) -> Option<Sample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Sample {
        at,
        cpu_s: cpu_ticks(&stat)? as f64 / ticks_per_s,
        rss_kib: status_kib(&status, "VmRSS")?,
        hwm_kib: status_kib(&status, "VmHWM")?,
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/PID/status` (`VmRSS:   1234 kB`).
pub fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// Resets `VmHWM` to the current resident set (`echo 5 > /proc/PID/clear_refs`, root).
pub fn reset_peak(pid: u32) -> interop::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .map_err(|e| interop::Error::new(format!("cannot reset the peak RSS of {pid}: {e}")))
}

/// MiB from KiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "4242 (vpngw (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 37 0 0 20 0 5 0 9 1 1";
        assert_eq!(cpu_ticks(stat), Some(287));
        assert_eq!(cpu_ticks("1 (x) S"), None);
        let status = "Name:\tvpngw\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn samples_this_process_and_resets_its_peak() {
        let me = std::process::id();
        let s = sample(me, clock_ticks()).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib, "{s:?}");
        // clear_refs needs the right to ptrace the process: always true for ourselves.
        reset_peak(me).expect("clear_refs on ourselves");
        let after = sample(me, clock_ticks()).expect("own /proc entry");
        assert!(after.hwm_kib <= s.hwm_kib.max(after.rss_kib), "{after:?}");
    }
}
