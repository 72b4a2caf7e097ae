//! Known answers for the IKEv1 key material, computed independently of this crate with
//! Python's `hmac` and `hashlib` by this script (Python 3; output `<hash> <name> <hex>`):
//!
//! ```text
//! import hmac, hashlib
//! def prf(h, k, *parts): return hmac.new(k, b"".join(parts), h).digest()
//! def H(h, *parts): return h(b"".join(parts)).digest()
//! psk = b"classic gateway secret"
//! ni = bytes(range(0x10, 0x20)); nr = bytes(range(0x40, 0x60))
//! gxi = bytes([0xa1]) * 128; gxr = bytes([0xb2]) * 128
//! gxy = bytes((i * 7 + 3) % 256 for i in range(128))
//! ckyi = bytes.fromhex("0102030405060708"); ckyr = bytes.fromhex("f1f2f3f4f5f6f7f8")
//! sai_b = bytes.fromhex("00000001000000010000002c010100010000002401010000800100078002000280030001800400028001000e800b0001000c000400007080")[:]
//! idii_b = bytes.fromhex("01000000c0000201"); idir_b = bytes.fromhex("01000000c6336401")
//! for name, h in (("sha1", hashlib.sha1), ("sha256", hashlib.sha256)):
//!     skeyid = prf(h, psk, ni, nr)
//!     d = prf(h, skeyid, gxy, ckyi, ckyr, b"\0")
//!     a = prf(h, skeyid, d, gxy, ckyi, ckyr, b"\1")
//!     e = prf(h, skeyid, a, gxy, ckyi, ckyr, b"\2")
//!     ka = b""; k = b"\0"
//!     while len(ka) < 32:
//!         k = prf(h, e, k); ka += k
//!     print(name, "skeyid", skeyid.hex()); print(name, "d", d.hex()); print(name, "a", a.hex()); print(name, "e", e.hex())
//!     print(name, "aes256 key", (e if len(e) >= 32 else ka)[:32].hex())
//!     print(name, "aes128 key", e[:16].hex())
//!     print(name, "hash_i", prf(h, skeyid, gxi, gxr, ckyi, ckyr, sai_b, idii_b).hex())
//!     print(name, "hash_r", prf(h, skeyid, gxr, gxi, ckyr, ckyi, sai_b, idir_b).hex())
//!     iv1 = H(h, gxi, gxr)[:16]; print(name, "iv1", iv1.hex())
//!     last = bytes(range(0xc0, 0xd0)); mid = bytes.fromhex("9abcdef0")
//!     print(name, "iv2", H(h, last, mid)[:16].hex())
//!     qni = bytes([0x11]) * 20; qnr = bytes([0x22]) * 24; gqm = bytes((i * 13 + 1) % 256 for i in range(128))
//!     after = bytes.fromhex("0a00001801000000")  # arbitrary bytes after the HASH payload
//!     print(name, "qm_hash1", prf(h, a, mid, after).hex())
//!     print(name, "qm_hash2", prf(h, a, mid, qni, after).hex())
//!     print(name, "qm_hash3", prf(h, a, b"\0", mid, qni, qnr).hex())
//!     print(name, "info_hash", prf(h, a, mid, after).hex())
//!     for pfs in (False, True):
//!         seed = (gqm if pfs else b"") + b"\3" + bytes.fromhex("c0ffee01") + qni + qnr
//!         km = b""; kn = b""
//!         while len(km) < 36:
//!             kn = prf(h, d, kn, seed); km += kn
//!         print(name, "keymat pfs" if pfs else "keymat", km[:36].hex())
//! ```
//!
//! The cipher keys are checked against the script's (AES-256 with SHA-1 needs the
//! Appendix B expansion, AES-128 with either hash and AES-256 with SHA-256 a
//! truncation); the IVs, HASH_I/R, the Quick Mode hashes and KEYMAT (36 octets,
//! AES-128 + HMAC-SHA1, two prf blocks) with and without PFS against its values.

use super::*;

