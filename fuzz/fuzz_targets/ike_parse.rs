//! Arbitrary bytes into the IKE message parser exactly as the endpoint runs it
//! (`Message::parse`, then `Message::decrypt` with the IKE SA's key), through
//! `ike::testing`'s probes. Unlike `ike_endpoint`, which can never forge an ICV, this
//! reaches the payload chain inside the SK payload with arbitrary plaintext.
//!
//! The first input byte picks the mode:
//! - even: the rest is a datagram, parsed and (if it has an SK payload) decrypted with a
//!   fixed key, which fails at the ICV unless the input was sealed with it; it is also
//!   handed to IKE fragment reassembly (RFC 7383), which must check Fragment Number and
//!   Total Fragments and refuse it at the ICV without keeping anything;
//! - odd, bit 2 clear: the next byte is the inner first payload type, the rest the
//!   plaintext payload chain, sealed with the fixed key into an IKE_AUTH (bit 1 clear) or
//!   INFORMATIONAL (bit 1 set) request, which is then parsed and decrypted;
//! - odd, bit 2 set: the next byte is the inner first payload type, the one after it
//!   sets the fragment size (100 + 8 x byte octets), the rest is the plaintext payload
//!   chain, split into IKE fragments sealed with the fixed key; they are reassembled in
//!   the order the top three bits of the mode byte pick (in order, reversed, odd
//!   numbers first, each twice), and the reassembled chain parsed.
//!
//! Invariants checked: never a panic, and the bytes allocated (on this thread, every
//! allocation summed) stay within `8 * len + 8 KiB` of the datagram's length, the bound
//! `ike/tests/parse_alloc.rs` proves by property. A count trusted over the bytes present
//! (the Delete bomb: a count of SPIs the bytes do not carry) breaks it at once.
#![no_main]

use ike::crypto::SkCipher;
use ike::testing::{
    decrypt_cost_probe, fragment_probe, parse_cost_probe, seal_probe, ProbeResult, ReassemblyProbe, MAX_REASSEMBLED,
};
use ipsec_types::EncrAlg;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn bound(len: usize) -> u64 {
    8 * len as u64 + 8192
}

fn cipher() -> &'static SkCipher {
    static C: OnceLock<SkCipher> = OnceLock::new();
    C.get_or_init(|| SkCipher::new(EncrAlg::AesGcm16_256, None, &[0x5a; 36], &[]).expect("36 bytes of keymat"))
}

fn check(datagram: &[u8], decrypt: bool) {
    let c = cipher();
    let info = allocation_counter::measure(|| {
        let _ = if decrypt { decrypt_cost_probe(datagram, c) } else { parse_cost_probe(datagram) };
    });
    assert!(
        info.bytes_total <= bound(datagram.len()),
        "{} bytes allocated for a {}-byte datagram",
        info.bytes_total,
        datagram.len()
    );
}

/// Feeds the fragments (in the order `order` picks) to one reassembly; checks the bytes
/// allocated against the bound for all the datagrams together, that no more than
/// `MAX_REASSEMBLED` plaintext octets are ever held, and none once a message completes.
fn reassemble(frags: &[Vec<u8>], order: u8) {
    let c = cipher();
    let n = frags.len();
    let idx: Vec<usize> = match order % 4 {
        0 => (0..n).collect(),
        1 => (0..n).rev().collect(),
        2 => (0..n).step_by(2).chain((1..n).step_by(2)).collect(),
        _ => (0..n).flat_map(|i| [i, i]).collect(),
    };
    let total: usize = idx.iter().filter_map(|&i| frags.get(i)).map(Vec::len).sum();
    let mut r = ReassemblyProbe::default();
    let info = allocation_counter::measure(|| {
        for &i in &idx {
            let Some(f) = frags.get(i) else { continue };
            if let ProbeResult::Complete(_) = r.add(f, c) {
                // Nothing of the completed message stays (a later copy of one of its
                // fragments starts a reassembly of its own).
                assert_eq!(r.held_bytes(), 0, "a completed message leaves nothing held");
            }
            assert!(r.held_bytes() <= MAX_REASSEMBLED);
        }
    });
    assert!(info.bytes_total <= bound(total), "{} bytes allocated for {total} octets of fragments", info.bytes_total);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        check(rest, false);
        check(rest, true);
        let mut r = ReassemblyProbe::default();
        let got = r.add(rest, cipher());
        assert!(!matches!(got, ProbeResult::Held | ProbeResult::Complete(_)), "a forged fragment was kept: {got:?}");
        assert_eq!(r.held_bytes(), 0);
        return;
    }
    if mode & 4 != 0 {
        let Some((&first, rest)) = rest.split_first() else { return };
        let Some((&size, chain)) = rest.split_first() else { return };
        let frags = fragment_probe(first, chain, 100 + 8 * usize::from(size), cipher());
        reassemble(&frags, mode >> 5);
        return;
    }
    let Some((&first, chain)) = rest.split_first() else { return };
    let datagram = seal_probe(mode & 2 == 0, first, chain, cipher());
    check(&datagram, true);
});
