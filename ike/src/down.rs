//! Why an IKE SA went away ([`DownReason`], carried by `Event::IkeDown`) and how that
//! decides when to try again (`Failure`).

use std::fmt;

/// Why an IKE SA went down. `Display` gives the text logs and `vpnctl` show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// The peer answered IKE_SA_INIT with NO_PROPOSAL_CHOSEN.
    ProposalsRejected,
    /// The peer wants a key exchange group we do not offer (INVALID_KE_PAYLOAD).
    KeGroupRefused,
    /// The peer answered IKE_SA_INIT with this error notify.
    InitRefused(u16),
    /// The peer answered IKE_AUTH with this error notify.
    AuthRefused(u16),
    /// The peer chose an IKE proposal we did not offer.
    UnofferedProposal,
    /// IKEv1 Main Mode: the peer's authentication did not verify, or the peer never
    /// answered ours; with pre-shared keys nearly always different keys.
    PskMismatch,
    /// The peer's identity is not the configured one.
    IdentityMismatch,
    /// The peer's AUTH payload did not verify.
    PeerAuthFailed,
    /// Our IKE_SA_INIT came back with COOKIEs too often.
    CookieLoop,
    /// The IKE_SA_INIT response lacked a payload we need.
    MalformedInitResponse,
    /// The IKE_SA_INIT response contradicts our request.
    InconsistentInitResponse,
    /// The IKE_SA_INIT response has no responder SPI.
    NoResponderSpi,
    /// The peer's KE value is invalid.
    InvalidKe,
    /// The SK payload cipher could not be set up.
    CipherSetup,
    /// The IKE_AUTH response lacked a payload we need.
    MalformedAuthResponse,
    /// The IKE_AUTH request lacked a payload we need.
    MalformedAuthRequest,
    /// No keys to compute our AUTH payload with.
    NoKeys,
    /// A responder's IKE SA was not authenticated in time.
    HalfOpenTimeout,
    /// Dead peer detection: liveness checks went unanswered.
    DeadPeer,
    /// The peer did not answer this request (the exchange's name).
    Unanswered(&'static str),
    /// The peer deleted the IKE SA.
    DeletedByPeer,
    /// We deleted the IKE SA and the peer confirmed.
    Deleted,
    /// We deleted the IKE SA and the peer did not answer.
    DeleteUnanswered,
    /// An IKE SA replaced by a rekey was not deleted by the peer in time.
    RekeyedExpired,
    /// The IKE SA reached its hard lifetime without a rekey.
    LifetimeExpired,
    /// A new IKE SA came up after the peer seemed to have restarted.
    ReplacedAfterRestart,
    /// The peer sent INITIAL_CONTACT with a new IKE SA.
    ReplacedByInitialContact,
    /// Our new SPI was in use (2^-64).
    SpiCollision,
    /// A half-open IKE SA with a valid COOKIE took its place.
    Evicted,
    /// `vpnctl down` or shutdown.
    Operator,
    /// A configuration reload removed the tunnel or changed its settings.
    Reconfigured,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = crate::notify::name;
        match self {
            Self::ProposalsRejected => f.write_str("peer rejected our IKE proposals (NO_PROPOSAL_CHOSEN)"),
            Self::KeGroupRefused => f.write_str("INVALID_KE_PAYLOAD"),
            Self::InitRefused(k) => write!(f, "peer refused IKE_SA_INIT ({})", name(*k)),
            Self::AuthRefused(k) => write!(f, "peer refused IKE_AUTH ({})", name(*k)),
            Self::UnofferedProposal => f.write_str("peer chose an IKE proposal we did not offer"),
            Self::PskMismatch => f.write_str("authentication failed (pre-shared key mismatch?)"),
            Self::IdentityMismatch => f.write_str("peer identity mismatch"),
            Self::PeerAuthFailed => f.write_str("peer failed authentication"),
            Self::CookieLoop => f.write_str("COOKIE loop"),
            Self::MalformedInitResponse => f.write_str("malformed IKE_SA_INIT response"),
            Self::InconsistentInitResponse => f.write_str("inconsistent IKE_SA_INIT response"),
            Self::NoResponderSpi => f.write_str("IKE_SA_INIT response without responder SPI"),
            Self::InvalidKe => f.write_str("invalid KE from peer"),
            Self::CipherSetup => f.write_str("SK cipher setup failed"),
            Self::MalformedAuthResponse => f.write_str("malformed IKE_AUTH response"),
            Self::MalformedAuthRequest => f.write_str("malformed IKE_AUTH request"),
            Self::NoKeys => f.write_str("no keys"),
            Self::HalfOpenTimeout => f.write_str("half-open IKE SA timed out"),
            Self::DeadPeer => f.write_str("dead peer detected"),
            Self::Unanswered(what) => write!(f, "peer did not answer {what}"),
            Self::DeletedByPeer => f.write_str("deleted by peer"),
            Self::Deleted => f.write_str("IKE SA deleted"),
            Self::DeleteUnanswered => f.write_str("IKE SA deleted (no DELETE response)"),
            Self::RekeyedExpired => f.write_str("rekeyed IKE SA expired"),
            Self::LifetimeExpired => f.write_str("IKE SA lifetime expired"),
            Self::ReplacedAfterRestart => f.write_str("replaced after the peer restarted"),
            Self::ReplacedByInitialContact => f.write_str("replaced after INITIAL_CONTACT"),
            Self::SpiCollision => f.write_str("SPI collision"),
            Self::Evicted => f.write_str("evicted by a half-open IKE SA with a valid COOKIE"),
            Self::Operator => f.write_str("terminated by operator"),
            Self::Reconfigured => f.write_str("tunnel removed or changed by a configuration reload"),
        }
    }
}

/// Why an IKE SA was given up, which also decides when to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The peer or we refused the proposals, or authentication failed: retry slowly.
    Negotiation(DownReason),
    /// Anything transient (timeouts, malformed answers): retry with backoff.
    Transient(DownReason),
    /// Deleted on purpose (by us or the peer).
    Deleted(DownReason),
    /// The IKE SA reached its hard lifetime without a rekey.
    Expired(DownReason),
}

impl Failure {
    pub(crate) fn reason(self) -> DownReason {
        match self {
            Self::Negotiation(r) | Self::Transient(r) | Self::Deleted(r) | Self::Expired(r) => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DownReason;

    #[test]
    fn reasons_read_as_before() {
        assert_eq!(DownReason::DeadPeer.to_string(), "dead peer detected");
        assert_eq!(DownReason::AuthRefused(24).to_string(), "peer refused IKE_AUTH (AUTHENTICATION_FAILED)");
        assert_eq!(DownReason::InitRefused(9999).to_string(), "peer refused IKE_SA_INIT (notify 9999)");
        assert_eq!(DownReason::Unanswered("IKE_AUTH").to_string(), "peer did not answer IKE_AUTH");
    }
}
