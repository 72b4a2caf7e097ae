//! What the IKE exchanges on the WAN looked like, read from the capture's plaintext IKE
//! headers (RFC 7296 section 3.1; the payloads are encrypted and not needed): how many
//! CREATE_CHILD_SA and INFORMATIONAL exchanges each gateway started, how many requests
//! were retransmitted, and how many CREATE_CHILD_SA exchanges collided (both peers had
//! one outstanding on the same IKE SA at once: a rekey collision).
//!
//! Owns: a small reader for classic pcap files (Ethernet or Linux cooked link types,
//! IPv4/UDP on ports 500 and 4500). Does not own: the capture (see [`crate::capture`]).

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::{Error, Result};

/// IKE exchange types.
pub const IKE_SA_INIT: u8 = 34;
/// IKE_AUTH.
pub const IKE_AUTH: u8 = 35;
/// CREATE_CHILD_SA (rekeys).
pub const CREATE_CHILD_SA: u8 = 36;
/// INFORMATIONAL (DELETE, DPD).
pub const INFORMATIONAL: u8 = 37;

/// One IKE message on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IkeMsg {
    /// Capture time, microseconds since the epoch.
    pub t_us: u64,
    /// Sender.
    pub src: Ipv4Addr,
    /// Initiator SPI of the IKE SA.
    pub spi_i: u64,
    /// Responder SPI.
    pub spi_r: u64,
    /// Exchange type.
    pub exchange: u8,
    /// A response (R flag).
    pub response: bool,
    /// Message ID.
    pub msg_id: u32,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// One IPv4 packet of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpFrame<'a> {
    /// Capture time, microseconds since the epoch.
    pub t_us: u64,
    /// The IPv4 packet (header first), as far as it was captured.
    pub ip: &'a [u8],
}

/// The IPv4 packet inside one captured frame (Ethernet or Linux cooked link type).
fn frame_to_ipv4(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    let (ethertype, ip_off) = match linktype {
        1 => (u16_at(frame, 12)?, 14),
        113 => (u16_at(frame, 14)?, 16),
        _ => return None,
    };
    if ethertype != 0x0800 {
        return None;
    }
    frame.get(ip_off..)
}

/// A UDP datagram in an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpView<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// The UDP payload (as far as it was captured).
    pub payload: &'a [u8],
}

/// The UDP datagram in an IPv4 packet, if it is one (and not a later fragment).
pub fn udp_in_ipv4(ip: &[u8]) -> Option<UdpView<'_>> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let fragment_offset = u16_at(ip, 6)? & 0x1fff;
    if *ip.get(9)? != 17 || ihl < 20 || fragment_offset != 0 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    Some(UdpView {
        src: Ipv4Addr::from(u32_at(ip, 12)?),
        dst: Ipv4Addr::from(u32_at(ip, 16)?),
        sport: u16_at(udp, 0)?,
        dport: u16_at(udp, 2)?,
        payload: udp.get(8..)?,
    })
}

/// The IKEv2 message (header first, non-ESP marker removed) in a UDP datagram on port
/// 500 or 4500, if it is one; anything on 4500 without the marker is ESP.
pub fn ike_in_udp<'a>(udp: &UdpView<'a>) -> Option<&'a [u8]> {
    ike_any_version_in_udp(udp).filter(|ike| ike[17] >> 4 == 2)
}

/// The IKEv1 (ISAKMP, major version 1) message in a UDP datagram on port 500 or 4500,
/// as [`ike_in_udp`] finds IKEv2's.
pub fn isakmp_in_udp<'a>(udp: &UdpView<'a>) -> Option<&'a [u8]> {
    ike_any_version_in_udp(udp).filter(|ike| ike[17] >> 4 == 1)
}

/// Every IKEv1 message in a classic pcap file: `(source address, message)`, in order.
pub fn read_isakmp(path: &Path) -> Result<Vec<(Ipv4Addr, Vec<u8>)>> {
    let mut out = Vec::new();
    for_each_udp(path, |u| out.extend(isakmp_in_udp(u).map(|m| (u.src, m.to_vec()))))?;
    Ok(out)
}

