//! One ISAKMP SA with the IPsec SA pairs it negotiated: Main Mode in either role, then
//! Quick Mode exchanges by message ID, Informational messages (Delete, DPD), and the
//! timers around them: retransmission of our last message, answers to the peer's
//! retransmissions, Quick Mode rekeying before expiry (make-before-break), dead peer
//! detection (RFC 3706), NAT-keepalives (RFC 3948 2.3) and re-authentication (a new
//! Main Mode) before the phase-1 lifetime ends.
//!
//! Unlike IKEv2, an IPsec SA does not belong to the ISAKMP SA that created it (RFC
//! 2409 5.5): when a newer ISAKMP SA with the same peer is up, the endpoint moves the
//! pairs to it (`take_pairs`) and the old one is deleted.
//!
//! The exchanges themselves (messages, keys, proposals) are in `main_mode`,
//! `quick_mode` and `info`; admission and routing by cookie in `endpoint::v1`.

use super::aggressive;
use super::info::{self, Info};
use super::main_mode::{self, MainModeConfig, MainModeError, Phase1Sa, Step};
use super::message::payload::{Notify, Payload};
use super::message::{emit_clear, exchange, Header};
use super::proposal::{QuickAlgs, ENCAP_TUNNEL, ENCAP_UDP_TUNNEL};
use super::quick_mode::{QuickConfig, QuickError, QuickInitiator, QuickResponder, QuickSa};
use crate::api::{ChildSaStatus, EncapReason, Event, Output, PeerConfig, Transmit, NAT_KEEPALIVE};
use crate::down::{DownReason, Failure};
use crate::log::warn_unauth;
use crate::sa::child::{volume_limits, OLD_INBOUND_GRACE};
use crate::sa::task_manager::{RETRANSMIT_BASE, RETRANSMIT_LIMIT};
use crate::sa::{Ctx, HALF_OPEN_TIMEOUT};
use ipsec_types::{
    ChildRef, DatapathCommand, Direction, SaEndpoints, SaParams, Spi, Timestamp, TrafficSelector, UdpEncap,
};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// Quick Mode exchanges of the peer in flight at once per ISAKMP SA; its oldest is dropped
/// for a new one (an authenticated peer that abandons exchanges cannot grow the SA).
const MAX_QUICK: usize = 8;
/// Answers kept for the peer's retransmissions (by hash of its message).
const MAX_ANSWERS: usize = 8;
/// Message IDs of the peer's Quick Mode and Informational exchanges remembered per
/// ISAKMP SA to refuse replays (IKEv1 messages carry no sequence number; a replayed one
/// verifies). The oldest is forgotten past this many; only authenticated messages add.
const MAX_SEEN_MIDS: usize = 4096;
/// As Quick Mode initiator we switch outbound traffic to the new pair this long after
/// sending message 3, so that the responder (which installs its inbound SA when message
/// 3 arrives) is ready for it.
const QUICK_OUTBOUND_DELAY: Duration = Duration::from_millis(500);
/// A pair our rekey replaced is deleted this long after the new one carries traffic:
/// packets sealed with it just before the switch are through by then.
const REKEYED_DELETE_DELAY: Duration = Duration::from_secs(1);
/// After a failed Quick Mode we try again this much later.
const QUICK_RETRY: Duration = Duration::from_secs(10);
/// R-U-THERE is repeated at this interval until `dpd.timeout` ends.
const DPD_RETRY: Duration = Duration::from_secs(5);
/// After the peer deleted a pair we keep up, we negotiate it again this much later.
const PAIR_AGAIN: Duration = Duration::from_secs(1);
/// NAT-keepalive interval (RFC 3948 4 suggests 20 s) when we are behind a NAT.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// Where the ISAKMP SA stands.
pub(crate) enum Stage {
    MainI(Box<main_mode::Initiator>),
    MainR(Box<main_mode::Responder>),
    AggrI(Box<aggressive::Initiator>),
    AggrR(Box<aggressive::Responder>),
    Up(Box<Phase1Sa>),
}

/// Where an IPsec SA pair stands.
#[derive(Clone, Debug)]
pub(crate) enum PairState {
    /// Inbound installed; outbound waits for Quick Mode message 3 (we responded) or for
    /// `QUICK_OUTBOUND_DELAY` (we initiated).
    Installing { out: Box<SaParams>, at: Option<Timestamp> },
    /// Both directions installed and in use.
    Installed,
    /// Replaced by a newer pair for the same selectors; deleted at `delete_at` (our
    /// rekey) or when the peer deletes it (its rekey) or at its hard expiry.
    Rekeyed { delete_at: Option<Timestamp> },
}

/// One IPsec SA pair (a "CHILD SA" in `vpnctl status`).
pub(crate) struct Pair {
    pub(crate) child_id: u64,
    pub(crate) spi_in: Spi,
    pub(crate) spi_out: Spi,
    pub(crate) local_ts: TrafficSelector,
    pub(crate) remote_ts: TrafficSelector,
    pub(crate) algs: QuickAlgs,
    pub(crate) encap: Option<UdpEncap>,
    pub(crate) established_at: Timestamp,
    /// When to start a Quick Mode that replaces it (`None`: in flight or not ours to do).
    pub(crate) rekey_at: Option<Timestamp>,
    pub(crate) expire_at: Timestamp,
    pub(crate) state: PairState,
    /// It replaces only pairs with a lower child id: those that existed when its Quick
    /// Mode started (a pair the peer made meanwhile, by a rekey of its own, stays).
    pub(crate) floor: u64,
}

impl Pair {
    fn outbound_installed(&self) -> bool {
        !matches!(self.state, PairState::Installing { .. })
    }

    pub(crate) fn status(&self) -> ChildSaStatus {
        ChildSaStatus {
            child_id: self.child_id,
            state: match self.state {
                PairState::Installing { .. } => "INSTALLING",
                PairState::Installed => "INSTALLED",
                PairState::Rekeyed { .. } => "REKEYED",
            },
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            local_ts: vec![self.local_ts],
            remote_ts: vec![self.remote_ts],
            encr: self.algs.encr,
            integ: self.algs.integ,
            dh: self.algs.pfs,
            encap: self.encap,
            established_at: self.established_at,
            next_rekey: match self.state {
                PairState::Installed => self.rekey_at,
                PairState::Rekeyed { delete_at } => delete_at,
                PairState::Installing { .. } => None,
            },
            // A rekeyed pair goes when it is deleted (ours to do, or the peer's by then).
            expires_at: match self.state {
                PairState::Rekeyed { delete_at: Some(t) } => Some(t.min(self.expire_at)),
                _ => Some(self.expire_at),
            },
        }
    }

    fn same_selectors(&self, l: &TrafficSelector, r: &TrafficSelector) -> bool {
        self.local_ts == *l && self.remote_ts == *r
    }
}

/// A Quick Mode exchange in flight.
enum Quick {
    /// We initiated it (for these selectors; `rekey_of`: the pair it replaces; `floor`:
    /// the first child id not yet given out when it started).
    I { ex: Box<QuickInitiator>, rekey_of: Option<u64>, floor: u64 },
    /// We answered it; the pair `child_id` waits for message 3.
    R { ex: Box<QuickResponder>, child_id: u64 },
}

impl Quick {
    fn message_id(&self) -> u32 {
        match self {
            Self::I { ex, .. } => ex.message_id(),
            Self::R { ex, .. } => ex.message_id(),
        }
    }
}

/// What we retransmit until it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RtxKind {
    /// Our Main Mode message (initiator).
    Main,
    /// Quick Mode message 1 (initiator) or 2 (responder, until message 3) of this ID.
    Quick(u32),
}

struct Rtx {
    kind: RtxKind,
    msg: Vec<u8>,
    next: Timestamp,
    tries: u32,
}

/// Dead peer detection state (RFC 3706).
#[derive(Default)]
struct DpdState {
    seq: u32,
    /// The probe in flight: its sequence number, when the first went out, when to repeat.
    probe: Option<(u32, Timestamp, Timestamp)>,
}

