//! In-memory test helpers (feature `testing`): a deterministic RNG, default peer
//! configurations and a `Pair` harness that shuttles datagrams between two endpoints
//! under a manual clock, recording every output in order.
//!
//! Nothing here is used by the gateway in production.

use crate::{Endpoint, EndpointConfig, Event, Output, PeerConfig, Rng, Transmit};
use ipsec_types::{DatapathCommand, Dpd, EspProposal, Identity, IkeProposal, SaTimers, Timestamp, TrafficSelector};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;
use zeroize::Zeroizing;

/// A deterministic RNG (splitmix64). NOT cryptographically secure.
#[derive(Clone, Debug)]
pub struct TestRng(u64);

impl TestRng {
    /// From a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl Rng for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let b = z.to_be_bytes();
            chunk.copy_from_slice(b.get(..chunk.len()).unwrap_or(&b));
        }
    }
}

/// A tunnel config with test defaults: FQDN ids `<local>.test`/`<remote>.test`, PSK
/// "test-psk", aes256gcm16-prfsha256-x25519, ESP aes256gcm16, 10.1.0.0/24 (A side)
/// and 10.2.0.0/24 (B side).
pub fn peer_config(name: &str, local: &str, remote: &str, a_side: bool, initiate: bool) -> PeerConfig {
    let (l, r) = if a_side { ("10.1.0.0/24", "10.2.0.0/24") } else { ("10.2.0.0/24", "10.1.0.0/24") };
    let (lid, rid) = if a_side { ("a.test", "b.test") } else { ("b.test", "a.test") };
    PeerConfig {
        name: name.into(),
        local_addr: local.parse().expect("test address"),
        remote_addr: remote.parse().expect("test address"),
        local_id: Identity::Fqdn(lid.into()),
        remote_id: Identity::Fqdn(rid.into()),
        psk: Zeroizing::new(b"test-psk".to_vec()),
        local_ts: vec![TrafficSelector::parse_cidr(l).expect("cidr")],
        remote_ts: vec![TrafficSelector::parse_cidr(r).expect("cidr")],
        child_sa_per_subnet_pair: false,
        initiate,
        ike_proposals: vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519").expect("proposal")],
        esp_proposals: vec![EspProposal::parse("aes256gcm16").expect("proposal")],
        force_encap: false,
        announce_vpngw: false,
        replay_window: 64,
        // The default lifetimes (4 h / 1 h, +10 %), without jitter; no liveness checks.
        timers: SaTimers { rekey_jitter_percent: 0, ..SaTimers::default() },
        dpd: Dpd { delay: None, ..Dpd::default() },
        fragment_size: Some(crate::api::DEFAULT_FRAGMENT_SIZE),
        ike_version: crate::IkeVersion::V2,
        aggressive: false,
    }
}

/// An endpoint on the standard ports with one tunnel and a `TestRng`.
fn endpoint(peer: PeerConfig, seed: u64) -> Endpoint {
    Endpoint::new(
        EndpointConfig { ike_port: 500, natt_port: 4500, peers: vec![peer], limits: Default::default() },
        Box::new(TestRng::new(seed)),
    )
}

/// Which endpoint of a `Pair`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Endpoint `a`.
    A,
    /// Endpoint `b`.
    B,
}

/// Two endpoints wired back to back.
pub struct Pair {
    /// Endpoint A.
    pub a: Endpoint,
    /// Endpoint B.
    pub b: Endpoint,
    /// A's WAN address.
    pub a_addr: IpAddr,
    /// B's WAN address.
    pub b_addr: IpAddr,
    /// The manual clock.
    pub now: Timestamp,
    /// Datagrams on the wire: (destination side, datagram).
    pub in_flight: VecDeque<(Side, Transmit)>,
    /// Everything A output, in order.
    pub log_a: Vec<Output>,
    /// Everything B output, in order.
    pub log_b: Vec<Output>,
}

impl Pair {
    /// Two endpoints with one tunnel each (`a_peer` configured on A, `b_peer` on B).
    pub fn new(a_peer: PeerConfig, b_peer: PeerConfig) -> Self {
        Self::with_seeds(a_peer, b_peer, 1, 2)
    }

    /// Like `new`, with the seeds of the two RNGs (they decide SPIs and nonces, hence
    /// who wins a rekey collision).
    pub fn with_seeds(a_peer: PeerConfig, b_peer: PeerConfig, seed_a: u64, seed_b: u64) -> Self {
        let (a_addr, b_addr) = (a_peer.local_addr, b_peer.local_addr);
        Self {
            a: endpoint(a_peer, seed_a),
            b: endpoint(b_peer, seed_b),
            a_addr,
            b_addr,
            now: Timestamp::ZERO,
            in_flight: VecDeque::new(),
            log_a: Vec::new(),
            log_b: Vec::new(),
        }
    }

