//! NAT detection (RFC 7296 section 2.23): NAT_DETECTION_SOURCE_IP / _DESTINATION_IP
//! hashes, and faking a NAT to force UDP encapsulation.

use super::notifies;
use crate::message::payload::Notify;
use crate::message::Payload;
use crate::notify;
use crate::Rng;
use ring::digest;
use std::net::{IpAddr, SocketAddr};

/// SHA-1(SPIi | SPIr | IP | Port).
pub(crate) fn hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// Our two NAT-D notifies. With `fake`, the source hash is random so the peer believes
/// we are behind a NAT and encapsulates too (as strongSwan does for forced encap).
pub(crate) fn payloads(
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
    fake: bool,
    rng: &mut dyn Rng,
) -> [Payload; 2] {
    let src = if fake {
        let mut b = vec![0u8; 20];
        rng.fill(&mut b);
        b
    } else {
        hash(spi_i, spi_r, local)
    };
    [
        Payload::Notify(Notify::new(notify::NAT_DETECTION_SOURCE_IP, src)),
        Payload::Notify(Notify::new(notify::NAT_DETECTION_DESTINATION_IP, hash(spi_i, spi_r, remote))),
    ]
}

/// Whether the peer's NAT-D notifies reveal a NAT between us, as (peer behind NAT, we
/// behind NAT). `None` if the peer sent none (no NAT-T support).
pub(crate) fn detect(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<(bool, bool)> {
    let of = |kind| notifies(payloads).filter(move |n| n.kind == kind).map(|n| n.data.as_slice());
    let (mut src, mut dst) =
        (of(notify::NAT_DETECTION_SOURCE_IP).peekable(), of(notify::NAT_DETECTION_DESTINATION_IP).peekable());
    if src.peek().is_none() || dst.peek().is_none() {
        return None;
    }
    let expect_src = hash(spi_i, spi_r, remote);
    let expect_dst = hash(spi_i, spi_r, local);
    let peer_behind = !src.any(|h| h == expect_src.as_slice());
    let we_behind = !dst.any(|h| h == expect_dst.as_slice());
    Some((peer_behind, we_behind))
}
