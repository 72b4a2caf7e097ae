//! esp seal+open of 1400-byte inner packets, for every ESP suite, beside the bare
//! libraries doing the same cryptography: the ratio is the datapath's overhead over the
//! cipher itself.
//!
//! Suites: AES-GCM-16 128/256 and ChaCha20-Poly1305 (ring), AES-CBC 128/192/256 (`aes`
//! and `cbc`) with HMAC-SHA1-96, HMAC-SHA2-256-128, -384-192 and -512-256 (RustCrypto
//! `hmac` with `sha1`/`sha2`). Baselines: ring AES-128-GCM, AES-256-GCM and
//! ChaCha20-Poly1305 seal+open alone; for CBC, `aes`+`cbc` encryption and decryption of
//! the 1408-byte ciphertext plus two RustCrypto HMACs over header, IV and ciphertext
//! (what one seal and one open must compute at the least); and HMAC alone, ring beside
//! RustCrypto (the choice of RustCrypto's HMAC rests on it).
//!
//! `cargo bench -p esp --bench seal_open` (add `-- --quick` for a short run).
//!
//! Groups: `seal_open_1400` (and `_hmac`) in wall-clock time (criterion's default), and
//! `seal_open_1400_cpu` (and `_hmac`) in this thread's CPU time, which stays meaningful
//! on a shared machine where other processes steal the CPU (wall-clock numbers there
//! swing by 2x). Then the interleaved ratios (see `interleaved`), printed per suite.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit};
use cpu_time::ThreadTime;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use esp::{Opened, SaTable, Sealed};
use hmac::Mac;
use ipsec_types::{
    ChildRef, DatapathCommand, Direction, EncrAlg, EspKey, IntegAlg, SaEndpoints, SaParams, Spi, Timestamp,
    TrafficSelector,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305};
use std::hint::black_box;
use std::time::Duration;

