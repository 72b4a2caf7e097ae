//! Volume limits (`SaParams::limits`): inner bytes and packets counted per SA on seal
//! and on delivery; a soft limit raises one soft `Expired` event, a hard limit raises
//! one hard event and the SA refuses every later packet as `DropReason::Expired`.

mod common;

use common::*;
use esp::{DropReason, SaTable, Sealed};
use ipsec_types::{DatapathCommand, DatapathEvent, Direction, ExpiryReason, Spi, VolumeLimits};

const SPI: u32 = 0x1000;

fn expired(direction: Direction, hard: bool, reason: ExpiryReason) -> DatapathEvent {
    DatapathEvent::Expired { tunnel: "t".into(), spi: Spi(SPI), direction, hard, reason }
}

fn try_seal(t: &SaTable, inner: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut out = vec![0u8; inner.len() + esp::MAX_OVERHEAD];
    match t.seal(NOW, inner, &mut out) {
        Sealed::Send { packet, .. } => Ok(packet.to_vec()),
        Sealed::Drop(r) => Err(r),
    }
}

fn counters(t: &SaTable) -> esp::SaCounters {
    t.stats().into_iter().find(|s| s.spi == Spi(SPI)).unwrap().counters
}

fn limits(
    soft_packets: Option<u64>,
    hard_packets: Option<u64>,
    soft_bytes: Option<u64>,
    hard_bytes: Option<u64>,
) -> VolumeLimits {
    VolumeLimits { soft_bytes, soft_packets, hard_bytes, hard_packets }
}

#[test]
fn outbound_packet_limits_soft_once_then_hard_and_refused() {
    let (left, _) = pair(SPI, |p| p.limits = limits(Some(3), Some(5), None, None));
    let inner = ipv4("10.1.0.5", "10.2.0.9", 100);
    for _ in 0..2 {
        try_seal(&left, &inner).unwrap();
    }
    assert!(left.drain_events().is_empty(), "below the soft limit");
    try_seal(&left, &inner).unwrap();
    assert_eq!(left.drain_events(), vec![expired(Direction::Outbound, false, ExpiryReason::Packets)]);
    try_seal(&left, &inner).unwrap();
    assert!(left.drain_events().is_empty(), "soft event raised once");
    // The fifth packet reaches the hard limit: it is sent and raises the hard event.
    let fifth = try_seal(&left, &inner).unwrap();
    assert_eq!(&fifth[4..8], &5u32.to_be_bytes());
    assert_eq!(left.drain_events(), vec![expired(Direction::Outbound, true, ExpiryReason::Packets)]);
    for _ in 0..3 {
        assert_eq!(try_seal(&left, &inner), Err(DropReason::Expired));
    }
    assert!(left.drain_events().is_empty(), "hard event raised once");
    let c = counters(&left);
    assert_eq!((c.packets, c.bytes, c.expired, c.seq), (5, 500, 3, 5), "refused packets are not counted as sent");
}

#[test]
fn outbound_byte_limits_count_inner_bytes() {
    let (left, _) = pair(SPI, |p| p.limits = limits(None, None, Some(250), Some(400)));
    let inner = ipv4("10.1.0.5", "10.2.0.9", 100);
    try_seal(&left, &inner).unwrap();
    try_seal(&left, &inner).unwrap();
    assert!(left.drain_events().is_empty(), "200 bytes < 250");
    try_seal(&left, &inner).unwrap();
    assert_eq!(left.drain_events(), vec![expired(Direction::Outbound, false, ExpiryReason::Bytes)]);
    try_seal(&left, &inner).unwrap();
    assert_eq!(left.drain_events(), vec![expired(Direction::Outbound, true, ExpiryReason::Bytes)]);
    assert_eq!(try_seal(&left, &inner), Err(DropReason::Expired));
    assert_eq!(counters(&left).bytes, 400);
}

