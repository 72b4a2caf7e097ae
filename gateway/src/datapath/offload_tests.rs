use super::*;
use std::net::Ipv4Addr;
use testkit::packet::{self, Ipv4, Ipv6, Tcp};

/// The IPv4 header of the test flow 10.1.0.10 -> 10.2.0.10: ID `id`, ECT(0), DF.
fn ip4(id: u16) -> Ipv4 {
    Ipv4 { id, ecn: 2, ..Ipv4::new(Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 2, 0, 10)) }
}

/// The test flow's TCP header, 5201 -> 40000, with a timestamp option.
fn seg4(seq: u32, flags: u8) -> Tcp {
    Tcp { seq, ack: 0x1234_5678, flags, window: 512, timestamp: Some((1, 2)), ..Tcp::new(5201, 40000) }
}

/// An IPv4/TCP segment of the test flow (52 header bytes), checksums correct.
fn tcp4(seq: u32, id: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    ip4(id).tcp(&seg4(seq, flags), payload)
}

/// An IPv6/TCP segment fd00::1:443 -> fd00::2:5555 (60 header bytes), checksum correct.
fn tcp6(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let ip = Ipv6::new("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
    ip.tcp(&Tcp { seq, flags, window: 1000, ..Tcp::new(443, 5555) }, payload)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn seq_of(p: &[u8], thoff: usize) -> u32 {
    u32::from_be_bytes(p[thoff + 4..thoff + 8].try_into().unwrap())
}

fn gso4(mss: u16) -> VnetHdr {
    VnetHdr { flags: F_NEEDS_CSUM, gso_type: GSO_TCPV4, hdr_len: 52, gso_size: mss, csum_start: 20, csum_offset: 16 }
}

fn collect_segments(hdr: &VnetHdr, pkt: &[u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut scratch = vec![0u8; 70_000];
    let mut out = Vec::new();
    segment(hdr, pkt, &mut scratch, |s| out.push(s.to_vec()))?;
    Ok(out)
}

#[test]
fn vnet_header_round_trip() {
    let h = VnetHdr { flags: 1, gso_type: 4, hdr_len: 60, gso_size: 1348, csum_start: 40, csum_offset: 16 };
    assert_eq!(VnetHdr::parse(&h.encode()), Some(h));
    assert_eq!(VnetHdr::parse(&[0; 9]), None);
    assert_eq!(VnetHdr::parse(&PLAIN_HDR), Some(VnetHdr::default()));
}

#[test]
fn checksum_matches_rfc1071() {
    for n in [0, 1, 2, 3, 5, 20, 1399, 1400, 65_535] {
        let d = payload(n);
        assert_eq!(!fold(sum(&d, 0)), packet::internet_checksum(&d), "length {n}");
    }
    // Chained over even-length pieces, and on top of a pseudo-header-like sum.
    let d = payload(1401);
    for cut in [0, 2, 4, 30, 32, 34, 1400] {
        let acc = 0x1_2345_6789;
        assert_eq!(fold(sum(&d[cut..], sum(&d[..cut], acc))), fold(sum(&d, acc)), "cut at {cut}");
    }
    // All-ones input folds to 0xffff, not 0.
    assert_eq!(fold(sum(&[0xff; 64], 0)), 0xffff);
}

#[test]
fn tso_v4_splits_with_fixed_headers() {
    let data = payload(2 * 1000 + 345);
    let mut sup = tcp4(0xffff_fc00, 0xfffe, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR, &data);
    // The kernel hands super-packets over with a partial checksum: garbage here.
    sup[20 + 16] = 0xab;
    let segs = collect_segments(&gso4(1000), &sup).unwrap();
    assert_eq!(segs.len(), 3);
    let mut joined = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let plen = if i < 2 { 1000 } else { 345 };
        assert_eq!(s.len(), 52 + plen);
        assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
        assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0xfffe_u16.wrapping_add(i as u16));
        assert!(packet::ipv4_header_checksum_ok(s), "IPv4 header checksum of segment {i}");
        assert!(packet::transport_checksum_ok(s), "TCP checksum of segment {i}");
        assert_eq!(seq_of(s, 20), 0xffff_fc00_u32.wrapping_add(1000 * i as u32), "sequence wraps");
        let flags = s[33];
        assert_eq!(flags & TCP_ACK, TCP_ACK);
        assert_eq!(flags & (TCP_FIN | TCP_PSH) != 0, i == 2, "FIN/PSH only on the last");
        assert_eq!(flags & TCP_FIN != 0, i == 2);
        assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR only on the first");
        assert_eq!(&s[20 + 20..52], &sup[40..52], "options copied");
        joined.extend_from_slice(&s[52..]);
    }
    assert_eq!(joined, data);
}

#[test]
fn tso_v6_and_exact_multiple() {
    let data = payload(3 * 500);
    let sup = tcp6(7, TCP_ACK | TCP_PSH, &data);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6,
        hdr_len: 60,
        gso_size: 500,
        csum_start: 40,
        csum_offset: 16,
    };
    let segs = collect_segments(&h, &sup).unwrap();
    assert_eq!(segs.len(), 3);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(u16::from_be_bytes([s[4], s[5]]), 520);
        assert!(packet::transport_checksum_ok(s));
        assert_eq!(seq_of(s, 40), 7 + 500 * i as u32);
        assert_eq!(s[53] & TCP_PSH != 0, i == 2);
    }
}

