//! CHILD SAs: key derivation into `SaParams`, the install order for the datapath
//! (inbound before outbound) and removal.

use super::{Ctx, IkeSa};
use crate::endpoint::{ChildSaStatus, Event, Output};
use crate::proposal::EspAlgs;
use ipsec_types::{
    AeadKey, ChildRef, DatapathCommand, Direction, SaEndpoints, SaParams, Spi, Timestamp, TrafficSelector, UdpEncap,
};
use std::net::SocketAddr;

/// State of a CHILD SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildState {
    Installed,
}

pub(crate) struct ChildSa {
    pub(crate) child_id: u64,
    pub(crate) state: ChildState,
    pub(crate) spi_in: Spi,
    pub(crate) spi_out: Spi,
    pub(crate) local_ts: Vec<TrafficSelector>,
    pub(crate) remote_ts: Vec<TrafficSelector>,
    pub(crate) algs: EspAlgs,
    pub(crate) encap: Option<UdpEncap>,
    pub(crate) established_at: Timestamp,
}

impl ChildSa {
    pub(crate) fn endpoints(&self, local: SocketAddr, remote: SocketAddr) -> SaEndpoints {
        SaEndpoints { local: local.ip(), remote: remote.ip(), encap: self.encap }
    }

    pub(crate) fn status(&self) -> ChildSaStatus {
        ChildSaStatus {
            child_id: self.child_id,
            state: match self.state {
                ChildState::Installed => "INSTALLED",
            },
            spi_in: self.spi_in,
            spi_out: self.spi_out,
            local_ts: self.local_ts.clone(),
            remote_ts: self.remote_ts.clone(),
            encr: self.algs.encr,
            dh: self.algs.dh,
            encap: self.encap,
            established_at: self.established_at,
            next_rekey: None,
            expires_at: None,
        }
    }

    /// Removes both directions from the datapath and reports it.
    pub(crate) fn remove(&self, ctx: &mut Ctx<'_>, tunnel: &str) {
        for (spi, direction) in [(self.spi_out, Direction::Outbound), (self.spi_in, Direction::Inbound)] {
            ctx.out.push_back(Output::Datapath(DatapathCommand::Remove { spi, direction }));
        }
        ctx.out.push_back(Output::Event(Event::ChildDown { peer: tunnel.to_string(), spi_in: self.spi_in }));
        tracing::info!(tunnel, spi_in = %self.spi_in, spi_out = %self.spi_out, "CHILD SA removed");
    }
}

fn list(ts: &[TrafficSelector]) -> String {
    ts.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

/// Derives the keys of a new CHILD SA (RFC 7296 2.17) and emits InstallInbound and
/// InstallOutbound. Returns the `ChildUp` event for the caller to emit after its
/// response went out, or `None` if keys could not be built.
pub(crate) fn install(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    algs: EspAlgs,
    spi_in: u32,
    spi_out: u32,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
) -> Option<Event> {
    let (keys, ike_algs) = (sa.keys.as_ref()?, sa.algs?);
    let (i2r, r2i) = crate::crypto::derive_child_keys(ike_algs.prf, &keys.keys.sk_d, algs.encr, None, &sa.ni, &sa.nr);
    let (kin, kout) = if sa.initiator { (r2i, i2r) } else { (i2r, r2i) };
    let key_in = AeadKey::from_keymat(algs.encr, &kin)?;
    let key_out = AeadKey::from_keymat(algs.encr, &kout)?;
    let encap = sa.nat.then(|| UdpEncap {
        local_port: ctx.natt_port,
        remote_port: if sa.remote.port() == ctx.ike_port { ctx.natt_port } else { sa.remote.port() },
    });
    *ctx.next_child_id += 1;
    let child = ChildSa {
        child_id: *ctx.next_child_id,
        state: ChildState::Installed,
        spi_in: Spi(spi_in),
        spi_out: Spi(spi_out),
        local_ts,
        remote_ts,
        algs,
        encap,
        established_at: ctx.now,
    };
    let endpoints = child.endpoints(sa.local, sa.remote);
    let child_ref = ChildRef { tunnel: sa.peer.name.clone(), child_id: child.child_id };
    let params = |spi: Spi, direction, key: AeadKey, replay_window| SaParams {
        spi,
        direction,
        child: child_ref.clone(),
        endpoints,
        key,
        replay_window,
        esn: false,
        local_ts: child.local_ts.clone(),
        remote_ts: child.remote_ts.clone(),
        limits: Default::default(),
    };
    let inbound = params(child.spi_in, Direction::Inbound, key_in, sa.peer.replay_window);
    let outbound = params(child.spi_out, Direction::Outbound, key_out, 0);
    ctx.out.push_back(Output::Datapath(DatapathCommand::InstallInbound(inbound)));
    ctx.out.push_back(Output::Datapath(DatapathCommand::InstallOutbound(outbound)));
    tracing::info!(
        tunnel = %sa.peer.name,
        "CHILD SA established: {} === {}, SPIs in {} / out {}, {}{}",
        list(&child.local_ts),
        list(&child.remote_ts),
        child.spi_in,
        child.spi_out,
        algs.encr.keyword(),
        if encap.is_some() { ", UDP-encap" } else { "" }
    );
    let ev = Event::ChildUp { peer: sa.peer.name.clone(), spi_in: child.spi_in, spi_out: child.spi_out };
    sa.children.push(child);
    Some(ev)
}
