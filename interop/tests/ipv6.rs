//! IPv6 inside and outside the tunnel, in network namespaces.
//!
//! Every scenario protects both families at once: one CHILD SA whose selectors are
//! `10.1.0.0/24, fd00:a::/64` <-> `10.2.0.0/24, fd00:b::/64` (the LANs are dual stack),
//! carried over an IPv4 WAN (192.0.2.0/24) or an IPv6-only WAN (2001:db8:ff::/64):
//!
//! ```text
//!  lanA 10.1.0.10 fd00:a::10 ─ gwA 192.0.2.1 | 2001:db8:ff::1 ══ ... ::2 | 192.0.2.2 gwB ─ lanB 10.2.0.10 fd00:b::10
//! ```
//!
//! Each proves, with one tunnel set up once: pings both ways in both families, a
//! 10 MiB TCP transfer in each family checked by SHA-256 at the far end, CHILD SA
//! selectors of both families on both sides, ICMPv6 Packet Too Big from the vpngw
//! gateway for a packet above the TUN MTU and a packet of exactly that MTU across, and a
//! WAN capture showing the expected encapsulation, only in the WAN's family, and no
//! cleartext of either family. Against strongSwan, charon must see no NAT: vpngw's
//! NAT_DETECTION hashes (over IPv6 addresses on the IPv6 WAN) match its own.
//! vpngw <-> vpngw runs raw ESP (`encapsulation = "raw"` without a NAT, which also
//! proves the NAT-D hashes over IPv6 addresses match) and ESP-in-UDP (`"udp"`);
//! strongSwan (kernel-libipsec, which always encapsulates in UDP) runs in both roles.
//! On the IPv6 WAN the strongSwan scenarios authenticate with IPv6-address identities
//! (ID_IPV6_ADDR).
//!
//! Needs root (else `SKIPPED`); run one at a time under the namespace lock:
//! `flock /work/netns.lock cargo test --release -p interop --test ipv6 -- --test-threads=1`.

use std::path::PathBuf;

use gateway::control::proto::StatusReport;
use interop::capture::{FRAGMENT_FILTER, WAN_V4_FILTER, WAN_V6_FILTER};
use interop::netns::{self, Topology};
use interop::scenario::{
    run_scenario_on, swan_site_a, swan_site_b, vpngw_site_a, vpngw_site_b, Scenario, WanExpect, SA_TIMEOUT,
};
use interop::strongswan::{StrongSwan, SwanConfig};
use interop::traffic;
use interop::vpngw::{child_sas, one_line, Encap, GatewayConfig, Start, Vpngw};
use interop::{ensure, Binaries, Result};

fn nettool() -> PathBuf {
    std::env::var_os("NETTOOL_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nettool")), PathBuf::from)
}

fn binaries() -> Result<Binaries> {
    Binaries::locate(nettool())
}

/// The WAN's address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wan {
    V4,
    V6,
}

impl Wan {
    fn topology(self) -> fn(&str) -> Result<Topology> {
        match self {
            Self::V4 => Topology::create_dual_stack,
            Self::V6 => Topology::create_v6_wan,
        }
    }

    /// (gwA, gwB) WAN addresses.
    fn addrs(self) -> (&'static str, &'static str) {
        match self {
            Self::V4 => (netns::GW_A_WAN, netns::GW_B_WAN),
            Self::V6 => (netns::GW_A_WAN6, netns::GW_B_WAN6),
        }
    }
}

const NETS_A: [&str; 2] = [netns::LAN_A_NET, netns::LAN_A_NET6];
const NETS_B: [&str; 2] = [netns::LAN_B_NET, netns::LAN_B_NET6];

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// vpngw at site A (`a`) or B on `wan`, protecting both families of its LAN.
fn vpngw_cfg(a: bool, wan: Wan, start: Start, encap: Encap) -> GatewayConfig {
    let (wan_a, wan_b) = wan.addrs();
    let mut cfg = if a { vpngw_site_a(start, encap) } else { vpngw_site_b(start, encap) };
    let (local, remote, nets_l, nets_r) =
        if a { (wan_a, wan_b, NETS_A, NETS_B) } else { (wan_b, wan_a, NETS_B, NETS_A) };
    cfg.local_address = local.into();
    let t = &mut cfg.tunnels[0];
    t.remote_address = remote.into();
    t.local_subnets = strings(&nets_l);
    t.remote_subnets = strings(&nets_r);
    cfg
}

