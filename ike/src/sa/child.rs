//! CHILD SAs: key derivation into `SaParams`, their lifetimes, the install order for
//! the datapath (inbound before outbound; make-before-break on rekeying) and removal.
//!
//! A rekeyed CHILD SA is replaced in this order (RFC 7296 1.3.3, 2.8): the new inbound
//! SA is installed before the peer can use it; outbound moves to the new SA with one
//! `InstallOutbound` (the datapath takes the older outbound SA of the same selectors
//! out of the seal path); the old outbound SA is removed when the old CHILD SA is
//! deleted; the old inbound SA keeps accepting packets for [`OLD_INBOUND_GRACE`]
//! after that, for packets still in flight.

use super::{Ctx, IkeSa};
use crate::api::{ChildSaStatus, Event, Output};
use crate::proposal::EspAlgs;
use ipsec_types::{
    ChildRef, DatapathCommand, Direction, EspKey, SaEndpoints, SaParams, Spi, Timestamp, TrafficSelector, UdpEncap,
    VolumeLimits,
};
use std::net::SocketAddr;
use std::time::Duration;

/// How long the inbound SA of a rekeyed CHILD SA keeps accepting packets after the old
/// CHILD SA was deleted (packets the peer sent just before switching may still be
/// queued in the datapath).
pub(crate) const OLD_INBOUND_GRACE: Duration = Duration::from_secs(2);

/// How long after our rekey completed we delete the old CHILD SA. Outbound traffic has
/// moved to the new SA by then; the delay lets packets we sealed with the old SA just
/// before the switch drain through the peer's datapath before its DELETE processing
/// removes the old inbound SA (strongSwan removes it at once when the peer deletes it).
pub(crate) const REKEYED_DELETE_DELAY: Duration = Duration::from_millis(200);

/// Where a CHILD SA stands, with the deadline that belongs to that stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildState {
    /// In use (an SA created by the peer's rekey may still wait for its outbound half,
    /// see [`Halves::AwaitingOutbound`]).
    Installed {
        /// When to start rekeying it (`None` once its hard lifetime queued its deletion).
        rekey_at: Option<Timestamp>,
    },
    /// Our CREATE_CHILD_SA rekeying it is in flight.
    Rekeying,
    /// Replaced by a new CHILD SA; waits for its DELETE exchange (ours or the peer's).
    /// On removal its inbound SA gets [`OLD_INBOUND_GRACE`].
    Rekeyed {
        /// When to send DELETE for it (our rekey replaced it).
        delete_at: Option<Timestamp>,
    },
    /// We sent DELETE for it.
    Deleting {
        /// A newer CHILD SA took over before: on removal its inbound SA gets
        /// [`OLD_INBOUND_GRACE`].
        superseded: bool,
    },
    /// Created by the peer's rekey that lost a collision: the peer deletes it.
    Redundant {
        /// When we delete it if the peer did not.
        delete_at: Option<Timestamp>,
        /// A newer CHILD SA had already taken over from it (the peer rekeyed it before our
        /// winning response arrived): on removal its inbound SA gets [`OLD_INBOUND_GRACE`].
        superseded: bool,
    },
}

impl ChildState {
    /// Carrying traffic (or about to): installed or being rekeyed.
    pub(crate) fn usable(self) -> bool {
        matches!(self, Self::Installed { .. } | Self::Rekeying)
    }
    pub(crate) fn is_installed(self) -> bool {
        matches!(self, Self::Installed { .. })
    }
    pub(crate) fn is_deleting(self) -> bool {
        matches!(self, Self::Deleting { .. })
    }
    /// A newer CHILD SA took over from this one.
    pub(crate) fn superseded(self) -> bool {
        matches!(
            self,
            Self::Rekeyed { .. } | Self::Deleting { superseded: true } | Self::Redundant { superseded: true, .. }
        )
    }
    /// A newer CHILD SA replaced this one; a DELETE already planned stays planned.
    pub(crate) fn rekeyed(self) -> Self {
        match self {
            Self::Rekeyed { delete_at } => Self::Rekeyed { delete_at },
            _ => Self::Rekeyed { delete_at: None },
        }
    }
    /// We send DELETE for it.
    pub(crate) fn deleting(self) -> Self {
        Self::Deleting { superseded: self.superseded() }
    }
}