#[test]
fn tso_rejects_inconsistent_input() {
    let sup = tcp4(1, 1, TCP_ACK, &payload(3000));
    assert_eq!(collect_segments(&VnetHdr { gso_type: 3, ..gso4(1000) }, &sup), Err(OffloadError::Unsupported));
    assert_eq!(collect_segments(&VnetHdr { gso_type: GSO_TCPV6, ..gso4(1000) }, &sup), Err(OffloadError::Malformed));
    assert_eq!(collect_segments(&gso4(0), &sup), Err(OffloadError::Malformed));
    assert_eq!(collect_segments(&VnetHdr { csum_start: 24, ..gso4(1000) }, &sup), Err(OffloadError::Unsupported));
    // Every truncation fails cleanly or segments what the header length admits, never panics.
    for n in 0..sup.len() {
        let _ = collect_segments(&gso4(1000), &sup[..n]);
    }
    let mut scratch = [0u8; 100];
    assert_eq!(segment(&gso4(1000), &sup, &mut scratch, |_| {}), Err(OffloadError::Malformed));
}

#[test]
fn partial_udp_checksum_is_completed() {
    // IPv4/UDP 10.1.0.10:1000 -> 10.2.0.10:2000 as the kernel hands it over: the
    // pseudo-header sum in the checksum field instead of the full checksum.
    let data = payload(333);
    let mut p = packet::ipv4_udp(Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 2, 0, 10), 1000, 2000, &data);
    let ulen = (8 + data.len()) as u16;
    let pseudo = fold(sum(&p[12..20], 17 + u64::from(ulen)));
    p[26..28].copy_from_slice(&pseudo.to_be_bytes());
    let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 20, csum_offset: 6, ..VnetHdr::default() };
    complete_checksum(&h, &mut p).unwrap();
    assert!(packet::transport_checksum_ok(&p));
    assert_ne!(&p[26..28], &[0, 0]);
    let bad = VnetHdr { csum_start: 20, csum_offset: 400, ..h };
    assert_eq!(complete_checksum(&bad, &mut p), Err(OffloadError::Malformed));
}

type Written = Vec<(VnetHdr, Vec<u8>)>;

fn run_gro(pkts: &[Vec<u8>]) -> Written {
    let mut gro = Gro::new();
    let mut out: Written = Vec::new();
    let mut w = |h: &[u8], p: &[u8]| out.push((VnetHdr::parse(h).unwrap(), p.to_vec()));
    for p in pkts {
        gro.push(p, &mut w);
    }
    gro.flush(&mut w);
    out
}

