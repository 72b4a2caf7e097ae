//! One SPI namespace per tunnel: our outbound SPIs are chosen by the peers, so the peer
//! of one tunnel can pick the SPI another tunnel seals with (it is visible on the
//! wire). Every datapath command and event names its tunnel, and nothing done to
//! tunnel B's SA with that SPI touches tunnel A's.
//!
//! Three in-memory endpoints: the gateway G with tunnels "site-a" (to PA) and "site-b"
//! (to PB). PA and PB run with the same RNG seed, so as responders they choose the same
//! SPIs: G's outbound SPI is the same on both tunnels.

use ike::testing::{peer_config, TestRng};
use ike::{Command, Endpoint, EndpointConfig, Output, PeerConfig, Transmit};
use ipsec_types::{DatapathCommand, DatapathEvent, Direction, ExpiryReason, Identity, Spi, Timestamp, TrafficSelector};
use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

const G: &str = "192.0.2.1";
const PA: &str = "192.0.2.2";
const PB: &str = "192.0.2.3";

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn endpoint(peers: Vec<PeerConfig>, seed: u64) -> Endpoint {
    Endpoint::new(
        EndpointConfig { ike_port: 500, natt_port: 4500, peers, limits: Default::default() },
        Box::new(TestRng::new(seed)),
    )
}

/// Tunnel `name` from `local` to `remote`: our subnet 10.1.0.0/24 (G) facing
/// `remote_net`, identities `<local_id>.test` / `<remote_id>.test`.
fn tunnel(name: &str, local: &str, remote: &str, ids: (&str, &str), nets: (&str, &str), initiate: bool) -> PeerConfig {
    let mut p = peer_config(name, local, remote, true, initiate);
    p.local_id = Identity::Fqdn(format!("{}.test", ids.0));
    p.remote_id = Identity::Fqdn(format!("{}.test", ids.1));
    p.local_ts = vec![TrafficSelector::parse_cidr(nets.0).unwrap()];
    p.remote_ts = vec![TrafficSelector::parse_cidr(nets.1).unwrap()];
    p
}

struct Net {
    now: Timestamp,
    g: Endpoint,
    pa: Endpoint,
    pb: Endpoint,
    wire: VecDeque<Transmit>,
    /// Everything G output, in order.
    log_g: Vec<Output>,
    /// Datagrams PA received.
    to_pa: usize,
}

impl Net {
    fn new() -> Self {
        let g = endpoint(
            vec![
                tunnel("site-a", G, PA, ("g", "pa"), ("10.1.0.0/24", "10.2.0.0/24"), true),
                tunnel("site-b", G, PB, ("g", "pb"), ("10.1.0.0/24", "10.3.0.0/24"), true),
            ],
            1,
        );
        let pa = endpoint(vec![tunnel("gw", PA, G, ("pa", "g"), ("10.2.0.0/24", "10.1.0.0/24"), false)], 7);
        let pb = endpoint(vec![tunnel("gw", PB, G, ("pb", "g"), ("10.3.0.0/24", "10.1.0.0/24"), false)], 7);
        Self { now: Timestamp::ZERO, g, pa, pb, wire: VecDeque::new(), log_g: Vec::new(), to_pa: 0 }
    }

