//! One SPI namespace per tunnel: outbound SAs are named by (tunnel, SPI), so a peer of
//! tunnel "b" that picks the outbound SPI tunnel "t" uses (it is visible on the wire)
//! can neither replace, redirect nor remove "t"'s SA; an inbound SPI that one tunnel
//! holds is refused to every other tunnel.

mod common;

use common::*;
use esp::{ApplyError, DropReason, SaTable, Sealed};
use ipsec_types::{DatapathCommand, Direction, SaEndpoints, SaParams, Spi};

const SHARED: u32 = 0x1000;

/// Tunnel "b"'s SA with `spi`, its own key and child, towards 10.3.0.0/16.
fn tunnel_b(spi: u32, direction: Direction) -> SaParams {
    let mut p = params(spi, direction, 2, 50);
    p.child.tunnel = "b".into();
    p.remote_ts = vec![ts("10.3.0.0/16")];
    p
}

/// The sequence number and endpoints of the packet `t` seals from 10.1.0.5 to `dst`.
fn seal_to(t: &SaTable, dst: &str) -> Result<(Vec<u8>, SaEndpoints), DropReason> {
    let inner = ipv4("10.1.0.5", dst, 60);
    let mut out = vec![0u8; inner.len() + esp::MAX_OVERHEAD];
    match t.seal(NOW, &inner, &mut out) {
        Sealed::Send { to, packet } => Ok((packet.to_vec(), to)),
        Sealed::Drop(r) => Err(r),
    }
}

fn remove(tunnel: &str, direction: Direction) -> DatapathCommand {
    DatapathCommand::Remove { tunnel: tunnel.into(), spi: Spi(SHARED), direction }
}

/// Tunnel `tunnel`'s SA with the shared SPI moves to 203.0.113.7 (NAT mapping update).
fn moved(tunnel: &str, direction: Direction) -> (DatapathCommand, SaEndpoints) {
    let mut endpoints = endpoints();
    endpoints.remote = "203.0.113.7".parse().unwrap();
    (DatapathCommand::UpdateEndpoints { tunnel: tunnel.into(), spi: Spi(SHARED), direction, endpoints }, endpoints)
}

fn seq(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[4..8].try_into().unwrap())
}

#[test]
fn another_tunnel_with_the_same_outbound_spi_leaves_ours_alone() {
    // Tunnel "t" seals with SPI 0x1000; `right` is its peer.
    let (left, right) = pair(SHARED, |_| {});
    for n in 1..=3 {
        let (esp, _) = seal_to(&left, "10.2.0.9").unwrap();
        assert_eq!(seq(&esp), n);
        assert!(open(&right, &esp).is_ok());
    }

    // The peer of tunnel "b" chose the same SPI for its inbound SA: our outbound of "b".
    let b = left.apply(&DatapathCommand::InstallOutbound(tunnel_b(SHARED, Direction::Outbound))).unwrap();
    let outs: Vec<_> = b.stats().into_iter().filter(|s| s.direction == Direction::Outbound).collect();
    assert_eq!(outs.len(), 2, "both SAs with SPI 0x1000 are installed");
    assert!(outs.iter().all(|s| s.spi == Spi(SHARED) && s.active));
    let (esp, _) = seal_to(&b, "10.2.0.9").unwrap();
    assert_eq!(seq(&esp), 4, "tunnel t's SA, key and sequence numbers carry on");
    assert!(open(&right, &esp).is_ok());
    let (esp_b, _) = seal_to(&b, "10.3.0.9").unwrap();
    assert_eq!((&esp_b[..4], seq(&esp_b)), (&SHARED.to_be_bytes()[..], 1), "tunnel b's own SA, from 1");

    // Tunnel b's NAT update moves only b's SA.
    let (update, to_b) = moved("b", Direction::Outbound);
    let b = b.apply(&update).unwrap();
    assert_eq!(seal_to(&b, "10.3.0.9").unwrap().1, to_b);
    let (esp, to) = seal_to(&b, "10.2.0.9").unwrap();
    assert_eq!((seq(&esp), to), (5, endpoints()));
    assert!(open(&right, &esp).is_ok());

    // Tunnel b removes its SA: ours stays, with its sequence numbers.
    let gone = b.apply(&remove("b", Direction::Outbound)).unwrap();
    let stats = gone.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].child.tunnel.as_str(), stats[0].spi, stats[0].active), ("t", Spi(SHARED), true));
    assert_eq!(stats[0].counters.seq, 5);
    let (esp, _) = seal_to(&gone, "10.2.0.9").unwrap();
    assert_eq!(seq(&esp), 6);
    assert!(open(&right, &esp).is_ok());
    assert_eq!(seal_to(&gone, "10.3.0.9").unwrap_err(), DropReason::NoSa);
}

#[test]
fn another_tunnel_with_the_same_selectors_does_not_take_ours_out_of_the_seal_path() {
    // Overlapping subnets of two tunnels are a configuration warning, not an error: the
    // newest SA seals the overlap, and when it goes the other tunnel's SA takes over.
    let (left, right) = pair(SHARED, |_| {});
    assert_eq!(seq(&seal_to(&left, "10.2.0.9").unwrap().0), 1);
    let mut same = tunnel_b(SHARED, Direction::Outbound);
    same.remote_ts = params(SHARED, Direction::Outbound, 1, 7).remote_ts;
    let b = left.apply(&DatapathCommand::InstallOutbound(same)).unwrap();
    assert!(b.stats().iter().all(|s| s.active), "only SAs of the same tunnel are superseded");
    let gone = b.apply(&remove("b", Direction::Outbound)).unwrap();
    let (esp, _) = seal_to(&gone, "10.2.0.9").unwrap();
    assert_eq!(seq(&esp), 2);
    assert!(open(&right, &esp).is_ok());
}

