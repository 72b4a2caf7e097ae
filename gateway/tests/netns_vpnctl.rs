//! `vpnctl up`, `rekey`, `rekey --ike`, `status TUNNEL` and `down` against two real
//! `vpngw` daemons in throwaway network namespaces (`vgo3c<pid>a`/`b`, joined by
//! a veth pair on 192.0.2.0/24), with pings between their inside addresses running
//! through every rekey: the tunnel carries traffic across CHILD SA and IKE SA rekeys
//! and across a rekey triggered by a packet limit in the datapath; B asks for a COOKIE
//! on every IKE_SA_INIT (`cookie_threshold = 0`) and counts it in `vpnctl status`
//! (`ike.drops`). Needs root and `ping` (skips with a message otherwise). The
//! namespaces and daemons are removed even when an assertion fails.

use gateway::sys::route::ip_binary;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ip(args: &[&str]) {
    let out = run(Command::new(ip_binary().unwrap()).args(args));
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Deletes the namespaces and stops the daemons (by their PIDs) when dropped.
#[derive(Default)]
struct Lab {
    namespaces: Vec<String>,
    daemons: Vec<Child>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = Command::new("kill").arg("-TERM").arg(d.id().to_string()).status();
        }
        for d in &mut self.daemons {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(d.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new(ip_binary().unwrap()).args(["netns", "del", ns]).status();
        }
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                for log in ["a.log", "b.log"] {
                    let text = std::fs::read_to_string(dir.path().join(log)).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(30).collect();
                    eprintln!("--- {log} (last lines, newest first)\n{}", tail.join("\n"));
                }
            }
        }
    }
}

