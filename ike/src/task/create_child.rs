//! CREATE_CHILD_SA for CHILD SAs (RFC 7296 1.3.1, 1.3.3): creating and rekeying them,
//! with PFS when the ESP proposal names a group (and the INVALID_KE_PAYLOAD retry), and
//! simultaneous rekeying of the same CHILD SA (2.8.1, 2.25.1).
//!
//! Make-before-break: the rekey initiator installs both halves of the new SA when the
//! response arrives and then deletes the old one; the responder installs the new inbound
//! SA before its response leaves and moves outbound traffic when the old SA is deleted
//! (see `sa::child`). It does not rekey the IKE SA (see `ike_rekey`).

use super::{error_notify, notifies, ActiveTask};
use crate::crypto::KeyExchange;
use crate::down::Failure;
use crate::message::payload::{proto, spi32, u16_data, Notify};
use crate::message::{exchange, Message, Payload};
use crate::notify;
use crate::proposal::{self, Refusal};
use crate::sa::child::{self, ChildState, Halves, Install, Keying, NewChild};
use crate::sa::task_manager::TaskKind;
use crate::sa::{Ctx, IkeSa};
use crate::ts::{self, accept as accept_ts, narrow};
use ipsec_types::{DhGroup, Spi, TrafficSelector};
use std::time::Duration;

/// How often we follow INVALID_KE_PAYLOAD before giving up.
const MAX_KE_RETRIES: u8 = 2;
/// A refused rekey (proposal or selectors) is tried again after this long.
const RETRY_REFUSED: Duration = Duration::from_secs(60);
/// A collision loser the peer created is deleted by us if the peer has not after this long.
pub(crate) const REDUNDANT_WAIT: Duration = Duration::from_secs(30);

/// The peer's rekey of the same CHILD SA, answered while ours was in flight.
pub(crate) struct Collision {
    ni: Vec<u8>,
    nr: Vec<u8>,
    child_id: u64,
}

/// The initiator between its CREATE_CHILD_SA request and the response.
pub(crate) struct Initiator {
    /// Inbound SPI of the CHILD SA being rekeyed (`None`: a new CHILD SA).
    pub(crate) old: Option<Spi>,
    spi_in: u32,
    ni: Vec<u8>,
    ke: Option<KeyExchange>,
    retries: u8,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    /// The subnet pair a new CHILD SA is for (`ts::pairs`), `None` for a rekey or
    /// all of the tunnel's subnets.
    pub(crate) pair: Option<usize>,
    pub(crate) collision: Option<Collision>,
}

/// RFC 7296 2.8.1: of two CHILD SAs created by colliding rekeys, the one created with
/// the lowest of the four nonces (octet-wise; a prefix is lower) is redundant. True if
/// that is the one of our exchange.
pub(crate) fn ours_is_redundant(our_ni: &[u8], our_nr: &[u8], their_ni: &[u8], their_nr: &[u8]) -> bool {
    our_ni.min(our_nr) < their_ni.min(their_nr)
}

fn our_groups(sa: &IkeSa) -> impl Iterator<Item = DhGroup> + '_ {
    sa.peer.esp_proposals.iter().flat_map(|p| p.dh.iter().copied())
}

/// Starts rekeying the CHILD SA with inbound SPI `old` (or creating one, `None`, for
/// the subnet pair `pair` or, with `None`, the tunnel's first CHILD SA: see
/// [`ts::proposal`]). Returns `false` (nothing sent) if that CHILD SA cannot be rekeyed
/// now.
pub(crate) fn start(sa: &mut IkeSa, ctx: &mut Ctx<'_>, old: Option<Spi>, pair: Option<usize>) -> bool {
    let (local_ts, remote_ts, group) = match old {
        Some(spi) => {
            let Some(c) = sa.children.iter_mut().find(|c| c.spi_in == spi) else { return false };
            if !c.state.is_installed() || c.halves.awaiting_outbound() {
                return false;
            }
            c.state = ChildState::Rekeying;
            (c.local_ts.clone(), c.remote_ts.clone(), c.algs.dh)
        }
        None => {
            let p = ts::proposal(&sa.peer, pair);
            (p.local, p.remote, None)
        }
    };
    let pair = if old.is_some() { None } else { pair };
    let group = group.or_else(|| our_groups(sa).next());
    let init = Initiator {
        old,
        spi_in: ctx.random_spi(),
        ni: ctx.nonce(),
        ke: group.map(|g| KeyExchange::generate(g, ctx.rng)),
        retries: 0,
        local_ts,
        remote_ts,
        pair,
        collision: None,
    };
    tracing::info!(tunnel = %sa.name(), old = ?old.map(|s| s.to_string()), "{} CHILD SA", if old.is_some() { "rekeying" } else { "creating" });
    send(sa, ctx, init);
    true
}