#[test]
fn inbound_spi_of_another_tunnel_is_refused() {
    let (left, right) = pair(SHARED, |_| {});
    let (esp, _) = seal_to(&left, "10.2.0.9").unwrap();
    assert!(open(&right, &esp).is_ok());

    let err = right.apply(&DatapathCommand::InstallInbound(tunnel_b(SHARED, Direction::Inbound))).unwrap_err();
    assert_eq!(err, ApplyError::InboundSpiInUse { spi: Spi(SHARED), tunnel: "b".into(), owner: "t".into() });
    assert!(err.to_string().contains("\"t\" holds"), "{err}");

    // Nor may tunnel b remove or move tunnel t's inbound SA.
    let right = right.apply(&moved("b", Direction::Inbound).0).unwrap();
    let right = right.apply(&remove("b", Direction::Inbound)).unwrap();
    let (esp, _) = seal_to(&left, "10.2.0.9").unwrap();
    assert!(open(&right, &esp).is_ok(), "t's SA and replay window are untouched");
    assert_eq!(open(&right, &esp), Err(DropReason::Replay));
    let stats = right.stats();
    assert_eq!((stats.len(), stats[0].child.tunnel.as_str(), stats[0].counters.packets), (1, "t", 2));
    assert_eq!(stats[0].counters.replay, 1);

    // The owner may re-install it (same key: the window carries on), and remove it.
    let again = mirror(&params(SHARED, Direction::Outbound, 1, 7), Direction::Inbound);
    let right = right.apply(&DatapathCommand::InstallInbound(again)).unwrap();
    assert_eq!(open(&right, &esp), Err(DropReason::Replay));
    let right = right.apply(&remove("t", Direction::Inbound)).unwrap();
    assert_eq!(open(&right, &esp), Err(DropReason::UnknownSpi));
    // Once free, the SPI may go to another tunnel.
    assert!(right.apply(&DatapathCommand::InstallInbound(tunnel_b(SHARED, Direction::Inbound))).is_ok());
}

/// Tunnel `tunnel`'s outbound SA with `spi` towards 10.2.0.0/16, like tunnel "t"'s.
fn same_subnets(tunnel: &str, spi: u32) -> SaParams {
    let mut p = params(spi, Direction::Outbound, 3, 60);
    p.child.tunnel = tunnel.into();
    p
}

fn spi_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes(packet[..4].try_into().unwrap())
}

#[test]
fn ranks_choose_between_tunnels_with_the_same_subnets_and_fall_back_when_one_has_none() {
    let install = |t: &SaTable, tunnel: &str, spi: u32| {
        t.apply(&DatapathCommand::InstallOutbound(same_subnets(tunnel, spi))).unwrap()
    };
    let ranked = |active: &str, standby: &str| {
        std::collections::HashMap::from([(active.to_string(), 0), (standby.to_string(), 1)])
    };
    // Primary "p" first, standby "s" installed later: the newest would win without ranks.
    let t = install(&SaTable::new(), "p", 0x10);
    let t = install(&t, "s", 0x20);
    assert_eq!(spi_of(&seal_to(&t, "10.2.0.9").unwrap().0), 0x20, "without ranks the newest SA seals");
    let t = t.with_ranks(ranked("p", "s"));
    assert_eq!(spi_of(&seal_to(&t, "10.2.0.9").unwrap().0), 0x10, "rank 0 seals");
    assert!(t.has_outbound("p") && t.has_outbound("s") && !t.has_outbound("x"));
    // A rekey of the standby (newer SA, installed after the ranks) does not jump ahead.
    let t = install(&t, "s", 0x21);
    assert_eq!(spi_of(&seal_to(&t, "10.2.0.9").unwrap().0), 0x10);
    // The primary's SAs go (its peer died): the standby seals at once, no rank change needed.
    let gone = t.apply(&DatapathCommand::Remove { tunnel: "p".into(), spi: Spi(0x10), direction: Direction::Outbound });
    let gone = gone.unwrap();
    assert!(!gone.has_outbound("p"));
    assert_eq!(spi_of(&seal_to(&gone, "10.2.0.9").unwrap().0), 0x21);
    // The primary comes back while the standby is preferred: the standby keeps sealing.
    let back = install(&gone.with_ranks(ranked("s", "p")), "p", 0x11);
    assert_eq!(spi_of(&seal_to(&back, "10.2.0.9").unwrap().0), 0x21);
    // Failback: the primary ranks first again.
    let failback = back.with_ranks(ranked("p", "s"));
    assert_eq!(spi_of(&seal_to(&failback, "10.2.0.9").unwrap().0), 0x11);
    // Sequence numbers carry on across rank changes (the SA cores are shared).
    let (esp, _) = seal_to(&failback, "10.2.0.9").unwrap();
    assert_eq!(seq(&esp), 2);
    assert_eq!(seq(&seal_to(&back, "10.2.0.9").unwrap().0), 3, "the standby's SA counts on in every snapshot");
}
