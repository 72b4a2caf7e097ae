//! Worker scheduling on in-memory I/O: which worker reads what, when it serves the
//! others' sources, and what leaves in which batch. Each round runs on a thread named
//! like the daemon's worker, and the in-memory I/O records who wrote and sent.

use super::*;
use crate::datapath::mem::sas::{self, LOCAL, PEER};
use crate::datapath::mem::{How, MemTun, MemWan, WanSend};
use arc_swap::ArcSwap;
use ipsec_types::Timestamp;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

struct Fixed;
impl Clock for Fixed {
    fn now(&self) -> Timestamp {
        sas::NOW
    }
}

type MemWorkers = Workers<Fixed, MemTun, MemWan>;

struct Lab {
    w: MemWorkers,
    /// The peer's SA table: opens what the gateway sends, seals what it receives.
    peer: esp::SaTable,
    control: Receiver<ControlMsg>,
}

struct Setup {
    queues: usize,
    vnet_hdr: bool,
    encap: bool,
    levers: Levers,
    cross: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self { queues: 1, vnet_hdr: false, encap: true, levers: Levers::default(), cross: true }
    }
}

impl Setup {
    fn lab(self) -> Lab {
        let (ours, peer) = sas::tables(self.encap);
        let (tx, control) = mpsc::sync_channel(8);
        let shared = Shared {
            table: Arc::new(ArcSwap::from_pointee(ours)),
            tun: Arc::new(MemTun::new(self.queues, self.vnet_hdr)),
            wan: Arc::new(MemWan::new(SocketAddr::from((LOCAL, 4500)), true)),
            control: tx,
            clock: Arc::new(Fixed),
            io: Arc::new(IoCounters::default()),
        };
        Lab { w: Workers::new(shared, self.levers, self.cross).unwrap(), peer, control }
    }
}

impl Lab {
    /// One round of the worker of `own`, on a thread with the daemon's name for it.
    fn round(&self, name: &str, own: Source) -> usize {
        std::thread::scope(|s| {
            let (t, w) = (std::thread::Builder::new().name(name.into()), &self.w);
            t.spawn_scoped(s, move || w.round(own, &mut w.bufs())).unwrap().join().unwrap().total()
        })
    }

    /// One step of the worker of `own` with its busy-poll window `spin`, on a thread with
    /// the daemon's name for it.
    fn step(&self, name: &str, own: Source, spin: &mut Spin) -> Step {
        std::thread::scope(|s| {
            let (t, w) = (std::thread::Builder::new().name(name.into()), &self.w);
            t.spawn_scoped(s, move || w.step(own, &mut w.bufs(), spin)).unwrap().join().unwrap()
        })
    }

    /// Times any worker slept so far.
    fn sleeps(&self) -> usize {
        self.w.tun.sleeps() + self.w.wan.sleeps()
    }

    /// What left on the WAN since the last look.
    fn sent(&self) -> Vec<WanSend> {
        self.w.wan.take_sent()
    }

    /// The inner packets of `sends`, opened by the peer.
    fn opened(&self, sends: &[WanSend]) -> Vec<Vec<u8>> {
        sends.iter().flat_map(|s| &s.packets).map(|p| sas::open(&self.peer, p)).collect()
    }
}

fn outbound(n: u16) -> Vec<Vec<u8>> {
    (0..n).map(|i| sas::outbound(i, 200)).collect()
}

fn summary(sends: &[WanSend]) -> Vec<(&str, How, usize)> {
    sends.iter().map(|s| (s.worker.as_str(), s.how, s.packets.len())).collect()
}

#[test]
fn tun_rx_sends_what_it_read_in_batches_of_at_most_64_reads() {
    let lab = Setup::default().lab();
    let inner = outbound(100);
    lab.w.tun.queue(0, inner.clone());
    assert_eq!(lab.round("tun-rx", Source::Tun(0)), 100);
    let sent = lab.sent();
    let seg = u16::try_from(sent[0].packets[0].len()).unwrap();
    assert_eq!(summary(&sent), vec![("tun-rx", How::Gso(seg), 64), ("tun-rx", How::Gso(seg), 36)]);
    assert!(sent.iter().all(|s| s.to == SocketAddr::from((PEER, 4500))));
    assert_eq!(lab.opened(&sent), inner, "every packet, once, in the order read");
    assert_eq!(lab.w.tun.waiting(0), 0);
    assert_eq!(lab.round("tun-rx", Source::Tun(0)), 0, "nothing left");
    assert!(lab.sent().is_empty());
}

