//! vpngw's least privilege, checked on a real daemon in a throwaway network namespace
//! (`vgpriv<pid>`, a veth pair carrying 192.0.2.1): once running, every thread holds
//! only CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE (effective, permitted and
//! bounding; nothing inheritable or ambient), NO_NEW_PRIVS is set, the core file limit
//! is 0 and the process is not dumpable; a second daemon on the same `tun_name` fails
//! clearly; and shutdown, with those reduced privileges, still removes the route, the
//! TUN device and the control socket. `vpnctl status` shows the IKE counters, and the
//! metrics endpoint (`metrics_listen` on the namespace's loopback, served by a thread
//! with the same reduced privileges) answers a scrape whose IKE drop counter grows when
//! junk is sent to UDP 500.
//!
//! Needs root and `ip`: prints `SKIPPED <test>: <reason>` otherwise, but fails under
//! `CI=true` (`testkit::require`). The
//! namespace and the daemons (by PID) are removed even when an assertion fails.

use gateway::sys::privs::{limit_thread_capabilities, mask, DAEMON_CAPS};
use gateway::sys::route::ip_binary;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;
use testkit::netns::Netns;
use testkit::{wait_for, Need};

fn ip(args: &[&str]) -> Output {
    Command::new(ip_binary().unwrap()).args(args).output().unwrap()
}

/// The namespace, the daemons (stopped by PID) and the work directory; removed on drop.
struct Lab {
    ns: Netns,
    dir: tempfile::TempDir,
    daemons: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            if matches!(d.try_wait(), Ok(None)) {
                let _ = Command::new("kill").arg("-TERM").arg(d.id().to_string()).status();
            }
        }
        for d in &mut self.daemons {
            let _ = wait_exit(d, Duration::from_secs(5));
            let _ = d.kill();
            let _ = d.wait();
        }
        if std::thread::panicking() {
            for log in ["a.log", "b.log"] {
                let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
                eprintln!("--- {log}\n{text}");
            }
        }
    }
}