/// What an ISAKMP SA asks of the endpoint after an input.
pub(crate) enum V1Action {
    /// Phase 1 is up: move the tunnel's pairs here from older SAs (which are then deleted),
    /// and with `initial_contact`, drop every other SA of the tunnel.
    Established { initial_contact: bool },
    /// Start a new Main Mode with the peer (re-authentication before the lifetime ends).
    Reauthenticate,
    /// The peer deleted these pairs (by our outbound SPI), which this SA does not hold:
    /// another ISAKMP SA of the tunnel may.
    PeerDeleted(Vec<u32>),
}

pub(crate) struct V1Sa {
    pub(crate) peer: PeerConfig,
    pub(crate) initiator: bool,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) stage: Stage,
    pub(crate) created: Timestamp,
    pub(crate) established_at: Option<Timestamp>,
    pub(crate) last_heard: Option<Timestamp>,
    pub(crate) last_esp: Option<Timestamp>,
    pub(crate) reauth_at: Option<Timestamp>,
    pub(crate) expire_at: Option<Timestamp>,
    /// Its pairs moved to a newer ISAKMP SA: deleted at this time (we re-authenticated) or
    /// when the peer deletes it.
    pub(crate) replaced_at: Option<Timestamp>,
    /// Sent DELETE / being removed: no further work.
    pub(crate) dead: bool,
    pub(crate) pairs: Vec<Pair>,
    /// Inbound SPIs of removed pairs in their grace period.
    pub(crate) retiring: Vec<(Spi, Timestamp)>,
    quick: Vec<Quick>,
    /// Our Quick Modes waiting for the one in flight: (local, remote, pair it rekeys).
    waiting: VecDeque<(TrafficSelector, TrafficSelector, Option<u64>)>,
    rtx: Vec<Rtx>,
    answers: VecDeque<([u8; 32], Vec<u8>)>,
    /// Message IDs of exchanges the peer started here (authenticated), oldest first.
    seen_mids: VecDeque<u32>,
    seen_set: HashSet<u32>,
    dpd: DpdState,
    quick_retry_at: Option<Timestamp>,
    keepalive_at: Option<Timestamp>,
    /// Why the exchange seems to fail (for the reason given when it is given up).
    hint: Option<DownReason>,
    /// We send INITIAL-CONTACT with message 5 (no other ISAKMP SA with the peer).
    contact: bool,
    pub(crate) actions: Vec<V1Action>,
}

/// The shortest lifetime a peer can impose (unless ours is shorter): below it a
/// misconfigured or hostile peer would make the tunnel rekey continuously.
const MIN_PEER_LIFE: Duration = Duration::from_secs(60);

/// The lifetime in force: ours, or the peer's if shorter, but not below
/// `MIN_PEER_LIFE` unless ours is.
fn agreed_life(ours: Duration, theirs: Option<u64>) -> Duration {
    theirs.map_or(ours, |s| Duration::from_secs(s).max(MIN_PEER_LIFE.min(ours)).min(ours))
}

impl V1Sa {
    fn new(
        peer: PeerConfig,
        initiator: bool,
        local: SocketAddr,
        remote: SocketAddr,
        stage: Stage,
        now: Timestamp,
    ) -> Self {
        Self {
            peer,
            initiator,
            local,
            remote,
            stage,
            created: now,
            established_at: None,
            last_heard: None,
            last_esp: None,
            reauth_at: None,
            expire_at: None,
            replaced_at: None,
            dead: false,
            pairs: vec![],
            retiring: vec![],
            quick: vec![],
            waiting: VecDeque::new(),
            rtx: vec![],
            answers: VecDeque::new(),
            seen_mids: VecDeque::new(),
            seen_set: HashSet::new(),
            dpd: DpdState::default(),
            quick_retry_at: None,
            keepalive_at: None,
            hint: None,
            contact: false,
            actions: vec![],
        }
    }

