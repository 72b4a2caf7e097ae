//! Shared helpers for the esp integration tests: SA parameters and inner packets.
#![allow(dead_code)]

use esp::{Opened, SaTable, Sealed};
use ipsec_types::{
    ChildRef, DatapathCommand, Direction, EncrAlg, EspKey, IntegAlg, SaEndpoints, SaParams, Spi, Timestamp,
    TrafficSelector, UdpEncap,
};

pub const NOW: Timestamp = Timestamp::ZERO;

pub fn ts(s: &str) -> TrafficSelector {
    TrafficSelector::parse_cidr(s).unwrap()
}

pub fn key(alg: EncrAlg, fill: u8) -> EspKey {
    suite_key((alg, None), fill)
}

/// An encryption algorithm and, for AES-CBC, its integrity algorithm.
pub type Suite = (EncrAlg, Option<IntegAlg>);

/// Every ESP suite: the AEADs, and AES-CBC of each key size with each HMAC.
pub fn suites() -> Vec<Suite> {
    let mut v: Vec<Suite> = EncrAlg::ALL.iter().filter(|e| e.is_aead()).map(|e| (*e, None)).collect();
    for e in EncrAlg::ALL.iter().filter(|e| !e.is_aead()) {
        v.extend(IntegAlg::ALL.iter().map(|i| (*e, Some(*i))));
    }
    v
}

/// KEYMAT for `suite` (bytes counting up from `fill`), split as `ike` would.
pub fn suite_key(suite: Suite, fill: u8) -> EspKey {
    let len = EspKey::keymat_len(suite.0, suite.1).unwrap();
    let km: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
    EspKey::from_keymat(suite.0, suite.1, &km).unwrap()
}

pub fn endpoints() -> SaEndpoints {
    SaEndpoints {
        local: "192.0.2.1".parse().unwrap(),
        remote: "198.51.100.1".parse().unwrap(),
        encap: Some(UdpEncap { local_port: 4500, remote_port: 4500 }),
    }
}

/// SA parameters from the point of view of `direction` on gateway "left", whose
/// inside networks are 10.1.0.0/16 and 2001:db8:1::/48, facing 10.2.0.0/16 and
/// 2001:db8:2::/48.
pub fn params(spi: u32, direction: Direction, child_id: u64, fill: u8) -> SaParams {
    SaParams {
        spi: Spi(spi),
        direction,
        child: ChildRef { tunnel: "t".into(), child_id },
        endpoints: endpoints(),
        key: key(EncrAlg::AesGcm16_256, fill),
        replay_window: 1024,
        esn: false,
        local_ts: vec![ts("10.1.0.0/16"), ts("2001:db8:1::/48")],
        remote_ts: vec![ts("10.2.0.0/16"), ts("2001:db8:2::/48")],
        limits: Default::default(),
    }
}

/// The mirror image for the peer: swaps selectors, same key.
pub fn mirror(p: &SaParams, direction: Direction) -> SaParams {
    let mut m = p.clone();
    m.direction = direction;
    std::mem::swap(&mut m.local_ts, &mut m.remote_ts);
    m
}

/// Two tables: `left` seals with SPI `spi`, `right` opens it.
pub fn pair(spi: u32, tweak: impl Fn(&mut SaParams)) -> (SaTable, SaTable) {
    let mut out = params(spi, Direction::Outbound, 1, 7);
    tweak(&mut out);
    let inb = mirror(&out, Direction::Inbound);
    let left = SaTable::new().apply(&DatapathCommand::InstallOutbound(out)).unwrap();
    let right = SaTable::new().apply(&DatapathCommand::InstallInbound(inb)).unwrap();
    (left, right)
}

/// A UDP/IPv4 packet of `len` bytes (>= 28), ports 4000 -> 5000, payload counting up.
pub fn ipv4(src: &str, dst: &str, len: usize) -> Vec<u8> {
    let payload = testkit::packet::pattern(28, len - 28);
    testkit::packet::ipv4_udp(src.parse().unwrap(), dst.parse().unwrap(), 4000, 5000, &payload)
}

/// A UDP/IPv6 packet of `len` bytes (>= 48), ports 4000 -> 5000, payload counting up.
pub fn ipv6(src: &str, dst: &str, len: usize) -> Vec<u8> {
    let payload = testkit::packet::pattern(48, len - 48);
    testkit::packet::ipv6_udp(src.parse().unwrap(), dst.parse().unwrap(), 4000, 5000, &payload)
}

/// Seals `inner` and returns the ESP packet bytes (panics on a drop).
pub fn seal(t: &SaTable, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; inner.len() + esp::MAX_OVERHEAD];
    match t.seal(NOW, inner, &mut out) {
        Sealed::Send { packet, .. } => packet.to_vec(),
        Sealed::Drop(r) => panic!("seal dropped: {r:?}"),
    }
}

/// Opens `packet`: the delivered inner packet or the drop reason.
pub fn open(t: &SaTable, packet: &[u8]) -> Result<Vec<u8>, esp::DropReason> {
    let mut out = vec![0u8; packet.len()];
    match t.open(NOW, packet, &mut out) {
        Opened::Deliver { packet, .. } => Ok(packet.to_vec()),
        Opened::Drop(r) => Err(r),
    }
}
