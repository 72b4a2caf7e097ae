//! IKE_SA_INIT (RFC 7296 section 1.2): SA, KE, nonces and NAT detection; the
//! initiator's INVALID_KE_PAYLOAD and COOKIE retries (2.6, 1.3); the vpngw Vendor ID,
//! with which two vpngw peers agree on ESP in UDP without a NAT.

use super::{error_notify, natd, notifies};
use crate::api::{EncapReason, Output, PeerConfig, Transmit, VPNGW_VENDOR_ID};
use crate::crypto::{derive_ike_keys, digest, KeyExchange, SignedOctets};
use crate::down::{DownReason, Failure};
use crate::log::warn_unauth;
use crate::message::payload::{u16_data, Notify};
use crate::message::{emit_plain, exchange, flags, Header, Message, Payload};
use crate::notify;
use crate::proposal::{self, IkeAlgs};
use crate::sa::{Ctx, IkeSa, IkeState, SaKeys, Signed, HALF_OPEN_TIMEOUT};
use crate::task::ActiveTask;
use ipsec_types::{DhGroup, Timestamp};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// How often we follow INVALID_KE_PAYLOAD / COOKIE before giving up.
const MAX_INIT_RETRIES: u8 = 3;

/// How long an unprotected error notify in answer to our IKE_SA_INIT waits for a valid
/// response before we act on it (RFC 7296 2.21.1: anyone can send one).
pub(crate) const ERROR_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The initiator between its IKE_SA_INIT request and the response.
pub(crate) struct Initiator {
    ke: KeyExchange,
    cookie: Option<Vec<u8>>,
    retries: u8,
    /// An error notify received in answer (kind, first bytes of data), acted on at the
    /// time given unless a valid response comes first.
    deferred_error: Option<(Notify, Timestamp)>,
}

/// Starts a new IKE SA as initiator and sends IKE_SA_INIT.
pub(crate) fn start(peer: PeerConfig, ctx: &mut Ctx<'_>) -> IkeSa {
    let local = SocketAddr::new(peer.local_addr, ctx.ike_port);
    let remote = SocketAddr::new(peer.remote_addr, ctx.ike_port);
    let group = peer.ike_proposals.first().and_then(|p| p.dh.first().copied()).unwrap_or(DhGroup::Curve25519);
    let mut sa = IkeSa::new(peer, true, local, remote);
    sa.spi_i = ctx.random_u64();
    sa.ni = ctx.nonce();
    let init = Initiator { ke: KeyExchange::generate(group, ctx.rng), cookie: None, retries: 0, deferred_error: None };
    tracing::info!(tunnel = %sa.name(), peer = %remote, "initiating IKE SA");
    send_request(&mut sa, ctx, init);
    sa
}

fn send_request(sa: &mut IkeSa, ctx: &mut Ctx<'_>, init: Initiator) {
    let mut p = Vec::new();
    if let Some(c) = &init.cookie {
        p.push(Payload::Notify(Notify::new(notify::COOKIE, c.clone())));
    }
    p.push(Payload::Sa(proposal::ike_offer(&sa.peer.ike_proposals, &[])));
    p.push(Payload::Ke { group: init.ke.group().transform_id(), data: init.ke.public_value() });
    p.push(Payload::Nonce(sa.ni.clone()));
    p.extend(natd::payloads(sa.spi_i, 0, sa.local, sa.remote, sa.peer.force_encap, ctx.rng));
    if sa.peer.fragment_size.is_some() {
        p.push(Payload::Notify(Notify::new(notify::IKEV2_FRAGMENTATION_SUPPORTED, vec![])));
    }
    if sa.peer.announce_vpngw {
        p.push(Payload::Vendor(VPNGW_VENDOR_ID.to_vec()));
    }
    sa.tasks.next_mid = 0;
    sa.tasks.outstanding = None;
    let mut init = init;
    init.deferred_error = None;
    sa.init_request = sa.send_request(ctx, ActiveTask::IkeInit(init), exchange::IKE_SA_INIT, &p, false);
}