    fn ep(&mut self, ip: IpAddr) -> &mut Endpoint {
        if ip == G.parse::<IpAddr>().unwrap() {
            &mut self.g
        } else if ip == PA.parse::<IpAddr>().unwrap() {
            &mut self.pa
        } else {
            &mut self.pb
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.g.poll_output() {
            if let Output::Transmit(t) = &o {
                self.wire.push_back(t.clone());
            }
            self.log_g.push(o);
        }
        for ep in [&mut self.pa, &mut self.pb] {
            while let Some(o) = ep.poll_output() {
                if let Output::Transmit(t) = o {
                    self.wire.push_back(t);
                }
            }
        }
    }

    /// Fires due timers everywhere and delivers until the wire is empty (bounded).
    fn run(&mut self) {
        let now = self.now;
        for ep in [&mut self.g, &mut self.pa, &mut self.pb] {
            ep.handle_timeout(now);
        }
        self.drain();
        for _ in 0..1000 {
            let Some(t) = self.wire.pop_front() else { break };
            if t.remote.ip() == PA.parse::<IpAddr>().unwrap() {
                self.to_pa += 1;
            }
            self.ep(t.remote.ip()).handle_datagram(now, t.remote, t.local, &t.data);
            self.drain();
        }
    }

    /// Runs for `secs` seconds in 100 ms steps.
    fn run_for(&mut self, secs: u64) {
        for _ in 0..secs * 10 {
            self.now = self.now + Duration::from_millis(100);
            self.run();
        }
    }

    fn g_commands(&self, from: usize) -> Vec<DatapathCommand> {
        self.log_g[from..]
            .iter()
            .filter_map(|o| if let Output::Datapath(c) = o { Some(c.clone()) } else { None })
            .collect()
    }

    /// The outbound SPI G's tunnel `name` seals with (from its CHILD SA status).
    fn spi_out(&self, name: &str) -> Vec<Spi> {
        self.g.status().iter().filter(|s| s.tunnel == name).flat_map(|s| s.children.iter().map(|c| c.spi_out)).collect()
    }
}

/// The SAs a datapath that names SAs by (direction, tunnel, SPI) holds after `cmds`.
fn installed(cmds: &[DatapathCommand]) -> BTreeSet<(bool, String, Spi)> {
    let mut t = BTreeSet::new();
    for c in cmds {
        match c {
            DatapathCommand::InstallInbound(p) => {
                t.insert((true, p.child.tunnel.clone(), p.spi));
            }
            DatapathCommand::InstallOutbound(p) => {
                t.insert((false, p.child.tunnel.clone(), p.spi));
            }
            DatapathCommand::Remove { tunnel, spi, direction } => {
                t.remove(&(*direction == Direction::Inbound, tunnel.clone(), *spi));
            }
            DatapathCommand::UpdateEndpoints { .. } => {}
        }
    }
    t
}

fn tunnel_of(c: &DatapathCommand) -> &str {
    match c {
        DatapathCommand::InstallInbound(p) | DatapathCommand::InstallOutbound(p) => &p.child.tunnel,
        DatapathCommand::Remove { tunnel, .. } | DatapathCommand::UpdateEndpoints { tunnel, .. } => tunnel,
    }
}

#[test]
fn the_peer_of_another_tunnel_choosing_our_outbound_spi_cannot_touch_our_sa() {
    init_logs();
    let mut n = Net::new();
    n.run_for(1);
    let shared = n.spi_out("site-a");
    assert_eq!(shared.len(), 1, "site-a is up with one CHILD SA");
    assert_eq!(n.spi_out("site-b"), shared, "PB chose the outbound SPI of site-a");
    let shared = shared[0];
    let a_in = n.g.status().iter().find(|s| s.tunnel == "site-a").unwrap().children[0].spi_in;
    let a_sas = BTreeSet::from([(true, "site-a".to_string(), a_in), (false, "site-a".to_string(), shared)]);
    assert!(installed(&n.g_commands(0)).is_superset(&a_sas));
    let (mark, pa_heard) = (n.log_g.len(), n.to_pa);

    // site-b's outbound SA with that SPI reaches its soft volume limit: G rekeys site-b's
    // CHILD SA (not site-a's, which has the same outbound SPI), then deletes the old one.
    let soft = DatapathEvent::Expired {
        tunnel: "site-b".into(),
        spi: shared,
        direction: Direction::Outbound,
        hard: false,
        reason: ExpiryReason::Packets,
    };
    n.g.handle_datapath_event(n.now, soft);
    n.run_for(5);
    let rekey = n.g_commands(mark);
    assert!(rekey.iter().all(|c| tunnel_of(c) == "site-b"), "{rekey:?}");
    assert!(
        rekey.iter().any(|c| matches!(c,
            DatapathCommand::Remove { tunnel, spi, direction: Direction::Outbound } if tunnel == "site-b" && *spi == shared)),
        "site-b's old outbound SA is removed by (tunnel, SPI): {rekey:?}"
    );
    let b_out = n.spi_out("site-b");
    assert_eq!(b_out.len(), 1);
    assert_ne!(b_out[0], shared, "site-b moved to its new CHILD SA");
    assert_eq!(n.to_pa, pa_heard, "nothing was sent to PA");
    assert_eq!(n.spi_out("site-a"), vec![shared]);
    assert!(installed(&n.g_commands(0)).is_superset(&a_sas), "site-a's SAs stay installed");

    // PB tears its tunnel down: everything G removes is site-b's.
    let mark = n.log_g.len();
    let now = n.now;
    n.pb.handle_command(now, Command::Terminate { peer: "gw".into() });
    n.run_for(2);
    let down = n.g_commands(mark);
    assert!(down.iter().any(|c| matches!(c, DatapathCommand::Remove { .. })), "{down:?}");
    assert!(down.iter().all(|c| tunnel_of(c) == "site-b"), "{down:?}");
    let left = installed(&n.g_commands(0));
    let b_out: BTreeSet<Spi> = left.iter().filter(|(i, t, _)| !i && t == "site-b").map(|e| e.2).collect();
    assert_eq!(b_out, n.spi_out("site-b").into_iter().collect(), "site-b's old SAs are gone: {left:?}");
    assert_eq!(left.into_iter().filter(|(_, t, _)| t == "site-a").collect::<BTreeSet<_>>(), a_sas, "site-a untouched");
    let st = n.g.status();
    let a = st.iter().find(|s| s.tunnel == "site-a").unwrap();
    assert_eq!((a.state, a.children[0].state, a.children[0].spi_out), ("ESTABLISHED", "INSTALLED", shared));

    // A hard expiry of site-b's SPI (stale: site-b has no SA with it any more) is ignored;
    // the same SPI on site-a still belongs to site-a.
    let mark = n.log_g.len();
    for tunnel in ["site-b", "site-c"] {
        let hard = DatapathEvent::Expired {
            tunnel: tunnel.into(),
            spi: shared,
            direction: Direction::Outbound,
            hard: true,
            reason: ExpiryReason::Bytes,
        };
        n.g.handle_datapath_event(n.now, hard);
    }
    n.run_for(1);
    assert!(n.g_commands(mark).is_empty(), "{:?}", n.g_commands(mark));
    assert_eq!(n.spi_out("site-a"), vec![shared]);
}
