//! The IKE_SA_INIT flood: `count` requests at `rate` per second to the gateway's port 500,
//! each with a fresh random SPIi, KE value and nonce, from spoofed sources, and a count
//! of what came back.
//!
//! Each request is what a real initiator sends first (RFC 7296 1.2): one IKE proposal
//! `aes256gcm16-prfsha256-x25519` (ENCR 20 with a 256-bit key, PRF 5, DH 31), a 32-byte
//! X25519 KE value, a 32-byte nonce and the two NAT_DETECTION notifies, computed for the
//! spoofed source so that the gateway sees no NAT. Sources:
//! - `peers`: the configured peers' own addresses, round robin: every request matches a
//!   tunnel, so a responder without defences does its full IKE_SA_INIT work (a key pair,
//!   a DH computation, a half-open SA);
//! - `strangers`: a fresh address of 2001:db8:2::/64 per request, matching no tunnel.
//!
//! The requests leave from port [`FLOOD_PORT`], so the answers (which go back to the
//! spoofed address and port, routed to the peers namespace) reach the flood's own socket
//! and not the load generator's IKE sockets; they are counted by kind.
//!
//! `nettool ikeflood` sends the same requests (without the NAT_DETECTION notifies) over
//! IPv4 from a raw socket; this module is the IPv6 equivalent the scale topology needs.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::digest;
use serde_json::{json, Value};

use super::topo;
use super::wire::Wan;

/// Source port of the flood (and where its answers arrive).
pub const FLOOD_PORT: u16 = 40500;

/// Where the spoofed requests come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sources {
    /// The addresses of the first `n` configured peers, round robin.
    Peers(usize),
    /// A fresh address with no tunnel per request.
    Strangers,
}

impl Sources {
    /// The name used on the command line and in the report.
    pub fn key(self) -> &'static str {
        match self {
            Self::Peers(_) => "peers",
            Self::Strangers => "strangers",
        }
    }
}

/// One flood.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Requests to send.
    pub count: u64,
    /// Requests per second.
    pub rate: u64,
    /// Source addresses.
    pub sources: Sources,
    /// The gateway's IKE address and port.
    pub target: SocketAddr,
}

/// A small fast PRNG (splitmix64) for packet contents; seeded from the OS.
pub struct Prng(u64);

impl Prng {
    /// Seeded from the OS generator.
    pub fn from_os() -> Self {
        let mut seed = [0u8; 8];
        // A failing OS generator leaves a fixed seed: the packets stay well-formed.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        Self(u64::from_ne_bytes(seed))
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for c in b.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_ne_bytes());
        }
        b
    }
}

/// Payload type numbers (RFC 7296 3.2).
const PT_SA: u8 = 33;
const PT_KE: u8 = 34;
const PT_NONCE: u8 = 40;
const PT_NOTIFY: u8 = 41;
/// Notify types.
const NAT_DETECTION_SOURCE_IP: u16 = 16388;
const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
const COOKIE: u16 = 16390;