fn our_groups(peer: &PeerConfig) -> impl Iterator<Item = DhGroup> + '_ {
    peer.ike_proposals.iter().flat_map(|p| p.dh.iter().copied())
}

/// The initiator handles the IKE_SA_INIT response, then starts IKE_AUTH.
pub(crate) fn process_response(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    mut init: Initiator,
    msg: &Message,
    data: &[u8],
) -> Result<(), Failure> {
    let (name, peer_ip) = (sa.peer.name.clone(), sa.remote.ip());
    if let Some(c) = notifies(&msg.payloads).find(|n| n.kind == notify::COOKIE) {
        if init.retries >= MAX_INIT_RETRIES || c.data.is_empty() || c.data.len() > 64 {
            tracing::warn!("tunnel {name}: peer {peer_ip} keeps asking for a COOKIE; giving up");
            return Err(Failure::Transient(DownReason::CookieLoop));
        }
        tracing::debug!(tunnel = %name, "peer asks for a COOKIE; resending IKE_SA_INIT with it");
        init.cookie = Some(c.data.clone());
        init.retries += 1;
        send_request(sa, ctx, init);
        return Ok(());
    }
    if let Some(n) = error_notify(&msg.payloads) {
        return act_on_error(sa, ctx, init, n);
    }
    let find = |f: fn(&Payload) -> bool| msg.payloads.iter().find(|p| f(p));
    let (Some(Payload::Sa(props)), Some(Payload::Ke { group, data: ke }), Some(Payload::Nonce(nr))) = (
        find(|p| matches!(p, Payload::Sa(_))),
        find(|p| matches!(p, Payload::Ke { .. })),
        find(|p| matches!(p, Payload::Nonce(_))),
    ) else {
        tracing::warn!(
            "tunnel {name}: peer {peer_ip} sent an IKE_SA_INIT response without SA, KE or nonce (INVALID_SYNTAX)"
        );
        return Err(Failure::Transient(DownReason::MalformedInitResponse));
    };
    let Some(algs) = proposal::accept_ike_answer(props, &sa.peer.ike_proposals) else {
        tracing::warn!(
            "tunnel {name}: peer {peer_ip} chose an IKE proposal we did not offer ({}) (NO_PROPOSAL_CHOSEN)",
            proposal::describe(props)
        );
        return Err(Failure::Negotiation(DownReason::UnofferedProposal));
    };
    if *group != algs.dh.transform_id() || algs.dh != init.ke.group() || !(16..=256).contains(&nr.len()) {
        tracing::warn!("tunnel {name}: peer {peer_ip} sent an inconsistent IKE_SA_INIT response (KE group or nonce) (INVALID_SYNTAX)");
        return Err(Failure::Transient(DownReason::InconsistentInitResponse));
    }
    if msg.header.spi_r == 0 {
        return Err(Failure::Transient(DownReason::NoResponderSpi));
    }
    let shared = init.ke.agree(ke).map_err(|_| {
        tracing::warn!("tunnel {name}: peer {peer_ip} sent an invalid key exchange value (INVALID_SYNTAX)");
        Failure::Transient(DownReason::InvalidKe)
    })?;
    sa.spi_r = msg.header.spi_r;
    sa.nr = nr.clone();
    let len = usize::try_from(msg.header.length).unwrap_or(usize::MAX);
    let request = std::mem::take(&mut sa.init_request);
    let signed = Box::new(Signed {
        by_initiator: SignedOctets::new(algs.prf, &sa.peer.psk, &request),
        by_responder: SignedOctets::new(algs.prf, &sa.peer.psk, data.get(..len).unwrap_or(data)),
    });
    let keys = sa_keys(sa, algs, &shared)?;
    sa.frag.negotiated = sa.peer.fragment_size.is_some() && fragmentation_supported(msg);
    let detected = natd::detect(&msg.payloads, sa.spi_i, sa.spi_r, sa.local, sa.remote);
    sa.encap = encap_reason(&sa.peer, detected, msg);
    tracing::debug!(tunnel = %name, ?detected, forced = sa.peer.force_encap, encap = ?sa.encap, "NAT detection");
    if sa.encap.is_some() {
        sa.local.set_port(ctx.natt_port);
        sa.remote.set_port(ctx.natt_port);
    }
    sa.state = IkeState::Authenticating { keys, signed, deadline: None };
    super::ike_auth::start(sa, ctx);
    Ok(())
}

