//! The façade the gateway drives: routes datagrams to IKE SAs by SPI, creates
//! responder SAs for new IKE_SA_INIT requests (the peer is found by source address),
//! starts and retries initiations, and queues outputs.
//!
//! It does not interpret exchanges (see `task`) or keep per-SA protocol state (see `sa`).
//!
//! Timers: peers with `initiate` are armed at `Timestamp::ZERO` by `new`, so the first
//! `handle_timeout` (or `poll_timeout` returning zero) starts them.

use crate::down::{DownReason, Failure};
use crate::message::{exchange, Message};
use crate::sa::task_manager::TaskKind;
use crate::sa::{Action, Ctx, IkeSa, IkeState};
use crate::task::ike_init;
use ipsec_types::ExpiryReason;
use ipsec_types::{
    DatapathCommand, DatapathEvent, DhGroup, EncrAlg, EspProposal, Identity, IkeProposal, PrfAlg, Spi, Timestamp,
    TrafficSelector, UdpEncap,
};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use zeroize::Zeroizing;

mod cookie;
mod limits;
mod outbound;
mod restart;
mod sa_set;
mod spis;

use crate::log::{warn_unauth, LogLimiter, TokenBucket};
use crate::message::Payload;
use crate::notify;
use cookie::Cookies;
use sa_set::SaSet;
pub(crate) use spis::SpiRegistry;
use std::collections::HashMap;

pub use limits::{IkeDrops, Limits};

/// Source of randomness (SPIs, nonces, DH private keys, IVs). The gateway passes a
/// CSPRNG; tests pass a deterministic one.
pub trait Rng: Send {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// Endpoint-wide settings.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// IKE port (500).
    pub ike_port: u16,
    /// NAT-T port (4500): IKE with the non-ESP marker, and ESP-in-UDP.
    pub natt_port: u16,
    /// The configured peers (tunnels).
    pub peers: Vec<PeerConfig>,
    /// Caps on half-open and per-peer state, COOKIE threshold.
    pub limits: Limits,
}

/// One configured tunnel.
#[derive(Clone)]
pub struct PeerConfig {
    /// Tunnel name (unique).
    pub name: String,
    /// Our WAN address.
    pub local_addr: IpAddr,
    /// The peer's WAN address.
    pub remote_addr: IpAddr,
    /// Our identity (IDi/IDr we send).
    pub local_id: Identity,
    /// The identity we expect from the peer.
    pub remote_id: Identity,
    /// The pre-shared key.
    pub psk: Zeroizing<Vec<u8>>,
    /// Our protected subnets.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's protected subnets.
    pub remote_ts: Vec<TrafficSelector>,
    /// Initiate at start (`true`) or only respond.
    pub initiate: bool,
    /// IKE proposals in preference order.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals in preference order.
    pub esp_proposals: Vec<EspProposal>,
    /// Always UDP-encapsulate ESP, even without a NAT (RFC 7296 2.23: fake NAT detection).
    pub force_encap: bool,
    /// Anti-replay window for inbound CHILD_SAs.
    pub replay_window: u32,
    /// Rekey the IKE SA after this long (minus jitter).
    pub ike_rekey_time: Duration,
    /// Hard lifetime of the IKE SA.
    pub ike_life_time: Duration,
    /// Rekey CHILD SAs after this long (minus jitter).
    pub child_rekey_time: Duration,
    /// Hard lifetime of CHILD SAs.
    pub child_life_time: Duration,
    /// Rekeys start up to this percentage of the rekey time earlier, at random.
    pub rekey_jitter_percent: u8,
    /// Rekey CHILD SAs after this many inner bytes (counted by the datapath).
    pub child_rekey_bytes: Option<u64>,
    /// Rekey CHILD SAs after this many packets (counted by the datapath).
    pub child_rekey_packets: Option<u64>,
    /// Send a liveness check after this long without hearing from the peer (`None`: off).
    pub dpd_delay: Option<Duration>,
    /// Declare the peer dead when a liveness check is unanswered this long.
    pub dpd_timeout: Duration,
    /// What to do with a dead peer.
    pub dpd_action: DpdAction,
}

/// What to do when dead peer detection declares the peer dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpdAction {
    /// Tear down and initiate again until the peer answers.
    Restart,
    /// Tear down and wait (respond only).
    Clear,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("name", &self.name)
            .field("local_addr", &self.local_addr)
            .field("remote_addr", &self.remote_addr)
            .field("local_id", &self.local_id)
            .field("remote_id", &self.remote_id)
            .field("psk", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Operator commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Bring up the tunnel now (no-op if it is up or connecting).
    Initiate {
        /// Tunnel name.
        peer: String,
    },
    /// Rekey the tunnel's CHILD SAs (`ike == false`) or its IKE SA (`ike == true`) now.
    Rekey {
        /// Tunnel name.
        peer: String,
        /// Rekey the IKE SA instead of the CHILD SAs.
        ike: bool,
    },
    /// Send DELETE for the tunnel's IKE SA and tear it down.
    Terminate {
        /// Tunnel name.
        peer: String,
    },
    /// Shutdown: send DELETE for every IKE SA and tear all down.
    TerminateAll,
}

