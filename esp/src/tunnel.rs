//! Tunnel-mode ESP (RFC 4303) on caller buffers: [`SaTable::seal`] (inner packet from
//! TUN -> ESP packet) and [`SaTable::open`] (ESP packet -> inner packet for TUN).
//!
//! Packet layout: SPI(4) | seq(4) | IV(8 AEAD, 16 CBC) | encrypted { inner | pad 1,2,3..
//! | pad len | next header } | ICV(16 AEAD, 12..32 HMAC); the encrypted part is a
//! multiple of 4 (AEAD) or 16 (AES-CBC) bytes. See `cipher` for IVs and ICVs. Owns: the ESP header and trailer, outbound SA selection, the
//! inbound order of checks (SPI, replay check, ICV, replay commit, trailer, selectors),
//! and the counting of every drop, and the volume limits (inner bytes and packets per SA,
//! counted on seal and on delivery; see `SaTable::account`). Does not own: key handling
//! (`cipher`), the window (`replay`), the table (`table`). Nothing here allocates.

use crate::cipher::OpenError;
use crate::packet::{parse_inner, Inner};
use crate::table::{seq_limit, seq_soft, Entry, SaTable, RAISED_HARD, RAISED_SOFT};
use crate::{DropReason, Opened, Sealed};
use ipsec_types::{DatapathEvent, Direction, ExpiryReason, Timestamp, TrafficSelector};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