    /// The standard pair: A (192.0.2.1, initiates) and B (192.0.2.2, responds).
    pub fn standard() -> Self {
        Self::new(
            peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true),
            peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false),
        )
    }

    /// `side` restarts: its endpoint is replaced by a fresh one with the tunnel `peer`
    /// and an RNG seeded with `seed` (all its SAs are forgotten, and its log is cleared).
    /// Datagrams already on the wire stay there.
    pub fn restart(&mut self, side: Side, peer: PeerConfig, seed: u64) {
        *self.ep(side) = endpoint(peer, seed);
        match side {
            Side::A => self.log_a.clear(),
            Side::B => self.log_b.clear(),
        }
    }

    /// Moves outputs of both endpoints into the logs and the wire.
    pub fn drain(&mut self) {
        for side in [Side::A, Side::B] {
            loop {
                let out = match side {
                    Side::A => self.a.poll_output(),
                    Side::B => self.b.poll_output(),
                };
                let Some(out) = out else { break };
                if let Output::Transmit(t) = &out {
                    let dest = if t.remote.ip() == self.a_addr { Side::A } else { Side::B };
                    self.in_flight.push_back((dest, t.clone()));
                }
                match side {
                    Side::A => self.log_a.push(out),
                    Side::B => self.log_b.push(out),
                }
            }
        }
    }

    /// Delivers the next datagram on the wire. Returns false if there was none.
    pub fn deliver_next(&mut self) -> bool {
        self.drain();
        let Some((dest, t)) = self.in_flight.pop_front() else { return false };
        let ep = match dest {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        };
        ep.handle_datagram(self.now, t.remote, t.local, &t.data);
        self.drain();
        true
    }

    /// Drops the next datagram on the wire.
    pub fn drop_next(&mut self) -> Option<Transmit> {
        self.drain();
        self.in_flight.pop_front().map(|(_, t)| t)
    }

    /// The endpoint of a side.
    pub fn ep(&mut self, side: Side) -> &mut Endpoint {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Number of datagrams on the wire towards `side`.
    pub fn pending_to(&mut self, side: Side) -> usize {
        self.drain();
        self.in_flight.iter().filter(|(d, _)| *d == side).count()
    }

    /// Delivers the oldest datagram on the wire towards `side` (others stay queued).
    /// Returns false if there was none.
    pub fn deliver_to(&mut self, side: Side) -> bool {
        match self.take_to(side) {
            Some(t) => {
                self.inject(side, &t);
                true
            }
            None => false,
        }
    }

    /// Removes the oldest datagram towards `side` from the wire without delivering it
    /// (lost, or held back to be `inject`ed later).
    pub fn take_to(&mut self, side: Side) -> Option<Transmit> {
        self.drain();
        let i = self.in_flight.iter().position(|(d, _)| *d == side)?;
        self.in_flight.remove(i).map(|(_, t)| t)
    }

    /// Delivers `t` to `side` now (a held or duplicated datagram).
    pub fn inject(&mut self, side: Side, t: &Transmit) {
        let now = self.now;
        self.ep(side).handle_datagram(now, t.remote, t.local, &t.data);
        self.drain();
    }

    /// Runs a command on one side.
    pub fn command(&mut self, side: Side, cmd: crate::Command) {
        let now = self.now;
        self.ep(side).handle_command(now, cmd);
        self.drain();
    }

    /// Sets the clock and fires due timers of both sides, without delivering anything.
    pub fn tick(&mut self, now: Timestamp) {
        self.now = now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        self.drain();
    }

    /// Fires due timers and delivers until the wire is empty (bounded).
    pub fn run(&mut self) {
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
        for _ in 0..1000 {
            if !self.deliver_next() {
                break;
            }
        }
    }

    /// Advances the clock and runs.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.run();
    }

    /// The datapath commands of a side, in order.
    pub fn datapath(&self, side: Side) -> Vec<DatapathCommand> {
        self.log(side)
            .iter()
            .filter_map(|o| match o {
                Output::Datapath(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// The events of a side, in order.
    pub fn events(&self, side: Side) -> Vec<Event> {
        self.log(side)
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// The datagrams a side sent, in order.
    pub fn transmits(&self, side: Side) -> Vec<Transmit> {
        self.log(side)
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Everything a side output.
    pub fn log(&self, side: Side) -> &[Output] {
        match side {
            Side::A => &self.log_a,
            Side::B => &self.log_b,
        }
    }
}

#[doc(hidden)]
pub use crate::message::fragment::probe::{fragment_probe, ProbeResult, ReassemblyProbe};
#[doc(hidden)]
pub use crate::message::fragment::{FragDrop, MAX_FRAGMENTS, MAX_REASSEMBLED};
#[doc(hidden)]
pub use crate::message::probe::{decrypt_cost_probe, parse_cost_probe, seal_probe, PROBE_MAX_PAYLOADS};
#[doc(hidden)]
pub use crate::message::ParseError;
#[doc(hidden)]
pub use crate::v1::message::probe::{v1_parse_cost_probe, v1_seal_probe};
