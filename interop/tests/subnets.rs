//! Two local x two remote subnets against strongSwan, in both roles:
//!
//! ```text
//!  lanA 10.1.0.10, 10.3.0.10 — gwA (vpngw) ═ WAN ═ gwB (strongSwan) — lanB 10.2.0.10, 10.4.0.10
//! ```
//!
//! - one CHILD SA per subnet pair (`child_sa_per_subnet_pair = true`), vpngw initiating,
//!   strongSwan answering with one `children` section per pair; then strongSwan rekeys
//!   the CHILD SA of one pair (`swanctl --rekey --child`) while a ping and a UDP stream
//!   cross that pair: nothing may be lost, and the other three CHILD SAs stay as they were;
//! - strongSwan initiating one CHILD SA per pair (AWS / Cisco policy-based style) to a
//!   vpngw with the default combined configuration; then vpngw rekeys all four CHILD SAs
//!   (`vpnctl rekey`), one after the other, under the same load, without loss;
//! - all subnets in one CHILD SA (strongSwan: comma-separated `local_ts`/`remote_ts`), in
//!   both roles, one after the other on one topology.
//!
//! Each setup proves ping across every pair in both directions, that `vpnctl status`
//! (JSON and human) and `swanctl --list-sas` show the expected CHILD SAs with their
//! selectors, and that the WAN carries only ESP (in UDP: strongSwan's kernel-libipsec
//! encapsulates). Needs root (see
//! `interop::scenario::run_scenario`); run one at a time:
//! `cargo test --release -p interop --test subnets -- --test-threads=1 --nocapture`.

use std::path::PathBuf;
use std::time::Duration;

use gateway::control::proto::StatusReport;
use interop::scenario::{run_scenario, swan_site_b, vpngw_site_a, Scenario, WanExpect, SA_TIMEOUT};
use interop::stream::{Load, LoadSpec};
use interop::strongswan::{installed_child_sas as swan_installed, parse_list_sas, StrongSwan, SwanConfig};
use interop::subnets::{
    add_second_subnets, all_pairs, pair_children, ping_every_pair, vpngw_selectors, A_NETS, B_NETS,
};
use interop::vpngw::{child_sas, Encap, GatewayConfig, Start, Vpngw};
use interop::{ensure, wait_for, Binaries, Error, Result};

/// The load of the rekey checks (`stream::Load`: lanA 10.1.0.10 -> lanB 10.2.0.10).
const LOAD_PAIR: (&str, &str) = ("10.1.0.0/24", "10.2.0.0/24");
/// The strongSwan children section of that pair (see [`swan_pairs`]).
const LOAD_CHILD: &str = "p0";

fn nettool() -> PathBuf {
    std::env::var_os("NETTOOL_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nettool")), PathBuf::from)
}

fn binaries() -> Result<Binaries> {
    Binaries::locate(nettool())
}

/// vpngw on gwA with both subnets of each site.
fn vpngw_cfg(start: Start, per_pair: bool) -> GatewayConfig {
    let mut cfg = vpngw_site_a(start, Encap::Auto);
    let t = &mut cfg.tunnels[0];
    t.local_subnets = A_NETS.iter().map(|s| (*s).to_owned()).collect();
    t.remote_subnets = B_NETS.iter().map(|s| (*s).to_owned()).collect();
    t.child_sa_per_subnet_pair = per_pair;
    cfg
}

/// strongSwan on gwB with all subnets in its one children section.
fn swan_combined(initiate: bool) -> SwanConfig {
    SwanConfig { local_ts: B_NETS.join(","), remote_ts: A_NETS.join(","), ..swan_site_b(initiate) }
}

/// strongSwan's children sections, one per pair (`interop::subnets::pair_children`).
fn swan_pairs(initiate: bool) -> String {
    swan_site_b(initiate).swanctl_conf_children(&pair_children())
}