/// Acts on an error notify answering our IKE_SA_INIT: INVALID_KE_PAYLOAD retries with the
/// group asked for, anything else ends the attempt.
fn act_on_error(sa: &mut IkeSa, ctx: &mut Ctx<'_>, mut init: Initiator, n: &Notify) -> Result<(), Failure> {
    let (name, peer_ip) = (sa.peer.name.clone(), sa.remote.ip());
    match n.kind {
        notify::INVALID_KE_PAYLOAD => {
            let wanted = n.dh_group();
            let group = wanted.and_then(DhGroup::from_iana).filter(|g| our_groups(&sa.peer).any(|o| o == *g));
            match group {
                Some(g) if g != init.ke.group() && init.retries < MAX_INIT_RETRIES => {
                    tracing::warn!(
                        "tunnel {name}: peer {peer_ip} wants key exchange group {} instead of {} (INVALID_KE_PAYLOAD); retrying with it",
                        g.keyword(),
                        init.ke.group().keyword()
                    );
                    init.ke = KeyExchange::generate(g, ctx.rng);
                    init.retries += 1;
                    send_request(sa, ctx, init);
                    Ok(())
                }
                _ => {
                    tracing::warn!(
                        "tunnel {name}: peer {peer_ip} wants key exchange group {wanted:?} which we do not offer (INVALID_KE_PAYLOAD); we offered {}",
                        proposal::describe_ours(&sa.peer.ike_proposals)
                    );
                    Err(Failure::Negotiation(DownReason::KeGroupRefused))
                }
            }
        }
        notify::NO_PROPOSAL_CHOSEN => {
            tracing::warn!(
                "tunnel {name}: peer {peer_ip} rejected our IKE proposals (NO_PROPOSAL_CHOSEN); we offered {}",
                proposal::describe_ours(&sa.peer.ike_proposals)
            );
            Err(Failure::Negotiation(DownReason::ProposalsRejected))
        }
        k => {
            tracing::warn!("tunnel {name}: peer {peer_ip} refused IKE_SA_INIT with {}", notify::name(k));
            Err(Failure::Negotiation(DownReason::InitRefused(k)))
        }
    }
}