fn ts_any(list: &[TrafficSelector], ip: IpAddr, proto: u8, port: Option<u16>) -> bool {
    list.iter().any(|ts| ts.matches(ip, proto, port))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

impl SaTable {
    /// The newest active outbound SA whose selectors match: only the SAs the index
    /// lists for the destination address are checked.
    fn select_outbound(&self, i: &Inner) -> Option<&Entry> {
        self.out_index.candidates(i.dst).iter().filter_map(|&k| self.outbound.get(k as usize)).find(|e| {
            e.active
                && ts_any(&e.local_ts, i.src, i.proto, i.src_port)
                && ts_any(&e.remote_ts, i.dst, i.proto, i.dst_port)
        })
    }

    fn drop_global(&self, reason: DropReason) -> DropReason {
        let c = match reason {
            DropReason::UnknownSpi => &self.shared.unknown_spi,
            DropReason::NoSa => &self.shared.no_sa,
            _ => &self.shared.malformed,
        };
        c.fetch_add(1, Relaxed);
        reason
    }

    /// Encrypts one inner IP packet read from TUN into `out`.
    /// `out` must have room for the packet plus [`crate::MAX_OVERHEAD`] bytes (a
    /// shorter `out` drops the packet as `Malformed`).
    ///
    /// The SA is the newest active outbound SA whose local selectors contain the
    /// inner source and whose remote selectors contain the inner destination.
    pub fn seal<'o>(&self, now: Timestamp, inner: &[u8], out: &'o mut [u8]) -> Sealed<'o> {
        let _ = now;
        let Some(info) = parse_inner(inner) else {
            return Sealed::Drop(self.drop_global(DropReason::Malformed));
        };
        let Some(e) = self.select_outbound(&info) else {
            return Sealed::Drop(self.drop_global(DropReason::NoSa));
        };
        let core = &*e.core;
        let l = core.layout;
        let n = info.len;
        // `align` is a power of two (4 or 16): the padding that brings n + 2 to a multiple.
        let pad = (n + 2).wrapping_neg() & (l.align - 1);
        let ct_len = n + pad + 2;
        let hdr_len = l.header_len();
        let total = hdr_len + ct_len + l.icv_len;
        let (Some(ip), Some(out)) = (inner.get(..n), out.get_mut(..total)) else {
            return Sealed::Drop(self.drop_global(DropReason::Malformed));
        };
        if let Err(r) = self.account(e, Direction::Outbound, n as u64) {
            return Sealed::Drop(r);
        }
        let seq = core.next_seq.fetch_add(1, Relaxed);
        let limit = seq_limit(core.esn);
        if seq > limit || seq == 0 {
            // Pull the counter back so refused attempts can never wrap it.
            core.next_seq.store(limit + 1, Relaxed);
            unaccount(e, n as u64);
            core.counters.expired.fetch_add(1, Relaxed);
            return Sealed::Drop(DropReason::Expired);
        }
        if seq == seq_soft(core.esn) || seq == limit {
            self.shared.push_event(DatapathEvent::Expired {
                tunnel: e.child.tunnel.clone(),
                spi: e.spi,
                direction: Direction::Outbound,
                hard: seq == limit,
                reason: ExpiryReason::SeqExhausted,
            });
        }
        let (hdr, rest) = out.split_at_mut(hdr_len);
        let body = &mut rest[..ct_len];
        hdr[..4].copy_from_slice(&e.spi.0.to_be_bytes());
        hdr[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        let (data, trailer) = body.split_at_mut(n);
        data.copy_from_slice(ip);
        // RFC 4303 section 2.4: padding bytes 1, 2, 3, ..., then pad length, next header.
        for (i, b) in trailer.iter_mut().take(pad).enumerate() {
            *b = i as u8 + 1;
        }
        if let [.., pl, nh] = trailer {
            *pl = pad as u8;
            *nh = info.next_header;
        }
        if core.cipher.seal(e.spi.0, seq, core.esn, out).is_err() {
            unaccount(e, n as u64);
            return Sealed::Drop(self.drop_global(DropReason::Malformed));
        }
        Sealed::Send { to: e.endpoints, packet: out }
    }

    /// Decrypts one ESP packet (SPI onwards) into `out` (at least `esp.len()` bytes).
    ///
    /// Order: SPI lookup, lengths, replay check, ICV verification (before any
    /// decryption with AES-CBC; inside the AEAD otherwise), replay commit, trailer and
    /// inner header validation, inbound selector check. Every drop is counted: per SA
    /// (replay, ICV, selectors) or globally (malformed, unknown SPI).
    pub fn open<'o>(&self, now: Timestamp, esp: &[u8], out: &'o mut [u8]) -> Opened<'o> {
        let _ = now;
        let Some(spi) = be32(esp, 0) else {
            return Opened::Drop(self.drop_global(DropReason::Malformed));
        };
        let Some(e) = self.inbound.get(&spi) else {
            return Opened::Drop(self.drop_global(DropReason::UnknownSpi));
        };
        let core = &*e.core;
        let l = core.layout;
        let ct_len = esp.len().saturating_sub(l.header_len() + l.icv_len);
        if ct_len < l.min_ct_len() || ct_len & (l.block - 1) != 0 || out.len() < ct_len {
            return Opened::Drop(self.drop_global(DropReason::Malformed));
        }
        let Some(seq_lo) = be32(esp, 4) else {
            return Opened::Drop(self.drop_global(DropReason::Malformed));
        };
        let c = &core.counters;
        let seq = if core.esn { core.window.infer_esn(seq_lo) } else { u64::from(seq_lo) };
        if core.window.check(seq).is_err() {
            c.replay.fetch_add(1, Relaxed);
            return Opened::Drop(DropReason::Replay);
        }
        let pt = match core.cipher.open(spi, seq, core.esn, esp, out) {
            Ok(pt) => pt,
            Err(OpenError::Auth) => {
                c.auth_failed.fetch_add(1, Relaxed);
                return Opened::Drop(DropReason::AuthFailed);
            }
            Err(OpenError::Malformed) => return Opened::Drop(self.drop_global(DropReason::Malformed)),
        };
        if core.window.commit(seq).is_err() {
            c.replay.fetch_add(1, Relaxed);
            return Opened::Drop(DropReason::Replay);
        }
        let pt: &'o [u8] = pt;
        let Some(inner) = strip_trailer(pt) else {
            return Opened::Drop(self.drop_global(DropReason::Malformed));
        };
        if !ts_any(&e.remote_ts, inner.src, inner.proto, inner.src_port)
            || !ts_any(&e.local_ts, inner.dst, inner.proto, inner.dst_port)
        {
            c.selector_mismatch.fetch_add(1, Relaxed);
            return Opened::Drop(DropReason::SelectorMismatch);
        }
        let Some(packet) = pt.get(..inner.len) else {
            return Opened::Drop(self.drop_global(DropReason::Malformed));
        };
        if let Err(r) = self.account(e, Direction::Inbound, inner.len as u64) {
            return Opened::Drop(r);
        }
        Opened::Deliver { packet, spi: e.spi }
    }

    /// Counts one packet of `n` inner bytes on `e` (two relaxed atomics) and checks the
    /// volume limits with the counts before and after it. A packet is refused (and
    /// its count undone) once a hard limit has been reached by earlier packets; the
    /// packet that reaches a limit still passes and raises the event (once per SA).
    #[inline]
    fn account(&self, e: &Entry, direction: Direction, n: u64) -> Result<(), DropReason> {
        let c = &e.core.counters;
        let l = &e.limits;
        let p0 = c.packets.fetch_add(1, Relaxed);
        let b0 = c.bytes.fetch_add(n, Relaxed);
        if p0 >= l.hard_packets || b0 >= l.hard_bytes {
            unaccount(e, n);
            c.expired.fetch_add(1, Relaxed);
            return Err(DropReason::Expired);
        }
        let (p1, b1) = (p0.saturating_add(1), b0.saturating_add(n));
        let reached = |before: u64, after: u64, limit: u64| before < limit && after >= limit;
        if reached(p0, p1, l.soft_packets)
            || reached(b0, b1, l.soft_bytes)
            || reached(p0, p1, l.hard_packets)
            || reached(b0, b1, l.hard_bytes)
        {
            self.limit_reached(e, direction, (p0, p1), (b0, b1));
        }
        Ok(())
    }

    /// The cold half of [`Self::account`]: raises the soft and/or hard event whose
    /// limit this packet reached, unless already raised for this SA.
    #[cold]
    fn limit_reached(&self, e: &Entry, direction: Direction, packets: (u64, u64), bytes: (u64, u64)) {
        let l = &e.limits;
        let reached = |(before, after): (u64, u64), limit: u64| before < limit && after >= limit;
        let which = |p_limit: u64, b_limit: u64| {
            if reached(packets, p_limit) {
                Some(ExpiryReason::Packets)
            } else if reached(bytes, b_limit) {
                Some(ExpiryReason::Bytes)
            } else {
                None
            }
        };
        for (hard, flag, reason) in [
            (false, RAISED_SOFT, which(l.soft_packets, l.soft_bytes)),
            (true, RAISED_HARD, which(l.hard_packets, l.hard_bytes)),
        ] {
            let Some(reason) = reason else { continue };
            if e.core.raised.fetch_or(flag, Relaxed) & flag == 0 {
                self.shared.push_event(DatapathEvent::Expired {
                    tunnel: e.child.tunnel.clone(),
                    spi: e.spi,
                    direction,
                    hard,
                    reason,
                });
            }
        }
    }
}