/// Waits until vpngw shows exactly `want` as its INSTALLED CHILD SAs' selectors and
/// strongSwan `swan_children` INSTALLED CHILD SAs; checks the human status lists each.
fn wait_children(gw: &mut Vpngw, swan: &mut StrongSwan, want: &[(String, String)], swan_children: usize) -> Result<()> {
    gw.wait_child_sa(SA_TIMEOUT)?;
    let st = wait_for(SA_TIMEOUT, "vpngw's CHILD SAs for every pair", || {
        let st = gw.status().ok()?;
        (vpngw_selectors(&st) == want).then_some(st)
    })
    .map_err(|e| Error::new(format!("{e}: {}", gw.status_json_text().unwrap_or_default())))?;
    let sas = wait_for(SA_TIMEOUT, "strongSwan's CHILD SAs", || {
        let sas = swan.list_sas().ok()?;
        (swan_installed(&sas) == swan_children).then_some(sas)
    })
    .map_err(|e| Error::new(format!("{e}: {}", swan.list_sas().unwrap_or_default())))?;
    let text = gw.status_text()?;
    for (l, r) in want {
        let line = format!("INSTALLED: {} === {}", l.replace(',', ", "), r.replace(',', ", "));
        ensure!(text.contains(&line), "vpnctl status lacks {line:?}:\n{text}");
    }
    let kids: Vec<String> =
        child_sas(&st).iter().map(|c| format!("{} === {}", c.local_ts.join(" "), c.remote_ts.join(" "))).collect();
    println!("vpngw CHILD SAs: {}; strongSwan: {} INSTALLED", kids.join(", "), swan_installed(&sas));
    Ok(())
}

/// The (spi_in, spi_out) of vpngw's INSTALLED CHILD SA for a pair.
fn spis_of(st: &StatusReport, pair: (&str, &str)) -> Option<(String, String)> {
    child_sas(st)
        .into_iter()
        .find(|c| c.state == "INSTALLED" && c.local_ts == [pair.0] && c.remote_ts == [pair.1])
        .map(|c| (c.spi_in.clone(), c.spi_out.clone()))
}

/// Every INSTALLED CHILD SA's SPIs, sorted.
fn all_spis(st: &StatusReport) -> Vec<(String, String)> {
    let mut v: Vec<_> = child_sas(st)
        .into_iter()
        .filter(|c| c.state == "INSTALLED")
        .map(|c| (c.spi_in.clone(), c.spi_out.clone()))
        .collect();
    v.sort();
    v
}

/// Light load (100 pings/s and 5 Mbit/s UDP) across [`LOAD_PAIR`] for `seconds`.
fn load(sc: &Scenario, seconds: f64) -> Result<Load> {
    Load::start(&nettool(), &sc.topo, &sc.dir, LoadSpec { udp_mbit: 5.0, ..LoadSpec::standard(seconds) })
}

/// Starts the load across [`LOAD_PAIR`], runs `trigger` 2 s in, waits (up to 20 s) for
/// vpngw's status to satisfy `done`, then checks that the load lost nothing. Returns
/// that status.
fn rekey_under_load(
    sc: &Scenario,
    gw: &Vpngw,
    what: &str,
    trigger: impl FnOnce() -> Result<()>,
    done: impl Fn(&StatusReport) -> bool,
) -> Result<StatusReport> {
    let load = load(sc, 8.0)?;
    std::thread::sleep(Duration::from_secs(2));
    trigger()?;
    let after = wait_for(Duration::from_secs(20), what, || gw.status().ok().filter(|st| done(st)))
        .map_err(|e| Error::new(format!("{e}: {}", gw.status_json_text().unwrap_or_default())))?;
    let report = load.finish()?;
    println!("[{}] {what} under load: {report}", sc.name);
    report.ensure_lossless()?;
    Ok(after)
}

#[test]
fn per_pair_vpngw_initiates_strongswan_rekeys_one_pair_under_load() {
    run_scenario("subnets_per_pair_vpngw_initiator", |sc| {
        add_second_subnets(&sc.topo)?;
        let bins = binaries()?;
        let cap = sc.capture_wan()?;
        let mut swan = StrongSwan::start_conf(&sc.topo.gw_b, &swan_pairs(false), &sc.subdir("gwb"))?;
        let mut gw = Vpngw::start(&sc.topo.gw_a, &vpngw_cfg(Start::Initiate, true), &sc.subdir("gwa"), &bins)?;
        wait_children(&mut gw, &mut swan, &all_pairs(), 4)?;
        ensure!(
            parse_list_sas(&swan.list_sas()?).len() == 1,
            "strongSwan holds more than one IKE SA: {}",
            swan.list_sas()?
        );
        ping_every_pair(sc)?;

        // strongSwan rekeys the CHILD SA of the loaded pair, mid-stream.
        let before = gw.status()?;
        let old = spis_of(&before, LOAD_PAIR).ok_or_else(|| Error::new("no CHILD SA for the load's pair"))?;
        let others: Vec<_> = all_spis(&before).into_iter().filter(|s| *s != old).collect();
        let after = rekey_under_load(
            sc,
            &gw,
            "the rekeyed CHILD SA of the loaded pair alone",
            || swan.rekey_child(LOAD_CHILD),
            |st| spis_of(st, LOAD_PAIR).is_some_and(|new| new != old) && child_sas(st).len() == 4,
        )?;
        let kept: Vec<_> = all_spis(&after).into_iter().filter(|s| others.contains(s)).collect();
        ensure!(kept.len() == 3, "the other pairs' CHILD SAs changed: before {others:?}, after {:?}", all_spis(&after));
        ensure!(vpngw_selectors(&after) == all_pairs(), "pairs after the rekey: {:?}", vpngw_selectors(&after));
        ping_every_pair(sc)?;
        sc.check_wan(cap, WanExpect::EspInUdp)?;
        Ok(())
    });
}

