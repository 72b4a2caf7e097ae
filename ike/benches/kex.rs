//! Cost of one key exchange per group: our key generation plus the shared secret with a
//! peer's value (what a responder spends on an IKE_SA_INIT, and each side on a rekey with
//! a key exchange). A plain timed loop, not criterion: the numbers go into notes, nothing
//! asserts on them.
//!
//! `cargo bench -p ike --bench kex` (add a number of seconds per group, default 2, as the
//! first argument after `--`).
//!
//! Prints, per group, the mean wall-clock time and the mean CPU time of this thread
//! (CLOCK_THREAD_CPUTIME_ID), which stays meaningful on a shared machine where other
//! processes take the CPU.

use cpu_time::ThreadTime;
use ike::crypto::KeyExchange;
use ike::Rng;
use ipsec_types::DhGroup;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// xorshift: fast, deterministic, good enough to feed private keys to a benchmark.
struct BenchRng(u64);
impl Rng for BenchRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

fn main() {
    let per_group = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<f64>().ok())
        .map_or(Duration::from_secs(2), Duration::from_secs_f64);
    let groups = [
        DhGroup::Curve25519,
        DhGroup::Ecp256,
        DhGroup::Ecp384,
        DhGroup::Ecp521,
        DhGroup::Modp1024,
        DhGroup::Modp2048,
        DhGroup::Modp3072,
        DhGroup::Modp4096,
    ];
    let mut rng = BenchRng(0x9e37_79b9_7f4a_7c15);
    println!("{:<12} {:>8} {:>14} {:>14}", "group", "runs", "wall/exchange", "cpu/exchange");
    for group in groups {
        let peer = KeyExchange::generate(group, &mut rng).public_value();
        // One untimed run: the MODP Montgomery parameters are computed on first use.
        black_box(KeyExchange::generate(group, &mut rng).agree(&peer).expect("valid"));
        let (wall, cpu) = (Instant::now(), ThreadTime::now());
        let mut runs = 0u32;
        while wall.elapsed() < per_group || runs < 3 {
            let ours = KeyExchange::generate(group, &mut rng);
            black_box(ours.public_value());
            black_box(ours.agree(black_box(&peer)).expect("valid"));
            runs += 1;
        }
        let (wall, cpu) = (wall.elapsed() / runs, cpu.elapsed() / runs);
        println!("{:<12} {:>8} {:>14.3?} {:>14.3?}", group.keyword(), runs, wall, cpu);
    }
}