#[test]
fn raw_esp_batches_go_out_with_sendmmsg() {
    let lab = Setup { encap: false, ..Setup::default() }.lab();
    let inner = outbound(70);
    lab.w.tun.queue(0, inner.clone());
    lab.round("tun-rx", Source::Tun(0));
    let sent = lab.sent();
    assert_eq!(summary(&sent), vec![("tun-rx", How::RawMany, 64), ("tun-rx", How::RawMany, 6)]);
    assert_eq!(lab.opened(&sent), inner);
}

#[test]
fn without_batching_a_round_is_one_read_and_one_send() {
    let levers = Levers { batch: false, ..Levers::default() };
    let lab = Setup { encap: false, levers, cross: false, ..Setup::default() }.lab();
    lab.w.tun.queue(0, outbound(3));
    assert_eq!(lab.round("tun-rx", Source::Tun(0)), 1);
    assert_eq!(summary(&lab.sent()), vec![("tun-rx", How::Raw, 1)]);
    assert_eq!(lab.w.tun.waiting(0), 2, "no cross-serving, no second read");
}

#[test]
fn a_worker_whose_source_ran_dry_seals_the_reply_waiting_on_tun() {
    let lab = Setup::default().lab();
    // An echo request arrives on UDP 4500; the reply is already queued on TUN.
    let request = sas::inbound(1, 100);
    lab.w.wan.queue_natt(SocketAddr::from((PEER, 4500)), &[sas::seal(&lab.peer, &request)]);
    let reply = sas::outbound(1, 100);
    lab.w.tun.queue(0, [reply.clone()]);
    assert_eq!(lab.round("natt-rx", Source::Natt), 2);
    let written = lab.w.tun.take_written();
    assert_eq!(written.len(), 1);
    assert_eq!((written[0].worker.as_str(), &written[0].packet), ("natt-rx", &request));
    let sent = lab.sent();
    assert_eq!(summary(&sent), vec![("natt-rx", How::Udp, 1)], "the reply left from natt-rx, not tun-rx");
    assert_eq!(lab.opened(&sent), vec![reply]);
}

#[test]
fn cross_serving_can_be_switched_off() {
    let levers = Levers { cross_serve: false, ..Levers::default() };
    let lab = Setup { levers, ..Setup::default() }.lab();
    lab.w.tun.queue(0, outbound(1));
    assert_eq!(lab.round("natt-rx", Source::Natt), 0);
    assert!(lab.sent().is_empty());
    assert_eq!(lab.w.tun.waiting(0), 1, "left for tun-rx");
    assert_eq!(lab.round("tun-rx", Source::Tun(0)), 1);
    assert_eq!(summary(&lab.sent()), vec![("tun-rx", How::Udp, 1)]);
}

#[test]
fn a_source_someone_is_serving_is_skipped() {
    let lab = Setup::default().lab();
    let inner = outbound(2);
    lab.w.tun.queue(0, inner.clone());
    let held = lab.w.lock_of(Source::Tun(0)).unwrap().lock().unwrap();
    assert_eq!(lab.round("natt-rx", Source::Natt), 0, "tun-rx holds the queue: natt-rx does not wait for it");
    assert!(lab.sent().is_empty());
    drop(held);
    assert_eq!(lab.round("natt-rx", Source::Natt), 2);
    let sent = lab.sent();
    assert_eq!(summary(&sent), vec![("natt-rx", How::Gso(sent[0].packets[0].len() as u16), 2)]);
    assert_eq!(lab.opened(&sent), inner);
}

#[test]
fn cross_serving_is_bounded_and_the_owner_takes_the_rest() {
    let lab = Setup::default().lab();
    let inner = outbound(100);
    lab.w.tun.queue(0, inner.clone());
    assert_eq!(lab.round("natt-rx", Source::Natt), CROSS_BUDGET);
    assert_eq!(lab.w.tun.waiting(0), 100 - CROSS_BUDGET);
    let mut sent = lab.sent();
    assert_eq!(summary(&sent).iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(), vec![("natt-rx", 64)]);
    assert_eq!(lab.round("tun-rx", Source::Tun(0)), 100 - CROSS_BUDGET);
    let rest = lab.sent();
    assert_eq!(summary(&rest).iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(), vec![("tun-rx", 36)]);
    sent.extend(rest);
    assert_eq!(lab.opened(&sent), inner, "in order across the two workers");
}

