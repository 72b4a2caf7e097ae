//! IKE_AUTH (RFC 7296 section 1.2): identities and PSK authentication (2.15), and the
//! first CHILD SA with traffic selector narrowing (2.9).

use super::{error_notify, notifies};
use crate::api::{EncapReason, Event, Output};
use crate::crypto::ct_eq;
use crate::down::{DownReason, Failure};
use crate::log::warn_unauth;
use crate::message::payload::{IdPayload, Notify};
use crate::message::{exchange, Message, Payload};
use crate::notify;
use crate::proposal;
use crate::sa::{child, Ctx, IkeSa, IkeState};
use crate::task::ActiveTask;
use crate::ts::{self, accept as accept_ts, list as ts_list, narrow};
use zeroize::Zeroizing;

/// AUTH method: Shared Key Message Integrity Code.
const AUTH_PSK: u8 = 2;

/// The initiator between its IKE_AUTH request and the response.
pub(crate) struct Initiator {
    spi_in: u32,
    /// The selectors we proposed (the answer must lie within them).
    ts: ts::Proposal,
}

/// Our AUTH value for the ID payload body `id_body` (we are the signer).
fn our_auth(sa: &IkeSa, id_body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let IkeState::Authenticating { keys, signed, .. } = &sa.state else { return None };
    Some(if sa.initiator {
        signed.by_initiator.auth(&sa.nr, &keys.keys.sk_pi, id_body)
    } else {
        signed.by_responder.auth(&sa.ni, &keys.keys.sk_pr, id_body)
    })
}

/// The AUTH value the peer must have sent for its ID payload body.
fn peer_auth(sa: &IkeSa, id_body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let IkeState::Authenticating { keys, signed, .. } = &sa.state else { return None };
    Some(if sa.initiator {
        signed.by_responder.auth(&sa.ni, &keys.keys.sk_pr, id_body)
    } else {
        signed.by_initiator.auth(&sa.nr, &keys.keys.sk_pi, id_body)
    })
}

/// Sends the IKE_AUTH request with IDi, AUTH and the CHILD SA proposal.
pub(crate) fn start(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    let spi_in = ctx.random_spi();
    let idi = IdPayload::from_identity(&sa.peer.local_id);
    let Some(auth) = our_auth(sa, &idi.body()) else { return };
    let mut p = vec![Payload::IdI(idi)];
    if sa.send_initial_contact {
        p.push(Payload::Notify(Notify::new(notify::INITIAL_CONTACT, vec![])));
    }
    let ts = ts::proposal(&sa.peer, None);
    p.extend([
        Payload::Auth { method: AUTH_PSK, data: auth.to_vec() },
        Payload::Sa(proposal::esp_offer(&sa.peer.esp_proposals, spi_in, false)),
        Payload::TsI(ts.local.clone()),
        Payload::TsR(ts.remote.clone()),
    ]);
    sa.send_request(ctx, ActiveTask::IkeAuth(Initiator { spi_in, ts }), exchange::IKE_AUTH, &p, false);
}

fn established(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    // Both AUTH values are computed: the IKE_SA_INIT messages (`signed`) are no longer
    // needed.
    let keys = match std::mem::replace(&mut sa.state, IkeState::Connecting) {
        IkeState::Authenticating { keys, .. } => keys,
        other => {
            sa.state = other;
            return;
        }
    };
    sa.established_at = Some(ctx.now);
    sa.last_heard = Some(ctx.now);
    let rekey_in = ctx.jittered(sa.peer.timers.ike_rekey_time, sa.peer.timers.rekey_jitter_percent);
    let expire_at = ctx.now + sa.peer.timers.ike_life_time.max(rekey_in);
    sa.state = IkeState::established(keys, ctx.now + rekey_in, expire_at);
    if let Some(a) = sa.state.keys().map(|k| k.algs) {
        tracing::info!(
            tunnel = %sa.name(),
            "IKE SA established with {} ({}), {}, SPIs {:016x}_i {:016x}_r{}",
            sa.remote,
            sa.peer.remote_id,
            a.keywords(),
            sa.spi_i,
            sa.spi_r,
            match sa.encap {
                Some(EncapReason::VpngwPeer) => ", ESP in UDP (peer is vpngw)",
                Some(_) => ", NAT-T (UDP-encap)",
                None => "",
            }
        );
    }
}

