//! The façade the gateway drives: routes datagrams to IKE SAs by SPI, hands operator
//! commands, datapath events and timeouts to the IKE SAs they concern, runs the work
//! IKE SAs hand back (rekeyed SAs, CHILD SAs moving between IKE SAs), and queues
//! outputs. The types it speaks with are in `api`.
//!
//! Around it: `admission` (who gets a half-open IKE SA), `retry` (initiations and
//! trying again), `restart` (peers that restarted), `outbound` (one outbound SA in
//! the seal path per tunnel), `sa_set` (SAs by SPI), `cookie`, `limits`, `spis`.
//! It does not interpret exchanges (see `task`) or keep per-SA protocol state (see `sa`).
//!
//! Timers: peers with `initiate` are armed at `Timestamp::ZERO` by `new`, so the first
//! `handle_timeout` (or `poll_timeout` returning zero) starts them.

use crate::api::{Command, EndpointConfig, IkeSaStatus, Output, Rng};
use crate::down::{DownReason, Failure};
use crate::log::{LogLimiter, TokenBucket};
use crate::message::{exchange, Message};
use crate::sa::task_manager::TaskKind;
use crate::sa::{Action, Ctx, IkeSa};
use ipsec_types::{DatapathEvent, ExpiryReason, Spi, Timestamp};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

mod admission;
mod cookie;
mod limits;
mod outbound;
mod reconfigure;
mod restart;
mod retry;
mod sa_set;
mod spis;
mod v1;

use cookie::Cookies;
use retry::PeerSlot;
use sa_set::SaSet;
pub(crate) use spis::SpiRegistry;

pub use limits::{IkeDrops, Limits};
pub use reconfigure::Reconfigured;

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
    /// The IKEv1 SAs (tunnels with `ike_version` 1).
    v1: v1::V1Set,
}

impl Endpoint {
    /// Creates the endpoint. Nothing is sent until `handle_timeout` or a command.
    /// Peers with `initiate == true` start connecting on the first `handle_timeout`
    /// (their timer is armed at `Timestamp::ZERO`).
    pub fn new(config: EndpointConfig, rng: Box<dyn Rng>) -> Self {
        for cfg in &config.peers {
            warn_about(cfg);
        }
        let peers: Vec<PeerSlot> = config.peers.into_iter().map(|cfg| PeerSlot::new(cfg, Timestamp::ZERO)).collect();
        let mut this = Self {
            peers,
            peer_by_addr: HashMap::new(),
            peer_by_name: HashMap::new(),
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
            v1: v1::V1Set::default(),
        };
        this.index_peers();
        this
    }

    /// Rebuilds the tunnel indexes from `peers`.
    fn index_peers(&mut self) {
        self.peer_by_addr.clear();
        self.peer_by_name.clear();
        for (i, p) in self.peers.iter().enumerate() {
            // The first tunnel with an address answers IKE_SA_INIT from it.
            self.peer_by_addr.entry(p.cfg.remote_addr).or_insert(i);
            self.peer_by_name.entry(p.cfg.name.clone()).or_insert(i);
        }
    }