/// An IKE message of either version (at least a header's 28 bytes) in a UDP datagram.
fn ike_any_version_in_udp<'a>(udp: &UdpView<'a>) -> Option<&'a [u8]> {
    let ike = if udp.sport == 4500 || udp.dport == 4500 {
        if u32_at(udp.payload, 0)? != 0 {
            return None;
        }
        udp.payload.get(4..)?
    } else if udp.sport == 500 || udp.dport == 500 {
        udp.payload
    } else {
        return None;
    };
    (ike.len() >= 28).then_some(ike)
}

/// The IKE header of one IPv4 packet, if it carries IKE.
fn ip_to_ike(ip: &[u8], t_us: u64) -> Option<IkeMsg> {
    let udp = udp_in_ipv4(ip)?;
    let ike = ike_in_udp(&udp)?;
    let flags = *ike.get(19)?;
    Some(IkeMsg {
        t_us,
        src: udp.src,
        spi_i: u64_at(ike, 0)?,
        spi_r: u64_at(ike, 8)?,
        exchange: *ike.get(18)?,
        response: flags & 0x20 != 0,
        msg_id: u32_at(ike, 20)?,
    })
}

/// Notify message type COOKIE (RFC 7296 3.10.1).
pub const COOKIE: u16 = 16390;

/// True for a responder's COOKIE request: an IKE_SA_INIT response whose first payload is
/// a COOKIE notify (RFC 7296 2.6).
pub fn is_cookie_request(ike: &[u8]) -> bool {
    const NOTIFY: u8 = 41;
    let response = ike.get(19).is_some_and(|f| f & 0x20 != 0);
    response && ike.get(18) == Some(&IKE_SA_INIT) && ike.get(16) == Some(&NOTIFY) && u16_at(ike, 34) == Some(COOKIE)
}

/// How many COOKIE requests ([`is_cookie_request`]) `from` sent in a pcap file.
pub fn count_cookie_requests(path: &Path, from: Ipv4Addr) -> Result<usize> {
    let mut n = 0;
    for_each_udp(path, |u| {
        if u.src == from && ike_in_udp(u).is_some_and(is_cookie_request) {
            n += 1;
        }
    })?;
    Ok(n)
}

/// Calls `each` with every UDP datagram (first fragments and whole ones) of a classic
/// pcap file, in order.
fn for_each_udp(path: &Path, mut each: impl FnMut(&UdpView<'_>)) -> Result<()> {
    let data = std::fs::read(path).map_err(|e| Error::new(format!("reading {}: {e}", path.display())))?;
    let frames =
        pcap_ipv4(&data).ok_or_else(|| Error::new(format!("{} is not a classic pcap file", path.display())))?;
    frames.iter().filter_map(|f| udp_in_ipv4(f.ip)).for_each(|u| each(&u));
    Ok(())
}

/// Every IKE message in a classic pcap file (as `tcpdump -w` writes it).
pub fn read_ike(path: &Path) -> Result<Vec<IkeMsg>> {
    let data = std::fs::read(path).map_err(|e| Error::new(format!("reading {}: {e}", path.display())))?;
    parse_pcap(&data).ok_or_else(|| Error::new(format!("{} is not a classic pcap file", path.display())))
}

/// Parses a classic pcap image into its IKE messages; see [`pcap_ipv4`].
pub fn parse_pcap(data: &[u8]) -> Option<Vec<IkeMsg>> {
    Some(pcap_ipv4(data)?.into_iter().filter_map(|f| ip_to_ike(f.ip, f.t_us)).collect())
}

/// Every IPv4 packet of a classic pcap image (either byte order, micro- or nanosecond
/// stamps); a truncated last record ends the list.
pub fn pcap_ipv4(data: &[u8]) -> Option<Vec<IpFrame<'_>>> {
    let magic = data.get(..4)?;
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return None,
    };
    let rd = |i: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(i..i + 4)?.try_into().ok()?;
        Some(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    };
    let linktype = rd(20)?;
    let mut off = 24;
    let mut out = Vec::new();
    while let (Some(sec), Some(frac), Some(caplen)) = (rd(off), rd(off + 4), rd(off + 8)) {
        let start = off + 16;
        let Some(frame) = data.get(start..start + caplen as usize) else { break };
        let us = if nanos { u64::from(frac) / 1000 } else { u64::from(frac) };
        if let Some(ip) = frame_to_ipv4(linktype, frame) {
            out.push(IpFrame { t_us: u64::from(sec) * 1_000_000 + us, ip });
        }
        off = start + caplen as usize;
    }
    Some(out)
}

