//! The send batch: ESP packets sealed back to back into one buffer ([`TxBatch`]) and
//! sent together to one destination ([`Sender`]): ESP-in-UDP as one UDP GSO send (a run
//! of equal-sized datagrams, only the last may be shorter), raw ESP as one `sendmmsg`.
//! Which packets may share a batch is decided here; the system calls are `sys::batch`'s.

use super::io::WanIo;
use super::BUF_LEN;
use crate::sys::batch;
use esp::Sealed;
use ipsec_types::{SaEndpoints, Timestamp};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// ESP packets sealed back to back in one buffer, waiting to be sent together to one
/// destination: as one UDP GSO send (so all but the last have the same length) or one
/// `sendmmsg`.
pub struct TxBatch {
    buf: Vec<u8>,
    used: usize,
    lens: [usize; batch::MAX_MMSG],
    count: usize,
    to: Option<SaEndpoints>,
}

impl TxBatch {
    /// An empty batch with its buffer (allocated once).
    pub fn new() -> Self {
        Self {
            buf: vec![0; batch::MAX_GSO_BYTES + BUF_LEN + esp::MAX_OVERHEAD],
            used: 0,
            lens: [0; batch::MAX_MMSG],
            count: 0,
            to: None,
        }
    }

    /// Seals `inner` with `table` right after the batch. `send` is called with the
    /// batch whenever it must go first: when the packet might not fit in the buffer, or
    /// when the sealed packet cannot join it (another destination, a full batch, or with
    /// `gso` a size that breaks the run); the packet then starts the next batch.
    #[inline]
    pub fn seal(
        &mut self,
        table: &esp::SaTable,
        now: Timestamp,
        inner: &[u8],
        gso: bool,
        send: &mut impl FnMut(&TxBatch),
    ) {
        if self.room() < inner.len() + esp::MAX_OVERHEAD {
            self.flush(send);
        }
        let Some(out) = self.buf.get_mut(self.used..) else { return };
        // Drops are counted inside esp.
        if let Sealed::Send { to, packet } = table.seal(now, inner, out) {
            let len = packet.len();
            if !self.fits(&to, len, gso) {
                self.flush_keeping_last(len, send);
            }
            self.push(to, len);
        }
    }

    /// Hands the batch (if it holds anything) to `send` and empties it.
    #[inline]
    pub fn flush(&mut self, send: &mut impl FnMut(&TxBatch)) {
        if self.to.is_some() {
            send(self);
        }
        self.clear();
    }

    /// Flushes the batch except a just-sealed `len`-byte packet after it, which becomes
    /// the start of the next batch.
    fn flush_keeping_last(&mut self, len: usize, send: &mut impl FnMut(&TxBatch)) {
        let at = self.used;
        self.flush(send);
        self.buf.copy_within(at..at + len, 0);
    }

    /// Free bytes after the batch.
    fn room(&self) -> usize {
        self.buf.len() - self.used
    }

    /// True if a `len`-byte packet for `to`, sealed right after the batch, may join it.
    fn fits(&self, to: &SaEndpoints, len: usize, gso: bool) -> bool {
        let Some(cur) = self.to else { return true };
        if cur != *to || self.count >= batch::MAX_MMSG {
            return false;
        }
        if to.encap.is_none() || !gso {
            return true;
        }
        // UDP GSO: equal sizes, only the last may be shorter; bounded total.
        let first = self.lens.first().copied().unwrap_or(0);
        let last = self.lens.get(self.count.wrapping_sub(1)).copied().unwrap_or(0);
        last == first && len <= first && self.used + len <= batch::MAX_GSO_BYTES
    }

    /// Records the packet sealed at `used..used + len`.
    fn push(&mut self, to: SaEndpoints, len: usize) {
        if let Some(l) = self.lens.get_mut(self.count) {
            *l = len;
            self.count += 1;
            self.used += len;
            self.to = Some(to);
        }
    }

    fn clear(&mut self) {
        self.used = 0;
        self.count = 0;
        self.to = None;
    }

    /// The packets, in the order they were sealed.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        let mut at = 0usize;
        self.lens.iter().take(self.count).filter_map(move |l| {
            let p = self.buf.get(at..at + l);
            at += l;
            p
        })
    }
}

/// Sends batches on the WAN; shared by every worker.
pub struct Sender {
    /// UDP GSO sends of ESP-in-UDP runs.
    udp_gso: bool,
    /// `sendmmsg` for raw ESP.
    mmsg: bool,
    /// Set when the kernel refused a UDP GSO send: datagrams go one by one after that.
    gso_broken: AtomicBool,
}

impl Sender {
    /// Sends with UDP GSO if `udp_gso`, raw ESP with `sendmmsg` if `mmsg`.
    pub fn new(udp_gso: bool, mmsg: bool) -> Self {
        Self { udp_gso, mmsg, gso_broken: AtomicBool::new(false) }
    }

    /// True if batches of ESP-in-UDP are built for UDP GSO (equal sizes).
    pub fn udp_gso(&self) -> bool {
        self.udp_gso
    }

    /// Sends the batch on `wan`; returns how many of its packets were lost to errors.
    pub fn send<W: WanIo>(&self, wan: &W, tx: &TxBatch) -> u64 {
        let Some(to) = tx.to else { return 0 };
        let mut failed = 0u64;
        match to.encap {
            Some(encap) => {
                let dst = SocketAddr::new(to.remote, encap.remote_port);
                let data = tx.buf.get(..tx.used).unwrap_or_default();
                let seg = tx.lens.first().copied().unwrap_or(0);
                if tx.count > 1 && self.udp_gso && !self.gso_broken.load(Ordering::Relaxed) {
                    match wan.send_gso(data, seg as u16, dst) {
                        Ok(_) => return 0,
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP | libc::EIO)) => {
                            // No UDP GSO on this kernel or route: per datagram from now on.
                            self.gso_broken.store(true, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed = tx.count as u64;
                        }
                    }
                }
                if failed == 0 {
                    for p in tx.packets() {
                        if wan.send_udp(p, dst).is_err() {
                            failed += 1;
                        }
                    }
                }
            }
            None if !wan.has_raw() => failed = tx.count as u64,
            None if self.mmsg && tx.count > 1 => {
                let mut refs: [&[u8]; batch::MAX_MMSG] = [&[]; batch::MAX_MMSG];
                for (r, p) in refs.iter_mut().zip(tx.packets()) {
                    *r = p;
                }
                let n = tx.count.min(batch::MAX_MMSG);
                let sent = wan.send_raw_many(refs.get(..n).unwrap_or_default(), to.remote).unwrap_or(0);
                failed = (n - sent.min(n)) as u64;
            }
            None => {
                for p in tx.packets() {
                    if wan.send_raw(p, to.remote).is_err() {
                        failed += 1;
                    }
                }
            }
        }
        failed
    }
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