/// strongSwan at site A or B on `wan`, protecting both families; on the IPv6 WAN both
/// identities are the WAN addresses (ID_IPV6_ADDR).
fn swan_cfg(a: bool, wan: Wan, initiate: bool) -> SwanConfig {
    let (wan_a, wan_b) = wan.addrs();
    let mut cfg = if a { swan_site_a(initiate) } else { swan_site_b(initiate) };
    let (local, remote, nets_l, nets_r) =
        if a { (wan_a, wan_b, NETS_A, NETS_B) } else { (wan_b, wan_a, NETS_B, NETS_A) };
    cfg.local_addr = local.into();
    cfg.remote_addr = remote.into();
    cfg.local_ts = nets_l.join(",");
    cfg.remote_ts = nets_r.join(",");
    if wan == Wan::V6 {
        cfg.local_id = local.into();
        cfg.remote_id = remote.into();
    }
    cfg
}

/// The vpngw side of a strongSwan scenario with IPv6-address identities on the IPv6 WAN.
fn vpngw_cfg_for_swan(a: bool, wan: Wan, start: Start) -> GatewayConfig {
    let mut cfg = vpngw_cfg(a, wan, start, Encap::Auto);
    if wan == Wan::V6 {
        let (wan_a, wan_b) = wan.addrs();
        let t = &mut cfg.tunnels[0];
        (t.local_id, t.remote_id) = if a { (wan_a.into(), wan_b.into()) } else { (wan_b.into(), wan_a.into()) };
    }
    cfg
}

/// Every INSTALLED CHILD SA carries selectors of both families on both sides, with the
/// expected encapsulation (`raw` or `udp`); and, with `id`, the IKE SA's identities are
/// those addresses.
fn check_vpngw(side: &str, st: &StatusReport, mode: &str, ids: Option<(&str, &str)>) -> Result<()> {
    let children: Vec<_> = child_sas(st).into_iter().filter(|c| c.state.eq_ignore_ascii_case("installed")).collect();
    ensure!(!children.is_empty(), "{side}: no INSTALLED CHILD SA: {}", one_line(st));
    for c in children {
        let fams = |ts: &[String]| (ts.iter().any(|t| !t.contains(':')), ts.iter().any(|t| t.contains(':')));
        ensure!(
            fams(&c.local_ts) == (true, true) && fams(&c.remote_ts) == (true, true),
            "{side}: CHILD SA selectors are not dual stack: {:?} <-> {:?}",
            c.local_ts,
            c.remote_ts
        );
        let m = interop::vpngw::encap_mode(&c.encapsulation);
        ensure!(m == mode, "{side}: CHILD SA encapsulation is {m}, expected {mode}");
    }
    if let Some((local, remote)) = ids {
        let ike = st.tunnels.iter().flat_map(|t| &t.ike_sas).next();
        ensure!(
            ike.is_some_and(|i| i.local_id == local && i.remote_id == remote),
            "{side}: IKE identities are not {local} / {remote}: {}",
            one_line(st)
        );
    }
    Ok(())
}

/// strongSwan installed the CHILD SA with both families on both sides.
fn check_swan(sas: &str) -> Result<()> {
    for net in NETS_A.iter().chain(&NETS_B) {
        ensure!(sas.contains(net), "strongSwan's CHILD SA lacks {net}:\n{sas}");
    }
    Ok(())
}

/// Pings both ways in both families, then a 10 MiB transfer in each family.
fn prove_dual_stack(sc: &Scenario, bins: &Binaries) -> Result<()> {
    let (ab4, ba4) = sc.ping_both_ways()?;
    let (ab6, ba6) = sc.ping_hosts_both_ways(netns::LAN_B_HOST6, netns::LAN_A_HOST6)?;
    let t4 = sc.transfer(&bins.nettool)?;
    let t6 = sc.transfer_to(&bins.nettool, netns::LAN_B_HOST6, 5002)?;
    let mbit = |t: &traffic::Transfer| t.bytes as f64 * 8.0 / t.elapsed.as_secs_f64().max(1e-3) / 1e6;
    println!(
        "[{}] ping IPv4 {}/{} + {}/{}, IPv6 {}/{} + {}/{}; TCP over IPv4 {} bytes ({:.0} Mbit/s), over IPv6 {} bytes \
         ({:.0} Mbit/s), sha256 match at the far end",
        sc.name,
        ab4.received,
        ab4.transmitted,
        ba4.received,
        ba4.transmitted,
        ab6.received,
        ab6.transmitted,
        ba6.received,
        ba6.transmitted,
        t4.bytes,
        mbit(&t4),
        t6.bytes,
        mbit(&t6),
    );
    Ok(())
}

