//! Behaviour of `SaTable::seal` / `open` / `apply` through the public API.

mod common;

use common::*;
use esp::{classify_udp4500, DropReason, GlobalDrops, Opened, SaTable, Sealed, Udp4500};
use ipsec_types::{DatapathCommand, Direction, EncrAlg, Spi};
use proptest::prelude::*;

#[test]
fn round_trip_ipv4_all_padding_lengths() {
    let (left, right) = pair(0x1000, |_| {});
    for len in 28..=60 {
        let inner = ipv4("10.1.0.5", "10.2.0.9", len);
        let esp = seal(&left, &inner);
        // header + IV + inner + pad (AES-GCM: to whole 16-byte blocks with the 2 trailer
        // bytes) + ICV
        let pad = (16 - (len + 2) % 16) % 16;
        assert_eq!(esp.len(), 16 + len + pad + 2 + 16, "len {len}");
        assert_eq!(&esp[..4], &0x1000u32.to_be_bytes());
        assert_eq!(open(&right, &esp), Ok(inner), "len {len}");
    }
    for len in [100, 576, 1400, 1500, 9000] {
        let inner = ipv4("10.1.200.1", "10.2.3.4", len);
        assert_eq!(open(&right, &seal(&left, &inner)), Ok(inner));
    }
}

#[test]
fn chacha20_poly1305_pads_to_four_bytes_only() {
    let (left, right) = pair(0x1100, |p| p.key = key(EncrAlg::ChaCha20Poly1305, 5));
    for len in 28..=40 {
        let inner = ipv4("10.1.0.5", "10.2.0.9", len);
        let esp = seal(&left, &inner);
        let pad = (4 - (len + 2) % 4) % 4;
        assert_eq!(esp.len(), 16 + len + pad + 2 + 16, "len {len}");
        assert_eq!(open(&right, &esp), Ok(inner), "len {len}");
    }
}

#[test]
fn round_trip_ipv6_and_aes128() {
    let (left, right) = pair(0x2000, |p| p.key = key(EncrAlg::AesGcm16_128, 3));
    for len in [48, 49, 50, 51, 52, 1280, 1400] {
        let inner = ipv6("2001:db8:1::1", "2001:db8:2::2", len);
        assert_eq!(open(&right, &seal(&left, &inner)), Ok(inner), "len {len}");
    }
}

#[test]
fn sequence_numbers_and_iv_count_from_one() {
    let (left, _) = pair(0x1000, |_| {});
    let inner = ipv4("10.1.0.5", "10.2.0.9", 60);
    for n in 1u32..=3 {
        let esp = seal(&left, &inner);
        assert_eq!(&esp[4..8], &n.to_be_bytes());
        assert_eq!(&esp[8..16], &u64::from(n).to_be_bytes());
    }
    let s = left.stats();
    assert_eq!(s[0].counters.seq, 3);
    assert_eq!(s[0].counters.packets, 3);
    assert_eq!(s[0].counters.bytes, 180);
}

#[test]
fn tfc_padding_after_inner_packet_is_stripped_and_bad_trailers_rejected() {
    // Build payloads by hand with the SA's key: inner packet, optional extra bytes
    // (RFC 4303 TFC padding), padding, pad length, next header.
    let (_, right) = pair(0x1000, |_| {});
    let aead = esp::cipher::AesGcm16::new(&key(EncrAlg::AesGcm16_256, 7)).unwrap();
    let inner = ipv4("10.1.0.5", "10.2.0.9", 40);
    let build = |seq: u32, payload: &[u8]| {
        let mut body = payload.to_vec();
        let icv = aead.seal_in_place(0x1000, u64::from(seq), false, [9; 8], &mut body).unwrap();
        let mut p = 0x1000u32.to_be_bytes().to_vec();
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[9; 8]);
        p.extend_from_slice(&body);
        p.extend_from_slice(&icv);
        p
    };
    let with = |tail: &[u8]| [inner.as_slice(), tail].concat();
    // TFC padding of 20 bytes, then a 2-byte pad: delivered without the extra bytes.
    let tfc = [inner.as_slice(), &[0u8; 20], &[1, 2, 2, 4]].concat();
    assert_eq!(open(&right, &build(1, &tfc)), Ok(inner.clone()));
    // Pad bytes not 1, 2, ..
    assert_eq!(open(&right, &build(2, &with(&[1, 3, 2, 4]))), Err(DropReason::Malformed));
    // Pad length beyond the payload.
    assert_eq!(open(&right, &build(3, &with(&[200, 4]))), Err(DropReason::Malformed));
    // Next header does not match the inner version (41 for an IPv4 packet), or is 1.
    assert_eq!(open(&right, &build(4, &with(&[0, 41]))), Err(DropReason::Malformed));
    assert_eq!(open(&right, &build(5, &with(&[0, 1]))), Err(DropReason::Malformed));
    // Inner packet longer than the payload says.
    assert_eq!(open(&right, &build(6, &[&inner[..30], &[0, 4]].concat())), Err(DropReason::Malformed));
    // Zero padding with no TFC: fine. Payload of only the trailer: malformed.
    assert_eq!(open(&right, &build(7, &with(&[0, 4]))), Ok(inner.clone()));
    assert_eq!(open(&right, &build(8, &[0, 4])), Err(DropReason::Malformed));
    assert_eq!(right.global_drops().malformed, 6);
    // Authenticated-but-malformed packets still consumed their sequence numbers.
    assert_eq!(open(&right, &build(2, &with(&[0, 4]))), Err(DropReason::Replay));
}

