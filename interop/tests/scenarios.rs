//! Interop scenarios in network namespaces:
//! lanA 10.1.0.10 — gwA 192.0.2.1 ═ WAN ═ 192.0.2.2 gwB — lanB 10.2.0.10.
//!
//! Each passing scenario proves that ping and a 10 MiB TCP transfer (SHA-256 checked at
//! the far end) cross the tunnel and that the WAN carries only ESP; each failing-by-design
//! scenario proves nothing gets installed, the error is logged and both daemons survive.
//! Everything is torn down by RAII guards, also when a check fails or panics.
//!
//! Needs root: as another user every scenario prints `SKIPPED <name>: <reason>` and
//! passes, except under `CI=true`, where it fails. Run them one
//! at a time: `cargo test --release -p interop --test scenarios -- --test-threads=1`.

use std::path::PathBuf;
use std::time::Duration;

use gateway::control::proto::StatusReport;
use interop::netns;
use interop::scenario::{
    log_mentions, run_scenario, swan_site_a, swan_site_b, vpngw_site_a, vpngw_site_b, Scenario, WanExpect,
    ESP_PROPOSAL, SA_TIMEOUT,
};
use interop::strongswan::StrongSwan;
use interop::vpngw::{installed_child_details, installed_child_sas, one_line, Encap, GatewayConfig, Start, Vpngw};
use interop::{ensure, Binaries, Result};

/// nettool: `NETTOOL_BIN`, else the copy cargo built for this test.
fn nettool() -> PathBuf {
    std::env::var_os("NETTOOL_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nettool")), PathBuf::from)
}

fn binaries() -> Result<Binaries> {
    Binaries::locate(nettool())
}

/// Harness self-check and throughput anchor: strongSwan initiator -> strongSwan responder.
#[test]
fn strongswan_to_strongswan() {
    run_scenario("strongswan_to_strongswan", |sc| {
        let cap = sc.capture_wan()?;
        let mut b = StrongSwan::start(&sc.topo.gw_b, &swan_site_b(false), &sc.subdir("gwb"))?;
        let mut a = StrongSwan::start(&sc.topo.gw_a, &swan_site_a(true), &sc.subdir("gwa"))?;
        check_swan_sas(&a.wait_child_sa(SA_TIMEOUT)?)?;
        check_swan_sas(&b.wait_child_sa(SA_TIMEOUT)?)?;
        sc.prove_traffic(&nettool())?;
        sc.check_wan(cap, WanExpect::EspInUdp)?;
        Ok(())
    });
}

/// Negative control for the WAN check: with plain routing and no IPsec, the capture must
/// see the pings in cleartext and `check_wan` must reject them.
#[test]
fn wan_check_detects_cleartext_without_ipsec() {
    run_scenario("wan_check_detects_cleartext_without_ipsec", |sc| {
        sc.topo.gw_a.ip(&["route", "add", netns::LAN_B_NET, "via", netns::GW_B_WAN])?;
        sc.topo.gw_b.ip(&["route", "add", netns::LAN_A_NET, "via", netns::GW_A_WAN])?;
        let cap = sc.capture_wan()?;
        sc.ping_both_ways()?;
        let err = sc.check_wan(cap, WanExpect::NoEsp).err();
        ensure!(
            err.as_ref().is_some_and(|e| e.to_string().contains("cleartext")),
            "plain-routed pings were not flagged as cleartext on the WAN: {err:?}"
        );
        Ok(())
    });
}

/// Checks every INSTALLED CHILD SA in a vpngw status uses AES-GCM-16-256 with the
/// expected encapsulation (`raw` or `udp`).
fn check_vpngw_child(side: &str, status: &StatusReport, mode: &str) -> Result<()> {
    let children = installed_child_details(status);
    ensure!(!children.is_empty(), "{side}: no INSTALLED CHILD SA: {}", one_line(status));
    for (encr, m) in &children {
        ensure!(
            encr == "AES_GCM_16-256" && m == mode,
            "{side}: CHILD SA is {encr}/{m}, expected AES_GCM_16-256/{mode}"
        );
    }
    Ok(())
}

