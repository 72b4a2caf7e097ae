//! Sans-I/O IKEv2 (RFC 7296), and IKEv1 (RFC 2409) for peers that speak nothing else, for
//! site-to-site tunnels authenticated with a pre-shared key.
//!
//! The crate does no I/O, reads no clock and uses no global RNG: the gateway feeds it
//! datagrams, commands, datapath events and timeouts (`handle_*`, each with `now`), and
//! drains transmissions, datapath commands and events (`poll_output`) until `None`.
//! The earliest deadline comes from `poll_timeout`.
//!
//! It does NOT touch ESP packets: negotiated CHILD_SAs leave as
//! [`ipsec_types::DatapathCommand`]s for the gateway to apply to the `esp` crate.
//!
//! Layout: `api` (the types the gateway speaks with: configuration, commands, outputs,
//! events, status) → `endpoint` (façade and SPI routing; `admission` of unauthenticated
//! IKE_SA_INIT, initiation and `retry`, `restart`ed peers, dead-peer policy) → `sa`
//! (one IKE SA: its stage as a state enum carrying that stage's timers, keys, CHILD SAs
//! with their stage and datapath halves and their make-before-break replacement, timers
//! for rekeying / lifetimes / DPD, the task manager with message IDs, retransmission and
//! the response cache) → `task` (one module per exchange: IKE_SA_INIT, IKE_AUTH,
//! CREATE_CHILD_SA for CHILD SAs, IKE SA rekey, INFORMATIONAL, NAT detection); `ts`
//! negotiates traffic selectors. `down`
//! says why an IKE SA went away ([`DownReason`]); `notify` holds the notify numbers;
//! `message` is the no-panic wire codec, `proposal` chooses algorithms, `crypto`
//! derives keys. `v1` is IKEv1 as a sibling tree (codec, keys, proposals, Main /
//! Aggressive / Quick Mode, Informational, one ISAKMP SA with its IPsec SA pairs), which
//! `endpoint::v1` routes to by the header's version and our cookie.
//!
//! Supported: PSK, AES-GCM-16, PRF-HMAC-SHA2, X25519/ECP-256, NAT-T, DELETE; CHILD SA
//! rekeying in both roles with PFS (and the INVALID_KE_PAYLOAD retry), new CHILD SAs
//! by CREATE_CHILD_SA, several subnets per tunnel in one CHILD SA or one CHILD SA per
//! subnet pair with traffic selector narrowing in both roles (`ts`), IKE SA rekeying,
//! simultaneous rekeys resolved by nonces (RFC 7296 2.8.1, 2.8.2) and the other
//! collisions of 2.25, rekey/hard lifetimes with jitter, datapath volume limits, dead peer detection with restart/clear, peers that
//! restarted (INITIAL_CONTACT, INVALID_IKE_SPI). ESP counts as a sign of life for DPD
//! only if the gateway reports it (`handle_esp_activity`). Not supported: MOBIKE, EAP,
//! certificates, more than one outstanding request per IKE SA (window size 1).
//!
//! # Driving loop
//!
//! ```
//! use ike::{Endpoint, EndpointConfig, Output, Rng};
//! use ipsec_types::Timestamp;
//!
//! struct MyRng; // the gateway passes a CSPRNG
//! impl Rng for MyRng {
//!     fn fill(&mut self, buf: &mut [u8]) { buf.iter_mut().for_each(|b| *b = 4) }
//! }
//!
//! let cfg = EndpointConfig { ike_port: 500, natt_port: 4500, peers: vec![], limits: Default::default() };
//! let mut ep = Endpoint::new(cfg, Box::new(MyRng));
//! let now = Timestamp::from_secs(1);
//! ep.handle_timeout(now); // also: handle_datagram / handle_command / handle_datapath_event
//! while let Some(out) = ep.poll_output() {
//!     match out {
//!         Output::Transmit(t) => { /* send t.data from t.local to t.remote (non-ESP marker on 4500) */ }
//!         Output::Datapath(cmd) => { /* apply to the esp SA table, in order */ }
//!         Output::Event(ev) => { /* log, control socket */ }
//!     }
//! }
//! // ESP received on an inbound SA, reported about once a second per SA (optional):
//! // ep.handle_esp_activity(now, spi);
//! let _next_wakeup = ep.poll_timeout();
//! assert!(ep.is_idle());
//! ```
#![forbid(unsafe_code)]

mod api;
pub mod crypto;
mod down;
mod endpoint;
mod log;
mod message;
mod notify;
mod proposal;
mod sa;
mod task;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod ts;
// IKEv1 (RFC 2409), a sibling of the IKEv2 tree behind the same `Endpoint` (docs/ikev1.md).
mod v1;

/// Dead peer detection gives up on a peer (both IKE versions) once nothing has been
/// heard from it for `timeout` since `silent_since` (its last message, IKE or ESP), but
/// never sooner than [`DPD_MIN_CHECK`] after the first liveness check (`first_check`),
/// so a `dpd_timeout` equal to `dpd_delay` still leaves time for a retransmission.
/// Measured from the silence rather than from the first check, a dead active tunnel of
/// an active/standby group hands over within `dpd_timeout` of its peer's death.
pub(crate) fn dpd_deadline(
    silent_since: ipsec_types::Timestamp,
    first_check: ipsec_types::Timestamp,
    timeout: std::time::Duration,
) -> ipsec_types::Timestamp {
    (silent_since + timeout).max(first_check + DPD_MIN_CHECK)
}

/// See [`dpd_deadline`].
pub(crate) const DPD_MIN_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

pub use api::{
    ChildSaStatus, Command, EncapReason, EndpointConfig, Event, IkeSaStatus, IkeVersion, Output, PeerConfig, Rng,
    Transmit, DEFAULT_FRAGMENT_SIZE, NAT_KEEPALIVE, VPNGW_VENDOR_ID,
};
pub use down::DownReason;
pub use endpoint::{Endpoint, IkeDrops, Limits, Reconfigured};
