//! `Endpoint::reconfigure` between in-memory endpoints: gateway A (192.0.2.1) has
//! tunnels to B (192.0.2.2) and C (192.0.2.3). An unchanged tunnel keeps its SAs and
//! gets no datapath command or datagram; an added tunnel initiates (or, responding,
//! is answered from then on); a removed tunnel's DELETE reaches the peer and its SAs
//! leave the datapath; a changed tunnel is negotiated again with new SPIs. For IKEv2
//! and IKEv1 tunnels alike.

use ike::testing::{peer_config, TestRng};
use ike::{DownReason, Endpoint, EndpointConfig, Event, IkeVersion, Output, PeerConfig, Reconfigured, Transmit};
use ipsec_types::{DatapathCommand, Direction, EspProposal, IkeProposal, Spi, Timestamp, TrafficSelector};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";
const C: &str = "192.0.2.3";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// One gateway: its address, endpoint and everything it output.
struct Node {
    addr: IpAddr,
    ep: Endpoint,
    log: Vec<Output>,
}

/// Gateways on one wire; datagrams go to the node with the destination address.
struct Net {
    nodes: Vec<Node>,
    wire: VecDeque<Transmit>,
    now: Timestamp,
}

impl Net {
    fn new(nodes: Vec<(&str, Vec<PeerConfig>)>) -> Self {
        let nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(i, (addr, peers))| Node {
                addr: ip(addr),
                ep: Endpoint::new(
                    EndpointConfig { ike_port: 500, natt_port: 4500, peers, limits: Default::default() },
                    Box::new(TestRng::new(i as u64 + 1)),
                ),
                log: Vec::new(),
            })
            .collect();
        Self { nodes, wire: VecDeque::new(), now: Timestamp::ZERO }
    }

    fn node(&mut self, addr: &str) -> &mut Node {
        let addr = ip(addr);
        self.nodes.iter_mut().find(|n| n.addr == addr).expect("node")
    }

    fn drain(&mut self) {
        for n in &mut self.nodes {
            while let Some(out) = n.ep.poll_output() {
                if let Output::Transmit(t) = &out {
                    self.wire.push_back(t.clone());
                }
                n.log.push(out);
            }
        }
    }

    /// Fires due timers and delivers until the wire is empty.
    fn run(&mut self) {
        let now = self.now;
        for n in &mut self.nodes {
            n.ep.handle_timeout(now);
        }
        for _ in 0..2000 {
            self.drain();
            let Some(t) = self.wire.pop_front() else { return };
            if let Some(n) = self.nodes.iter_mut().find(|n| n.addr == t.remote.ip()) {
                n.ep.handle_datagram(now, t.remote, t.local, &t.data);
            }
        }
        panic!("the wire never went quiet");
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.run();
    }

    /// Reconfigures one node now (its outputs are drained, not yet delivered).
    fn reconfigure(&mut self, addr: &str, peers: Vec<PeerConfig>) -> Reconfigured {
        let now = self.now;
        let r = self.node(addr).ep.reconfigure(now, peers);
        self.drain();
        r
    }
}

fn tunnel_of(cmd: &DatapathCommand) -> &str {
    match cmd {
        DatapathCommand::InstallInbound(p) | DatapathCommand::InstallOutbound(p) => &p.child.tunnel,
        DatapathCommand::Remove { tunnel, .. } | DatapathCommand::UpdateEndpoints { tunnel, .. } => tunnel,
    }
}