/// Takes back the count of a packet that was not sent or delivered after all.
fn unaccount(e: &Entry, n: u64) {
    let c = &e.core.counters;
    c.packets.fetch_sub(1, Relaxed);
    c.bytes.fetch_sub(n, Relaxed);
}

/// Checks the decrypted trailer (padding 1, 2, 3.., pad length, next header 4 or 41)
/// and parses the inner header, whose length may be shorter than the payload (the rest
/// is TFC padding, RFC 4303 section 2.4).
fn strip_trailer(pt: &[u8]) -> Option<Inner> {
    let [rest @ .., pad_len, nh] = pt else { return None };
    let data_len = rest.len().checked_sub(usize::from(*pad_len))?;
    let (data, pad) = rest.split_at(data_len);
    if !pad.iter().enumerate().all(|(i, b)| usize::from(*b) == i + 1) {
        return None;
    }
    let inner = parse_inner(data)?;
    (inner.next_header == *nh).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipsec_types::{ChildRef, DatapathCommand, EncrAlg, EspKey, SaEndpoints, SaParams, Spi, TrafficSelector};

    fn table(esn: bool) -> SaTable {
        let any4 = TrafficSelector::parse_cidr("0.0.0.0/0").unwrap();
        let p = SaParams {
            spi: Spi(0x42),
            direction: Direction::Outbound,
            child: ChildRef { tunnel: "t".into(), child_id: 1 },
            endpoints: SaEndpoints {
                local: "192.0.2.1".parse().unwrap(),
                remote: "192.0.2.2".parse().unwrap(),
                encap: None,
            },
            key: EspKey::from_keymat(EncrAlg::AesGcm16_128, None, &[1u8; 20]).unwrap(),
            replay_window: 1024,
            esn,
            local_ts: vec![any4],
            remote_ts: vec![any4],
            limits: Default::default(),
        };
        SaTable::new().apply(&DatapathCommand::InstallOutbound(p)).unwrap()
    }

    /// A 20-byte IPv4 packet: a header and nothing after it.
    fn packet() -> Vec<u8> {
        let (a, b) = (std::net::Ipv4Addr::new(10, 1, 0, 1), std::net::Ipv4Addr::new(10, 2, 0, 1));
        testkit::packet::Ipv4::new(a, b).raw(0, &[])
    }

    fn seal_seq(t: &SaTable) -> Result<u64, DropReason> {
        let mut out = [0u8; 64];
        match t.seal(Timestamp::ZERO, &packet(), &mut out) {
            Sealed::Send { packet, .. } => Ok(u64::from(be32(packet, 4).unwrap_or(0))),
            Sealed::Drop(r) => Err(r),
        }
    }

    fn expired(hard: bool) -> DatapathEvent {
        DatapathEvent::Expired {
            tunnel: "t".into(),
            spi: Spi(0x42),
            direction: Direction::Outbound,
            hard,
            reason: ExpiryReason::SeqExhausted,
        }
    }

    #[test]
    fn soft_expiry_once_at_threshold() {
        let t = table(false);
        let soft = seq_soft(false);
        assert_eq!(soft, 0xc000_0000);
        t.outbound[0].core.next_seq.store(soft - 1, Relaxed);
        assert_eq!(seal_seq(&t), Ok(soft - 1));
        assert!(t.drain_events().is_empty());
        assert_eq!(seal_seq(&t), Ok(soft));
        assert_eq!(seal_seq(&t), Ok(soft + 1));
        assert_eq!(t.drain_events(), vec![expired(false)]);
        assert!(t.drain_events().is_empty());
    }

    #[test]
    fn sequence_never_wraps_without_esn() {
        let t = table(false);
        t.outbound[0].core.next_seq.store(u64::from(u32::MAX) - 1, Relaxed);
        assert_eq!(seal_seq(&t), Ok(u64::from(u32::MAX) - 1));
        // 2^32 - 1 is the last number sent; the hard event comes with it.
        assert_eq!(seal_seq(&t), Ok(u64::from(u32::MAX)));
        assert_eq!(t.drain_events(), vec![expired(true)]);
        for _ in 0..3 {
            assert_eq!(seal_seq(&t), Err(DropReason::Expired));
        }
        assert!(t.drain_events().is_empty(), "hard event raised once");
        assert_eq!(t.stats()[0].counters.seq, u64::from(u32::MAX));
        assert_eq!(t.stats()[0].counters.packets, 2);
        assert_eq!(t.stats()[0].counters.expired, 3, "refusals are counted, not sent");
        // The counter is held just past the limit.
        assert_eq!(t.outbound[0].core.next_seq.load(Relaxed), u64::from(u32::MAX) + 1);
    }

    #[test]
    fn esn_continues_past_2_pow_32_and_stops_at_its_limit() {
        let t = table(true);
        t.outbound[0].core.next_seq.store(u64::from(u32::MAX), Relaxed);
        assert_eq!(seal_seq(&t), Ok(u64::from(u32::MAX)));
        assert_eq!(seal_seq(&t), Ok(0), "low half wraps, high half carries on");
        assert_eq!(t.stats()[0].counters.seq, 1 << 32);
        let limit = seq_limit(true);
        t.outbound[0].core.next_seq.store(limit, Relaxed);
        assert_eq!(seal_seq(&t), Ok(limit & 0xffff_ffff));
        assert_eq!(seal_seq(&t), Err(DropReason::Expired));
        assert_eq!(t.drain_events(), vec![expired(true)]);
    }
}
