//! INFORMATIONAL exchanges (RFC 7296 section 1.4): DELETE of the IKE SA or of CHILD
//! SAs, liveness checks, and error notifies from the peer.

use super::error_notify;
use crate::down::{DownReason, Failure};
use crate::message::payload::{proto, spi32, Delete};
use crate::message::{exchange, Message, Payload};
use crate::notify;
use crate::sa::child;
use crate::sa::{Action, Ctx, IkeSa};
use crate::task::{ike_rekey, ActiveTask};
use ipsec_types::Spi;

/// The responder side: answers DELETEs (with our matching CHILD SPIs) and empty requests.
pub(crate) fn process_request(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Result<(), Failure> {
    let (name, peer_ip, mid) = (sa.peer.name.clone(), sa.remote.ip(), msg.header.message_id);
    let mut delete_ike = false;
    let mut ours = Vec::new();
    for p in &msg.payloads {
        let Payload::Delete(d) = p else { continue };
        match d.protocol {
            proto::IKE => delete_ike = true,
            proto::ESP => {
                for spi in d.spis.iter().filter_map(|s| spi32(s)) {
                    if let Some(&(spi_out, spi_in)) = sa.moved.iter().find(|(o, _)| *o == Spi(spi)) {
                        ctx.actions.push(Action::ChildDeleted { tunnel: name.clone(), spi_out });
                        ours.push(spi_in.0.to_be_bytes().to_vec());
                        continue;
                    }
                    let Some(i) = sa.children.iter().position(|c| c.spi_out == Spi(spi)) else { continue };
                    let Some(c) = child::remove_at(sa, ctx, i) else { continue };
                    tracing::info!(tunnel = %name, "peer {peer_ip} deleted CHILD SA {}/{}", c.spi_in, c.spi_out);
                    // Both deleting it (RFC 7296 1.4.1): answer without it.
                    if !c.state.is_deleting() {
                        ours.push(c.spi_in.0.to_be_bytes().to_vec());
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(n) = error_notify(&msg.payloads) {
        tracing::warn!("tunnel {name}: peer {peer_ip} reported {}; deleting the IKE SA", notify::name(n.kind));
        delete_ike = true;
    }
    if delete_ike {
        ike_rekey::old_sa_deleted(sa, ctx);
        if sa.state.replaced() {
            tracing::debug!(tunnel = %name, "peer {peer_ip} deleted the rekeyed IKE SA");
        } else {
            tracing::info!(tunnel = %name, "peer {peer_ip} deleted the IKE SA");
        }
        sa.send_response(ctx, exchange::INFORMATIONAL, mid, &[]);
        return Err(Failure::Deleted(DownReason::DeletedByPeer));
    }
    if !ours.is_empty() {
        child::ensure_tunnel(sa);
    }
    let resp = if ours.is_empty() {
        vec![]
    } else {
        vec![Payload::Delete(Delete { protocol: proto::ESP, spi_size: 4, spis: ours })]
    };
    sa.send_response(ctx, exchange::INFORMATIONAL, mid, &resp);
    Ok(())
}

/// Sends DELETE for the IKE SA, abandoning any outstanding request. We wait for the
/// response for one retransmission timeout only.
pub(crate) fn start_ike_delete(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    send_ike_delete(sa, ctx, true);
}

/// Sends DELETE for the IKE SA; with `single_shot` the response is awaited for one
/// retransmission timeout only, else with the usual retransmissions.
pub(crate) fn send_ike_delete(sa: &mut IkeSa, ctx: &mut Ctx<'_>, single_shot: bool) {
    sa.tasks.outstanding = None;
    let d = Payload::Delete(Delete { protocol: proto::IKE, spi_size: 0, spis: vec![] });
    sa.send_request(ctx, ActiveTask::IkeDelete, exchange::INFORMATIONAL, &[d], single_shot);
}

/// Sends DELETE for the CHILD SA with inbound or outbound SPI `spi`. Its SAs stay in
/// the datapath until the response arrives (a rekeyed one keeps receiving until then).
/// Returns `false` if there is no such CHILD SA or it is being deleted (nothing sent).
pub(crate) fn start_child_delete(sa: &mut IkeSa, ctx: &mut Ctx<'_>, spi: Spi) -> bool {
    let Some(c) = sa.children.iter_mut().find(|c| c.spi_in == spi || c.spi_out == spi) else { return false };
    if c.state.is_deleting() {
        return false;
    }
    c.state = c.state.deleting();
    let spi_in = c.spi_in;
    let d = Payload::Delete(Delete { protocol: proto::ESP, spi_size: 4, spis: vec![spi_in.0.to_be_bytes().to_vec()] });
    sa.send_request(ctx, ActiveTask::ChildDelete(spi_in), exchange::INFORMATIONAL, &[d], false);
    true
}
