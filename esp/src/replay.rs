//! Anti-replay window (RFC 4303 section 3.4.3) kept as a bitmap ring (RFC 6479), plus
//! the inference of the high half of an extended sequence number (RFC 4303 Appendix A).
//!
//! Owns: which sequence numbers of one inbound SA were already accepted. Does not own:
//! locking (the SA wraps the window in a `Mutex`), decryption, counters.
//!
//! Usage is check, then decrypt, then commit: [`ReplayWindow::check`] runs before the
//! ICV is verified so that replays cost no AES work, and [`ReplayWindow::commit`] runs
//! only after the ICV verified, so a forged packet can never move the window. `commit`
//! checks again because another thread may have committed the same number in between.
//! [`SharedWindow`] is the form the SAs hold: the bitmap behind a `Mutex`, with the
//! highest number mirrored in an atomic so that in-order packets are checked without
//! taking the lock (one lock per packet, at commit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Largest window accepted; larger configured sizes are clamped (a 2^20-packet window
/// is a 128 KiB bitmap).
pub const MAX_WINDOW: u32 = 1 << 20;

/// Why a sequence number is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Already accepted once.
    Duplicate,
    /// Left of the window (or zero, which is never sent).
    TooOld,
}

const BLOCK_BITS: u64 = 64;

/// The receive window of one inbound SA, over 64-bit sequence numbers.
///
/// `size == 0` disables the replay check (RFC 4303 allows it); the highest sequence
/// number is still tracked, for ESN inference and statistics.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// Window size W in packets.
    size: u64,
    /// Highest committed sequence number, 0 before the first packet.
    top: u64,
    /// Ring of 64-bit blocks; bit `seq % 64` of block `(seq / 64) % len` marks `seq`.
    /// Its length is a power of two holding at least W + 63 bits, so every number in
    /// the window has a slot not shared with a number above `top`.
    bits: Box<[u64]>,
}

impl ReplayWindow {
    /// A window of `size` packets (clamped to [`MAX_WINDOW`]; 0 disables the check).
    pub fn new(size: u32) -> Self {
        let size = u64::from(size.min(MAX_WINDOW));
        let blocks = if size == 0 { 1 } else { (size.div_ceil(BLOCK_BITS) + 1).next_power_of_two() };
        let blocks = usize::try_from(blocks).unwrap_or(1);
        Self { size, top: 0, bits: vec![0u64; blocks].into_boxed_slice() }
    }

    /// The configured window size W (after clamping).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The highest committed sequence number (0 if none yet).
    pub fn top(&self) -> u64 {
        self.top
    }

    fn slot(&self, seq: u64) -> (usize, u64) {
        let mask = (self.bits.len() as u64).wrapping_sub(1);
        let block = usize::try_from((seq / BLOCK_BITS) & mask).unwrap_or(0);
        (block, 1u64 << (seq % BLOCK_BITS))
    }

    /// Whether `seq` would be accepted now (does not change the window).
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if self.size == 0 || seq > self.top {
            return Ok(());
        }
        // seq <= top here: too old if it is at least W below top.
        if self.top - seq >= self.size {
            return Err(ReplayError::TooOld);
        }
        let (block, bit) = self.slot(seq);
        match self.bits.get(block) {
            Some(b) if b & bit != 0 => Err(ReplayError::Duplicate),
            _ => Ok(()),
        }
    }

    /// Marks `seq` as received (after its ICV verified), sliding the window if `seq`
    /// is new highest. Fails, changing nothing, if `seq` is no longer acceptable.
    pub fn commit(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        if seq > self.top {
            // Clear the blocks the window slides over (at most the whole ring).
            let len = self.bits.len() as u64;
            let from = self.top / BLOCK_BITS;
            let to = seq / BLOCK_BITS;
            let steps = (to - from).min(len);
            for i in 1..=steps {
                let idx = usize::try_from((from + i) & (len - 1)).unwrap_or(0);
                if let Some(b) = self.bits.get_mut(idx) {
                    *b = 0;
                }
            }
            self.top = seq;
        }
        if self.size != 0 {
            let (block, bit) = self.slot(seq);
            if let Some(b) = self.bits.get_mut(block) {
                *b |= bit;
            }
        }
        Ok(())
    }

    /// The full 64-bit sequence number for a received low half `seq_lo` under ESN
    /// (RFC 4303 Appendix A2.2): the candidate closest to the window.
    pub fn infer_esn(&self, seq_lo: u32) -> u64 {
        infer_esn(self.top, self.size, seq_lo)
    }
}

/// RFC 4303 Appendix A2.2 for a window of `size` (0: check disabled, then half the
/// 32-bit space is used as the window for this guess) whose highest number is `top`.
fn infer_esn(top: u64, size: u64, seq_lo: u32) -> u64 {
    let w = if size == 0 { 1u64 << 31 } else { size };
    let tl = top & 0xffff_ffff;
    let th = top >> 32;
    let lo = u64::from(seq_lo);
    // Bottom of the window, as a low half (mod 2^32).
    let bottom = (tl.wrapping_sub(w).wrapping_add(1)) & 0xffff_ffff;
    let hi = if tl + 1 >= w {
        // Case A: window within one 2^32 subspace.
        if lo >= bottom {
            th
        } else {
            th.wrapping_add(1)
        }
    } else if lo >= bottom {
        // Case B: window spans two subspaces; lo is in the lower one.
        th.wrapping_sub(1)
    } else {
        th
    };
    // A first packet with th == 0 cannot belong to subspace -1.
    let hi = if hi > 0xffff_ffff { 0 } else { hi };
    (hi << 32) | lo
}

