//! The control socket end to end over a real Unix socket: `ControlSocket` (daemon side)
//! with a stand-in control thread answering from a fixed report, `client::request`,
//! and the `vpnctl` binary rendering it. Also the socket's file-system hygiene.

use gateway::control::client::{self, ClientError};
use gateway::control::proto::{
    Action, ActionReport, ChildSaInfo, DaemonInfo, Encapsulation, ErrorCode, ErrorReply, FailoverStatus, GlobalDrops,
    IkeDropCounters, IkeInfo, IkeSaInfo, IoErrors, Outcome, ReloadReport, Reply, Request, SaDrops, SaTraffic,
    StatusReport, TunnelCounters, TunnelStatus,
};
use gateway::control::server::ControlSocket;
use gateway::driver::ControlMsg;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;
use testkit::Need;

fn report() -> StatusReport {
    StatusReport {
        daemon: DaemonInfo {
            version: "0.1.0".into(),
            pid: 4242,
            uptime_s: 7260,
            local_address: "192.0.2.1".into(),
            ike_port: 500,
            natt_port: 4500,
            tun_name: "vpn0".into(),
            tun_mtu: 1400,
            esp_overhead_max: 37,
        },
        ike: IkeInfo {
            half_open: 17,
            drops: IkeDropCounters {
                malformed: 21,
                unknown_spi: 22,
                cookie_required: 23,
                half_open_cap: 24,
                rate_limited: 25,
                refused_proposal: 26,
                child_sa_cap: 27,
                cookies_sent: 28,
                fragment_malformed: 29,
                fragment_unauthenticated: 30,
                fragment_limit: 31,
                fragment_duplicate: 32,
            },
        },
        tunnels: vec![
            TunnelStatus {
                name: "site-b".into(),
                remote_address: "192.0.2.2".into(),
                local_subnets: vec!["10.1.0.0/24".into()],
                remote_subnets: vec!["10.2.0.0/24".into()],
                start: "initiate".into(),
                encapsulation: "auto".into(),
                child_sa_per_subnet_pair: false,
                stopped: false,
                counters: TunnelCounters::default(),
                dpd_delay_s: None,
                dpd_timeout_s: 150,
                dpd_action: "restart".into(),
                ike_sas: vec![IkeSaInfo {
                    ike_version: 2,
                    state: "ESTABLISHED".into(),
                    role: "responder".into(),
                    local: "192.0.2.1:500".into(),
                    remote: "192.0.2.2:500".into(),
                    local_id: "gw-a.example.net".into(),
                    remote_id: "gw-b.example.net".into(),
                    spi_i: "00000000000000aa".into(),
                    spi_r: "00000000000000bb".into(),
                    encr: Some("AES_GCM_16-128".into()),
                    integ: None,
                    prf: Some("PRF_HMAC_SHA2_256".into()),
                    dh: Some("ECP_256".into()),
                    proposal: Some("aes128gcm16-prfsha256-ecp256".into()),
                    nat_detected: false,
                    encap_reason: None,
                    established_ago_s: Some(125),
                    last_heard_ago_s: Some(1),
                    next_rekey_in_s: Some(3300),
                    children: vec![ChildSaInfo {
                        child_id: 7,
                        state: "INSTALLED".into(),
                        local_ts: vec!["10.1.0.0/24".into()],
                        remote_ts: vec!["10.2.0.0/24".into()],
                        spi_in: "c1000001".into(),
                        spi_out: "c2000002".into(),
                        encr: "AES_GCM_16-128".into(),
                        integ: None,
                        dh: Some("ECP_256".into()),
                        proposal: "aes128gcm16-ecp256".into(),
                        esp_overhead_max: 37,
                        encapsulation: Encapsulation::Raw,
                        replay_window: 64,
                        established_ago_s: 60,
                        rekey_in_s: Some(2940),
                        expires_in_s: Some(3540),
                        inbound: Some(SaTraffic {
                            bytes: 84,
                            packets: 1,
                            seq: 1,
                            superseded: false,
                            drops: SaDrops { replay: 4, icv_failure: 5, selector_mismatch: 6, expired: 0 },
                        }),
                        outbound: Some(SaTraffic {
                            bytes: 168,
                            packets: 2,
                            seq: 2,
                            superseded: false,
                            drops: SaDrops { expired: 9, ..SaDrops::default() },
                        }),
                    }],
                }],
                failover: None,
            },
            TunnelStatus {
                name: "site-c".into(),
                remote_address: "198.51.100.7".into(),
                local_subnets: vec!["10.1.0.0/24".into()],
                remote_subnets: vec!["10.3.0.0/24".into()],
                start: "respond".into(),
                encapsulation: "udp".into(),
                child_sa_per_subnet_pair: true,
                stopped: true,
                counters: TunnelCounters::default(),
                dpd_delay_s: Some(30),
                dpd_timeout_s: 150,
                dpd_action: "clear".into(),
                ike_sas: vec![],
                failover: Some(FailoverStatus {
                    group: "site-b".into(),
                    role: "standby".into(),
                    state: "down".into(),
                    failback: true,
                    activations: 2,
                }),
            },
        ],
        global_drops: GlobalDrops { malformed: 11, unknown_spi: 12, no_sa: 13 },
        io_errors: IoErrors { wan_send: 1, tun_write: 2, ike_queue_full: 3, tun_read_malformed: 4 },
    }
}