/// A datagram to send. `data` is the IKE message itself: when `local.port()` is the
/// NAT-T port the gateway prepends the 4-byte non-ESP marker (RFC 3948 section 2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Source address and port.
    pub local: SocketAddr,
    /// Destination address and port.
    pub remote: SocketAddr,
    /// The IKE message.
    pub data: Vec<u8>,
}

/// Something that happened, for logs and the control socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// IKE SA established.
    IkeUp {
        /// Tunnel name.
        peer: String,
    },
    /// IKE SA gone (deleted, failed, or shut down).
    IkeDown {
        /// Tunnel name.
        peer: String,
        /// Why (`Display` gives the text for logs).
        reason: crate::DownReason,
    },
    /// CHILD SA established.
    ChildUp {
        /// Tunnel name.
        peer: String,
        /// Inbound SPI.
        spi_in: Spi,
        /// Outbound SPI.
        spi_out: Spi,
    },
    /// CHILD SA removed.
    ChildDown {
        /// Tunnel name.
        peer: String,
        /// Inbound SPI.
        spi_in: Spi,
    },
}

/// Output drained by the gateway.
#[must_use]
#[derive(Debug)]
pub enum Output {
    /// Send a datagram.
    Transmit(Transmit),
    /// Apply to the datapath, in order.
    Datapath(DatapathCommand),
    /// Report.
    Event(Event),
}

/// Status of one IKE SA, for `vpnctl status`.
#[derive(Clone, Debug)]
pub struct IkeSaStatus {
    /// Tunnel name.
    pub tunnel: String,
    /// `CONNECTING`, `ESTABLISHED`, `DELETING`, ...
    pub state: &'static str,
    /// True if we initiated this IKE SA.
    pub initiator: bool,
    /// Initiator's SPI.
    pub spi_i: u64,
    /// Responder's SPI (0 until known).
    pub spi_r: u64,
    /// Our address and port in use.
    pub local: SocketAddr,
    /// The peer's address and port in use.
    pub remote: SocketAddr,
    /// Our identity.
    pub local_id: Identity,
    /// The peer's identity (as configured until authenticated).
    pub remote_id: Identity,
    /// Negotiated algorithms, once known.
    pub encr: Option<EncrAlg>,
    /// PRF.
    pub prf: Option<PrfAlg>,
    /// Key exchange group.
    pub dh: Option<DhGroup>,
    /// Whether a NAT was detected (or encapsulation forced): ESP goes in UDP.
    pub nat_detected: bool,
    /// When the IKE SA was established.
    pub established_at: Option<Timestamp>,
    /// When we last received a valid message from the peer.
    pub last_heard: Option<Timestamp>,
    /// When the next IKE rekey is due.
    pub next_rekey: Option<Timestamp>,
    /// CHILD SAs.
    pub children: Vec<ChildSaStatus>,
}

/// Status of one CHILD SA.
#[derive(Clone, Debug)]
pub struct ChildSaStatus {
    /// The gateway-unique child id (matches `ipsec_types::ChildRef::child_id`).
    pub child_id: u64,
    /// `INSTALLED`, `REKEYING`, ...
    pub state: &'static str,
    /// Inbound SPI (ours).
    pub spi_in: Spi,
    /// Outbound SPI (the peer's).
    pub spi_out: Spi,
    /// Negotiated local selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// Negotiated remote selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// Cipher.
    pub encr: EncrAlg,
    /// PFS group, if the CHILD SA was created with a key exchange.
    pub dh: Option<DhGroup>,
    /// UDP encapsulation in use.
    pub encap: Option<UdpEncap>,
    /// When it was installed.
    pub established_at: Timestamp,
    /// When the next rekey of this CHILD SA is due.
    pub next_rekey: Option<Timestamp>,
    /// When it expires hard (deleted if not rekeyed by then).
    pub expires_at: Option<Timestamp>,
}

/// Retry delays after a failed initiation.
const RETRY_FIRST: Duration = Duration::from_secs(10);
const RETRY_LATER: Duration = Duration::from_secs(30);
/// After NO_PROPOSAL_CHOSEN / AUTHENTICATION_FAILED: a configuration problem, retry slowly.
const RETRY_NEGOTIATION: Duration = Duration::from_secs(60);

struct PeerSlot {
    cfg: PeerConfig,
    /// When to (re)initiate, if we should.
    retry_at: Option<Timestamp>,
    failures: u32,
    /// The operator wants this tunnel up (initiate or Command::Initiate).
    wanted: bool,
    /// When we last answered an unknown-SPI request from this peer with INVALID_IKE_SPI.
    invalid_spi_at: Option<Timestamp>,
}