fn send(sa: &mut IkeSa, ctx: &mut Ctx<'_>, init: Initiator) {
    let mut p = Vec::new();
    if let Some(old) = init.old {
        p.push(Payload::Notify(Notify {
            protocol: proto::ESP,
            spi: old.0.to_be_bytes().to_vec(),
            kind: notify::REKEY_SA,
            data: vec![],
        }));
    }
    p.push(Payload::Sa(proposal::esp_offer(&sa.peer.esp_proposals, init.spi_in, true)));
    p.push(Payload::Nonce(init.ni.clone()));
    if let Some(ke) = &init.ke {
        p.push(Payload::Ke { group: ke.group().transform_id(), data: ke.public_value() });
    }
    p.push(Payload::TsI(init.local_ts.clone()));
    p.push(Payload::TsR(init.remote_ts.clone()));
    sa.send_request(ctx, ActiveTask::ChildCreate(Box::new(init)), exchange::CREATE_CHILD_SA, &p, false);
}

/// Our rekey did not happen: the old CHILD SA stays (rekey again after `retry`) unless
/// the peer's colliding rekey replaced it.
fn abandon(sa: &mut IkeSa, ctx: &mut Ctx<'_>, init: &Initiator, retry: Duration) {
    let Some(old) = init.old else { return };
    let Some(i) = sa.children.iter().position(|c| c.spi_in == old) else {
        // The peer deleted it meanwhile (2.25.1). If nothing replaced it, we still want
        // a tunnel: create a new CHILD SA from scratch.
        let usable = sa.children.iter().any(|c| c.state.usable());
        if !usable {
            tracing::info!(tunnel = %sa.name(), "the CHILD SA we tried to rekey was deleted by the peer; creating a new one");
            sa.tasks.queue_once(TaskKind::ChildCreate(None));
        }
        return;
    };
    let id = sa.children.get(i).map_or(0, |c| c.child_id);
    let replaced =
        sa.children.iter().any(|k| matches!(k.halves, Halves::AwaitingOutbound { replaces, .. } if replaces == id));
    let now = ctx.now;
    if let Some(c) = sa.children.get_mut(i) {
        if c.state != ChildState::Rekeying {
            return;
        }
        c.state = if replaced { c.state.rekeyed() } else { ChildState::Installed { rekey_at: Some(now + retry) } };
    }
}

