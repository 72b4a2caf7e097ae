//! Arbitrary bytes into the IKEv1 (ISAKMP) message parser exactly as an IKEv1 SA runs
//! it (`v1::message::Message::parse`, then `decrypt` with the phase's AES-CBC key and
//! IV), through `ike::testing`'s IKEv1 probes. IKEv1 has no integrity check on the
//! encrypted body itself (only the HASH payloads inside it), so any ciphertext decrypts
//! and its plaintext chain is parsed: the probe key reaches the same code a forged
//! encrypted message would.
//!
//! The first input byte picks the mode:
//! - even: the rest is a datagram, parsed and (with the E flag) decrypted with the
//!   probe key;
//! - odd: the next byte is the first payload type of the encrypted body, the rest the
//!   plaintext payload chain, sealed with the probe key into a Quick Mode message
//!   (cut to fit 65,535 bytes), which is then parsed and decrypted.
//!
//! Invariants checked: never a panic, and the bytes allocated (on this thread, every
//! allocation summed) stay within `8 * len + 8 KiB` of the datagram's length, the bound
//! `ike/tests/v1_parse_alloc.rs` proves by property.
#![no_main]

use ike::testing::{v1_parse_cost_probe, v1_seal_probe};
use libfuzzer_sys::fuzz_target;

fn check(datagram: &[u8]) {
    let info = allocation_counter::measure(|| {
        let _ = v1_parse_cost_probe(datagram);
    });
    let bound = 8 * datagram.len() as u64 + 8192;
    assert!(info.bytes_total <= bound, "{} bytes allocated for a {}-byte datagram", info.bytes_total, datagram.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        check(rest);
        return;
    }
    let Some((&first, chain)) = rest.split_first() else { return };
    check(&v1_seal_probe(first, chain));
});
