//! TUN creation, MTU, link state, packet I/O and route install/remove, inside a
//! throwaway network namespace (`vgtest-<pid>`), never in the host's.
//!
//! The outer test creates the namespace and re-runs this test binary inside it with
//! `ip netns exec`, selecting the `#[ignore]`d inner test, which only acts when the
//! environment says it runs inside the namespace. A guard deletes the namespace even
//! when an assertion fails. Needs root and `ip` (`testkit::require`: `SKIPPED <test>:
//! <reason>`, or a failure under `CI=true`); a kernel without UDP segmentation offload on
//! TUN skips that test with the same line in any mode.

use gateway::sys::route::{ip_binary, route_for, Routes};
use gateway::sys::tun::Tun;
use ipsec_types::TrafficSelector;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::Duration;
use testkit::netns::Netns;
use testkit::packet::{ipv4_udp, Ipv4};
use testkit::{Need, Skip};

const INNER_ENV: &str = "VG_GATEWAY_NETNS_INNER";

fn ip(args: &[&str]) -> (bool, String) {
    let out = Command::new(ip_binary().unwrap()).args(args).output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Runs the ignored test `inner` of this binary inside a fresh namespace `vgtest<id>`
/// and checks that it passed. The outer test is `test`: the inner one's skip, if any,
/// is reported under that name.
fn run_inner(test: &str, inner: &str) {
    if !testkit::require(test, &[Need::Root, Need::Command("ip")]) {
        return;
    }
    let ns = Netns::create(&format!("vgtest{}", testkit::unique_id())).unwrap();
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_string_lossy();
    let out = ns
        .exec(&[&exe, "--exact", inner, "--ignored", "--nocapture", "--test-threads=1"])
        .env(INNER_ENV, ns.name())
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "inner test failed:\n{log}");
    if let Some(reason) = log.lines().find_map(|l| l.strip_prefix(&format!("SKIPPED {inner}: "))) {
        testkit::skip(test, Skip::KernelFeature(reason.to_owned()));
        return;
    }
    assert!(log.contains("inner: all checks passed"), "inner test did not run:\n{log}");
}

/// Loopback up and a LAN-side address, 10.1.0.1/24 on a veth (this kernel has no dummy
/// driver).
fn lan_side() {
    for cmd in [
        &["link", "set", "lo", "up"][..],
        &["link", "add", "vglan0", "type", "veth", "peer", "name", "vglan1"],
        &["addr", "add", "10.1.0.1/24", "dev", "vglan0"],
        &["link", "set", "vglan0", "up"],
        &["link", "set", "vglan1", "up"],
    ] {
        let (ok, out) = ip(cmd);
        assert!(ok, "ip {cmd:?}: {out}");
    }
}

/// True if this process runs in the namespace the outer test made for it.
fn in_test_namespace() -> bool {
    let Ok(ns) = std::env::var(INNER_ENV) else {
        eprintln!("not inside a test namespace: nothing to do");
        return false;
    };
    let (_, ident) = ip(&["netns", "identify"]);
    assert_eq!(ident.trim(), ns, "not in the expected namespace");
    true
}

#[test]
fn tun_and_routes_in_a_network_namespace() {
    run_inner("tun_and_routes_in_a_network_namespace", "inner_tun_and_routes");
}

#[test]
fn udp_segmentation_offload_through_a_real_tun() {
    run_inner("udp_segmentation_offload_through_a_real_tun", "inner_udp_segmentation_offload");
}

#[test]
fn raw_esp_sockets_in_a_network_namespace() {
    run_inner("raw_esp_sockets_in_a_network_namespace", "inner_raw_esp_sockets");
}

#[test]
fn ipv6_routes_into_a_tun_in_a_namespace_without_ipv6() {
    run_inner("ipv6_routes_into_a_tun_in_a_namespace_without_ipv6", "inner_ipv6_routes");
}

