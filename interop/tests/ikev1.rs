//! IKEv1 interop: vpngw with `ike_version = 1` against strongSwan (`version = 1`) in both
//! roles and against itself, on the two-site topology (and, for NAT-T, with a NAT
//! router between the gateways).
//!
//! strongSwan runs with kernel-libipsec here, which always encapsulates ESP in UDP: in
//! IKEv1 it says so through the NAT-D hashes of Main Mode (RFC 3947), so vpngw must
//! float to port 4500 and use UDP-encapsulated tunnel mode. vpngw to vpngw runs raw ESP
//! without a NAT, and ESP-in-UDP through one.
//!
//! Needs root (see `interop::scenario::run_scenario`); run one test at a time:
//! `cargo test --release -p interop --test ikev1 -- --test-threads=1 --nocapture`.

use interop::scenario::{run_scenario, swan_site_a, swan_site_b, WanExpect, SA_TIMEOUT};
use interop::strongswan::{parse_list_sas, StrongSwan, SwanConfig};
use interop::{ensure, Result};

/// The classic gateway of the walkthrough: `aes` + `sha` + DH group 2, PFS group 2.
const WALKTHROUGH: &str = "aes128-sha1-modp1024";

/// strongSwan at site A or B speaking IKEv1 with `ike`/`esp` proposals.
fn swan_v1(site_a: bool, initiate: bool, ike: &str, esp: &str) -> SwanConfig {
    let base = if site_a { swan_site_a(initiate) } else { swan_site_b(initiate) };
    SwanConfig { version: 1, ike_proposal: ike.into(), esp_proposal: esp.into(), ..base }
}

/// Harness self-check: strongSwan to strongSwan over IKEv1 with the walkthrough profile
/// (what `--list-sas` shows for IKEv1, and that the WAN carries only ESP-in-UDP).
#[test]
fn ikev1_strongswan_to_strongswan() {
    run_scenario("ikev1_strongswan_to_strongswan", |sc| {
        let cap = sc.capture_wan()?;
        let mut b =
            StrongSwan::start(&sc.topo.gw_b, &swan_v1(false, false, WALKTHROUGH, WALKTHROUGH), &sc.subdir("gwb"))?;
        let mut a =
            StrongSwan::start(&sc.topo.gw_a, &swan_v1(true, true, WALKTHROUGH, WALKTHROUGH), &sc.subdir("gwa"))?;
        let sas = a.wait_child_sa(SA_TIMEOUT)?;
        b.wait_child_sa(SA_TIMEOUT)?;
        println!("{sas}");
        let parsed = parse_list_sas(&sas);
        ensure!(parsed.len() == 1, "{parsed:?}");
        sc.ping_both_ways()?;
        sc.check_wan(cap, WanExpect::EspInUdp)?;
        Ok(())
    });
}