const PSK: &[u8] = b"classic gateway secret";
const CKY_I: u64 = 0x0102_0304_0506_0708;
const CKY_R: u64 = 0xf1f2_f3f4_f5f6_f7f8;
const MID: u32 = 0x9abc_def0;
const SAI_B: &str =
    "00000001000000010000002c010100010000002401010000800100078002000280030001800400028001000e800b0001000c000400007080";
const IDII_B: &str = "01000000c0000201";
const IDIR_B: &str = "01000000c6336401";
/// Message bytes after a HASH payload, for the Quick Mode and Informational hashes.
const AFTER: &str = "0a00001801000000";
const QM_SPI: u32 = 0xc0ff_ee01;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex")
}

struct Inputs {
    ni: Vec<u8>,
    nr: Vec<u8>,
    g_xi: Vec<u8>,
    g_xr: Vec<u8>,
    g_xy: Vec<u8>,
    qni: Vec<u8>,
    qnr: Vec<u8>,
    g_qm: Vec<u8>,
}

fn inputs() -> Inputs {
    Inputs {
        ni: (0x10..0x20).collect(),
        nr: (0x40..0x60).collect(),
        g_xi: vec![0xa1; 128],
        g_xr: vec![0xb2; 128],
        g_xy: (0..128u32).map(|i| ((i * 7 + 3) % 256) as u8).collect(),
        qni: vec![0x11; 20],
        qnr: vec![0x22; 24],
        g_qm: (0..128u32).map(|i| ((i * 13 + 1) % 256) as u8).collect(),
    }
}

/// What the script printed for one hash.
struct Expected {
    skeyid: &'static str,
    d: &'static str,
    a: &'static str,
    aes256: &'static str,
    aes128: &'static str,
    hash_i: &'static str,
    hash_r: &'static str,
    iv1: &'static str,
    iv2: &'static str,
    qm_hash1: &'static str,
    qm_hash2: &'static str,
    qm_hash3: &'static str,
    keymat: &'static str,
    keymat_pfs: &'static str,
}

const SHA1: Expected = Expected {
    skeyid: "69a32da61c1b997103c3d440b399ead52b811525",
    d: "ed003a9576a527d0d413b755fd81c7a39a1d3f24",
    a: "a167f9644012a6ca9fd226a15a69a80fba469271",
    aes256: "e218924bb7f9e6a12e2a83dec1481a68ba5dc469b26faf939ac1bbe5fb51d7ab",
    aes128: "d178b00655bb37293fa987bf57b16f74",
    hash_i: "c593f2b13d94deed55b11321914e22c568281128",
    hash_r: "e54d35a51e4cd39f28abed405d7871e38b41eec7",
    iv1: "31bb0e0865a36e0fa55100e73f0e4fef",
    iv2: "316a3fd522533fb3955f13b59c6bd59b",
    qm_hash1: "32c2e7fadad4471e07d4eb7076cb331976be2a93",
    qm_hash2: "6052f25072c23cf1f1bd87f644713df86af9ccfe",
    qm_hash3: "618422a70ffed01aa4f045bb3ca10b350799069e",
    keymat: "6ca6c7d46e44b5cc3561c8ca990e4d5b93b206893e3596251bc43c7e4c1d659dd4d77f6a",
    keymat_pfs: "bfc905f7cc2d27731603721d9239174a3d2c74bdf7edac667aebd7e5106e7fa1188ea6de",
};

