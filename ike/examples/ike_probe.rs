//! A minimal blocking UDP driver for `ike::Endpoint`, for manual interop checks of the
//! IKE negotiation only (no ESP): run it in a network namespace against strongSwan.
//!
//! Usage: `ike_probe <local-ip> <remote-ip> <local-id> <remote-id> <psk> <local-ts>
//! <remote-ts> <initiate:0|1> <seconds> [force-encap:0|1]`
//!
//! Prints every event and datapath command (without keys), then terminates all SAs.
//! Environment overrides for rekey checks (seconds): `PROBE_CHILD_REKEY`,
//! `PROBE_IKE_REKEY`, `PROBE_DPD`, `PROBE_DPD_TIMEOUT`; `PROBE_ESP` (an ESP proposal, e.g.
//! `aes256gcm16-x25519`).

use ike::{Command, Endpoint, EndpointConfig, Output, PeerConfig, Rng};
use ipsec_types::{DatapathCommand, EspProposal, Identity, IkeProposal, Timestamp, TrafficSelector};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

struct SysRng(ring::rand::SystemRandom);

fn die(what: &str) -> ! {
    eprintln!("ike_probe: bad {what}");
    std::process::exit(2);
}

impl Rng for SysRng {
    fn fill(&mut self, buf: &mut [u8]) {
        use ring::rand::SecureRandom;
        if self.0.fill(buf).is_err() {
            std::process::abort();
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn secs_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 10 {
        eprintln!("usage: ike_probe <local-ip> <remote-ip> <local-id> <remote-id> <psk> <local-ts> <remote-ts> <initiate> <seconds> [force-encap]");
        std::process::exit(2);
    }
    let _ = tracing_subscriber::fmt().with_env_filter("ike=debug").try_init();
    let arg = |i: usize| a.get(i).cloned().unwrap_or_default();
    let peer = PeerConfig {
        name: "probe".into(),
        local_addr: arg(1).parse().unwrap_or_else(|_| die("local ip")),
        remote_addr: arg(2).parse().unwrap_or_else(|_| die("remote ip")),
        local_id: Identity::parse(&arg(3)).unwrap_or_else(|_| die("local id")),
        remote_id: Identity::parse(&arg(4)).unwrap_or_else(|_| die("remote id")),
        psk: zeroize::Zeroizing::new(arg(5).into_bytes()),
        local_ts: vec![TrafficSelector::parse_cidr(&arg(6)).unwrap_or_else(|_| die("local ts"))],
        remote_ts: vec![TrafficSelector::parse_cidr(&arg(7)).unwrap_or_else(|_| die("remote ts"))],
        child_sa_per_subnet_pair: false,
        initiate: arg(8) == "1",
        ike_proposals: vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519").unwrap_or_else(|_| die("proposal"))],
        esp_proposals: vec![EspProposal::parse(&env_or("PROBE_ESP", "aes256gcm16")).unwrap_or_else(|_| die("proposal"))],
        force_encap: arg(10) == "1",
        announce_vpngw: false,
        replay_window: 64,
        timers: ipsec_types::SaTimers {
            ike_rekey_time: secs_env("PROBE_IKE_REKEY", 4 * 3600),
            ike_life_time: secs_env("PROBE_IKE_REKEY", 4 * 3600) * 2,
            child_rekey_time: secs_env("PROBE_CHILD_REKEY", 3600),
            child_life_time: secs_env("PROBE_CHILD_REKEY", 3600) * 2,
            rekey_jitter_percent: 0,
            child_rekey_bytes: None,
            child_rekey_packets: None,
        },
        dpd: ipsec_types::Dpd {
            delay: std::env::var("PROBE_DPD").ok().map(|_| secs_env("PROBE_DPD", 30)),
            timeout: secs_env("PROBE_DPD_TIMEOUT", 150),
            action: ipsec_types::DpdAction::Restart,
        },
        fragment_size: Some(ike::DEFAULT_FRAGMENT_SIZE),
        ike_version: ike::IkeVersion::V2,
        aggressive: false,
    };
    let secs: u64 = arg(9).parse().unwrap_or_else(|_| die("seconds"));
    let local_ip = peer.local_addr;
    let s500 = UdpSocket::bind(SocketAddr::new(local_ip, 500)).unwrap_or_else(|_| die("bind 500"));
    let s4500 = UdpSocket::bind(SocketAddr::new(local_ip, 4500)).unwrap_or_else(|_| die("bind 4500"));
    for s in [&s500, &s4500] {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap_or_else(|_| die("timeout"));
    }
    let cfg = EndpointConfig { ike_port: 500, natt_port: 4500, peers: vec![peer], limits: Default::default() };
    let mut ep = Endpoint::new(cfg, Box::new(SysRng(ring::rand::SystemRandom::new())));
    let start = Instant::now();
    let now = || Timestamp::from_nanos(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    let mut terminated = false;
    let mut buf = [0u8; 65536];
    loop {
        while let Some(o) = ep.poll_output() {
            match o {
                Output::Transmit(t) => {
                    let (sock, data) = if t.local.port() == 4500 {
                        let mut d = vec![0u8; 4];
                        d.extend_from_slice(&t.data);
                        (&s4500, d)
                    } else {
                        (&s500, t.data)
                    };
                    let _ = sock.send_to(&data, t.remote);
                }
                Output::Datapath(c) => match c {
                    DatapathCommand::InstallInbound(p) | DatapathCommand::InstallOutbound(p) => println!(
                        "DATAPATH install {:?} spi={} encap={:?} local_ts={:?} remote_ts={:?}",
                        p.direction, p.spi, p.endpoints.encap, p.local_ts, p.remote_ts
                    ),
                    other => println!("DATAPATH {other:?}"),
                },
                Output::Event(e) => println!("EVENT {e:?}"),
            }
        }
        if terminated && ep.is_idle() {
            break;
        }
        if start.elapsed() > Duration::from_secs(secs) && !terminated {
            for s in ep.status() {
                println!("STATUS {} {} nat={} children={}", s.tunnel, s.state, s.nat_detected, s.children.len());
            }
            ep.handle_command(now(), Command::TerminateAll);
            terminated = true;
        }
        if start.elapsed() > Duration::from_secs(secs + 3) {
            break;
        }
        for (sock, port) in [(&s500, 500u16), (&s4500, 4500u16)] {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Some(d) = buf.get(..n) else { continue };
                let d = if port == 4500 {
                    match d.strip_prefix(&[0u8, 0, 0, 0]) {
                        Some(ike) => ike,
                        None => continue, // ESP or keepalive: not handled by this probe
                    }
                } else {
                    d
                };
                ep.handle_datagram(now(), SocketAddr::new(local_ip, port), from, d);
            }
        }
        ep.handle_timeout(now());
    }
}
