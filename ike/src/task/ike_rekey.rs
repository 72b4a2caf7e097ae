//! Rekeying the IKE SA with CREATE_CHILD_SA (RFC 7296 1.3.2, 2.18): new SPIs, nonces
//! and key exchange, keys from the old SK_d; the CHILD SAs move to the new IKE SA, whose
//! message IDs start at 0; the rekey initiator deletes the old IKE SA. Simultaneous
//! rekeys are resolved by the nonces (2.8.2): the new IKE SA created with the lowest
//! nonce is deleted by its initiator, the other one inherits the CHILD SAs.
//!
//! The new IKE SA leaves as `Action::Spawn`; CHILD SAs that move to an IKE SA the
//! endpoint already holds leave as `Action::Adopt`.

use super::create_child::{ours_is_redundant, REDUNDANT_WAIT};
use super::{error_notify, informational, ActiveTask};
use crate::crypto::{derive_rekeyed_ike_keys, KeyExchange};
use crate::down::Failure;
use crate::message::payload::{proto, u16_data, Notify};
use crate::message::{exchange, Message, Payload};
use crate::notify;
use crate::proposal::{self, IkeAlgs};
use crate::sa::{Action, Ctx, IkeSa, IkeState, SaKeys, Transfer};
use ipsec_types::DhGroup;
use std::time::Duration;

/// How long the old IKE SA waits for the peer's DELETE after the peer rekeyed it.
const OLD_SA_WAIT: Duration = Duration::from_secs(60);
/// A refused IKE rekey is tried again after this long.
const RETRY_REFUSED: Duration = Duration::from_secs(60);
const MAX_KE_RETRIES: u8 = 2;

/// The peer's rekey of this IKE SA, answered while ours was in flight.
pub(crate) struct Collision {
    ni: Vec<u8>,
    nr: Vec<u8>,
    spis: (u64, u64),
}

/// The initiator between its rekey request and the response.
pub(crate) struct Initiator {
    spi_i: u64,
    ni: Vec<u8>,
    ke: KeyExchange,
    retries: u8,
    pub(crate) collision: Option<Collision>,
}

/// Whether a CREATE_CHILD_SA request rekeys the IKE SA (its SA payload is for IKE).
pub(crate) fn is_ike_rekey(msg: &Message) -> bool {
    msg.payloads
        .iter()
        .any(|p| matches!(p, Payload::Sa(props) if props.first().is_some_and(|p| p.protocol == proto::IKE)))
}

/// Starts rekeying the IKE SA. `false` if it is not established.
pub(crate) fn start(sa: &mut IkeSa, ctx: &mut Ctx<'_>) -> bool {
    if !sa.state.is_established() {
        return false;
    }
    let group = sa
        .state
        .keys()
        .map(|k| k.algs.dh)
        .or_else(|| sa.peer.ike_proposals.first().and_then(|p| p.dh.first().copied()))
        .unwrap_or(DhGroup::Curve25519);
    let init = Initiator {
        spi_i: ctx.random_u64(),
        ni: ctx.nonce(),
        ke: KeyExchange::generate(group, ctx.rng),
        retries: 0,
        collision: None,
    };
    tracing::info!(tunnel = %sa.name(), "rekeying IKE SA {:016x}_i {:016x}_r", sa.spi_i, sa.spi_r);
    send(sa, ctx, init);
    true
}

fn send(sa: &mut IkeSa, ctx: &mut Ctx<'_>, init: Initiator) {
    let p = [
        Payload::Sa(proposal::ike_offer(&sa.peer.ike_proposals, &init.spi_i.to_be_bytes())),
        Payload::Nonce(init.ni.clone()),
        Payload::Ke { group: init.ke.group().transform_id(), data: init.ke.public_value() },
    ];
    sa.send_request(ctx, ActiveTask::IkeRekey(Box::new(init)), exchange::CREATE_CHILD_SA, &p, false);
}