const SHA256: Expected = Expected {
    skeyid: "0b13d9af8dcbba0185a4b526fbd80e92368b73d4f2b586c4d465d16a67eb7f30",
    d: "6e8eb8021f2e8990c55c04222632d4a9d51212785456333f5f4517da059d4c7d",
    a: "760b6f872592589ede5d709fd3bbab15451bfb06aa7209436af9fdfb1a075b7d",
    aes256: "1f151069943ae6327833761360ebf0b6cc6cf4236ce42efe27234c9b79a5ce38",
    aes128: "1f151069943ae6327833761360ebf0b6",
    hash_i: "06da739b3d96939cdf60f79db35af76a8f2f6d81ed79d1650a9b59bf35226920",
    hash_r: "07543a32dd2addff596d668cd663e4359ce53c178f1f6d177c343d78e2fff825",
    iv1: "4ee63ad27587f0e32129bd5c751711d5",
    iv2: "82030e9becc92844fe650da3cd8cdcd9",
    qm_hash1: "463e79e5b1a8801f483b06b76894d4b7b1a188156a08c9d3c3b51f3df09576b3",
    qm_hash2: "3a02599cccd43ca06d3816b90b6a87302b09c09fefeca5e52bde22e9b3b921a2",
    qm_hash3: "f2c24e4affaa6c92f7069b28f4f0944d6c0c06d445a28839bd671dc5c6227b38",
    keymat: "2b8c7e3e614bfe91546c522d3041ce65b6258d5e603520a3b3aa1dc095cec7a3343fcfb5",
    keymat_pfs: "204454bc8023c0e39ad1162a8db56631aab7c5e0bba60eb16b03d868fa0a4b6ef6226756",
};

fn check(prf: PrfAlg, x: &Expected) {
    let i = inputs();
    let keys = |encr| Phase1Keys::derive_psk(prf, encr, PSK, &i.ni, &i.nr, &i.g_xy, CKY_I, CKY_R);
    let k = keys(EncrAlg::AesCbc256);
    assert_eq!(hex::encode(&*k.skeyid), x.skeyid, "SKEYID");
    assert_eq!(hex::encode(&*k.skeyid_d), x.d, "SKEYID_d");
    assert_eq!(hex::encode(&*k.skeyid_a), x.a, "SKEYID_a");
    assert_eq!(hex::encode(&*k.enc_key), x.aes256, "AES-256 key");
    assert_eq!(hex::encode(&*keys(EncrAlg::AesCbc128).enc_key), x.aes128, "AES-128 key");
    assert!(k.cipher().is_some());
    let (sai_b, idii_b, idir_b) = (h(SAI_B), h(IDII_B), h(IDIR_B));
    assert_eq!(hex::encode(&*k.hash_i(&i.g_xi, &i.g_xr, CKY_I, CKY_R, &sai_b, &idii_b)), x.hash_i, "HASH_I");
    assert_eq!(hex::encode(&*k.hash_r(&i.g_xi, &i.g_xr, CKY_I, CKY_R, &sai_b, &idir_b)), x.hash_r, "HASH_R");
    assert_eq!(hex::encode(phase1_iv(prf, &i.g_xi, &i.g_xr)), x.iv1, "phase 1 IV");
    let last: [u8; BLOCK] = std::array::from_fn(|n| 0xc0 + n as u8);
    assert_eq!(hex::encode(phase2_iv(prf, &last, MID)), x.iv2, "phase 2 IV");
    let after = h(AFTER);
    assert_eq!(hex::encode(&*k.quick_hash1(MID, &after)), x.qm_hash1, "HASH(1)");
    assert_eq!(hex::encode(&*k.informational_hash(MID, &after)), x.qm_hash1, "Informational HASH");
    assert_eq!(hex::encode(&*k.quick_hash2(MID, &i.qni, &after)), x.qm_hash2, "HASH(2)");
    assert_eq!(hex::encode(&*k.quick_hash3(MID, &i.qni, &i.qnr)), x.qm_hash3, "HASH(3)");
    let esp = 3;
    let km = k.quick_keymat(None, esp, QM_SPI, &i.qni, &i.qnr, 36);
    assert_eq!(hex::encode(&*km), x.keymat, "KEYMAT");
    let km = k.quick_keymat(Some(&i.g_qm), esp, QM_SPI, &i.qni, &i.qnr, 36);
    assert_eq!(hex::encode(&*km), x.keymat_pfs, "KEYMAT with PFS");
}

#[test]
fn sha1_known_answers() {
    check(PrfAlg::HmacSha1, &SHA1);
}

#[test]
fn sha256_known_answers() {
    check(PrfAlg::HmacSha256, &SHA256);
}