#[test]
fn replay_duplicate_old_slide_and_out_of_order() {
    let (left, right) = pair(0x1000, |p| p.replay_window = 64);
    let inner = ipv4("10.1.0.5", "10.2.0.9", 64);
    let pkts: Vec<Vec<u8>> = (0..200).map(|_| seal(&left, &inner)).collect(); // seq 1..=200
    let p = |seq: usize| &pkts[seq - 1];
    assert!(open(&right, p(1)).is_ok());
    assert_eq!(open(&right, p(1)), Err(DropReason::Replay)); // duplicate
    assert!(open(&right, p(10)).is_ok());
    assert!(open(&right, p(5)).is_ok()); // out of order inside the window
    assert!(open(&right, p(2)).is_ok());
    assert_eq!(open(&right, p(5)), Err(DropReason::Replay));
    assert!(open(&right, p(100)).is_ok()); // slide: window now [37, 100]
    assert_eq!(open(&right, p(36)), Err(DropReason::Replay)); // too old
    assert!(open(&right, p(37)).is_ok());
    assert!(open(&right, p(99)).is_ok());
    assert_eq!(open(&right, p(100)), Err(DropReason::Replay));
    let s = &right.stats()[0];
    assert_eq!(s.direction, Direction::Inbound);
    assert_eq!(s.counters.replay, 4);
    assert_eq!(s.counters.packets, 7);
    assert_eq!(s.counters.seq, 100);
}