#[test]
fn gro_coalesces_what_tso_split_and_resegments_identically() {
    let data = payload(5 * 1200 + 100);
    let sup = tcp4(1_000_000, 300, TCP_ACK | TCP_PSH, &data);
    let segs = collect_segments(&gso4(1200), &sup).unwrap();
    assert_eq!(segs.len(), 6);
    let out = run_gro(&segs);
    assert_eq!(out.len(), 1, "one super-packet");
    let (h, p) = &out[0];
    assert_eq!(
        *h,
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1200,
            csum_start: 20,
            csum_offset: 16
        }
    );
    assert_eq!(p.len(), sup.len());
    assert!(packet::ipv4_header_checksum_ok(p));
    assert_eq!(&p[52..], &data[..]);
    assert_eq!(p[33], TCP_ACK | TCP_PSH, "PSH of the last segment kept");
    // The TCP field holds the pseudo-header sum over the whole length.
    let tcp_len = (p.len() - 20) as u64;
    assert_eq!(u16::from_be_bytes([p[36], p[37]]), fold(sum(&p[12..20], 6 + tcp_len)));
    // What the kernel would do with it: split again, into exactly the original segments.
    assert_eq!(collect_segments(h, p).unwrap(), segs);
}

#[test]
fn gro_v6() {
    let segs: Vec<Vec<u8>> = (0..4).map(|i| tcp6(10 + 100 * i, TCP_ACK, &payload(100))).collect();
    let out = run_gro(&segs);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.gso_type, GSO_TCPV6);
    assert_eq!(u16::from_be_bytes([out[0].1[4], out[0].1[5]]), 20 + 400);
    let h = out[0].0;
    assert_eq!(collect_segments(&h, &out[0].1).unwrap(), segs);
}

#[test]
fn gro_passes_through_what_it_must_not_merge() {
    let d = payload(100);
    let a = tcp4(0, 1, TCP_ACK, &d);
    let b = tcp4(100, 2, TCP_ACK, &d);
    let gap = tcp4(300, 3, TCP_ACK, &d); // sequence gap: new super-packet
    let mut bad = tcp4(400, 4, TCP_ACK, &d);
    bad[60] ^= 1; // payload corrupted: checksum fails, passes unchanged
    let syn = tcp4(500, 5, TCP_SYN | TCP_ACK, &d);
    let pure_ack = tcp4(500, 6, TCP_ACK, &[]);
    let udp = packet::ipv4_udp(Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1), 1, 2, &[]);
    let out = run_gro(&[a.clone(), b.clone(), gap.clone(), bad.clone(), syn.clone(), pure_ack.clone(), udp.clone()]);
    let kinds: Vec<(u8, usize)> = out.iter().map(|(h, p)| (h.gso_type, p.len())).collect();
    assert_eq!(
        kinds,
        vec![(GSO_TCPV4, 52 + 200), (GSO_NONE, 152), (GSO_NONE, 152), (GSO_NONE, 152), (GSO_NONE, 52), (GSO_NONE, 28)]
    );
    assert_eq!(out[1].1, gap, "a lone segment is written unchanged");
    assert_eq!(out[2].1, bad, "a corrupt segment reaches the host, which drops it");
    assert_eq!(out[3].1, syn);
    assert!(out[1..].iter().all(|(h, _)| *h == VnetHdr::default()));
}