impl Lab {
    fn new() -> Self {
        let ns = Netns::create(&format!("vgpriv{}", testkit::unique_id())).unwrap();
        for args in [
            &["link", "add", "wan0", "type", "veth", "peer", "name", "wan1"][..],
            &["addr", "add", "192.0.2.1/24", "dev", "wan0"],
            &["link", "set", "wan0", "up"],
            &["link", "set", "wan1", "up"],
            &["link", "set", "lo", "up"],
        ] {
            ns.ip(args).unwrap();
        }
        let lab = Self { ns, dir: tempfile::tempdir().unwrap(), daemons: vec![] };
        let psk = lab.dir.path().join("psk");
        std::fs::write(&psk, "a network-namespace test key, 32+ bytes long").unwrap();
        std::fs::set_permissions(&psk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `NAME.toml` (TUN vpn0, control socket `NAME.sock`) and starts vpngw on it
    /// (log in `NAME.log`).
    fn start(&mut self, name: &str) -> u32 {
        let text = format!(
            "[gateway]\nlocal_address = \"192.0.2.1\"\ntun_name = \"vpn0\"\ncontrol_socket = \"{sock}\"\n\
             metrics_listen = \"127.0.0.1:9750\"\n\n\
             [[tunnel]]\nname = \"site-b\"\nremote_address = \"192.0.2.2\"\npsk_file = \"{psk}\"\n\
             local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.2.0.0/24\"]\nstart = \"respond\"\n",
            sock = self.path(&format!("{name}.sock")).display(),
            psk = self.path("psk").display()
        );
        let cfg = self.path(&format!("{name}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let log = std::fs::File::create(self.path(&format!("{name}.log"))).unwrap();
        let child = Command::new(ip_binary().unwrap())
            .args(["netns", "exec", self.ns.name()])
            .arg(env!("CARGO_BIN_EXE_vpngw"))
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        self.daemons.push(child);
        pid
    }

    fn vpnctl(&self, name: &str, args: &[&str]) -> Output {
        let sock = self.path(&format!("{name}.sock"));
        Command::new(env!("CARGO_BIN_EXE_vpnctl")).arg("--socket").arg(sock).args(args).output().unwrap()
    }

    /// `GET /metrics` from inside the namespace (bash's /dev/tcp: no HTTP client
    /// needed); the whole answer, headers included.
    fn scrape(&self) -> String {
        let script =
            "exec 3<>/dev/tcp/127.0.0.1/9750 && printf 'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3 && cat <&3";
        let out = self.ns.exec(&["timeout", "10", "bash", "-c", script]).output().unwrap();
        assert!(out.status.success(), "scrape failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The sum of the samples of `name` in a scrape.
    fn sum(scrape: &str, name: &str) -> u64 {
        scrape
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    wait_for(within, "the daemon to exit", || child.try_wait().ok().flatten()).ok()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    wait_for(Duration::from_secs(20), what, || f().then_some(())).unwrap();
}

/// A `Name:\t<hex>` capability line of a /proc status file, as a mask.
fn cap_field(status: &str, name: &str) -> u64 {
    let v = status.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).unwrap_or_else(|| panic!("{name}"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

/// Opens `/proc/PID/environ` from a thread holding DAEMON_CAPS only (no
/// CAP_SYS_PTRACE): the kernel lets that thread read the environment of a process of
/// the same uid with no more capabilities only while that process is dumpable. As the
/// control, a `sleep` started from that thread (so with the same capabilities, and
/// dumpable) must be readable, or the check would prove nothing.
fn environ_readable_without_ptrace_capability(pid: u32) -> (std::io::Result<()>, std::io::Result<()>) {
    std::thread::spawn(move || {
        limit_thread_capabilities(&DAEMON_CAPS).unwrap();
        let mut control = Command::new("sleep").arg("30").spawn().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", control.id())).unwrap();
        assert_eq!(cap_field(&status, "CapPrm"), mask(&DAEMON_CAPS), "the control has what the daemon keeps");
        let open = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).map(drop);
        let result = (open(pid), open(control.id()));
        let _ = control.kill();
        let _ = control.wait();
        result
    })
    .join()
    .unwrap()
}

#[test]
fn the_daemon_keeps_only_network_capabilities_and_still_shuts_down_cleanly() {
    let test = "the_daemon_keeps_only_network_capabilities_and_still_shuts_down_cleanly";
    if !testkit::require(test, &[Need::Root, Need::Command("ip")]) {
        return;
    }
    let mut lab = Lab::new();
    let launched = lab.start("a");
    wait_until("the control socket", || lab.vpnctl("a", &["status"]).status.success());
    let out = lab.vpnctl("a", &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid = u32::try_from(status["status"]["daemon"]["pid"].as_u64().unwrap()).unwrap();
    assert_eq!(pid, launched, "ip netns exec runs vpngw in its own process");

    // The IKE counters are in the report (item 7's status side), zero on a quiet daemon.
    let ike = &status["status"]["ike"];
    assert_eq!(ike["half_open"], 0, "{ike}");
    for k in ["malformed", "unknown_spi", "cookie_required", "half_open_cap", "rate_limited"] {
        assert_eq!(ike["drops"][k], 0, "{k}: {ike}");
    }
    for k in ["refused_proposal", "child_sa_cap", "cookies_sent"] {
        assert_eq!(ike["drops"][k], 0, "{k}: {ike}");
    }
    let text = String::from_utf8(lab.vpnctl("a", &["status"]).stdout).unwrap();
    assert_eq!(text.lines().nth(1).map(|l| l.split(';').next()), Some(Some("IKE: 0 half-open")), "{text}");

    // The metrics endpoint of the running daemon: HTTP framing, the format, the tunnel,
    // and an IKE drop counter that grows once junk reaches UDP 500.
    let first = lab.scrape();
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "{first}");
    assert!(first.contains("# TYPE vpngw_ike_drops_total counter\n"), "{first}");
    assert!(first.contains("\nvpngw_tunnel_up{tunnel=\"site-b\"} 0\n"), "{first}");
    assert_eq!(Lab::sum(&first, "vpngw_ike_drops_total"), 0, "{first}");
    let junk = "printf 'not an IKE message' > /dev/udp/192.0.2.1/500";
    assert!(lab.ns.exec(&["bash", "-c", junk]).status().unwrap().success());
    wait_until("the junk datagram counted", || Lab::sum(&lab.scrape(), "vpngw_ike_drops_total") == 1);
    assert!(lab.log("a").contains("metrics endpoint listening"), "{}", lab.log("a"));

    // Every thread (control, datapath workers, control socket, metrics, signals) holds exactly
    // the three network capabilities, nothing to pass on, and no way to gain more.
    let keep = mask(&DAEMON_CAPS);
    assert_eq!(keep, 1 << 10 | 1 << 12 | 1 << 13);
    let tasks: Vec<PathBuf> =
        std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(tasks.len() >= 3, "the daemon runs its worker threads: {tasks:?}");
    let names: Vec<String> =
        tasks.iter().map(|t| std::fs::read_to_string(t.join("comm")).unwrap().trim().to_string()).collect();
    assert!(names.iter().any(|n| n == "metrics"), "a metrics thread: {names:?}");
    for task in &tasks {
        let s = std::fs::read_to_string(task.join("status")).unwrap();
        let name = s.lines().next().unwrap_or_default().to_string();
        for (field, want) in [("CapEff", keep), ("CapPrm", keep), ("CapBnd", keep), ("CapInh", 0), ("CapAmb", 0)] {
            assert_eq!(cap_field(&s, field), want, "{field} of {} ({name})", task.display());
        }
        assert!(s.lines().any(|l| l == "NoNewPrivs:\t1"), "NoNewPrivs of {} ({name})", task.display());
    }
    // No core file: the limit is 0 (soft and hard).
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    assert_eq!(core.split_whitespace().collect::<Vec<_>>(), ["Max", "core", "file", "size", "0", "0", "bytes"]);
    // Not dumpable.
    let (daemon, control) = environ_readable_without_ptrace_capability(pid);
    assert!(control.is_ok(), "a dumpable process with the same capabilities is readable: {control:?}");
    let e = daemon.expect_err("the daemon's environment must be closed to processes without CAP_SYS_PTRACE");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(lab.log("a").contains("privileges dropped"), "{}", lab.log("a"));

    // A second daemon on the same tun_name fails at once and says why; the first lives on.
    lab.start("b");
    let second = lab.daemons.last_mut().unwrap();
    let exit = wait_exit(second, Duration::from_secs(10)).expect("the second daemon exits");
    assert_eq!(exit.code(), Some(1), "{}", lab.log("b"));
    let log = lab.log("b");
    assert!(
        log.contains("TUN vpn0: an interface named vpn0 already exists (another vpngw with the same tun_name?)"),
        "{log}"
    );
    assert!(lab.vpnctl("a", &["status"]).status.success(), "the first daemon still answers");
    assert!(!lab.path("b.sock").exists());

    // Shutdown with the reduced privileges: `ip route del` (run with CAP_NET_ADMIN
    // inherited) succeeds, the TUN device and the control socket go.
    let route = |ns: &str| String::from_utf8(ip(&["-n", ns, "route", "show", "10.2.0.0/24"]).stdout).unwrap();
    assert!(route(lab.ns.name()).contains("dev vpn0"), "route installed: {:?}", route(lab.ns.name()));
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
    let first = lab.daemons.first_mut().unwrap();
    let exit = wait_exit(first, Duration::from_secs(10)).expect("the daemon exits on SIGTERM");
    let log = lab.log("a");
    assert!(exit.success(), "exit {exit:?}:\n{log}");
    assert!(log.contains("routes and control socket removed"), "{log}");
    assert!(!log.contains("route removal"), "`ip route del` failed:\n{log}");
    assert!(route(lab.ns.name()).trim().is_empty(), "{:?}", route(lab.ns.name()));
    assert!(!ip(&["-n", lab.ns.name(), "link", "show", "vpn0"]).status.success(), "TUN device gone");
    assert!(!lab.path("a.sock").exists(), "control socket removed");
}
