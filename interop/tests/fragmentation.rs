//! IKE fragmentation (RFC 7383) against strongSwan, in both roles, over a WAN whose MTU
//! is 1280 with both sides' fragment size at 576 octets:
//!
//! - the IKE_AUTH request is large (identities of about 200 octets, a dozen ESP
//!   proposals), and the CHILD rekeys (PFS) and the IKE rekey carry MODP-4096 key
//!   exchanges of 512 octets, so the IKE_AUTH request and the requests and responses of
//!   the rekeys, from each side, travel as IKE fragments; the WAN capture shows them
//!   (an IKE_AUTH response with PSK stays under 576 octets);
//! - no IP fragment crosses the WAN: an nftables netdev ingress rule on each gateway's
//!   WAN interface drops and counts IP fragments (a ping larger than the MTU proves the
//!   counter works first), it stays at that count, and the capture holds none either;
//! - the tunnel carries traffic (ping both ways, a 10 MiB transfer checked by SHA-256)
//!   before and after the rekeys.
//!
//! Needs root (`SKIPPED` otherwise, a failure under `CI=true`):
//! `cargo test --release -p interop --test fragmentation -- --test-threads=1`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use interop::capture::Capture;
use interop::ikewire::{ike_in_udp, pcap_ipv4, udp_in_ipv4, CREATE_CHILD_SA, IKE_AUTH};
use interop::netns::{self, Netns, HOST_IF, LAN_IF, WAN_IF};
use interop::scenario::{run_scenario, swan_site_a, swan_site_b, vpngw_site_a, vpngw_site_b, Scenario, SA_TIMEOUT};
use interop::strongswan::{StrongSwan, SwanConfig, SwanExtra};
use interop::vpngw::{child_sas, installed_child_sas, one_line, Encap, GatewayConfig, Start, Vpngw};
use interop::{ensure, wait_for, Binaries, Error, Result};

/// The WAN link's MTU: IKE_SA_INIT with a MODP-4096 key exchange (about 700 octets) fits
/// whole, IKE_AUTH and the rekeys would not fit the fragment size.
const WAN_MTU: &str = "1280";
/// The LAN links' MTU: ESP-in-UDP of a 1200-octet packet fits the WAN.
const LAN_MTU: &str = "1200";
/// Both sides' IKE fragment size (IP datagram octets).
const FRAGMENT_SIZE: &str = "576";
/// The IKE proposal of each run: AES-GCM when vpngw initiates, AES-CBC with HMAC (a
/// random IV per fragment) when strongSwan does.
fn ike_proposal(vpngw_on_a: bool) -> &'static str {
    if vpngw_on_a {
        "aes256gcm16-prfsha256-modp4096"
    } else {
        "aes256-sha256-modp4096"
    }
}
/// The ESP proposals both sides list (PFS with MODP-4096 first, the one chosen).
const ESP_PROPOSALS: [&str; 12] = [
    "aes256gcm16-modp4096",
    "aes128gcm16-modp4096",
    "aes256gcm16-modp3072",
    "aes128gcm16-modp3072",
    "aes256gcm16-modp2048",
    "aes128gcm16-modp2048",
    "aes256gcm16-ecp384",
    "aes128gcm16-ecp384",
    "aes256gcm16-ecp256",
    "aes128gcm16-ecp256",
    "aes256gcm16-x25519",
    "aes128gcm16-x25519",
];
/// The Encrypted Fragment payload type.
const SKF: u8 = 53;

/// An FQDN identity of about 200 octets (swanctl does not match a secret's identity of
/// more than 255).
fn long_id(site: &str) -> String {
    let label = "f".repeat(60);
    format!("gw-{site}.{}.example.net", [label.as_str(); 3].join("."))
}

fn nettool() -> PathBuf {
    std::env::var_os("NETTOOL_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nettool")), PathBuf::from)
}

