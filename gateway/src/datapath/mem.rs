//! In-memory TUN and WAN for the unit tests of worker scheduling and batching: queues
//! the test fills, and a record of every write and send with the name of the thread
//! (the worker) that made it. An empty queue answers `WouldBlock`, as a non-blocking
//! fd does.

use super::io::{TunIo, WanIo};
use super::offload::VNET_HDR_LEN;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker() -> String {
    std::thread::current().name().unwrap_or("unnamed").to_string()
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

/// A packet written to the TUN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunWrite {
    /// The thread that wrote it.
    pub worker: String,
    /// The vnet header, on a device that has them.
    pub vnet: Option<Vec<u8>>,
    /// The IP packet.
    pub packet: Vec<u8>,
}

/// A TUN device in memory.
pub struct MemTun {
    queues: Vec<Mutex<VecDeque<Vec<u8>>>>,
    vnet_hdr: bool,
    written: Mutex<Vec<TunWrite>>,
    sleeps: Mutex<usize>,
}

impl MemTun {
    /// `queues` empty queues; reads and writes start with a vnet header if `vnet_hdr`.
    pub fn new(queues: usize, vnet_hdr: bool) -> Self {
        Self {
            queues: (0..queues.max(1)).map(|_| Mutex::default()).collect(),
            vnet_hdr,
            written: Mutex::default(),
            sleeps: Mutex::default(),
        }
    }

    /// Queues `packets` for reading on queue `q` (as the kernel would: with a vnet
    /// header on a device that has them, given here as part of the packet).
    pub fn queue(&self, q: usize, packets: impl IntoIterator<Item = Vec<u8>>) {
        lock(&self.queues[q]).extend(packets);
    }

    /// Packets still waiting on queue `q`.
    pub fn waiting(&self, q: usize) -> usize {
        lock(&self.queues[q]).len()
    }

    /// Times a worker slept on a queue (`wait_readable`; here it returns at once).
    pub fn sleeps(&self) -> usize {
        *lock(&self.sleeps)
    }

    /// Takes the record of writes.
    pub fn take_written(&self) -> Vec<TunWrite> {
        std::mem::take(&mut *lock(&self.written))
    }
}

impl TunIo for MemTun {
    fn queues(&self) -> usize {
        self.queues.len()
    }
    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
    fn udp_gso_writes(&self) -> bool {
        true
    }
    fn recv_queue(&self, q: usize, buf: &mut [u8]) -> io::Result<usize> {
        let q = self.queues.get(q).ok_or_else(|| io::Error::other("no such queue"))?;
        let p = lock(q).pop_front().ok_or_else(would_block)?;
        let n = p.len().min(buf.len());
        buf[..n].copy_from_slice(&p[..n]);
        Ok(n)
    }
    fn send(&self, packet: &[u8]) -> io::Result<usize> {
        let w = if self.vnet_hdr {
            let (h, p) = packet.split_at(VNET_HDR_LEN.min(packet.len()));
            TunWrite { worker: worker(), vnet: Some(h.to_vec()), packet: p.to_vec() }
        } else {
            TunWrite { worker: worker(), vnet: None, packet: packet.to_vec() }
        };
        lock(&self.written).push(w);
        Ok(packet.len())
    }
    fn send_parts(&self, head: &[u8], packet: &[u8]) -> io::Result<usize> {
        lock(&self.written).push(TunWrite { worker: worker(), vnet: Some(head.to_vec()), packet: packet.to_vec() });
        Ok(head.len() + packet.len())
    }
    fn wait_readable(&self, _q: usize) -> io::Result<()> {
        *lock(&self.sleeps) += 1;
        Ok(())
    }
}

/// How a batch left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// One UDP GSO send of datagrams of this size (the last may be shorter).
    Gso(u16),
    /// One datagram from UDP 4500.
    Udp,
    /// One `sendmmsg` on the raw ESP socket.
    RawMany,
    /// One packet on the raw ESP socket.
    Raw,
}

/// One send call on the WAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanSend {
    /// The thread that sent.
    pub worker: String,
    /// Which call.
    pub how: How,
    /// The destination (port 0 for raw ESP).
    pub to: SocketAddr,
    /// The ESP packets (datagrams) it carried.
    pub packets: Vec<Vec<u8>>,
}

/// WAN sockets in memory.
pub struct MemWan {
    natt_local: SocketAddr,
    natt_rx: Mutex<VecDeque<(Vec<u8>, SocketAddr, usize)>>,
    raw_rx: Option<Mutex<VecDeque<Vec<u8>>>>,
    sent: Mutex<Vec<WanSend>>,
    /// The error a UDP GSO send fails with (`None`: it works).
    gso_errno: Mutex<Option<i32>>,
    gso_calls: Mutex<usize>,
    sleeps: Mutex<usize>,
}

