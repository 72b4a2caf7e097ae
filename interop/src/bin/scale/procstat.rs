//! One timed reading of a process (CPU seconds, RSS and its peak) from the readers of
//! [`interop::procstat`], which also resets the peak (`clear_refs`) so it covers one
//! measured window.

use std::time::Instant;

pub use interop::procstat::{clock_ticks, mib, reset_peak};

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

/// Reads `pid` now; `None` once it is gone.
pub fn sample(pid: u32, ticks_per_s: f64) -> Option<Sample> {
    let at = Instant::now();
    let ticks = interop::procstat::process_ticks(pid)?;
    let mem = interop::procstat::mem(pid).ok()?;
    Some(Sample { at, cpu_s: ticks as f64 / ticks_per_s, rss_kib: mem.rss_kib, hwm_kib: mem.hwm_kib })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_resets_its_peak() {
        let me = std::process::id();
        let s = sample(me, clock_ticks()).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib, "{s:?}");
        // clear_refs needs the right to ptrace the process: always given for ourselves.
        reset_peak(me).expect("clear_refs on ourselves");
        let after = sample(me, clock_ticks()).expect("own /proc entry");
        assert!(after.hwm_kib <= s.hwm_kib.max(after.rss_kib), "{after:?}");
        assert!(sample(u32::MAX, 100.0).is_none());
    }
}
