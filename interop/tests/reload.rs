//! Configuration reload of a running `vpngw` in the interop lab (two sites, see
//! `interop::netns`), with a 100-per-second ping and a 20 Mbit/s sequenced UDP stream
//! crossing the tunnel lanA -> lanB the whole time: `vpnctl reload` adds a second tunnel
//! (its route appears in gateway A's namespace), SIGHUP removes it again (the route
//! goes), an invalid file is refused with its `file:line: key` error; the first tunnel
//! keeps its SPIs and not one packet is lost.
//!
//! Needs root: as another user it prints `SKIPPED <name>: <reason>` and passes, except
//! under `CI=true`, where it fails. Namespaces and daemons are removed by their guards,
//! also when a check fails.
//! `cargo test --release -p interop --test reload -- --nocapture`

use std::path::{Path, PathBuf};
use std::time::Duration;

use interop::scenario::{run_scenario, vpngw_site_a, vpngw_site_b, Scenario};
use interop::stream::{Load, LoadSpec};
use interop::vpngw::{installed_child_details, write_config, Encap, GatewayConfig, Start, TunnelConfig, Vpngw};
use interop::{ensure, wait_for, Binaries, Result};

fn nettool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nettool"))
}

/// How long a change may take to show.
const SETTLE: Duration = Duration::from_secs(20);

/// The second tunnel: towards a gateway that does not exist (it never comes up; what
/// matters is what its arrival and departure do to the first one).
fn other_tunnel(first: &TunnelConfig) -> TunnelConfig {
    TunnelConfig {
        name: "other".into(),
        remote_address: "203.0.113.9".into(),
        remote_id: "203.0.113.9".into(),
        psk: "another interop key of 32 bytes!".into(),
        remote_subnets: vec!["10.9.0.0/24".into()],
        start: Start::Initiate,
        ..first.clone()
    }
}

/// Writes `cfg` where `Vpngw::start` wrote the first one (with its PSK files).
fn rewrite(dir: &Path, cfg: &GatewayConfig) -> Result<()> {
    write_config(cfg, dir).map(drop)
}

/// `ip route` of gateway A.
fn routes_a(sc: &Scenario) -> Result<String> {
    interop::run(&mut sc.topo.gw_a.exec(&["ip", "route"]))
}

#[test]
fn reload_adds_and_removes_a_tunnel_without_losing_a_packet_of_the_other() {
    run_scenario("reload_adds_and_removes_a_tunnel_without_losing_a_packet_of_the_other", |sc| {
        let bins = Binaries::locate(nettool())?;
        let b = Vpngw::start(&sc.topo.gw_b, &vpngw_site_b(Start::Respond, Encap::Auto), &sc.subdir("gwb"), &bins)?;
        let cfg = vpngw_site_a(Start::Initiate, Encap::Auto);
        let dir_a = sc.subdir("gwa");
        let mut a = Vpngw::start(&sc.topo.gw_a, &cfg, &dir_a, &bins)?;
        let first = cfg.tunnels[0].name.clone();
        let before = installed_child_details(&a.wait_child_sa(SETTLE)?);
        ensure!(before.len() == 1, "one CHILD SA: {before:?}");

        let mut load = Load::start(&nettool(), &sc.topo, &sc.dir, LoadSpec::standard(15.0))?;
        std::thread::sleep(Duration::from_secs(2));

        // vpnctl reload: a second tunnel.
        let mut more = cfg.clone();
        more.tunnels.push(other_tunnel(&cfg.tunnels[0]));
        rewrite(&dir_a, &more)?;
        let out = a.ctl(&["reload"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success(), "reload: {text}{}", String::from_utf8_lossy(&out.stderr));
        ensure!(text.contains("  added:     other\n"), "{text}");
        ensure!(text.contains(&format!("  unchanged: {first}\n")), "{text}");
        ensure!(text.contains("  routes:    +10.9.0.0/24\n"), "{text}");
        let r = routes_a(sc)?;
        ensure!(r.lines().any(|l| l.starts_with("10.9.0.0/24 dev vpn0")), "route to the new subnet missing:\n{r}");
        ensure!(a.status()?.tunnels.iter().any(|t| t.name == "other"), "the new tunnel is not in the status");
        std::thread::sleep(Duration::from_secs(3));

        // An invalid file: refused, nothing changes.
        let bad = more.to_toml(&dir_a, &dir_a.join("vpngw.sock")).replace("\"10.9.0.0/24\"", "\"10.9.0/24\"");
        std::fs::write(dir_a.join("vpngw.toml"), &bad)?;
        let out = a.ctl(&["reload"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        let line = bad.lines().position(|l| l.contains("10.9.0/24")).map_or(0, |i| i + 1);
        let conf = dir_a.join("vpngw.toml");
        ensure!(out.status.code() == Some(1), "an invalid file was taken: {err}");
        ensure!(
            err.contains(&format!("{}:{line}: tunnel[1] (other) `remote_subnets`", conf.display()))
                && err.contains("(invalid_config)"),
            "{err}"
        );

        // SIGHUP: the second tunnel goes again.
        rewrite(&dir_a, &cfg)?;
        interop::run(&mut interop::command(&["kill", "-HUP", &a.pid().to_string()]))?;
        wait_for(SETTLE, "the second tunnel removed", || {
            a.status().ok().filter(|s| s.tunnels.iter().all(|t| t.name != "other"))
        })?;
        let r = routes_a(sc)?;
        ensure!(!r.contains("10.9.0.0/24"), "route to the removed subnet left:\n{r}");
        a.wait_log(SETTLE, "the reload logged", |l| l.contains("configuration reloaded"))?;

        ensure!(load.is_running(), "the load ended before the last reload: make it longer");
        let report = load.finish()?;
        println!("[{}] traffic: {report}", sc.name);
        report.ensure_lossless()?;
        let after = installed_child_details(&a.status()?);
        ensure!(after == before, "the unchanged tunnel's SAs changed: {before:?} -> {after:?}");
        ensure!(a.is_running(), "vpngw A exited:\n{}", a.log_tail(30));
        drop(b);
        Ok(())
    });
}
