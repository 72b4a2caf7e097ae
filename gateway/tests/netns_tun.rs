//! TUN creation, MTU, link state, packet I/O and route install/remove, inside a
//! throwaway network namespace (`vgtest-<pid>`), never in the host's.
//!
//! The outer test creates the namespace and re-runs this test binary inside it with
//! `ip netns exec`, selecting the `#[ignore]`d inner test, which only acts when the
//! environment says it runs inside the namespace. A guard deletes the namespace even
//! when an assertion fails. Needs root (skips with a message otherwise).

use gateway::sys::route::{ip_binary, route_for, Routes};
use gateway::sys::tun::Tun;
use ipsec_types::TrafficSelector;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;

const INNER_ENV: &str = "VG_GATEWAY_NETNS_INNER";

fn ip(args: &[&str]) -> (bool, String) {
    let out = Command::new(ip_binary().unwrap()).args(args).output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

#[test]
fn tun_and_routes_in_a_network_namespace() {
    if !gateway::sys::is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let ns = Netns(format!("vgtest-{}", std::process::id()));
    let (ok, out) = ip(&["netns", "add", &ns.0]);
    assert!(ok, "ip netns add: {out}");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(ip_binary().unwrap())
        .args(["netns", "exec", &ns.0])
        .arg(exe)
        .args(["--exact", "inner_tun_and_routes", "--ignored", "--nocapture", "--test-threads=1"])
        .env(INNER_ENV, &ns.0)
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "inner test failed:\n{log}");
    assert!(log.contains("inner: all checks passed"), "inner test did not run:\n{log}");
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet (UDP checksum 0 = none).
fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = ipv4_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Runs only inside the namespace made by the outer test.
#[test]
#[ignore = "runs inside the network namespace created by tun_and_routes_in_a_network_namespace"]
fn inner_tun_and_routes() {
    let Ok(ns) = std::env::var(INNER_ENV) else {
        eprintln!("not inside a test namespace: nothing to do");
        return;
    };
    // Make sure we really are in the throwaway namespace before touching anything.
    let (_, ident) = ip(&["netns", "identify"]);
    assert_eq!(ident.trim(), ns, "not in the expected namespace");

    // A LAN-side address inside local_subnets (veth: this kernel has no dummy driver).
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
    let pkt = udp_packet(Ipv4Addr::new(10, 2, 0, 5), Ipv4Addr::new(10, 1, 0, 1), 4444, 5555, b"from afar");
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
    println!("inner: all checks passed");
}
