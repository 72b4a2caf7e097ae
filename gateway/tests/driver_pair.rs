//! Two control threads (`gateway::driver::Driver`, real `ike` and `esp`) wired to each
//! other through in-memory channels instead of UDP sockets: the tunnel comes up (raw
//! ESP with "raw", ESP in UDP with "udp" and, between two vpngw, with "auto"), the
//! published SA tables carry a packet from A to B, the status merges IKE state with
//! ESP counters, and a shutdown DELETEs the tunnel on both sides. No root, no network.

mod common;

use common::{status, wait_for, A, B};
use esp::{Opened, Sealed};
use gateway::clock::{BootClock, Clock};
use gateway::control::proto::StatusReport;
use gateway::driver::{ControlMsg, Exit};

fn ipv4_icmp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    testkit::packet::ipv4_echo_request(src.into(), dst.into(), 1, 1, &[])
}

fn established(s: &StatusReport) -> bool {
    s.tunnels[0].ike_sas.iter().any(|sa| sa.state == "ESTABLISHED" && !sa.children.is_empty())
}

fn run_pair(encap: &str, stop_a: ControlMsg, expect_exit: Exit) {
    let options = |start: &str| format!("start = \"{start}\"\nencapsulation = \"{encap}\"");
    let (a, b) =
        common::pair(common::config(&A, &B, &options("initiate")), common::config(&B, &A, &options("respond")));

    let sa = wait_for(&a, "A established", established);
    wait_for(&b, "B established", established);
    let ike_a = &sa.tunnels[0].ike_sas[0];
    assert_eq!(ike_a.role, "initiator");
    let child = &ike_a.children[0];
    assert_eq!(child.local_ts, ["10.1.0.0/24"]);
    assert_eq!(child.remote_ts, ["10.2.0.0/24"]);

    // The published tables carry a packet from A's LAN to B's LAN.
    let inner = ipv4_icmp([10, 1, 0, 10], [10, 2, 0, 10]);
    let mut wire = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let now = BootClock.now();
    let table_a = a.table.load();
    let Sealed::Send { to, packet } = table_a.seal(now, &inner, &mut wire) else { panic!("A has no outbound SA") };
    assert_eq!(to.remote, "192.0.2.2".parse::<std::net::IpAddr>().unwrap());
    // Two vpngw: ESP in UDP unless one of them says "raw".
    assert_eq!(to.encap.is_some(), encap != "raw", "encapsulation {encap}: {to:?}");
    let packet = packet.to_vec();
    match b.table.load().open(now, &packet, &mut out) {
        Opened::Deliver { packet, .. } => assert_eq!(packet, &inner[..]),
        Opened::Drop(r) => panic!("B dropped A's packet: {r:?}"),
    }
    // Replaying it is dropped and counted as a replay on B's inbound SA.
    assert!(matches!(b.table.load().open(now, &packet, &mut out), Opened::Drop(esp::DropReason::Replay)));

    let sb = status(&b);
    let cb = &sb.tunnels[0].ike_sas[0].children[0];
    let inbound = cb.inbound.as_ref().unwrap();
    assert_eq!((inbound.packets, inbound.bytes, inbound.drops.replay), (1, 28, 1));
    let sa = status(&a);
    assert_eq!(sa.tunnels[0].ike_sas[0].children[0].outbound.as_ref().unwrap().packets, 1);
    let expect_encap = if encap == "raw" { "raw" } else { "udp" };
    let json = serde_json::to_value(&cb.encapsulation).unwrap();
    assert_eq!(json["mode"], expect_encap);
    // Why, on each side (both have the same setting): "udp" forces it; two "auto"
    // gateways agree on it; "raw" gives none.
    let (reason_a, reason_b) = match encap {
        "udp" => (Some("forced"), Some("forced")),
        "auto" => (Some("vpngw_peer"), Some("vpngw_peer")),
        _ => (None, None),
    };
    assert_eq!(sa.tunnels[0].ike_sas[0].encap_reason.as_deref(), reason_a);
    assert_eq!(sb.tunnels[0].ike_sas[0].encap_reason.as_deref(), reason_b);

    // Shutdown of A: DELETE reaches B, A's control loop ends by itself.
    a.tx.send(stop_a).unwrap();
    assert_eq!(a.thread.join().unwrap(), expect_exit);
    wait_for(&b, "B to drop the tunnel", |s| s.tunnels[0].ike_sas.is_empty());
    assert!(matches!(b.table.load().open(now, &packet, &mut out), Opened::Drop(esp::DropReason::UnknownSpi)));
    b.shutdown();
}

#[test]
fn tunnel_comes_up_carries_a_packet_and_shuts_down_raw_esp() {
    run_pair("raw", ControlMsg::Shutdown, Exit::Requested);
}

#[test]
fn two_gateways_with_the_default_agree_on_esp_in_udp() {
    run_pair("auto", ControlMsg::Shutdown, Exit::Requested);
}

#[test]
fn tunnel_comes_up_carries_a_packet_and_shuts_down_udp_encap() {
    run_pair("udp", ControlMsg::Shutdown, Exit::Requested);
}

#[test]
fn fatal_error_still_deletes_the_tunnel_and_reports_failure() {
    let why = "datapath thread tun-rx panicked".to_string();
    run_pair("auto", ControlMsg::Fatal(why.clone()), Exit::Failed(why));
}