/// Checks why vpngw's IKE SA carries ESP in UDP (`encap_reason` in the JSON status):
/// `want` is `nat`, `forced`, `vpngw_peer`, or `None` for raw ESP. No NAT is between the
/// gateways here, so `nat_detected` is true only where the reason says a NAT was seen
/// (strongSwan fakes one) or faked by us.
fn check_encap_reason(side: &str, status: &StatusReport, want: Option<&str>) -> Result<()> {
    let sa = status.tunnels.first().and_then(|t| t.ike_sas.iter().find(|s| s.state == "ESTABLISHED"));
    let Some(sa) = sa else {
        return Err(interop::Error::new(format!("{side}: no established IKE SA: {}", one_line(status))));
    };
    ensure!(
        sa.encap_reason.as_deref() == want,
        "{side}: ESP in UDP because of {:?}, expected {want:?}: {}",
        sa.encap_reason,
        one_line(status)
    );
    ensure!(
        sa.nat_detected == matches!(want, Some("nat" | "forced")),
        "{side}: nat_detected {} with reason {want:?}",
        sa.nat_detected
    );
    Ok(())
}

/// Checks strongSwan's SA uses the configured algorithms.
fn check_swan_sas(sas: &str) -> Result<()> {
    ensure!(
        sas.contains("AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519") && sas.contains("ESP:AES_GCM_16-256"),
        "strongSwan negotiated other algorithms than configured:\n{sas}"
    );
    Ok(())
}

/// Two vpngw gateways, B responds, A initiates; traffic; then A's shutdown DELETEs the SAs at B.
fn vpngw_pair(sc: &Scenario, encap: Encap, expect: WanExpect) -> Result<()> {
    vpngw_pair_with_env(sc, encap, expect, &[])
}

/// [`vpngw_pair`] with extra environment for both daemons.
fn vpngw_pair_with_env(sc: &Scenario, encap: Encap, expect: WanExpect, env: &[(&str, &str)]) -> Result<()> {
    let bins = binaries()?;
    let mode = if expect == WanExpect::RawEsp { "raw" } else { "udp" };
    let cap = sc.capture_wan()?;
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let (mut cfg_a, mut cfg_b) = (vpngw_site_a(Start::Initiate, encap), vpngw_site_b(Start::Respond, encap));
    cfg_a.env.clone_from(&env);
    cfg_b.env.clone_from(&env);
    let mut b = Vpngw::start(&sc.topo.gw_b, &cfg_b, &sc.subdir("gwb"), &bins)?;
    let mut a = Vpngw::start(&sc.topo.gw_a, &cfg_a, &sc.subdir("gwa"), &bins)?;
    let (st_a, st_b) = (a.wait_child_sa(SA_TIMEOUT)?, b.wait_child_sa(SA_TIMEOUT)?);
    check_vpngw_child("gwA", &st_a, mode)?;
    check_vpngw_child("gwB", &st_b, mode)?;
    // Both sides have the same setting: "udp" forces, two on "auto" agree, "raw" is raw.
    let reason = match encap {
        Encap::Udp => Some("forced"),
        Encap::Auto => Some("vpngw_peer"),
        Encap::Raw => None,
    };
    check_encap_reason("gwA", &st_a, reason)?;
    check_encap_reason("gwB", &st_b, reason)?;
    if let Some((_, n)) = cfg_a.env.iter().find(|(k, _)| k == "VPNGW_TUN_QUEUES") {
        for (ns, cfg) in [(&sc.topo.gw_a, &cfg_a), (&sc.topo.gw_b, &cfg_b)] {
            let link = ns.ip(&["-d", "link", "show", &cfg.tun_name])?;
            if !link.contains(&format!("numqueues {n} ")) {
                return Err(interop::Error::new(format!("{}: expected {n} TUN queues: {link}", ns.name())));
            }
        }
    }
    sc.prove_traffic(&bins.nettool)?;
    sc.check_wan(cap, expect)?;
    a.stop()?;
    interop::wait_for(Duration::from_secs(10), "gwB to drop its CHILD SA after gwA's DELETE", || {
        b.status().ok().filter(|st| installed_child_sas(st) == 0)
    })?;
    b.stop()?;
    Ok(())
}

/// Scenario 1a: vpngw <-> vpngw with `encapsulation = "raw"`: no NAT, so raw ESP (IP
/// protocol 50) and IKE on port 500 only.
#[test]
fn vpngw_to_vpngw_raw_esp() {
    run_scenario("vpngw_to_vpngw_raw_esp", |sc| vpngw_pair(sc, Encap::Raw, WanExpect::RawEsp));
}

/// Scenario 1a': vpngw <-> vpngw as installed (`encapsulation = "auto"`): no NAT, but both
/// announce vpngw in IKE_SA_INIT and agree on ESP-in-UDP on 4500 (`vpngw_peer`), the
/// faster path.
#[test]
fn vpngw_to_vpngw_default_esp_in_udp() {
    run_scenario("vpngw_to_vpngw_default_esp_in_udp", |sc| vpngw_pair(sc, Encap::Auto, WanExpect::EspInUdp));
}