/// Criterion measurement of the benchmark thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
struct ThreadCpu;

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if ns < 1e3 {
            (1.0, "ns")
        } else if ns < 1e6 {
            (1e-3, "µs")
        } else {
            (1e-6, "ms")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let bytes = match *t {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => b as f64,
            Throughput::Elements(e) => e as f64,
        };
        // ns per iteration -> MiB/s of CPU time.
        values.iter_mut().for_each(|v| *v = bytes * 1e9 / *v / (1024.0 * 1024.0));
        "MiB/s (cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = ThreadTime;
    type Value = Duration;
    fn start(&self) -> ThreadTime {
        ThreadTime::now()
    }
    fn end(&self, i: ThreadTime) -> Duration {
        i.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

const LEN: usize = 1400;
/// The ESP ciphertext of a `LEN`-byte packet with AES-CBC: inner, padding, 2-byte trailer.
const CBC_CT: usize = (LEN + 2).next_multiple_of(16);

type Suite = (EncrAlg, Option<IntegAlg>);

/// Every suite, AEADs first.
fn suites() -> Vec<Suite> {
    let mut v: Vec<Suite> =
        vec![(EncrAlg::AesGcm16_128, None), (EncrAlg::AesGcm16_256, None), (EncrAlg::ChaCha20Poly1305, None)];
    for e in [EncrAlg::AesCbc128, EncrAlg::AesCbc192, EncrAlg::AesCbc256] {
        v.extend(IntegAlg::ALL.iter().map(|i| (e, Some(*i))));
    }
    v
}

fn suite_name(s: Suite) -> String {
    match s.1 {
        None => s.0.keyword().to_string(),
        Some(i) => format!("{}-{}", s.0.keyword(), i.keyword()),
    }
}

fn suite_key(s: Suite) -> EspKey {
    let len = EspKey::keymat_len(s.0, s.1).unwrap();
    EspKey::from_keymat(s.0, s.1, &vec![7u8; len]).unwrap()
}

fn params(direction: Direction, suite: Suite) -> SaParams {
    let (a, b) =
        (TrafficSelector::parse_cidr("10.1.0.0/16").unwrap(), TrafficSelector::parse_cidr("10.2.0.0/16").unwrap());
    let (local_ts, remote_ts) = if direction == Direction::Outbound { (a, b) } else { (b, a) };
    SaParams {
        spi: Spi(0x1234_5678),
        direction,
        child: ChildRef { tunnel: "bench".into(), child_id: 1 },
        endpoints: SaEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            encap: None,
        },
        key: suite_key(suite),
        replay_window: 1024,
        esn: false,
        local_ts: vec![local_ts],
        remote_ts: vec![remote_ts],
        limits: Default::default(),
    }
}

/// A `LEN`-byte IPv4/UDP packet from the local to the remote selector.
fn inner() -> Vec<u8> {
    let (a, b) = ([10, 1, 0, 1].into(), [10, 2, 0, 1].into());
    testkit::packet::ipv4_udp(a, b, 4000, 5000, &[0; LEN - 28])
}

/// Both workloads with their buffers, so each round is one call.
struct Fixture {
    left: SaTable,
    right: SaTable,
    pkt: Vec<u8>,
    wire: Vec<u8>,
    back: Vec<u8>,
    key: LessSafeKey,
    gcm128: LessSafeKey,
    chacha: LessSafeKey,
    buf: Vec<u8>,
    ctr: u64,
}

impl Fixture {
    fn new(suite: Suite) -> Self {
        Self {
            left: SaTable::new().apply(&DatapathCommand::InstallOutbound(params(Direction::Outbound, suite))).unwrap(),
            right: SaTable::new().apply(&DatapathCommand::InstallInbound(params(Direction::Inbound, suite))).unwrap(),
            pkt: inner(),
            wire: vec![0u8; LEN + esp::MAX_OVERHEAD],
            back: vec![0u8; LEN + esp::MAX_OVERHEAD],
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap()),
            gcm128: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7u8; 16]).unwrap()),
            chacha: LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).unwrap()),
            buf: vec![0u8; CBC_CT + 24],
            ctr: 0,
        }
    }

    /// esp: seal one 1400-byte inner packet, open the ESP packet.
    fn esp_round(&mut self) -> usize {
        let n = match self.left.seal(Timestamp::ZERO, black_box(&self.pkt), &mut self.wire) {
            Sealed::Send { packet, .. } => packet.len(),
            Sealed::Drop(r) => panic!("{r:?}"),
        };
        match self.right.open(Timestamp::ZERO, &self.wire[..n], &mut self.back) {
            Opened::Deliver { packet, .. } => black_box(packet.len()),
            Opened::Drop(r) => panic!("{r:?}"),
        }
    }

    /// Bare ring: copy 1400 bytes in, AES-256-GCM seal in place, open in place.
    fn ring_round(&mut self) -> usize {
        let key = &self.key;
        Self::aead_round(key, &mut self.ctr, &self.pkt, &mut self.buf)
    }

    /// Bare ring: the same with AES-128-GCM.
    fn gcm128_round(&mut self) -> usize {
        let key = &self.gcm128;
        Self::aead_round(key, &mut self.ctr, &self.pkt, &mut self.buf)
    }

    /// Bare ring: the same with ChaCha20-Poly1305.
    fn chacha_round(&mut self) -> usize {
        let key = &self.chacha;
        Self::aead_round(key, &mut self.ctr, &self.pkt, &mut self.buf)
    }

    fn aead_round(key: &LessSafeKey, ctr: &mut u64, pkt: &[u8], buf: &mut [u8]) -> usize {
        *ctr += 1;
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&ctr.to_be_bytes());
        let aad = ctr.to_be_bytes();
        let buf = &mut buf[..LEN];
        buf.copy_from_slice(black_box(pkt));
        let tag = key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&aad), buf).unwrap();
        let pt =
            key.open_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&aad), tag, buf, 0..).unwrap();
        black_box(pt.len())
    }
}

/// The least a CBC suite must compute per seal+open: CBC-encrypt the 1408-byte
/// ciphertext, HMAC over header + IV + ciphertext, HMAC again on receipt, CBC-decrypt.
struct BareCbc {
    aes: BareAes,
    hmac: BareMac,
    /// SPI, seq, IV, ciphertext.
    buf: Vec<u8>,
    back: Vec<u8>,
    pkt: Vec<u8>,
}

impl BareCbc {
    fn new(suite: Suite) -> Self {
        let integ = suite.1.unwrap();
        Self {
            aes: match suite.0 {
                EncrAlg::AesCbc128 => BareAes::A128(aes::Aes128::new_from_slice(&[7; 16]).unwrap()),
                EncrAlg::AesCbc192 => BareAes::A192(aes::Aes192::new_from_slice(&[7; 24]).unwrap()),
                _ => BareAes::A256(aes::Aes256::new_from_slice(&[7; 32]).unwrap()),
            },
            hmac: BareMac::rust_crypto(integ),
            buf: vec![0u8; 24 + CBC_CT],
            back: vec![0u8; CBC_CT],
            pkt: inner(),
        }
    }

    fn round(&mut self) -> usize {
        let iv = [9u8; 16];
        let ct = &mut self.buf[24..];
        ct[..LEN].copy_from_slice(black_box(&self.pkt));
        match &self.aes {
            BareAes::A128(k) => cbc_enc(k, &iv, ct),
            BareAes::A192(k) => cbc_enc(k, &iv, ct),
            BareAes::A256(k) => cbc_enc(k, &iv, ct),
        }
        let tag = self.hmac.mac(&self.buf);
        let check = self.hmac.mac(black_box(&self.buf));
        assert_eq!(tag, check);
        let ct = &self.buf[24..];
        match &self.aes {
            BareAes::A128(k) => cbc_dec(k, &iv, ct, &mut self.back),
            BareAes::A192(k) => cbc_dec(k, &iv, ct, &mut self.back),
            BareAes::A256(k) => cbc_dec(k, &iv, ct, &mut self.back),
        }
        black_box(self.back.len())
    }
}

