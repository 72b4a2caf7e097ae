//! vpngw speaks systemd's readiness protocol (`Type=notify`): started with
//! `NOTIFY_SOCKET` naming a Unix datagram socket this test binds, in a throwaway network
//! namespace (`vgntfy<id>`, a veth pair carrying 192.0.2.1 and 192.0.2.3):
//!
//! - `READY=1` arrives once, and only after the TUN device, the WAN sockets (UDP 500,
//!   4500, raw ESP), the route and the control socket exist: when it arrives, each of
//!   them is there, the log already records every step (a line written before the
//!   datagram was sent), and `vpnctl status` is answered;
//! - a second daemon that gets through the TUN device, its sockets and its route but
//!   fails at the last step (the control socket is the first daemon's) exits 1 and
//!   never sends `READY=1`;
//! - SIGTERM brings `STOPPING=1` once, then a clean exit.
//!
//! Needs root and `ip`: prints `SKIPPED <test>: <reason>` otherwise, but fails under
//! `CI=true`. The namespace and the daemons are removed even when an assertion fails.

use gateway::sys::route::ip_binary;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use testkit::netns::Netns;
use testkit::{wait_for, Need};

/// The namespace, the daemons and the work directory; removed on drop.
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
        let ns = Netns::create(&format!("vgntfy{}", testkit::unique_id())).unwrap();
        for args in [
            &["link", "add", "wan0", "type", "veth", "peer", "name", "wan1"][..],
            &["addr", "add", "192.0.2.1/24", "dev", "wan0"],
            &["addr", "add", "192.0.2.3/24", "dev", "wan0"],
            &["link", "set", "wan0", "up"],
            &["link", "set", "wan1", "up"],
        ] {
            ns.ip(args).unwrap();
        }
        let lab = Self { ns, dir: tempfile::tempdir().unwrap(), daemons: vec![] };
        let psk = lab.path("psk");
        std::fs::write(&psk, "a network-namespace test key, 32+ bytes long").unwrap();
        std::fs::set_permissions(&psk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Binds the notify socket `NAME.notify` and starts vpngw (log in `NAME.log`) on
    /// `local`, TUN `tun`, control socket `sock` and remote subnet `remote`, with
    /// `NOTIFY_SOCKET` naming that socket.
    fn start(&mut self, name: &str, local: &str, tun: &str, sock: &str, remote: &str) -> UnixDatagram {
        let notify_path = self.path(&format!("{name}.notify"));
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let text = format!(
            "[gateway]\nlocal_address = \"{local}\"\ntun_name = \"{tun}\"\ncontrol_socket = \"{sock}\"\n\n\
             [[tunnel]]\nname = \"site-b\"\nremote_address = \"192.0.2.2\"\npsk_file = \"{psk}\"\n\
             local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"{remote}\"]\nstart = \"respond\"\n",
            sock = self.path(sock).display(),
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
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemons.push(child);
        notify
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// `/proc/PID/net/FILE` of the first daemon: its network namespace's sockets.
    fn proc_net(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/net/{file}", self.daemons[0].id())).unwrap()
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    wait_for(within, "the daemon to exit", || child.try_wait().ok().flatten()).ok()
}

/// The next notification datagram, waiting at most `within`.
fn recv(sock: &UnixDatagram, within: Duration) -> Option<String> {
    sock.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => None,
        Err(e) => panic!("recv: {e}"),
    }
}

/// Whether a `/proc/net/{udp,raw}` table lists a socket bound to 192.0.2.1 with this
/// port (for raw sockets: protocol), in the kernel's hex notation.
fn bound(table: &str, port: u16) -> bool {
    let local = format!("010200C0:{port:04X}");
    table.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
}

#[test]
fn ready_only_once_everything_is_up_and_stopping_on_sigterm() {
    let test = "ready_only_once_everything_is_up_and_stopping_on_sigterm";
    if !testkit::require(test, &[Need::Root, Need::Command("ip")]) {
        return;
    }
    let mut lab = Lab::new();
    let notify_a = lab.start("a", "192.0.2.1", "vpn0", "a.sock", "10.2.0.0/24");
    let ready = recv(&notify_a, Duration::from_secs(20)).unwrap_or_else(|| panic!("no READY=1:\n{}", lab.log("a")));
    assert_eq!(ready, "READY=1\nSTATUS=1 tunnel(s), WAN 192.0.2.1, vpn0");

    // Every resource exists now, and the log (written before the datagram was sent)
    // records each step in order.
    assert!(lab.ns.ip(&["link", "show", "vpn0", "up"]).unwrap().contains("vpn0"), "TUN device up");
    let udp = lab.proc_net("udp");
    assert!(bound(&udp, 500) && bound(&udp, 4500), "UDP 500 and 4500 bound:\n{udp}");
    assert!(bound(&lab.proc_net("raw"), 50), "raw ESP socket open:\n{}", lab.proc_net("raw"));
    assert!(lab.ns.ip(&["route", "show", "10.2.0.0/24"]).unwrap().contains("dev vpn0"), "route installed");
    assert!(lab.path("a.sock").exists(), "control socket bound");
    let log = lab.log("a");
    let at = |what: &str| log.find(what).unwrap_or_else(|| panic!("{what:?} not logged before READY=1:\n{log}"));
    assert!(at("TUN device up") < at("WAN sockets bound"), "{log}");
    assert!(at("WAN sockets bound") < at("route installed"), "{log}");
    assert!(at("route installed") < at("privileges dropped"), "{log}");
    assert!(at("privileges dropped") < at("vpngw running"), "{log}");
    let status = Command::new(env!("CARGO_BIN_EXE_vpnctl"))
        .arg("--socket")
        .arg(lab.path("a.sock"))
        .arg("status")
        .output()
        .unwrap();
    assert!(status.status.success(), "vpnctl status answered: {status:?}");

    // A daemon that fails at the last step never says it is ready.
    let notify_b = lab.start("b", "192.0.2.3", "vpn1", "a.sock", "10.3.0.0/24");
    let b = lab.daemons.last_mut().unwrap();
    let exit = wait_exit(b, Duration::from_secs(20)).expect("the second daemon exits");
    let log_b = lab.log("b");
    assert_eq!(exit.code(), Some(1), "{log_b}");
    assert!(log_b.contains("WAN sockets bound") && log_b.contains("route installed"), "{log_b}");
    assert!(log_b.contains("another vpngw is already serving"), "{log_b}");
    notify_b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    let got = notify_b.recv(&mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert_eq!(got.map_err(|e| e.kind()), Err(std::io::ErrorKind::WouldBlock), "no notification from a failed start");

    // SIGTERM: STOPPING=1, once, then a clean exit.
    assert_eq!(recv(&notify_a, Duration::from_millis(1)), None, "nothing after READY=1 while running");
    let pid = lab.daemons[0].id();
    assert!(Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap().success());
    let stopping = recv(&notify_a, Duration::from_secs(10)).expect("STOPPING=1 after SIGTERM");
    assert_eq!(stopping, "STOPPING=1\nSTATUS=deleting SAs");
    let exit = wait_exit(&mut lab.daemons[0], Duration::from_secs(10)).expect("the daemon exits on SIGTERM");
    assert!(exit.success(), "exit {exit:?}:\n{}", lab.log("a"));
    notify_a.set_nonblocking(true).unwrap();
    assert!(notify_a.recv(&mut buf).is_err(), "STOPPING=1 is sent once");
}