/// Scenario 1b: vpngw <-> vpngw with `encapsulation = "udp"`: ESP-in-UDP on 4500.
#[test]
fn vpngw_to_vpngw_udp_encap() {
    run_scenario("vpngw_to_vpngw_udp_encap", |sc| vpngw_pair(sc, Encap::Udp, WanExpect::EspInUdp));
}

/// Scenario 1c: like 1b with a two-queue TUN at both gateways (`VPNGW_TUN_QUEUES=2`):
/// each queue has its own worker, writes steer each flow to one queue.
#[test]
fn vpngw_to_vpngw_multiqueue_tun() {
    run_scenario("vpngw_to_vpngw_multiqueue_tun", |sc| {
        vpngw_pair_with_env(sc, Encap::Udp, WanExpect::EspInUdp, &[("VPNGW_TUN_QUEUES", "2")])
    });
}

/// Scenario 2: vpngw initiator -> strongSwan responder. strongSwan fakes a NAT, so ESP
/// goes in UDP (vpngw says why: a NAT, not a vpngw peer: strongSwan sends no vpngw
/// Vendor ID); vpngw's shutdown DELETE must remove the SA at strongSwan.
#[test]
fn vpngw_initiator_to_strongswan_responder() {
    run_scenario("vpngw_initiator_to_strongswan_responder", |sc| {
        let bins = binaries()?;
        let cap = sc.capture_wan()?;
        let mut b = StrongSwan::start(&sc.topo.gw_b, &swan_site_b(false), &sc.subdir("gwb"))?;
        let mut a = Vpngw::start(&sc.topo.gw_a, &vpngw_site_a(Start::Initiate, Encap::Auto), &sc.subdir("gwa"), &bins)?;
        let st = a.wait_child_sa(SA_TIMEOUT)?;
        check_vpngw_child("gwA", &st, "udp")?;
        check_encap_reason("gwA", &st, Some("nat"))?;
        check_swan_sas(&b.wait_child_sa(SA_TIMEOUT)?)?;
        sc.prove_traffic(&bins.nettool)?;
        sc.check_wan(cap, WanExpect::EspInUdp)?;
        a.stop()?;
        interop::wait_for(Duration::from_secs(10), "strongSwan to delete the SAs after vpngw's DELETE", || {
            b.list_sas().ok().filter(|s| !s.contains("ESTABLISHED"))
        })
        .map_err(|e| interop::Error::new(format!("{e}\n{}", b.diagnostics())))?;
        Ok(())
    });
}

/// Scenario 3: strongSwan initiator -> vpngw responder (ESP-in-UDP, strongSwan fakes NAT).
#[test]
fn strongswan_initiator_to_vpngw_responder() {
    run_scenario("strongswan_initiator_to_vpngw_responder", |sc| {
        let bins = binaries()?;
        let cap = sc.capture_wan()?;
        let mut b = Vpngw::start(&sc.topo.gw_b, &vpngw_site_b(Start::Respond, Encap::Auto), &sc.subdir("gwb"), &bins)?;
        let mut a = StrongSwan::start(&sc.topo.gw_a, &swan_site_a(true), &sc.subdir("gwa"))?;
        check_swan_sas(&a.wait_child_sa(SA_TIMEOUT)?)?;
        let st = b.wait_child_sa(SA_TIMEOUT)?;
        check_vpngw_child("gwB", &st, "udp")?;
        check_encap_reason("gwB", &st, Some("nat"))?;
        sc.prove_traffic(&bins.nettool)?;
        sc.check_wan(cap, WanExpect::EspInUdp)?;
        b.stop()?;
        Ok(())
    });
}

