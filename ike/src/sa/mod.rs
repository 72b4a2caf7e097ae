//! One IKE SA: its identity (SPIs, role, addresses), keys, CHILD SAs and task manager.
//! Routes each message of this SA to the task owning the exchange and drives
//! retransmission timers.
//!
//! Does not parse bytes (see `message`), choose proposals (see `proposal`) or own
//! protocol decisions of an exchange (see `task`).

pub(crate) mod child;
pub(crate) mod task_manager;
mod timers;

use crate::api::{EncapReason, Event, Output, PeerConfig, Rng, Transmit};
use crate::crypto::{IkeKeys, SignedOctets, SkCipher};
use crate::down::{DownReason, Failure};
use crate::endpoint::{IkeDrops, Limits, SpiRegistry};
use crate::log::{LogLimiter, TokenBucket};
use crate::message::fragment::{self, FragDrop, Fragmentation};
use crate::message::payload::Notify;
use crate::message::{emit_chain, emit_encrypted, emit_plain, exchange, flags, Header, Message, Payload};
use crate::notify;
use crate::proposal::IkeAlgs;
use crate::task::{create_child, ike_auth, ike_init, ike_rekey, informational, ActiveTask};
use child::ChildSa;
use ipsec_types::{DatapathCommand, Direction, Spi, Timestamp};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use task_manager::{TaskKind, TaskManager};

/// A responder's IKE SA that is not authenticated within this time is dropped.
pub(crate) const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// `local` with a wildcard address replaced by `ours`.
pub(crate) fn unspecified_to(local: SocketAddr, ours: std::net::IpAddr) -> SocketAddr {
    if local.ip().is_unspecified() {
        SocketAddr::new(ours, local.port())
    } else {
        local
    }
}

/// What the endpoint lends an IKE SA while it handles one input.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Timestamp,
    pub(crate) rng: &'a mut dyn Rng,
    pub(crate) out: &'a mut VecDeque<Output>,
    pub(crate) next_child_id: &'a mut u64,
    pub(crate) ike_port: u16,
    pub(crate) natt_port: u16,
    /// Work for the endpoint that crosses IKE SAs (rekeying).
    pub(crate) actions: &'a mut Vec<Action>,
    /// Caps on state.
    pub(crate) limits: Limits,
    /// IKE SAs with this SA's peer that are not half-open (spoofable), this one included.
    pub(crate) peer_sas: usize,
    /// What was refused, by reason.
    pub(crate) drops: &'a mut IkeDrops,
    /// Rate limit of log lines provoked by unauthenticated input (`warn_unauth!`).
    pub(crate) log: &'a mut LogLimiter,
    /// Rate limit of stateless answers to unauthenticated requests.
    pub(crate) answers: &'a mut TokenBucket,
    /// Inbound SPIs in use gateway-wide.
    pub(crate) spis: &'a mut SpiRegistry,
}

/// What an IKE SA asks of the endpoint.
pub(crate) enum Action {
    /// A new IKE SA (from a rekey) joins the endpoint.
    Spawn(Box<IkeSa>),
    /// These CHILD SAs move to the IKE SA with SPIs `to` (the winner of an IKE rekey
    /// collision).
    Adopt { tunnel: String, to: (u64, u64), transfer: Transfer },
    /// The peer deleted, on the old IKE SA, a CHILD SA (by our outbound SPI) that had
    /// moved to the successor IKE SA.
    ChildDeleted { tunnel: String, spi_out: Spi },
}

/// The CHILD SAs of an IKE SA with their pending work, moving to its successor.
#[derive(Default)]
pub(crate) struct Transfer {
    children: Vec<ChildSa>,
    retiring: Vec<(Spi, Timestamp)>,
    queue: Vec<TaskKind>,
}

impl Transfer {
    /// Takes the CHILD SAs and queued CHILD SA work out of `sa`.
    pub(crate) fn take_from(sa: &mut IkeSa) -> Self {
        sa.moved.extend(sa.children.iter().map(|c| (c.spi_out, c.spi_in)));
        let queue = sa
            .tasks
            .queue
            .drain(..)
            .filter(|t| matches!(t, TaskKind::ChildDelete(_) | TaskKind::ChildRekey(_) | TaskKind::ChildCreate(_)))
            .collect();
        Self { children: std::mem::take(&mut sa.children), retiring: std::mem::take(&mut sa.retiring), queue }
    }

