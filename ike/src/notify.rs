//! Notify message types (RFC 7296 section 3.10.1) we send or act on, their names for
//! logs, and which of them concern only a CHILD SA.

pub(crate) const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
pub(crate) const INVALID_IKE_SPI: u16 = 4;
pub(crate) const INVALID_SYNTAX: u16 = 7;
pub(crate) const NO_PROPOSAL_CHOSEN: u16 = 14;
pub(crate) const INVALID_KE_PAYLOAD: u16 = 17;
pub(crate) const AUTHENTICATION_FAILED: u16 = 24;
pub(crate) const SINGLE_PAIR_REQUIRED: u16 = 34;
pub(crate) const NO_ADDITIONAL_SAS: u16 = 35;
pub(crate) const INTERNAL_ADDRESS_FAILURE: u16 = 36;
pub(crate) const FAILED_CP_REQUIRED: u16 = 37;
pub(crate) const TS_UNACCEPTABLE: u16 = 38;
pub(crate) const TEMPORARY_FAILURE: u16 = 43;
pub(crate) const CHILD_SA_NOT_FOUND: u16 = 44;
pub(crate) const INITIAL_CONTACT: u16 = 16384;
pub(crate) const NAT_DETECTION_SOURCE_IP: u16 = 16388;
pub(crate) const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
pub(crate) const COOKIE: u16 = 16390;
pub(crate) const REKEY_SA: u16 = 16393;
/// RFC 7383 2.3: IKE fragmentation supported (IKE_SA_INIT, both directions, no data).
pub(crate) const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;

/// Name for logs.
pub(crate) fn name(kind: u16) -> String {
    match kind {
        UNSUPPORTED_CRITICAL_PAYLOAD => "UNSUPPORTED_CRITICAL_PAYLOAD".into(),
        INVALID_IKE_SPI => "INVALID_IKE_SPI".into(),
        5 => "INVALID_MAJOR_VERSION".into(),
        INVALID_SYNTAX => "INVALID_SYNTAX".into(),
        9 => "INVALID_MESSAGE_ID".into(),
        11 => "INVALID_SPI".into(),
        NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN".into(),
        INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD".into(),
        AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED".into(),
        SINGLE_PAIR_REQUIRED => "SINGLE_PAIR_REQUIRED".into(),
        NO_ADDITIONAL_SAS => "NO_ADDITIONAL_SAS".into(),
        INTERNAL_ADDRESS_FAILURE => "INTERNAL_ADDRESS_FAILURE".into(),
        FAILED_CP_REQUIRED => "FAILED_CP_REQUIRED".into(),
        TS_UNACCEPTABLE => "TS_UNACCEPTABLE".into(),
        TEMPORARY_FAILURE => "TEMPORARY_FAILURE".into(),
        CHILD_SA_NOT_FOUND => "CHILD_SA_NOT_FOUND".into(),
        k => format!("notify {k}"),
    }
}

/// Error notifies that concern only the CHILD SA of an IKE_AUTH exchange.
pub(crate) fn is_child_error(kind: u16) -> bool {
    matches!(
        kind,
        NO_PROPOSAL_CHOSEN
            | SINGLE_PAIR_REQUIRED
            | NO_ADDITIONAL_SAS
            | INTERNAL_ADDRESS_FAILURE
            | FAILED_CP_REQUIRED
            | TS_UNACCEPTABLE
            | INVALID_KE_PAYLOAD
    )
}