/// The new IKE SA, established, keyed and with fresh timers.
#[allow(clippy::too_many_arguments)]
fn successor(
    old: &IkeSa,
    ctx: &mut Ctx<'_>,
    algs: IkeAlgs,
    shared: &[u8],
    initiator: bool,
    spis: (u64, u64),
    ni: &[u8],
    nr: &[u8],
) -> Option<IkeSa> {
    let old_keys = old.state.keys()?;
    let old_algs = old_keys.algs;
    let keys = derive_rekeyed_ike_keys(
        old_algs.prf,
        algs.prf,
        &old_keys.keys.sk_d,
        algs.encr,
        algs.integ,
        shared,
        ni,
        nr,
        spis.0,
        spis.1,
    );
    let (seal, open) = keys.ciphers(algs.encr, algs.integ, initiator)?;
    let mut sa = IkeSa::new(old.peer.clone(), initiator, old.local, old.remote);
    (sa.spi_i, sa.spi_r) = spis;
    sa.encap = old.encap;
    // IKE fragmentation is negotiated in IKE_SA_INIT only: the rekeyed SA keeps it.
    sa.frag.negotiated = old.frag.negotiated;
    let keys = SaKeys { algs, keys, seal, open };
    sa.ni = ni.to_vec();
    sa.nr = nr.to_vec();
    sa.established_at = Some(ctx.now);
    sa.last_heard = Some(ctx.now);
    let rekey_in = ctx.jittered(sa.peer.timers.ike_rekey_time, sa.peer.timers.rekey_jitter_percent);
    let expire_at = ctx.now + sa.peer.timers.ike_life_time.max(rekey_in);
    sa.state = IkeState::established(keys, ctx.now + rekey_in, expire_at);
    tracing::info!(
        tunnel = %sa.name(),
        "IKE SA rekeyed: {:016x}_i {:016x}_r -> {:016x}_i {:016x}_r ({})",
        old.spi_i,
        old.spi_r,
        sa.spi_i,
        sa.spi_r,
        algs.keywords()
    );
    Some(sa)
}

/// The old IKE SA was replaced by the one with SPIs `to` (ours lost or failed): its
/// CHILD SAs move there; it waits for the peer's DELETE.
fn yield_to(sa: &mut IkeSa, ctx: &mut Ctx<'_>, to: (u64, u64)) {
    ctx.actions.push(Action::Adopt { tunnel: sa.peer.name.clone(), to, transfer: Transfer::take_from(sa) });
    sa.become_rekeyed(Some(ctx.now + OLD_SA_WAIT));
}

/// The peer deleted this IKE SA. If it did so after winning a rekey collision with us,
/// the CHILD SAs move to its new IKE SA first.
pub(crate) fn old_sa_deleted(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    if matches!(sa.state, IkeState::Established { adoption_due: Some(_), .. }) {
        // The redundant IKE SA of a collision we won, deleted by its creator.
        sa.become_rekeyed(None);
        return;
    }
    let to = match sa.tasks.outstanding.as_ref().map(|o| &o.task) {
        Some(ActiveTask::IkeRekey(init)) => match &init.collision {
            Some(c) => c.spis,
            None => return,
        },
        _ => return,
    };
    tracing::info!(tunnel = %sa.name(), "IKE SA rekey collision: the peer's rekey won and deleted the old IKE SA");
    yield_to(sa, ctx, to);
}

/// Our rekey did not happen; try again after `retry` unless the peer's rekey won.
fn abandon(sa: &mut IkeSa, ctx: &mut Ctx<'_>, init: Initiator, retry: Duration) {
    match init.collision {
        Some(c) => yield_to(sa, ctx, c.spis),
        None => {
            if let IkeState::Established { rekey_at, .. } = &mut sa.state {
                *rekey_at = Some(ctx.now + retry);
            }
        }
    }
}