/// RFC 7296 2.21.2: the initiator reports a failed authentication of the responder
/// in a separate INFORMATIONAL request (sent once; the IKE SA is dropped right after).
fn notify_auth_failed(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    let n = Payload::Notify(Notify::new(notify::AUTHENTICATION_FAILED, vec![]));
    sa.send_request(ctx, ActiveTask::IkeDelete, exchange::INFORMATIONAL, &[n], true);
}

/// The initiator handles the IKE_AUTH response.
pub(crate) fn process_response(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    init: Initiator,
    msg: &Message,
) -> Result<(), Failure> {
    let (name, peer_ip) = (sa.peer.name.clone(), sa.remote.ip());
    let child_err = notifies(&msg.payloads).find(|n| notify::is_child_error(n.kind)).map(|n| n.kind);
    if let Some(n) = error_notify(&msg.payloads).filter(|n| !notify::is_child_error(n.kind)) {
        if n.kind == notify::AUTHENTICATION_FAILED {
            tracing::error!("tunnel {name}: peer {peer_ip} rejected our authentication (AUTHENTICATION_FAILED); check the PSK and both identities (we are {})", sa.peer.local_id);
        } else {
            warn_unauth!(ctx, "tunnel {name}: peer {peer_ip} refused IKE_AUTH with {}", notify::name(n.kind));
        }
        return Err(Failure::Negotiation(DownReason::AuthRefused(n.kind)));
    }
    let idr = msg.payloads.iter().find_map(|p| if let Payload::IdR(i) = p { Some(i) } else { None });
    let auth = msg.payloads.iter().find_map(|p| match p {
        Payload::Auth { method, data } => Some((*method, data)),
        _ => None,
    });
    let (Some(idr), Some((method, auth))) = (idr, auth) else {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} sent an IKE_AUTH response without IDr or AUTH (INVALID_SYNTAX)"
        );
        return Err(Failure::Transient(DownReason::MalformedAuthResponse));
    };
    if idr.identity().as_ref() != Some(&sa.peer.remote_id) {
        tracing::error!(
            "tunnel {name}: peer {peer_ip} identified as {} but we expect {} (AUTHENTICATION_FAILED)",
            crate::log::clip(&idr.identity().map_or_else(|| "<unsupported ID>".to_string(), |i| i.to_string())),
            sa.peer.remote_id
        );
        notify_auth_failed(sa, ctx);
        return Err(Failure::Negotiation(DownReason::IdentityMismatch));
    }
    let ok = method == AUTH_PSK && peer_auth(sa, &idr.body()).is_some_and(|e| ct_eq(&e, auth));
    if !ok {
        tracing::error!(
            "tunnel {name}: peer {peer_ip} failed PSK authentication (AUTHENTICATION_FAILED); check the PSK"
        );
        notify_auth_failed(sa, ctx);
        return Err(Failure::Negotiation(DownReason::PeerAuthFailed));
    }
    established(sa, ctx);
    ctx.out.push_back(Output::Event(Event::IkeUp { peer: name.clone() }));
    // One CHILD SA per subnet pair: the first travelled here, the others follow by
    // CREATE_CHILD_SA (whatever became of the first).
    if sa.peer.child_sa_per_subnet_pair {
        for i in 1..ts::pairs(&sa.peer).len() {
            sa.tasks.queue_once(crate::sa::task_manager::TaskKind::ChildCreate(Some(i)));
        }
    }
    if let Some(k) = child_err {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} refused our CHILD SA ({}); IKE SA kept without tunnel. We offered {} for {} === {}",
            notify::name(k),
            proposal::describe_ours(&sa.peer.esp_proposals),
            ts_list(&init.ts.local),
            ts_list(&init.ts.remote)
        );
        return Ok(());
    }
    let props = msg.payloads.iter().find_map(|p| if let Payload::Sa(s) = p { Some(s) } else { None });
    let tsi = msg.payloads.iter().find_map(|p| if let Payload::TsI(t) = p { Some(t) } else { None });
    let tsr = msg.payloads.iter().find_map(|p| if let Payload::TsR(t) = p { Some(t) } else { None });
    let (Some(props), Some(tsi), Some(tsr)) = (props, tsi, tsr) else {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} established the IKE SA but sent no CHILD SA; no tunnel installed"
        );
        return Ok(());
    };
    let Some((algs, spi_out)) = proposal::accept_esp_answer(props, &sa.peer.esp_proposals) else {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} chose an ESP proposal we did not offer ({}); no tunnel installed",
            proposal::describe(props)
        );
        return Ok(());
    };
    let (Some(local_ts), Some(remote_ts)) = (accept_ts(tsi, &init.ts.local), accept_ts(tsr, &init.ts.remote)) else {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} answered traffic selectors {} === {} outside what we proposed (TS_UNACCEPTABLE); no tunnel installed",
            ts_list(tsi),
            ts_list(tsr)
        );
        return Ok(());
    };
    let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
    let keying = child::Keying { ni: &ni, nr: &nr, shared: None, we_initiated: true };
    let new = child::NewChild { algs, spi_in: init.spi_in, spi_out, local_ts, remote_ts };
    if let Some(ev) = child::install(sa, ctx, new, &keying, child::Install::Both) {
        ctx.out.push_back(Output::Event(ev));
    }
    Ok(())
}