#[test]
fn gro_flushes_on_header_changes_and_short_segments() {
    let d = payload(100);
    let other_ack = ip4(3).tcp(&Tcp { ack: 0x1334_5678, ..seg4(200, TCP_ACK) }, &d);
    let short = tcp4(100, 2, TCP_ACK, &payload(50));
    let after_short = tcp4(150, 3, TCP_ACK, &d);
    let out = run_gro(&[tcp4(0, 1, TCP_ACK, &d), short, after_short, other_ack]);
    let lens: Vec<usize> = out.iter().map(|(_, p)| p.len()).collect();
    // [0, short] merge (a shorter segment may end a super-packet), then nothing may follow it.
    assert_eq!(lens, vec![52 + 150, 152, 152]);
    // Non-DF packets need incrementing IDs.
    let x = Ipv4 { dont_fragment: false, ..ip4(9) }.tcp(&seg4(0, TCP_ACK), &d);
    let y = Ipv4 { dont_fragment: false, ..ip4(20) }.tcp(&seg4(100, TCP_ACK), &d);
    assert_eq!(run_gro(&[x, y]).len(), 2);
}

#[test]
fn gro_caps_at_64k() {
    let segs: Vec<Vec<u8>> = (0..60).map(|i| tcp4(1400 * i, i as u16, TCP_ACK, &payload(1400))).collect();
    let out = run_gro(&segs);
    assert!(out.len() >= 2);
    assert!(out.iter().all(|(_, p)| p.len() <= 65_535));
    let total: usize = out.iter().map(|(_, p)| p.len() - 52).sum();
    assert_eq!(total, 60 * 1400);
}

#[test]
fn gro_never_panics_on_truncations() {
    let p = tcp4(0, 1, TCP_ACK | TCP_PSH, &payload(300));
    let mut gro = Gro::new();
    let mut n = 0;
    for cut in 0..p.len() {
        gro.push(&p[..cut], &mut |_: &[u8], _: &[u8]| n += 1);
    }
    gro.flush(&mut |_: &[u8], _: &[u8]| n += 1);
    assert_eq!(n, p.len(), "each input written exactly once");
}

/// An IPv4/UDP datagram 10.1.0.10:33333 -> 10.2.0.10:5201, TTL 63, checksums correct.
fn udp4(id: u16, df: bool, payload: &[u8]) -> Vec<u8> {
    let ip =
        Ipv4 { id, dont_fragment: df, ttl: 63, ..Ipv4::new(Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 2, 0, 10)) };
    ip.udp(33333, 5201, payload)
}

/// What the kernel does with a UDP_L4 GSO packet, written independently of the
/// segmenter: cut the payload into `gso_size` pieces and send each as a datagram of its
/// own, with the super-packet's header fields and the IPv4 ID counting up.
fn udp_resegment(h: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
    let hl = usize::from(h.hdr_len);
    let ip = Ipv4::of(p).unwrap();
    let (sport, dport) = (u16::from_be_bytes([p[hl - 8], p[hl - 7]]), u16::from_be_bytes([p[hl - 6], p[hl - 5]]));
    p[hl..]
        .chunks(usize::from(h.gso_size))
        .enumerate()
        .map(|(i, chunk)| Ipv4 { id: ip.id.wrapping_add(i as u16), ..ip.clone() }.udp(sport, dport, chunk))
        .collect()
}

#[test]
fn gro_coalesces_udp_datagrams_keeping_boundaries() {
    let mut dgrams: Vec<Vec<u8>> = (0..5).map(|i| udp4(100 + i, true, &payload(300))).collect();
    dgrams.push(udp4(105, true, &payload(100)));
    let out = run_gro(&dgrams);
    assert_eq!(out.len(), 1);
    let (h, p) = &out[0];
    assert_eq!(
        *h,
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 28,
            gso_size: 300,
            csum_start: 20,
            csum_offset: 6
        }
    );
    assert_eq!(p.len(), 28 + 5 * 300 + 100);
    assert!(packet::ipv4_header_checksum_ok(p));
    let udp_len = u16::from_be_bytes([p[24], p[25]]);
    assert_eq!(usize::from(udp_len), p.len() - 20);
    assert_eq!(u16::from_be_bytes([p[26], p[27]]), fold(sum(&p[12..20], 17 + u64::from(udp_len))));
    assert_eq!(udp_resegment(h, p), dgrams, "split again: the same datagrams, checksums included");
}

