//! The sequenced UDP stream of `nettool udpsend` / `nettool udprecv`: numbered datagrams
//! at a fixed rate, and a receiver that counts loss (sequence numbers never seen, the tail
//! included once the end marker tells the total), duplicates, reordering and the longest
//! silence between two arrivals.
//!
//! Datagram layout: `VGSQ` (4 bytes), kind (1 byte: 0 data, 1 end), 3 zero bytes, a
//! big-endian u64 (the sequence number, or in the end marker the number of datagrams
//! sent), then filler up to the requested size.

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"VGSQ";
const HEADER: usize = 16;
const KIND_DATA: u8 = 0;
const KIND_END: u8 = 1;
/// Sequence numbers at or above this are ignored (bounds the receiver's bitmap to 16 MiB).
const MAX_SEQ: u64 = 1 << 27;
/// At most this many gaps are listed.
const MAX_GAPS: usize = 100;
/// How long the receiver waits for its first datagram.
const FIRST_WAIT: Duration = Duration::from_secs(60);
/// How long it keeps listening after the end marker, for stragglers.
const LINGER: Duration = Duration::from_millis(300);

/// What `udpsend` does.
pub struct SendOpts {
    /// Receiver address.
    pub to: SocketAddr,
    /// UDP payload rate in Mbit/s.
    pub rate_mbit: f64,
    /// How long to send.
    pub seconds: f64,
    /// UDP payload size in bytes (at least the 16-byte header).
    pub size: usize,
}

/// What `udpsend` did.
pub struct SendReport {
    /// Datagrams handed to the kernel or refused by it (each used one sequence number).
    pub sent: u64,
    /// Datagrams the kernel refused (`sendto` errors); the receiver counts them as lost.
    pub errors: u64,
    /// How long sending took.
    pub elapsed: Duration,
}

impl fmt::Display for SendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udpsend sent={} errors={} seconds={:.3}", self.sent, self.errors, self.elapsed.as_secs_f64())
    }
}

fn datagram(kind: u8, value: u64, size: usize) -> Vec<u8> {
    let mut d = vec![0u8; size.max(HEADER)];
    d[..4].copy_from_slice(MAGIC);
    d[4] = kind;
    d[8..16].copy_from_slice(&value.to_be_bytes());
    for (i, b) in d.iter_mut().enumerate().skip(HEADER) {
        *b = (i % 251) as u8;
    }
    d
}

/// `(kind, value)` of a datagram of this stream, `None` for anything else.
fn parse(d: &[u8]) -> Option<(u8, u64)> {
    if d.get(..4)? != MAGIC {
        return None;
    }
    let kind = *d.get(4)?;
    let value = u64::from_be_bytes(d.get(8..16)?.try_into().ok()?);
    Some((kind, value))
}

/// Sends the stream on its own schedule (datagram `i` leaves at `start + i * interval`, so
/// a late wake-up is caught up at once rather than lowering the rate), then the end
/// marker five times.
pub fn send(opts: &SendOpts) -> Result<SendReport, String> {
    if opts.size < HEADER || opts.size > 65_507 {
        return Err(format!("--size must be {HEADER}..=65507"));
    }
    if !(opts.rate_mbit > 0.0 && opts.seconds >= 0.0) {
        return Err("--rate-mbit must be positive and --seconds not negative".to_owned());
    }
    let bind = if opts.to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    let interval = Duration::from_secs_f64(opts.size as f64 * 8.0 / (opts.rate_mbit * 1e6));
    let count = (opts.seconds / interval.as_secs_f64()).floor() as u64;
    let mut buf = datagram(KIND_DATA, 0, opts.size);
    let start = Instant::now();
    let mut errors = 0u64;
    for seq in 0..count {
        let due = start + interval.mul_f64(seq as f64);
        let now = Instant::now();
        if due > now + Duration::from_micros(200) {
            std::thread::sleep(due - now);
        }
        buf[8..16].copy_from_slice(&seq.to_be_bytes());
        if socket.send_to(&buf, opts.to).is_err() {
            errors += 1;
        }
    }
    let elapsed = start.elapsed();
    let end = datagram(KIND_END, count, HEADER);
    for _ in 0..5 {
        let _ = socket.send_to(&end, opts.to);
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(SendReport { sent: count, errors, elapsed })
}

/// What `udprecv` saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RecvReport {
    /// Data datagrams received (duplicates included).
    pub received: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Sequence numbers received more than once (each extra copy counts).
    pub dup: u64,
    /// Datagrams that arrived after a higher sequence number.
    pub reordered: u64,
    /// The sender's count from the end marker, if it arrived.
    pub total: Option<u64>,
    /// The highest sequence number received.
    pub highest: Option<u64>,
    /// Longest silence between two consecutive data arrivals, in ms.
    pub longest_gap_ms: u64,
    /// When that silence began, in ms after the first arrival.
    pub longest_gap_at_ms: u64,
    /// `(began at ms, lasted ms)` of every silence of at least the report threshold.
    pub gaps: Vec<(u64, u64)>,
    /// Runs of sequence numbers never received, `(first, last)` inclusive (at most 100).
    pub lost_ranges: Vec<(u64, u64)>,
}

