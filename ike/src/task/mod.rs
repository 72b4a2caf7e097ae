//! One module per exchange. Each holds the role-specific halves: the initiator's state
//! between its request and the response (`Initiator`), and the responder's processing
//! of a request into its response (`process_request` / `respond`).
//!
//! Tasks decide protocol questions (what to send, whether to accept what came back);
//! they do not own message IDs, retransmission or SPI routing (see `sa`, `endpoint`).

pub(crate) mod create_child;
pub(crate) mod ike_auth;
pub(crate) mod ike_init;
pub(crate) mod ike_rekey;
pub(crate) mod informational;
pub(crate) mod natd;
#[cfg(test)]
mod rekey_tests;
#[cfg(test)]
mod tests;

use crate::message::payload::Notify;
use crate::message::Payload;
use ipsec_types::Spi;

/// An exchange we initiated and whose response we await, with the state its
/// `process_response` needs (the `Initiator` halves).
pub(crate) enum ActiveTask {
    IkeInit(ike_init::Initiator),
    IkeAuth(ike_auth::Initiator),
    IkeDelete,
    ChildDelete(Spi),
    /// CREATE_CHILD_SA for a CHILD SA (new or rekey).
    ChildCreate(Box<create_child::Initiator>),
    /// CREATE_CHILD_SA rekeying the IKE SA.
    IkeRekey(Box<ike_rekey::Initiator>),
    /// An empty INFORMATIONAL request (dead peer detection).
    Liveness,
}

impl ActiveTask {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::IkeInit(_) => "IKE_SA_INIT",
            Self::IkeAuth(_) => "IKE_AUTH",
            Self::IkeDelete => "INFORMATIONAL (DELETE IKE SA)",
            Self::ChildDelete(_) => "INFORMATIONAL (DELETE CHILD SA)",
            Self::ChildCreate(_) => "CREATE_CHILD_SA",
            Self::IkeRekey(_) => "CREATE_CHILD_SA (IKE SA rekey)",
            Self::Liveness => "INFORMATIONAL (liveness)",
        }
    }
}

/// The notifies of a message.
pub(crate) fn notifies(payloads: &[Payload]) -> impl Iterator<Item = &Notify> {
    payloads.iter().filter_map(|p| match p {
        Payload::Notify(n) => Some(n),
        _ => None,
    })
}

/// The first error notify (type below 16384), if any.
pub(crate) fn error_notify(payloads: &[Payload]) -> Option<&Notify> {
    notifies(payloads).find(|n| n.kind < 16384)
}