#[test]
fn gro_udp_limits() {
    // A zero checksum (none) cannot be verified: passes through.
    let mut none = udp4(1, true, &payload(50));
    none[26..28].copy_from_slice(&[0, 0]);
    // A bigger datagram cannot join a run of smaller ones; no more than 64 per packet.
    let small = udp4(2, true, &payload(50));
    let big = udp4(3, true, &payload(60));
    let out = run_gro(&[none.clone(), small, big]);
    assert_eq!(out.iter().map(|(h, p)| (h.gso_type, p.len())).collect::<Vec<_>>(), vec![(0, 78), (0, 78), (0, 88)]);
    assert_eq!(out[0].1, none);
    let many: Vec<Vec<u8>> = (0..70).map(|i| udp4(i, true, &payload(40))).collect();
    let out = run_gro(&many);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1.len(), 28 + 64 * 40);
    assert_eq!(udp_resegment(&out[0].0, &out[0].1), many[..64].to_vec());
    // Without DF the IDs must increase one by one.
    let out = run_gro(&[udp4(7, false, &payload(40)), udp4(9, false, &payload(40))]);
    assert_eq!(out.len(), 2);
}

#[test]
fn uso_super_packets_split_into_the_original_datagrams() {
    let mut dgrams: Vec<Vec<u8>> = (0..7).map(|i| udp4(500 + i, true, &payload(1300))).collect();
    dgrams.push(udp4(507, true, &payload(17)));
    let out = run_gro(&dgrams);
    assert_eq!(out.len(), 1);
    let (h, p) = &out[0];
    let segs = collect_segments(h, p).unwrap();
    assert_eq!(segs, dgrams, "segment() undoes GRO exactly, checksums included");
    assert_eq!(segs, udp_resegment(h, p), "and agrees with the independent resegmenter");
}

#[test]
fn uso_rejects_inconsistent_input() {
    let dgrams: Vec<Vec<u8>> = (0..3).map(|i| udp4(i, true, &payload(100))).collect();
    let (h, p) = run_gro(&dgrams).remove(0);
    // Zero segment size, a TCP packet announced as UDP, a wrong csum_start, truncations.
    assert_eq!(collect_segments(&VnetHdr { gso_size: 0, ..h }, &p), Err(OffloadError::Malformed));
    let tcp = tcp4(1, 1, TCP_ACK, &payload(300));
    assert_eq!(collect_segments(&h, &tcp), Err(OffloadError::Unsupported));
    assert_eq!(collect_segments(&VnetHdr { csum_start: 24, ..h }, &p), Err(OffloadError::Unsupported));
    for cut in 0..p.len() {
        assert!(collect_segments(&h, &p[..cut]).is_err(), "truncated at {cut}");
    }
}

#[test]
fn tso_v4_with_ip_options_gets_valid_header_checksums() {
    // IPv4 options (8 bytes: seven NOPs and an end of list) widen the header
    // to IHL 7: each segment's header checksum, updated from the first one's, must hold.
    let data = payload(3 * 700 + 11);
    let sup = Ipv4 { options: vec![1, 1, 1, 1, 1, 1, 1, 0], ..ip4(0xfffd) }.tcp(&seg4(7, TCP_ACK), &data);
    let hdr = VnetHdr { hdr_len: 60, csum_start: 28, ..gso4(700) };
    let segs = collect_segments(&hdr, &sup).unwrap();
    assert_eq!(segs.len(), 4);
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s[0], 0x47, "IHL kept");
        assert_eq!(u16::from_be_bytes([s[4], s[5]]), 0xfffd_u16.wrapping_add(i as u16), "ID wraps");
        assert!(packet::ipv4_header_checksum_ok(s), "IPv4 header checksum of segment {i}");
        assert!(packet::transport_checksum_ok(s), "TCP checksum of segment {i}");
    }
    // A header length under 20 bytes has no base to update from (and no panic).
    for ihl in 0..5u8 {
        assert_eq!(ipv4_header_base(&[0x40 | ihl; 60]), None, "IHL {ihl}");
    }
}
