//! Bounds-checked byte reader and big-endian writer helpers. Every read returns an
//! `Option`; nothing here can panic on short input.

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|s| s.first().copied())
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).and_then(|s| s.try_into().ok()).map(u16::from_be_bytes)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|s| s.try_into().ok()).map(u32::from_be_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes)
    }
}

/// Splits bytes into substructures that each begin `| octet | octet | length (2 octets,
/// counting these 4) |`: the generic payload header (RFC 7296 3.2), proposals (3.3.1)
/// and transforms (3.3.2). Yields `(first octet, second octet, body)`; `Some(None)` once a
/// length field disagrees with the bytes present (shorter than 4, or past the end), after
/// which it ends. The substructures tile the input exactly or the input is malformed.
pub(crate) struct Substructs<'a> {
    r: Reader<'a>,
}

impl<'a> Substructs<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { r: Reader::new(buf) }
    }

    /// How many substructures tile the input, or `None` if they do not.
    pub(crate) fn count(buf: &'a [u8]) -> Option<usize> {
        Self::new(buf).try_fold(0usize, |n, s| s.map(|_| n + 1))
    }

    fn split(&mut self) -> Option<(u8, u8, &'a [u8])> {
        let a = self.r.u8()?;
        let b = self.r.u8()?;
        let len = usize::from(self.r.u16()?);
        let body = self.r.take(len.checked_sub(4)?)?;
        Some((a, b, body))
    }
}

impl<'a> Iterator for Substructs<'a> {
    type Item = Option<(u8, u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining() == 0 {
            return None;
        }
        let s = self.split();
        if s.is_none() {
            self.r.rest();
        }
        Some(s)
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a length into a previously reserved big-endian u16 slot at `at`.
pub(crate) fn patch_u16(out: &mut [u8], at: usize, v: usize) {
    let v = u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(slot) = out.get_mut(at..at + 2) {
        slot.copy_from_slice(&v);
    }
}