/// The stand-in control thread's answers: the fixed report (filtered by tunnel), an
/// `unknown_tunnel` error for names other than site-b and site-c, and for tunnel
/// commands an `ActionReport` whose message echoes the request as received (so tests
/// see what vpnctl sent): `Done` for `up`, `Failed` for `down`, `Pending` for `rekey`.
fn stand_in_answer(request: Request) -> Reply {
    let tunnel = match &request {
        Request::Reload => return reload_report(),
        Request::Status { tunnel } => tunnel.clone(),
        Request::Watch => None,
        Request::Up { tunnel, .. } | Request::Down { tunnel, .. } | Request::Rekey { tunnel, .. } => {
            Some(tunnel.clone())
        }
    };
    if let Some(t) = &tunnel {
        if t != "site-b" && t != "site-c" {
            return Reply::Error(ErrorReply {
                code: ErrorCode::UnknownTunnel,
                message: format!("no tunnel named {t:?}"),
            });
        }
    }
    let mut r = report();
    r.tunnels.retain(|x| tunnel.as_ref().map_or(true, |t| x.name == *t));
    let (action, outcome) = match &request {
        Request::Status { .. } | Request::Reload => return Reply::Status(r),
        Request::Watch => unreachable!("the socket serves watch itself"),
        Request::Up { .. } => (Action::Up, Outcome::Done),
        Request::Down { .. } => (Action::Down, Outcome::Failed),
        Request::Rekey { .. } => (Action::RekeyChild, Outcome::Pending),
    };
    Reply::Action(ActionReport {
        tunnel: tunnel.unwrap_or_default(),
        action,
        outcome,
        message: format!("received {request:?}"),
        events: vec!["CHILD SA installed: in c3000003, out c4000004".into()],
        elapsed_ms: 5,
        tunnel_status: r.tunnels.pop(),
    })
}

/// The stand-in's answer to `reload`.
fn reload_report() -> Reply {
    Reply::Reload(ReloadReport {
        file: "/etc/vpngw/vpngw.toml".into(),
        added: vec!["site-d".into()],
        removed: vec!["site-c".into()],
        changed: vec![],
        unchanged: vec!["site-b".into()],
        gateway: vec!["gateway.half_open_max".into()],
        routes: vec!["+10.4.0.0/24".into(), "-10.3.0.0/24".into()],
        warnings: vec![],
    })
}

/// Binds the socket in `dir` and answers every request with `report()` on a thread
/// standing in for the control thread.
fn serve(dir: &Path) -> (ControlSocket, std::path::PathBuf) {
    let path = dir.join("run/vpngw.sock");
    let sock = ControlSocket::bind(&path).unwrap();
    let (tx, rx) = mpsc::sync_channel::<ControlMsg>(8);
    sock.serve(tx).unwrap();
    std::thread::spawn(move || {
        for msg in rx {
            if let ControlMsg::Request { request, reply } = msg {
                let _ = reply.send(stand_in_answer(request));
            }
        }
    });
    (sock, path)
}

#[test]
fn status_round_trips_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    let reply = client::request(&path, &Request::Status { tunnel: None }, Duration::from_secs(5)).unwrap();
    assert_eq!(reply, Reply::Status(report()));
}

#[test]
fn socket_is_private_and_removed_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = serve(dir.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    // A second daemon must not steal a live socket.
    let err = ControlSocket::bind(&path).unwrap_err();
    assert!(err.to_string().contains("already serving"), "{err}");
    drop(sock);
    assert!(!path.exists());
}

#[test]
fn stale_socket_is_replaced_but_a_regular_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let sock = ControlSocket::bind(&path).unwrap();
    drop(sock);
    let file = dir.path().join("precious");
    std::fs::write(&file, "data").unwrap();
    let err = ControlSocket::bind(&file).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
}