impl MemWan {
    /// UDP 4500 at `natt_local`; a raw ESP socket if `raw`.
    pub fn new(natt_local: SocketAddr, raw: bool) -> Self {
        Self {
            natt_local,
            natt_rx: Mutex::default(),
            raw_rx: raw.then(Mutex::default),
            sent: Mutex::default(),
            gso_errno: Mutex::default(),
            gso_calls: Mutex::default(),
            sleeps: Mutex::default(),
        }
    }

    /// Queues one receive on UDP 4500 from `from`: the datagrams, as a UDP GRO run if
    /// there are several (all but the last of the same size).
    pub fn queue_natt(&self, from: SocketAddr, datagrams: &[Vec<u8>]) {
        let seg = datagrams.first().map_or(0, Vec::len);
        lock(&self.natt_rx).push_back((datagrams.concat(), from, seg));
    }

    /// Queues ESP packets on the raw socket.
    pub fn queue_raw(&self, packets: impl IntoIterator<Item = Vec<u8>>) {
        if let Some(q) = &self.raw_rx {
            lock(q).extend(packets);
        }
    }

    /// Makes UDP GSO sends fail with `errno` from now on.
    pub fn fail_gso(&self, errno: i32) {
        *lock(&self.gso_errno) = Some(errno);
    }

    /// UDP GSO sends tried so far, including failed ones.
    pub fn gso_calls(&self) -> usize {
        *lock(&self.gso_calls)
    }

    /// Times a worker slept on UDP 4500 or the raw socket (here they return at once).
    pub fn sleeps(&self) -> usize {
        *lock(&self.sleeps)
    }

    /// Takes the record of sends.
    pub fn take_sent(&self) -> Vec<WanSend> {
        std::mem::take(&mut *lock(&self.sent))
    }

    fn record(&self, how: How, to: SocketAddr, packets: Vec<Vec<u8>>) {
        lock(&self.sent).push(WanSend { worker: worker(), how, to, packets });
    }
}

impl WanIo for MemWan {
    /// Packets per receive.
    type RawRx = usize;

    fn has_raw(&self) -> bool {
        self.raw_rx.is_some()
    }
    fn natt_local(&self) -> io::Result<SocketAddr> {
        Ok(self.natt_local)
    }
    fn ike_local(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(self.natt_local.ip(), 500))
    }
    fn recv_ike(&self, _buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        Err(would_block())
    }
    fn recv_natt(&self, buf: &mut [u8], _wait: bool) -> io::Result<(usize, SocketAddr, usize)> {
        let (data, from, seg) = lock(&self.natt_rx).pop_front().ok_or_else(would_block)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok((n, from, seg))
    }
    fn raw_rx(&self, slots: usize) -> usize {
        slots
    }
    fn recv_raw(&self, slots: &mut usize, _wait: bool, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        let q = self.raw_rx.as_ref().ok_or_else(would_block)?;
        let got: Vec<Vec<u8>> = {
            let mut q = lock(q);
            let n = q.len().min(*slots);
            q.drain(..n).collect()
        };
        if got.is_empty() {
            return Err(would_block());
        }
        got.iter().for_each(|p| each(p));
        Ok(())
    }
    fn send_gso(&self, data: &[u8], seg: u16, to: SocketAddr) -> io::Result<usize> {
        *lock(&self.gso_calls) += 1;
        if let Some(errno) = *lock(&self.gso_errno) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.record(How::Gso(seg), to, data.chunks(usize::from(seg).max(1)).map(<[u8]>::to_vec).collect());
        Ok(data.len())
    }
    fn send_udp(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.record(How::Udp, to, vec![datagram.to_vec()]);
        Ok(datagram.len())
    }
    fn send_raw_many(&self, packets: &[&[u8]], to: IpAddr) -> io::Result<usize> {
        self.record(How::RawMany, SocketAddr::new(to, 0), packets.iter().map(|p| p.to_vec()).collect());
        Ok(packets.len())
    }
    fn send_raw(&self, packet: &[u8], to: IpAddr) -> io::Result<usize> {
        self.record(How::Raw, SocketAddr::new(to, 0), vec![packet.to_vec()]);
        Ok(packet.len())
    }
    fn wait_natt(&self) -> io::Result<()> {
        *lock(&self.sleeps) += 1;
        Ok(())
    }
    fn wait_raw(&self) -> io::Result<()> {
        *lock(&self.sleeps) += 1;
        Ok(())
    }
}