/// The initiator handles the CREATE_CHILD_SA response.
pub(crate) fn process_response(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    init: Box<Initiator>,
    msg: &Message,
) -> Result<(), Failure> {
    let mut init = *init;
    let (name, peer_ip) = (sa.peer.name.clone(), sa.remote.ip());
    if let Some(n) = error_notify(&msg.payloads) {
        match n.kind {
            notify::INVALID_KE_PAYLOAD => {
                let wanted = n.dh_group();
                let g = wanted.and_then(DhGroup::from_iana).filter(|g| our_groups(sa).any(|o| o == *g));
                match g {
                    Some(g) if init.ke.as_ref().is_none_or(|k| k.group() != g) && init.retries < MAX_KE_RETRIES => {
                        tracing::info!(tunnel = %name, "peer {peer_ip} wants PFS group {} (INVALID_KE_PAYLOAD); retrying with it", g.keyword());
                        init.ke = Some(KeyExchange::generate(g, ctx.rng));
                        init.retries += 1;
                        send(sa, ctx, init);
                    }
                    _ => {
                        tracing::warn!("tunnel {name}: peer {peer_ip} wants PFS group {wanted:?} which we do not offer (INVALID_KE_PAYLOAD)");
                        abandon(sa, ctx, &init, RETRY_REFUSED);
                    }
                }
            }
            notify::TEMPORARY_FAILURE => {
                let retry = ctx.random_between(Duration::from_secs(5), Duration::from_secs(15));
                tracing::info!(tunnel = %name, "peer {peer_ip} answered TEMPORARY_FAILURE to CREATE_CHILD_SA; retrying in {}s", retry.as_secs());
                abandon(sa, ctx, &init, retry);
            }
            notify::CHILD_SA_NOT_FOUND => {
                tracing::info!(tunnel = %name, "peer {peer_ip} no longer has the CHILD SA we rekey (CHILD_SA_NOT_FOUND)");
                if let Some(i) = init.old.and_then(|old| sa.children.iter().position(|c| c.spi_in == old)) {
                    child::remove_at(sa, ctx, i);
                }
                abandon(sa, ctx, &init, RETRY_REFUSED);
            }
            k => {
                tracing::warn!(
                    "tunnel {name}: peer {peer_ip} refused CREATE_CHILD_SA with {}; we offered {}",
                    notify::name(k),
                    proposal::describe_ours(&sa.peer.esp_proposals)
                );
                abandon(sa, ctx, &init, RETRY_REFUSED);
            }
        }
        return Ok(());
    }
    let payload = |f: fn(&Payload) -> bool| msg.payloads.iter().find(|p| f(p));
    let (Some(Payload::Sa(props)), Some(Payload::Nonce(nr)), Some(Payload::TsI(tsi)), Some(Payload::TsR(tsr))) = (
        payload(|p| matches!(p, Payload::Sa(_))),
        payload(|p| matches!(p, Payload::Nonce(_))),
        payload(|p| matches!(p, Payload::TsI(_))),
        payload(|p| matches!(p, Payload::TsR(_))),
    ) else {
        tracing::warn!("tunnel {name}: peer {peer_ip} sent a CREATE_CHILD_SA response without SA, nonce or selectors");
        abandon(sa, ctx, &init, RETRY_REFUSED);
        return Ok(());
    };
    let Some((algs, spi_out)) = proposal::accept_esp_answer_pfs(props, &sa.peer.esp_proposals) else {
        tracing::warn!(
            "tunnel {name}: peer {peer_ip} chose an ESP proposal we did not offer ({})",
            proposal::describe(props)
        );
        abandon(sa, ctx, &init, RETRY_REFUSED);
        return Ok(());
    };
    let accepted = (accept_ts(tsi, &init.local_ts), accept_ts(tsr, &init.remote_ts));
    let ((Some(local_ts), Some(remote_ts)), true) = (accepted, (16..=256).contains(&nr.len())) else {
        tracing::warn!(
            "tunnel {name}: peer {peer_ip} sent an unacceptable CREATE_CHILD_SA response (nonce or selectors)"
        );
        abandon(sa, ctx, &init, RETRY_REFUSED);
        return Ok(());
    };
    let ke_payload = msg.payloads.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data)),
        _ => None,
    });
    let shared = match (algs.dh, &init.ke, ke_payload) {
        (None, _, _) => None,
        (Some(g), Some(k), Some((grp, data))) if k.group() == g && grp == g.transform_id() => k.agree(data).ok(),
        _ => None,
    };
    if algs.dh.is_some() && shared.is_none() {
        tracing::warn!("tunnel {name}: peer {peer_ip} sent a missing or invalid KE in CREATE_CHILD_SA");
        abandon(sa, ctx, &init, RETRY_REFUSED);
        return Ok(());
    }
    let lose = init.collision.as_ref().is_some_and(|c| ours_is_redundant(&init.ni, nr, &c.ni, &c.nr));
    let new = NewChild { algs, spi_in: init.spi_in, spi_out, local_ts, remote_ts };
    let keying = Keying { ni: &init.ni, nr, shared: shared.as_deref().map(|s| &s[..]), we_initiated: true };
    let old_idx = init.old.and_then(|old| sa.children.iter().position(|c| c.spi_in == old));
    let now = ctx.now;
    if lose {
        tracing::info!(tunnel = %name, "CHILD SA rekey collision: ours has the lowest nonce; deleting it, the peer's rekey stays");
        child::install(sa, ctx, new, &keying, Install::Nothing);
        sa.tasks.queue.push_front(TaskKind::ChildDelete(Spi(init.spi_in)));
        if let Some(c) = old_idx.and_then(|i| sa.children.get_mut(i)) {
            c.state = c.state.rekeyed();
        }
        return Ok(());
    }
    let ev = child::install(sa, ctx, new, &keying, Install::Both);
    if let Some(c) = &init.collision {
        tracing::info!(tunnel = %name, "CHILD SA rekey collision: ours wins; the peer deletes its redundant CHILD SA");
        if let Some(k) = sa.children.iter_mut().find(|k| k.child_id == c.child_id) {
            k.state = ChildState::Redundant { delete_at: Some(now + REDUNDANT_WAIT), superseded: k.state.superseded() };
            if k.halves.awaiting_outbound() {
                k.halves = Halves::InboundOnly;
            }
        }
    }
    if let Some(c) = old_idx.and_then(|i| sa.children.get_mut(i)) {
        c.state = ChildState::Rekeyed { delete_at: Some(now + child::REKEYED_DELETE_DELAY) };
    }
    if let Some(ev) = ev {
        ctx.out.push_back(crate::api::Output::Event(ev));
    }
    Ok(())
}