/// Which halves of a CHILD SA the datapath holds.
#[derive(Clone, Debug)]
pub(crate) enum Halves {
    /// Neither (a collision loser we delete at once).
    Neither,
    /// The inbound SA; the outbound one is installed when the CHILD SA it replaces (the
    /// peer rekeyed it) is deleted.
    AwaitingOutbound {
        /// The outbound SA to install then.
        out: SaParams,
        /// The child id of the CHILD SA this one replaces.
        replaces: u64,
    },
    /// The inbound SA only, for good (the peer's redundant SA of a collision we won).
    InboundOnly,
    /// Both.
    Both {
        /// The outbound SA as installed, to put it back in the seal path if the outbound
        /// SA of another CHILD SA with the same selectors that took it over goes away.
        out: SaParams,
    },
}

impl Halves {
    pub(crate) fn inbound(&self) -> bool {
        !matches!(self, Self::Neither)
    }
    /// The outbound SA, if installed.
    pub(crate) fn outbound(&self) -> Option<&SaParams> {
        match self {
            Self::Both { out } => Some(out),
            _ => None,
        }
    }
    /// Waits for the CHILD SA it replaces to go before it carries outbound traffic.
    pub(crate) fn awaiting_outbound(&self) -> bool {
        matches!(self, Self::AwaitingOutbound { .. })
    }
}

pub(crate) struct ChildSa {
    pub(crate) child_id: u64,
    pub(crate) state: ChildState,
    pub(crate) halves: Halves,
    pub(crate) spi_in: Spi,
    pub(crate) spi_out: Spi,
    pub(crate) local_ts: Vec<TrafficSelector>,
    pub(crate) remote_ts: Vec<TrafficSelector>,
    pub(crate) algs: EspAlgs,
    pub(crate) encap: Option<UdpEncap>,
    pub(crate) established_at: Timestamp,
    /// Hard lifetime: deleted if still here then.
    pub(crate) expire_at: Option<Timestamp>,
}

impl ChildSa {
    pub(crate) fn endpoints(&self, local: SocketAddr, remote: SocketAddr) -> SaEndpoints {
        SaEndpoints { local: local.ip(), remote: remote.ip(), encap: self.encap }
    }

    pub(crate) fn status(&self) -> ChildSaStatus {
        ChildSaStatus {
            child_id: self.child_id,
            state: match self.state {
                ChildState::Installed { .. } if self.halves.awaiting_outbound() => "INSTALLED_INBOUND",
                ChildState::Installed { .. } => "INSTALLED",
                ChildState::Rekeying => "REKEYING",
                ChildState::Rekeyed { .. } => "REKEYED",
                ChildState::Deleting { .. } => "DELETING",
                ChildState::Redundant { .. } => "REDUNDANT",
            },
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            local_ts: self.local_ts.clone(),
            remote_ts: self.remote_ts.clone(),
            encr: self.algs.encr,
            integ: self.algs.integ,
            dh: self.algs.dh,
            encap: self.encap,
            established_at: self.established_at,
            next_rekey: match self.state {
                ChildState::Installed { rekey_at } => rekey_at,
                _ => None,
            },
            expires_at: self.expire_at,
        }
    }

    /// Removes both directions from the datapath at once and reports it (teardown).
    pub(crate) fn remove(&self, ctx: &mut Ctx<'_>, tunnel: &str) {
        if self.halves.outbound().is_some() {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: tunnel.to_string(),
                spi: self.spi_out,
                direction: Direction::Outbound,
            }));
        }
        if self.halves.inbound() {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: tunnel.to_string(),
                spi: self.spi_in,
                direction: Direction::Inbound,
            }));
            ctx.out.push_back(Output::Event(Event::ChildDown { peer: tunnel.to_string(), spi_in: self.spi_in }));
            tracing::info!(tunnel, spi_in = %self.spi_in, spi_out = %self.spi_out, "CHILD SA removed");
        }
    }
}

fn list(ts: &[TrafficSelector]) -> String {
    ts.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// Removes the CHILD SA at `idx` from `sa`: first activates the outbound half of any
/// CHILD SA waiting to replace it, then removes its outbound SA, then its inbound SA
/// (after [`OLD_INBOUND_GRACE`] if it was superseded). Returns it.
pub(crate) fn remove_at(sa: &mut IkeSa, ctx: &mut Ctx<'_>, idx: usize) -> Option<ChildSa> {
    if idx >= sa.children.len() {
        return None;
    }
    let c = sa.children.remove(idx);
    activate_successor(sa, ctx, c.child_id);
    let name = sa.peer.name.clone();
    if c.halves.outbound().is_some() {
        ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
            tunnel: name.clone(),
            spi: c.spi_out,
            direction: Direction::Outbound,
        }));
    }
    if c.halves.inbound() {
        if c.state.superseded() {
            sa.retiring.push((c.spi_in, ctx.now + OLD_INBOUND_GRACE));
        } else {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: name.clone(),
                spi: c.spi_in,
                direction: Direction::Inbound,
            }));
        }
        ctx.out.push_back(Output::Event(Event::ChildDown { peer: name.clone(), spi_in: c.spi_in }));
        tracing::info!(tunnel = %name, spi_in = %c.spi_in, spi_out = %c.spi_out, "CHILD SA removed");
    }
    Some(c)
}

