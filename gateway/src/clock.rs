//! The gateway's clock: CLOCK_BOOTTIME as an [`ipsec_types::Timestamp`]. `ike` and
//! `esp` never read a clock; every `handle_*`/`seal`/`open` call gets `now` from here.

use ipsec_types::Timestamp;
use std::time::Duration;

/// A source of `now`.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// CLOCK_BOOTTIME: monotonic and counting through suspend.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootClock;

impl Clock for BootClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(crate::sys::boottime_nanos())
    }
}

/// How long from `now` until `deadline` (zero if it has passed).
pub fn until(now: Timestamp, deadline: Timestamp) -> Duration {
    deadline.saturating_since(now)
}

/// Whole seconds from `then` to `now` (zero if `then` is in the future).
pub fn secs_since(now: Timestamp, then: Timestamp) -> u64 {
    now.saturating_since(then).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_advances() {
        let c = BootClock;
        let a = c.now();
        let b = c.now();
        assert!(b >= a && a > Timestamp::ZERO);
        assert_eq!(until(Timestamp::from_secs(5), Timestamp::from_secs(3)), Duration::ZERO);
        assert_eq!(until(Timestamp::from_secs(3), Timestamp::from_secs(5)), Duration::from_secs(2));
        assert_eq!(secs_since(Timestamp::from_millis(10_999), Timestamp::from_secs(1)), 9);
    }
}