#[test]
fn tampered_packet_fails_auth_and_does_not_move_the_window() {
    let (left, right) = pair(0x1000, |_| {});
    let inner = ipv4("10.1.0.5", "10.2.0.9", 100);
    let good: Vec<Vec<u8>> = (0..3).map(|_| seal(&left, &inner)).collect();
    assert!(open(&right, &good[0]).is_ok());
    // Flip one bit in each region: seq, IV, ciphertext, ICV.
    for at in [5, 12, 40, good[2].len() - 1] {
        let mut bad = good[2].clone();
        bad[at] ^= 0x01;
        assert_eq!(open(&right, &bad), Err(DropReason::AuthFailed), "byte {at}");
    }
    // A forged packet claiming a far-ahead sequence number.
    let mut forged = good[1].clone();
    forged[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
    assert_eq!(open(&right, &forged), Err(DropReason::AuthFailed));
    // The window did not move: seq 2 and 3 are still accepted.
    assert_eq!(right.stats()[0].counters.seq, 1);
    assert!(open(&right, &good[1]).is_ok());
    assert!(open(&right, &good[2]).is_ok());
    assert_eq!(right.stats()[0].counters.auth_failed, 5);
}

#[test]
fn wrong_key_is_auth_failure() {
    let (left, _) = pair(0x1000, |_| {});
    let (_, right) = pair(0x1000, |p| p.key = key(EncrAlg::AesGcm16_256, 8));
    let esp = seal(&left, &ipv4("10.1.0.5", "10.2.0.9", 100));
    assert_eq!(open(&right, &esp), Err(DropReason::AuthFailed));
}

#[test]
fn unknown_spi_and_truncation_are_counted_globally() {
    let (left, right) = pair(0x1000, |_| {});
    let esp = seal(&left, &ipv4("10.1.0.5", "10.2.0.9", 100));
    let mut other = esp.clone();
    other[..4].copy_from_slice(&0x1001u32.to_be_bytes());
    assert_eq!(open(&right, &other), Err(DropReason::UnknownSpi));
    for cut in [0, 3, 7, 8, 16, 33] {
        let r = open(&right, &esp[..cut]);
        assert_eq!(r, Err(DropReason::Malformed), "cut {cut}");
    }
    // Longer truncations still parse but cannot verify.
    assert_eq!(open(&right, &esp[..esp.len() - 1]), Err(DropReason::AuthFailed));
    // A too-small output buffer is refused, not a panic.
    let mut small = [0u8; 10];
    assert!(matches!(right.open(NOW, &esp, &mut small), Opened::Drop(DropReason::Malformed)));
    assert_eq!(right.global_drops(), GlobalDrops { malformed: 7, unknown_spi: 1, no_sa: 0 });
}

#[test]
fn inbound_selector_mismatch() {
    // The peer seals with wide selectors; we accept only 10.2.0.0/16 -> 10.1.0.0/16.
    let (left, _) = pair(0x1000, |p| {
        p.local_ts = vec![ts("0.0.0.0/0"), ts("::/0")];
        p.remote_ts = vec![ts("0.0.0.0/0"), ts("::/0")];
    });
    let right = SaTable::new()
        .apply(&DatapathCommand::InstallInbound(mirror(&params(0x1000, Direction::Outbound, 1, 7), Direction::Inbound)))
        .unwrap();
    assert!(open(&right, &seal(&left, &ipv4("10.1.0.5", "10.2.0.9", 60))).is_ok());
    assert_eq!(open(&right, &seal(&left, &ipv4("10.9.0.5", "10.2.0.9", 60))), Err(DropReason::SelectorMismatch));
    assert_eq!(open(&right, &seal(&left, &ipv4("10.1.0.5", "10.3.0.9", 60))), Err(DropReason::SelectorMismatch));
    assert!(open(&right, &seal(&left, &ipv6("2001:db8:1::5", "2001:db8:2::1", 60))).is_ok());
    assert_eq!(
        open(&right, &seal(&left, &ipv6("2001:db8:7::5", "2001:db8:2::1", 60))),
        Err(DropReason::SelectorMismatch)
    );
    let c = &right.stats()[0].counters;
    assert_eq!((c.selector_mismatch, c.packets), (3, 2));
}

#[test]
fn outbound_without_matching_sa_is_no_sa() {
    let (left, _) = pair(0x1000, |_| {});
    let mut out = vec![0u8; 2000];
    let r = left.seal(NOW, &ipv4("10.1.0.5", "192.168.0.1", 60), &mut out);
    assert!(matches!(r, Sealed::Drop(DropReason::NoSa)));
    let r = left.seal(NOW, &[0x45, 0, 0], &mut out);
    assert!(matches!(r, Sealed::Drop(DropReason::Malformed)));
    let r = left.seal(NOW, &ipv4("10.1.0.5", "10.2.0.1", 1400), &mut out[..1400]);
    assert!(matches!(r, Sealed::Drop(DropReason::Malformed)), "short output buffer");
    assert!(matches!(
        SaTable::new().seal(NOW, &ipv4("10.1.0.5", "10.2.0.1", 60), &mut out),
        Sealed::Drop(DropReason::NoSa)
    ));
    assert_eq!(left.global_drops(), GlobalDrops { malformed: 2, unknown_spi: 0, no_sa: 1 });
}

#[test]
fn outbound_selection_by_selectors_and_newest_wins() {
    let mut a = params(0xa, Direction::Outbound, 1, 1);
    a.local_ts = vec![ts("10.1.0.0/16")];
    a.remote_ts = vec![ts("10.2.0.0/16")];
    let mut b = params(0xb, Direction::Outbound, 2, 2);
    b.local_ts = vec![ts("10.1.0.0/16")];
    b.remote_ts = vec![ts("10.3.0.0/16")];
    let t = SaTable::new()
        .apply(&DatapathCommand::InstallOutbound(a.clone()))
        .unwrap()
        .apply(&DatapathCommand::InstallOutbound(b))
        .unwrap();
    let spi_of = |t: &SaTable, dst: &str| seal(t, &ipv4("10.1.0.1", dst, 60))[..4].to_vec();
    assert_eq!(spi_of(&t, "10.2.0.1"), 0xau32.to_be_bytes());
    assert_eq!(spi_of(&t, "10.3.0.1"), 0xbu32.to_be_bytes());

    // Rekey of child 1: the new SA (other key, same selectors) replaces 0xa in the
    // seal path; 0xa stays in stats until removed.
    let mut a2 = a.clone();
    a2.spi = Spi(0xa2);
    a2.child.child_id = 11;
    a2.key = key(EncrAlg::AesGcm16_256, 99);
    let t2 = t.apply(&DatapathCommand::InstallOutbound(a2)).unwrap();
    assert_eq!(spi_of(&t2, "10.2.0.1"), 0xa2u32.to_be_bytes());
    assert_eq!(spi_of(&t2, "10.3.0.1"), 0xbu32.to_be_bytes());
    assert_eq!(t2.stats().len(), 3);
    // The old snapshot still seals with 0xa (RCU: published snapshots are immutable).
    assert_eq!(spi_of(&t, "10.2.0.1"), 0xau32.to_be_bytes());
    let t3 = t2
        .apply(&DatapathCommand::Remove { tunnel: "t".into(), spi: Spi(0xa), direction: Direction::Outbound })
        .unwrap();
    assert_eq!(t3.stats().len(), 2);
    assert_eq!(spi_of(&t3, "10.2.0.1"), 0xa2u32.to_be_bytes());

    // Same child id with different selectors also supersedes.
    let mut b2 = params(0xb2, Direction::Outbound, 2, 5);
    b2.local_ts = vec![ts("10.1.0.0/24")];
    b2.remote_ts = vec![ts("10.3.0.0/24")];
    let t4 = t3.apply(&DatapathCommand::InstallOutbound(b2)).unwrap();
    assert_eq!(spi_of(&t4, "10.3.0.1"), 0xb2u32.to_be_bytes());
    let mut out = vec![0u8; 200];
    assert!(matches!(t4.seal(NOW, &ipv4("10.1.0.1", "10.3.1.1", 60), &mut out), Sealed::Drop(DropReason::NoSa)));
}

#[test]
fn apply_preserves_counters_sequence_and_window() {
    let (left, right) = pair(0x1000, |_| {});
    let inner = ipv4("10.1.0.5", "10.2.0.9", 100);
    let first = seal(&left, &inner);
    assert!(open(&right, &first).is_ok());
    // Unrelated commands produce new snapshots sharing the SAs.
    let other = params(0x2000, Direction::Inbound, 9, 1);
    let left2 = left.apply(&DatapathCommand::InstallInbound(other.clone())).unwrap();
    let right2 = right.apply(&DatapathCommand::InstallInbound(other.clone())).unwrap();
    let second = seal(&left2, &inner);
    assert_eq!(&second[4..8], &2u32.to_be_bytes(), "sequence continues");
    assert!(open(&right2, &second).is_ok());
    assert_eq!(open(&right2, &first), Err(DropReason::Replay), "window shared");
    // Counters are visible from both snapshots.
    let find = |t: &SaTable| t.stats().into_iter().find(|s| s.spi == Spi(0x1000)).unwrap().counters;
    assert_eq!(find(&right).packets, 2);
    assert_eq!(find(&right2).replay, 1);
    assert_eq!(find(&left).packets, 2);
    // Re-installing the same SA (same key) keeps its state; NAT update too.
    let again = params(0x1000, Direction::Outbound, 1, 7);
    let left3 = left2.apply(&DatapathCommand::InstallOutbound(again)).unwrap();
    let mut moved = endpoints();
    moved.remote = "203.0.113.7".parse().unwrap();
    let left4 = left3
        .apply(&DatapathCommand::UpdateEndpoints {
            tunnel: "t".into(),
            spi: Spi(0x1000),
            direction: Direction::Outbound,
            endpoints: moved,
        })
        .unwrap();
    let mut out = vec![0u8; 200];
    match left4.seal(NOW, &inner, &mut out) {
        Sealed::Send { to, packet } => {
            assert_eq!(to, moved);
            assert_eq!(&packet[4..8], &3u32.to_be_bytes());
        }
        Sealed::Drop(r) => panic!("{r:?}"),
    }
    // Global drops are shared too.
    let _ = open(&right, &[0u8; 3]);
    assert_eq!(right2.global_drops().malformed, 1);
    // Remove takes the SA out.
    let right3 = right2
        .apply(&DatapathCommand::Remove { tunnel: "t".into(), spi: Spi(0x1000), direction: Direction::Inbound })
        .unwrap();
    assert_eq!(open(&right3, &seal(&left4, &inner)), Err(DropReason::UnknownSpi));
}

#[test]
fn reinstall_with_new_key_starts_fresh() {
    let (left, _) = pair(0x1000, |_| {});
    let _ = seal(&left, &ipv4("10.1.0.5", "10.2.0.9", 60));
    let mut p = params(0x1000, Direction::Outbound, 1, 7);
    p.key = key(EncrAlg::AesGcm16_256, 50);
    let t = left.apply(&DatapathCommand::InstallOutbound(p)).unwrap();
    assert_eq!(&seal(&t, &ipv4("10.1.0.5", "10.2.0.9", 60))[4..8], &1u32.to_be_bytes());
    assert_eq!(t.stats().len(), 1);
}

#[test]
fn esn_round_trip_uses_high_bits_in_aad() {
    let (left, right) = pair(0x3000, |p| p.esn = true);
    let inner = ipv4("10.1.0.5", "10.2.0.9", 80);
    let esp = seal(&left, &inner);
    assert_eq!(open(&right, &esp), Ok(inner.clone()));
    // An ESN receiver does not accept a non-ESN sender's packets (AAD differs).
    let (plain, _) = pair(0x3000, |_| {});
    let mut other = seal(&plain, &inner);
    other[4..8].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(open(&right, &other), Err(DropReason::AuthFailed));
}

#[test]
fn table_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SaTable>();
}