#[test]
fn symlinks_are_refused_at_the_socket_path_and_as_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    // A symlink at the socket path, dangling or not, is neither followed nor replaced.
    let target = dir.path().join("target");
    let link = dir.path().join("vpngw.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = ControlSocket::bind(&link).unwrap_err();
    assert!(err.to_string().contains("vpngw.sock is a symbolic link; refusing"), "{err}");
    assert!(!target.exists());
    std::fs::write(&target, "data").unwrap();
    assert!(ControlSocket::bind(&link).unwrap_err().to_string().contains("symbolic link"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "data");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());

    // A symlinked directory is refused, even one pointing at a good directory.
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    let linked_dir = dir.path().join("run");
    std::os::unix::fs::symlink(&real, &linked_dir).unwrap();
    let err = ControlSocket::bind(&linked_dir.join("vpngw.sock")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("run is a symbolic link; refusing it"), "{err}");
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0, "nothing bound through the link");
    // The real directory itself is fine.
    drop(ControlSocket::bind(&real.join("vpngw.sock")).unwrap());
}

#[test]
fn a_parent_directory_others_can_rename_in_is_refused() {
    // outer/ (0777, not sticky) holds run/ (0700): anyone could rename run/ away between
    // the check and bind(2) and put their own in its place.
    let outer = tempfile::tempdir().unwrap();
    let run = outer.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = ControlSocket::bind(&run.join("vpngw.sock")).unwrap_err();
    assert!(err.to_string().contains("can be changed by another user"), "{err}");
    // Sticky (like /tmp): others cannot rename what is not theirs.
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    drop(ControlSocket::bind(&run.join("vpngw.sock")).unwrap());
}

#[test]
fn a_directory_others_can_write_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o770, 0o1777, 0o702] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let err = ControlSocket::bind(&dir.path().join("vpngw.sock")).unwrap_err();
        assert!(err.to_string().contains(&format!("is writable by group or others (mode {mode:04o})")), "{err}");
    }
    for mode in [0o700, 0o750, 0o755] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        drop(ControlSocket::bind(&dir.path().join("vpngw.sock")).unwrap_or_else(|e| panic!("{mode:o}: {e}")));
    }
    let test = "a_directory_others_can_write_to_is_refused (foreign owner case)";
    if !testkit::require(test, &[Need::Root]) {
        return;
    }
    std::os::unix::fs::chown(dir.path(), Some(65534), None).unwrap();
    let err = ControlSocket::bind(&dir.path().join("vpngw.sock")).unwrap_err();
    assert!(err.to_string().contains("is owned by uid 65534, not by root"), "{err}");
}

#[test]
fn drop_leaves_a_file_that_replaced_the_socket_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpngw.sock");
    let sock = ControlSocket::bind(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "not ours").unwrap();
    drop(sock);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not ours");
}

#[test]
fn bad_requests_get_error_frames_and_the_connection_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    let stream = UnixStream::connect(&path).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut ask = |line: &str| {
        w.write_all(line.as_bytes()).unwrap();
        let mut out = String::new();
        r.read_line(&mut out).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let v = ask("{\"v\":1,\"cmd\":\"reboot\"}\n");
    assert_eq!(v["v"], 1);
    assert_eq!(v["error"]["code"], "unknown_command");
    let v = ask("{\"v\":9,\"cmd\":\"status\"}\n");
    assert_eq!(v["error"]["code"], "unsupported_version");
    let v = ask("not json\n");
    assert_eq!(v["error"]["code"], "bad_request");
    // Same connection, a good request still works.
    let v = ask("{\"v\":1,\"cmd\":\"status\"}\n");
    assert_eq!(v["status"]["tunnels"][0]["name"], "site-b");
    assert_eq!(v["status"]["global_drops"]["unknown_spi"], 12);
}

#[test]
fn missing_daemon_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.sock");
    let err = client::request(&path, &Request::Status { tunnel: None }, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }));
    let msg = err.to_string();
    assert!(msg.starts_with("vpngw is not running? cannot connect to ") && msg.contains("nope.sock"), "{msg}");
}

