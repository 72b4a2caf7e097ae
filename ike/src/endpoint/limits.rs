//! Resource limits that keep unauthenticated floods and greedy peers from costing more
//! than they carry, and the counters of what the endpoint refused.
//!
//! The numbers are set in `[gateway]` (see the README's configuration reference); the
//! defaults follow strongSwan's (`cookie_threshold`, `block_threshold`) where it has one.

/// Limits on IKE state. Zero in a cap means "refuse everything of that kind" only for
/// `cookie_threshold` (COOKIEs always required); the other caps are at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Half-open IKE SAs (responder, before IKE_AUTH) at or above which a new
    /// IKE_SA_INIT must carry a valid COOKIE (RFC 7296 2.6).
    pub cookie_threshold: usize,
    /// Half-open IKE SAs the whole gateway keeps at most; beyond, IKE_SA_INIT is dropped.
    pub half_open_max: usize,
    /// Half-open IKE SAs from one source address at most.
    pub half_open_per_source: usize,
    /// CHILD SAs one IKE SA carries at most (rekey successors included); the excess is
    /// refused with NO_ADDITIONAL_SAS.
    pub child_sa_max: usize,
    /// IKE SAs (any state) one tunnel's peer may hold with us at once; further
    /// IKE_SA_INITs and IKE rekeys are refused.
    pub ike_sa_per_peer_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cookie_threshold: DEFAULT_COOKIE_THRESHOLD,
            half_open_max: DEFAULT_HALF_OPEN_MAX,
            half_open_per_source: DEFAULT_HALF_OPEN_PER_SOURCE,
            child_sa_max: DEFAULT_CHILD_SA_MAX,
            ike_sa_per_peer_max: DEFAULT_IKE_SA_PER_PEER_MAX,
        }
    }
}

/// Default of [`Limits::cookie_threshold`] (strongSwan's `cookie_threshold`).
pub const DEFAULT_COOKIE_THRESHOLD: usize = 10;
/// Default of [`Limits::half_open_max`].
pub const DEFAULT_HALF_OPEN_MAX: usize = 1000;
/// Default of [`Limits::half_open_per_source`] (strongSwan's `block_threshold`).
pub const DEFAULT_HALF_OPEN_PER_SOURCE: usize = 5;
/// Default of [`Limits::child_sa_max`].
pub const DEFAULT_CHILD_SA_MAX: usize = 32;
/// Default of [`Limits::ike_sa_per_peer_max`] (an IKE SA, its rekey successor, a
/// collision's loser and a restart's replacement fit).
pub const DEFAULT_IKE_SA_PER_PEER_MAX: usize = 5;

/// IKE datagrams and requests the endpoint refused, by reason. Counted, never logged per
/// datagram (logs of unauthenticated input are rate-limited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IkeDrops {
    /// Did not parse (truncated, bad lengths or counts, too many payloads).
    pub malformed: u64,
    /// For an IKE SA we do not know, or from an address with no tunnel.
    pub unknown_spi: u64,
    /// IKE_SA_INIT answered with a COOKIE request instead of state (not a drop of a
    /// valid peer: it comes back with the COOKIE).
    pub cookie_required: u64,
    /// IKE_SA_INIT dropped because a half-open cap (global or per source) or the IKE
    /// SAs-per-peer cap was reached.
    pub half_open_cap: u64,
    /// Answers (INVALID_IKE_SPI, refusals) not sent because their rate limit was reached.
    pub rate_limited: u64,
    /// IKE_SA_INIT or CHILD SA refused: no acceptable proposal (NO_PROPOSAL_CHOSEN).
    pub refused_proposal: u64,
    /// CHILD SAs refused because the IKE SA holds `child_sa_max` already.
    pub child_sa_cap: u64,
    /// COOKIE notifies sent.
    pub cookies_sent: u64,
    /// IKE fragments (RFC 7383) dropped as malformed: Fragment Number or Total
    /// Fragments zero or inconsistent, fewer Total Fragments than those held, on an IKE
    /// SA without keys or that did not negotiate fragmentation, or a reassembled message
    /// that does not parse.
    pub fragment_malformed: u64,
    /// IKE fragments whose ICV did not verify (nothing of them was kept).
    pub fragment_unauthenticated: u64,
    /// IKE fragments beyond the caps on fragments or octets of one message in reassembly.
    pub fragment_limit: u64,
    /// IKE fragments already held (duplicates).
    pub fragment_duplicate: u64,
}