/// RFC 7296 2.23: SHA-1(SPIi | SPIr | IP | port).
fn natd(spi_i: u64, ip: IpAddr, port: u16) -> [u8; 20] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&[0u8; 8]);
    match ip {
        IpAddr::V4(a) => ctx.update(&a.octets()),
        IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&port.to_be_bytes());
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A generic payload header followed by `body`.
fn payload(out: &mut Vec<u8>, next: u8, body: &[u8]) {
    out.push(next);
    out.push(0);
    out.extend_from_slice(&u16::try_from(body.len() + 4).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(body);
}

/// An IKE_SA_INIT request from `src` to `dst` (see the module docs).
pub fn ike_sa_init(spi_i: u64, ke: &[u8; 32], nonce: &[u8; 32], src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut m = Vec::with_capacity(256);
    m.extend_from_slice(&spi_i.to_be_bytes());
    m.extend_from_slice(&[0u8; 8]);
    // Next payload SA, version 2.0, IKE_SA_INIT, flags Initiator, message ID 0, length.
    m.extend_from_slice(&[PT_SA, 0x20, 34, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
    // One proposal (#1, IKE, no SPI, 3 transforms): ENCR AES-GCM-16 (20) with a 256-bit
    // key length attribute, PRF HMAC-SHA2-256 (5), DH Curve25519 (31).
    let transforms: [&[u8]; 3] =
        [&[3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0], &[3, 0, 0, 8, 2, 0, 0, 5], &[0, 0, 0, 8, 4, 0, 0, 31]];
    let t_len: usize = transforms.iter().map(|t| t.len()).sum();
    let mut sa = vec![0, 0];
    sa.extend_from_slice(&u16::try_from(8 + t_len).unwrap_or(u16::MAX).to_be_bytes());
    sa.extend_from_slice(&[1, 1, 0, 3]);
    transforms.iter().for_each(|t| sa.extend_from_slice(t));
    payload(&mut m, PT_KE, &sa);
    let mut ke_body = vec![0, 31, 0, 0];
    ke_body.extend_from_slice(ke);
    payload(&mut m, PT_NONCE, &ke_body);
    payload(&mut m, PT_NOTIFY, nonce);
    for (next, kind, hash) in [
        (PT_NOTIFY, NAT_DETECTION_SOURCE_IP, natd(spi_i, src.ip(), src.port())),
        (0, NAT_DETECTION_DESTINATION_IP, natd(spi_i, dst.ip(), dst.port())),
    ] {
        let mut n = vec![0, 0];
        n.extend_from_slice(&kind.to_be_bytes());
        n.extend_from_slice(&hash);
        payload(&mut m, next, &n);
    }
    let len = u32::try_from(m.len()).unwrap_or(u32::MAX).to_be_bytes();
    m[24..28].copy_from_slice(&len);
    m
}

/// What an answer to a flood request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An IKE_SA_INIT response with an SA payload: the responder did the work.
    SaInit,
    /// A COOKIE notify (RFC 7296 2.6): stateless, the responder did no DH.
    Cookie,
    /// Another notify first (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, ...).
    OtherNotify,
    /// Anything else.
    Other,
}

/// Classifies an answer by its first payload.
pub fn classify(data: &[u8]) -> Reply {
    match (data.get(16), data.get(34..36)) {
        (Some(&PT_SA), _) => Reply::SaInit,
        (Some(&PT_NOTIFY), Some(t)) if u16::from_be_bytes([t[0], t[1]]) == COOKIE => Reply::Cookie,
        (Some(&PT_NOTIFY), Some(_)) => Reply::OtherNotify,
        _ => Reply::Other,
    }
}

#[derive(Default)]
struct Counts {
    replies: [AtomicU64; 4],
}

impl Counts {
    fn add(&self, r: Reply) {
        let i = match r {
            Reply::SaInit => 0,
            Reply::Cookie => 1,
            Reply::OtherNotify => 2,
            Reply::Other => 3,
        };
        self.replies[i].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, i: usize) -> u64 {
        self.replies[i].load(Ordering::Relaxed)
    }
}

/// How long answers are still counted after the last request.
const LINGER: Duration = Duration::from_secs(2);

/// Sends the flood and counts the answers; the report as JSON (`sent`, `send_errors`,
/// `seconds`, `replies {sa_init, cookie, other_notify, other}`).
pub fn run(spec: &Spec, stop: &AtomicBool) -> std::io::Result<Value> {
    let wan = Wan::bind(FLOOD_PORT, 4 << 20)?;
    let reader = wan.reader(Duration::from_millis(100))?;
    let counts = Arc::new(Counts::default());
    let done = Arc::new(AtomicBool::new(false));
    let counter = {
        let (counts, done) = (Arc::clone(&counts), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !done.load(Ordering::Relaxed) {
                if let Ok((n, _)) = reader.recv_from(&mut buf) {
                    counts.add(classify(buf.get(..n).unwrap_or_default()));
                }
            }
        })
    };
    let mut rng = Prng::from_os();
    let started = Instant::now();
    let (mut sent, mut errors) = (0u64, 0u64);
    let rate = spec.rate.max(1) as f64;
    while sent + errors < spec.count && !stop.load(Ordering::Relaxed) {
        // Everything due by now, then a short sleep: `rate` per second on average.
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(spec.count);
        while sent + errors < due {
            let k = sent + errors;
            let src_ip = match spec.sources {
                Sources::Peers(n) => topo::peer_addr((k % n.max(1) as u64) as usize),
                Sources::Strangers => topo::stranger_addr(rng.next() | 1),
            };
            let src = SocketAddr::new(IpAddr::V6(src_ip), FLOOD_PORT);
            let msg = ike_sa_init(rng.next(), &rng.bytes32(), &rng.bytes32(), src, spec.target);
            match wan.send_from(src_ip, spec.target, &[&msg]) {
                Ok(_) => sent += 1,
                Err(_) => errors += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(LINGER);
    done.store(true, Ordering::Relaxed);
    let _ = counter.join();
    Ok(json!({
        "sources": spec.sources.key(),
        "sent": sent,
        "send_errors": errors,
        "seconds": seconds,
        "replies": {
            "sa_init": counts.get(0),
            "cookie": counts.get(1),
            "other_notify": counts.get(2),
            "other": counts.get(3),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sa_init_request_layout() {
        let src: SocketAddr = "[2001:db8:1::1]:40500".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::1]:500".parse().unwrap();
        let m = ike_sa_init(0x0102_0304_0506_0708, &[7; 32], &[9; 32], src, dst);
        assert_eq!(m.len(), 200);
        assert_eq!(&m[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&m[16..20], &[PT_SA, 0x20, 34, 0x08]);
        assert_eq!(u32::from_be_bytes(m[24..28].try_into().unwrap()), 200);
        // Walk the payload chain: SA, KE, Nonce, N, N, each length summing to the total.
        let (mut next, mut off, mut kinds) = (m[16], 28usize, Vec::new());
        while next != 0 {
            kinds.push(next);
            let len = usize::from(u16::from_be_bytes([m[off + 2], m[off + 3]]));
            next = m[off];
            off += len;
        }
        assert_eq!(kinds, vec![PT_SA, PT_KE, PT_NONCE, PT_NOTIFY, PT_NOTIFY]);
        assert_eq!(off, m.len());
        // The KE payload names group 31 and carries the value.
        assert_eq!(&m[72..76], &[0, 31, 0, 0]);
        assert_eq!(&m[76..108], &[7; 32]);
        // The source NAT-D hash is the one for the spoofed source.
        assert_eq!(&m[152..172], &natd(0x0102_0304_0506_0708, src.ip(), 40500));
    }

    /// The hand-built request is one the real responder (the `ike` crate) takes: it
    /// answers with an IKE_SA_INIT response carrying an SA payload.
    #[test]
    fn ike_responder_answers_the_request() {
        struct Fixed(u8);
        impl ike::Rng for Fixed {
            fn fill(&mut self, buf: &mut [u8]) {
                self.0 = self.0.wrapping_add(1);
                buf.iter_mut().enumerate().for_each(|(i, b)| *b = self.0 ^ i as u8);
            }
        }
        let mut gw_side = super::super::tunnels::peer_config("seed", 0).unwrap();
        std::mem::swap(&mut gw_side.local_addr, &mut gw_side.remote_addr);
        let src = SocketAddr::new(gw_side.remote_addr, FLOOD_PORT);
        let dst = SocketAddr::new(gw_side.local_addr, 500);
        let cfg =
            ike::EndpointConfig { ike_port: 500, natt_port: 4500, peers: vec![gw_side], limits: Default::default() };
        let mut ep = ike::Endpoint::new(cfg, Box::new(Fixed(0)));
        let mut rng = Prng(7);
        let msg = ike_sa_init(rng.next(), &rng.bytes32(), &rng.bytes32(), src, dst);
        ep.handle_datagram(ipsec_types::Timestamp::from_secs(1), dst, src, &msg);
        let mut answers = Vec::new();
        while let Some(out) = ep.poll_output() {
            if let ike::Output::Transmit(t) = out {
                answers.push(t);
            }
        }
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0].remote, src);
        assert_eq!(classify(&answers[0].data), Reply::SaInit);
        assert_eq!(&answers[0].data[..8], &msg[..8], "same SPIi");
    }

    #[test]
    fn replies_are_classified_by_first_payload() {
        let mut r = vec![0u8; 40];
        r[16] = PT_SA;
        assert_eq!(classify(&r), Reply::SaInit);
        r[16] = PT_NOTIFY;
        r[34..36].copy_from_slice(&COOKIE.to_be_bytes());
        assert_eq!(classify(&r), Reply::Cookie);
        r[34..36].copy_from_slice(&14u16.to_be_bytes());
        assert_eq!(classify(&r), Reply::OtherNotify);
        assert_eq!(classify(&r[..20]), Reply::Other);
        assert_eq!(classify(&[]), Reply::Other);
    }

    #[test]
    fn prng_differs_per_call() {
        let mut p = Prng(1);
        assert_ne!(p.next(), p.next());
        assert_ne!(p.bytes32(), p.bytes32());
    }
}