/// The initiator handles the response to its IKE SA rekey.
pub(crate) fn process_response(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    mut init: Initiator,
    msg: &Message,
) -> Result<(), Failure> {
    let (name, peer_ip) = (sa.peer.name.clone(), sa.remote.ip());
    if let Some(n) = error_notify(&msg.payloads) {
        match n.kind {
            notify::INVALID_KE_PAYLOAD if init.collision.is_none() => {
                let wanted = n.dh_group();
                let ours = |g: &DhGroup| sa.peer.ike_proposals.iter().any(|p| p.dh.contains(g));
                match wanted.and_then(DhGroup::from_iana).filter(ours) {
                    Some(g) if g != init.ke.group() && init.retries < MAX_KE_RETRIES => {
                        tracing::info!(tunnel = %name, "peer {peer_ip} wants group {} for the IKE rekey; retrying", g.keyword());
                        init.ke = KeyExchange::generate(g, ctx.rng);
                        init.retries += 1;
                        send(sa, ctx, init);
                    }
                    _ => abandon(sa, ctx, init, RETRY_REFUSED),
                }
            }
            notify::TEMPORARY_FAILURE => {
                let retry = ctx.random_between(Duration::from_secs(5), Duration::from_secs(15));
                tracing::info!(tunnel = %name, "peer {peer_ip} answered TEMPORARY_FAILURE to the IKE rekey; retrying in {}s", retry.as_secs());
                abandon(sa, ctx, init, retry);
            }
            k => {
                tracing::warn!("tunnel {name}: peer {peer_ip} refused the IKE SA rekey with {}", notify::name(k));
                abandon(sa, ctx, init, RETRY_REFUSED);
            }
        }
        return Ok(());
    }
    let props = msg.payloads.iter().find_map(|p| if let Payload::Sa(s) = p { Some(s) } else { None });
    let nr = msg.payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n) } else { None });
    let ke = msg.payloads.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data)),
        _ => None,
    });
    let (Some(props), Some(nr), Some((group, ke))) = (props, nr, ke) else {
        tracing::warn!("tunnel {name}: peer {peer_ip} sent an IKE rekey response without SA, nonce or KE");
        abandon(sa, ctx, init, RETRY_REFUSED);
        return Ok(());
    };
    let algs = proposal::accept_ike_answer(props, &sa.peer.ike_proposals);
    let spi_r = props.first().and_then(proposal::ike_spi);
    let (Some(algs), Some(spi_r)) = (algs, spi_r) else {
        tracing::warn!("tunnel {name}: peer {peer_ip} answered the IKE rekey with a proposal we did not offer");
        abandon(sa, ctx, init, RETRY_REFUSED);
        return Ok(());
    };
    let shared = (group == algs.dh.transform_id() && algs.dh == init.ke.group() && (16..=256).contains(&nr.len()))
        .then(|| init.ke.agree(ke).ok())
        .flatten();
    let new = shared.and_then(|s| successor(sa, ctx, algs, &s, true, (init.spi_i, spi_r), &init.ni, nr));
    let Some(mut new) = new else {
        tracing::warn!("tunnel {name}: peer {peer_ip} sent an inconsistent IKE rekey response (KE or nonce)");
        abandon(sa, ctx, init, RETRY_REFUSED);
        return Ok(());
    };
    if let Some(c) = init.collision.filter(|c| ours_is_redundant(&init.ni, nr, &c.ni, &c.nr)) {
        tracing::info!(tunnel = %name, "IKE SA rekey collision: ours has the lowest nonce; deleting it, the peer's stays");
        new.become_deleting(true);
        informational::send_ike_delete(&mut new, ctx, false);
        ctx.actions.push(Action::Spawn(Box::new(new)));
        yield_to(sa, ctx, c.spis);
        return Ok(());
    }
    Transfer::take_from(sa).give_to(&mut new);
    ctx.actions.push(Action::Spawn(Box::new(new)));
    sa.become_deleting(true);
    sa.tasks.queue.clear();
    informational::send_ike_delete(sa, ctx, false);
    Ok(())
}