/// What every IKE SA borrows while it runs (see `Ctx`).
struct Shared {
    /// The time of the input being handled (for `warn_unauth!` outside an SA).
    now: Timestamp,
    ike_port: u16,
    natt_port: u16,
    rng: Box<dyn Rng>,
    out: VecDeque<Output>,
    next_child_id: u64,
    actions: Vec<Action>,
    limits: Limits,
    drops: IkeDrops,
    log: LogLimiter,
    answers: TokenBucket,
    spis: SpiRegistry,
}

impl Shared {
    fn ctx(&mut self, now: Timestamp, peer_sas: usize) -> Ctx<'_> {
        Ctx {
            now,
            rng: &mut *self.rng,
            out: &mut self.out,
            next_child_id: &mut self.next_child_id,
            ike_port: self.ike_port,
            natt_port: self.natt_port,
            actions: &mut self.actions,
            limits: self.limits,
            peer_sas,
            drops: &mut self.drops,
            log: &mut self.log,
            answers: &mut self.answers,
            spis: &mut self.spis,
        }
    }
}

/// The IKEv2 endpoint: all IKE SAs of this gateway.
pub struct Endpoint {
    peers: Vec<PeerSlot>,
    /// Tunnel by the peer's address (IKE_SA_INIT from an address with no tunnel costs a
    /// hash lookup) and by name.
    peer_by_addr: HashMap<IpAddr, usize>,
    peer_by_name: HashMap<String, usize>,
    sas: SaSet,
    shared: Shared,
    cookies: Cookies,
    shutting_down: bool,
    /// Per tunnel, the outbound SPI the datapath seals with (the last installed).
    active_out: HashMap<String, Spi>,
    /// When recent IKE_SA_INITs without a COOKIE reached the key exchange.
    unproved_at: VecDeque<Timestamp>,
    /// Our IKE SPI -> message ID of our request that was answered with an unprotected
    /// INVALID_IKE_SPI (see `restart.rs`).
    invalid_spi_hints: HashMap<u64, u32>,
}

impl Endpoint {
    /// Creates the endpoint. Nothing is sent until `handle_timeout` or a command.
    /// Peers with `initiate == true` start connecting on the first `handle_timeout`
    /// (their timer is armed at `Timestamp::ZERO`).
    pub fn new(config: EndpointConfig, rng: Box<dyn Rng>) -> Self {
        let peers: Vec<PeerSlot> = config
            .peers
            .into_iter()
            .map(|cfg| PeerSlot {
                retry_at: cfg.initiate.then_some(Timestamp::ZERO),
                failures: 0,
                wanted: cfg.initiate,
                invalid_spi_at: None,
                cfg,
            })
            .collect();
        let mut peer_by_addr = HashMap::new();
        let mut peer_by_name = HashMap::new();
        for (i, p) in peers.iter().enumerate() {
            // The first tunnel with an address answers IKE_SA_INIT from it.
            peer_by_addr.entry(p.cfg.remote_addr).or_insert(i);
            peer_by_name.insert(p.cfg.name.clone(), i);
        }
        Self {
            peers,
            peer_by_addr,
            peer_by_name,
            sas: SaSet::default(),
            shared: Shared {
                now: Timestamp::ZERO,
                ike_port: config.ike_port,
                natt_port: config.natt_port,
                rng,
                out: VecDeque::new(),
                next_child_id: 0,
                actions: Vec::new(),
                limits: config.limits,
                drops: IkeDrops::default(),
                log: LogLimiter::default(),
                answers: crate::log::answer_bucket(),
                spis: SpiRegistry::default(),
            },
            cookies: Cookies::default(),
            shutting_down: false,
            active_out: HashMap::new(),
            unproved_at: VecDeque::new(),
            invalid_spi_hints: HashMap::new(),
        }
    }

    fn slot_mut(&mut self, name: &str) -> Option<&mut PeerSlot> {
        self.peer_by_name.get(name).and_then(|&i| self.peers.get_mut(i))
    }