#[test]
fn each_tun_queue_has_its_worker_and_idle_workers_serve_the_others() {
    let lab = Setup { queues: 3, ..Setup::default() }.lab();
    let (a, b) = (outbound(3), (10..15).map(|i| sas::outbound(i, 200)).collect::<Vec<_>>());
    lab.w.tun.queue(1, a.clone());
    lab.w.tun.queue(2, b.clone());
    assert_eq!(lab.round("tun-rx-1", Source::Tun(1)), 3 + 5);
    let sent = lab.sent();
    assert_eq!(summary(&sent).iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(), vec![("tun-rx-1", 3), ("tun-rx-1", 5)]);
    assert_eq!(lab.opened(&sent), [a, b].concat(), "its own queue first, then queue 2");
}

#[test]
fn natt_rx_opens_a_gro_run_and_hands_ike_to_the_control_thread() {
    let lab = Setup::default().lab();
    let from = SocketAddr::from((PEER, 4500));
    let inner: Vec<Vec<u8>> = (0..3).map(|i| sas::inbound(i, 300)).collect();
    let esp: Vec<Vec<u8>> = inner.iter().map(|p| sas::seal(&lab.peer, p)).collect();
    lab.w.wan.queue_natt(from, &esp);
    let ike = [[0u8; 4].as_slice(), b"an IKE message"].concat();
    lab.w.wan.queue_natt(from, &[ike]);
    lab.w.wan.queue_natt(from, &[vec![0xff]]);
    assert_eq!(lab.round("natt-rx", Source::Natt), 3, "three receives");
    let written = lab.w.tun.take_written();
    assert_eq!(
        written.iter().map(|w| w.packet.clone()).collect::<Vec<_>>(),
        inner,
        "the run split and opened in order"
    );
    assert!(written.iter().all(|w| w.worker == "natt-rx" && w.vnet.is_none()));
    match lab.control.try_recv() {
        Ok(ControlMsg::Datagram { local, remote, data }) => {
            assert_eq!((local, remote), (SocketAddr::from((LOCAL, 4500)), from));
            assert_eq!(data, b"an IKE message", "non-ESP marker stripped");
        }
        _ => panic!("no IKE datagram for the control thread"),
    }
    assert!(lab.control.try_recv().is_err(), "the keepalive goes nowhere");
    assert!(lab.sent().is_empty());
}

#[test]
fn esp_rx_opens_raw_esp_batches() {
    let lab = Setup { encap: false, ..Setup::default() }.lab();
    let inner: Vec<Vec<u8>> = (0..40).map(|i| sas::inbound(i, 120)).collect();
    lab.w.wan.queue_raw(inner.iter().map(|p| sas::seal(&lab.peer, p)));
    // 32 per receive: two receives.
    assert_eq!(lab.round("esp-rx", Source::Raw), 2);
    let written = lab.w.tun.take_written();
    assert_eq!(written.into_iter().map(|w| w.packet).collect::<Vec<_>>(), inner);
}

#[test]
fn with_a_vnet_header_plain_packets_are_sealed_and_malformed_super_packets_counted() {
    let levers = Levers { tun_gro: false, ..Levers::default() };
    let lab = Setup { vnet_hdr: true, levers, ..Setup::default() }.lab();
    let inner = outbound(2);
    let plain = |p: &Vec<u8>| [offload::PLAIN_HDR.as_slice(), p].concat();
    // A TCP super-packet header in front of a UDP packet: cannot be segmented.
    let mut bad_hdr = offload::PLAIN_HDR;
    bad_hdr[1] = offload::GSO_TCPV4;
    let bad = [bad_hdr.as_slice(), &inner[0]].concat();
    lab.w.tun.queue(0, [plain(&inner[0]), bad, plain(&inner[1])]);
    assert_eq!(lab.round("tun-rx", Source::Tun(0)), 3);
    assert_eq!(lab.opened(&lab.sent()), inner);
    assert_eq!(lab.w.io.snapshot().tun_read_malformed, 1);
    // Inbound: written with a plain vnet header (TUN GRO is off).
    lab.w.wan.queue_natt(SocketAddr::from((PEER, 4500)), &[sas::seal(&lab.peer, &sas::inbound(1, 100))]);
    lab.round("natt-rx", Source::Natt);
    let written = lab.w.tun.take_written();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].vnet.as_deref(), Some(offload::PLAIN_HDR.as_slice()));
    assert_eq!(written[0].packet, sas::inbound(1, 100));
}