/// The responder handles a CREATE_CHILD_SA request for a CHILD SA (new or rekey).
pub(crate) fn process_request(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Result<(), Failure> {
    let (name, peer_ip, mid) = (sa.peer.name.clone(), sa.remote.ip(), msg.header.message_id);
    let refuse = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, n: Notify| {
        sa.send_response(ctx, exchange::CREATE_CHILD_SA, mid, &[Payload::Notify(n)]);
        Ok(())
    };
    if sa.tasks.outstanding.as_ref().is_some_and(|o| matches!(o.task, ActiveTask::IkeRekey(_))) {
        tracing::debug!(tunnel = %name, "CREATE_CHILD_SA while we rekey the IKE SA: TEMPORARY_FAILURE");
        return refuse(sa, ctx, Notify::new(notify::TEMPORARY_FAILURE, vec![]));
    }
    if sa.children.len() >= ctx.limits.child_sa_max {
        ctx.drops.child_sa_cap += 1;
        crate::log::warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} asks for another CHILD SA but the IKE SA holds {} (child_sa_max); answering NO_ADDITIONAL_SAS",
            sa.children.len()
        );
        return refuse(sa, ctx, Notify::new(notify::NO_ADDITIONAL_SAS, vec![]));
    }
    let mut old_idx = None;
    if let Some(n) = notifies(&msg.payloads).find(|n| n.kind == notify::REKEY_SA) {
        let found = spi32(&n.spi).and_then(|s| sa.children.iter().position(|c| c.spi_out == Spi(s)));
        let Some(i) = found else {
            tracing::info!(tunnel = %name, "peer {peer_ip} rekeys a CHILD SA we do not have (CHILD_SA_NOT_FOUND)");
            let nf =
                Notify { protocol: n.protocol, spi: n.spi.clone(), kind: notify::CHILD_SA_NOT_FOUND, data: vec![] };
            return refuse(sa, ctx, nf);
        };
        if !sa.children.get(i).is_some_and(|c| c.state.usable()) {
            tracing::debug!(tunnel = %name, "peer {peer_ip} rekeys a CHILD SA we are deleting: TEMPORARY_FAILURE");
            return refuse(sa, ctx, Notify::new(notify::TEMPORARY_FAILURE, vec![]));
        }
        old_idx = Some(i);
    }
    let payload = |f: fn(&Payload) -> bool| msg.payloads.iter().find(|p| f(p));
    let (Some(Payload::Sa(props)), Some(Payload::Nonce(ni)), Some(Payload::TsI(tsi)), Some(Payload::TsR(tsr))) = (
        payload(|p| matches!(p, Payload::Sa(_))),
        payload(|p| matches!(p, Payload::Nonce(_))),
        payload(|p| matches!(p, Payload::TsI(_))),
        payload(|p| matches!(p, Payload::TsR(_))),
    ) else {
        tracing::warn!("tunnel {name}: CREATE_CHILD_SA from {peer_ip} lacks SA, nonce or selectors (INVALID_SYNTAX)");
        return refuse(sa, ctx, Notify::new(notify::INVALID_SYNTAX, vec![]));
    };
    if !(16..=256).contains(&ni.len()) {
        return refuse(sa, ctx, Notify::new(notify::INVALID_SYNTAX, vec![]));
    }
    let ke = msg.payloads.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data)),
        _ => None,
    });
    let (algs, num, spi_out) = match proposal::select_esp_pfs(props, &sa.peer.esp_proposals, ke.map(|k| k.0)) {
        Ok(x) => x,
        Err(Refusal::NoProposal) => {
            tracing::warn!(
                "tunnel {name}: no ESP proposal from {peer_ip} in CREATE_CHILD_SA matches ours (peer offered {}, we accept {}) (NO_PROPOSAL_CHOSEN)",
                proposal::describe(props),
                proposal::describe_ours(&sa.peer.esp_proposals)
            );
            ctx.drops.refused_proposal += 1;
            return refuse(sa, ctx, Notify::new(notify::NO_PROPOSAL_CHOSEN, vec![]));
        }
        Err(Refusal::InvalidKe(g)) => {
            tracing::info!(tunnel = %name, "peer {peer_ip} sent KE for group {:?}, we want {} (INVALID_KE_PAYLOAD)", ke.map(|k| k.0), g.keyword());
            return refuse(sa, ctx, Notify::new(notify::INVALID_KE_PAYLOAD, u16_data(g.transform_id())));
        }
    };
    let remote_ts = narrow(tsi, &sa.peer.remote_ts);
    let local_ts = narrow(tsr, &sa.peer.local_ts);
    if remote_ts.is_empty() || local_ts.is_empty() {
        tracing::warn!(
            "tunnel {name}: traffic selectors from {peer_ip} in CREATE_CHILD_SA do not match ours (TS_UNACCEPTABLE)"
        );
        return refuse(sa, ctx, Notify::new(notify::TS_UNACCEPTABLE, vec![]));
    }
    let nr = ctx.nonce();
    let (ke_out, shared) = match (algs.dh, ke) {
        (Some(g), Some((_, data))) => {
            let kex = KeyExchange::generate(g, ctx.rng);
            let Ok(shared) = kex.agree(data) else {
                tracing::warn!("tunnel {name}: peer {peer_ip} sent an invalid KE in CREATE_CHILD_SA (INVALID_SYNTAX)");
                return refuse(sa, ctx, Notify::new(notify::INVALID_SYNTAX, vec![]));
            };
            (Some(Payload::Ke { group: g.transform_id(), data: kex.public_value() }), Some(shared))
        }
        _ => (None, None),
    };
    let spi_in = ctx.random_spi();
    let old = old_idx.and_then(|i| sa.children.get(i)).map(|c| (c.child_id, c.spi_in, c.state));
    let how = old.map_or(Install::Both, |(id, _, _)| Install::InboundReplacing(id));
    let new = NewChild { algs, spi_in, spi_out, local_ts: local_ts.clone(), remote_ts: remote_ts.clone() };
    let keying = Keying { ni, nr: &nr, shared: shared.as_deref().map(|s| &s[..]), we_initiated: false };
    let Some(ev) = child::install(sa, ctx, new, &keying, how) else {
        ctx.drops.refused_proposal += 1;
        return refuse(sa, ctx, Notify::new(notify::NO_PROPOSAL_CHOSEN, vec![]));
    };
    let new_id = sa.children.last().map_or(0, |c| c.child_id);
    if let (Some(i), Some((_, old_spi_in, state))) = (old_idx, old) {
        sa.tasks.queue.retain(|t| *t != TaskKind::ChildRekey(old_spi_in));
        if state == ChildState::Rekeying {
            // Both rekey it (2.8.1): decided by the nonces when our response arrives.
            if let Some(ActiveTask::ChildCreate(init)) = sa.tasks.outstanding.as_mut().map(|o| &mut o.task) {
                if init.old == Some(old_spi_in) {
                    init.collision = Some(Collision { ni: ni.clone(), nr: nr.clone(), child_id: new_id });
                }
            }
        } else if let Some(c) = sa.children.get_mut(i) {
            c.state = c.state.rekeyed();
        }
    }
    let mut resp = vec![Payload::Sa(proposal::esp_answer_pfs(algs, num, spi_in)), Payload::Nonce(nr)];
    resp.extend(ke_out);
    resp.push(Payload::TsI(remote_ts));
    resp.push(Payload::TsR(local_ts));
    sa.send_response(ctx, exchange::CREATE_CHILD_SA, mid, &resp);
    ctx.out.push_back(crate::api::Output::Event(ev));
    Ok(())
}