/// The responder handles IKE_AUTH: authenticates the peer, answers with IDr/AUTH and,
/// if acceptable, the CHILD SA (installed before the response goes out).
pub(crate) fn process_request(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Result<(), Failure> {
    let (name, peer_ip, mid) = (sa.peer.name.clone(), sa.remote.ip(), msg.header.message_id);
    let idi = msg.payloads.iter().find_map(|p| if let Payload::IdI(i) = p { Some(i) } else { None });
    let auth = msg.payloads.iter().find_map(|p| match p {
        Payload::Auth { method, data } => Some((*method, data)),
        _ => None,
    });
    let (Some(idi), Some((method, auth))) = (idi, auth) else {
        warn_unauth!(
            ctx,
            "tunnel {name}: IKE_AUTH from {peer_ip} lacks IDi or AUTH (we do not support EAP) (INVALID_SYNTAX)"
        );
        let n = Payload::Notify(Notify::new(notify::INVALID_SYNTAX, vec![]));
        sa.send_response(ctx, exchange::IKE_AUTH, mid, &[n]);
        return Err(Failure::Transient(DownReason::MalformedAuthRequest));
    };
    let refuse_auth = |sa: &mut IkeSa, ctx: &mut Ctx<'_>| {
        let n = Payload::Notify(Notify::new(notify::AUTHENTICATION_FAILED, vec![]));
        sa.send_response(ctx, exchange::IKE_AUTH, mid, &[n]);
        Err(Failure::Negotiation(DownReason::PeerAuthFailed))
    };
    if idi.identity().as_ref() != Some(&sa.peer.remote_id) {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} identified as {} but we expect {} (AUTHENTICATION_FAILED)",
            idi.identity().map_or_else(|| "<unsupported ID>".to_string(), |i| i.to_string()),
            sa.peer.remote_id
        );
        return refuse_auth(sa, ctx);
    }
    let ok = method == AUTH_PSK && peer_auth(sa, &idi.body()).is_some_and(|e| ct_eq(&e, auth));
    if !ok {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} failed PSK authentication (AUTHENTICATION_FAILED); check the PSK"
        );
        return refuse_auth(sa, ctx);
    }
    let idr = IdPayload::from_identity(&sa.peer.local_id);
    let Some(our) = our_auth(sa, &idr.body()) else { return Err(Failure::Transient(DownReason::NoKeys)) };
    let mut resp = vec![Payload::IdR(idr), Payload::Auth { method: AUTH_PSK, data: our.to_vec() }];
    established(sa, ctx);
    sa.initial_contact = notifies(&msg.payloads).any(|n| n.kind == notify::INITIAL_CONTACT);
    let child_up = create_child(sa, ctx, msg, &mut resp);
    sa.send_response(ctx, exchange::IKE_AUTH, mid, &resp);
    ctx.out.push_back(Output::Event(Event::IkeUp { peer: name }));
    if let Some(ev) = child_up {
        ctx.out.push_back(Output::Event(ev));
    }
    Ok(())
}