/// The responder handles the peer's rekey of this IKE SA.
pub(crate) fn process_request(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Result<(), Failure> {
    let (name, peer_ip, mid) = (sa.peer.name.clone(), sa.remote.ip(), msg.header.message_id);
    let refuse = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, kind: u16, data: Vec<u8>| {
        sa.send_response(ctx, exchange::CREATE_CHILD_SA, mid, &[Payload::Notify(Notify::new(kind, data))]);
        Ok(())
    };
    let ours_in_flight = sa.tasks.outstanding.as_ref().map(|o| &o.task);
    if matches!(ours_in_flight, Some(ActiveTask::ChildCreate(_) | ActiveTask::ChildDelete(_))) {
        tracing::debug!(tunnel = %name, "IKE rekey while we create, rekey or delete a CHILD SA: TEMPORARY_FAILURE");
        return refuse(sa, ctx, notify::TEMPORARY_FAILURE, vec![]);
    }
    if ctx.peer_sas >= ctx.limits.ike_sa_per_peer_max {
        // A rekey adds an IKE SA until the old one is deleted: a peer that rekeys without
        // deleting would pile them up.
        ctx.drops.half_open_cap += 1;
        crate::log::warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} rekeys the IKE SA but holds {} IKE SAs already (ike_sa_per_peer_max); answering NO_ADDITIONAL_SAS",
            ctx.peer_sas
        );
        return refuse(sa, ctx, notify::NO_ADDITIONAL_SAS, vec![]);
    }
    let props = msg.payloads.iter().find_map(|p| if let Payload::Sa(s) = p { Some(s) } else { None });
    let ni = msg.payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n) } else { None });
    let ke = msg.payloads.iter().find_map(|p| match p {
        Payload::Ke { group, data } => Some((*group, data)),
        _ => None,
    });
    let (Some(props), Some(ni), Some((group, ke))) = (props, ni, ke) else {
        tracing::warn!("tunnel {name}: IKE rekey from {peer_ip} lacks SA, nonce or KE (INVALID_SYNTAX)");
        return refuse(sa, ctx, notify::INVALID_SYNTAX, vec![]);
    };
    let Some((algs, num)) = proposal::select_ike(props, &sa.peer.ike_proposals, Some(group)) else {
        tracing::warn!(
            "tunnel {name}: no IKE proposal from {peer_ip} for the rekey matches ours (peer offered {}, we accept {}) (NO_PROPOSAL_CHOSEN)",
            proposal::describe(props),
            proposal::describe_ours(&sa.peer.ike_proposals)
        );
        ctx.drops.refused_proposal += 1;
        return refuse(sa, ctx, notify::NO_PROPOSAL_CHOSEN, vec![]);
    };
    if group != algs.dh.transform_id() {
        return refuse(sa, ctx, notify::INVALID_KE_PAYLOAD, u16_data(algs.dh.transform_id()));
    }
    let spi_i = props.iter().find(|p| p.num == num && p.protocol == proto::IKE).and_then(proposal::ike_spi);
    let Some(spi_i) = spi_i.filter(|_| (16..=256).contains(&ni.len())) else {
        return refuse(sa, ctx, notify::INVALID_SYNTAX, vec![]);
    };
    let kex = KeyExchange::generate(algs.dh, ctx.rng);
    let Ok(shared) = kex.agree(ke) else {
        tracing::warn!("tunnel {name}: peer {peer_ip} sent an invalid KE in the IKE rekey (INVALID_SYNTAX)");
        return refuse(sa, ctx, notify::INVALID_SYNTAX, vec![]);
    };
    let nr = ctx.nonce();
    let spi_r = ctx.random_u64();
    let Some(mut new) = successor(sa, ctx, algs, &shared, false, (spi_i, spi_r), ni, &nr) else {
        ctx.drops.refused_proposal += 1;
        return refuse(sa, ctx, notify::NO_PROPOSAL_CHOSEN, vec![]);
    };
    let resp = [
        Payload::Sa(proposal::ike_answer(algs, num, &spi_r.to_be_bytes())),
        Payload::Nonce(nr.clone()),
        Payload::Ke { group: algs.dh.transform_id(), data: kex.public_value() },
    ];
    sa.send_response(ctx, exchange::CREATE_CHILD_SA, mid, &resp);
    if let Some(ActiveTask::IkeRekey(init)) = sa.tasks.outstanding.as_mut().map(|o| &mut o.task) {
        // Both rekey (2.8.2): decided by the nonces when our response arrives.
        init.collision = Some(Collision { ni: ni.clone(), nr, spis: (spi_i, spi_r) });
        if let IkeState::Established { adoption_due, .. } = &mut new.state {
            *adoption_due = Some(ctx.now + REDUNDANT_WAIT);
        }
        ctx.actions.push(Action::Spawn(Box::new(new)));
        return Ok(());
    }
    Transfer::take_from(sa).give_to(&mut new);
    ctx.actions.push(Action::Spawn(Box::new(new)));
    sa.tasks.queue.clear();
    sa.become_rekeyed(Some(ctx.now + OLD_SA_WAIT));
    Ok(())
}