    /// Hands them to `sa`.
    pub(crate) fn give_to(self, sa: &mut IkeSa) {
        sa.children.extend(self.children);
        sa.retiring.extend(self.retiring);
        sa.tasks.queue.extend(self.queue);
        if let IkeState::Established { adoption_due, .. } = &mut sa.state {
            *adoption_due = None;
        }
    }

    /// Nobody took them: remove them from the datapath.
    pub(crate) fn discard(self, ctx: &mut Ctx<'_>, tunnel: &str) {
        for c in &self.children {
            c.remove(ctx, tunnel);
        }
        for (spi, _) in self.retiring {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: tunnel.to_string(),
                spi,
                direction: Direction::Inbound,
            }));
        }
    }
}

impl Ctx<'_> {
    /// A uniformly random duration in `lo..=hi` (millisecond steps).
    pub(crate) fn random_between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = u64::try_from(hi.saturating_sub(lo).as_millis()).unwrap_or(u64::MAX);
        let mut b = [0u8; 8];
        self.rng.fill(&mut b);
        let r = if span == u64::MAX { u64::from_be_bytes(b) } else { u64::from_be_bytes(b) % (span + 1) };
        lo.saturating_add(Duration::from_millis(r))
    }
    /// `base` minus a random part of up to `percent` % of it (rekey jitter).
    pub(crate) fn jittered(&mut self, base: Duration, percent: u8) -> Duration {
        let max_ms = base.as_millis().saturating_mul(u128::from(percent.min(100))) / 100;
        let max = Duration::from_millis(u64::try_from(max_ms).unwrap_or(u64::MAX));
        base.saturating_sub(self.random_between(Duration::ZERO, max))
    }
    pub(crate) fn random_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        while b == [0u8; 8] {
            self.rng.fill(&mut b);
        }
        u64::from_be_bytes(b)
    }
    /// An inbound CHILD SA SPI outside the reserved range 0..=255 and unique across the
    /// gateway (not installed, not handed out to an exchange in flight).
    pub(crate) fn random_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b);
            let v = u32::from_be_bytes(b);
            if self.spis.is_free(v) {
                self.spis.take(v);
                return v;
            }
        }
    }
    pub(crate) fn nonce(&mut self) -> Vec<u8> {
        let mut n = vec![0u8; 32];
        self.rng.fill(&mut n);
        n
    }
}

/// Where the IKE SA stands, with the keys, deadlines and marks that belong to that
/// stage: there are keys from the IKE_SA_INIT response on, and the IKE_SA_INIT
/// messages AUTH signs only until IKE_AUTH completes.
///
/// Its end is reported (`Event::IkeDown`) once, by `IkeSa::teardown`: an SA that is
/// `Rekeyed` or `Deleting` has been reported already, or has nothing to report.
pub(crate) enum IkeState {
    /// IKE_SA_INIT in progress (initiator).
    Connecting,
    /// IKE_AUTH in progress (both roles).
    Authenticating {
        keys: SaKeys,
        /// What each side's AUTH signs (IKE_SA_INIT request, response).
        signed: Box<Signed>,
        /// The responder drops the half-open SA if the peer has not authenticated by then.
        deadline: Option<Timestamp>,
    },
    Established {
        keys: SaKeys,
        /// When to rekey the IKE SA.
        rekey_at: Option<Timestamp>,
        /// Hard lifetime of the IKE SA.
        expire_at: Option<Timestamp>,
        /// Created by the peer's colliding IKE rekey: deleted by us at this time if no
        /// CHILD SAs moved to it by then (the peer should have deleted it).
        adoption_due: Option<Timestamp>,
        /// Our request stayed unanswered (the peer may have restarted): replaced as soon
        /// as a new IKE SA with the peer is up.
        stale: bool,
    },
    /// Replaced by (or lost to) a rekey: its CHILD SAs moved on; waits for the peer's
    /// DELETE until `deadline`. Goes away silently (no IkeDown, no retry).
    Rekeyed {
        keys: SaKeys,
        deadline: Option<Timestamp>,
        /// It was stale when replaced.
        stale: bool,
    },
    /// We sent DELETE; everything is already torn down.
    Deleting {
        keys: SaKeys,
        /// The old or redundant IKE SA of a rekey: goes away silently (no retry).
        rekeyed: bool,
    },
}