/// `gw_extra` goes into `[gateway]`, `extra` into the tunnel.
#[allow(clippy::too_many_arguments)]
fn config(
    dir: &Path,
    site: &str,
    local: &str,
    remote: &str,
    lan: &str,
    rlan: &str,
    gw_extra: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        r#"
[gateway]
local_address = "{local}"
tun_name = "vpn0"
control_socket = "{dir}/{site}.sock"
{gw_extra}

[[tunnel]]
name = "site-{site}-peer"
remote_address = "{remote}"
psk_file = "{dir}/psk"
local_subnets = ["{lan}"]
remote_subnets = ["{rlan}"]
start = "respond"
esp_proposals = ["aes256gcm16-x25519"]
{extra}
"#,
        dir = dir.display()
    );
    let path = dir.join(format!("{site}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

struct Gw {
    ns: String,
    socket: PathBuf,
    tunnel: String,
}

impl Gw {
    fn vpnctl(&self, args: &[&str]) -> Output {
        run(Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--socket").arg(&self.socket).args(args))
    }

    /// Runs vpnctl, expects `code`, returns stdout.
    fn ctl(&self, args: &[&str], code: i32) -> String {
        let out = self.vpnctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "vpnctl {args:?}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl(&["status", &self.tunnel, "--json"], 0)).unwrap()
    }

    /// Starts `count` pings from our inside address to `to` in the background.
    fn ping(&self, from: &str, to: &str, count: u32, interval: &str) -> Child {
        Command::new(ip_binary().unwrap())
            .args(["netns", "exec", &self.ns, "ping", "-n", "-q", "-c", &count.to_string(), "-i", interval])
            .args(["-I", from, to])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for a background ping; returns (transmitted, received).
fn ping_result(p: Child) -> (u32, u32) {
    let out = p.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("packets transmitted")).unwrap_or_else(|| panic!("ping: {text}"));
    let num = |word: &str| -> u32 {
        let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        let i = words.iter().position(|w| *w == word).unwrap_or_else(|| panic!("{line}"));
        words[i - 1].parse().unwrap()
    };
    (num("packets"), num("received"))
}

fn children(s: &serde_json::Value) -> Vec<serde_json::Value> {
    let sas = s["status"]["tunnels"][0]["ike_sas"].as_array().cloned().unwrap_or_default();
    sas.iter().flat_map(|sa| sa["children"].as_array().cloned().unwrap_or_default()).collect()
}

#[test]
fn vpnctl_commands_against_two_daemons_with_traffic_across_rekeys() {
    let has_ping = Path::new("/usr/bin/ping").exists() || Path::new("/bin/ping").exists();
    if !gateway::sys::is_root() || ip_binary().is_err() || !has_ping {
        eprintln!("skipped: needs root, ip and ping for network namespaces");
        return;
    }
    let mut lab = Lab::default();
    let (na, nb) = (format!("vgo3c{}a", std::process::id()), format!("vgo3c{}b", std::process::id()));
    for ns in [&na, &nb] {
        ip(&["netns", "add", ns]);
        lab.namespaces.push(ns.clone());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    ip(&["-n", &na, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", &nb]);
    for (ns, wan, lan) in [(&na, "192.0.2.1/24", "10.1.0.1/24"), (&nb, "192.0.2.2/24", "10.2.0.1/24")] {
        ip(&["-n", ns, "addr", "add", wan, "dev", "wan0"]);
        ip(&["-n", ns, "link", "set", "wan0", "up"]);
        // The inside address lives on a veth pair within the namespace (no dummy module).
        ip(&["-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"]);
        ip(&["-n", ns, "addr", "add", lan, "dev", "lan0"]);
        ip(&["-n", ns, "link", "set", "lan0", "up"]);
        ip(&["-n", ns, "link", "set", "lan1", "up"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    lab.dir = Some(dir);
    std::fs::write(d.join("psk"), "a network-namespace test key, 32+ bytes long").unwrap();
    std::fs::set_permissions(d.join("psk"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // A rekeys its CHILD SA after 100 packets (counted by the datapath, per SA and
    // direction; hard limit 110). B asks every initiator for a COOKIE first.
    let ca = config(&d, "a", "192.0.2.1", "192.0.2.2", "10.1.0.0/24", "10.2.0.0/24", "", "child_rekey_packets = 100");
    let cb = config(&d, "b", "192.0.2.2", "192.0.2.1", "10.2.0.0/24", "10.1.0.0/24", "cookie_threshold = 0", "");
    for (ns, cfg, log) in [(&nb, &cb, "b.log"), (&na, &ca, "a.log")] {
        let log = std::fs::File::create(d.join(log)).unwrap();
        let child = Command::new(ip_binary().unwrap())
            .args(["netns", "exec", ns])
            .arg(env!("CARGO_BIN_EXE_vpngw"))
            .arg("--config")
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        lab.daemons.push(child);
    }
    let a = Gw { ns: na.clone(), socket: d.join("a.sock"), tunnel: "site-a-peer".into() };
    let b = Gw { ns: nb.clone(), socket: d.join("b.sock"), tunnel: "site-b-peer".into() };
    wait_until("both control sockets", || {
        a.vpnctl(&["status"]).status.success() && b.vpnctl(&["status"]).status.success()
    });

    // Both only respond: the tunnel is down until `vpnctl up`.
    assert!(a.ctl(&["status", "site-a-peer"], 0).contains("tunnel site-a-peer: DOWN (waiting for the peer)"));
    let out = a.ctl(&["up", "site-a-peer"], 0);
    assert!(out.starts_with("site-a-peer is up: IKE SA "), "{out}");
    let (tx, rx) = ping_result(a.ping("10.1.0.1", "10.2.0.1", 5, "0.1"));
    assert_eq!((tx, rx), (5, 5), "pings across the new tunnel");
    // B's `cookie_threshold = 0` reached its IKE endpoint: A came in with a COOKIE, and
    // B's status counts it; nothing is left half-open.
    let ike = b.status_json()["status"]["ike"].clone();
    assert_eq!(ike["half_open"], 0, "{ike}");
    assert!(ike["drops"]["cookies_sent"].as_u64() >= Some(1), "{ike}");
    assert!(ike["drops"]["cookie_required"].as_u64() >= Some(1), "{ike}");
    assert_eq!(a.status_json()["status"]["ike"]["drops"]["cookies_sent"], 0);
    let text = b.ctl(&["status"], 0);
    assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("IKE: 0 half-open; refused: ")), "{text}");

    // CHILD SA rekey with pings in flight: new SPIs, PFS, no loss.
    let first = children(&a.status_json());
    let pinger = a.ping("10.1.0.1", "10.2.0.1", 40, "0.05");
    std::thread::sleep(Duration::from_millis(500));
    let out = a.ctl(&["rekey", "site-a-peer"], 0);
    assert!(out.starts_with("site-a-peer: rekeyed CHILD SA "), "{out}");
    assert!(out.contains("(PFS CURVE_25519)"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    // IKE SA rekey: the CHILD SA moves over unchanged.
    let out = a.ctl(&["rekey", "site-a-peer", "--ike"], 0);
    assert!(out.starts_with("site-a-peer: rekeyed IKE SA "), "{out}");
    assert_eq!(ping_result(pinger), (40, 40), "no ping lost across the CHILD and IKE SA rekeys");
    let s = a.status_json();
    let now = children(&s);
    assert_eq!(now.len(), 1, "old CHILD SA deleted: {s:#}");
    assert_ne!(now[0]["spi_in"], first[0]["spi_in"]);
    assert_eq!(now[0]["dh"], "CURVE_25519");
    assert!(now[0]["rekey_in_s"].as_u64().is_some() && now[0]["expires_in_s"].as_u64().is_some(), "{s:#}");
    let sa = &s["status"]["tunnels"][0]["ike_sas"][0];
    assert!(sa["next_rekey_in_s"].as_u64().is_some(), "{s:#}");
    assert!(sa["last_heard_ago_s"].as_u64().is_some(), "{s:#}");
    let text = a.ctl(&["status", "site-a-peer"], 0);
    assert!(text.contains("IKE rekey    in ") && text.contains("    lifetime     rekey in "), "{text}");

    // A packet limit reached in the datapath rekeys the CHILD SA by itself, without loss.
    let before = now[0]["spi_in"].clone();
    assert_eq!(ping_result(a.ping("10.1.0.1", "10.2.0.1", 150, "0.02")), (150, 150), "no loss across the rekey");
    wait_until("the CHILD SA replaced after 100 packets", || {
        let c = children(&a.status_json());
        c.len() == 1 && c[0]["spi_in"] != before
    });
    let c = children(&a.status_json());
    let (out, inb) = (&c[0]["outbound"], &c[0]["inbound"]);
    assert!(out["packets"].as_u64() < Some(100) && inb["packets"].as_u64() < Some(100), "{c:#?}");
    assert_eq!((out["drops"]["expired"].as_u64(), inb["drops"]["expired"].as_u64()), (Some(0), Some(0)));

    // Errors: unknown tunnel.
    let out = a.vpnctl(&["rekey", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_tunnel"));

    // down: gone on both sides, and it stays down.
    let out = a.ctl(&["down", "site-a-peer"], 0);
    assert!(out.contains("site-a-peer is down"), "{out}");
    wait_until("B to drop the tunnel", || b.status_json()["status"]["tunnels"][0]["ike_sas"] == serde_json::json!([]));
    assert!(a.ctl(&["status"], 0).contains("stopped by `vpnctl down`"));
    let out = a.vpnctl(&["rekey", "site-a-peer"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_established"));
}