#[test]
fn inbound_limits_count_delivered_packets_only() {
    let (left, right) = pair(SPI, |p| p.limits = limits(Some(2), Some(3), None, None));
    // `pair` mirrors the limits onto the inbound SA; lift them on the sender.
    let mut out = params(SPI, Direction::Outbound, 1, 7);
    out.limits = VolumeLimits::default();
    let left = left.apply(&DatapathCommand::InstallOutbound(out)).unwrap();
    let inner = ipv4("10.1.0.5", "10.2.0.9", 100);
    let first = seal(&left, &inner);
    // Forged and replayed packets are not counted against the volume.
    let mut forged = first.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(open(&right, &forged), Err(DropReason::AuthFailed));
    assert!(open(&right, &first).is_ok());
    assert_eq!(open(&right, &first), Err(DropReason::Replay));
    assert!(right.drain_events().is_empty());
    assert!(open(&right, &seal(&left, &inner)).is_ok());
    assert_eq!(right.drain_events(), vec![expired(Direction::Inbound, false, ExpiryReason::Packets)]);
    assert!(open(&right, &seal(&left, &inner)).is_ok());
    assert_eq!(right.drain_events(), vec![expired(Direction::Inbound, true, ExpiryReason::Packets)]);
    assert_eq!(open(&right, &seal(&left, &inner)), Err(DropReason::Expired));
    let c = counters(&right);
    assert_eq!((c.packets, c.bytes, c.expired, c.auth_failed, c.replay), (3, 300, 1, 1, 1));
}

#[test]
fn a_packet_reaching_soft_and_hard_limits_raises_both() {
    let (left, _) = pair(SPI, |p| p.limits = limits(Some(1), Some(1), None, None));
    let inner = ipv4("10.1.0.5", "10.2.0.9", 60);
    try_seal(&left, &inner).unwrap();
    assert_eq!(
        left.drain_events(),
        vec![
            expired(Direction::Outbound, false, ExpiryReason::Packets),
            expired(Direction::Outbound, true, ExpiryReason::Packets)
        ]
    );
    assert_eq!(try_seal(&left, &inner), Err(DropReason::Expired));
}

#[test]
fn a_zero_limit_behaves_as_one_and_still_raises_its_event() {
    let (left, _) = pair(SPI, |p| p.limits = limits(None, None, None, Some(0)));
    let inner = ipv4("10.1.0.5", "10.2.0.9", 60);
    try_seal(&left, &inner).unwrap();
    assert_eq!(left.drain_events(), vec![expired(Direction::Outbound, true, ExpiryReason::Bytes)]);
    assert_eq!(try_seal(&left, &inner), Err(DropReason::Expired));
}

#[test]
fn no_limits_means_no_events() {
    let (left, right) = pair(SPI, |_| {});
    let inner = ipv4("10.1.0.5", "10.2.0.9", 1400);
    for _ in 0..1000 {
        assert!(open(&right, &seal(&left, &inner)).is_ok());
    }
    assert!(left.drain_events().is_empty() && right.drain_events().is_empty());
}

#[test]
fn reinstall_with_same_key_keeps_counts_and_takes_new_limits() {
    let (left, _) = pair(SPI, |p| p.limits = limits(Some(10), None, None, None));
    let inner = ipv4("10.1.0.5", "10.2.0.9", 60);
    for _ in 0..3 {
        try_seal(&left, &inner).unwrap();
    }
    let mut p = params(SPI, Direction::Outbound, 1, 7);
    p.limits = limits(Some(4), Some(5), None, None);
    let left2 = left.apply(&DatapathCommand::InstallOutbound(p)).unwrap();
    try_seal(&left2, &inner).unwrap();
    assert_eq!(left2.drain_events(), vec![expired(Direction::Outbound, false, ExpiryReason::Packets)]);
    try_seal(&left2, &inner).unwrap();
    assert_eq!(left2.drain_events(), vec![expired(Direction::Outbound, true, ExpiryReason::Packets)]);
    assert_eq!(try_seal(&left2, &inner), Err(DropReason::Expired));
    // The old snapshot still uses its own (looser) limits, but the shared counts.
    assert_eq!(counters(&left).packets, 5);
}

#[test]
fn concurrent_seal_stops_exactly_at_the_hard_limit_with_one_event_each() {
    let (left, _) = pair(SPI, |p| p.limits = limits(Some(700), Some(1000), None, None));
    let inner = ipv4("10.1.0.5", "10.2.0.9", 64);
    let sent: usize = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..4).map(|_| s.spawn(|| (0..400).filter(|_| try_seal(&left, &inner).is_ok()).count())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(sent, 1000);
    let c = counters(&left);
    assert_eq!((c.packets, c.expired, c.seq), (1000, 600, 1000));
    let mut events = left.drain_events();
    events.sort_by_key(|e| matches!(e, DatapathEvent::Expired { hard: true, .. }));
    assert_eq!(
        events,
        vec![
            expired(Direction::Outbound, false, ExpiryReason::Packets),
            expired(Direction::Outbound, true, ExpiryReason::Packets)
        ]
    );
}

