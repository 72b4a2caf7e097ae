//! Arbitrary bytes into the IKE message parser exactly as the endpoint runs it
//! (`Message::parse`, then `Message::decrypt` with the IKE SA's key), through
//! `ike::testing`'s probes. Unlike `ike_endpoint`, which can never forge an ICV, this
//! reaches the payload chain inside the SK payload with arbitrary plaintext.
//!
//! The first input byte picks the mode:
//! - even: the rest is a datagram, parsed and (if it has an SK payload) decrypted with a
//!   fixed key, which fails at the ICV unless the input was sealed with it;
//! - odd: the next byte is the inner first payload type, the rest the plaintext payload
//!   chain, sealed with the fixed key into an IKE_AUTH (bit 1 clear) or INFORMATIONAL
//!   (bit 1 set) request, which is then parsed and decrypted.
//!
//! Invariants checked: never a panic, and the bytes allocated (on this thread, every
//! allocation summed) stay within `8 * len + 8 KiB` of the datagram's length, the bound
//! `ike/tests/parse_alloc.rs` proves by property. A count trusted over the bytes present
//! (the Delete bomb: a count of SPIs the bytes do not carry) breaks it at once.
#![no_main]

use ike::crypto::SkCipher;
use ike::testing::{decrypt_cost_probe, parse_cost_probe, seal_probe};
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

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        check(rest, false);
        check(rest, true);
        return;
    }
    let Some((&first, chain)) = rest.split_first() else { return };
    let datagram = seal_probe(mode & 2 == 0, first, chain, cipher());
    check(&datagram, true);
});
