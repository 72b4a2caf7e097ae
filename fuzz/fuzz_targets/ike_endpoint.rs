//! Arbitrary datagrams into an IKE responder that has an established IKE SA.
//!
//! The first input byte picks the port (500 or 4500) and whether the first 16 bytes
//! are overwritten with the real IKE SPIs (so the message reaches the SA's decryption
//! and exchange handling instead of only the SPI lookup).
//!
//! Invariants checked: never a panic; unauthenticated garbage never tears down the
//! established IKE SA (no `IkeDown` event, no datapath `Remove`); and handling one
//! datagram (with the timers and outputs it causes) allocates at most `16 * len + 64 KiB`
//! (on this thread, every allocation summed): parsing costs at most `8 * len + 8 KiB`
//! (`ike/tests/parse_alloc.rs`), the rest is what one new half-open IKE SA and its
//! response cost (about 9 KiB seen for a 200-byte IKE_SA_INIT).
#![no_main]

use ike::testing::Pair;
use ike::{Event, Output};
use ipsec_types::DatapathCommand;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut pair = Pair::standard();
    pair.run();
    let Some(sa) = pair.b.status().into_iter().next() else { return };
    let mut msg = rest.to_vec();
    if mode & 2 != 0 && msg.len() >= 16 {
        msg[..8].copy_from_slice(&sa.spi_i.to_be_bytes());
        msg[8..16].copy_from_slice(&sa.spi_r.to_be_bytes());
    }
    let port = if mode & 1 == 0 { 500 } else { 4500 };
    let local = SocketAddr::new(pair.b_addr, port);
    let remote = SocketAddr::new(pair.a_addr, port);
    let now = pair.now + std::time::Duration::from_millis(10);
    let mut outs = Vec::new();
    let cost = allocation_counter::measure(|| {
        pair.b.handle_datagram(now, local, remote, &msg);
        pair.b.handle_timeout(now);
        while let Some(out) = pair.b.poll_output() {
            outs.push(out);
        }
    });
    assert!(
        cost.bytes_total <= 16 * msg.len() as u64 + 64 * 1024,
        "a {}-byte datagram cost {} bytes of allocation",
        msg.len(),
        cost.bytes_total
    );
    for out in outs {
        match out {
            Output::Event(Event::IkeDown { .. }) => panic!("garbage tore down the IKE SA"),
            Output::Datapath(DatapathCommand::Remove { .. }) => panic!("garbage removed an SA"),
            _ => {}
        }
    }
});