fn vpngw_cfg(site_a: bool, start: Start, ike: &str) -> GatewayConfig {
    let mut cfg = if site_a { vpngw_site_a(start, Encap::Auto) } else { vpngw_site_b(start, Encap::Auto) };
    let (us, them) = if site_a { ("a", "b") } else { ("b", "a") };
    let t = &mut cfg.tunnels[0];
    (t.local_id, t.remote_id) = (long_id(us), long_id(them));
    t.ike_proposals = vec![ike.into()];
    t.esp_proposals = ESP_PROPOSALS.iter().map(|p| (*p).to_string()).collect();
    t.extra = vec![("fragmentation".into(), "true".into()), ("fragment_size".into(), FRAGMENT_SIZE.into())];
    cfg
}

fn swan_cfg(site_a: bool, initiate: bool, ike: &str) -> (SwanConfig, SwanExtra) {
    let mut cfg = if site_a { swan_site_a(initiate) } else { swan_site_b(initiate) };
    let (us, them) = if site_a { ("a", "b") } else { ("b", "a") };
    (cfg.local_id, cfg.remote_id) = (long_id(us), long_id(them));
    cfg.ike_proposal = ike.into();
    cfg.esp_proposal = ESP_PROPOSALS.join(",");
    let extra = SwanExtra {
        charon: vec![("fragment_size".into(), FRAGMENT_SIZE.into())],
        connection: vec![("fragmentation".into(), "yes".into())],
    };
    (cfg, extra)
}

/// WAN MTU 1280, LAN MTU 1200 on every LAN link.
fn shrink_links(sc: &Scenario) -> Result<()> {
    let t = &sc.topo;
    for gw in [&t.gw_a, &t.gw_b] {
        gw.ip(&["link", "set", WAN_IF, "mtu", WAN_MTU])?;
        gw.ip(&["link", "set", LAN_IF, "mtu", LAN_MTU])?;
    }
    for host in [&t.lan_a, &t.lan_b] {
        host.ip(&["link", "set", HOST_IF, "mtu", LAN_MTU])?;
    }
    Ok(())
}

/// An nftables netdev table on a gateway's WAN interface that drops and counts every IP
/// fragment arriving there (first fragments and later ones alike). Deleted on drop.
struct FragmentTrap<'a> {
    ns: &'a Netns,
}

impl<'a> FragmentTrap<'a> {
    fn install(ns: &'a Netns, dir: &std::path::Path) -> Result<Self> {
        let text = format!(
            "add table netdev vgfrag\nadd counter netdev vgfrag fragments\n\
             add chain netdev vgfrag in {{ type filter hook ingress device {WAN_IF} priority -500; }}\n\
             add rule netdev vgfrag in ip frag-off & 0x3fff != 0 counter name fragments drop\n"
        );
        let file = dir.join(format!("vgfrag-{}.nft", ns.name()));
        std::fs::create_dir_all(dir)?;
        std::fs::write(&file, text)?;
        ns.run(&["nft", "-f", &file.to_string_lossy()])?;
        Ok(Self { ns })
    }

    fn count(&self) -> Result<u64> {
        let text = self.ns.run(&["nft", "list", "counter", "netdev", "vgfrag", "fragments"])?;
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "packets" {
                return words.next().and_then(|n| n.parse().ok()).ok_or_else(|| Error::new(text.clone()));
            }
        }
        Err(Error::new(format!("no packet count in {text}")))
    }
}

impl Drop for FragmentTrap<'_> {
    fn drop(&mut self) {
        let _ = self.ns.run(&["nft", "delete", "table", "netdev", "vgfrag"]);
    }
}

/// IKE fragments seen on the WAN, by (sender is gwA, exchange, response).
#[derive(Debug, Default)]
struct WireFragments {
    /// (from A, exchange, response) -> fragments.
    seen: std::collections::BTreeMap<(bool, u8, bool), usize>,
    /// IP fragments in the capture.
    ip_fragments: usize,
}