/// The IKE SA initiator keeps the tunnel: when the last usable CHILD SA went away
/// (hard lifetime, or deleted by the peer), it creates a new one.
///
/// With one CHILD SA per subnet pair, each pair that no usable CHILD SA carries any
/// more (and that no queued or outstanding CREATE_CHILD_SA is for) gets a new one.
pub(crate) fn ensure_tunnel(sa: &mut IkeSa) {
    use super::task_manager::TaskKind;
    if !sa.initiator || !sa.state.is_established() {
        return;
    }
    if !sa.peer.child_sa_per_subnet_pair {
        if !sa.children.iter().any(|c| c.state.usable()) {
            tracing::info!(tunnel = %sa.peer.name, "no CHILD SA left; creating a new one");
            sa.tasks.queue_once(TaskKind::ChildCreate(None));
        }
        return;
    }
    let creating = match sa.tasks.outstanding.as_ref().map(|o| &o.task) {
        Some(crate::task::ActiveTask::ChildCreate(init)) if init.old.is_none() => Some(init.pair.unwrap_or(0)),
        _ => None,
    };
    for (i, (l, r)) in crate::ts::pairs(&sa.peer).iter().enumerate() {
        let carried =
            sa.children.iter().any(|c| c.state.usable() && crate::ts::covers(&c.local_ts, &c.remote_ts, l, r));
        let pending = creating == Some(i) || sa.tasks.queue.iter().any(|t| *t == TaskKind::ChildCreate(Some(i)));
        if !carried && !pending {
            tracing::info!(tunnel = %sa.peer.name, "no CHILD SA left for {l} === {r}; creating a new one");
            sa.tasks.queue_once(TaskKind::ChildCreate(Some(i)));
        }
    }
}

/// Moves outbound traffic to the CHILD SA waiting to replace the one with `child_id`
/// (the peer's rekey of it), if any. Returns whether there was one.
pub(crate) fn activate_successor(sa: &mut IkeSa, ctx: &mut Ctx<'_>, child_id: u64) -> bool {
    let mut found = false;
    for k in &mut sa.children {
        if !matches!(&k.halves, Halves::AwaitingOutbound { replaces, .. } if *replaces == child_id) {
            continue;
        }
        let Halves::AwaitingOutbound { out, .. } = std::mem::replace(&mut k.halves, Halves::Neither) else { continue };
        tracing::debug!(tunnel = %sa.peer.name, spi_out = %k.spi_out, "outbound traffic moves to the new CHILD SA");
        ctx.out.push_back(Output::Datapath(DatapathCommand::InstallOutbound(out.clone())));
        k.halves = Halves::Both { out };
        found = true;
    }
    found
}

/// Removes inbound SAs whose grace period is over (all of them with `all`).
pub(crate) fn expire_retiring(sa: &mut IkeSa, ctx: &mut Ctx<'_>, all: bool) {
    let now = ctx.now;
    sa.retiring.retain(|(spi, at)| {
        if all || *at <= now {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove {
                tunnel: sa.peer.name.clone(),
                spi: *spi,
                direction: Direction::Inbound,
            }));
            false
        } else {
            true
        }
    });
}

/// A CHILD SA to create: negotiated algorithms, SPIs and selectors.
pub(crate) struct NewChild {
    pub(crate) algs: EspAlgs,
    pub(crate) spi_in: u32,
    pub(crate) spi_out: u32,
    pub(crate) local_ts: Vec<TrafficSelector>,
    pub(crate) remote_ts: Vec<TrafficSelector>,
}

/// Which halves of a new CHILD SA go to the datapath now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Install {
    /// Inbound then outbound.
    Both,
    /// Inbound only; outbound when the CHILD SA with this child id is deleted.
    InboundReplacing(u64),
    /// Nothing (a collision loser we delete at once).
    Nothing,
}

/// The key exchange material of a CREATE_CHILD_SA: both nonces, the DH shared secret
/// (PFS) and whether we initiated the exchange.
pub(crate) struct Keying<'a> {
    pub(crate) ni: &'a [u8],
    pub(crate) nr: &'a [u8],
    pub(crate) shared: Option<&'a [u8]>,
    pub(crate) we_initiated: bool,
}