/// ICMPv6 and the MTU, from the host behind a vpngw (`from_a`: lanA, else lanB): a
/// 1500-byte IPv6 packet that may not be fragmented is answered by the gateway with a
/// Packet Too Big naming the TUN MTU (1400), and one of exactly 1400 bytes crosses the
/// tunnel, ESP and outer headers added, and is answered.
fn check_icmpv6_mtu(sc: &Scenario, from_a: bool) -> Result<()> {
    let (ns, dst, gw) = if from_a {
        (&sc.topo.lan_a, netns::LAN_B_HOST6, netns::GW_A_LAN6)
    } else {
        (&sc.topo.lan_b, netns::LAN_A_HOST6, netns::GW_B_LAN6)
    };
    let ping = |size: &str| -> Result<String> {
        let out = ns
            .exec(&["ping", "-6", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", size, dst])
            .output()
            .map_err(|e| interop::Error::new(format!("cannot run ping: {e}")))?;
        Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    // 1452 bytes of payload + 8 ICMPv6 + 40 IPv6 = 1500.
    let big = ping("1452")?;
    ensure!(
        big.contains(&format!("From {gw}")) && big.contains("Packet too big") && big.contains("mtu=1400"),
        "a 1500-byte IPv6 packet did not get a Packet Too Big (mtu=1400) from {gw}:\n{big}"
    );
    let fits = ping("1352")?;
    ensure!(
        traffic::parse_ping(&fits).is_some_and(|p| p.received == 1),
        "a 1400-byte IPv6 packet did not cross the tunnel:\n{fits}"
    );
    println!("[{}] ICMPv6: Packet Too Big mtu=1400 from {gw} for 1500 bytes; 1400 bytes cross", sc.name);
    Ok(())
}

/// strongSwan found no NAT in either direction, so the NAT_DETECTION hashes vpngw
/// computed (over IPv6 addresses on the IPv6 WAN) are the ones strongSwan computes.
fn check_swan_saw_no_nat(swan: &StrongSwan) -> Result<()> {
    let log = swan.log_text();
    ensure!(!log.contains("behind NAT"), "strongSwan believes in a NAT (NAT-D hashes differ):\n{}", swan.diagnostics());
    Ok(())
}

/// The WAN capture: the expected encapsulation, no cleartext of either family, every
/// IKE/ESP packet in the WAN's family only, and no fragments.
fn check_wan(sc: &Scenario, cap: interop::capture::Capture, expect: WanExpect, wan: Wan) -> Result<()> {
    let (_, pcap) = sc.check_wan_pcap(cap, expect)?;
    let (v4, v6) = (pcap.count(WAN_V4_FILTER)?, pcap.count(WAN_V6_FILTER)?);
    let (own, other) = if wan == Wan::V6 { (v6, v4) } else { (v4, v6) };
    ensure!(own > 0 && other == 0, "WAN is {wan:?} but carried {v4} IPv4 and {v6} IPv6 IKE/ESP packets");
    // The TUN MTU leaves room for ESP and the outer header: nothing gets fragmented.
    let fragments = pcap.count(FRAGMENT_FILTER)?;
    ensure!(fragments == 0, "{fragments} fragmented packets on the WAN");
    println!("[{}] WAN {wan:?}: {own} IKE/ESP packets, none in the other family", sc.name);
    Ok(())
}

/// vpngw <-> vpngw: B responds, A initiates.
fn vpngw_pair(name: &str, wan: Wan, encap: Encap, expect: WanExpect) {
    run_scenario_on(name, wan.topology(), |sc| {
        let bins = binaries()?;
        let mode = if expect == WanExpect::RawEsp { "raw" } else { "udp" };
        let cap = sc.capture_wan()?;
        let mut b =
            Vpngw::start(&sc.topo.gw_b, &vpngw_cfg(false, wan, Start::Respond, encap), &sc.subdir("gwb"), &bins)?;
        let mut a =
            Vpngw::start(&sc.topo.gw_a, &vpngw_cfg(true, wan, Start::Initiate, encap), &sc.subdir("gwa"), &bins)?;
        check_vpngw("gwA", &a.wait_child_sa(SA_TIMEOUT)?, mode, None)?;
        check_vpngw("gwB", &b.wait_child_sa(SA_TIMEOUT)?, mode, None)?;
        // Before any bulk traffic, which teaches the host the path MTU.
        check_icmpv6_mtu(sc, true)?;
        prove_dual_stack(sc, &bins)?;
        check_wan(sc, cap, expect, wan)?;
        a.stop()?;
        b.stop()?;
        Ok(())
    });
}

/// vpngw initiates to a strongSwan responder (ESP-in-UDP: libipsec encapsulates).
fn vpngw_initiator_to_strongswan(name: &str, wan: Wan) {
    run_scenario_on(name, wan.topology(), |sc| {
        let bins = binaries()?;
        let cap = sc.capture_wan()?;
        let mut b = StrongSwan::start(&sc.topo.gw_b, &swan_cfg(false, wan, false), &sc.subdir("gwb"))?;
        let cfg = vpngw_cfg_for_swan(true, wan, Start::Initiate);
        let mut a = Vpngw::start(&sc.topo.gw_a, &cfg, &sc.subdir("gwa"), &bins)?;
        let ids = (wan == Wan::V6).then_some((netns::GW_A_WAN6, netns::GW_B_WAN6));
        check_vpngw("gwA", &a.wait_child_sa(SA_TIMEOUT)?, "udp", ids)?;
        check_swan(&b.wait_child_sa(SA_TIMEOUT)?)?;
        check_swan_saw_no_nat(&b)?;
        // Before any bulk traffic, which teaches the host the path MTU.
        check_icmpv6_mtu(sc, true)?;
        prove_dual_stack(sc, &bins)?;
        check_wan(sc, cap, WanExpect::EspInUdp, wan)?;
        a.stop()?;
        Ok(())
    });
}

/// strongSwan initiates to a vpngw responder; with `esp` both propose that ESP
/// proposal only, and strongSwan must have installed `esp_name` (its spelling).
fn strongswan_initiator_to_vpngw(name: &str, wan: Wan, esp: Option<(&str, &str)>) {
    run_scenario_on(name, wan.topology(), |sc| {
        let bins = binaries()?;
        let cap = sc.capture_wan()?;
        let mut cfg = vpngw_cfg_for_swan(false, wan, Start::Respond);
        let mut swan = swan_cfg(true, wan, true);
        if let Some((proposal, _)) = esp {
            cfg.tunnels[0].esp_proposals = vec![proposal.into()];
            swan.esp_proposal = proposal.into();
        }
        let mut b = Vpngw::start(&sc.topo.gw_b, &cfg, &sc.subdir("gwb"), &bins)?;
        let mut a = StrongSwan::start(&sc.topo.gw_a, &swan, &sc.subdir("gwa"))?;
        let sas = a.wait_child_sa(SA_TIMEOUT)?;
        check_swan(&sas)?;
        if let Some((_, esp_name)) = esp {
            ensure!(sas.contains(esp_name), "strongSwan's CHILD SA is not {esp_name}:\n{sas}");
        }
        let ids = (wan == Wan::V6).then_some((netns::GW_B_WAN6, netns::GW_A_WAN6));
        check_vpngw("gwB", &b.wait_child_sa(SA_TIMEOUT)?, "udp", ids)?;
        check_swan_saw_no_nat(&a)?;
        // Before any bulk traffic, which teaches the host the path MTU.
        check_icmpv6_mtu(sc, false)?;
        prove_dual_stack(sc, &bins)?;
        check_wan(sc, cap, WanExpect::EspInUdp, wan)?;
        b.stop()?;
        Ok(())
    });
}

#[test]
fn ipv6_wan_vpngw_pair_raw_esp() {
    vpngw_pair("ipv6_wan_vpngw_pair_raw_esp", Wan::V6, Encap::Raw, WanExpect::RawEsp);
}

#[test]
fn ipv6_wan_vpngw_pair_udp_encap() {
    vpngw_pair("ipv6_wan_vpngw_pair_udp_encap", Wan::V6, Encap::Udp, WanExpect::EspInUdp);
}

#[test]
fn ipv4_wan_vpngw_pair_raw_esp_dual_stack_inside() {
    vpngw_pair("ipv4_wan_vpngw_pair_raw_esp_dual_stack_inside", Wan::V4, Encap::Raw, WanExpect::RawEsp);
}

#[test]
fn ipv4_wan_vpngw_pair_udp_encap_dual_stack_inside() {
    vpngw_pair("ipv4_wan_vpngw_pair_udp_encap_dual_stack_inside", Wan::V4, Encap::Udp, WanExpect::EspInUdp);
}

#[test]
fn ipv6_wan_vpngw_initiator_to_strongswan() {
    vpngw_initiator_to_strongswan("ipv6_wan_vpngw_initiator_to_strongswan", Wan::V6);
}

/// With AES-CBC + HMAC-SHA256 ESP, whose overhead is the largest the default TUN MTU
/// fits into a 1500-byte IPv6 WAN with UDP encapsulation (1496 bytes for a full packet;
/// the capture proves nothing was fragmented).
#[test]
fn ipv6_wan_strongswan_initiator_to_vpngw() {
    let esp = ("aes128-sha256", "ESP:AES_CBC-128/HMAC_SHA2_256_128");
    strongswan_initiator_to_vpngw("ipv6_wan_strongswan_initiator_to_vpngw", Wan::V6, Some(esp));
}

#[test]
fn ipv4_wan_vpngw_initiator_to_strongswan_dual_stack_inside() {
    vpngw_initiator_to_strongswan("ipv4_wan_vpngw_initiator_to_strongswan_dual_stack_inside", Wan::V4);
}

#[test]
fn ipv4_wan_strongswan_initiator_to_vpngw_dual_stack_inside() {
    strongswan_initiator_to_vpngw("ipv4_wan_strongswan_initiator_to_vpngw_dual_stack_inside", Wan::V4, None);
}

/// Negative control for the WAN check over IPv6: with plain IPv6 routing and no IPsec,
/// the capture must see the IPv6 pings in cleartext and the check must reject them;
/// and a 3000-byte ping, fragmented by the host, must show up as fragments.
#[test]
fn ipv6_wan_check_detects_cleartext_without_ipsec() {
    run_scenario_on("ipv6_wan_check_detects_cleartext_without_ipsec", Topology::create_v6_wan, |sc| {
        sc.topo.gw_a.ip(&["-6", "route", "add", netns::LAN_B_NET6, "via", netns::GW_B_WAN6])?;
        sc.topo.gw_b.ip(&["-6", "route", "add", netns::LAN_A_NET6, "via", netns::GW_A_WAN6])?;
        let cap = sc.capture_wan()?;
        let st = traffic::ping(&sc.topo.lan_a, netns::LAN_B_HOST6, 3)?;
        ensure!(st.received == st.transmitted, "plain-routed IPv6 pings got lost: {st:?}\n{}", sc.topo.describe());
        let big = sc.topo.lan_a.run(&["ping", "-6", "-n", "-c", "1", "-W", "2", "-s", "3000", netns::LAN_B_HOST6])?;
        ensure!(traffic::parse_ping(&big).is_some_and(|p| p.received == 1), "a 3000-byte ping got lost:\n{big}");
        let err = sc.check_wan(cap, WanExpect::NoEsp).err();
        ensure!(
            err.as_ref().is_some_and(|e| e.to_string().contains("cleartext")),
            "plain-routed IPv6 pings were not flagged as cleartext on the WAN: {err:?}"
        );
        // Request and reply, two fragments each.
        let pcap = interop::capture::Pcap { file: sc.dir.join("wan.pcap"), dropped: 0 };
        let fragments = pcap.count(FRAGMENT_FILTER)?;
        ensure!(fragments >= 4, "the capture shows {fragments} fragments of the 3000-byte ping, not 4");
        Ok(())
    });
}