/// Expanded AES keys (the key schedule once, as a datapath holds them).
enum BareAes {
    A128(aes::Aes128),
    A192(aes::Aes192),
    A256(aes::Aes256),
}

fn cbc_enc<C>(k: &C, iv: &[u8; 16], buf: &mut [u8])
where
    C: aes::cipher::BlockEncrypt + aes::cipher::BlockCipher,
    C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    let len = buf.len();
    cbc::Encryptor::<&C>::inner_iv_init(k, &(*iv).into()).encrypt_padded_mut::<NoPadding>(buf, len).unwrap();
}

fn cbc_dec<C>(k: &C, iv: &[u8; 16], ct: &[u8], out: &mut [u8])
where
    C: aes::cipher::BlockDecrypt + aes::cipher::BlockCipher,
    C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    cbc::Decryptor::<&C>::inner_iv_init(k, &(*iv).into()).decrypt_padded_b2b_mut::<NoPadding>(ct, out).unwrap();
}

fn ring_hmac_alg(i: IntegAlg) -> ring::hmac::Algorithm {
    match i {
        IntegAlg::HmacSha1_96 => ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        IntegAlg::HmacSha256_128 => ring::hmac::HMAC_SHA256,
        IntegAlg::HmacSha384_192 => ring::hmac::HMAC_SHA384,
        IntegAlg::HmacSha512_256 => ring::hmac::HMAC_SHA512,
    }
}

/// HMAC alone over one ESP packet's authenticated bytes, ring vs RustCrypto (a keyed
/// state cloned per packet, which is how a datapath would hold it).
enum BareMac {
    Ring(ring::hmac::Key),
    Sha1(hmac::Hmac<sha1::Sha1>),
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha384(hmac::Hmac<sha2::Sha384>),
    Sha512(hmac::Hmac<sha2::Sha512>),
}

impl BareMac {
    fn rust_crypto(i: IntegAlg) -> Self {
        let k = vec![7u8; i.key_len()];
        match i {
            IntegAlg::HmacSha1_96 => Self::Sha1(Mac::new_from_slice(&k).unwrap()),
            IntegAlg::HmacSha256_128 => Self::Sha256(Mac::new_from_slice(&k).unwrap()),
            IntegAlg::HmacSha384_192 => Self::Sha384(Mac::new_from_slice(&k).unwrap()),
            IntegAlg::HmacSha512_256 => Self::Sha512(Mac::new_from_slice(&k).unwrap()),
        }
    }

    fn mac(&self, data: &[u8]) -> u8 {
        fn rc<M: Mac + Clone>(m: &M, data: &[u8]) -> u8 {
            let mut m = m.clone();
            m.update(data);
            m.finalize().into_bytes()[0]
        }
        match self {
            Self::Ring(k) => ring::hmac::sign(k, data).as_ref()[0],
            Self::Sha1(m) => rc(m, data),
            Self::Sha256(m) => rc(m, data),
            Self::Sha384(m) => rc(m, data),
            Self::Sha512(m) => rc(m, data),
        }
    }
}

fn bench_wall(c: &mut Criterion) {
    bench(c, "seal_open_1400");
}

