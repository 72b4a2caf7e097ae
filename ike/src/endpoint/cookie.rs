//! Stateless responder COOKIEs (RFC 7296 2.6). Once `cookie_threshold` half-open IKE
//! SAs exist, an IKE_SA_INIT request gets state only if it carries a COOKIE we gave to
//! its source address: a spoofed flood then costs one MAC and one small answer per
//! datagram, and no state.
//!
//! Cookie = version (1 byte) | HMAC-SHA256(secret[version], SPIi | IPi | Ni). The secret
//! is drawn from the endpoint's RNG and replaced every [`ROTATE_EVERY`]; COOKIEs made with
//! the previous secret stay valid until the next rotation, so a COOKIE lives between one
//! and two rotation periods.

use crate::Rng;
use ipsec_types::Timestamp;
use ring::hmac;
use std::net::IpAddr;
use std::time::Duration;

/// How often the COOKIE secret changes.
pub(crate) const ROTATE_EVERY: Duration = Duration::from_secs(120);

#[derive(Default)]
pub(crate) struct Cookies {
    /// (version, key) of the current and the previous secret.
    current: Option<(u8, hmac::Key)>,
    previous: Option<(u8, hmac::Key)>,
    rotated_at: Option<Timestamp>,
}

impl Cookies {
    /// Draws the first secret, or a new one when the current is [`ROTATE_EVERY`] old.
    pub(crate) fn rotate(&mut self, now: Timestamp, rng: &mut dyn Rng) {
        if self.current.is_some() && self.rotated_at.is_some_and(|t| now.saturating_since(t) < ROTATE_EVERY) {
            return;
        }
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill(&mut secret[..]);
        let version = self.current.as_ref().map_or(0, |(v, _)| v.wrapping_add(1));
        // After a quiet spell the current secret may be old: it only stays (as the
        // previous one) if it was made within the last period, so no COOKIE outlives
        // two periods.
        let recent = self.rotated_at.is_some_and(|t| now.saturating_since(t) < ROTATE_EVERY * 2);
        self.previous = self.current.take().filter(|_| recent);
        self.current = Some((version, hmac::Key::new(hmac::HMAC_SHA256, &secret[..])));
        self.rotated_at = Some(now);
    }

    fn tag(key: &hmac::Key, ni: &[u8], ip: IpAddr, spi_i: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(&spi_i.to_be_bytes());
        match ip {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(ni);
        ctx.sign()
    }

    /// The COOKIE for a request with nonce `ni` and SPI `spi_i` from `ip` (call
    /// `rotate` first).
    pub(crate) fn make(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        let Some((version, key)) = &self.current else { return Vec::new() };
        let mut c = vec![*version];
        c.extend_from_slice(Self::tag(key, ni, ip, spi_i).as_ref());
        c
    }

    /// Whether `cookie` is one we made (with the current or previous secret) for this
    /// nonce, address and SPI. Compared in constant time.
    pub(crate) fn verify(&self, cookie: &[u8], ni: &[u8], ip: IpAddr, spi_i: u64) -> bool {
        let Some((&version, mac)) = cookie.split_first() else { return false };
        let key = [&self.current, &self.previous].into_iter().flatten().find(|(v, _)| *v == version);
        let Some((_, key)) = key else { return false };
        crate::crypto::ct_eq(Self::tag(key, ni, ip, spi_i).as_ref(), mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn cookies_bind_source_spi_and_nonce_and_expire_after_two_rotations() {
        let mut c = Cookies::default();
        let mut rng = TestRng::new(1);
        let t0 = Timestamp::from_secs(100);
        c.rotate(t0, &mut rng);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let cookie = c.make(b"nonce-nonce-nonce", ip, 42);
        assert_eq!(cookie.len(), 33);
        assert!(c.verify(&cookie, b"nonce-nonce-nonce", ip, 42));
        assert!(!c.verify(&cookie, b"nonce-nonce-nonce", other, 42));
        assert!(!c.verify(&cookie, b"nonce-nonce-nonce", ip, 43));
        assert!(!c.verify(&cookie, b"other-nonce-nonce", ip, 42));
        let mut tampered = cookie.clone();
        tampered[5] ^= 1;
        assert!(!c.verify(&tampered, b"nonce-nonce-nonce", ip, 42));
        assert!(!c.verify(&[], b"nonce-nonce-nonce", ip, 42));
        assert!(!c.verify(&cookie[..10], b"nonce-nonce-nonce", ip, 42));
        // Not rotated within the period; still valid after one rotation, not after two.
        c.rotate(t0 + Duration::from_secs(60), &mut rng);
        assert_eq!(c.make(b"nonce-nonce-nonce", ip, 42), cookie);
        c.rotate(t0 + ROTATE_EVERY, &mut rng);
        assert_ne!(c.make(b"nonce-nonce-nonce", ip, 42), cookie);
        assert!(c.verify(&cookie, b"nonce-nonce-nonce", ip, 42));
        c.rotate(t0 + ROTATE_EVERY * 2, &mut rng);
        assert!(!c.verify(&cookie, b"nonce-nonce-nonce", ip, 42));
        // After a day without COOKIEs, yesterday's are not accepted either.
        let fresh = c.make(b"nonce-nonce-nonce", ip, 42);
        c.rotate(t0 + Duration::from_secs(86_400), &mut rng);
        assert!(!c.verify(&fresh, b"nonce-nonce-nonce", ip, 42));
    }
}