fn datapath(log: &[Output]) -> Vec<&DatapathCommand> {
    log.iter()
        .filter_map(|o| match o {
            Output::Datapath(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn events(log: &[Output]) -> Vec<&Event> {
    log.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// (spi_in, spi_out) of the installed CHILD SAs of `tunnel` in established IKE SAs.
fn installed(ep: &Endpoint, tunnel: &str) -> Vec<(Spi, Spi)> {
    ep.status()
        .iter()
        .filter(|s| s.tunnel == tunnel && s.state == "ESTABLISHED")
        .flat_map(|s| s.children.iter().filter(|c| c.state == "INSTALLED").map(|c| (c.spi_in, c.spi_out)))
        .collect()
}

fn subnet(mut p: PeerConfig, local: &str, remote: &str) -> PeerConfig {
    p.local_ts = vec![TrafficSelector::parse_cidr(local).expect("cidr")];
    p.remote_ts = vec![TrafficSelector::parse_cidr(remote).expect("cidr")];
    p
}

/// A's tunnel to B (initiates); B answers.
fn a_to_b() -> PeerConfig {
    peer_config("to-b", A, B, true, true)
}
fn b_to_a() -> PeerConfig {
    peer_config("to-a", B, A, false, false)
}
/// A's tunnel to C (10.1.0.0/24 <-> 10.3.0.0/24).
fn a_to_c(initiate: bool) -> PeerConfig {
    subnet(peer_config("to-c", A, C, true, initiate), "10.1.0.0/24", "10.3.0.0/24")
}
fn c_to_a(initiate: bool) -> PeerConfig {
    subnet(peer_config("to-a", C, A, false, initiate), "10.3.0.0/24", "10.1.0.0/24")
}

fn v1(mut p: PeerConfig) -> PeerConfig {
    p.ike_version = IkeVersion::V1;
    p.ike_proposals = vec![IkeProposal::parse("aes128-sha256-modp2048").expect("proposal")];
    p.esp_proposals = vec![EspProposal::parse("aes128-sha256-modp2048").expect("proposal")];
    p
}

/// Everything a node output since `mark` that concerns `tunnel`: datapath commands and
/// events.
fn touched(log: &[Output], tunnel: &str) -> usize {
    let dp = datapath(log).into_iter().filter(|c| tunnel_of(c) == tunnel).count();
    let ev = events(log)
        .into_iter()
        .filter(|e| match e {
            Event::IkeUp { peer } | Event::IkeDown { peer, .. } | Event::ChildUp { peer, .. } => peer == tunnel,
            Event::ChildDown { peer, .. } => peer == tunnel,
        })
        .count();
    dp + ev
}

/// Adds C while B stays, then removes C while B stays: B's SAs never change and its
/// peer hears nothing; C comes up, then its DELETE reaches C and its SAs leave A's
/// datapath.
fn add_then_remove(to_b: PeerConfig, at_b: PeerConfig, to_c: PeerConfig, at_c: PeerConfig) {
    let mut net = Net::new(vec![(A, vec![to_b.clone()]), (B, vec![at_b]), (C, vec![at_c])]);
    net.run();
    net.advance(Duration::from_secs(1));
    let b_sas = installed(&net.node(A).ep, "to-b");
    assert_eq!(b_sas.len(), 1, "A-B is up");
    let b_seen = net.node(B).log.len();

    // Add C.
    let mark = net.node(A).log.len();
    let r = net.reconfigure(A, vec![to_b.clone(), to_c.clone()]);
    assert_eq!(r.added, ["to-c"]);
    assert_eq!(r.unchanged, ["to-b"]);
    assert!(r.removed.is_empty() && r.changed.is_empty());
    // The initiation leaves at once.
    assert!(net.wire.iter().any(|t| t.remote.ip() == ip(C)), "A initiates to C during reconfigure");
    net.run();
    net.advance(Duration::from_secs(1));
    let c_sas = installed(&net.node(A).ep, "to-c");
    assert_eq!(c_sas.len(), 1, "A-C is up after the reload");
    assert_eq!(installed(&net.node(C).ep, "to-a").len(), 1);
    assert_eq!(installed(&net.node(A).ep, "to-b"), b_sas, "A-B keeps its SPIs");
    assert_eq!(touched(&net.node(A).log[mark..], "to-b"), 0, "nothing output for the unchanged tunnel");

    // Remove C.
    let mark = net.node(A).log.len();
    let r = net.reconfigure(A, vec![to_b]);
    assert_eq!(r.removed, ["to-c"]);
    assert_eq!(r.unchanged, ["to-b"]);
    assert!(r.added.is_empty() && r.changed.is_empty());
    // Both halves of C's CHILD SA leave the datapath at once, before the DELETE is answered.
    let (c_in, c_out) = c_sas.first().copied().expect("sa");
    let removed: Vec<_> = datapath(&net.node(A).log[mark..])
        .into_iter()
        .filter_map(|c| match c {
            DatapathCommand::Remove { tunnel, spi, direction } => Some((tunnel.clone(), *spi, *direction)),
            _ => None,
        })
        .collect();
    assert!(removed.contains(&("to-c".into(), c_in, Direction::Inbound)), "{removed:?}");
    assert!(removed.contains(&("to-c".into(), c_out, Direction::Outbound)), "{removed:?}");
    assert!(net.wire.iter().any(|t| t.remote.ip() == ip(C)), "DELETE on its way to C");
    net.run();
    let c_events: Vec<Event> = events(&net.node(C).log).into_iter().cloned().collect();
    assert!(
        c_events.iter().any(|e| matches!(e, Event::IkeDown { reason: DownReason::DeletedByPeer, .. })),
        "C heard the DELETE: {c_events:?}"
    );
    assert!(
        events(&net.node(A).log[mark..])
            .iter()
            .any(|e| matches!(e, Event::IkeDown { peer, reason: DownReason::Reconfigured } if peer == "to-c")),
        "A reports why"
    );
    assert!(net.node(A).ep.status().iter().all(|s| s.tunnel != "to-c"), "no SA left for to-c");
    assert!(installed(&net.node(C).ep, "to-a").is_empty());
    // Later timers do not bring it back.
    net.advance(Duration::from_secs(120));
    assert!(net.node(A).ep.status().iter().all(|s| s.tunnel != "to-c"));
    assert_eq!(installed(&net.node(A).ep, "to-b"), b_sas, "A-B still has the same SPIs");
    assert_eq!(touched(&net.node(A).log[mark..], "to-b"), 0);
    // B never heard of any of it: nothing but what it had before (no rekey is due in 2 min).
    assert_eq!(net.node(B).log.len(), b_seen, "the peer of the unchanged tunnel received nothing");
    assert_eq!(net.node(A).ep.tunnel_names(), ["to-b"]);
}

#[test]
fn ikev2_unchanged_tunnel_keeps_its_sas_while_another_is_added_and_removed() {
    add_then_remove(a_to_b(), b_to_a(), a_to_c(true), c_to_a(false));
}

#[test]
fn ikev1_unchanged_tunnel_keeps_its_sas_while_another_is_added_and_removed() {
    add_then_remove(v1(a_to_b()), v1(b_to_a()), v1(a_to_c(true)), v1(c_to_a(false)));
}

#[test]
fn mixed_versions_unchanged_ikev2_tunnel_next_to_an_ikev1_one() {
    add_then_remove(a_to_b(), b_to_a(), v1(a_to_c(true)), v1(c_to_a(false)));
}

fn changed_renegotiates(to_b: PeerConfig, at_b: PeerConfig, change: impl Fn(&mut PeerConfig)) {
    let mut net = Net::new(vec![(A, vec![to_b.clone()]), (B, vec![at_b])]);
    net.run();
    net.advance(Duration::from_secs(1));
    let before = installed(&net.node(A).ep, "to-b");
    assert_eq!(before.len(), 1);
    let mut new = to_b;
    change(&mut new);
    let mark = net.node(A).log.len();
    let b_mark = net.node(B).log.len();
    let r = net.reconfigure(A, vec![new]);
    assert_eq!(r.changed, ["to-b"]);
    assert!(r.added.is_empty() && r.removed.is_empty() && r.unchanged.is_empty());
    net.run();
    net.advance(Duration::from_secs(1));
    let after = installed(&net.node(A).ep, "to-b");
    assert_eq!(after.len(), 1, "negotiated again: {:?}", net.node(A).ep.status());
    let (old_in, old_out) = before.first().copied().expect("sa");
    let (new_in, new_out) = after.first().copied().expect("sa");
    assert_ne!(old_in, new_in);
    assert_ne!(old_out, new_out);
    let dp = datapath(&net.node(A).log[mark..]);
    let removed_old = |spi: Spi, d: Direction| {
        dp.iter()
            .any(|c| matches!(c, DatapathCommand::Remove { spi: s, direction, .. } if *s == spi && *direction == d))
    };
    assert!(removed_old(old_in, Direction::Inbound) && removed_old(old_out, Direction::Outbound), "{dp:?}");
    assert!(dp.iter().any(|c| matches!(c, DatapathCommand::InstallOutbound(p) if p.spi == new_out)));
    // The peer was told: the old SA deleted, a new one up.
    let b_events = events(&net.node(B).log[b_mark..]).into_iter().cloned().collect::<Vec<_>>();
    assert!(
        b_events.iter().any(|e| matches!(e, Event::IkeDown { reason: DownReason::DeletedByPeer, .. })),
        "{b_events:?}"
    );
    assert_eq!(installed(&net.node(B).ep, "to-a"), vec![(new_out, new_in)]);
}

#[test]
fn ikev2_changed_tunnel_is_negotiated_again() {
    changed_renegotiates(a_to_b(), b_to_a(), |p| p.replay_window = 128);
}

#[test]
fn ikev1_changed_tunnel_is_negotiated_again() {
    changed_renegotiates(v1(a_to_b()), v1(b_to_a()), |p| p.replay_window = 128);
}

#[test]
fn new_key_counts_as_a_change() {
    // Both sides change the key; A's reload re-negotiates with it, and B (reloaded
    // first, its SA deleted and responding) accepts the new key.
    let mut net = Net::new(vec![(A, vec![a_to_b()]), (B, vec![b_to_a()])]);
    net.run();
    let key = |mut p: PeerConfig| {
        p.psk = zeroize::Zeroizing::new(b"another key".to_vec());
        p
    };
    let r = net.reconfigure(B, vec![key(b_to_a())]);
    assert_eq!(r.changed, ["to-a"]);
    net.run();
    let r = net.reconfigure(A, vec![key(a_to_b())]);
    assert_eq!(r.changed, ["to-b"]);
    net.run();
    net.advance(Duration::from_secs(1));
    assert_eq!(installed(&net.node(A).ep, "to-b").len(), 1, "{:?}", events(&net.node(A).log));
}

#[test]
fn added_responder_tunnel_is_answered_only_after_the_reload() {
    // C initiates to A, which does not know C yet: dropped.
    let mut net = Net::new(vec![(A, vec![a_to_b()]), (B, vec![b_to_a()]), (C, vec![c_to_a(true)])]);
    net.run();
    assert!(installed(&net.node(C).ep, "to-a").is_empty());
    assert!(net.node(A).ep.status().iter().all(|s| s.tunnel == "to-b"));
    let r = net.reconfigure(A, vec![a_to_b(), a_to_c(false)]);
    assert_eq!(r.added, ["to-c"]);
    // A responder sends nothing by itself; C's next attempt (its retry timer) is answered.
    assert!(net.wire.is_empty());
    net.advance(Duration::from_secs(61));
    assert_eq!(installed(&net.node(A).ep, "to-c").len(), 1, "{:?}", net.node(A).ep.status());
    assert_eq!(installed(&net.node(C).ep, "to-a").len(), 1);
}

#[test]
fn operator_stop_survives_a_reload_of_an_unchanged_tunnel() {
    let mut net = Net::new(vec![(A, vec![a_to_b()]), (B, vec![b_to_a()])]);
    net.run();
    let now = net.now;
    net.node(A).ep.handle_command(now, ike::Command::Terminate { peer: "to-b".into() });
    net.run();
    assert!(installed(&net.node(A).ep, "to-b").is_empty());
    let r = net.reconfigure(A, vec![a_to_b()]);
    assert_eq!(r.unchanged, ["to-b"]);
    assert!(r.is_empty());
    net.advance(Duration::from_secs(120));
    assert!(installed(&net.node(A).ep, "to-b").is_empty(), "still stopped");
}

#[test]
fn repeated_name_is_ignored() {
    let mut net = Net::new(vec![(A, vec![a_to_b()]), (B, vec![b_to_a()])]);
    net.run();
    let mut twin = a_to_c(true);
    twin.name = "to-b".into();
    let r = net.reconfigure(A, vec![a_to_b(), twin]);
    assert_eq!(r, Reconfigured { unchanged: vec!["to-b".into()], ..Reconfigured::default() });
    assert_eq!(net.node(A).ep.tunnel_names(), ["to-b"]);
}
