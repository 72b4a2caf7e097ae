//! Logging of what unauthenticated input provokes: rate-limited and truncated, so a
//! flood of crafted datagrams costs a few log lines, not one per datagram, and a peer's
//! 64 KiB proposal list cannot become a 100 KB log line.

use ipsec_types::Timestamp;
use std::time::Duration;

/// A logged line is cut after this many bytes.
pub(crate) const MAX_LINE: usize = 512;

/// A token bucket: `burst` events at once, then one per `every`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    burst: u32,
    every: Duration,
    tokens: u32,
    refilled_at: Option<Timestamp>,
}

impl TokenBucket {
    pub(crate) const fn new(burst: u32, every: Duration) -> Self {
        Self { burst, every, tokens: burst, refilled_at: None }
    }

    /// Takes a token if one is left at `now`.
    pub(crate) fn take(&mut self, now: Timestamp) -> bool {
        let since = self.refilled_at.map_or(Duration::MAX, |t| now.saturating_since(t));
        if since >= self.every {
            let steps = since.as_nanos() / self.every.as_nanos().max(1);
            let steps = u32::try_from(steps).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(steps).min(self.burst);
            self.refilled_at = Some(now);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Log lines provoked by unauthenticated input: 20 at once, then 5 a second.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    bucket: TokenBucket,
    /// Lines suppressed since the last one let through.
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self { bucket: TokenBucket::new(20, Duration::from_millis(200)), suppressed: 0 }
    }
}

impl LogLimiter {
    /// Whether a line may be logged now. When lines were suppressed before this one, it
    /// says how many (once).
    pub(crate) fn allow(&mut self, now: Timestamp) -> bool {
        if !self.bucket.take(now) {
            self.suppressed = self.suppressed.saturating_add(1);
            return false;
        }
        if self.suppressed > 0 {
            tracing::warn!(
                "{} log lines about unauthenticated IKE input were suppressed (rate limit)",
                std::mem::take(&mut self.suppressed)
            );
        }
        true
    }
}

/// Stateless answers to unauthenticated requests (IKE_SA_INIT refusals): 100 at once,
/// then 100 a second, so spoofed requests cannot turn the gateway into a reflector.
pub(crate) fn answer_bucket() -> TokenBucket {
    TokenBucket::new(100, Duration::from_millis(10))
}

/// `s` cut to [`MAX_LINE`] bytes (at a character boundary), saying how much was cut.
pub(crate) fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_LINE {
        return s.into();
    }
    let mut end = MAX_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", s.get(..end).unwrap_or(""), s.len() - end).into()
}

/// `tracing::warn!` for a line provoked by unauthenticated input: rate-limited by the
/// context's [`LogLimiter`] and cut to [`MAX_LINE`] bytes.
macro_rules! warn_unauth {
    ($ctx:expr, $($arg:tt)*) => {
        if $ctx.log.allow($ctx.now) {
            let line = format!($($arg)*);
            tracing::warn!("{}", $crate::log::clip(&line));
        }
    };
}
pub(crate) use warn_unauth;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_set_rate() {
        let mut l = LogLimiter::default();
        let t0 = Timestamp::from_secs(10);
        let allowed = (0..1000).filter(|_| l.allow(t0)).count();
        assert_eq!(allowed, 20);
        assert_eq!(l.suppressed, 980);
        // One second later: five more lines.
        let t1 = Timestamp::from_secs(11);
        let allowed = (0..1000).filter(|_| l.allow(t1)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn clips_long_lines_at_a_char_boundary() {
        let long = "é".repeat(10_000);
        let c = clip(&long);
        assert!(c.len() < MAX_LINE + 40, "{}", c.len());
        assert!(c.ends_with("more bytes)"));
        assert_eq!(clip("short"), "short");
    }
}