#[test]
fn concurrent_seal_uses_unique_sequence_numbers() {
    let (left, right) = pair(0x1000, |_| {});
    let inner = ipv4("10.1.0.5", "10.2.0.9", 200);
    let mut all: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..2).map(|_| s.spawn(|| (0..500).map(|_| seal(&left, &inner)).collect::<Vec<_>>())).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut seqs: Vec<[u8; 4]> = all.iter().map(|p| p[4..8].try_into().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 1000);
    all.sort_by_key(|p| p[4..8].to_vec());
    std::thread::scope(|s| {
        for half in all.chunks(500) {
            let right = &right;
            s.spawn(move || half.iter().for_each(|p| assert!(open(right, p).is_ok())));
        }
    });
    assert_eq!(right.stats()[0].counters.packets, 1000);
}

#[test]
fn udp4500_classification() {
    assert_eq!(classify_udp4500(&[0xff]), Udp4500::Keepalive);
    assert_eq!(classify_udp4500(&[0, 0, 0, 0, 9]), Udp4500::Ike(&[9]));
    assert_eq!(classify_udp4500(&[0, 0, 0, 1, 0, 0, 0, 1]), Udp4500::Esp(&[0, 0, 0, 1, 0, 0, 0, 1]));
    assert_eq!(classify_udp4500(&[0, 0, 0, 1, 0, 0, 0]), Udp4500::Malformed);
    assert_eq!(classify_udp4500(&[0xff, 0xff]), Udp4500::Malformed);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes (optionally behind a valid SPI) never panic and are never delivered.
    #[test]
    fn open_arbitrary_bytes_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), known_spi in any::<bool>()) {
        let (_, right) = pair(0x1000, |_| {});
        if known_spi && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(&0x1000u32.to_be_bytes());
        }
        let mut out = vec![0u8; bytes.len()];
        prop_assert!(matches!(right.open(NOW, &bytes, &mut out), Opened::Drop(_)));
    }

    /// Arbitrary mutations of a valid packet are dropped, never delivered modified.
    #[test]
    fn open_mutated_packet_never_delivers_garbage(at in 0usize..156, xor in 1u8..=255) {
        let (left, right) = pair(0x1000, |_| {});
        let inner = ipv4("10.1.0.5", "10.2.0.9", 120);
        let mut esp = seal(&left, &inner);
        let at = at % esp.len();
        esp[at] ^= xor;
        prop_assert!(open(&right, &esp).is_err());
    }

    /// Arbitrary inner packets never panic seal.
    #[test]
    fn seal_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), out_len in 0usize..300) {
        let (left, right) = pair(0x1000, |p| {
            p.local_ts = vec![ts("0.0.0.0/0"), ts("::/0")];
            p.remote_ts = vec![ts("0.0.0.0/0"), ts("::/0")];
        });
        let mut out = vec![0u8; out_len];
        if let Sealed::Send { packet, .. } = left.seal(NOW, &bytes, &mut out) {
            // Whatever was sealed opens to a prefix of the input.
            let mut back = vec![0u8; packet.len()];
            let right = right.apply(&DatapathCommand::InstallInbound({
                let mut p = params(0x1000, Direction::Inbound, 1, 7);
                p.local_ts = vec![ts("0.0.0.0/0"), ts("::/0")];
                p.remote_ts = vec![ts("0.0.0.0/0"), ts("::/0")];
                p
            })).unwrap();
            match right.open(NOW, packet, &mut back) {
                Opened::Deliver { packet, .. } => prop_assert!(bytes.starts_with(packet)),
                Opened::Drop(r) => prop_assert!(false, "sealed packet dropped: {:?}", r),
            }
        }
    }
}
