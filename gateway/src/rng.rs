//! The CSPRNG handed to `ike` (SPIs, nonces, DH private keys): the OS generator
//! through `ring::rand::SystemRandom`.

use ring::rand::{SecureRandom, SystemRandom};

/// `ike::Rng` backed by the operating system's CSPRNG (getrandom).
#[derive(Debug)]
pub struct SystemRng(SystemRandom);

impl SystemRng {
    /// A new handle (cheap; the OS holds the state).
    pub fn new() -> Self {
        Self(SystemRandom::new())
    }
}

impl Default for SystemRng {
    fn default() -> Self {
        Self::new()
    }
}

impl ike::Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        if self.0.fill(buf).is_err() {
            // Fail closed: handing out predictable nonces or DH keys would silently
            // break every SA. getrandom(2) only fails on a broken kernel.
            tracing::error!("the OS random number generator failed; aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike::Rng;

    #[test]
    fn fills_with_distinct_random_bytes() {
        let mut r = SystemRng::new();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        r.fill(&mut a);
        r.fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }
}