/// Raw ESP over IPv4 and IPv6 on loopback: a socket bound to one address receives the
/// ESP packets sent to it (an IPv4 one with its header stripped, an IPv6 one, which the
/// kernel hands over as payload only, identified by IPV6_PKTINFO), names their sender,
/// and never those sent to the host's other addresses.
#[test]
#[ignore = "runs inside the network namespace created by raw_esp_sockets_in_a_network_namespace"]
fn inner_raw_esp_sockets() {
    use gateway::sys::batch::{recv_many, RecvMany};
    use gateway::sys::udp::RawEsp;
    use std::net::IpAddr;
    if !in_test_namespace() {
        return;
    }
    let (ok, out) = ip(&["link", "set", "lo", "up"]);
    assert!(ok, "{out}");
    std::fs::write("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "0").unwrap();
    for a in ["192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"] {
        let (ok, out) = ip(&["addr", "add", a, "dev", "lo"]);
        assert!(ok, "{out}");
    }
    for a in ["2001:db8::1/128", "2001:db8::2/128", "2001:db8::3/128"] {
        let (ok, out) = ip(&["-6", "addr", "add", a, "dev", "lo", "nodad"]);
        assert!(ok, "{out}");
    }
    // The kernel finishes setting up IPv6 addresses in a work queue, even with `nodad`:
    // on a busy machine a packet sent at once can meet a still-tentative address and be
    // dropped. Wait until none is tentative.
    testkit::wait_for(Duration::from_secs(10), "IPv6 addresses on lo usable", || {
        let (ok, out) = ip(&["-6", "addr", "show", "dev", "lo", "tentative"]);
        (ok && out.trim().is_empty()).then_some(())
    })
    .unwrap();
    for (ours, peer, other) in [("192.0.2.1", "192.0.2.2", "192.0.2.3"), ("2001:db8::1", "2001:db8::2", "2001:db8::3")]
    {
        let [ours, peer, other]: [IpAddr; 3] = [ours, peer, other].map(|a| a.parse().unwrap());
        let rx = RawEsp::open(ours).unwrap();
        let tx = RawEsp::open(peer).unwrap();
        // First a packet for another of the host's addresses, then one for us: loopback
        // queues both before the send returns, so the first one read must be ours.
        tx.send_to(b"\x00\x00\x01\x00not ours", other).unwrap();
        tx.send_to(b"\x00\x00\x01\x00ours", ours).unwrap();
        let mut batch = RecvMany::new(8, 2048);
        // Bounded: a packet that never comes fails the test instead of hanging it.
        testkit::wait_for_every(Duration::from_millis(10), Duration::from_secs(10), "ESP on loopback", || {
            match recv_many(rx.fd(), &mut batch, false) {
                Ok(_) => Some(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                Err(e) => panic!("recv: {e}"),
            }
        })
        .unwrap();
        let got: Vec<(Vec<u8>, IpAddr)> = batch
            .packets_with_meta()
            .filter_map(|(p, meta)| rx.esp_range(p, meta).map(|(r, from)| (p[r].to_vec(), from)))
            .collect();
        assert_eq!(got, vec![(b"\x00\x00\x01\x00ours".to_vec(), peer)], "{ours}");
        let more = recv_many(rx.fd(), &mut batch, false);
        assert!(more.is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "{ours}: a foreign packet arrived");
    }
    println!("inner: all checks passed");
}

/// In a namespace whose new devices start with IPv6 off (as `Netns::create` leaves
/// them), a TUN whose IPv6 is switched on by `quiet_ipv6(false)` takes an IPv6 route
/// with a preferred source inside the local subnets, has no link-local address, and the
/// route goes with the guard.
#[test]
#[ignore = "runs inside the network namespace created by ipv6_routes_into_a_tun_in_a_namespace_without_ipv6"]
fn inner_ipv6_routes() {
    if !in_test_namespace() {
        return;
    }
    lan_side();
    std::fs::write("/proc/sys/net/ipv6/conf/vglan0/disable_ipv6", "0").unwrap();
    let (ok, out) = ip(&["-6", "addr", "add", "fd00:a::1/64", "dev", "vglan0", "nodad"]);
    assert!(ok, "{out}");
    let tun = Tun::create("vgtun6").unwrap();
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv6/conf/vgtun6/disable_ipv6").unwrap().trim(), "1");
    tun.quiet_ipv6(false).unwrap();
    tun.set_mtu(1400).unwrap();
    tun.set_up().unwrap();
    let local =
        vec![TrafficSelector::parse_cidr("10.1.0.0/24").unwrap(), TrafficSelector::parse_cidr("fd00:a::/64").unwrap()];
    let remote = TrafficSelector::parse_cidr("fd00:b::/64").unwrap();
    let route = route_for(&remote, tun.name(), &local, &gateway::sys::local_addresses().unwrap());
    assert_eq!(route.src, Some("fd00:a::1".parse().unwrap()));
    let mut routes = Routes::install(vec![route]).unwrap();
    let (ok, shown) = ip(&["-6", "route", "show", "dev", "vgtun6"]);
    assert!(ok && shown.contains("fd00:b::/64") && shown.contains("src fd00:a::1"), "{shown}");
    let (_, addrs) = ip(&["-6", "addr", "show", "dev", "vgtun6"]);
    assert!(!addrs.contains("inet6"), "the TUN has an address of its own: {addrs}");
    routes.remove_all();
    let (_, shown) = ip(&["-6", "route", "show", "dev", "vgtun6"]);
    assert!(!shown.contains("fd00:b::/64"), "{shown}");
    println!("inner: all checks passed");
}

/// An application's UDP_SEGMENT send reaches the TUN as one UDP_L4 super-packet (Linux
/// 6.2+, where the kernel takes TUN_F_USO), which `offload::segment` splits into the
/// original datagrams; and a super-packet written to the TUN reaches a local socket as
/// the original datagrams, checksums verified by the kernel.
#[test]
#[ignore = "runs inside the network namespace created by udp_segmentation_offload_through_a_real_tun"]
fn inner_udp_segmentation_offload() {
    use gateway::datapath::offload::{segment, Gro, VnetHdr, GSO_UDP_L4, VNET_HDR_LEN};
    use gateway::sys::tun::TunOptions;
    if !in_test_namespace() {
        return;
    }
    lan_side();
    let tun = Tun::create_with("vgtun1", TunOptions { offload: true, queues: 1 }).unwrap();
    tun.set_mtu(1400).unwrap();
    tun.set_up().unwrap();
    if !tun.udp_gso_writes() {
        let why = "the kernel does not take TUN_F_USO (UDP segmentation offload on TUN, Linux 6.2+)";
        testkit::skip("inner_udp_segmentation_offload", Skip::KernelFeature(why.into()));
        return;
    }
    let (ok, out) = ip(&["route", "add", "10.2.0.0/24", "dev", "vgtun1", "src", "10.1.0.1"]);
    assert!(ok, "{out}");

    // Outbound: 10 x 1000 + 240 bytes in one UDP_SEGMENT send.
    let payload: Vec<u8> = (0..10_240u32).map(|i| (i * 7 % 251) as u8).collect();
    let sock = UdpSocket::bind("10.1.0.1:0").unwrap();
    let to = "10.2.0.5:9".parse().unwrap();
    gateway::sys::batch::send_gso(std::os::fd::AsFd::as_fd(&sock), &payload, 1000, to).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut scratch = vec![0u8; 70_000];
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    for _ in 0..32 {
        let n = tun.recv(&mut buf).unwrap();
        let hdr = VnetHdr::parse(&buf).unwrap();
        let pkt = &mut buf[VNET_HDR_LEN..n];
        if pkt.len() < 28 || pkt[9] != 17 || pkt[16..20] != [10, 2, 0, 5] {
            continue; // e.g. IPv6 router solicitations
        }
        assert_eq!(hdr.gso_type, GSO_UDP_L4, "one super-packet, not {} bytes", pkt.len());
        segment(&hdr, pkt, &mut scratch, |d| datagrams.push(d.to_vec())).unwrap();
        break;
    }
    assert_eq!(datagrams.len(), 11);
    let mut joined = Vec::new();
    for (i, d) in datagrams.iter().enumerate() {
        assert_eq!(usize::from(u16::from_be_bytes([d[2], d[3]])), d.len(), "IP length of datagram {i}");
        assert_eq!(usize::from(u16::from_be_bytes([d[24], d[25]])), d.len() - 20, "UDP length of datagram {i}");
        assert_eq!(d.len() - 28, if i < 10 { 1000 } else { 240 });
        joined.extend_from_slice(&d[28..]);
    }
    assert_eq!(joined, payload, "the datagrams carry the payload in order");

    // Inbound: the same datagrams, addressed to a local socket, coalesced into one
    // UDP_L4 write; the kernel splits it and verifies each checksum on delivery.
    let rx = UdpSocket::bind("10.1.0.1:5555").unwrap();
    let mut gro = Gro::new();
    let mut writes = 0;
    for (i, d) in datagrams.iter().enumerate() {
        // The kernel's datagram turned round: its header fields, the addresses and
        // ports swapped, IDs counting from 0, fresh checksums.
        let back = Ipv4 {
            src: Ipv4Addr::new(10, 2, 0, 5),
            dst: Ipv4Addr::new(10, 1, 0, 1),
            id: i as u16,
            ..Ipv4::of(d).unwrap()
        };
        let fixed = back.udp(4444, 5555, &d[28..]);
        gro.push(&fixed, &mut |h: &[u8], p: &[u8]| {
            writes += 1;
            tun.send_parts(h, p).unwrap();
        });
    }
    gro.flush(&mut |h: &[u8], p: &[u8]| {
        writes += 1;
        tun.send_parts(h, p).unwrap();
    });
    assert_eq!(writes, 1, "one coalesced write");
    rx.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
    let mut got = Vec::new();
    for _ in 0..11 {
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(from, "10.2.0.5:4444".parse().unwrap());
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, payload, "delivered as the original datagrams");
    println!("inner: all checks passed");
}

/// Runs only inside the namespace made by the outer test.
#[test]
#[ignore = "runs inside the network namespace created by tun_and_routes_in_a_network_namespace"]
fn inner_tun_and_routes() {
    // Make sure we really are in the throwaway namespace before touching anything.
    if !in_test_namespace() {
        return;
    }

    lan_side();

    let tun = Tun::create("vgtun0").unwrap();
    assert_eq!(tun.name(), "vgtun0");
    tun.set_mtu(1400).unwrap();
    tun.set_up().unwrap();
    let (ok, link) = ip(&["-o", "link", "show", "vgtun0"]);
    assert!(ok && link.contains("mtu 1400") && link.contains("UP"), "{link}");

    let local = vec![TrafficSelector::parse_cidr("10.1.0.0/24").unwrap()];
    let remote = TrafficSelector::parse_cidr("10.2.0.0/24").unwrap();
    let addrs = gateway::sys::local_addresses().unwrap();
    let route = route_for(&remote, tun.name(), &local, &addrs);
    assert_eq!(route.src, Some("10.1.0.1".parse().unwrap()));
    let mut routes = Routes::install(vec![route]).unwrap();
    let (_, shown) = ip(&["route", "show", "10.2.0.0/24"]);
    assert!(shown.contains("dev vgtun0") && shown.contains("src 10.1.0.1"), "{shown}");

    // Outbound: a datagram to the remote subnet comes out of TUN as a bare IPv4 packet.
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.send_to(b"hello tunnel", "10.2.0.5:9").unwrap();
    let mut buf = vec![0u8; 2048];
    let mut found = false;
    for _ in 0..32 {
        let n = tun.recv(&mut buf).unwrap();
        let p = &buf[..n];
        if p.len() >= 28 && p[0] >> 4 == 4 && p[9] == 17 && p[16..20] == [10, 2, 0, 5] {
            assert_eq!(p[12..16], [10, 1, 0, 1], "source should be the route's src");
            assert!(p.ends_with(b"hello tunnel"));
            found = true;
            break;
        }
    }
    assert!(found, "the UDP packet never came out of TUN");

    // Inbound: a packet written to TUN is delivered to a local socket.
    let rx = UdpSocket::bind("10.1.0.1:5555").unwrap();
    let pkt = ipv4_udp(Ipv4Addr::new(10, 2, 0, 5), Ipv4Addr::new(10, 1, 0, 1), 4444, 5555, b"from afar");
    assert_eq!(tun.send(&pkt).unwrap(), pkt.len());
    let (n, from) = rx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from afar");
    assert_eq!(from, "10.2.0.5:4444".parse().unwrap());

    routes.remove_all();
    let (_, shown) = ip(&["route", "show", "10.2.0.0/24"]);
    assert!(shown.trim().is_empty(), "route left behind: {shown}");
    drop(tun);
    let (ok, _) = ip(&["link", "show", "vgtun0"]);
    assert!(!ok, "TUN device left behind");

    // Multi-queue: two fds on one device; flows are spread over them, each packet comes
    // out of exactly one queue.
    let mq = Tun::create_with("vgtun2", gateway::sys::tun::TunOptions { offload: true, queues: 2 }).unwrap();
    assert_eq!(mq.queues(), 2);
    mq.set_up().unwrap();
    mq.set_nonblocking().unwrap();
    let (ok, out) = ip(&["route", "add", "10.4.0.0/24", "dev", "vgtun2"]);
    assert!(ok, "{out}");
    let mut seen = [0usize; 2];
    for port in 1000..1032u16 {
        let s = UdpSocket::bind("10.1.0.1:0").unwrap();
        s.send_to(b"q", ("10.4.0.9", port)).unwrap();
    }
    for (q, n) in seen.iter_mut().enumerate() {
        while let Ok(len) = mq.recv_queue(q, &mut buf) {
            let p = &buf[10..len];
            if p.len() >= 28 && p[9] == 17 && p[16..20] == [10, 4, 0, 9] {
                *n += 1;
            }
        }
    }
    assert_eq!(seen[0] + seen[1], 32, "every datagram out of one queue: {seen:?}");
    assert!(mq.recv_queue(2, &mut buf).is_err(), "no third queue");
    drop(mq);
    println!("inner: all checks passed");
}