    /// Runs `f` on the SA at `idx` with a context; removes the SA if it fails.
    fn run(&mut self, now: Timestamp, idx: usize, f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> Result<(), Failure>) {
        let peer_sas = match self.sas.get(idx) {
            Some(sa) => self.sas.peer_count(&sa.peer.name),
            None => return,
        };
        let Some(sa) = self.sas.get_mut(idx) else { return };
        let was_established = sa.state.is_established();
        let mut ctx = self.shared.ctx(now, peer_sas);
        match f(sa, &mut ctx) {
            Ok(()) => {
                let established = sa.state.is_established();
                let (name, spi_i, spi_r, stale) = (sa.peer.name.clone(), sa.spi_i, sa.spi_r, sa.state.stale());
                let initial_contact = std::mem::take(&mut sa.initial_contact);
                if established && !was_established {
                    if let Some(slot) = self.slot_mut(&name) {
                        slot.failures = 0;
                    }
                    // Another IKE SA with this peer is up: ours still in IKE_SA_INIT must
                    // not claim INITIAL_CONTACT, or the peer would drop this one.
                    for other in self.sas.iter_mut() {
                        if other.peer.name == name && other.state == IkeState::Connecting {
                            other.send_initial_contact = false;
                        }
                    }
                }
                if initial_contact {
                    self.drop_stale(now, &name, spi_i, spi_r);
                } else if established && !stale {
                    self.terminate_where(now, DownReason::ReplacedAfterRestart, |s| {
                        s.state.stale() && s.peer.name == name
                    });
                }
            }
            Err(failure) => {
                sa.teardown(&mut ctx, failure.reason());
                let sa = self.sas.remove(idx);
                self.after_failure(now, &sa, &failure);
            }
        }
        self.apply_actions(now);
    }

    /// Work an IKE SA handed to the endpoint: new IKE SAs from rekeys, CHILD SAs moving
    /// to another IKE SA.
    fn apply_actions(&mut self, now: Timestamp) {
        for action in std::mem::take(&mut self.shared.actions) {
            match action {
                Action::Spawn(sa) => {
                    if !self.sas.push(*sa, true) {
                        tracing::error!("new IKE SA from a rekey has an SPI already in use; dropped");
                    }
                }
                Action::Adopt { tunnel, to, transfer } => {
                    let mut ctx = self.shared.ctx(now, 0);
                    match self.sas.iter_mut().find(|s| (s.spi_i, s.spi_r) == to && s.state.is_established()) {
                        Some(sa) => {
                            transfer.give_to(sa);
                            sa.kick(&mut ctx);
                        }
                        None => transfer.discard(&mut ctx, &tunnel),
                    }
                }
                Action::ChildDeleted { tunnel, spi_out } => {
                    let holder = self
                        .sas
                        .iter()
                        .position(|s| s.peer.name == tunnel && s.children.iter().any(|c| c.spi_out == spi_out));
                    if let Some(idx) = holder {
                        self.run(now, idx, |sa, ctx| {
                            if let Some(i) = sa.children.iter().position(|c| c.spi_out == spi_out) {
                                tracing::info!(tunnel = %sa.name(), %spi_out, "peer deleted a CHILD SA on the old IKE SA");
                                crate::sa::child::remove_at(sa, ctx, i);
                            }
                            sa.kick(ctx);
                            Ok(())
                        });
                    }
                }
            }
        }
    }

    /// INITIAL_CONTACT (RFC 7296 2.4): the peer lost its state; forget our other
    /// established IKE SAs with it, without sending DELETE.
    fn drop_stale(&mut self, now: Timestamp, name: &str, spi_i: u64, spi_r: u64) {
        let mut i = 0;
        while i < self.sas.len() {
            let stale = self.sas.get(i).is_some_and(|s| {
                s.peer.name == name && (s.spi_i, s.spi_r) != (spi_i, spi_r) && s.state.is_established()
            });
            if !stale {
                i += 1;
                continue;
            }
            let mut sa = self.sas.remove(i);
            tracing::info!(tunnel = %name, "peer sent INITIAL_CONTACT; dropping the older IKE SA {:016x}_i", sa.spi_i);
            let mut ctx = self.shared.ctx(now, 0);
            sa.teardown(&mut ctx, DownReason::ReplacedByInitialContact);
        }
    }

    fn after_failure(&mut self, now: Timestamp, sa: &IkeSa, failure: &Failure) {
        tracing::debug!(tunnel = %sa.name(), reason = %failure.reason(), "IKE SA removed");
        if self.shutting_down {
            return;
        }
        if sa.state.replaced() {
            return;
        }
        let Some(slot) = self.slot_mut(&sa.peer.name) else { return };
        if sa.established_at.is_some() && matches!(failure, Failure::Transient(_)) {
            // The peer is dead (DPD, unanswered retransmissions) or the IKE SA expired.
            if slot.cfg.dpd_action == DpdAction::Clear {
                tracing::info!(tunnel = %slot.cfg.name, "dpd_action clear: not initiating again");
                return;
            }
            slot.wanted = true;
            tracing::info!(tunnel = %slot.cfg.name, "initiating the tunnel again");
            slot.retry_at = Some(now);
            return;
        }
        if matches!(failure, Failure::Expired(_)) && slot.wanted {
            tracing::info!(tunnel = %slot.cfg.name, "initiating the tunnel again");
            slot.retry_at = Some(now);
            return;
        }
        if !slot.wanted || !(sa.initiator || sa.established_at.is_some()) {
            return;
        }
        let delay = match failure {
            Failure::Negotiation(_) => RETRY_NEGOTIATION,
            Failure::Transient(_) | Failure::Deleted(_) | Failure::Expired(_) => {
                slot.failures = slot.failures.saturating_add(1);
                if slot.failures <= 1 {
                    RETRY_FIRST
                } else {
                    RETRY_LATER
                }
            }
        };
        tracing::info!(tunnel = %slot.cfg.name, "will try to bring the tunnel up again in {}s", delay.as_secs());
        let at = now + delay;
        slot.retry_at = Some(slot.retry_at.map_or(at, |t| t.min(at)));
    }

