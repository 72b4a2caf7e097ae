//! Sans-I/O IKEv2 (RFC 7296) for site-to-site tunnels authenticated with a pre-shared key.
//!
//! The crate does no I/O, reads no clock and uses no global RNG: the gateway feeds it
//! datagrams, commands, datapath events and timeouts (`handle_*`, each with `now`), and
//! drains transmissions, datapath commands and events (`poll_output`) until `None`.
//! The earliest deadline comes from `poll_timeout`.
//!
//! It does NOT touch ESP packets: negotiated CHILD_SAs leave as
//! [`ipsec_types::DatapathCommand`]s for the gateway to apply to the `esp` crate.
#![forbid(unsafe_code)]

pub mod crypto;
mod endpoint;
mod error;
mod message;
mod proposal;
mod sa;
mod task;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use endpoint::{
    ChildSaStatus, Command, Endpoint, EndpointConfig, Event, IkeSaStatus, Output, PeerConfig, Rng, Transmit,
};