impl IkeState {
    /// Established with `keys`, with nothing planned yet.
    pub(crate) fn established(keys: SaKeys, rekey_at: Timestamp, expire_at: Timestamp) -> Self {
        Self::Established {
            keys,
            rekey_at: Some(rekey_at),
            expire_at: Some(expire_at),
            adoption_due: None,
            stale: false,
        }
    }
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Connecting => "CONNECTING",
            Self::Authenticating { .. } => "AUTHENTICATING",
            Self::Established { .. } => "ESTABLISHED",
            Self::Rekeyed { .. } => "REKEYED",
            Self::Deleting { .. } => "DELETING",
        }
    }
    /// The keys (all stages but `Connecting`).
    pub(crate) fn keys(&self) -> Option<&SaKeys> {
        match self {
            Self::Connecting => None,
            Self::Authenticating { keys, .. }
            | Self::Established { keys, .. }
            | Self::Rekeyed { keys, .. }
            | Self::Deleting { keys, .. } => Some(keys),
        }
    }
    fn into_keys(self) -> Option<SaKeys> {
        match self {
            Self::Connecting => None,
            Self::Authenticating { keys, .. }
            | Self::Established { keys, .. }
            | Self::Rekeyed { keys, .. }
            | Self::Deleting { keys, .. } => Some(keys),
        }
    }
    pub(crate) fn is_connecting(&self) -> bool {
        matches!(self, Self::Connecting)
    }
    pub(crate) fn is_established(&self) -> bool {
        matches!(self, Self::Established { .. })
    }
    pub(crate) fn is_deleting(&self) -> bool {
        matches!(self, Self::Deleting { .. })
    }
    pub(crate) fn is_authenticating(&self) -> bool {
        matches!(self, Self::Authenticating { .. })
    }
    /// Replaced by a rekey: its end is not a tunnel going down.
    pub(crate) fn replaced(&self) -> bool {
        matches!(self, Self::Rekeyed { .. } | Self::Deleting { rekeyed: true, .. })
    }
    /// Marked stale (see `Established::stale`).
    pub(crate) fn stale(&self) -> bool {
        matches!(self, Self::Established { stale: true, .. } | Self::Rekeyed { stale: true, .. })
    }
    /// When the next IKE rekey is due.
    pub(crate) fn next_rekey(&self) -> Option<Timestamp> {
        match self {
            Self::Established { rekey_at, .. } => *rekey_at,
            _ => None,
        }
    }
}

/// The two IKE_SA_INIT messages as the PSK AUTH computation needs them.
pub(crate) struct Signed {
    /// The request: what the initiator's AUTH signs.
    pub(crate) by_initiator: SignedOctets,
    /// The response: what the responder's AUTH signs.
    pub(crate) by_responder: SignedOctets,
}

/// Algorithms, keys and ciphers of an IKE SA, oriented for our role.
pub(crate) struct SaKeys {
    pub(crate) algs: IkeAlgs,
    pub(crate) keys: IkeKeys,
    pub(crate) seal: SkCipher,
    pub(crate) open: SkCipher,
}

pub(crate) struct IkeSa {
    pub(crate) peer: PeerConfig,
    pub(crate) initiator: bool,
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) state: IkeState,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// Why ESP goes in UDP (and IKE moved to the NAT-T port); `None`: raw ESP.
    pub(crate) encap: Option<EncapReason>,
    pub(crate) ni: Vec<u8>,
    pub(crate) nr: Vec<u8>,
    /// Initiator: our IKE_SA_INIT request, until the response arrives.
    pub(crate) init_request: Vec<u8>,
    /// Responder: SHA-256 of the peer's IKE_SA_INIT request, to tell a retransmission.
    pub(crate) init_request_hash: Option<[u8; 32]>,
    iv_counter: u64,
    pub(crate) tasks: TaskManager,
    pub(crate) children: Vec<ChildSa>,
    pub(crate) established_at: Option<Timestamp>,
    pub(crate) last_heard: Option<Timestamp>,
    /// The peer sent INITIAL_CONTACT with its IKE_AUTH: older IKE SAs with it are stale.
    pub(crate) initial_contact: bool,
    /// We send INITIAL_CONTACT in our IKE_AUTH: no other IKE SA with this peer exists
    /// (cleared by the endpoint when one appears meanwhile).
    pub(crate) send_initial_contact: bool,
    /// Inbound SAs of deleted, rekeyed CHILD SAs in their grace period.
    pub(crate) retiring: Vec<(Spi, Timestamp)>,
    /// (outbound, inbound) SPIs of CHILD SAs moved to the successor of this IKE SA: the
    /// peer may still delete them here.
    pub(crate) moved: Vec<(Spi, Spi)>,
    /// When the datapath last reported ESP from the peer (`Endpoint::handle_esp_activity`).
    pub(crate) last_esp: Option<Timestamp>,
    /// IKE fragmentation (RFC 7383): negotiated or not, messages in reassembly.
    pub(crate) frag: Fragmentation,
}

