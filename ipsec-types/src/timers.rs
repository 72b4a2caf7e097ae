//! The lifetime and liveness settings of one peer: when its SAs are rekeyed and when
//! they expire ([`SaTimers`]), and how a silent peer is found dead ([`Dpd`]).
//!
//! Declared once, here: the configuration parses `[[tunnel]]` keys into these structs,
//! the gateway hands them to the IKE engine unchanged, and the engine schedules by them.
//! The [`Default`] values are the documented defaults of the configuration file.

use std::time::Duration;

/// When the SAs of one peer are rekeyed and when they expire.
///
/// Each rekey time is followed by a hard lifetime that is always longer: an SA not
/// rekeyed by then is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaTimers {
    /// Rekeying of the IKE SA starts this long after it was established, less a random
    /// jitter (default 4 h).
    pub ike_rekey_time: Duration,
    /// Hard lifetime of the IKE SA: deleted if not rekeyed by then (default
    /// `ike_rekey_time` + 10 %); longer than `ike_rekey_time`.
    pub ike_life_time: Duration,
    /// Rekeying of a CHILD SA starts this long after it was established, less a random
    /// jitter (default 1 h).
    pub child_rekey_time: Duration,
    /// Hard lifetime of a CHILD SA (default `child_rekey_time` + 10 %); longer than
    /// `child_rekey_time`.
    pub child_life_time: Duration,
    /// Rekeying starts up to this percentage of the rekey time early, chosen at random
    /// per SA, so peers with equal settings rarely rekey at once (default 10; below 100).
    pub rekey_jitter_percent: u8,
    /// Rekey a CHILD SA after this many inner bytes, counted by the datapath
    /// (`None`: off, the default).
    pub child_rekey_bytes: Option<u64>,
    /// Rekey a CHILD SA after this many packets, counted by the datapath
    /// (`None`: off, the default).
    pub child_rekey_packets: Option<u64>,
}

impl SaTimers {
    /// Default [`SaTimers::ike_rekey_time`].
    pub const DEFAULT_IKE_REKEY_TIME: Duration = Duration::from_secs(4 * 3600);
    /// Default [`SaTimers::child_rekey_time`].
    pub const DEFAULT_CHILD_REKEY_TIME: Duration = Duration::from_secs(3600);
    /// Default [`SaTimers::rekey_jitter_percent`].
    pub const DEFAULT_REKEY_JITTER_PERCENT: u8 = 10;

    /// The hard lifetime that goes with `rekey_time` when none is given: the rekey
    /// time plus 10 %.
    pub fn default_life_time(rekey_time: Duration) -> Duration {
        rekey_time.saturating_add(rekey_time / 10)
    }
}

impl Default for SaTimers {
    fn default() -> Self {
        Self {
            ike_rekey_time: Self::DEFAULT_IKE_REKEY_TIME,
            ike_life_time: Self::default_life_time(Self::DEFAULT_IKE_REKEY_TIME),
            child_rekey_time: Self::DEFAULT_CHILD_REKEY_TIME,
            child_life_time: Self::default_life_time(Self::DEFAULT_CHILD_REKEY_TIME),
            rekey_jitter_percent: Self::DEFAULT_REKEY_JITTER_PERCENT,
            child_rekey_bytes: None,
            child_rekey_packets: None,
        }
    }
}

/// Dead peer detection (RFC 7296 section 2.4): liveness checks on a silent peer, and
/// what happens once it is declared dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dpd {
    /// Send a liveness check (an empty INFORMATIONAL) when nothing was heard from the
    /// peer for this long (default 30 s; `None`: dead peer detection off).
    pub delay: Option<Duration>,
    /// How long an unanswered liveness check is retransmitted before the peer is
    /// declared dead (default 150 s).
    pub timeout: Duration,
    /// What happens to a dead peer's SAs (default [`DpdAction::Restart`]).
    pub action: DpdAction,
}

impl Dpd {
    /// Default [`Dpd::delay`].
    pub const DEFAULT_DELAY: Duration = Duration::from_secs(30);
    /// Default [`Dpd::timeout`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(150);
}

impl Default for Dpd {
    fn default() -> Self {
        Self { delay: Some(Self::DEFAULT_DELAY), timeout: Self::DEFAULT_TIMEOUT, action: DpdAction::default() }
    }
}

/// What to do once dead peer detection declares the peer dead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DpdAction {
    /// Delete the SAs and initiate again until the peer answers (the default).
    #[default]
    Restart,
    /// Delete the SAs and do not initiate again; the peer may initiate.
    Clear,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let t = SaTimers::default();
        let secs = Duration::from_secs;
        assert_eq!((t.ike_rekey_time, t.ike_life_time), (secs(4 * 3600), secs(4 * 3600 + 24 * 60)));
        assert_eq!((t.child_rekey_time, t.child_life_time), (secs(3600), secs(3600 + 6 * 60)));
        assert_eq!((t.rekey_jitter_percent, t.child_rekey_bytes, t.child_rekey_packets), (10, None, None));
        let d = Dpd::default();
        assert_eq!((d.delay, d.timeout, d.action), (Some(secs(30)), secs(150), DpdAction::Restart));
    }

    #[test]
    fn default_life_is_rekey_plus_ten_percent() {
        assert_eq!(SaTimers::default_life_time(Duration::from_secs(3600)), Duration::from_secs(3960));
        assert!(SaTimers::default_life_time(Duration::from_secs(1)) > Duration::from_secs(1));
        assert_eq!(SaTimers::default_life_time(Duration::MAX), Duration::MAX);
    }
}