/// strongSwan initiates to a vpngw that asks every IKE_SA_INIT for a COOKIE
/// (`cookie_threshold = 0`, RFC 7296 2.6): charon must come back with the COOKIE, and the
/// tunnel carries traffic as usual.
#[test]
fn strongswan_initiator_to_vpngw_responder_with_cookies() {
    run_scenario("strongswan_initiator_to_vpngw_responder_with_cookies", |sc| {
        let bins = binaries()?;
        let mut b_cfg = vpngw_site_b(Start::Respond, Encap::Auto);
        b_cfg.gateway_extra.push(("cookie_threshold".into(), "0".into()));
        let mut b = Vpngw::start(&sc.topo.gw_b, &b_cfg, &sc.subdir("gwb"), &bins)?;
        let mut a = StrongSwan::start(&sc.topo.gw_a, &swan_site_a(true), &sc.subdir("gwa"))?;
        check_swan_sas(&a.wait_child_sa(SA_TIMEOUT)?)?;
        check_vpngw_child("gwB", &b.wait_child_sa(SA_TIMEOUT)?, "udp")?;
        let status = b.status()?;
        let sent = status.ike.drops.cookies_sent;
        ensure!(sent >= 1, "vpngw sent no COOKIE although cookie_threshold = 0: {}", one_line(&status));
        println!(
            "[{}] COOKIEs sent by vpngw: {sent}; charon came back with the COOKIE and the tunnel came up",
            sc.name
        );
        sc.prove_traffic(&bins.nettool)?;
        b.stop()?;
        Ok(())
    });
}

/// Starts B (responder) and A (initiator) with the given configs, waits until both logs
/// name `error` (an IKE notify), then checks the failure left nothing behind: both
/// daemons alive and answering, no CHILD SA, no ping across, no ESP and no cleartext on
/// the WAN.
fn expect_negotiation_failure(sc: &Scenario, a_cfg: GatewayConfig, b_cfg: GatewayConfig, error: &str) -> Result<()> {
    let bins = binaries()?;
    let cap = sc.capture_wan()?;
    let mut b = Vpngw::start(&sc.topo.gw_b, &b_cfg, &sc.subdir("gwb"), &bins)?;
    let mut a = Vpngw::start(&sc.topo.gw_a, &a_cfg, &sc.subdir("gwa"), &bins)?;
    let wait = Duration::from_secs(30);
    a.wait_log(wait, &format!("{error} (initiator)"), |l| log_mentions(l, error))?;
    b.wait_log(wait, &format!("{error} (responder)"), |l| log_mentions(l, error))?;
    for (side, gw) in [("gwA", &mut a), ("gwB", &mut b)] {
        ensure!(gw.is_running(), "{side}'s vpngw (PID {}) died after {error}:\n{}", gw.pid(), gw.log_tail(30));
        let st = gw.status()?;
        ensure!(installed_child_sas(&st) == 0, "{side} installed a CHILD SA despite {error}: {}", one_line(&st));
        println!("[{}] {side}: vpngw PID {} alive, vpnctl status answers, no CHILD SA", sc.name, gw.pid());
    }
    sc.ping_fails()?;
    sc.check_wan(cap, WanExpect::NoEsp)?;
    a.stop()?;
    b.stop()?;
    Ok(())
}

/// Scenario 4: mismatched PSKs: AUTHENTICATION_FAILED, nothing installed, both survive.
#[test]
fn wrong_psk_fails_authentication() {
    run_scenario("wrong_psk_fails_authentication", |sc| {
        let mut a = vpngw_site_a(Start::Initiate, Encap::Auto);
        a.tunnels[0].psk = "not-the-psk-gwB-expects".into();
        let b = vpngw_site_b(Start::Respond, Encap::Auto);
        expect_negotiation_failure(sc, a, b, "AUTHENTICATION_FAILED")
    });
}

/// Scenario 5a: disjoint IKE proposals: NO_PROPOSAL_CHOSEN in IKE_SA_INIT.
#[test]
fn disjoint_ike_proposals_fail() {
    run_scenario("disjoint_ike_proposals_fail", |sc| {
        let a = vpngw_site_a(Start::Initiate, Encap::Auto);
        let mut b = vpngw_site_b(Start::Respond, Encap::Auto);
        b.tunnels[0].ike_proposals = vec!["aes128gcm16-prfsha384-ecp256".into()];
        expect_negotiation_failure(sc, a, b, "NO_PROPOSAL_CHOSEN")
    });
}

/// Scenario 5b: same IKE proposal, disjoint ESP proposals: NO_PROPOSAL_CHOSEN for the
/// CHILD SA in IKE_AUTH.
#[test]
fn disjoint_esp_proposals_fail() {
    run_scenario("disjoint_esp_proposals_fail", |sc| {
        let a = vpngw_site_a(Start::Initiate, Encap::Auto);
        let mut b = vpngw_site_b(Start::Respond, Encap::Auto);
        assert_ne!(ESP_PROPOSAL, "aes128gcm16");
        b.tunnels[0].esp_proposals = vec!["aes128gcm16".into()];
        expect_negotiation_failure(sc, a, b, "NO_PROPOSAL_CHOSEN")
    });
}