    /// Whether tunnel `name` speaks IKEv1.
    fn is_v1(&self, name: &str) -> bool {
        self.peer_by_name
            .get(name)
            .and_then(|&i| self.peers.get(i))
            .is_some_and(|p| p.cfg.ike_version == crate::api::IkeVersion::V1)
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
                        if other.peer.name == name && other.state.is_connecting() {
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

    /// A datagram arrived on `local` from `remote` (non-ESP marker already stripped).
    pub fn handle_datagram(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let mark = self.shared.out.len();
        self.handle_datagram_inner(now, local, remote, data);
        self.after_input(mark);
    }

    fn handle_datagram_inner(&mut self, now: Timestamp, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        // The major version (octet 17 of both headers) says which protocol it is.
        if data.get(17).is_some_and(|v| v >> 4 == 1) {
            self.v1_datagram(now, local, remote, data);
            return;
        }
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
        } else if h.is_response() && msg.sk.is_none() && msg.skf.is_none() && h.exchange == exchange::INFORMATIONAL {
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
                self.sas.get(i).is_some_and(|s| s.initiator && (s.spi_r == h.spi_r || s.state.is_connecting()))
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
            Command::Rekey { peer, ike } if self.is_v1(&peer) => self.v1_rekey(now, &peer, ike),
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
                self.v1_terminate_where(now, DownReason::Operator, |sa| sa.peer.name == peer);
            }
            Command::TerminateAll => {
                self.shutting_down = true;
                for slot in &mut self.peers {
                    slot.wanted = false;
                    slot.retry_at = None;
                }
                self.terminate_where(now, DownReason::Operator, |_| true);
                self.v1_terminate_where(now, DownReason::Operator, |_| true);
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
        if self.is_v1(&tunnel) {
            self.v1_volume_expired(now, &tunnel, spi, direction, hard);
            return;
        }
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
        if self.v1_esp_activity(now, spi) {
            return;
        }
        let owner = self
            .sas
            .position(|s| s.children.iter().any(|c| c.spi_in == spi) || s.retiring.iter().any(|(r, _)| *r == spi));
        if let Some(sa) = owner.and_then(|i| self.sas.get_mut(i)) {
            sa.last_esp = Some(sa.last_esp.map_or(now, |t| t.max(now)));
            sa.esp_heard_during_liveness(now);
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
        self.v1_timeouts(now);
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
        peers.into_iter().chain(self.sas.next_deadline()).chain(self.v1.next_deadline()).min()
    }

    /// Every IKE SA and its CHILD SAs.
    pub fn status(&self) -> Vec<IkeSaStatus> {
        self.sas
            .iter()
            .map(|sa| IkeSaStatus {
                tunnel: sa.peer.name.clone(),
                version: crate::IkeVersion::V2,
                state: sa.state.name(),
                initiator: sa.initiator,
                spi_i: sa.spi_i,
                spi_r: sa.spi_r,
                local: sa.local,
                remote: sa.remote,
                local_id: sa.peer.local_id.clone(),
                remote_id: sa.peer.remote_id.clone(),
                encr: sa.state.keys().map(|k| k.algs.encr),
                integ: sa.state.keys().and_then(|k| k.algs.integ),
                prf: sa.state.keys().map(|k| k.algs.prf),
                dh: sa.state.keys().map(|k| k.algs.dh),
                nat_detected: matches!(sa.encap, Some(crate::EncapReason::Nat | crate::EncapReason::Forced)),
                encap_reason: sa.encap,
                established_at: sa.established_at,
                last_heard: sa.heard(),
                next_rekey: sa.state.next_rekey(),
                children: sa.children.iter().map(|c| c.status()).collect(),
            })
            .chain(self.v1_status())
            .collect()
    }

    /// True once every IKE SA is gone (after `TerminateAll`, when the gateway may exit).
    pub fn is_idle(&self) -> bool {
        self.sas.is_empty() && self.v1.is_empty()
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
            + self.v1_half_open()
    }

    /// Number of IKE SAs (any state). For tests and diagnostics.
    pub fn ike_sa_count(&self) -> usize {
        self.sas.len() + self.v1.len()
    }
}

/// Start-up (and reload) warnings about a tunnel's settings.
fn warn_about(cfg: &crate::api::PeerConfig) {
    if cfg.aggressive && cfg.ike_version == crate::api::IkeVersion::V1 {
        tracing::warn!(
            "tunnel {}: IKEv1 Aggressive Mode is enabled: identities travel in cleartext and anyone who \
             sees the exchange can guess the pre-shared key offline; use Main Mode unless the peer needs it",
            cfg.name
        );
    }
    let legacy = cfg.legacy_groups();
    if !legacy.is_empty() {
        let names: Vec<&str> = legacy.iter().map(|g| g.keyword()).collect();
        tracing::warn!(
            "tunnel {}: proposals name the legacy group(s) {} (below 112-bit strength); \
             negotiated only with a peer that names them too, prefer modp2048 or better",
            cfg.name,
            names.join(", ")
        );
    }
}