/// A [`ReplayWindow`] shared by the threads opening one SA's packets.
#[derive(Debug)]
pub struct SharedWindow {
    /// Mirror of the window's top, written under the lock after each commit. It may
    /// lag the real top, never lead it, so a number above it is certainly new.
    top: AtomicU64,
    size: u64,
    inner: Mutex<ReplayWindow>,
}

impl SharedWindow {
    /// A window of `size` packets (see [`ReplayWindow::new`]).
    pub fn new(size: u32) -> Self {
        let w = ReplayWindow::new(size);
        Self { top: AtomicU64::new(0), size: w.size(), inner: Mutex::new(w) }
    }

    fn lock(&self) -> MutexGuard<'_, ReplayWindow> {
        // Nothing panics while the lock is held; ignore poisoning anyway.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The highest committed sequence number.
    pub fn top(&self) -> u64 {
        self.top.load(Ordering::Acquire)
    }

    /// ESN inference against the current top (see [`ReplayWindow::infer_esn`]).
    pub fn infer_esn(&self, seq_lo: u32) -> u64 {
        infer_esn(self.top(), self.size, seq_lo)
    }

    /// [`ReplayWindow::check`]; lock-free for numbers above the top.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq != 0 && seq > self.top() {
            return Ok(());
        }
        self.lock().check(seq)
    }

    /// [`ReplayWindow::commit`], then publishes the new top.
    pub fn commit(&self, seq: u64) -> Result<(), ReplayError> {
        let mut w = self.lock();
        w.commit(seq)?;
        self.top.store(w.top(), Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table test: (sequence number offered, expected verdict), applied in order to one
    /// window of 64 packets; an accepted number is committed.
    #[test]
    fn window_table() {
        use ReplayError::{Duplicate, TooOld};
        let mut w = ReplayWindow::new(64);
        let table: &[(u64, Result<(), ReplayError>)] = &[
            (0, Err(TooOld)),
            (1, Ok(())),
            (1, Err(Duplicate)),
            (3, Ok(())),
            (2, Ok(())),
            (2, Err(Duplicate)),
            (64, Ok(())),        // window [1, 64]
            (1, Err(Duplicate)), // still inside
            (65, Ok(())),        // window [2, 65]
            (1, Err(TooOld)),
            (4, Ok(())),
            (200, Ok(())), // big jump: window [137, 200]
            (136, Err(TooOld)),
            (137, Ok(())),
            (65, Err(TooOld)),
        ];
        for (i, (seq, want)) in table.iter().enumerate() {
            let got = w.check(*seq);
            assert_eq!(got, *want, "step {i}: seq {seq}");
            if got.is_ok() {
                assert_eq!(w.commit(*seq), Ok(()), "step {i}: commit {seq}");
            }
        }
        assert_eq!(w.top(), 200);
        assert_eq!(w.check(138), Ok(()));
        assert_eq!(w.check(200), Err(Duplicate));
    }

    #[test]
    fn commit_rechecks() {
        let mut w = ReplayWindow::new(1024);
        assert_eq!(w.check(5), Ok(()));
        assert_eq!(w.commit(5), Ok(()));
        // A second thread that checked 5 before the commit must lose at commit.
        assert_eq!(w.commit(5), Err(ReplayError::Duplicate));
        assert_eq!(w.commit(5000), Ok(()));
        assert_eq!(w.commit(5000 - 1024), Err(ReplayError::TooOld));
        assert_eq!(w.commit(5000 - 1023), Ok(()));
    }

    #[test]
    fn disabled_window_accepts_everything_but_zero() {
        let mut w = ReplayWindow::new(0);
        for s in [5, 5, 1, 1000, 3] {
            assert_eq!(w.commit(s), Ok(()));
        }
        assert_eq!(w.top(), 1000);
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
    }

    #[test]
    fn huge_window_is_clamped() {
        let w = ReplayWindow::new(u32::MAX);
        assert_eq!(w.size(), u64::from(MAX_WINDOW));
    }

    #[test]
    fn shared_window_fast_path_agrees() {
        let w = SharedWindow::new(64);
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        assert_eq!(w.check(10), Ok(()));
        assert_eq!(w.commit(10), Ok(()));
        assert_eq!(w.top(), 10);
        assert_eq!(w.check(10), Err(ReplayError::Duplicate));
        assert_eq!(w.check(9), Ok(()));
        assert_eq!(w.commit(100), Ok(()));
        assert_eq!(w.check(36), Err(ReplayError::TooOld));
        assert_eq!(w.commit(10), Err(ReplayError::TooOld));
        assert_eq!(w.infer_esn(101), 101);
    }

    #[test]
    fn esn_inference() {
        let mut w = ReplayWindow::new(64);
        assert_eq!(w.infer_esn(1), 1);
        w.commit(0xffff_fff0).unwrap();
        // Case A: in window -> same subspace; below window -> next subspace.
        assert_eq!(w.infer_esn(0xffff_ffe0), 0xffff_ffe0);
        assert_eq!(w.infer_esn(5), 0x1_0000_0005);
        w.commit(0x1_0000_0005).unwrap();
        // Case B: window spans the boundary.
        assert_eq!(w.infer_esn(0xffff_fff0), 0xffff_fff0);
        assert_eq!(w.infer_esn(3), 0x1_0000_0003);
        assert_eq!(w.infer_esn(0x10), 0x1_0000_0010);
    }
}