#[test]
fn vpnctl_renders_the_status_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--socket").arg(&path).arg("status").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "vpngw 0.1.0 (pid 4242), up 2h 01m",
        "\nIKE: 17 half-open; refused: malformed 21, unknown SPI 22, COOKIE required 23, half-open cap 24, \
         rate-limited 25, no proposal 26, CHILD SA cap 27; COOKIEs sent 28; fragments dropped: malformed 29, \
         unauthenticated 30, over limit 31, duplicate 32\n",
        "tunnel site-b: ESTABLISHED, responder",
        "initiator 00000000000000aa, responder 00000000000000bb (ours)",
        "AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256",
        "no NAT: raw ESP (IP protocol 50)",
        "established  2m 05s ago, last heard from peer 1s ago",
        "child #7 INSTALLED: 10.1.0.0/24 === 10.2.0.0/24",
        "in c1000001, out c2000002",
        "AES_GCM_16-128, PFS ECP_256, raw ESP, tunnel mode, replay window 64",
        "84 B (84 bytes), 1 packets, last seq 1",
        "replay 4, ICV failure 5, selector mismatch 6",
        "IKE rekey    in 55m 00s",
        "DPD          off",
        "lifetime     rekey in 49m 00s, expires in 59m 00s",
        "drops (out)  expired 9 (hard limit reached)",
        "tunnel site-c: DOWN (stopped by `vpnctl down`; `vpnctl up site-c` starts it), peer 198.51.100.7, 10.1.0.0/24 === 10.3.0.0/24",
        "failover     down (no CHILD SA); standby of group site-b, failback on; became active 2 times since start",
        "global drops: malformed 11, unknown SPI 12, no SA (outbound) 13",
        "WAN send errors 1, TUN write errors 2, malformed TUN reads 4, IKE queue overflows 3",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    let out =
        Command::new(env!("CARGO_BIN_EXE_vpnctl")).args(["status", "--json", "--socket"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["v"], 1);
    let child = &v["status"]["tunnels"][0]["ike_sas"][0]["children"][0];
    assert_eq!(child["spi_in"], "c1000001");
    assert_eq!(child["encapsulation"]["mode"], "raw");
    assert_eq!(child["inbound"]["drops"]["icv_failure"], 5);
    assert_eq!(v["status"]["ike"]["half_open"], 17);
    assert_eq!(v["status"]["ike"]["drops"]["cookie_required"], 23);
    assert_eq!(v["status"]["ike"]["drops"]["cookies_sent"], 28);
    assert_eq!(v["status"]["tunnels"][1]["failover"]["state"], "down");
    assert_eq!(v["status"]["tunnels"][1]["failover"]["group"], "site-b");
    assert!(v["status"]["tunnels"][0].get("failover").is_none(), "absent for a tunnel in no group");
    let back: gateway::control::proto::ResponseFrame = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(back.reply, Reply::Status(report()));
}

#[test]
fn vpnctl_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--socket").arg(&missing).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vpngw is not running? cannot connect to") && err.contains("missing.sock"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_vpnctl")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = ErrorCode::PermissionDenied;
    assert_eq!(serde_json::to_string(&e).unwrap(), "\"permission_denied\"");
}

/// Runs `cmd` as nobody (setpriv), or returns `None` when we cannot switch users.
fn as_nobody(test: &str, exe: &str, args: &[&std::ffi::OsStr]) -> Option<std::process::Output> {
    if !testkit::require(test, &[Need::Root, Need::Command("setpriv")]) {
        return None;
    }
    Some(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", exe])
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn non_root_clients_are_refused_even_if_the_file_mode_lets_them_in() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    // Defeat the file-system layer on purpose: the SO_PEERCRED check must still refuse.
    for p in [dir.path(), path.parent().unwrap()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let args = [std::ffi::OsStr::new("--socket"), path.as_os_str(), std::ffi::OsStr::new("status")];
    let Some(out) = as_nobody(
        "non_root_clients_are_refused_even_if_the_file_mode_lets_them_in",
        env!("CARGO_BIN_EXE_vpnctl"),
        &args,
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the request: vpngw control requires root (permission_denied)"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn non_root_clients_cannot_open_a_private_socket() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_sock, path) = serve(dir.path());
    let args = [std::ffi::OsStr::new("--socket"), path.as_os_str(), std::ffi::OsStr::new("status")];
    let Some(out) = as_nobody("non_root_clients_cannot_open_a_private_socket", env!("CARGO_BIN_EXE_vpnctl"), &args)
    else {
        return;
    };
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied") && err.contains("vpnctl must run as root"), "{err}");
}

#[test]
fn vpnctl_finds_the_socket_through_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    let cfg = dir.path().join("vpngw.toml");
    // A relative control_socket is resolved against the config file's directory.
    std::fs::write(
        &cfg,
        "[gateway]\nlocal_address = \"192.0.2.1\"\ncontrol_socket = \"run/vpngw.sock\"\n\n[[tunnel]]\nname = \"site-b\"\n\
         remote_address = \"192.0.2.2\"\npsk = \"0123456789abcdef0123456789abcdef\"\nlocal_subnets = [\"10.1.0.0/24\"]\n\
         remote_subnets = [\"10.2.0.0/24\"]\n",
    )
    .unwrap();
    // It holds the key inline: private, as the configuration check demands.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(path.ends_with("run/vpngw.sock"));
    let out = Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--config").arg(&cfg).arg("status").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tunnel site-b: ESTABLISHED"));
    // Only `control_socket` is read: with the rest of the file broken (a bad value, a
    // key file that does not exist) the daemon is still reached, e.g. to be told to
    // reload and to refuse the file itself.
    std::fs::write(
        &cfg,
        "[gateway]\nlocal_address = 7\ncontrol_socket = \"run/vpngw.sock\"\n\n[[tunnel]]\nname = \"site-b\"\n\
         psk_file = \"/nonexistent/key\"\nremote_subnets = [\"10.2.0/24\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--config").arg(&cfg).arg("status").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A file that is not TOML, or whose control_socket is not a path, is an error (1)
    // naming the file and line.
    for (text, line) in
        [("[gateway]\nlocal_address = \"192.0.2.1\"\ncontrol_socket = 7\n", 3), ("[gateway]\n\nlocal_address = \n", 3)]
    {
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--config").arg(&cfg).arg("status").output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:{line}", cfg.display())), "{err}");
    }
}