impl WireFragments {
    fn read(file: &std::path::Path) -> Result<Self> {
        let data = std::fs::read(file)?;
        let frames = pcap_ipv4(&data).ok_or_else(|| Error::new(format!("{} is no pcap", file.display())))?;
        let a: Ipv4Addr = netns::GW_A_WAN.parse().map_err(|_| Error::new("address"))?;
        let mut out = Self::default();
        for f in frames {
            let frag = f.ip.get(6..8).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) & 0x3fff);
            if frag != 0 {
                out.ip_fragments += 1;
                continue;
            }
            let Some(udp) = udp_in_ipv4(f.ip) else { continue };
            let Some(ike) = ike_in_udp(&udp) else { continue };
            if ike.get(16) == Some(&SKF) {
                let (Some(&exchange), Some(&flags)) = (ike.get(18), ike.get(19)) else { continue };
                let response = flags & 0x20 != 0;
                *out.seen.entry((udp.src == a, exchange, response)).or_default() += 1;
            }
        }
        Ok(out)
    }

    fn get(&self, from_a: bool, exchange: u8, response: bool) -> usize {
        self.seen.get(&(from_a, exchange, response)).copied().unwrap_or(0)
    }
}

/// One run: vpngw on `vpngw_on_a ? gwA : gwB`, strongSwan on the other gateway; the
/// gateway on gwA initiates.
fn fragmented(sc: &Scenario, vpngw_on_a: bool) -> Result<()> {
    let bins = Binaries::locate(nettool())?;
    shrink_links(sc)?;
    let trap_a = FragmentTrap::install(&sc.topo.gw_a, &sc.dir)?;
    let trap_b = FragmentTrap::install(&sc.topo.gw_b, &sc.dir)?;
    // The trap works: a ping larger than the WAN MTU leaves gwA in IP fragments, which
    // gwB counts (and drops, so the ping itself fails).
    let _ = sc.topo.gw_a.run(&["ping", "-c", "1", "-W", "1", "-s", "1400", "-M", "dont", netns::GW_B_WAN]);
    let base_b = trap_b.count()?;
    ensure!(base_b >= 2, "the fragment trap on gwB counted {base_b} fragments of a 1,428-octet ping");
    let base_a = trap_a.count()?;

    let cap = Capture::start(&sc.topo.gw_a, WAN_IF, &sc.dir, "wan")?;
    let swan_dir = sc.subdir(if vpngw_on_a { "gwb" } else { "gwa" });
    let ike = ike_proposal(vpngw_on_a);
    let (mut vpngw, mut swan) = if vpngw_on_a {
        let (scfg, extra) = swan_cfg(false, false, ike);
        let swan = StrongSwan::start_with(&sc.topo.gw_b, &scfg, &extra, &swan_dir)?;
        let vpngw = Vpngw::start(&sc.topo.gw_a, &vpngw_cfg(true, Start::Initiate, ike), &sc.subdir("gwa"), &bins)?;
        (vpngw, swan)
    } else {
        let vpngw = Vpngw::start(&sc.topo.gw_b, &vpngw_cfg(false, Start::Respond, ike), &sc.subdir("gwb"), &bins)?;
        let (scfg, extra) = swan_cfg(true, true, ike);
        let swan = StrongSwan::start_with(&sc.topo.gw_a, &scfg, &extra, &swan_dir)?;
        (vpngw, swan)
    };
    let first = vpngw.wait_child_sa(SA_TIMEOUT)?;
    swan.wait_child_sa(SA_TIMEOUT)?;
    sc.prove_traffic(&bins.nettool)?;

    // CHILD rekeys (PFS, MODP-4096) from each side, then an IKE rekey from vpngw.
    let spi_of = |st: &gateway::control::proto::StatusReport| -> Option<String> {
        child_sas(st).into_iter().find(|c| c.state.eq_ignore_ascii_case("installed")).map(|c| c.spi_in.clone())
    };
    let ike_of = |st: &gateway::control::proto::StatusReport| -> Vec<String> {
        st.tunnels
            .iter()
            .flat_map(|t| &t.ike_sas)
            .filter(|s| s.state == "ESTABLISHED")
            .map(|s| s.spi_i.clone())
            .collect()
    };
    let child0 = spi_of(&first).ok_or_else(|| Error::new(format!("no CHILD SA: {}", one_line(&first))))?;
    vpngw.rekey("peer", false)?;
    let child1 = wait_for(Duration::from_secs(30), "vpngw's CHILD rekey", || {
        let st = vpngw.status().ok()?;
        spi_of(&st).filter(|s| *s != child0 && installed_child_sas(&st) == 1)
    })
    .map_err(|e| Error::new(format!("{e}\n{}", swan.diagnostics())))?;
    swan.rekey(false)?;
    wait_for(Duration::from_secs(30), "strongSwan's CHILD rekey", || {
        let st = vpngw.status().ok()?;
        spi_of(&st).filter(|s| *s != child1 && installed_child_sas(&st) == 1)
    })
    .map_err(|e| Error::new(format!("{e}\n{}", swan.diagnostics())))?;
    let ike0 = ike_of(&vpngw.status()?);
    vpngw.rekey("peer", true)?;
    wait_for(Duration::from_secs(30), "vpngw's IKE rekey", || {
        let st = vpngw.status().ok()?;
        let now = ike_of(&st);
        (now.len() == 1 && !ike0.contains(&now[0]) && installed_child_sas(&st) == 1).then_some(())
    })
    .map_err(|e| Error::new(format!("{e}\n{}", swan.diagnostics())))?;
    let (ab, ba) = sc.ping_both_ways()?;
    println!(
        "[{}] after the rekeys: ping lanA->lanB {}/{}, lanB->lanA {}/{}",
        sc.name, ab.received, ab.transmitted, ba.received, ba.transmitted
    );

    let pcap = cap.stop()?;
    let s = pcap.summary()?;
    println!("[{}] {s}", sc.name);
    ensure!(s.missed == 0 && s.clear == 0 && s.esp_in_udp > 0, "WAN: {s}");
    let wire = WireFragments::read(&pcap.file)?;
    println!("[{}] IKE fragments on the WAN (from gwA?, exchange, response): {:?}", sc.name, wire.seen);
    ensure!(wire.ip_fragments == 0, "{} IP fragments in the WAN capture", wire.ip_fragments);
    let (fa, fb) = (trap_a.count()? - base_a, trap_b.count()? - base_b);
    ensure!(fa == 0 && fb == 0, "IP fragments reached the gateways: gwA {fa}, gwB {fb}");
    // gwA initiated the IKE SA: its IKE_AUTH request was fragmented; each side's CHILD
    // rekey request and the other's response too; the IKE rekey (vpngw's request,
    // strongSwan's response).
    let mut missing = Vec::new();
    for (from_a, exch, resp, what) in [
        (true, IKE_AUTH, false, "IKE_AUTH request from gwA"),
        (true, CREATE_CHILD_SA, false, "CREATE_CHILD_SA request from gwA"),
        (false, CREATE_CHILD_SA, true, "CREATE_CHILD_SA response from gwB"),
        (false, CREATE_CHILD_SA, false, "CREATE_CHILD_SA request from gwB"),
        (true, CREATE_CHILD_SA, true, "CREATE_CHILD_SA response from gwA"),
    ] {
        if wire.get(from_a, exch, resp) < 2 {
            missing.push(what);
        }
    }
    ensure!(missing.is_empty(), "not fragmented: {missing:?}; seen {:?}", wire.seen);
    let log = swan.log_text();
    ensure!(
        log.contains("reassembled fragmented IKE message") && log.contains("into") && log.contains("fragments"),
        "charon's log shows no reassembly or splitting:\n{}",
        swan.diagnostics()
    );
    let d = vpngw.status()?.ike.drops;
    ensure!(
        d.fragment_malformed + d.fragment_unauthenticated + d.fragment_limit == 0,
        "vpngw dropped fragments: {d:?}"
    );
    Ok(())
}

/// vpngw initiates on gwA, strongSwan responds on gwB (IKE SA with AES-GCM).
#[test]
fn vpngw_initiator_fragments_with_strongswan() {
    run_scenario("vpngw_initiator_fragments_with_strongswan", |sc| fragmented(sc, true));
}

/// strongSwan initiates on gwA, vpngw responds on gwB (IKE SA with AES-CBC and HMAC).
#[test]
fn strongswan_initiator_fragments_with_vpngw() {
    run_scenario("strongswan_initiator_fragments_with_vpngw", |sc| fragmented(sc, false));
}