/// Fills `iv`, the explicit IV of an SK or SKF payload: the AEADs take a counter (an
/// IV must never repeat under a key, RFC 5282 section 3, RFC 7634 section 2); AES-CBC
/// takes random bytes from the injected `Rng` (RFC 7296 3.14: unpredictable, so not a
/// counter).
fn fill_iv(counter: &mut u64, aead: bool, rng: &mut dyn Rng, iv: &mut [u8]) {
    if aead {
        *counter = counter.wrapping_add(1);
        let c = counter.to_be_bytes();
        let skip = iv.len().saturating_sub(c.len());
        iv.fill(0);
        for (dst, src) in iv.iter_mut().skip(skip).zip(c) {
            *dst = src;
        }
    } else {
        rng.fill(iv);
    }
}

impl IkeSa {
    pub(crate) fn new(peer: PeerConfig, initiator: bool, local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            peer,
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: IkeState::Connecting,
            local,
            remote,
            encap: None,
            ni: vec![],
            nr: vec![],
            init_request: vec![],
            init_request_hash: None,
            iv_counter: 0,
            tasks: TaskManager::default(),
            children: vec![],
            established_at: None,
            last_heard: None,
            initial_contact: false,
            send_initial_contact: false,
            retiring: vec![],
            moved: vec![],
            last_esp: None,
            frag: Fragmentation::default(),
        }
    }

    /// Replaced by a rekey (or lost to one): waits for the peer's DELETE until
    /// `deadline`. Only an SA with keys changes stage.
    pub(crate) fn become_rekeyed(&mut self, deadline: Option<Timestamp>) {
        let stale = self.state.stale();
        let old = std::mem::replace(&mut self.state, IkeState::Connecting);
        if let Some(keys) = old.into_keys() {
            self.state = IkeState::Rekeyed { keys, deadline, stale };
        }
    }

    /// We send DELETE for it (`rekeyed`: the old or redundant SA of a rekey). Only an
    /// SA with keys changes stage.
    pub(crate) fn become_deleting(&mut self, rekeyed: bool) {
        let old = std::mem::replace(&mut self.state, IkeState::Connecting);
        if let Some(keys) = old.into_keys() {
            self.state = IkeState::Deleting { keys, rekeyed };
        }
    }

    /// When we last heard from the peer: a valid IKE message or (reported) ESP.
    pub(crate) fn heard(&self) -> Option<Timestamp> {
        self.last_heard.max(self.last_esp)
    }

    /// ESP from the peer was just reported: a liveness check still waiting for its
    /// answer now gives up no sooner than `dpd_timeout` after it (the peer is dead only
    /// when nothing, IKE or ESP, has been heard for that long; the check keeps its
    /// message ID and is retransmitted meanwhile).
    pub(crate) fn esp_heard_during_liveness(&mut self, heard: Timestamp) {
        let timeout = self.peer.dpd.timeout;
        if let Some(o) = self.tasks.outstanding.as_mut().filter(|o| matches!(o.task, ActiveTask::Liveness)) {
            let later = heard + timeout;
            o.give_up_at = Some(o.give_up_at.map_or(later, |t| t.max(later)));
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.peer.name
    }

    fn header(&self, exch: u8, mid: u32, response: bool) -> Header {
        let mut f = if self.initiator { flags::INITIATOR } else { 0 };
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            exchange: exch,
            flags: f,
            message_id: mid,
            length: 0,
        }
    }

    /// The largest IKE message (IKE header included) we send in one datagram, when IKE
    /// fragmentation is negotiated: the configured `fragment_size` less the IP and UDP
    /// headers and the non-ESP marker.
    fn fragment_limit(&self) -> Option<usize> {
        let size = self.peer.fragment_size.filter(|_| self.frag.negotiated)?;
        Some(usize::from(size).saturating_sub(fragment::datagram_overhead(self.remote.is_ipv6())))
    }

    /// The explicit IV for the next SK (or SKF) payload we seal, `None` before there
    /// are keys (see [`fill_iv`]).
    pub(crate) fn next_iv(&mut self, rng: &mut dyn Rng) -> Option<Vec<u8>> {
        let seal = &self.state.keys()?.seal;
        let mut iv = vec![0u8; seal.iv_len()];
        fill_iv(&mut self.iv_counter, seal.encr().is_aead(), rng, &mut iv);
        Some(iv)
    }

    /// The datagrams of one message: one, or its fragments (each with its own IV) when
    /// fragmentation is negotiated and the message would not fit `fragment_limit`.
    fn encode(&mut self, rng: &mut dyn Rng, header: Header, payloads: &[Payload]) -> Vec<Vec<u8>> {
        if header.exchange != exchange::IKE_SA_INIT {
            let limit = self.fragment_limit();
            if let (Some(max), Some(k)) = (limit, self.state.keys()) {
                let mut chain = zeroize::Zeroizing::new(Vec::new());
                let first = emit_chain(payloads, &mut chain);
                if fragment::sealed_len(chain.len(), &k.seal) > max {
                    let (counter, aead) = (&mut self.iv_counter, k.seal.encr().is_aead());
                    let mut next_iv = |iv: &mut [u8]| fill_iv(counter, aead, rng, iv);
                    return fragment::split(header, first, &chain, &k.seal, max, &mut next_iv);
                }
            }
            if let Some(iv) = self.next_iv(rng) {
                if let Some(k) = self.state.keys() {
                    return vec![emit_encrypted(header, payloads, &k.seal, &iv)];
                }
            }
        }
        vec![emit_plain(header, payloads)]
    }

    pub(crate) fn transmit(&self, ctx: &mut Ctx<'_>, data: Vec<u8>) {
        ctx.out.push_back(Output::Transmit(Transmit { local: self.local, remote: self.remote, data }));
    }

    /// Sends every datagram of a message (all its fragments, in order).
    pub(crate) fn transmit_all(&self, ctx: &mut Ctx<'_>, packets: &[Vec<u8>]) {
        for p in packets {
            self.transmit(ctx, p.clone());
        }
    }

    /// Sends the request of `task` (the window must be open).
    pub(crate) fn send_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        task: ActiveTask,
        exch: u8,
        payloads: &[Payload],
        single_shot: bool,
    ) -> Vec<u8> {
        let header = self.header(exch, self.tasks.next_mid, false);
        let packets = self.encode(ctx.rng, header, payloads);
        self.transmit_all(ctx, &packets);
        // Fragments of a response to an earlier request are of no use any more.
        self.frag.responses.clear();
        let first = packets.first().cloned().unwrap_or_default();
        self.tasks.sent(ctx.now, task, exch, packets, single_shot);
        first
    }

    /// Sends (and caches) the response to the peer's request `mid`. Returns its first
    /// datagram (the whole message unless it was fragmented; IKE_SA_INIT never is).
    pub(crate) fn send_response(&mut self, ctx: &mut Ctx<'_>, exch: u8, mid: u32, payloads: &[Payload]) -> Vec<u8> {
        let header = self.header(exch, mid, true);
        let packets = self.encode(ctx.rng, header, payloads);
        self.transmit_all(ctx, &packets);
        self.frag.requests.clear();
        let first = packets.first().cloned().unwrap_or_default();
        self.tasks.responded(mid, packets);
        first
    }

    /// Handles a message already matched to this SA by its SPIs.
    pub(crate) fn handle_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        mut msg: Message,
    ) -> Result<(), Failure> {
        // A socket bound to the wildcard address: we speak from the configured address.
        let local = unspecified_to(local, self.peer.local_addr);
        let h = msg.header;
        if h.is_response() {
            if !matches!(&self.tasks.outstanding, Some(o) if o.mid == h.message_id && o.exchange == h.exchange) {
                tracing::debug!(tunnel = %self.name(), mid = h.message_id, "response matches no outstanding request; dropped");
                return Ok(());
            }
            if msg.skf.is_some() {
                match self.reassemble(ctx, data, &msg, true) {
                    Some(whole) => msg = whole,
                    None => return Ok(()),
                }
            } else if !self.open(data, &mut msg) {
                return Ok(());
            }
            if h.exchange == exchange::IKE_SA_INIT && ike_init::screen_response(self, ctx, &msg) {
                return Ok(());
            }
            let Some(task) = self.tasks.take_matching(h.message_id, h.exchange) else { return Ok(()) };
            self.last_heard = Some(ctx.now);
            match task {
                ActiveTask::IkeInit(init) => ike_init::process_response(self, ctx, init, &msg, data)?,
                ActiveTask::IkeAuth(auth) => ike_auth::process_response(self, ctx, auth, &msg)?,
                ActiveTask::IkeDelete => return Err(Failure::Deleted(DownReason::Deleted)),
                ActiveTask::ChildDelete(spi) => {
                    tracing::debug!(tunnel = %self.name(), %spi, "peer confirmed the CHILD SA deletion");
                    if let Some(i) = self.children.iter().position(|c| c.spi_in == spi) {
                        child::remove_at(self, ctx, i);
                    }
                    child::ensure_tunnel(self);
                }
                ActiveTask::ChildCreate(init) => create_child::process_response(self, ctx, init, &msg)?,
                ActiveTask::IkeRekey(init) => ike_rekey::process_response(self, ctx, *init, &msg)?,
                ActiveTask::Liveness => {}
            }
            self.kick(ctx);
            return Ok(());
        }
        // A request from the peer.
        if self.tasks.cached_for(h.message_id).is_some() {
            // Only a byte-identical copy of the request we answered gets the answer again
            // (anyone who saw the SPIs could otherwise make us resend it at will); of a
            // fragmented request, only fragment 1, once authenticated (RFC 7383 2.6.1).
            let again = match msg.skf {
                Some((_, off)) => {
                    matches!(fragment::numbers(data, off), Ok((1, _, _)))
                        && self.frag.negotiated
                        && self.state.keys().is_some_and(|k| fragment::open_fragment(data, off, &k.open).is_ok())
                }
                None => {
                    let answered = if h.exchange == exchange::IKE_SA_INIT {
                        self.init_request_hash
                    } else {
                        self.tasks.request_hash
                    };
                    answered == Some(crate::crypto::digest(data))
                }
            };
            if let Some(cached) = self.tasks.cached_for(h.message_id).filter(|_| again) {
                tracing::debug!(tunnel = %self.name(), mid = h.message_id, "retransmitted request; resending cached response");
                let cached = cached.to_vec();
                self.transmit_all(ctx, &cached);
            } else {
                tracing::debug!(tunnel = %self.name(), mid = h.message_id, "not the request we answered; dropped");
            }
            return Ok(());
        }
        if h.message_id != self.tasks.peer_next_mid || h.exchange == exchange::IKE_SA_INIT {
            tracing::debug!(tunnel = %self.name(), mid = h.message_id, "unexpected request message id; dropped");
            return Ok(());
        }
        let fragmented = msg.skf.is_some();
        if fragmented {
            match self.reassemble(ctx, data, &msg, false) {
                Some(whole) => msg = whole,
                None => return Ok(()),
            }
        } else if msg.sk.is_none() || !self.open(data, &mut msg) {
            return Ok(());
        }
        self.last_heard = Some(ctx.now);
        self.update_path(ctx, local, remote);
        // A fragmented request is recognised again by its authenticated fragment 1.
        self.tasks.request_hash = (!fragmented).then(|| crate::crypto::digest(data));
        if let Some(pt) = msg.payloads.iter().find_map(|p| match p {
            Payload::Unknown { ptype, critical: true, .. } => Some(*ptype),
            _ => None,
        }) {
            let (name, peer) = (self.name(), remote.ip());
            crate::log::warn_unauth!(ctx, "tunnel {name}: peer {peer} sent unsupported critical payload {pt}; answering UNSUPPORTED_CRITICAL_PAYLOAD");
            let n = Payload::Notify(Notify::new(notify::UNSUPPORTED_CRITICAL_PAYLOAD, vec![pt]));
            self.send_response(ctx, h.exchange, h.message_id, &[n]);
            return Ok(());
        }
        match (&self.state, h.exchange) {
            (IkeState::Authenticating { .. }, exchange::IKE_AUTH) if !self.initiator => {
                ike_auth::process_request(self, ctx, &msg)?;
            }
            (IkeState::Established { .. }, exchange::INFORMATIONAL) => {
                informational::process_request(self, ctx, &msg)?;
            }
            (IkeState::Established { .. }, exchange::CREATE_CHILD_SA) if ike_rekey::is_ike_rekey(&msg) => {
                ike_rekey::process_request(self, ctx, &msg)?;
            }
            (IkeState::Established { .. }, exchange::CREATE_CHILD_SA) => {
                create_child::process_request(self, ctx, &msg)?;
            }
            (IkeState::Rekeyed { .. } | IkeState::Deleting { rekeyed: true, .. }, exchange::INFORMATIONAL) => {
                informational::process_request(self, ctx, &msg)?;
            }
            (IkeState::Rekeyed { .. } | IkeState::Deleting { .. }, exchange::CREATE_CHILD_SA) => {
                tracing::debug!(tunnel = %self.name(), "CREATE_CHILD_SA on an IKE SA going away; answering TEMPORARY_FAILURE");
                let n = Payload::Notify(Notify::new(notify::TEMPORARY_FAILURE, vec![]));
                self.send_response(ctx, h.exchange, h.message_id, &[n]);
            }
            (IkeState::Deleting { .. }, exchange::INFORMATIONAL) => {
                self.send_response(ctx, h.exchange, h.message_id, &[]);
            }
            _ => {
                tracing::debug!(tunnel = %self.name(), exchange = h.exchange, state = self.state.name(), "request not expected in this state; dropped")
            }
        }
        self.kick(ctx);
        Ok(())
    }

    /// Takes one fragment (RFC 7383) of the peer's next request or of the response to
    /// ours; returns the whole message once every fragment is in. Fragments are accepted
    /// only on an IKE SA with keys that negotiated fragmentation, and each is
    /// authenticated before it is kept; drops are counted by reason.
    fn reassemble(&mut self, ctx: &mut Ctx<'_>, data: &[u8], msg: &Message, response: bool) -> Option<Message> {
        let keys = self.state.keys().filter(|_| self.frag.negotiated && msg.header.exchange != exchange::IKE_SA_INIT);
        let Some(k) = keys else {
            ctx.drops.fragment_malformed += 1;
            tracing::debug!(tunnel = %self.peer.name, "IKE fragment on an IKE SA that did not negotiate fragmentation; dropped");
            return None;
        };
        let r = if response { &mut self.frag.responses } else { &mut self.frag.requests };
        match r.add(data, msg, &k.open) {
            Ok(whole) => whole,
            Err(why) => {
                let d = &mut *ctx.drops;
                match why {
                    FragDrop::Malformed => d.fragment_malformed += 1,
                    FragDrop::Unauthenticated => d.fragment_unauthenticated += 1,
                    FragDrop::Limit => d.fragment_limit += 1,
                    FragDrop::Duplicate => d.fragment_duplicate += 1,
                }
                tracing::debug!(tunnel = %self.peer.name, mid = msg.header.message_id, ?why, "IKE fragment dropped");
                None
            }
        }
    }

    /// Decrypts the SK payload in place; `false` (and the message dropped) if that fails
    /// or if the message should have been protected and was not.
    fn open(&self, data: &[u8], msg: &mut Message) -> bool {
        if msg.header.exchange == exchange::IKE_SA_INIT {
            return msg.sk.is_none();
        }
        let Some(k) = self.state.keys() else { return false };
        if msg.sk.is_none() {
            return false;
        }
        match msg.decrypt(data, &k.open) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(tunnel = %self.name(), error = %e, "undecryptable message dropped");
                false
            }
        }
    }

    /// The peer's address or port changed (NAT mapping, floating to 4500).
    fn update_path(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr, remote: SocketAddr) {
        if local == self.local && remote == self.remote {
            return;
        }
        tracing::debug!(tunnel = %self.name(), from = %self.remote, to = %remote, "peer address/port changed");
        self.local = local;
        self.remote = remote;
        for c in &mut self.children {
            if let Some(enc) = c.encap.as_mut() {
                enc.remote_port = remote.port();
                let endpoints = c.endpoints(local, remote);
                for (spi, direction) in [(c.spi_out, Direction::Outbound), (c.spi_in, Direction::Inbound)] {
                    ctx.out.push_back(Output::Datapath(DatapathCommand::UpdateEndpoints {
                        tunnel: self.peer.name.clone(),
                        spi,
                        direction,
                        endpoints,
                    }));
                }
            }
        }
    }

    /// Starts the next queued exchange if the window is open.
    pub(crate) fn kick(&mut self, ctx: &mut Ctx<'_>) {
        if self.tasks.outstanding.is_some() || !self.state.is_established() {
            return;
        }
        while let Some(kind) = self.tasks.queue.pop_front() {
            match kind {
                TaskKind::Liveness => {
                    self.send_request(ctx, ActiveTask::Liveness, exchange::INFORMATIONAL, &[], false);
                    // Dead once nothing has been heard for `dpd_timeout` (the check
                    // starts after `dpd_delay` of it), with at least a retransmission.
                    let silent_since = self.heard().or(self.established_at).unwrap_or(ctx.now);
                    let give_up = crate::dpd_deadline(silent_since, ctx.now, self.peer.dpd.timeout);
                    if let Some(o) = self.tasks.outstanding.as_mut() {
                        o.give_up_at = Some(give_up);
                    }
                    return;
                }
                TaskKind::ChildDelete(spi) if informational::start_child_delete(self, ctx, spi) => return,
                TaskKind::ChildRekey(spi) if create_child::start(self, ctx, Some(spi), None) => return,
                TaskKind::ChildCreate(pair) if create_child::start(self, ctx, None, pair) => return,
                TaskKind::IkeRekey if ike_rekey::start(self, ctx) => return,
                _ => {}
            }
        }
    }

    /// Removes every CHILD SA from the datapath and reports the IKE SA down (once).
    pub(crate) fn teardown(&mut self, ctx: &mut Ctx<'_>, reason: DownReason) {
        for c in std::mem::take(&mut self.children) {
            c.remove(ctx, self.name());
        }
        child::expire_retiring(self, ctx, true);
        // Rekeyed and Deleting SAs were reported when they got there (or go silently).
        let reported = matches!(self.state, IkeState::Rekeyed { .. } | IkeState::Deleting { .. });
        if !reported && (self.initiator || self.established_at.is_some()) {
            ctx.out.push_back(Output::Event(Event::IkeDown { peer: self.peer.name.clone(), reason }));
        }
    }

    /// Sends DELETE for the IKE SA (when established) and tears everything down now.
    /// Returns `false` when the SA can be forgotten at once.
    pub(crate) fn terminate(&mut self, ctx: &mut Ctx<'_>, reason: DownReason) -> bool {
        let was_established = self.state.is_established();
        self.teardown(ctx, reason);
        if !was_established {
            return false;
        }
        self.become_deleting(false);
        self.tasks.queue.clear();
        informational::start_ike_delete(self, ctx);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds_even_for_huge_times() {
        let mut rng = crate::testing::TestRng::new(3);
        let (mut out, mut id, mut actions) = (VecDeque::new(), 0, Vec::new());
        let (mut drops, mut log, mut spis) = Default::default();
        let mut answers = crate::log::answer_bucket();
        let mut ctx = Ctx {
            now: Timestamp::ZERO,
            rng: &mut rng,
            out: &mut out,
            next_child_id: &mut id,
            ike_port: 500,
            natt_port: 4500,
            actions: &mut actions,
            limits: Limits::default(),
            peer_sas: 1,
            drops: &mut drops,
            log: &mut log,
            answers: &mut answers,
            spis: &mut spis,
        };
        let hour = Duration::from_secs(3600);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = ctx.jittered(hour, 10);
            assert!(d >= Duration::from_secs(3240) && d <= hour, "{d:?}");
            seen.insert(d.as_secs());
        }
        assert!(seen.len() > 50, "spread over the window");
        assert_eq!(ctx.jittered(hour, 0), hour);
        assert!(ctx.jittered(Duration::MAX, 100) <= Duration::MAX);
        assert!(ctx.random_between(Duration::ZERO, Duration::MAX) <= Duration::MAX);
        assert_eq!(ctx.random_between(hour, hour), hour);
    }
}