fn vpnctl(path: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--socket").arg(path).args(args).output().unwrap()
}

#[test]
fn vpnctl_tunnel_commands_send_the_right_requests_and_exit_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    // up: Done -> exit 0, message, events and the tunnel's block.
    let out = vpnctl(&path, &["up", "site-b"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("received Up { tunnel: \"site-b\", wait_ms: 5000 }"), "{text}");
    assert!(text.contains("  event: CHILD SA installed: in c3000003, out c4000004"), "{text}");
    assert!(text.contains("tunnel site-b: ESTABLISHED, responder"), "{text}");
    assert!(!text.contains("site-c"), "only the tunnel concerned: {text}");
    // rekey --ike --wait 1.5: Pending -> exit 3 with a hint on stderr.
    let out = vpnctl(&path, &["rekey", "site-b", "--ike", "--wait", "1.5"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Rekey { tunnel: \"site-b\", ike: true, wait_ms: 1500 }"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("vpnctl status"));
    // down: Failed -> exit 1; --json prints the versioned frame.
    let out = vpnctl(&path, &["down", "site-c", "--json", "--wait", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["v"].as_u64(), v["action"]["outcome"].as_str()), (Some(1), Some("failed")));
    assert_eq!(v["action"]["message"], "received Down { tunnel: \"site-c\", wait_ms: 0 }");
    assert_eq!(v["action"]["tunnel_status"]["stopped"], true);
}

#[test]
fn vpnctl_unknown_tunnel_is_an_error_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    for args in [&["rekey", "nope"][..], &["up", "nope"], &["down", "nope"], &["status", "nope"]] {
        let out = vpnctl(&path, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no tunnel named \"nope\"") && err.contains("unknown_tunnel"), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // Usage errors stay exit 2.
    assert_eq!(vpnctl(&path, &["rekey"]).status.code(), Some(2));
    assert_eq!(vpnctl(&path, &["up", "site-b", "--wait=-1"]).status.code(), Some(1));
}

#[test]
fn vpnctl_status_of_one_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    let out = vpnctl(&path, &["status", "site-c"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tunnel site-c: DOWN") && !text.contains("tunnel site-b"), "{text}");
    let out = vpnctl(&path, &["status", "site-b", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tunnels = v["status"]["tunnels"].as_array().unwrap();
    assert_eq!(tunnels.len(), 1);
    assert_eq!(tunnels[0]["ike_sas"][0]["next_rekey_in_s"], 3300);
    assert_eq!(tunnels[0]["ike_sas"][0]["children"][0]["expires_in_s"], 3540);
}

#[test]
fn vpnctl_reload_renders_what_changed_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let (_sock, path) = serve(dir.path());
    let out = vpnctl(&path, &["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "reloaded /etc/vpngw/vpngw.toml\n  added:     site-d\n  removed:   site-c\n  changed:   -\n  \
         unchanged: site-b\n  gateway:   gateway.half_open_max\n  routes:    +10.4.0.0/24 -10.3.0.0/24\n"
    );
    let out = vpnctl(&path, &["reload", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let frame = gateway::control::proto::decode_response(std::str::from_utf8(&out.stdout).unwrap().trim()).unwrap();
    assert_eq!(frame.reply, reload_report());
}