/// A window no test outlasts: the spin ends only when a round decides so.
const LONG: Duration = Duration::from_secs(3600);

fn moved(sealed: usize, opened: usize) -> Step {
    Step::Moved(Moved { sealed, opened })
}

#[test]
fn the_worker_that_sent_a_request_polls_for_the_reply_instead_of_sleeping() {
    let lab = Setup::default().lab();
    let mut spin = Spin::new(LONG);
    let request = sas::outbound(1, 100);
    lab.w.tun.queue(0, [request.clone()]);
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), moved(1, 0));
    assert_eq!(lab.opened(&lab.sent()), vec![request]);
    // Nothing yet: it goes on polling instead of sleeping.
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Spun);
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Spun);
    assert_eq!(lab.sleeps(), 0);
    // The reply arrives on UDP 4500: tun-rx opens it and delivers it itself.
    let reply = sas::inbound(1, 100);
    lab.w.wan.queue_natt(SocketAddr::from((PEER, 4500)), &[sas::seal(&lab.peer, &reply)]);
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), moved(0, 1));
    let written = lab.w.tun.take_written();
    assert_eq!(written.iter().map(|w| (w.worker.as_str(), &w.packet)).collect::<Vec<_>>(), vec![("tun-rx", &reply)]);
    // The answer came: the window is closed, the next dry round sleeps.
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Slept);
    assert_eq!((lab.w.tun.sleeps(), lab.w.wan.sleeps()), (1, 0), "tun-rx slept on its own queue");
}

#[test]
fn the_worker_that_answered_sleeps_at_once() {
    let lab = Setup::default().lab();
    let mut spin = Spin::new(LONG);
    // The request arrives on UDP 4500, the reply is already queued on TUN (the far side
    // of a ping): natt-rx delivers one and seals the other, then has nothing to wait for.
    lab.w.wan.queue_natt(SocketAddr::from((PEER, 4500)), &[sas::seal(&lab.peer, &sas::inbound(1, 100))]);
    lab.w.tun.queue(0, [sas::outbound(1, 100)]);
    assert_eq!(lab.step("natt-rx", Source::Natt, &mut spin), moved(1, 1));
    assert_eq!(lab.sent().len(), 1);
    assert_eq!(lab.step("natt-rx", Source::Natt, &mut spin), Step::Slept);
    assert_eq!((lab.w.tun.sleeps(), lab.w.wan.sleeps()), (0, 1));
    // The same when the reply is only queued after the round that delivered the request.
    lab.w.wan.queue_natt(SocketAddr::from((PEER, 4500)), &[sas::seal(&lab.peer, &sas::inbound(2, 100))]);
    assert_eq!(lab.step("natt-rx", Source::Natt, &mut spin), moved(0, 1));
    lab.w.tun.queue(0, [sas::outbound(2, 100)]);
    assert_eq!(lab.step("natt-rx", Source::Natt, &mut spin), moved(1, 0));
    assert_eq!(lab.step("natt-rx", Source::Natt, &mut spin), Step::Slept, "an answer: nothing to wait for");
}

#[test]
fn an_idle_worker_sleeps_and_a_zero_window_never_spins() {
    let lab = Setup::default().lab();
    let mut spin = Spin::new(LONG);
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Slept, "nothing moved: no window");
    let mut off = Spin::new(Duration::ZERO);
    lab.w.tun.queue(0, outbound(1));
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut off), moved(1, 0));
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut off), Step::Slept);
    assert_eq!(lab.w.tun.sleeps(), 2);
}