/// The reference the datapath must agree with: a packet is refused once a hard limit
/// was reached by earlier packets; the packet that reaches a limit passes and raises
/// its event, soft before hard, each once.
#[derive(Default)]
struct Model {
    packets: u64,
    bytes: u64,
    soft_raised: bool,
    hard_raised: bool,
}

impl Model {
    fn send(&mut self, l: &VolumeLimits, n: u64, direction: Direction, events: &mut Vec<DatapathEvent>) -> bool {
        let lim = |v: Option<u64>| v.map_or(u64::MAX, |v| v.max(1));
        let (hp, hb) = (lim(l.hard_packets), lim(l.hard_bytes));
        if self.packets >= hp || self.bytes >= hb {
            return false;
        }
        let (p0, b0) = (self.packets, self.bytes);
        self.packets += 1;
        self.bytes += n;
        let reached = |before: u64, after: u64, limit: u64| before < limit && after >= limit;
        let which = |lp: u64, lb: u64| {
            if reached(p0, self.packets, lp) {
                Some(ExpiryReason::Packets)
            } else if reached(b0, self.bytes, lb) {
                Some(ExpiryReason::Bytes)
            } else {
                None
            }
        };
        if let Some(reason) = which(lim(l.soft_packets), lim(l.soft_bytes)) {
            if !std::mem::replace(&mut self.soft_raised, true) {
                events.push(DatapathEvent::Expired {
                    tunnel: "t".into(),
                    spi: Spi(SPI),
                    direction,
                    hard: false,
                    reason,
                });
            }
        }
        if let Some(reason) = which(hp, hb) {
            if !std::mem::replace(&mut self.hard_raised, true) {
                events.push(DatapathEvent::Expired {
                    tunnel: "t".into(),
                    spi: Spi(SPI),
                    direction,
                    hard: true,
                    reason,
                });
            }
        }
        true
    }
}

proptest::proptest! {
    #[test]
    fn seal_and_open_agree_with_the_model(
        soft_packets in proptest::option::of(0u64..12),
        hard_packets in proptest::option::of(0u64..16),
        soft_bytes in proptest::option::of(0u64..1500),
        hard_bytes in proptest::option::of(0u64..2000),
        lens in proptest::collection::vec(28usize..200, 1..24),
    ) {
        let l = VolumeLimits { soft_bytes, soft_packets, hard_bytes, hard_packets };
        let (left, right) = pair(SPI, |p| p.limits = l);
        // A sender without limits feeds the receiver, so both directions are checked.
        let mut free = params(SPI, Direction::Outbound, 1, 7);
        free.limits = VolumeLimits::default();
        let sender = SaTable::new().apply(&DatapathCommand::InstallOutbound(free)).unwrap();
        let (mut out_model, mut in_model) = (Model::default(), Model::default());
        let (mut out_expected, mut in_expected) = (Vec::new(), Vec::new());
        for n in lens {
            let inner = ipv4("10.1.0.5", "10.2.0.9", n);
            let sent = try_seal(&left, &inner);
            proptest::prop_assert_eq!(
                sent.is_ok(),
                out_model.send(&l, n as u64, Direction::Outbound, &mut out_expected)
            );
            if let Err(r) = sent {
                proptest::prop_assert_eq!(r, DropReason::Expired);
            }
            let opened = open(&right, &seal(&sender, &inner));
            proptest::prop_assert_eq!(
                opened.is_ok(),
                in_model.send(&l, n as u64, Direction::Inbound, &mut in_expected)
            );
        }
        proptest::prop_assert_eq!(left.drain_events(), out_expected);
        proptest::prop_assert_eq!(right.drain_events(), in_expected);
        let c = counters(&left);
        proptest::prop_assert_eq!((c.packets, c.bytes), (out_model.packets, out_model.bytes));
        let c = counters(&right);
        proptest::prop_assert_eq!((c.packets, c.bytes), (in_model.packets, in_model.bytes));
    }
}