/// Derives the keys of a new CHILD SA (RFC 7296 2.17), records it and emits the
/// datapath commands `how` asks for. Returns the `ChildUp` event for the caller to
/// emit after its response went out (`None` if keys could not be built or nothing was
/// installed).
pub(crate) fn install(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    new: NewChild,
    keying: &Keying<'_>,
    how: Install,
) -> Option<Event> {
    let keys = sa.state.keys()?;
    let ike_algs = keys.algs;
    let algs = new.algs;
    let (i2r, r2i) = crate::crypto::derive_child_keys(
        ike_algs.prf,
        &keys.keys.sk_d,
        algs.encr,
        algs.integ,
        keying.shared,
        keying.ni,
        keying.nr,
    );
    let (kin, kout) = if keying.we_initiated { (r2i, i2r) } else { (i2r, r2i) };
    let key_in = EspKey::from_keymat(algs.encr, algs.integ, &kin)?;
    let key_out = EspKey::from_keymat(algs.encr, algs.integ, &kout)?;
    let encap = sa.encap.is_some().then(|| UdpEncap {
        local_port: ctx.natt_port,
        remote_port: if sa.remote.port() == ctx.ike_port { ctx.natt_port } else { sa.remote.port() },
    });
    *ctx.next_child_id += 1;
    let cfg = &sa.peer;
    let rekey_in = ctx.jittered(cfg.timers.child_rekey_time, cfg.timers.rekey_jitter_percent);
    let mut child = ChildSa {
        child_id: *ctx.next_child_id,
        state: ChildState::Installed { rekey_at: Some(ctx.now + rekey_in) },
        halves: Halves::Neither,
        spi_in: Spi(new.spi_in),
        spi_out: Spi(new.spi_out),
        local_ts: new.local_ts,
        remote_ts: new.remote_ts,
        algs,
        encap,
        established_at: ctx.now,
        expire_at: Some(ctx.now + cfg.timers.child_life_time.max(rekey_in)),
    };
    let limits = volume_limits(cfg.timers.child_rekey_bytes, cfg.timers.child_rekey_packets);
    let endpoints = child.endpoints(sa.local, sa.remote);
    let child_ref = ChildRef { tunnel: cfg.name.clone(), child_id: child.child_id };
    let params = |spi: Spi, direction, key: EspKey, replay_window| SaParams {
        spi,
        direction,
        child: child_ref.clone(),
        endpoints,
        key,
        replay_window,
        esn: algs.esn,
        local_ts: child.local_ts.clone(),
        remote_ts: child.remote_ts.clone(),
        limits,
    };
    let inbound = params(child.spi_in, Direction::Inbound, key_in, cfg.replay_window);
    let outbound = params(child.spi_out, Direction::Outbound, key_out, 0);
    let name = cfg.name.clone();
    match how {
        Install::Nothing => {
            sa.children.push(child);
            return None;
        }
        Install::Both => {
            ctx.out.push_back(Output::Datapath(DatapathCommand::InstallInbound(inbound)));
            ctx.out.push_back(Output::Datapath(DatapathCommand::InstallOutbound(outbound.clone())));
            child.halves = Halves::Both { out: outbound };
        }
        Install::InboundReplacing(old) => {
            ctx.out.push_back(Output::Datapath(DatapathCommand::InstallInbound(inbound)));
            child.halves = Halves::AwaitingOutbound { out: outbound, replaces: old };
        }
    }
    tracing::info!(
        tunnel = %name,
        "CHILD SA established: {} === {}, SPIs in {} / out {}, {}{}{}{}",
        list(&child.local_ts),
        list(&child.remote_ts),
        child.spi_in,
        child.spi_out,
        algs.encr.keyword(),
        algs.integ.map(|i| format!("-{}", i.keyword())).unwrap_or_default(),
        algs.dh.map(|g| format!(", PFS {}", g.keyword())).unwrap_or_default(),
        if encap.is_some() { ", UDP-encap" } else { "" }
    );
    let ev = Event::ChildUp { peer: name, spi_in: child.spi_in, spi_out: child.spi_out };
    sa.children.push(child);
    Some(ev)
}

/// Soft limits from the configuration; hard limits 10 % above them.
pub(crate) fn volume_limits(bytes: Option<u64>, packets: Option<u64>) -> VolumeLimits {
    let hard = |soft: u64| soft.saturating_add((soft / 10).max(1));
    VolumeLimits {
        soft_bytes: bytes,
        soft_packets: packets,
        hard_bytes: bytes.map(hard),
        hard_packets: packets.map(hard),
    }
}
