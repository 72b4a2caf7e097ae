use super::*;

/// RFC 1071 checksum, written independently of `sum`/`fold`: 16-bit words, end-around carry.
fn rfc1071(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut acc: u32 = 0;
    for pair in bytes.chunks(2) {
        let w = (u32::from(pair[0]) << 8) | u32::from(*pair.get(1).unwrap_or(&0));
        acc += w;
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn tcp_ok(pkt: &[u8]) -> bool {
    let v4 = pkt[0] >> 4 == 4;
    let thoff = if v4 { usize::from(pkt[0] & 15) * 4 } else { 40 };
    let tcp = &pkt[thoff..];
    let len = (tcp.len() as u32).to_be_bytes();
    let pseudo: Vec<u8> =
        if v4 { [&pkt[12..20], &[0, 6], &len[2..]].concat() } else { [&pkt[8..40], &len[..], &[0, 0, 0, 6]].concat() };
    rfc1071(&[&pseudo, tcp]) == 0
}

fn ip_ok(pkt: &[u8]) -> bool {
    rfc1071(&[&pkt[..20]]) == 0
}

/// An IPv4/TCP packet with a timestamp option, DF, the given flags and payload; the
/// TCP checksum left as `csum` (the caller decides: full, partial or garbage).
fn tcp4(seq: u32, id: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 32];
    p[0] = 0x45;
    p[1] = 0x02; // ECT(0)
    let total = (p.len() + payload.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 1, 0, 10]);
    p[16..20].copy_from_slice(&[10, 2, 0, 10]);
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&5201u16.to_be_bytes());
    t[2..4].copy_from_slice(&40000u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    t[12] = 8 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p.extend_from_slice(payload);
    let mut q = p.clone();
    tcp_checksum(&mut q, 20).unwrap();
    ipv4_header_checksum(&mut q).unwrap();
    q
}

fn tcp6(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 20];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[6] = 6;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = 1;
    p[24] = 0xfd;
    p[39] = 2;
    let t = &mut p[40..];
    t[0..2].copy_from_slice(&443u16.to_be_bytes());
    t[2..4].copy_from_slice(&5555u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&1000u16.to_be_bytes());
    p.extend_from_slice(payload);
    tcp_checksum(&mut p, 40).unwrap();
    p
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
        assert_eq!(!fold(sum(&d, 0)), rfc1071(&[&d]), "length {n}");
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
        assert!(ip_ok(s), "IPv4 header checksum of segment {i}");
        assert!(tcp_ok(s), "TCP checksum of segment {i}");
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
        assert!(tcp_ok(s));
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
    // IPv4/UDP 10.1.0.10:1000 -> 10.2.0.10:2000 with the pseudo-header sum in the field.
    let data = payload(333);
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 1, 0, 10]);
    p[16..20].copy_from_slice(&[10, 2, 0, 10]);
    p[20..22].copy_from_slice(&1000u16.to_be_bytes());
    p[22..24].copy_from_slice(&2000u16.to_be_bytes());
    let ulen = (8 + data.len()) as u16;
    p[24..26].copy_from_slice(&ulen.to_be_bytes());
    p.extend_from_slice(&data);
    let pseudo = fold(sum(&p[12..20], 17 + u64::from(ulen)));
    p[26..28].copy_from_slice(&pseudo.to_be_bytes());
    let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 20, csum_offset: 6, ..VnetHdr::default() };
    complete_checksum(&h, &mut p).unwrap();
    let pseudo_hdr = [&p[12..20], &[0, 17], &ulen.to_be_bytes()[..]].concat();
    assert_eq!(rfc1071(&[&pseudo_hdr, &p[20..]]), 0);
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
    assert!(ip_ok(p));
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
    let mut udp = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 2, 0, 1];
    udp.extend_from_slice(&[0; 8]);
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
    let mut other_ack = tcp4(200, 3, TCP_ACK, &d);
    other_ack[28] ^= 1; // ack number
    tcp_checksum(&mut other_ack, 20).unwrap();
    let short = tcp4(100, 2, TCP_ACK, &payload(50));
    let after_short = tcp4(150, 3, TCP_ACK, &d);
    let out = run_gro(&[tcp4(0, 1, TCP_ACK, &d), short, after_short, other_ack]);
    let lens: Vec<usize> = out.iter().map(|(_, p)| p.len()).collect();
    // [0, short] merge (a shorter segment may end a super-packet), then nothing may follow it.
    assert_eq!(lens, vec![52 + 150, 152, 152]);
    // Non-DF packets need incrementing IDs.
    let mut x = tcp4(0, 9, TCP_ACK, &d);
    let mut y = tcp4(100, 20, TCP_ACK, &d);
    for p in [&mut x, &mut y] {
        p[6] = 0;
        ipv4_header_checksum(p).unwrap();
    }
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

fn udp4(id: u16, df: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    let total = (28 + payload.len()) as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6] = if df { 0x40 } else { 0 };
    p[8] = 63;
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 1, 0, 10]);
    p[16..20].copy_from_slice(&[10, 2, 0, 10]);
    p[20..22].copy_from_slice(&33333u16.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(payload);
    let pseudo = [&p[12..20], &[0, 17], &p[24..26]].concat();
    let mut c = rfc1071(&[&pseudo, &p[20..]]);
    if c == 0 {
        c = 0xffff;
    }
    p[26..28].copy_from_slice(&c.to_be_bytes());
    ipv4_header_checksum(&mut p).unwrap();
    p
}

/// What the kernel does with a UDP_L4 GSO packet, written independently: cut the
/// payload into `gso_size` pieces, fix lengths and IDs, checksum each datagram in full.
fn udp_resegment(h: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
    let hl = usize::from(h.hdr_len);
    let id0 = u16::from_be_bytes([p[4], p[5]]);
    p[hl..]
        .chunks(usize::from(h.gso_size))
        .enumerate()
        .map(|(i, chunk)| {
            let mut s = [&p[..hl], chunk].concat();
            let total = s.len() as u16;
            s[2..4].copy_from_slice(&total.to_be_bytes());
            s[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            s[10..12].copy_from_slice(&[0, 0]);
            let ipc = rfc1071(&[&s[..20]]);
            s[10..12].copy_from_slice(&ipc.to_be_bytes());
            s[24..26].copy_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
            s[26..28].copy_from_slice(&[0, 0]);
            let pseudo = [&s[12..20], &[0, 17], &s[24..26]].concat();
            let mut c = rfc1071(&[&pseudo, &s[20..]]);
            if c == 0 {
                c = 0xffff;
            }
            s[26..28].copy_from_slice(&c.to_be_bytes());
            s
        })
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
    assert!(ip_ok(p));
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