impl RecvReport {
    /// Sequence numbers never received: against the sender's total if known, else up to
    /// the highest one seen (the tail cannot be known then).
    pub fn lost(&self) -> u64 {
        let expected = self.total.or(self.highest.map(|h| h + 1)).unwrap_or(0);
        expected.saturating_sub(self.unique)
    }
}

impl fmt::Display for RecvReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total.map_or_else(|| "?".to_owned(), |t| t.to_string());
        write!(
            f,
            "udprecv received={} unique={} lost={} dup={} reordered={} total={total} longest_gap_ms={} \
             longest_gap_at_ms={}",
            self.received,
            self.unique,
            self.lost(),
            self.dup,
            self.reordered,
            self.longest_gap_ms,
            self.longest_gap_at_ms
        )
    }
}

/// Receiver state, fed one datagram at a time (kept apart from the socket for tests).
pub struct Tally {
    seen: Vec<u64>,
    highest: Option<u64>,
    first: Option<Instant>,
    last: Option<Instant>,
    gap_report_ms: u64,
    report: RecvReport,
}

impl Tally {
    /// An empty tally listing gaps of at least `gap_report_ms`.
    pub fn new(gap_report_ms: u64) -> Self {
        Self { seen: Vec::new(), highest: None, first: None, last: None, gap_report_ms, report: RecvReport::default() }
    }

    /// Counts one datagram that arrived at `now`. Returns true for an end marker.
    pub fn add(&mut self, d: &[u8], now: Instant) -> bool {
        match parse(d) {
            Some((KIND_END, total)) => {
                self.report.total = Some(total);
                true
            }
            Some((KIND_DATA, seq)) if seq < MAX_SEQ => {
                self.data(seq, now);
                false
            }
            _ => false,
        }
    }

    fn data(&mut self, seq: u64, now: Instant) {
        let first = *self.first.get_or_insert(now);
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last).as_millis() as u64;
            let at = last.saturating_duration_since(first).as_millis() as u64;
            if gap > self.report.longest_gap_ms {
                self.report.longest_gap_ms = gap;
                self.report.longest_gap_at_ms = at;
            }
            if gap >= self.gap_report_ms && self.report.gaps.len() < MAX_GAPS {
                self.report.gaps.push((at, gap));
            }
        }
        self.last = Some(now);
        self.report.received += 1;
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let Some(w) = self.seen.get_mut(word) else { return };
        if *w & (1 << bit) != 0 {
            self.report.dup += 1;
            return;
        }
        *w |= 1 << bit;
        self.report.unique += 1;
        match self.highest {
            Some(h) if seq < h => self.report.reordered += 1,
            _ => self.highest = Some(seq),
        }
    }

    /// True once a data datagram arrived.
    #[cfg(test)]
    pub fn started(&self) -> bool {
        self.first.is_some()
    }

    /// When the last data datagram arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last
    }

    /// The final report.
    pub fn finish(mut self) -> RecvReport {
        self.report.highest = self.highest;
        let end = self.report.total.or(self.highest.map(|h| h + 1)).unwrap_or(0).min(MAX_SEQ);
        self.report.lost_ranges = missing_ranges(&self.seen, end, MAX_GAPS);
        self.report
    }
}