/// Exchange counts of one run, seen from the capture point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IkeWireStats {
    /// CREATE_CHILD_SA exchanges started by gateway A / B (first transmissions).
    pub create_child: (usize, usize),
    /// INFORMATIONAL exchanges started by A / B.
    pub informational: (usize, usize),
    /// IKE_SA_INIT exchanges started by A / B (new IKE SAs from scratch).
    pub ike_sa_init: (usize, usize),
    /// Requests sent again by A / B (same IKE SA, message ID and exchange).
    pub retransmits: (usize, usize),
    /// Pairs of CREATE_CHILD_SA exchanges started by both gateways on the same IKE SA
    /// and outstanding at the same time.
    pub collisions: usize,
}

impl fmt::Display for IkeWireStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IKE on the WAN: CREATE_CHILD_SA started by A {} / B {}, INFORMATIONAL A {} / B {}, IKE_SA_INIT A {} / \
             B {}, retransmitted requests A {} / B {}, collisions {}",
            self.create_child.0,
            self.create_child.1,
            self.informational.0,
            self.informational.1,
            self.ike_sa_init.0,
            self.ike_sa_init.1,
            self.retransmits.0,
            self.retransmits.1,
            self.collisions
        )
    }
}

/// Counts exchanges; `a` is gateway A's address (everything else counts as B).
pub fn analyze(msgs: &[IkeMsg], a: Ipv4Addr) -> IkeWireStats {
    let mut st = IkeWireStats::default();
    let side = |m: &IkeMsg| m.src == a;
    let bump = |pair: &mut (usize, usize), is_a: bool| {
        if is_a {
            pair.0 += 1;
        } else {
            pair.1 += 1;
        }
    };
    // Requests by (sender, IKE SA initiator SPI, message ID, exchange): first one counts.
    let mut seen = HashSet::new();
    // Outstanding CREATE_CHILD_SA requests: (from A?, spi_i, spi_r, msg_id, start, end).
    let mut creates: Vec<(bool, u64, u64, u32, u64, u64)> = Vec::new();
    for m in msgs.iter().filter(|m| !m.response) {
        let is_a = side(m);
        if !seen.insert((is_a, m.spi_i, m.msg_id, m.exchange)) {
            bump(&mut st.retransmits, is_a);
            continue;
        }
        match m.exchange {
            CREATE_CHILD_SA => {
                bump(&mut st.create_child, is_a);
                let end = msgs
                    .iter()
                    .find(|r| {
                        r.response
                            && side(r) != is_a
                            && r.spi_i == m.spi_i
                            && r.msg_id == m.msg_id
                            && r.exchange == m.exchange
                            && r.t_us >= m.t_us
                    })
                    .map_or(u64::MAX, |r| r.t_us);
                creates.push((is_a, m.spi_i, m.spi_r, m.msg_id, m.t_us, end));
            }
            INFORMATIONAL => bump(&mut st.informational, is_a),
            IKE_SA_INIT => bump(&mut st.ike_sa_init, is_a),
            _ => {}
        }
    }
    for x in creates.iter().filter(|c| c.0) {
        for y in creates.iter().filter(|c| !c.0) {
            let same_sa = x.1 == y.1 && x.2 == y.2;
            if same_sa && x.4 <= y.5 && y.4 <= x.5 {
                st.collisions += 1;
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn msg(t_us: u64, src: Ipv4Addr, exchange: u8, response: bool, msg_id: u32) -> IkeMsg {
        IkeMsg { t_us, src, spi_i: 1, spi_r: 2, exchange, response, msg_id }
    }

    /// An Ethernet/IPv4/UDP frame carrying an IKE header to port `port`.
    fn frame(src: Ipv4Addr, port: u16, exchange: u8, flags: u8, msg_id: u32) -> Vec<u8> {
        let mut ike = vec![0u8; 28];
        ike[..8].copy_from_slice(&7u64.to_be_bytes());
        ike[8..16].copy_from_slice(&9u64.to_be_bytes());
        ike[17] = 0x20;
        ike[18] = exchange;
        ike[19] = flags;
        ike[20..24].copy_from_slice(&msg_id.to_be_bytes());
        let mut payload = if port == 4500 { vec![0u8; 4] } else { Vec::new() };
        payload.extend_from_slice(&ike);
        testkit::packet::ethernet_ipv4(&testkit::packet::ipv4_udp(src, B, port, port, &payload))
    }

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&200u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        for (i, f) in frames.iter().enumerate() {
            p.extend_from_slice(&(100 + i as u32).to_le_bytes());
            p.extend_from_slice(&5u32.to_le_bytes());
            p.extend_from_slice(&(f.len() as u32).to_le_bytes());
            p.extend_from_slice(&(f.len() as u32).to_le_bytes());
            p.extend_from_slice(f);
        }
        p
    }

    #[test]
    fn reads_ike_headers_on_both_ports_and_skips_esp() {
        let mut esp = frame(A, 4500, 0, 0, 0);
        // Non-zero first word on 4500: ESP, not IKE.
        esp[42] = 1;
        let image = pcap(&[frame(A, 500, IKE_SA_INIT, 0x08, 0), esp, frame(B, 4500, CREATE_CHILD_SA, 0x20, 3)]);
        let msgs = parse_pcap(&image).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].src, msgs[0].exchange, msgs[0].response), (A, IKE_SA_INIT, false));
        assert_eq!((msgs[1].src, msgs[1].exchange, msgs[1].response, msgs[1].msg_id), (B, CREATE_CHILD_SA, true, 3));
        assert_eq!((msgs[1].spi_i, msgs[1].spi_r, msgs[1].t_us), (7, 9, 102_000_005));
        // Truncated images end the list; garbage is not a pcap.
        assert_eq!(parse_pcap(&image[..image.len() - 3]).unwrap().len(), 1);
        assert_eq!(parse_pcap(b"nope"), None);
    }

    #[test]
    fn finds_cookie_requests() {
        // IKE_SA_INIT response, first payload N(COOKIE).
        let mut ike = vec![0u8; 28];
        ike[16] = 41;
        ike[17] = 0x20;
        ike[18] = IKE_SA_INIT;
        ike[19] = 0x20;
        ike.extend_from_slice(&[0, 0, 0, 40, 0, 0]);
        ike.extend_from_slice(&COOKIE.to_be_bytes());
        ike.extend_from_slice(&[7; 32]);
        assert!(is_cookie_request(&ike));
        let mut request = ike.clone();
        request[19] = 0x08;
        assert!(!is_cookie_request(&request));
        let mut other = ike.clone();
        other[34..36].copy_from_slice(&16388u16.to_be_bytes());
        assert!(!is_cookie_request(&other));
        assert!(!is_cookie_request(&ike[..30]));
    }

    #[test]
    fn counts_exchanges_retransmits_and_collisions() {
        let msgs = [
            // A rekeys alone: request, retransmission, response.
            msg(0, A, CREATE_CHILD_SA, false, 1),
            msg(500, A, CREATE_CHILD_SA, false, 1),
            msg(600, B, CREATE_CHILD_SA, true, 1),
            // Both start before either answers: one collision.
            msg(1000, A, CREATE_CHILD_SA, false, 2),
            msg(1001, B, CREATE_CHILD_SA, false, 0),
            msg(1002, B, CREATE_CHILD_SA, true, 2),
            msg(1003, A, CREATE_CHILD_SA, true, 0),
            // B's DPD.
            msg(2000, B, INFORMATIONAL, false, 1),
            msg(2001, A, INFORMATIONAL, true, 1),
        ];
        let st = analyze(&msgs, A);
        assert_eq!(st.create_child, (2, 1));
        assert_eq!(st.retransmits, (1, 0));
        assert_eq!(st.informational, (0, 1));
        assert_eq!(st.collisions, 1);
        assert!(st.to_string().contains("collisions 1"));
    }
}
