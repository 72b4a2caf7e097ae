//! `vpnctl up`, `rekey`, `rekey --ike`, `status TUNNEL` and `down` against two real
//! `vpngw` daemons in the interop lab (two sites, see `interop::netns`), with pings from
//! lanA to lanB running through every rekey: the tunnel carries traffic across CHILD SA
//! and IKE SA rekeys and across a rekey triggered by a packet limit in the datapath; B
//! asks for a COOKIE on every IKE_SA_INIT (`cookie_threshold = 0`) and counts it in
//! `vpnctl status` (`ike.drops`).
//!
//! Needs root: as another user it prints `SKIPPED <name>: <reason>` and passes, except
//! under `CI=true`, where it fails. Namespaces and daemons are removed by their guards,
//! also when a check fails.
//! `cargo test --release -p interop --test vpnctl -- --nocapture`

use std::path::PathBuf;
use std::time::Duration;

use gateway::control::proto::{ChildSaInfo, StatusReport};
use interop::netns::{self, Netns};
use interop::process::Proc;
use interop::scenario::{run_scenario, vpngw_site_a, vpngw_site_b, Scenario};
use interop::traffic::{parse_ping, PingStats};
use interop::vpngw::{one_line, Encap, Start, Vpngw};
use interop::{ensure, wait_for, Binaries, Error, Result};

fn binaries() -> Result<Binaries> {
    Binaries::locate(PathBuf::from(env!("CARGO_BIN_EXE_nettool")))
}

/// How long a state change seen through `vpnctl status` may take.
const SETTLE: Duration = Duration::from_secs(20);

/// `vpnctl ARGS` must exit with `code`; returns its stdout.
fn ctl(gw: &Vpngw, args: &[&str], code: i32) -> Result<String> {
    let out = gw.ctl(args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.code() == Some(code),
        "vpnctl {args:?} exited {:?}, expected {code}:\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// `vpnctl ARGS` must fail (exit 1) naming `code` on stderr.
fn ctl_fails(gw: &Vpngw, args: &[&str], code: &str) -> Result<()> {
    let out = gw.ctl(args)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1) && stderr.contains(code), "vpnctl {args:?}: expected {code}: {stderr}");
    Ok(())
}

/// Pings lanB from lanA in the background: `count` requests `interval` seconds apart.
fn start_ping(sc: &Scenario, label: &str, count: u32, interval: &str) -> Result<Proc> {
    let cmd = sc.topo.lan_a.exec(&["ping", "-n", "-q", "-c", &count.to_string(), "-i", interval, netns::LAN_B_HOST]);
    Proc::spawn(label, cmd, &sc.dir)
}

/// Waits for a background ping; its counts.
fn ping_result(mut p: Proc) -> Result<PingStats> {
    p.wait_timeout(Duration::from_secs(60)).ok_or_else(|| Error::new(format!("{} did not finish", p.label())))?;
    let text = p.out_text();
    parse_ping(&text).ok_or_else(|| Error::new(format!("cannot parse ping output: {text}{}", p.log_text())))
}

/// CHILD SAs of the first tunnel.
fn children(st: &StatusReport) -> Vec<ChildSaInfo> {
    st.tunnels[0].ike_sas.iter().flat_map(|sa| sa.children.iter().cloned()).collect()
}

/// Waits until the newest CHILD SA of `gw` has sealed at least `packets` packets: traffic
/// is flowing through it now.
fn wait_sealing(gw: &Vpngw, packets: u64) -> Result<()> {
    wait_for(SETTLE, "pings through the newest CHILD SA", || {
        let c = children(&gw.status().ok()?);
        let newest = c.iter().max_by_key(|c| c.child_id)?;
        (newest.outbound.as_ref()?.packets >= packets).then_some(())
    })
}

/// Site `a` or `b` of the lab: both only respond (the tunnel waits for `vpnctl up`), PFS
/// on rekeys.
fn start_site(ns: &Netns, sc: &Scenario, site_a: bool, bins: &Binaries) -> Result<Vpngw> {
    let mut cfg =
        if site_a { vpngw_site_a(Start::Respond, Encap::Auto) } else { vpngw_site_b(Start::Respond, Encap::Auto) };
    let t = &mut cfg.tunnels[0];
    t.name = if site_a { "site-a-peer" } else { "site-b-peer" }.into();
    t.esp_proposals = vec!["aes256gcm16-x25519".into()];
    if site_a {
        // A rekeys its CHILD SA after 100 packets (counted by the datapath, per SA and
        // direction; hard limit 110).
        t.lifetimes.child_rekey_packets = Some(100);
    } else {
        // B asks every initiator for a COOKIE first.
        cfg.gateway_extra.push(("cookie_threshold".into(), "0".into()));
    }
    Vpngw::start(ns, &cfg, &sc.subdir(if site_a { "gwa" } else { "gwb" }), bins)
}