/// The responder's half of the IKE_AUTH CHILD SA; appends the answer payloads.
fn create_child(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message, resp: &mut Vec<Payload>) -> Option<Event> {
    let (name, peer_ip) = (sa.peer.name.clone(), sa.remote.ip());
    let props = msg.payloads.iter().find_map(|p| if let Payload::Sa(s) = p { Some(s) } else { None });
    let tsi = msg.payloads.iter().find_map(|p| if let Payload::TsI(t) = p { Some(t) } else { None });
    let tsr = msg.payloads.iter().find_map(|p| if let Payload::TsR(t) = p { Some(t) } else { None });
    let (Some(props), Some(tsi), Some(tsr)) = (props, tsi, tsr) else {
        tracing::debug!(tunnel = %name, "IKE_AUTH without a CHILD SA request");
        return None;
    };
    let Some((algs, num, spi_out)) = proposal::select_esp(props, &sa.peer.esp_proposals) else {
        warn_unauth!(
            ctx,
            "tunnel {name}: no ESP proposal from {peer_ip} matches ours (peer offered {}, we accept {}) (NO_PROPOSAL_CHOSEN); IKE SA kept without tunnel",
            proposal::describe(props),
            proposal::describe_ours(&sa.peer.esp_proposals)
        );
        ctx.drops.refused_proposal += 1;
        resp.push(Payload::Notify(Notify::new(notify::NO_PROPOSAL_CHOSEN, vec![])));
        return None;
    };
    let remote_ts = narrow(tsi, &sa.peer.remote_ts);
    let local_ts = narrow(tsr, &sa.peer.local_ts);
    if remote_ts.is_empty() || local_ts.is_empty() {
        warn_unauth!(
            ctx,
            "tunnel {name}: traffic selectors from {peer_ip} ({} === {}) do not match ours ({} === {}) (TS_UNACCEPTABLE); IKE SA kept without tunnel",
            ts_list(tsi),
            ts_list(tsr),
            ts_list(&sa.peer.remote_ts),
            ts_list(&sa.peer.local_ts)
        );
        resp.push(Payload::Notify(Notify::new(notify::TS_UNACCEPTABLE, vec![])));
        return None;
    }
    let spi_in = ctx.random_spi();
    let (ni, nr) = (sa.ni.clone(), sa.nr.clone());
    let keying = child::Keying { ni: &ni, nr: &nr, shared: None, we_initiated: false };
    let new = child::NewChild { algs, spi_in, spi_out, local_ts: local_ts.clone(), remote_ts: remote_ts.clone() };
    let ev = child::install(sa, ctx, new, &keying, child::Install::Both)?;
    resp.push(Payload::Sa(proposal::esp_answer(algs, num, spi_in)));
    resp.push(Payload::TsI(remote_ts));
    resp.push(Payload::TsR(local_ts));
    Some(ev)
}