#[test]
fn strongswan_initiates_one_child_sa_per_pair_vpngw_rekeys_all_under_load() {
    run_scenario("subnets_per_pair_strongswan_initiator", |sc| {
        add_second_subnets(&sc.topo)?;
        let bins = binaries()?;
        let cap = sc.capture_wan()?;
        // vpngw keeps its default (combined) configuration: it accepts each pair.
        let mut gw = Vpngw::start(&sc.topo.gw_a, &vpngw_cfg(Start::Respond, false), &sc.subdir("gwa"), &bins)?;
        let mut swan = StrongSwan::start_conf(&sc.topo.gw_b, &swan_pairs(true), &sc.subdir("gwb"))?;
        wait_children(&mut gw, &mut swan, &all_pairs(), 4)?;
        ping_every_pair(sc)?;

        // vpngw rekeys its four CHILD SAs (one exchange each) while traffic flows.
        let before = all_spis(&gw.status()?);
        let after = rekey_under_load(
            sc,
            &gw,
            "four new CHILD SAs",
            || gw.rekey("peer", false),
            |st| {
                let now = all_spis(st);
                child_sas(st).len() == 4 && now.len() == 4 && now.iter().all(|s| !before.contains(s))
            },
        )?;
        ensure!(vpngw_selectors(&after) == all_pairs(), "pairs after the rekey: {:?}", vpngw_selectors(&after));
        wait_for(SA_TIMEOUT, "strongSwan back to four CHILD SAs", || {
            (swan_installed(&swan.list_sas().ok()?) == 4).then_some(())
        })?;
        ping_every_pair(sc)?;
        sc.check_wan(cap, WanExpect::EspInUdp)?;
        Ok(())
    });
}

#[test]
fn all_subnets_in_one_child_sa_in_both_roles() {
    run_scenario("subnets_combined_both_roles", |sc| {
        add_second_subnets(&sc.topo)?;
        let bins = binaries()?;
        let cap = sc.capture_wan()?;
        let one = vec![(A_NETS.join(","), B_NETS.join(","))];
        for vpngw_initiates in [true, false] {
            let role = if vpngw_initiates { "vpngw initiates" } else { "strongSwan initiates" };
            let dir = |n: &str| sc.subdir(&format!("{n}-{}", if vpngw_initiates { "i" } else { "r" }));
            let start = if vpngw_initiates { Start::Initiate } else { Start::Respond };
            let mut swan;
            let mut gw;
            if vpngw_initiates {
                swan = StrongSwan::start(&sc.topo.gw_b, &swan_combined(false), &dir("gwb"))?;
                gw = Vpngw::start(&sc.topo.gw_a, &vpngw_cfg(start, false), &dir("gwa"), &bins)?;
            } else {
                gw = Vpngw::start(&sc.topo.gw_a, &vpngw_cfg(start, false), &dir("gwa"), &bins)?;
                swan = StrongSwan::start(&sc.topo.gw_b, &swan_combined(true), &dir("gwb"))?;
            }
            wait_children(&mut gw, &mut swan, &one, 1)?;
            let sas = swan.list_sas()?;
            for net in A_NETS.iter().chain(&B_NETS) {
                ensure!(sas.contains(net), "strongSwan's CHILD SA lacks {net} ({role}):\n{sas}");
            }
            ping_every_pair(sc)?;
            println!("[{}] {role}: one CHILD SA carries all four pairs", sc.name);
            // Both go before the other role starts (vpngw's shutdown DELETEs the IKE SA).
            gw.stop()?;
            swan.stop();
        }
        sc.check_wan(cap, WanExpect::EspInUdp)?;
        Ok(())
    });
}
