//! Arbitrary bytes into the TUN offload code of `gateway::datapath::offload`, which sees
//! packets the kernel hands over (super-packets with a `virtio_net_hdr`) and decrypted
//! inner packets from the peer (coalesced for TUN writes).
//!
//! The first input byte picks the mode:
//! - even: the next 10 bytes are a virtio header, the rest a packet for `segment` and
//!   `complete_checksum`;
//! - odd: the rest is a sequence of packets, each preceded by a 2-byte length, pushed
//!   through `Gro` and flushed.
//!
//! Invariants checked: never a panic; `segment` never emits more than the payload allows
//! or a segment longer than the scratch buffer; `Gro` hands every input packet on exactly
//! once (merged packets are counted by their segments) and never writes more bytes of
//! payload than it was given.
#![no_main]

use gateway::datapath::offload::{complete_checksum, segment, Gro, VnetHdr, GSO_NONE, VNET_HDR_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let Some(hdr) = VnetHdr::parse(rest) else { return };
        let mut pkt = rest[VNET_HDR_LEN..].to_vec();
        let mut scratch = vec![0u8; 70_000];
        let mut emitted = 0usize;
        let r = segment(&hdr, &pkt, &mut scratch, |seg| {
            assert!(seg.len() <= 70_000);
            emitted += 1;
        });
        if let Ok(n) = r {
            assert_eq!(n, emitted);
            assert!(n <= pkt.len().max(1), "{n} segments out of {} bytes", pkt.len());
        }
        if hdr.gso_type == GSO_NONE {
            let _ = complete_checksum(&hdr, &mut pkt);
        }
    } else {
        let mut gro = Gro::new();
        let mut packets = 0usize;
        let mut given = 0usize;
        let mut written = 0usize;
        let mut out = 0usize;
        let mut write = |h: &[u8], p: &[u8]| {
            let hdr = VnetHdr::parse(h).expect("Gro writes a full virtio header");
            written += if hdr.gso_type == GSO_NONE {
                1
            } else {
                let hl = usize::from(hdr.hdr_len);
                let size = usize::from(hdr.gso_size).max(1);
                p.len().saturating_sub(hl).div_ceil(size).max(1)
            };
            out += p.len();
        };
        let mut r = rest;
        while let [a, b, tail @ ..] = r {
            let n = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
            let (pkt, next) = tail.split_at(n);
            gro.push(pkt, &mut write);
            packets += 1;
            given += pkt.len();
            r = next;
        }
        gro.flush(&mut write);
        assert_eq!(written, packets, "every packet handed on exactly once");
        assert!(out <= given, "wrote {out} bytes from {given}");
    }
});