/// Runs of clear bits below `end` in the bitmap, at most `max` of them.
fn missing_ranges(seen: &[u64], end: u64, max: usize) -> Vec<(u64, u64)> {
    let is_seen = |seq: u64| seen.get((seq / 64) as usize).is_some_and(|w| w & (1 << (seq % 64)) != 0);
    let mut out = Vec::new();
    let mut start: Option<u64> = None;
    for seq in 0..end {
        match (is_seen(seq), start) {
            (false, None) => start = Some(seq),
            (true, Some(s)) => {
                out.push((s, seq - 1));
                start = None;
            }
            _ => {}
        }
        if out.len() >= max {
            return out;
        }
    }
    if let Some(s) = start {
        out.push((s, end - 1));
    }
    out
}

/// Receives until the end marker (plus a short linger), or until nothing arrived for
/// `idle` after the first datagram, or for a minute before it.
pub fn receive(socket: &UdpSocket, idle: Duration, gap_report_ms: u64) -> Result<RecvReport, String> {
    socket.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| format!("set timeout: {e}"))?;
    let started = Instant::now();
    let mut tally = Tally::new(gap_report_ms);
    let mut buf = vec![0u8; 65_536];
    let mut ended: Option<Instant> = None;
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                if tally.add(buf.get(..n).unwrap_or_default(), Instant::now()) && ended.is_none() {
                    ended = Some(Instant::now());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
        let now = Instant::now();
        let done = match (ended, tally.last_arrival()) {
            (Some(t), _) => now.duration_since(t) >= LINGER,
            (None, Some(last)) => now.duration_since(last) >= idle,
            (None, None) => now.duration_since(started) >= FIRST_WAIT,
        };
        if done {
            break;
        }
    }
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seq: u64) -> Vec<u8> {
        datagram(KIND_DATA, seq, 64)
    }

    #[test]
    fn datagrams_round_trip_and_foreign_data_is_ignored() {
        assert_eq!(parse(&d(7)), Some((KIND_DATA, 7)));
        assert_eq!(parse(&datagram(KIND_END, 99, 16)), Some((KIND_END, 99)));
        assert_eq!(parse(b"VGSQ"), None);
        assert_eq!(parse(&[0u8; 64]), None);
    }

    #[test]
    fn counts_loss_duplicates_reordering_and_the_longest_gap() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut t = Tally::new(50);
        for (seq, at) in [(0, 0), (1, 1), (3, 2), (2, 3), (3, 4), (6, 120), (7, 121)] {
            assert!(!t.add(&d(seq), ms(at)));
        }
        assert!(!t.add(b"junk", ms(122)));
        assert!(t.add(&datagram(KIND_END, 10, 16), ms(123)));
        let r = t.finish();
        assert_eq!((r.received, r.unique, r.dup, r.reordered), (7, 6, 1, 1));
        assert_eq!(r.total, Some(10));
        // 4, 5, 8 and 9 (the tail) never arrived.
        assert_eq!(r.lost(), 4);
        assert_eq!((r.longest_gap_ms, r.longest_gap_at_ms), (116, 4));
        assert_eq!(r.gaps, vec![(4, 116)]);
        assert_eq!(r.lost_ranges, vec![(4, 5), (8, 9)]);
        assert!(r.to_string().contains("lost=4 dup=1 reordered=1 total=10 longest_gap_ms=116"));
    }

    #[test]
    fn without_end_marker_loss_counts_up_to_the_highest_seen() {
        let now = Instant::now();
        let mut t = Tally::new(50);
        t.add(&d(0), now);
        t.add(&d(4), now);
        let r = t.finish();
        assert_eq!(r.total, None);
        assert_eq!(r.lost(), 3);
        assert!(r.to_string().contains("total=?"));
    }

    #[test]
    fn huge_sequence_numbers_are_ignored() {
        let mut t = Tally::new(50);
        t.add(&d(u64::MAX), Instant::now());
        assert!(!t.started());
    }
}