/// SAs and packets for the tests: a gateway at [`LOCAL`] facing a peer at [`PEER`],
/// tunnelling 10.1.0.0/16 (ours) to 10.2.0.0/16 (theirs).
pub mod sas {
    use esp::{Opened, SaTable, Sealed};
    use ipsec_types::{
        ChildRef, DatapathCommand, Direction, EncrAlg, EspKey, SaEndpoints, SaParams, Spi, Timestamp, TrafficSelector,
        UdpEncap,
    };
    use std::net::IpAddr;

    /// Our WAN address.
    pub const LOCAL: [u8; 4] = [192, 0, 2, 1];
    /// The peer's WAN address.
    pub const PEER: [u8; 4] = [198, 51, 100, 1];
    /// The time every test runs at.
    pub const NOW: Timestamp = Timestamp::ZERO;

    fn ts(s: &str) -> TrafficSelector {
        TrafficSelector::parse_cidr(s).unwrap()
    }

    fn sa(spi: u32, direction: Direction, (local, remote): ([u8; 4], [u8; 4]), ours: bool, encap: bool) -> SaParams {
        let km: Vec<u8> = (0..EncrAlg::AesGcm16_128.key_len() + 4).map(|i| (spi as u8).wrapping_add(i as u8)).collect();
        let (mine, theirs) = if ours { ("10.1.0.0/16", "10.2.0.0/16") } else { ("10.2.0.0/16", "10.1.0.0/16") };
        SaParams {
            spi: Spi(spi),
            direction,
            child: ChildRef { tunnel: "t".into(), child_id: 1 },
            endpoints: SaEndpoints {
                local: IpAddr::from(local),
                remote: IpAddr::from(remote),
                encap: encap.then_some(UdpEncap { local_port: 4500, remote_port: 4500 }),
            },
            key: EspKey::from_keymat(EncrAlg::AesGcm16_128, None, &km).unwrap(),
            replay_window: 1024,
            esn: false,
            local_ts: vec![ts(mine)],
            remote_ts: vec![ts(theirs)],
            limits: Default::default(),
        }
    }

    fn table(sas: [SaParams; 2]) -> SaTable {
        let [out, inb] = sas;
        SaTable::new()
            .apply(&DatapathCommand::InstallOutbound(out))
            .and_then(|t| t.apply(&DatapathCommand::InstallInbound(inb)))
            .unwrap()
    }

    /// The gateway's table (seals with SPI 0x100, opens 0x200) and the peer's, which
    /// opens what the gateway seals and the other way round; ESP-in-UDP if `encap`,
    /// else raw ESP.
    pub fn tables(encap: bool) -> (SaTable, SaTable) {
        let us = (LOCAL, PEER);
        let them = (PEER, LOCAL);
        (
            table([sa(0x100, Direction::Outbound, us, true, encap), sa(0x200, Direction::Inbound, us, true, encap)]),
            table([
                sa(0x200, Direction::Outbound, them, false, encap),
                sa(0x100, Direction::Inbound, them, false, encap),
            ]),
        )
    }

    /// A UDP/IPv4 packet of `len` bytes (at least 28) between `src` and `dst`, its
    /// source port `n` so that each packet of a test is different.
    pub fn udp(src: [u8; 4], dst: [u8; 4], n: u16, len: usize) -> Vec<u8> {
        let payload = testkit::packet::pattern(n as u8, len.max(28) - 28);
        testkit::packet::ipv4_udp(src.into(), dst.into(), n, 7, &payload)
    }

    /// A packet from our LAN to the peer's (for the gateway to seal).
    pub fn outbound(n: u16, len: usize) -> Vec<u8> {
        udp([10, 1, 0, 5], [10, 2, 0, 5], n, len)
    }

    /// A packet from the peer's LAN to ours (for the peer to seal).
    pub fn inbound(n: u16, len: usize) -> Vec<u8> {
        udp([10, 2, 0, 5], [10, 1, 0, 5], n, len)
    }

    /// Seals `inner` with `t` (panics on a drop).
    pub fn seal(t: &SaTable, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; inner.len() + esp::MAX_OVERHEAD];
        match t.seal(NOW, inner, &mut out) {
            Sealed::Send { packet, .. } => packet.to_vec(),
            Sealed::Drop(r) => panic!("seal dropped: {r:?}"),
        }
    }

    /// Opens `packet` with `t` (panics on a drop).
    pub fn open(t: &SaTable, packet: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; packet.len()];
        match t.open(NOW, packet, &mut out) {
            Opened::Deliver { packet, .. } => packet.to_vec(),
            Opened::Drop(r) => panic!("open dropped: {r:?}"),
        }
    }
}