    fn mm_config<'a>(peer: &'a PeerConfig, local: SocketAddr, remote: SocketAddr, contact: bool) -> MainModeConfig<'a> {
        MainModeConfig {
            proposals: &peer.ike_proposals,
            psk: &peer.psk,
            local_id: &peer.local_id,
            remote_id: Some(&peer.remote_id),
            life_secs: peer.timers.ike_life_time.as_secs(),
            local,
            remote,
            fake_nat: peer.force_encap,
            announce_vpngw: peer.announce_vpngw,
            initial_contact: contact,
        }
    }

    /// Starts Main Mode as initiator (message 1 goes out). `initial_contact`: we hold no
    /// other ISAKMP SA with the peer.
    pub(crate) fn initiate(peer: PeerConfig, ctx: &mut Ctx<'_>, initial_contact: bool) -> Self {
        let local = SocketAddr::new(peer.local_addr, ctx.ike_port);
        let remote = SocketAddr::new(peer.remote_addr, ctx.ike_port);
        let cfg = Self::mm_config(&peer, local, remote, initial_contact);
        let aggressive = if peer.aggressive { aggressive::Initiator::start(&cfg, ctx.rng) } else { None };
        let (stage, msg, mode) = match aggressive {
            Some((ex, msg)) => (Stage::AggrI(Box::new(ex)), msg, "Aggressive"),
            None => {
                let (ex, msg) = main_mode::Initiator::start(&cfg, ctx.rng);
                (Stage::MainI(Box::new(ex)), msg, "Main")
            }
        };
        let mut sa = Self::new(peer, true, local, remote, stage, ctx.now);
        tracing::info!(tunnel = %sa.peer.name, peer = %remote, "initiating IKEv1 {mode} Mode");
        sa.contact = initial_contact;
        sa.send_tracked(ctx, RtxKind::Main, msg);
        sa
    }

    /// Answers Main Mode message 1 (the endpoint admitted it). `None` if it is refused.
    pub(crate) fn respond(
        peer: &PeerConfig,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Option<Self> {
        let cfg = Self::mm_config(peer, local, remote, false);
        let aggressive = Header::parse(data).is_ok_and(|h| h.exchange == exchange::AGGRESSIVE);
        if aggressive && !peer.aggressive {
            ctx.drops.refused_proposal += 1;
            let (name, ip) = (&peer.name, remote.ip());
            warn_unauth!(ctx, "tunnel {name}: IKEv1 Aggressive Mode from {ip} refused: not enabled for this tunnel (aggressive = true)");
            return None;
        }
        let accepted = if aggressive {
            aggressive::Responder::accept(&cfg, ctx.rng, data).map(|(ex, msg)| (Stage::AggrR(Box::new(ex)), msg))
        } else {
            main_mode::Responder::accept(&cfg, ctx.rng, data).map(|(ex, msg)| (Stage::MainR(Box::new(ex)), msg))
        };
        match accepted {
            Ok((stage, msg)) => {
                let mut sa = Self::new(peer.clone(), false, local, remote, stage, ctx.now);
                sa.remember_answer(data, &msg);
                if aggressive {
                    // Message 3 is the initiator's last: without it we would sit half-open
                    // while the initiator thinks it is up, so message 2 goes again until it
                    // comes (the initiator answers a repeat from its cache).
                    sa.send_tracked(ctx, RtxKind::Main, msg);
                } else {
                    sa.transmit(ctx, msg);
                }
                Some(sa)
            }
            Err(MainModeError::NoProposalChosen) => {
                ctx.drops.refused_proposal += 1;
                let (name, ip) = (&peer.name, remote.ip());
                warn_unauth!(
                    ctx,
                    "tunnel {name}: IKEv1 Main Mode from {ip}: no proposal chosen (none of the offered transforms matches ike_proposals {})",
                    peer.ike_proposals.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                );
                if ctx.answers.take(ctx.now) {
                    if let Ok(h) = Header::parse(data) {
                        let n = Notify {
                            doi: super::message::payload::DOI_IPSEC,
                            protocol: super::message::payload::proto::ISAKMP,
                            msg_type: info::notify::NO_PROPOSAL_CHOSEN,
                            spi: [h.cky_i.to_be_bytes(), [0u8; 8]].concat(),
                            data: vec![],
                        };
                        let hdr = Header { exchange: exchange::INFORMATIONAL, message_id: 0, cky_r: 0, ..h };
                        let msg = emit_clear(hdr, &[Payload::Notify(n)]);
                        ctx.out.push_back(Output::Transmit(Transmit { local, remote, data: msg }));
                    }
                }
                None
            }
            Err(e) => {
                ctx.drops.malformed += 1;
                tracing::debug!(from = %remote, error = %e, "IKEv1 Main Mode message 1 dropped");
                None
            }
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.peer.name
    }

    /// Our cookie (the one we chose).
    pub(crate) fn ours(&self) -> u64 {
        let (i, r) = self.cookies();
        if self.initiator {
            i
        } else {
            r
        }
    }

    /// (initiator cookie, responder cookie); the responder's is 0 until message 2.
    pub(crate) fn cookies(&self) -> (u64, u64) {
        match &self.stage {
            Stage::MainI(ex) => (ex.cookie(), ex.peer_cookie()),
            Stage::MainR(ex) => (ex.peer_cookie(), ex.cookie()),
            Stage::AggrI(ex) => (ex.cookie(), 0),
            Stage::AggrR(ex) => (ex.peer_cookie(), ex.cookie()),
            Stage::Up(p1) => (p1.cky_i, p1.cky_r),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        matches!(self.stage, Stage::Up(_)) && !self.dead
    }

    /// A responder SA whose peer has not authenticated yet.
    pub(crate) fn half_open(&self) -> bool {
        !self.initiator && matches!(self.stage, Stage::MainR(_) | Stage::AggrR(_))
    }

    pub(crate) fn heard(&self) -> Option<Timestamp> {
        self.last_heard.max(self.last_esp)
    }

    pub(crate) fn phase1(&self) -> Option<&Phase1Sa> {
        match &self.stage {
            Stage::Up(p1) => Some(p1),
            _ => None,
        }
    }

    pub(crate) fn state_name(&self) -> &'static str {
        match (&self.stage, self.dead) {
            (_, true) => "DELETING",
            (Stage::Up(_), _) if self.replaced_at.is_some() => "REKEYED",
            (Stage::Up(_), _) => "ESTABLISHED",
            _ => "MAIN_MODE",
        }
    }

    fn transmit(&self, ctx: &mut Ctx<'_>, data: Vec<u8>) {
        ctx.out.push_back(Output::Transmit(Transmit { local: self.local, remote: self.remote, data }));
    }

    /// Sends `msg` and retransmits it until `kind` is answered.
    fn send_tracked(&mut self, ctx: &mut Ctx<'_>, kind: RtxKind, msg: Vec<u8>) {
        self.transmit(ctx, msg.clone());
        self.rtx.retain(|r| r.kind != kind);
        self.rtx.push(Rtx { kind, msg, next: ctx.now + RETRANSMIT_BASE, tries: 0 });
    }

    fn answered(&mut self, kind: RtxKind) {
        self.rtx.retain(|r| r.kind != kind);
    }

    /// Remembers `answer` as our reply to the peer's `msg`, to repeat it if `msg` comes again.
    fn remember_answer(&mut self, msg: &[u8], answer: &[u8]) {
        if self.answers.len() >= MAX_ANSWERS {
            self.answers.pop_front();
        }
        self.answers.push_back((crate::crypto::digest(msg), answer.to_vec()));
    }

    /// Whether the peer used message ID `mid` for an exchange already: a replay.
    fn seen_mid(&self, mid: u32) -> bool {
        self.seen_set.contains(&mid)
    }

    /// Records `mid` of an authenticated message that started an exchange of the peer.
    fn record_mid(&mut self, mid: u32) {
        if !self.seen_set.insert(mid) {
            return;
        }
        if self.seen_mids.len() >= MAX_SEEN_MIDS {
            if let Some(old) = self.seen_mids.pop_front() {
                self.seen_set.remove(&old);
            }
        }
        self.seen_mids.push_back(mid);
    }

    fn quick_config<'a>(&'a self, local_ts: &'a TrafficSelector, remote_ts: &'a TrafficSelector) -> QuickConfig<'a> {
        QuickConfig {
            proposals: &self.peer.esp_proposals,
            local_ts,
            remote_ts,
            life_secs: self.peer.timers.child_life_time.as_secs(),
            encap: if self.floated() { ENCAP_UDP_TUNNEL } else { ENCAP_TUNNEL },
        }
    }

    /// ESP goes in UDP: a NAT was detected (or faked to force encapsulation), or both
    /// sides are vpngw.
    pub(crate) fn floated(&self) -> bool {
        self.phase1().is_some_and(|p| p.nat.detected())
    }

    /// Why ESP goes in UDP, if it does.
    pub(crate) fn encap_reason(&self) -> Option<EncapReason> {
        self.phase1().and_then(|p| p.nat.reason(self.peer.force_encap))
    }

    fn endpoints(&self) -> SaEndpoints {
        let encap = self.floated().then(|| UdpEncap { local_port: self.local.port(), remote_port: self.remote.port() });
        SaEndpoints { local: self.local.ip(), remote: self.remote.ip(), encap }
    }

    /// A datagram of this SA arrived on `local` from `remote`.
    pub(crate) fn handle_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), Failure> {
        let Ok(h) = Header::parse(data) else {
            ctx.drops.malformed += 1;
            return Ok(());
        };
        let digest = crate::crypto::digest(data);
        if let Some((_, answer)) = self.answers.iter().find(|(d, _)| *d == digest) {
            // The peer did not get our answer: repeat it (once per copy it sends).
            let answer = answer.clone();
            ctx.out.push_back(Output::Transmit(Transmit { local: self.local, remote: self.remote, data: answer }));
            return Ok(());
        }
        match h.exchange {
            exchange::MAIN | exchange::AGGRESSIVE => self.main_mode(ctx, local, remote, data),
            exchange::QUICK => {
                self.quick_mode(ctx, local, remote, data);
                Ok(())
            }
            exchange::INFORMATIONAL => self.informational(ctx, local, remote, data, &h),
            _ => {
                ctx.drops.malformed += 1;
                Ok(())
            }
        }
    }

    fn main_mode(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Result<(), Failure> {
        let (cfg_local, cfg_remote) = (self.nat_d_local(ctx), SocketAddr::new(self.peer.remote_addr, ctx.ike_port));
        let contact = self.contact;
        let step = match &mut self.stage {
            Stage::MainI(ex) => {
                let cfg = Self::mm_config(&self.peer, cfg_local, cfg_remote, contact);
                let was_authenticating = ex.authenticating();
                let r = ex.handle(&cfg, ctx.rng, data);
                if r.is_ok() && !was_authenticating && ex.authenticating() && ex.nat().detected() {
                    // RFC 3947 4: from message 5 on, the NAT-T port with the non-ESP marker.
                    self.local = SocketAddr::new(self.local.ip(), ctx.natt_port);
                    self.remote = SocketAddr::new(self.remote.ip(), ctx.natt_port);
                }
                r
            }
            Stage::MainR(ex) => {
                let cfg = Self::mm_config(&self.peer, cfg_local, cfg_remote, false);
                let was_authenticating = ex.authenticating();
                let r = ex.handle(&cfg, ctx.rng, data);
                if r.is_ok() && was_authenticating {
                    // Message 5 authenticated: answer where it came from (NAT-T port).
                    self.local = crate::sa::unspecified_to(local, self.peer.local_addr);
                    self.remote = remote;
                }
                r
            }
            Stage::AggrI(ex) => {
                let cfg = Self::mm_config(&self.peer, cfg_local, cfg_remote, contact);
                let r = ex.handle(&cfg, ctx.rng, data);
                if let Ok(Step::Done(p1, _)) = &r {
                    if p1.nat.detected() {
                        // RFC 3947 4: message 3 goes to the NAT-T port.
                        self.local = SocketAddr::new(self.local.ip(), ctx.natt_port);
                        self.remote = SocketAddr::new(self.remote.ip(), ctx.natt_port);
                    }
                }
                r
            }
            Stage::AggrR(ex) => {
                let cfg = Self::mm_config(&self.peer, cfg_local, cfg_remote, false);
                let r = ex.handle(&cfg, data);
                if r.is_ok() {
                    self.local = crate::sa::unspecified_to(local, self.peer.local_addr);
                    self.remote = remote;
                }
                r
            }
            Stage::Up(_) => {
                ctx.drops.malformed += 1;
                return Ok(());
            }
        };
        match step {
            Ok(Step::Send(msg)) => {
                // A repeat of the message we answer gets the same answer at once.
                self.remember_answer(data, &msg);
                if self.initiator {
                    self.send_tracked(ctx, RtxKind::Main, msg);
                } else {
                    self.transmit(ctx, msg);
                }
                Ok(())
            }
            Ok(Step::Done(p1, answer)) => {
                // Our last message (Main Mode 6, Aggressive Mode 3) goes again if the
                // peer repeats the message it answers.
                if let Some(msg) = answer {
                    self.remember_answer(data, &msg);
                    self.transmit(ctx, msg);
                }
                self.answered(RtxKind::Main);
                self.established(ctx, p1);
                Ok(())
            }
            Err(e) => {
                self.main_mode_error(ctx, remote, e);
                Ok(())
            }
        }
    }

    /// Our address as NAT-D hashes it: the configured one on the port the SA started on.
    fn nat_d_local(&self, ctx: &Ctx<'_>) -> SocketAddr {
        SocketAddr::new(self.peer.local_addr, ctx.ike_port)
    }

    /// A Main Mode message that did not fit: unauthenticated, so it changes nothing; what
    /// it suggests is logged (rate-limited) and kept for the reason if the exchange fails.
    fn main_mode_error(&mut self, ctx: &mut Ctx<'_>, from: SocketAddr, e: MainModeError) {
        let name = self.peer.name.clone();
        let ip = from.ip();
        match e {
            MainModeError::AuthenticationFailed => {
                self.hint = Some(DownReason::PskMismatch);
                warn_unauth!(
                    ctx,
                    "tunnel {name}: IKEv1 Main Mode with {ip}: authentication failed (pre-shared key mismatch?)"
                );
            }
            MainModeError::NoProposalChosen => {
                self.hint = Some(DownReason::UnofferedProposal);
                warn_unauth!(ctx, "tunnel {name}: IKEv1 Main Mode with {ip}: no proposal chosen (the answer names a transform we did not offer)");
            }
            MainModeError::WrongIdentity(id) => {
                self.hint = Some(DownReason::IdentityMismatch);
                warn_unauth!(ctx, "tunnel {name}: IKEv1 Main Mode with {ip}: peer identity {id} is not remote_id");
            }
            other => {
                ctx.drops.malformed += 1;
                tracing::debug!(tunnel = %name, from = %from, error = %other, "IKEv1 Main Mode message dropped");
            }
        }
    }

    fn established(&mut self, ctx: &mut Ctx<'_>, p1: Box<Phase1Sa>) {
        let now = ctx.now;
        self.established_at = Some(now);
        self.last_heard = Some(now);
        let ours = self.peer.timers.ike_life_time;
        let life = agreed_life(ours, p1.life_secs);
        let rekey = self.peer.timers.ike_rekey_time.min(life.mul_f64(0.9));
        let rekey = ctx.jittered(rekey, self.peer.timers.rekey_jitter_percent);
        self.reauth_at = Some(now + rekey);
        self.expire_at = Some(now + life);
        let initial_contact = p1.initial_contact;
        tracing::info!(
            tunnel = %self.peer.name,
            peer = %self.remote,
            "IKEv1 Main Mode established ({}, {}, {}), peer identity {}",
            p1.algs.keywords(),
            if self.initiator { "initiator" } else { "responder" },
            match p1.nat.reason(self.peer.force_encap) {
                Some(EncapReason::VpngwPeer) => "ESP in UDP 4500 (peer is vpngw)",
                Some(_) => "NAT-T on UDP 4500",
                None => "no NAT",
            },
            p1.peer_id
        );
        if p1.nat.local_behind {
            self.keepalive_at = Some(now + KEEPALIVE);
        }
        self.stage = Stage::Up(p1);
        ctx.out.push_back(Output::Event(Event::IkeUp { peer: self.peer.name.clone() }));
        self.actions.push(V1Action::Established { initial_contact });
    }

    /// The tunnel's selector pairs (one Quick Mode each: IKEv1 IDs carry one selector).
    fn selector_pairs(&self) -> Vec<(TrafficSelector, TrafficSelector)> {
        let mut out = vec![];
        for l in &self.peer.local_ts {
            for r in &self.peer.remote_ts {
                if l.is_ipv4() == r.is_ipv4() {
                    out.push((*l, *r));
                }
            }
        }
        out
    }

    /// As the side that keeps the tunnel up, start a Quick Mode for every selector pair that
    /// no pair carries and no Quick Mode is negotiating.
    pub(crate) fn ensure_pairs(&mut self, ctx: &mut Ctx<'_>) {
        if !self.is_up() || self.replaced_at.is_some() || !(self.initiator || self.peer.initiate) {
            return;
        }
        if self.quick_retry_at.is_some_and(|t| t > ctx.now) {
            return;
        }
        self.quick_retry_at = None;
        for (l, r) in self.selector_pairs() {
            let carried =
                self.pairs.iter().any(|p| p.same_selectors(&l, &r) && !matches!(p.state, PairState::Rekeyed { .. }));
            let negotiating = self
                .quick
                .iter()
                .any(|q| matches!(q, Quick::I { ex, .. } if *ex.local_ts() == l && *ex.remote_ts() == r))
                || self.waiting.iter().any(|(wl, wr, _)| *wl == l && *wr == r);
            if !carried && !negotiating {
                self.start_quick(ctx, l, r, None);
            }
        }
    }

    /// Starts a Quick Mode for selectors `l`/`r`, or queues it while one of ours is in
    /// flight: peers keep the IV state of only a few Quick Modes per ISAKMP SA (strongSwan
    /// three, dropping the least recently used), so ours go one at a time.
    fn start_quick(&mut self, ctx: &mut Ctx<'_>, l: TrafficSelector, r: TrafficSelector, rekey_of: Option<u64>) {
        if self.quick.iter().any(|q| matches!(q, Quick::I { .. })) {
            if !self.waiting.iter().any(|(wl, wr, _)| *wl == l && *wr == r) {
                self.waiting.push_back((l, r, rekey_of));
            }
            return;
        }
        let Stage::Up(p1) = &self.stage else { return };
        let spi_in = ctx.random_spi();
        let cfg = self.quick_config(&l, &r);
        match QuickInitiator::start(p1, &cfg, ctx.rng, spi_in) {
            Ok((ex, msg)) => {
                let mid = ex.message_id();
                tracing::info!(tunnel = %self.peer.name, local = %l, remote = %r, rekey = rekey_of.is_some(), "IKEv1 Quick Mode started");
                // Ours are not capped: at most one per selector pair and one per pair.
                self.quick.push(Quick::I { ex: Box::new(ex), rekey_of, floor: *ctx.next_child_id });
                self.send_tracked(ctx, RtxKind::Quick(mid), msg);
            }
            Err(e) => {
                tracing::warn!(tunnel = %self.peer.name, error = %e, "cannot start Quick Mode");
                self.quick_retry_at = Some(ctx.now + QUICK_RETRY);
            }
        }
    }

    /// Our next queued Quick Mode, once none of ours is in flight.
    fn next_quick(&mut self, ctx: &mut Ctx<'_>) {
        if self.quick.iter().any(|q| matches!(q, Quick::I { .. })) {
            return;
        }
        if let Some((l, r, rekey_of)) = self.waiting.pop_front() {
            self.start_quick(ctx, l, r, rekey_of);
        }
    }

    fn quick_mode(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let Stage::Up(p1) = &self.stage else {
            ctx.drops.malformed += 1;
            return;
        };
        let Ok(h) = Header::parse(data) else { return };
        let mid = h.message_id;
        let name = self.peer.name.clone();
        match self.quick.iter().position(|q| q.message_id() == mid) {
            Some(i) => match self.quick.get(i) {
                Some(Quick::I { ex, floor, .. }) => {
                    let floor = *floor;
                    let (l, r) = (*ex.local_ts(), *ex.remote_ts());
                    let cfg = self.quick_config(&l, &r);
                    match ex.handle(p1, &cfg, data) {
                        Ok((qsa, msg3)) => {
                            self.quick.remove(i);
                            self.answered(RtxKind::Quick(mid));
                            self.mark_heard(ctx, local, remote);
                            // Inbound first: the peer may use the pair once it has message 3.
                            self.install(ctx, qsa, Some(floor));
                            self.remember_answer(data, &msg3);
                            self.transmit(ctx, msg3);
                            self.next_quick(ctx);
                        }
                        Err(e) => self.quick_error(ctx, e, mid),
                    }
                }
                Some(Quick::R { ex, child_id }) => {
                    let child_id = *child_id;
                    match ex.handle(p1, data) {
                        Ok(()) => {
                            self.quick.remove(i);
                            self.answered(RtxKind::Quick(mid));
                            self.mark_heard(ctx, local, remote);
                            self.complete_outbound(ctx, child_id);
                        }
                        Err(e) => self.quick_error(ctx, e, mid),
                    }
                }
                None => {}
            },
            None => {
                if self.seen_mid(mid) {
                    // A replay of a Quick Mode the peer ran here before (its answer left the
                    // cache): authentic but not fresh.
                    ctx.drops.malformed += 1;
                    tracing::debug!(tunnel = %name, mid = format_args!("{mid:08x}"), "replayed IKEv1 Quick Mode message dropped");
                    return;
                }
                // A new Quick Mode from the peer: within `child_sa_max` pairs in use (and as
                // many replaced ones in their last moments).
                let live = self.pairs.iter().filter(|p| !matches!(p.state, PairState::Rekeyed { .. })).count();
                let cap = ctx.limits.child_sa_max;
                if live >= cap || self.pairs.len() >= cap.saturating_mul(2) {
                    ctx.drops.child_sa_cap += 1;
                    warn_unauth!(ctx, "tunnel {name}: IKEv1 Quick Mode from the peer ignored: {live} SA pairs in use (child_sa_max {cap})");
                    return;
                }
                let spi_in = ctx.random_spi();
                let pairs = self.selector_pairs();
                // Our side of the selectors: the configured pair containing the peer's IDs.
                let mut result = Err(QuickError::TsUnacceptable);
                for (l, r) in &pairs {
                    let cfg = self.quick_config(l, r);
                    result = QuickResponder::accept(p1, &cfg, ctx.rng, data, spi_in);
                    if !matches!(result, Err(QuickError::TsUnacceptable)) {
                        break;
                    }
                }
                match result {
                    Ok((ex, qsa, msg2)) => {
                        self.record_mid(mid);
                        self.mark_heard(ctx, local, remote);
                        let child_id = self.install(ctx, qsa, None);
                        // The peer's oldest goes for a new one; ours stay (dropping a rekey
                        // of ours would leave its pair to run into its hard lifetime).
                        let theirs = || self.quick.iter().filter(|q| matches!(q, Quick::R { .. }));
                        if theirs().count() >= MAX_QUICK {
                            if let Some(i) = self.quick.iter().position(|q| matches!(q, Quick::R { .. })) {
                                let old = self.quick.remove(i);
                                self.answered(RtxKind::Quick(old.message_id()));
                            }
                        }
                        self.quick.push(Quick::R { ex: Box::new(ex), child_id });
                        self.remember_answer(data, &msg2);
                        self.send_tracked(ctx, RtxKind::Quick(mid), msg2);
                    }
                    Err(e) => {
                        match e {
                            QuickError::NotAuthenticated | QuickError::Malformed(_) | QuickError::Unexpected(_) => {
                                ctx.drops.malformed += 1;
                                tracing::debug!(tunnel = %name, error = %e, "IKEv1 Quick Mode message dropped");
                            }
                            other => {
                                // Authenticated (the HASH verified): a configuration mismatch.
                                tracing::warn!(tunnel = %name, "IKEv1 Quick Mode from the peer refused: {other}");
                                self.record_mid(mid);
                                self.mark_heard(ctx, local, remote);
                            }
                        }
                    }
                }
            }
        }
    }

    fn quick_error(&mut self, ctx: &mut Ctx<'_>, e: QuickError, mid: u32) {
        match e {
            QuickError::NotAuthenticated | QuickError::Malformed(_) | QuickError::Unexpected(_) => {
                ctx.drops.malformed += 1;
                tracing::debug!(tunnel = %self.peer.name, error = %e, "IKEv1 Quick Mode message dropped");
            }
            other => {
                tracing::warn!(tunnel = %self.peer.name, "IKEv1 Quick Mode failed: {other}");
                self.drop_quick(ctx, mid);
                self.quick_retry_at = Some(ctx.now + QUICK_RETRY);
            }
        }
    }

    /// Forgets the Quick Mode `mid` (given up): its reserved SPI is released; a pair it
    /// installed inbound only is removed.
    fn drop_quick(&mut self, ctx: &mut Ctx<'_>, mid: u32) {
        self.answered(RtxKind::Quick(mid));
        let Some(i) = self.quick.iter().position(|q| q.message_id() == mid) else { return };
        match self.quick.remove(i) {
            Quick::I { rekey_of, .. } => {
                if let Some(old) = rekey_of {
                    // Try the rekey again later (before the pair expires).
                    if let Some(p) = self.pairs.iter_mut().find(|p| p.child_id == old) {
                        p.rekey_at = Some(ctx.now + QUICK_RETRY);
                    }
                }
                self.next_quick(ctx);
            }
            Quick::R { child_id, .. } => {
                if let Some(j) = self.pairs.iter().position(|p| p.child_id == child_id) {
                    let p = self.pairs.remove(j);
                    self.remove_pair_now(ctx, &p);
                }
            }
        }
    }

    /// An authenticated (and not replayed) message arrived from `remote` on `local`:
    /// the peer is alive, and behind a NAT whose mapping changed, IKE and the UDP-
    /// encapsulated pairs follow it to its new address and port.
    fn mark_heard(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr, remote: SocketAddr) {
        self.last_heard = Some(ctx.now);
        if !self.floated() || local.port() != ctx.natt_port || remote == self.remote {
            return;
        }
        tracing::info!(tunnel = %self.peer.name, from = %self.remote, to = %remote, "IKEv1 peer's NAT mapping changed");
        self.local = crate::sa::unspecified_to(local, self.peer.local_addr);
        self.remote = remote;
        let endpoints = self.endpoints();
        for p in &mut self.pairs {
            let Some(enc) = p.encap.as_mut() else { continue };
            enc.remote_port = remote.port();
            for (spi, direction) in [(p.spi_out, Direction::Outbound), (p.spi_in, Direction::Inbound)] {
                ctx.out.push_back(Output::Datapath(DatapathCommand::UpdateEndpoints {
                    tunnel: self.peer.name.clone(),
                    spi,
                    direction,
                    endpoints,
                }));
            }
        }
    }

    fn params(
        &self,
        direction: Direction,
        spi: Spi,
        child_id: u64,
        qsa: &QuickSa,
        key: ipsec_types::EspKey,
    ) -> SaParams {
        SaParams {
            spi,
            direction,
            child: ChildRef { tunnel: self.peer.name.clone(), child_id },
            endpoints: self.endpoints(),
            key,
            replay_window: if direction == Direction::Inbound { self.peer.replay_window } else { 0 },
            esn: false,
            local_ts: vec![qsa.local_ts],
            remote_ts: vec![qsa.remote_ts],
            limits: volume_limits(self.peer.timers.child_rekey_bytes, self.peer.timers.child_rekey_packets),
        }
    }

    /// A Quick Mode produced `qsa`: inbound is installed now; outbound now (we
    /// responded: after message 3; we initiated: after `QUICK_OUTBOUND_DELAY`).
    /// Older pairs of the same selectors are marked rekeyed. Returns the child id.
    /// `floor`: we initiated it, and pairs from this child id on were made while it ran.
    fn install(&mut self, ctx: &mut Ctx<'_>, qsa: QuickSa, floor: Option<u64>) -> u64 {
        let now = ctx.now;
        let child_id = *ctx.next_child_id;
        *ctx.next_child_id += 1;
        let (spi_in, spi_out) = (Spi(qsa.spi_in), Spi(qsa.spi_out));
        let inbound = self.params(Direction::Inbound, spi_in, child_id, &qsa, qsa.key_in.clone());
        let outbound = self.params(Direction::Outbound, spi_out, child_id, &qsa, qsa.key_out.clone());
        ctx.out.push_back(Output::Datapath(DatapathCommand::InstallInbound(inbound)));
        let ours = self.peer.timers.child_life_time;
        let life = agreed_life(ours, qsa.life_secs);
        let rekey = self.peer.timers.child_rekey_time.min(life.mul_f64(0.9));
        let rekey = ctx.jittered(rekey, self.peer.timers.rekey_jitter_percent);
        let encap = outbound.endpoints.encap;
        if encap.is_none() && qsa.encap != ENCAP_TUNNEL {
            tracing::warn!(tunnel = %self.peer.name, "peer asked for UDP-encapsulated ESP but Main Mode detected no NAT; using raw ESP");
        }
        let at = floor.map(|_| now + QUICK_OUTBOUND_DELAY);
        let pair = Pair {
            child_id,
            spi_in,
            spi_out,
            local_ts: qsa.local_ts,
            remote_ts: qsa.remote_ts,
            algs: qsa.algs,
            encap,
            established_at: now,
            rekey_at: Some(now + rekey),
            expire_at: now + life,
            state: PairState::Installing { out: Box::new(outbound), at },
            floor: floor.unwrap_or(child_id),
        };
        tracing::info!(
            tunnel = %self.peer.name,
            "IKEv1 Quick Mode SA pair {} === {} in {spi_in} out {spi_out} ({}{}{}{})",
            qsa.local_ts,
            qsa.remote_ts,
            qsa.algs.encr.keyword(),
            qsa.algs.integ.map(|i| format!("-{}", i.keyword())).unwrap_or_default(),
            qsa.algs.pfs.map(|g| format!(", PFS {}", g.keyword())).unwrap_or_default(),
            if encap.is_some() { ", UDP-encap" } else { "" }
        );
        ctx.out.push_back(Output::Event(Event::ChildUp { peer: self.peer.name.clone(), spi_in, spi_out }));
        self.pairs.push(pair);
        child_id
    }

    /// The outbound half of pair `child_id` goes into the seal path; older pairs of its
    /// selectors are now rekeyed (ours to delete if we made the new one).
    fn complete_outbound(&mut self, ctx: &mut Ctx<'_>, child_id: u64) {
        let Some(p) = self.pairs.iter_mut().find(|p| p.child_id == child_id) else { return };
        let PairState::Installing { out, at } = std::mem::replace(&mut p.state, PairState::Installed) else { return };
        let we_initiated = at.is_some();
        ctx.out.push_back(Output::Datapath(DatapathCommand::InstallOutbound(*out)));
        let (l, r) = (p.local_ts, p.remote_ts);
        let now = ctx.now;
        // Only pairs older than its Quick Mode: when both sides rekeyed at once, each new
        // pair replaces the old one, not the other side's new pair.
        let floor = p.floor;
        for old in self.pairs.iter_mut().filter(|o| o.child_id < floor && o.same_selectors(&l, &r)) {
            if matches!(old.state, PairState::Installed) {
                old.rekey_at = None;
                old.state = PairState::Rekeyed { delete_at: we_initiated.then_some(now + REKEYED_DELETE_DELAY) };
            }
        }
    }

    /// Sends an Informational message (Delete, DPD) on this SA.
    fn inform(&self, ctx: &mut Ctx<'_>, payloads: Vec<Payload>) {
        let Stage::Up(p1) = &self.stage else { return };
        if let Some(msg) = info::seal_informational(p1, ctx.rng, payloads) {
            self.transmit(ctx, msg);
        }
    }

    /// Removes pair `p` from the datapath now (both halves) and reports it.
    fn remove_pair_now(&mut self, ctx: &mut Ctx<'_>, p: &Pair) {
        let tunnel = self.peer.name.clone();
        if p.outbound_installed() {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: tunnel.clone(),
                spi: p.spi_out,
                direction: Direction::Outbound,
            }));
        }
        if matches!(p.state, PairState::Rekeyed { .. }) {
            self.retiring.push((p.spi_in, ctx.now + OLD_INBOUND_GRACE));
        } else {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: tunnel.clone(),
                spi: p.spi_in,
                direction: Direction::Inbound,
            }));
        }
        ctx.out.push_back(Output::Event(Event::ChildDown { peer: tunnel.clone(), spi_in: p.spi_in }));
        tracing::info!(tunnel = %tunnel, spi_in = %p.spi_in, spi_out = %p.spi_out, "IKEv1 IPsec SA pair removed");
    }

    /// Deletes pair `child_id`: DELETE to the peer, then out of the datapath.
    fn delete_pair(&mut self, ctx: &mut Ctx<'_>, child_id: u64) {
        let Some(i) = self.pairs.iter().position(|p| p.child_id == child_id) else { return };
        let p = self.pairs.remove(i);
        self.inform(ctx, vec![info::delete_esp(&[p.spi_in.0])]);
        self.remove_pair_now(ctx, &p);
    }

    fn informational(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        h: &Header,
    ) -> Result<(), Failure> {
        let Stage::Up(p1) = &self.stage else {
            // Before keys: only a cleartext notify can come; unauthenticated, it is a hint.
            self.clear_notify(ctx, remote, data, h)?;
            return Ok(());
        };
        if self.seen_mid(h.message_id) {
            // A replay (of a DPD answer, a Delete, INITIAL-CONTACT): authentic, not fresh.
            ctx.drops.malformed += 1;
            tracing::debug!(tunnel = %self.peer.name, "replayed IKEv1 Informational dropped");
            return Ok(());
        }
        let infos = match info::open_informational(p1, data) {
            Ok(i) => i,
            Err(e) => {
                ctx.drops.malformed += 1;
                tracing::debug!(tunnel = %self.peer.name, error = %e, "IKEv1 Informational dropped");
                return Ok(());
            }
        };
        self.record_mid(h.message_id);
        self.mark_heard(ctx, local, remote);
        for i in infos {
            match i {
                Info::DeleteEsp(spis) => {
                    let elsewhere: Vec<u32> = spis.into_iter().filter(|s| !self.peer_deleted(ctx, *s)).collect();
                    if !elsewhere.is_empty() {
                        // Pairs this SA made may have moved to a newer ISAKMP SA.
                        self.actions.push(V1Action::PeerDeleted(elsewhere));
                    }
                }
                Info::DeleteIsakmp => {
                    tracing::info!(tunnel = %self.peer.name, "peer deleted the IKEv1 ISAKMP SA");
                    return Err(Failure::Deleted(DownReason::DeletedByPeer));
                }
                Info::RUThere { ack: false, seq } => {
                    let Stage::Up(p1) = &self.stage else { break };
                    let payload = info::dpd(p1, true, seq);
                    self.inform(ctx, vec![payload]);
                }
                Info::RUThere { ack: true, seq } => {
                    if self.dpd.probe.is_some_and(|(s, _, _)| s == seq) {
                        self.dpd.probe = None;
                    }
                }
                Info::InitialContact => {
                    self.actions.push(V1Action::Established { initial_contact: true });
                }
                Info::Notify(t) => {
                    tracing::debug!(tunnel = %self.peer.name, "peer sent IKEv1 notify {t}");
                }
            }
        }
        Ok(())
    }

    /// The peer deleted the pair it sends to with `spi` (our outbound SPI): out of the
    /// datapath. A pair we keep up is negotiated again a moment later (unless the peer
    /// deletes the ISAKMP SA meanwhile, as it does when it shuts the tunnel down).
    /// Returns whether this SA had it.
    pub(crate) fn peer_deleted(&mut self, ctx: &mut Ctx<'_>, spi: u32) -> bool {
        let Some(j) = self.pairs.iter().position(|p| p.spi_out.0 == spi) else { return false };
        tracing::info!(tunnel = %self.peer.name, spi_out = %Spi(spi), "peer deleted an IPsec SA pair");
        let p = self.pairs.remove(j);
        self.remove_pair_now(ctx, &p);
        let again = ctx.now + PAIR_AGAIN;
        self.quick_retry_at = Some(self.quick_retry_at.map_or(again, |t| t.max(again)));
        true
    }

    /// A cleartext notify while Main Mode runs: NO-PROPOSAL-CHOSEN in answer to our
    /// message 1 ends our attempt (as an unprotected NO_PROPOSAL_CHOSEN does in IKEv2);
    /// others are logged.
    fn clear_notify(&mut self, ctx: &mut Ctx<'_>, remote: SocketAddr, data: &[u8], h: &Header) -> Result<(), Failure> {
        let Ok(m) = super::message::Message::parse(data) else {
            ctx.drops.malformed += 1;
            return Ok(());
        };
        if h.encrypted() {
            // After our message 5 the peer can only answer under its keys: if those differ
            // from ours (it holds another pre-shared key), its notify does not decrypt for us.
            if matches!(&self.stage, Stage::MainI(ex) if ex.authenticating()) && self.hint.is_none() {
                self.hint = Some(DownReason::PskMismatch);
                let (name, ip) = (self.peer.name.clone(), remote.ip());
                warn_unauth!(ctx, "tunnel {name}: IKEv1 Main Mode with {ip}: the peer's answer to message 5 does not decrypt (pre-shared key mismatch?)");
            }
            return Ok(());
        }
        let Some(t) = m.payloads.iter().find_map(|p| match p {
            Payload::Notify(n) => Some(n.msg_type),
            _ => None,
        }) else {
            return Ok(());
        };
        let (name, ip) = (self.peer.name.clone(), remote.ip());
        let awaiting_2 = matches!(&self.stage, Stage::MainI(ex) if ex.peer_cookie() == 0);
        if t == info::notify::NO_PROPOSAL_CHOSEN && awaiting_2 {
            warn_unauth!(ctx, "tunnel {name}: IKEv1 Main Mode with {ip}: peer answered NO-PROPOSAL-CHOSEN (no proposal chosen: check ike_proposals against the peer's)");
            return Err(Failure::Negotiation(DownReason::ProposalsRejected));
        }
        if t == info::notify::AUTHENTICATION_FAILED || t == info::notify::INVALID_HASH_INFORMATION {
            self.hint = Some(DownReason::PskMismatch);
        }
        warn_unauth!(ctx, "tunnel {name}: IKEv1 peer {ip} sent an unprotected notify {t} during Main Mode");
        Ok(())
    }

    /// ESP arrived on inbound SPI `spi`: the peer is alive; a pair waiting for Quick Mode
    /// message 3 is proven in use by the peer, so its outbound half can go in.
    pub(crate) fn esp_activity(&mut self, ctx: &mut Ctx<'_>, spi: Spi) -> bool {
        let Some(p) = self.pairs.iter().find(|p| p.spi_in == spi) else {
            return self.retiring.iter().any(|(s, _)| *s == spi);
        };
        self.last_esp = Some(ctx.now);
        if let PairState::Installing { at: None, .. } = p.state {
            let id = p.child_id;
            if let Some(q) = self.quick.iter().position(|q| matches!(q, Quick::R { child_id, .. } if *child_id == id)) {
                let mid = self.quick.remove(q).message_id();
                self.answered(RtxKind::Quick(mid));
            }
            self.complete_outbound(ctx, id);
        }
        true
    }

    pub(crate) fn poll_timeout(&self) -> Option<Timestamp> {
        if self.dead {
            return None;
        }
        let rtx = self.rtx.iter().map(|r| r.next).min();
        let half_open = self.half_open().then_some(self.created + HALF_OPEN_TIMEOUT);
        let pairs = self.pairs.iter().flat_map(|p| {
            let step = match &p.state {
                PairState::Installing { at, .. } => *at,
                PairState::Installed => p.rekey_at,
                PairState::Rekeyed { delete_at } => *delete_at,
            };
            [step, Some(p.expire_at)]
        });
        let retiring = self.retiring.iter().map(|(_, t)| *t);
        let up = self.is_up() && self.replaced_at.is_none();
        let dpd = if up { self.dpd_at() } else { None };
        let life = if up { [self.reauth_at, self.expire_at, None] } else { [None, None, self.replaced_at] };
        let quick_retry = if up { self.quick_retry_at } else { None };
        [rtx, half_open, dpd, quick_retry, self.keepalive_at.filter(|_| up)]
            .into_iter()
            .chain(life)
            .flatten()
            .chain(pairs.flatten())
            .chain(retiring)
            .min()
    }

    fn dpd_at(&self) -> Option<Timestamp> {
        let delay = self.peer.dpd.delay?;
        if let Some((_, _, next)) = self.dpd.probe {
            return Some(next);
        }
        Some(self.heard().or(self.established_at)? + delay)
    }

    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let now = ctx.now;
        if self.dead {
            return Ok(());
        }
        if self.half_open() && now >= self.created + HALF_OPEN_TIMEOUT {
            let (name, ip) = (self.peer.name.clone(), self.remote.ip());
            let reason = self.hint.unwrap_or(DownReason::HalfOpenTimeout);
            warn_unauth!(ctx, "tunnel {name}: IKEv1 Main Mode from {ip} not completed in time ({reason}); dropped");
            return Err(Failure::Transient(reason));
        }
        self.retransmit(ctx)?;
        if !self.is_up() {
            return Ok(());
        }
        if let Some(t) = self.replaced_at {
            // Replaced by a newer ISAKMP SA: nothing to keep alive, only to go.
            if t <= now {
                return Err(Failure::Deleted(DownReason::Deleted));
            }
            self.expire_retiring(ctx);
            return Ok(());
        }
        if self.expire_at.is_some_and(|t| t <= now) {
            tracing::warn!(tunnel = %self.peer.name, "IKEv1 ISAKMP SA lifetime expired");
            return Err(Failure::Expired(DownReason::LifetimeExpired));
        }
        if self.reauth_at.is_some_and(|t| t <= now) {
            self.reauth_at = None;
            tracing::info!(tunnel = %self.peer.name, "IKEv1 phase 1 lifetime nearly over: re-authenticating");
            self.actions.push(V1Action::Reauthenticate);
        }
        self.dpd_timer(ctx)?;
        if self.keepalive_at.is_some_and(|t| t <= now) {
            self.keepalive_at = Some(now + KEEPALIVE);
            if self.local.port() == ctx.natt_port {
                self.transmit(ctx, NAT_KEEPALIVE.to_vec());
            }
        }
        self.expire_retiring(ctx);
        self.pair_timers(ctx);
        self.ensure_pairs(ctx);
        Ok(())
    }

    /// Inbound SAs whose grace period ended leave the datapath.
    fn expire_retiring(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        self.retiring.retain(|(spi, t)| {
            if *t <= now {
                ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                    tunnel: self.peer.name.clone(),
                    spi: *spi,
                    direction: Direction::Inbound,
                }));
                false
            } else {
                true
            }
        });
    }

    fn retransmit(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let now = ctx.now;
        let mut gave_up = vec![];
        for r in self.rtx.iter_mut().filter(|r| r.next <= now) {
            if r.tries + 1 >= RETRANSMIT_LIMIT {
                gave_up.push(r.kind);
                continue;
            }
            r.tries += 1;
            r.next = now + RETRANSMIT_BASE * 2u32.saturating_pow(r.tries);
            ctx.out.push_back(Output::Transmit(Transmit {
                local: self.local,
                remote: self.remote,
                data: r.msg.clone(),
            }));
        }
        for kind in gave_up {
            match kind {
                RtxKind::Main => {
                    let authenticating = matches!(&self.stage, Stage::MainI(ex) if ex.authenticating());
                    let reason = match self.hint {
                        Some(h) => h,
                        None if authenticating => DownReason::PskMismatch,
                        None => DownReason::Unanswered("IKEv1 Main Mode"),
                    };
                    if self.initiator {
                        tracing::warn!(tunnel = %self.peer.name, "IKEv1 Main Mode failed: {reason}");
                    } else {
                        // Our Aggressive Mode message 2 to an unauthenticated message 1.
                        tracing::debug!(tunnel = %self.peer.name, "IKEv1 Aggressive Mode not completed: {reason}");
                    }
                    self.rtx.clear();
                    return Err(if authenticating || self.hint.is_some() {
                        Failure::Negotiation(reason)
                    } else {
                        Failure::Transient(reason)
                    });
                }
                RtxKind::Quick(mid) => {
                    tracing::warn!(tunnel = %self.peer.name, "IKEv1 Quick Mode {mid:08x} unanswered; giving it up");
                    self.drop_quick(ctx, mid);
                    self.quick_retry_at = Some(now + QUICK_RETRY);
                }
            }
        }
        Ok(())
    }

    fn dpd_timer(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let now = ctx.now;
        let Some(at) = self.dpd_at() else { return Ok(()) };
        if at > now {
            return Ok(());
        }
        let timeout = self.peer.dpd.timeout;
        // Dead once nothing has been heard for `dpd_timeout`, with at least one retry.
        let silent_since = self.heard().or(self.established_at).unwrap_or(now);
        let dead_at = |first_probe| crate::dpd_deadline(silent_since, first_probe, timeout);
        match self.dpd.probe {
            Some((_, since, _)) if now >= dead_at(since) => {
                tracing::warn!(tunnel = %self.peer.name, "IKEv1 dead peer detection: nothing heard from the peer for {}s", timeout.as_secs());
                return Err(Failure::Transient(DownReason::DeadPeer));
            }
            Some((_, since, _)) if self.heard().is_some_and(|h| h > since) => {
                // Heard meanwhile (ESP or IKE): alive.
                self.dpd.probe = None;
                return Ok(());
            }
            _ => {}
        }
        self.dpd.seq = self.dpd.seq.wrapping_add(1).max(1);
        let seq = self.dpd.seq;
        let since = self.dpd.probe.map_or(now, |(_, s, _)| s);
        // Every 5 s (RFC 3706's suggestion), more often for a short `dpd_timeout`.
        let retry = DPD_RETRY.min((timeout / 4).max(Duration::from_secs(1)));
        self.dpd.probe = Some((seq, since, (now + retry).min(dead_at(since))));
        let Stage::Up(p1) = &self.stage else { return Ok(()) };
        let payload = info::dpd(p1, false, seq);
        self.inform(ctx, vec![payload]);
        Ok(())
    }

    fn pair_timers(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let ids: Vec<u64> = self.pairs.iter().map(|p| p.child_id).collect();
        for id in ids {
            let Some(p) = self.pairs.iter_mut().find(|p| p.child_id == id) else { continue };
            if p.expire_at <= now {
                tracing::warn!(tunnel = %self.peer.name, spi_in = %p.spi_in, "IKEv1 IPsec SA pair reached its lifetime; deleting it");
                self.delete_pair(ctx, id);
                continue;
            }
            match p.state.clone() {
                PairState::Installing { at: Some(t), .. } if t <= now => self.complete_outbound(ctx, id),
                PairState::Installed if p.rekey_at.is_some_and(|t| t <= now) => {
                    p.rekey_at = None;
                    let (l, r) = (p.local_ts, p.remote_ts);
                    tracing::info!(tunnel = %self.peer.name, spi_in = %p.spi_in, "rekeying IKEv1 IPsec SA pair");
                    self.start_quick(ctx, l, r, Some(id));
                }
                PairState::Rekeyed { delete_at: Some(t) } if t <= now => self.delete_pair(ctx, id),
                _ => {}
            }
        }
    }

    /// Whether a pair has `spi` in `direction`.
    pub(crate) fn has_pair(&self, spi: Spi, direction: Direction) -> bool {
        self.pairs.iter().any(|p| match direction {
            Direction::Inbound => p.spi_in == spi,
            Direction::Outbound => p.spi_out == spi,
        })
    }

    /// The datapath counted a pair past a volume limit: soft rekeys it now, hard deletes it.
    pub(crate) fn volume_expired(&mut self, ctx: &mut Ctx<'_>, spi: Spi, direction: Direction, hard: bool) {
        let Some(p) = self.pairs.iter_mut().find(|p| match direction {
            Direction::Inbound => p.spi_in == spi,
            Direction::Outbound => p.spi_out == spi,
        }) else {
            return;
        };
        let id = p.child_id;
        if hard {
            tracing::warn!(tunnel = %self.peer.name, %spi, "IKEv1 IPsec SA hit its hard volume limit; deleting it");
            self.delete_pair(ctx, id);
        } else if matches!(p.state, PairState::Installed) && p.rekey_at.is_some() {
            tracing::info!(tunnel = %self.peer.name, %spi, "IKEv1 IPsec SA soft volume limit reached; rekeying it");
            p.rekey_at = Some(ctx.now);
            self.pair_timers(ctx);
        }
    }

    /// Rekey every installed pair now (operator).
    pub(crate) fn rekey_pairs(&mut self, ctx: &mut Ctx<'_>) {
        let due: Vec<u64> = self
            .pairs
            .iter()
            .filter(|p| matches!(p.state, PairState::Installed) && p.rekey_at.is_some())
            .map(|p| p.child_id)
            .collect();
        for id in due {
            if let Some(p) = self.pairs.iter_mut().find(|p| p.child_id == id) {
                p.rekey_at = Some(ctx.now);
            }
        }
        self.pair_timers(ctx);
    }

    /// Deletes everything: DELETE for the pairs and the ISAKMP SA, then out of the
    /// datapath. Returns nothing to wait for (IKEv1 deletes are not acknowledged).
    pub(crate) fn terminate(&mut self, ctx: &mut Ctx<'_>, reason: DownReason) {
        if self.is_up() {
            let spis: Vec<u32> = self.pairs.iter().map(|p| p.spi_in.0).collect();
            if !spis.is_empty() {
                self.inform(ctx, vec![info::delete_esp(&spis)]);
            }
            if let Stage::Up(p1) = &self.stage {
                let d = info::delete_isakmp(p1);
                self.inform(ctx, vec![d]);
            }
        }
        self.teardown(ctx, reason);
    }

    /// Out of the datapath and reported, without telling the peer.
    pub(crate) fn teardown(&mut self, ctx: &mut Ctx<'_>, reason: DownReason) {
        if self.dead {
            return;
        }
        self.dead = true;
        for p in std::mem::take(&mut self.pairs) {
            // Nothing is in its grace period any more: both halves go now.
            let state = if p.outbound_installed() { PairState::Installed } else { p.state.clone() };
            self.remove_pair_now(ctx, &Pair { state, ..p });
        }
        for (spi, _) in std::mem::take(&mut self.retiring) {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: self.peer.name.clone(),
                spi,
                direction: Direction::Inbound,
            }));
        }
        self.quick.clear();
        self.waiting.clear();
        self.rtx.clear();
        // An end to report: an SA that was up, or our attempt to bring one up.
        let reported = (self.established_at.is_some() || self.initiator) && self.replaced_at.is_none();
        if reported {
            ctx.out.push_back(Output::Event(Event::IkeDown { peer: self.peer.name.clone(), reason }));
        }
    }

    /// Takes the pairs (and their grace-period SPIs) out, to move them to a newer SA.
    pub(crate) fn take_pairs(&mut self) -> (Vec<Pair>, Vec<(Spi, Timestamp)>) {
        (std::mem::take(&mut self.pairs), std::mem::take(&mut self.retiring))
    }

    /// Adopts pairs from an older SA of the tunnel. Their endpoints stay as installed.
    pub(crate) fn adopt(&mut self, pairs: Vec<Pair>, retiring: Vec<(Spi, Timestamp)>) {
        self.pairs.extend(pairs);
        self.retiring.extend(retiring);
    }

    /// Replaced by a newer SA of the tunnel: deleted at `at` (or by the peer before).
    pub(crate) fn replaced(&mut self, at: Timestamp) {
        self.replaced_at = Some(at);
        self.reauth_at = None;
        self.rtx.clear();
    }
}