    fn start_initiator(&mut self, now: Timestamp, peer_idx: usize) {
        let Some(slot) = self.peers.get(peer_idx) else { return };
        // Only our own attempts and authenticated IKE SAs make the tunnel busy: a
        // half-open responder SA (anyone can create one by spoofing the peer's address)
        // never holds our initiation back.
        let name = &slot.cfg.name;
        let busy = self.sas.iter().any(|s| {
            s.peer.name == *name
                && !s.state.is_deleting()
                && !s.state.stale()
                && (s.initiator || s.established_at.is_some())
        });
        if busy || self.shutting_down {
            return;
        }
        let cfg = slot.cfg.clone();
        let first_contact = !self.sas.iter().any(|s| s.peer.name == cfg.name && s.established_at.is_some());
        let mut ctx = self.shared.ctx(now, 0);
        let mut sa = ike_init::start(cfg, &mut ctx);
        sa.send_initial_contact = first_contact;
        while self.sas.ours_taken(sa.spi_i) {
            // 2^-64 per SA; drawn again before anything is sent for it.
            sa.spi_i = ctx.random_u64();
        }
        if !self.sas.push(sa, true) {
            tracing::error!("initiation dropped: IKE SPI in use");
        }
    }

    /// A datagram arrived on `local` from `remote` (non-ESP marker already stripped).
    pub fn handle_datagram(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let mark = self.shared.out.len();
        self.handle_datagram_inner(now, local, remote, data);
        self.after_input(mark);
    }