fn bench_cpu(c: &mut Criterion<ThreadCpu>) {
    bench(c, "seal_open_1400_cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(LEN as u64));
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(30);
    let mut f = Fixture::new((EncrAlg::AesGcm16_256, None));
    // `esp` (AES-256-GCM) keeps its name from before the other suites.
    g.bench_function("esp", |b| b.iter(|| f.esp_round()));
    g.bench_function("bare_ring_aes256gcm", |b| b.iter(|| f.ring_round()));
    g.bench_function("bare_ring_aes128gcm", |b| b.iter(|| f.gcm128_round()));
    g.bench_function("bare_ring_chacha20poly1305", |b| b.iter(|| f.chacha_round()));
    for suite in suites() {
        let mut f = Fixture::new(suite);
        g.bench_function(format!("esp_{}", suite_name(suite)), |b| b.iter(|| f.esp_round()));
    }
    for suite in suites().into_iter().filter(|s| s.1.is_some()) {
        let mut bare = BareCbc::new(suite);
        g.bench_function(format!("bare_{}", suite_name(suite)), |b| b.iter(|| bare.round()));
    }
    g.finish();
    // HMAC alone over 8 + 16 + 1408 bytes (one seal's or one open's ICV input).
    let mut g = c.benchmark_group(format!("{group}_hmac"));
    g.throughput(Throughput::Bytes(LEN as u64));
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(30);
    let data = vec![5u8; 24 + CBC_CT];
    for i in IntegAlg::ALL {
        let ring = BareMac::Ring(ring::hmac::Key::new(ring_hmac_alg(i), &vec![7u8; i.key_len()]));
        let rc = BareMac::rust_crypto(i);
        g.bench_function(format!("ring_{}", i.keyword()), |b| b.iter(|| ring.mac(black_box(&data))));
        g.bench_function(format!("rustcrypto_{}", i.keyword()), |b| b.iter(|| rc.mac(black_box(&data))));
    }
    g.finish();
}

/// Runs `a` and `b` alternately in rounds of `iters` iterations, each timed in thread
/// CPU time, and returns the quartiles of the per-round ratios time(b) / time(a) (so
/// 100% = `a` as fast as `b`). Slow drifts (other processes, CPU frequency, a busy SMT
/// sibling) hit both sides of a round alike.
fn interleave<S>(
    rounds: usize,
    iters: usize,
    s: &mut S,
    mut a: impl FnMut(&mut S) -> usize,
    mut b: impl FnMut(&mut S) -> usize,
) -> [f64; 3] {
    for _ in 0..iters {
        a(s);
        b(s);
    }
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = ThreadTime::now();
            for _ in 0..iters {
                a(s);
            }
            let ta = t.elapsed().as_secs_f64();
            let t = ThreadTime::now();
            for _ in 0..iters {
                b(s);
            }
            t.elapsed().as_secs_f64() / ta
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let pct = |q: usize| ratios.get(q * (ratios.len() - 1) / 4).copied().unwrap_or(0.0) * 100.0;
    [pct(1), pct(2), pct(3)]
}

/// The ratio the product goal is stated in, measured robustly (see [`interleave`]): esp
/// seal+open against the bare library doing the same cryptography, for every suite.
fn interleaved() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    if std::env::args().any(|a| a == "--profile-time") {
        return; // profiling one criterion benchmark (`--profile-time N`): nothing else.
    }
    let (rounds, iters) = if bench_mode { (51, 2000) } else { (3, 10) };
    for suite in suites() {
        // One fixture holds both sides, so both work on neighbouring buffers.
        let mut f = (Fixture::new(suite), suite.1.map(|_| BareCbc::new(suite)));
        let esp = |f: &mut (Fixture, Option<BareCbc>)| f.0.esp_round();
        let (baseline, q) = match suite.0 {
            EncrAlg::AesGcm16_128 => {
                ("bare ring AES-128-GCM", interleave(rounds, iters, &mut f, esp, |f| f.0.gcm128_round()))
            }
            EncrAlg::AesGcm16_256 => {
                ("bare ring AES-256-GCM", interleave(rounds, iters, &mut f, esp, |f| f.0.ring_round()))
            }
            EncrAlg::ChaCha20Poly1305 => {
                ("bare ring ChaCha20-Poly1305", interleave(rounds, iters, &mut f, esp, |f| f.0.chacha_round()))
            }
            _ => (
                "bare aes+cbc + 2x RustCrypto HMAC",
                interleave(rounds, iters, &mut f, esp, |f| f.1.as_mut().map_or(0, BareCbc::round)),
            ),
        };
        if bench_mode {
            println!(
                "interleaved: esp {} seal+open at {:.0}% of {baseline} (1400 B; median of {rounds} rounds x {iters}, \
                 thread CPU time; quartiles {:.0}%..{:.0}%)",
                suite_name(suite),
                q[1],
                q[0],
                q[2]
            );
        }
    }
    if !bench_mode {
        return; // `cargo test --benches`: a smoke run of a debug build, not a measurement.
    }
    // HMAC alone: ring / RustCrypto time ratio (>100% = RustCrypto faster).
    let data = vec![5u8; 24 + CBC_CT];
    for i in IntegAlg::ALL {
        let ring = BareMac::Ring(ring::hmac::Key::new(ring_hmac_alg(i), &vec![7u8; i.key_len()]));
        let rc = BareMac::rust_crypto(i);
        let q = interleave(
            rounds,
            iters,
            &mut (),
            |_| usize::from(ring.mac(black_box(&data))),
            |_| usize::from(rc.mac(black_box(&data))),
        );
        println!(
            "interleaved: RustCrypto HMAC-{} takes {:.0}% of ring's time over {} B (quartiles {:.0}%..{:.0}%)",
            i.keyword(),
            q[1],
            data.len(),
            q[0],
            q[2]
        );
    }
}

criterion_group!(wall, bench_wall);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench_cpu
}
criterion_main!(wall, cpu, interleaved);