#[test]
fn the_window_comes_from_the_lever_and_only_with_non_blocking_reads() {
    let levers = Levers { spin_us: 0, ..Levers::default() };
    let lab = Setup { levers, ..Setup::default() }.lab();
    lab.w.tun.queue(0, outbound(1));
    let mut spin = lab.w.spin();
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), moved(1, 0));
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Slept, "VPNGW_SPIN_US=0");

    let levers = Levers { spin_us: 3_000_000, ..Levers::default() };
    let lab = Setup { levers, ..Setup::default() }.lab();
    lab.w.tun.queue(0, outbound(1));
    let mut spin = lab.w.spin();
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), moved(1, 0));
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Spun, "a 3 s window");

    let levers = Levers { batch: false, spin_us: 3_000_000, ..Levers::default() };
    let lab = Setup { levers, cross: false, ..Setup::default() }.lab();
    let mut spin = lab.w.spin();
    lab.w.tun.queue(0, outbound(1));
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), moved(1, 0));
    assert!(!spin.go_on(0, Instant::now), "blocking reads: no window");
}

#[test]
fn the_window_opens_on_sending_closes_on_delivering_and_runs_out() {
    let t0 = Instant::now();
    let us = |n| t0 + Duration::from_micros(n);
    let mut spin = Spin::new(Duration::from_micros(100));
    assert!(!spin.go_on(0, || t0), "closed at first");
    spin.moved(Moved { sealed: 3, opened: 0 }, 0, || t0);
    assert!(spin.go_on(0, || us(99)));
    assert!(!spin.go_on(0, || us(100)), "runs out after the window");
    assert!(!spin.go_on(0, || us(50)), "and stays closed");
    // Reopened by the next send, from then on.
    spin.moved(Moved { sealed: 1, opened: 0 }, 0, || us(200));
    assert!(spin.go_on(0, || us(299)));
    spin.moved(Moved { sealed: 1, opened: 0 }, 0, || us(250));
    assert!(spin.go_on(0, || us(349)), "each send extends it");
    spin.moved(Moved { sealed: 0, opened: 1 }, 1, || unreachable!("closing needs no clock"));
    assert!(!spin.go_on(1, || us(260)), "closed by its own delivery");
    spin.moved(Moved { sealed: 5, opened: 1 }, 2, || unreachable!("a round that delivered opens nothing"));
    assert!(!spin.go_on(2, || us(260)));
    // Another worker delivered (it got the answer first, or other traffic keeps it awake).
    spin.moved(Moved { sealed: 1, opened: 0 }, 2, || us(300));
    assert!(spin.go_on(2, || us(310)));
    assert!(!spin.go_on(3, || us(320)), "closed by another worker's delivery");
    assert!(!spin.go_on(2, || us(330)), "and stays closed");
    // What a worker seals after it delivered, before it sleeps, is an answer: no window.
    spin.moved(Moved { sealed: 0, opened: 1 }, 4, || unreachable!());
    spin.moved(Moved { sealed: 1, opened: 0 }, 4, || unreachable!("an answer opens nothing"));
    assert!(!spin.go_on(4, || us(400)));
    // It slept (go_on said so): the next send opens the window again.
    spin.moved(Moved { sealed: 1, opened: 0 }, 4, || us(500));
    assert!(spin.go_on(4, || us(510)));
    let mut off = Spin::new(Duration::ZERO);
    off.moved(Moved { sealed: 1, opened: 0 }, 0, || unreachable!("a zero window needs no clock"));
    assert!(!off.go_on(0, || t0));
}

#[test]
fn a_delivery_by_another_worker_ends_the_spin() {
    let lab = Setup::default().lab();
    let mut spin = Spin::new(LONG);
    lab.w.tun.queue(0, outbound(1));
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), moved(1, 0));
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Spun);
    // natt-rx was woken by the answer and took it first.
    lab.w.wan.queue_natt(SocketAddr::from((PEER, 4500)), &[sas::seal(&lab.peer, &sas::inbound(1, 100))]);
    assert_eq!(lab.round("natt-rx", Source::Natt), 1);
    assert_eq!(lab.w.tun.take_written()[0].worker, "natt-rx");
    assert_eq!(lab.step("tun-rx", Source::Tun(0), &mut spin), Step::Slept, "nothing left to wait for");
    assert_eq!(lab.w.tun.sleeps(), 1);
}