#[test]
fn vpnctl_commands_against_two_daemons_with_traffic_across_rekeys() {
    run_scenario("vpnctl_commands_against_two_daemons_with_traffic_across_rekeys", |sc| {
        let bins = binaries()?;
        let mut b = start_site(&sc.topo.gw_b, sc, false, &bins)?;
        let mut a = start_site(&sc.topo.gw_a, sc, true, &bins)?;

        // Both only respond: the tunnel is down until `vpnctl up`.
        let text = ctl(&a, &["status", "site-a-peer"], 0)?;
        ensure!(text.contains("tunnel site-a-peer: DOWN (waiting for the peer)"), "{text}");
        let out = ctl(&a, &["up", "site-a-peer"], 0)?;
        ensure!(out.starts_with("site-a-peer is up: IKE SA "), "{out}");
        let p = ping_result(start_ping(sc, "ping-up", 5, "0.1")?)?;
        ensure!((p.transmitted, p.received) == (5, 5), "pings across the new tunnel: {p:?}");
        // B's `cookie_threshold = 0` reached its IKE endpoint: A came in with a COOKIE, and
        // B's status counts it; nothing is left half-open.
        let ike = b.status()?.ike;
        ensure!(ike.half_open == 0, "{ike:?}");
        ensure!(ike.drops.cookies_sent >= 1 && ike.drops.cookie_required >= 1, "{ike:?}");
        ensure!(a.status()?.ike.drops.cookies_sent == 0, "A sent COOKIEs");
        let text = ctl(&b, &["status"], 0)?;
        ensure!(text.lines().nth(1).is_some_and(|l| l.starts_with("IKE: 0 half-open; refused: ")), "{text}");

        // CHILD SA rekey with pings in flight (seen sealed before each rekey): new SPIs,
        // PFS, no loss.
        let first = children(&a.status()?);
        ensure!(first.len() == 1, "one CHILD SA after up: {first:#?}");
        let pinger = start_ping(sc, "ping-rekeys", 80, "0.05")?;
        wait_sealing(&a, first[0].outbound.as_ref().map_or(0, |t| t.packets) + 3)?;
        let out = ctl(&a, &["rekey", "site-a-peer"], 0)?;
        ensure!(out.starts_with("site-a-peer: rekeyed CHILD SA "), "{out}");
        ensure!(out.contains("(PFS CURVE_25519)"), "{out}");
        // IKE SA rekey: the CHILD SA moves over unchanged.
        wait_sealing(&a, 3)?;
        let out = ctl(&a, &["rekey", "site-a-peer", "--ike"], 0)?;
        ensure!(out.starts_with("site-a-peer: rekeyed IKE SA "), "{out}");
        let p = ping_result(pinger)?;
        ensure!((p.transmitted, p.received) == (80, 80), "pings lost across the CHILD and IKE SA rekeys: {p:?}");
        let s = a.status()?;
        let now = children(&s);
        ensure!(now.len() == 1, "old CHILD SA not deleted: {}", one_line(&s));
        ensure!(now[0].spi_in != first[0].spi_in, "the CHILD SA kept its SPI across the rekey");
        ensure!(now[0].dh.as_deref() == Some("CURVE_25519"), "{:?}", now[0].dh);
        ensure!(now[0].rekey_in_s.is_some() && now[0].expires_in_s.is_some(), "{}", one_line(&s));
        let sa = &s.tunnels[0].ike_sas[0];
        ensure!(sa.next_rekey_in_s.is_some() && sa.last_heard_ago_s.is_some(), "{}", one_line(&s));
        let text = ctl(&a, &["status", "site-a-peer"], 0)?;
        ensure!(text.contains("IKE rekey    in ") && text.contains("    lifetime     rekey in "), "{text}");

        // A packet limit reached in the datapath rekeys the CHILD SA by itself, without loss.
        let before = now[0].spi_in.clone();
        let p = ping_result(start_ping(sc, "ping-limit", 150, "0.02")?)?;
        ensure!((p.transmitted, p.received) == (150, 150), "pings lost across the packet-limit rekey: {p:?}");
        let c = wait_for(SETTLE, "the CHILD SA replaced after 100 packets", || {
            let c = children(&a.status().ok()?);
            (c.len() == 1 && c[0].spi_in != before).then_some(c)
        })?;
        let (out, inb) = (c[0].outbound.clone().unwrap_or_default(), c[0].inbound.clone().unwrap_or_default());
        ensure!(out.packets < 100 && inb.packets < 100, "{c:#?}");
        ensure!((out.drops.expired, inb.drops.expired) == (0, 0), "{c:#?}");

        // Errors: unknown tunnel.
        ctl_fails(&a, &["rekey", "nope"], "unknown_tunnel")?;

        // down: gone on both sides, and it stays down.
        let out = ctl(&a, &["down", "site-a-peer"], 0)?;
        ensure!(out.contains("site-a-peer is down"), "{out}");
        wait_for(SETTLE, "B to drop the tunnel", || b.status().ok().filter(|s| s.tunnels[0].ike_sas.is_empty()))?;
        ensure!(ctl(&a, &["status"], 0)?.contains("stopped by `vpnctl down`"), "A does not say it was stopped");
        ctl_fails(&a, &["rekey", "site-a-peer"], "not_established")?;
        a.stop()?;
        b.stop()?;
        Ok(())
    });
}