/// Screens a response to our IKE_SA_INIT before it may end or change the attempt: it is
/// unauthenticated (RFC 7296 2.21.1). An error notify (other than COOKIE and
/// INVALID_KE_PAYLOAD, which only make us retry) is noted and acted on only if no valid
/// response arrives within [`ERROR_WAIT`]; a response that lacks SA, KE or nonce, chose
/// something we did not offer or is otherwise inconsistent is dropped, and we keep
/// waiting (and retransmitting). Returns `true` if `msg` must not be processed now.
pub(crate) fn screen_response(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> bool {
    let Some(o) = sa.tasks.outstanding.as_mut() else { return false };
    let ActiveTask::IkeInit(init) = &mut o.task else { return false };
    if notifies(&msg.payloads).any(|n| n.kind == notify::COOKIE) {
        return false;
    }
    if let Some(n) = error_notify(&msg.payloads) {
        if n.kind == notify::INVALID_KE_PAYLOAD {
            return false;
        }
        if init.deferred_error.is_none() {
            let at = ctx.now + ERROR_WAIT;
            tracing::debug!(tunnel = %sa.peer.name, "unprotected {} in answer to IKE_SA_INIT; waiting {}s for a valid response", notify::name(n.kind), ERROR_WAIT.as_secs());
            init.deferred_error = Some((Notify::new(n.kind, n.data.iter().take(8).copied().collect()), at));
            // No retransmission during the wait: the peer would only answer again.
            o.next_at = at;
        }
        return true;
    }
    let find = |f: fn(&Payload) -> bool| msg.payloads.iter().find(|p| f(p));
    let valid = match (
        find(|p| matches!(p, Payload::Sa(_))),
        find(|p| matches!(p, Payload::Ke { .. })),
        find(|p| matches!(p, Payload::Nonce(_))),
    ) {
        (Some(Payload::Sa(props)), Some(Payload::Ke { group, .. }), Some(Payload::Nonce(nr))) => {
            proposal::accept_ike_answer(props, &sa.peer.ike_proposals).is_some_and(|algs| {
                *group == algs.dh.transform_id() && algs.dh == init.ke.group() && (16..=256).contains(&nr.len())
            }) && msg.header.spi_r != 0
        }
        _ => false,
    };
    if !valid {
        ctx.drops.malformed += 1;
        let (name, peer) = (&sa.peer.name, sa.remote.ip());
        warn_unauth!(ctx, "tunnel {name}: an IKE_SA_INIT response from {peer} lacks SA, KE or nonce, or chose what we did not offer; ignored (still waiting for a valid one)");
    }
    !valid
}

/// Acts on a deferred error notify whose wait is over (from the SA's timer; the request
/// is not retransmitted during the wait: its timer is set to the end of the wait).
pub(crate) fn deferred_error_due(sa: &mut IkeSa, ctx: &mut Ctx<'_>) -> Option<Result<(), Failure>> {
    let o = sa.tasks.outstanding.as_ref()?;
    let ActiveTask::IkeInit(init) = &o.task else { return None };
    let (_, at) = init.deferred_error.as_ref()?;
    if ctx.now < *at {
        return None;
    }
    let Some(ActiveTask::IkeInit(mut init)) = sa.tasks.outstanding.take().map(|o| o.task) else { return None };
    let (n, _) = init.deferred_error.take()?;
    Some(act_on_error(sa, ctx, init, &n))
}

/// Why the IKE SA carries ESP in UDP, from our configuration, NAT detection and the
/// peer's IKE_SA_INIT message `msg`: the vpngw pair needs our announcement
/// (`announce_vpngw`, so we sent [`VPNGW_VENDOR_ID`] too) and the peer's, which makes
/// the decision the same on both sides. The Vendor ID is unauthenticated here and only
/// compared: any number of copies or of other Vendor IDs change nothing else. AUTH
/// signs both IKE_SA_INIT messages, so one added or stripped on the way makes
/// authentication fail rather than go unnoticed.
pub(crate) fn encap_reason(peer: &PeerConfig, detected: Option<(bool, bool)>, msg: &Message) -> Option<EncapReason> {
    let vpngw_pair = peer.announce_vpngw && peer_is_vpngw(msg);
    EncapReason::decide(peer.force_encap, detected.is_some_and(|(a, b)| a || b), vpngw_pair)
}

/// The peer's IKE_SA_INIT message carries [`VPNGW_VENDOR_ID`].
fn peer_is_vpngw(msg: &Message) -> bool {
    msg.payloads.iter().any(|p| matches!(p, Payload::Vendor(v) if v.as_slice() == VPNGW_VENDOR_ID))
}

/// The peer announced IKE fragmentation (RFC 7383 2.3) in its IKE_SA_INIT message.
fn fragmentation_supported(msg: &Message) -> bool {
    notifies(&msg.payloads).any(|n| n.kind == notify::IKEV2_FRAGMENTATION_SUPPORTED)
}

/// The keys of the IKE SA from the IKE_SA_INIT exchange (SPIs and nonces are set).
fn sa_keys(sa: &IkeSa, algs: IkeAlgs, shared: &[u8]) -> Result<SaKeys, Failure> {
    let keys = derive_ike_keys(algs.prf, algs.encr, algs.integ, shared, &sa.ni, &sa.nr, sa.spi_i, sa.spi_r);
    let Some((seal, open)) = keys.ciphers(algs.encr, algs.integ, sa.initiator) else {
        return Err(Failure::Transient(DownReason::CipherSetup));
    };
    Ok(SaKeys { algs, keys, seal, open })
}

/// A stateless IKE_SA_INIT error response (rate-limited: the request may be spoofed).
pub(crate) fn refuse(ctx: &mut Ctx<'_>, req: &Header, local: SocketAddr, remote: SocketAddr, kind: u16, data: Vec<u8>) {
    if !ctx.answers.take(ctx.now) {
        ctx.drops.rate_limited += 1;
        return;
    }
    stateless_notify(ctx.out, req, local, remote, kind, data);
}

/// The stateless answer to an IKE_SA_INIT request that must come back with `cookie`.
pub(crate) fn send_cookie(
    out: &mut VecDeque<Output>,
    req: &Header,
    local: SocketAddr,
    remote: SocketAddr,
    cookie: Vec<u8>,
) {
    stateless_notify(out, req, local, remote, notify::COOKIE, cookie);
}

fn stateless_notify(
    out: &mut VecDeque<Output>,
    req: &Header,
    local: SocketAddr,
    remote: SocketAddr,
    kind: u16,
    data: Vec<u8>,
) {
    let h = Header {
        spi_i: req.spi_i,
        spi_r: 0,
        next_payload: 0,
        exchange: exchange::IKE_SA_INIT,
        flags: flags::RESPONSE,
        message_id: 0,
        length: 0,
    };
    let bytes = emit_plain(h, &[Payload::Notify(Notify::new(kind, data))]);
    out.push_back(Output::Transmit(Transmit { local, remote, data: bytes }));
}

/// The responder answers a new IKE_SA_INIT request from the peer `peer`. Returns the
/// half-open IKE SA, or `None` after a stateless refusal.
pub(crate) fn respond(
    peer: &PeerConfig,
    ctx: &mut Ctx<'_>,
    local: SocketAddr,
    remote: SocketAddr,
    msg: &Message,
    data: &[u8],
) -> Option<IkeSa> {
    let (name, peer_ip, h) = (&peer.name, remote.ip(), &msg.header);
    if let Some(pt) = msg.payloads.iter().find_map(|p| match p {
        Payload::Unknown { ptype, critical: true, .. } => Some(*ptype),
        _ => None,
    }) {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} sent unsupported critical payload {pt} (UNSUPPORTED_CRITICAL_PAYLOAD)"
        );
        refuse(ctx, h, local, remote, notify::UNSUPPORTED_CRITICAL_PAYLOAD, vec![pt]);
        return None;
    }
    let find = |f: fn(&Payload) -> bool| msg.payloads.iter().find(|p| f(p));
    let (Some(Payload::Sa(props)), Some(Payload::Ke { group, data: ke }), Some(Payload::Nonce(ni))) = (
        find(|p| matches!(p, Payload::Sa(_))),
        find(|p| matches!(p, Payload::Ke { .. })),
        find(|p| matches!(p, Payload::Nonce(_))),
    ) else {
        warn_unauth!(ctx, "tunnel {name}: IKE_SA_INIT from {peer_ip} lacks SA, KE or nonce (INVALID_SYNTAX)");
        refuse(ctx, h, local, remote, notify::INVALID_SYNTAX, vec![]);
        return None;
    };
    if !(16..=256).contains(&ni.len()) {
        warn_unauth!(
            ctx,
            "tunnel {name}: IKE_SA_INIT from {peer_ip} has a nonce of {} bytes (INVALID_SYNTAX)",
            ni.len()
        );
        refuse(ctx, h, local, remote, notify::INVALID_SYNTAX, vec![]);
        return None;
    }
    let Some((algs, num)) = proposal::select_ike(props, &peer.ike_proposals, Some(*group)) else {
        warn_unauth!(
            ctx,
            "tunnel {name}: no IKE proposal from {peer_ip} matches ours (peer offered {}, we accept {}) (NO_PROPOSAL_CHOSEN)",
            proposal::describe(props),
            proposal::describe_ours(&peer.ike_proposals)
        );
        ctx.drops.refused_proposal += 1;
        refuse(ctx, h, local, remote, notify::NO_PROPOSAL_CHOSEN, vec![]);
        return None;
    };
    if *group != algs.dh.transform_id() {
        warn_unauth!(
            ctx,
            "tunnel {name}: peer {peer_ip} sent a key exchange for group {group}, we chose {} (INVALID_KE_PAYLOAD); asking it to retry",
            algs.dh.keyword()
        );
        refuse(ctx, h, local, remote, notify::INVALID_KE_PAYLOAD, u16_data(algs.dh.transform_id()));
        return None;
    }
    if !KeyExchange::plausible_public(algs.dh, ke) {
        warn_unauth!(ctx, "tunnel {name}: peer {peer_ip} sent an invalid key exchange value (INVALID_SYNTAX)");
        refuse(ctx, h, local, remote, notify::INVALID_SYNTAX, vec![]);
        return None;
    }
    let kex = KeyExchange::generate(algs.dh, ctx.rng);
    let Ok(shared) = kex.agree(ke) else {
        warn_unauth!(ctx, "tunnel {name}: peer {peer_ip} sent an invalid key exchange value (INVALID_SYNTAX)");
        refuse(ctx, h, local, remote, notify::INVALID_SYNTAX, vec![]);
        return None;
    };
    let mut sa = IkeSa::new(peer.clone(), false, local, remote);
    sa.spi_i = h.spi_i;
    sa.spi_r = ctx.random_u64();
    sa.ni = ni.clone();
    sa.nr = ctx.nonce();
    let len = usize::try_from(h.length).unwrap_or(usize::MAX);
    let request = data.get(..len).unwrap_or(data);
    sa.init_request_hash = Some(digest(request));
    let by_initiator = SignedOctets::new(algs.prf, &peer.psk, request);
    let keys = sa_keys(&sa, algs, &shared).ok()?;
    let detected = natd::detect(&msg.payloads, sa.spi_i, 0, local, remote);
    sa.encap = encap_reason(peer, detected, msg);
    tracing::debug!(tunnel = %name, ?detected, forced = peer.force_encap, encap = ?sa.encap, "NAT detection");
    let mut p = vec![
        Payload::Sa(proposal::ike_answer(algs, num, &[])),
        Payload::Ke { group: algs.dh.transform_id(), data: kex.public_value() },
        Payload::Nonce(sa.nr.clone()),
    ];
    p.extend(natd::payloads(sa.spi_i, sa.spi_r, local, remote, peer.force_encap, ctx.rng));
    sa.frag.negotiated = peer.fragment_size.is_some() && fragmentation_supported(msg);
    if sa.frag.negotiated {
        p.push(Payload::Notify(Notify::new(notify::IKEV2_FRAGMENTATION_SUPPORTED, vec![])));
    }
    if peer.announce_vpngw {
        p.push(Payload::Vendor(VPNGW_VENDOR_ID.to_vec()));
    }
    // Sent in the clear: the keys join the SA with the response that AUTH signs.
    let response = sa.send_response(ctx, exchange::IKE_SA_INIT, 0, &p);
    let signed = Box::new(Signed { by_initiator, by_responder: SignedOctets::new(algs.prf, &peer.psk, &response) });
    sa.state = IkeState::Authenticating { keys, signed, deadline: Some(ctx.now + HALF_OPEN_TIMEOUT) };
    Some(sa)
}
