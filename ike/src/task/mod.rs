//! One module per exchange. Each holds the role-specific halves: the initiator's state
//! between its request and the response (`Initiator`), and the responder's processing
//! of a request into its response (`process_request` / `respond`).
//!
//! Tasks decide protocol questions (what to send, whether to accept what came back);
//! they do not own message IDs, retransmission or SPI routing (see `sa`, `endpoint`).

pub(crate) mod ike_auth;
pub(crate) mod ike_init;
pub(crate) mod informational;
pub(crate) mod natd;
#[cfg(test)]
mod tests;

use crate::message::payload::Notify;
use crate::message::Payload;

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