    fn handle_datagram_inner(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.shared.drops.malformed += 1;
                tracing::debug!(from = %remote, error = %e, "unparsable IKE datagram dropped");
                return;
            }
        };
        let h = msg.header;
        let idx = if h.exchange == exchange::IKE_SA_INIT && !h.is_response() && h.spi_r == 0 {
            if !h.sent_by_initiator() {
                self.shared.drops.malformed += 1;
                return;
            }
            match self.sas.by_init(remote.ip(), h.spi_i) {
                Some(i) => i,
                None => {
                    self.new_responder(now, local, remote, &msg, data);
                    return;
                }
            }
        } else if h.is_response() && msg.sk.is_none() && h.exchange == exchange::INFORMATIONAL {
            self.invalid_spi_answer(remote, &msg);
            return;
        } else if h.sent_by_initiator() {
            // We are the responder of this IKE SA: our SPI is the responder's.
            match self
                .sas
                .by_ours(h.spi_r)
                .filter(|&i| self.sas.get(i).is_some_and(|s| !s.initiator && s.spi_i == h.spi_i))
            {
                Some(i) => i,
                None => {
                    self.unknown_spi(now, local, remote, &msg);
                    return;
                }
            }
        } else {
            let found = self.sas.by_ours(h.spi_i).filter(|&i| {
                self.sas.get(i).is_some_and(|s| s.initiator && (s.spi_r == h.spi_r || s.state == IkeState::Connecting))
            });
            match found {
                Some(i) => i,
                None => {
                    self.unknown_spi(now, local, remote, &msg);
                    return;
                }
            }
        };
        self.run(now, idx, |sa, ctx| sa.handle_message(ctx, local, remote, data, msg));
    }

    /// An IKE_SA_INIT request for a new IKE SA. Anyone can send one with any source
    /// address, so before it costs a key exchange and a slot it must pass, in order: a
    /// configured peer at that address; a valid COOKIE once `cookie_threshold` half-open
    /// SAs exist or the source (or the gateway) is at its half-open cap (RFC 7296 2.6);
    /// the per-source and global half-open caps (a request with a valid COOKIE evicts the
    /// oldest half-open SA that had none); and the cap on IKE SAs per peer.
    fn new_responder(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, msg: &Message, data: &[u8]) {
        if self.shutting_down {
            return;
        }
        self.shared.now = now;
        let Some(&peer_idx) = self.peer_by_addr.get(&remote.ip()) else {
            self.shared.drops.unknown_spi += 1;
            tracing::debug!(from = %remote, "IKE_SA_INIT from an address with no configured tunnel dropped");
            return;
        };
        // A socket bound to the wildcard address: we answer from the configured address.
        let local = match self.peers.get(peer_idx) {
            Some(slot) => crate::sa::unspecified_to(local, slot.cfg.local_addr),
            None => return,
        };
        let limits = self.shared.limits;
        let ip = remote.ip();
        let nonce = msg.payloads.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        });
        let cookie = crate::task::notifies(&msg.payloads).find(|n| n.kind == notify::COOKIE).map(|n| n.data.as_slice());
        // The secret is drawn (and rotated) only when COOKIEs are in use, so that the RNG
        // sequence of a gateway that never needs them is unchanged.
        let proved = match (cookie, nonce) {
            (Some(c), Some(ni)) => {
                self.cookies.rotate(now, &mut *self.shared.rng);
                self.cookies.verify(c, ni, ip, msg.header.spi_i)
            }
            _ => false,
        };
        // Only a request that could create an IKE SA is answered at all: SA, KE and a
        // nonce of a valid length (so a COOKIE answer is never larger than the request).
        let has = |f: fn(&Payload) -> bool| msg.payloads.iter().any(f);
        let Some(ni) = nonce.filter(|n| (16..=256).contains(&n.len())) else {
            self.shared.drops.malformed += 1;
            return;
        };
        if !has(|p| matches!(p, Payload::Sa(_))) || !has(|p| matches!(p, Payload::Ke { .. })) {
            self.shared.drops.malformed += 1;
            return;
        }
        // COOKIEs are required above the threshold, from a source at its own cap (or at
        // the global cap), and once `cookie_threshold` unproved requests reached the key
        // exchange within the half-open timeout (requests refused after it, e.g. for a bad
        // KE value, cost a key generation but leave no half-open SA to count).
        let need_cookie = self.sas.half_open_total() >= limits.cookie_threshold.min(limits.half_open_max)
            || self.sas.half_open_from(ip) >= limits.half_open_per_source
            || self.recent_unproved(now) >= limits.cookie_threshold;
        if !proved && need_cookie {
            self.cookies.rotate(now, &mut *self.shared.rng);
            let c = self.cookies.make(ni, ip, msg.header.spi_i);
            self.shared.drops.cookie_required += 1;
            self.shared.drops.cookies_sent += 1;
            ike_init::send_cookie(&mut self.shared.out, &msg.header, local, remote, c);
            return;
        }
        // At a cap, a proved request takes the place of the oldest unproved half-open SA
        // (of the same source first); it is evicted only once the new SA exists.
        let at_cap = if self.sas.half_open_from(ip) >= limits.half_open_per_source {
            Some((self.sas.half_open_from(ip), limits.half_open_per_source, Some(ip)))
        } else if self.sas.half_open_total() >= limits.half_open_max {
            Some((self.sas.half_open_total(), limits.half_open_max, None))
        } else {
            None
        };
        let mut evict = None;
        if let Some((count, cap, scope)) = at_cap {
            match self.sas.oldest_unproved(scope).filter(|_| proved) {
                Some(victim) => evict = Some(victim),
                None => {
                    self.shared.drops.half_open_cap += 1;
                    let per = if scope.is_some() { " from this address" } else { "" };
                    warn_unauth!(
                        self.shared,
                        "IKE_SA_INIT from {ip} dropped: {count} half-open IKE SAs{per} (limit {cap})"
                    );
                    return;
                }
            }
        }
        let Some(slot) = self.peers.get(peer_idx) else { return };
        // IKE SAs past the half-open stage (authenticated ones and our own attempts).
        let authenticated = self.sas.peer_count(&slot.cfg.name);
        if authenticated >= limits.ike_sa_per_peer_max {
            self.shared.drops.half_open_cap += 1;
            let name = &slot.cfg.name;
            warn_unauth!(self.shared, "tunnel {name}: IKE_SA_INIT from {ip} refused with NO_ADDITIONAL_SAS: the peer holds {authenticated} IKE SAs already (ike_sa_per_peer_max)");
            let mut ctx = self.shared.ctx(now, 0);
            ike_init::refuse(&mut ctx, &msg.header, local, remote, notify::NO_ADDITIONAL_SAS, vec![]);
            return;
        }
        if !proved {
            self.unproved_at.push_back(now);
        }
        let mut ctx = self.shared.ctx(now, 0);
        let Some(mut sa) = ike_init::respond(&slot.cfg, &mut ctx, local, remote, msg, data) else { return };
        if self.sas.ours_taken(sa.spi_r) {
            // 2^-64: the response went out with an SPI in use; let the peer retry.
            tracing::error!("half-open IKE SA dropped: IKE SPI in use");
            sa.teardown(&mut ctx, DownReason::SpiCollision);
            return;
        }
        if let Some(victim) = evict {
            let mut old = self.sas.remove(victim);
            let mut ctx = self.shared.ctx(now, 0);
            old.teardown(&mut ctx, DownReason::Evicted);
        }
        self.sas.push(sa, proved);
    }

    /// Unproved IKE_SA_INITs that reached the key exchange within the half-open timeout
    /// (the window holds at most `cookie_threshold` + 1 entries: beyond, COOKIEs are
    /// required and nothing is added).
    fn recent_unproved(&mut self, now: Timestamp) -> usize {
        while self.unproved_at.front().is_some_and(|t| now.saturating_since(*t) >= crate::sa::HALF_OPEN_TIMEOUT) {
            self.unproved_at.pop_front();
        }
        self.unproved_at.len()
    }

    /// An operator command.
    pub fn handle_command(&mut self, now: Timestamp, cmd: Command) {
        let mark = self.shared.out.len();
        self.handle_command_inner(now, cmd);
        self.after_input(mark);
    }

    fn handle_command_inner(&mut self, now: Timestamp, cmd: Command) {
        match cmd {
            Command::Initiate { peer } => {
                let Some(&i) = self.peer_by_name.get(&peer) else {
                    tracing::warn!("initiate: no tunnel named {peer:?}");
                    return;
                };
                if let Some(slot) = self.peers.get_mut(i) {
                    slot.wanted = true;
                    slot.retry_at = None;
                }
                self.start_initiator(now, i);
            }
            Command::Rekey { peer, ike } => {
                let idx = self.sas.iter().position(|s| s.peer.name == peer && s.state.is_established());
                let Some(idx) = idx else {
                    tracing::warn!(tunnel = %peer, "rekey: no established IKE SA for this tunnel");
                    return;
                };
                self.run(now, idx, |sa, ctx| {
                    if ike {
                        sa.tasks.queue_once(TaskKind::IkeRekey);
                    } else {
                        let spis: Vec<_> =
                            sa.children.iter().filter(|c| !c.halves.awaiting_outbound()).map(|c| c.spi_in).collect();
                        for spi in spis {
                            sa.tasks.queue_once(TaskKind::ChildRekey(spi));
                        }
                    }
                    sa.kick(ctx);
                    Ok(())
                });
            }
            Command::Terminate { peer } => {
                if let Some(slot) = self.slot_mut(&peer) {
                    slot.wanted = false;
                    slot.retry_at = None;
                }
                self.terminate_where(now, DownReason::Operator, |sa| sa.peer.name == peer);
            }
            Command::TerminateAll => {
                self.shutting_down = true;
                for slot in &mut self.peers {
                    slot.wanted = false;
                    slot.retry_at = None;
                }
                self.terminate_where(now, DownReason::Operator, |_| true);
            }
        }
    }

    fn terminate_where(&mut self, now: Timestamp, reason: DownReason, pred: impl Fn(&IkeSa) -> bool) {
        let mut i = 0;
        while i < self.sas.len() {
            let hit = self.sas.get(i).is_some_and(|sa| pred(sa) && !sa.state.is_deleting());
            let keep = match self.sas.get_mut(i).filter(|_| hit) {
                Some(sa) => {
                    let mut ctx = self.shared.ctx(now, 0);
                    tracing::info!(tunnel = %sa.name(), "terminating IKE SA");
                    sa.terminate(&mut ctx, reason)
                }
                None => true,
            };
            if keep {
                i += 1;
            } else {
                self.sas.remove(i);
            }
        }
    }

    /// An event from the datapath (volume expiry).
    pub fn handle_datapath_event(&mut self, now: Timestamp, ev: DatapathEvent) {
        let mark = self.shared.out.len();
        self.handle_datapath_event_inner(now, ev);
        self.after_input(mark);
    }

    fn handle_datapath_event_inner(&mut self, now: Timestamp, ev: DatapathEvent) {
        let DatapathEvent::Expired { tunnel, spi, direction, hard, reason } = ev;
        // Outbound SPIs are the peers' choice and may repeat across tunnels: match the
        // tunnel and the direction, not the SPI alone.
        let is = move |c: &crate::sa::child::ChildSa| match direction {
            ipsec_types::Direction::Inbound => c.spi_in == spi,
            ipsec_types::Direction::Outbound => c.spi_out == spi,
        };
        let Some(idx) = self.sas.iter().position(|s| s.peer.name == tunnel && s.children.iter().any(is)) else {
            return;
        };
        let why = match reason {
            ExpiryReason::Bytes => "bytes",
            ExpiryReason::Packets => "packets",
            ExpiryReason::SeqExhausted => "sequence numbers",
        };
        self.run(now, idx, |sa, ctx| {
            let Some(c) = sa.children.iter().find(|c| is(c)) else { return Ok(()) };
            let (spi_in, child_id, state) = (c.spi_in, c.child_id, c.state);
            if matches!(state, crate::sa::child::ChildState::Rekeyed { .. })
                && crate::sa::child::activate_successor(sa, ctx, child_id)
            {
                // The peer rekeyed it and has the new SA: no need to wait for its DELETE.
                tracing::info!(tunnel = %sa.name(), %spi, "rekeyed CHILD SA reached a {} limit ({why}); moving to its successor now", if hard { "hard" } else { "soft" });
            }
            if hard {
                tracing::warn!(tunnel = %sa.name(), %spi, "CHILD SA hit its hard limit ({why}); deleting it");
                sa.tasks.queue_once(TaskKind::ChildDelete(spi_in));
            } else if state.is_installed() {
                tracing::info!(tunnel = %sa.name(), %spi, "CHILD SA soft limit ({why}) reached; rekeying it");
                // Rekeyed through the rekey timer, now (or as soon as its predecessor,
                // which the peer just rekeyed, is deleted).
                if let Some(c) = sa.children.iter_mut().find(|c| c.spi_in == spi_in) {
                    c.state = crate::sa::child::ChildState::Installed { rekey_at: Some(ctx.now) };
                }
                sa.handle_timeout(ctx)?;
            }
            sa.kick(ctx);
            Ok(())
        });
    }

    /// The datapath received authenticated ESP on the inbound SA `spi`: the peer is
    /// alive, so dead peer detection needs no liveness check (and `last_heard` moves).
    /// Meant to be called about once a second per SA at most (for example when an SA's
    /// inbound packet counter grew), not per packet.
    pub fn handle_esp_activity(&mut self, now: Timestamp, spi: Spi) {
        let owner = self
            .sas
            .position(|s| s.children.iter().any(|c| c.spi_in == spi) || s.retiring.iter().any(|(r, _)| *r == spi));
        if let Some(sa) = owner.and_then(|i| self.sas.get_mut(i)) {
            sa.last_esp = Some(sa.last_esp.map_or(now, |t| t.max(now)));
        }
        self.sas.settle();
    }

    /// Timers (retransmission, initiation, ...). Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mark = self.shared.out.len();
        self.handle_timeout_inner(now);
        self.after_input(mark);
    }

    fn handle_timeout_inner(&mut self, now: Timestamp) {
        self.probe_silent_peers(now);
        for i in 0..self.peers.len() {
            let due = self.peers.get(i).is_some_and(|p| p.retry_at.is_some_and(|t| t <= now));
            if due {
                if let Some(p) = self.peers.get_mut(i) {
                    p.retry_at = None;
                    if !p.wanted {
                        continue;
                    }
                }
                self.start_initiator(now, i);
            }
        }
        for i in self.sas.due(now) {
            if self.sas.get(i).and_then(IkeSa::poll_timeout).is_some_and(|t| t <= now) {
                self.run(now, i, |sa, ctx| sa.handle_timeout(ctx));
            }
        }
    }

    /// After every input: settle the SA indexes, keep an outbound SA in the seal path
    /// of every tunnel, and follow inbound SPIs.
    fn after_input(&mut self, mark: usize) {
        self.keep_outbound(mark);
        for out in self.shared.out.iter().skip(mark) {
            if let Output::Datapath(cmd) = out {
                self.shared.spis.observe(cmd);
            }
        }
        self.sas.settle();
    }

    /// Next output, `None` when drained.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.shared.out.pop_front()
    }

    /// Earliest time `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let peers = self.peers.iter().filter_map(|p| p.retry_at).min();
        peers.into_iter().chain(self.sas.next_deadline()).min()
    }

    /// Every IKE SA and its CHILD SAs.
    pub fn status(&self) -> Vec<IkeSaStatus> {
        self.sas
            .iter()
            .map(|sa| IkeSaStatus {
                tunnel: sa.peer.name.clone(),
                state: sa.state.name(),
                initiator: sa.initiator,
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                local: sa.local,
                remote: sa.remote,
                local_id: sa.peer.local_id.clone(),
                remote_id: sa.peer.remote_id.clone(),
                encr: sa.keys.as_ref().map(|k| k.algs.encr),
                prf: sa.keys.as_ref().map(|k| k.algs.prf),
                dh: sa.keys.as_ref().map(|k| k.algs.dh),
                nat_detected: sa.nat,
                established_at: sa.established_at,
                last_heard: sa.heard(),
                next_rekey: sa.state.next_rekey(),
                children: sa.children.iter().map(|c| c.status()).collect(),
            })
            .collect()
    }

    /// True once every IKE SA is gone (after `TerminateAll`, when the gateway may exit).
    pub fn is_idle(&self) -> bool {
        self.sas.is_empty()
    }

    /// Replaces the limits (they apply to what arrives from now on).
    pub fn set_limits(&mut self, limits: Limits) {
        self.shared.limits = limits;
    }

    /// What the endpoint refused so far, by reason (for `vpnctl status`).
    pub fn drops(&self) -> IkeDrops {
        self.shared.drops
    }

    /// Half-open IKE SAs: responder SAs whose peer has not authenticated yet.
    pub fn half_open(&self) -> usize {
        self.sas.iter().filter(|s| !s.initiator && s.established_at.is_none() && s.state.is_authenticating()).count()
    }

    /// Number of IKE SAs (any state). For tests and diagnostics.
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len()
    }
}