#[test]
fn keymat_is_a_prefix_of_longer_keymat_and_the_spi_matters() {
    let i = inputs();
    let k = Phase1Keys::derive_psk(PrfAlg::HmacSha1, EncrAlg::AesCbc128, PSK, &i.ni, &i.nr, &i.g_xy, CKY_I, CKY_R);
    let short = k.quick_keymat(None, 3, QM_SPI, &i.qni, &i.qnr, 36);
    let long = k.quick_keymat(None, 3, QM_SPI, &i.qni, &i.qnr, 64);
    assert_eq!(long.len(), 64);
    assert_eq!(long[..36], short[..]);
    // The two directions differ only by SPI; so must their keys.
    let other = k.quick_keymat(None, 3, QM_SPI + 1, &i.qni, &i.qnr, 36);
    assert_ne!(other[..], short[..]);
    // The keys fit ESP's AES-128 + HMAC-SHA1 key pair as the datapath takes it.
    let key = ipsec_types::EspKey::from_keymat(EncrAlg::AesCbc128, Some(ipsec_types::IntegAlg::HmacSha1_96), &short);
    assert!(key.is_some());
}

#[test]
fn debug_shows_no_key_bytes() {
    let i = inputs();
    let k = Phase1Keys::derive_psk(PrfAlg::HmacSha1, EncrAlg::AesCbc128, PSK, &i.ni, &i.nr, &i.g_xy, CKY_I, CKY_R);
    let d = format!("{k:?}");
    assert!(!d.contains(&hex::encode(&k.skeyid[..4])) && !d.contains(&format!("{:?}", &k.skeyid[..4])), "{d}");
}

/// NAT-D against Python's hashlib: `hashlib.sha1(ci + cr + socket.inet_aton("192.0.2.1")
/// + (500).to_bytes(2, "big"))`, and SHA-256 with 2001:db8::1 port 4500.
#[test]
fn nat_d_known_answers() {
    let v4 = nat_d(PrfAlg::HmacSha1, CKY_I, CKY_R, "192.0.2.1:500".parse().expect("addr"));
    assert_eq!(hex::encode(v4), "2e531089ab4769fcc300eead72f379aab0c57726");
    let v6 = nat_d(PrfAlg::HmacSha256, CKY_I, CKY_R, "[2001:db8::1]:4500".parse().expect("addr"));
    assert_eq!(hex::encode(v6), "be6c9066b5ed1092889538cf98aafd60cf7e17d9b5ec8726189716d708eb89c0");
}

/// A phase-1 key and IV encrypt a message the codec opens with the same key and IV,
/// and a phase-2 exchange chains from the last phase-1 block.
#[test]
fn derived_key_and_ivs_drive_the_codec() {
    use crate::v1::message::{emit_chain, exchange, seal, Header, Message, Payload};
    let i = inputs();
    let k = Phase1Keys::derive_psk(PrfAlg::HmacSha256, EncrAlg::AesCbc256, PSK, &i.ni, &i.nr, &i.g_xy, CKY_I, CKY_R);
    let key = k.cipher().expect("AES-CBC");
    let iv = phase1_iv(PrfAlg::HmacSha256, &i.g_xi, &i.g_xr);
    let hdr = Header {
        cky_i: CKY_I,
        cky_r: CKY_R,
        next_payload: 0,
        exchange: exchange::MAIN,
        flags: 0,
        message_id: 0,
        length: 0,
    };
    let chain = emit_chain(&[Payload::Hash(vec![1; 32])]);
    let (m5, last) = seal(hdr, 8, &chain, &key, &iv);
    let mut m = Message::parse(&m5).expect("parse");
    assert_eq!(m.decrypt(&m5, &key, &iv).expect("decrypt"), last);
    let qm_iv = phase2_iv(PrfAlg::HmacSha256, &last, MID);
    let qm = Header { exchange: exchange::QUICK, message_id: MID, ..hdr };
    let (q1, _) = seal(qm, 8, &chain, &key, &qm_iv);
    let mut m = Message::parse(&q1).expect("parse");
    m.decrypt(&q1, &key, &qm_iv).expect("decrypt");
    assert_eq!(m.payloads, [Payload::Hash(vec![1; 32])]);
}
