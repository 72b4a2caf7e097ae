//! Known-answer tests: complete ESP packets from draft-mcgrew-gcm-test-01 ("Test
//! Cases for the use of GCM and GMAC in IPsec ESP", section 4), and a byte-exact
//! layout check of what `seal` emits against an independent ring computation.

mod common;

use common::*;
use esp::cipher::AesGcm16;
use esp::{DropReason, SaTable};
use ipsec_types::{DatapathCommand, Direction, EncrAlg, EspKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

fn hx(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

struct Vector {
    alg: EncrAlg,
    keymat: &'static str,
    /// The whole ESP packet: SPI, seq, IV, ciphertext, ICV.
    packet: &'static str,
    /// The decrypted ESP payload: inner packet and trailer.
    plaintext: &'static str,
}

/// AES-GCM-16, 128-bit key, salt cafebabe, SPI 0000a5f8, seq 0000000a.
const GCM128: Vector = Vector {
    alg: EncrAlg::AesGcm16_128,
    keymat: "feffe992 8665731c 6d6a8f94 67308308 cafebabe",
    packet: "0000a5f8 0000000a facedbad decaf888
             deb22cd9 b07c72c1 6e3a65be eb8df304
             a5a5897d 33ae530f 1ba76d5d 114d2a5c
             3de81827 c10e9a4f 51330d0e ec416642
             cfbb85a5 b47e48a4 ec3b9ba9 5d918bd1
             83b70d3a a8bc6ee4 c309e9d8 5a41ad4a",
    plaintext: "4500003e 698f0000 80114dcc c0a80102
                c0a80101 0a980035 002a2343 b2d00100
                00010000 00000000 03736970 09637962
                65726369 74790264 6b000001 00010001",
};

/// AES-GCM-16, 256-bit key, salt 11223344, SPI 4a2cbfe3, seq 00000002.
const GCM256: Vector = Vector {
    alg: EncrAlg::AesGcm16_256,
    keymat: "abbccdde f0011223 34455667 78899aab
             abbccdde f0011223 34455667 78899aab
             11223344",
    packet: "4a2cbfe3 00000002 01020304 05060708
             ff425c9b 724599df 7a3bcd51 0194e00d
             6a78107f 1b0b1cbf 06efae9d 65a5d763
             748a6379 85771d34 7f054565 9f14e99d
             ef842d8e b335f4ee cfdbf831 824b4c49
             15956c96",
    plaintext: "45000030 69a64000 80062690 c0a80102
                9389155e 0a9e008b 2dc57ee0 00000000
                70024000 20bf0000 020405b4 01010402
                01020201",
};

fn check_vector(v: &Vector) {
    let key = EspKey::from_keymat(v.alg, None, &hx(v.keymat)).unwrap();
    let aead = AesGcm16::new(&key).unwrap();
    let packet = hx(v.packet);
    let plaintext = hx(v.plaintext);
    let spi = u32::from_be_bytes(packet[..4].try_into().unwrap());
    let seq = u32::from_be_bytes(packet[4..8].try_into().unwrap());
    let iv: [u8; 8] = packet[8..16].try_into().unwrap();
    let (ct, icv) = packet[16..].split_at(packet.len() - 32);

    // Encrypt: the same ciphertext and ICV.
    let mut buf = plaintext.clone();
    let tag = aead.seal_in_place(spi, u64::from(seq), false, iv, &mut buf).unwrap();
    assert_eq!(buf, ct);
    assert_eq!(tag.as_slice(), icv);

    // Decrypt: the same plaintext; any flipped bit fails.
    let mut buf = ct.to_vec();
    let pt = aead.open_in_place(spi, u64::from(seq), false, iv, icv.try_into().unwrap(), &mut buf).unwrap();
    assert_eq!(pt, plaintext.as_slice());
    let mut buf = ct.to_vec();
    buf[0] ^= 1;
    assert!(aead.open_in_place(spi, u64::from(seq), false, iv, icv.try_into().unwrap(), &mut buf).is_err());
    // The AAD includes the sequence number.
    let mut buf = ct.to_vec();
    assert!(aead.open_in_place(spi, u64::from(seq) + 1, false, iv, icv.try_into().unwrap(), &mut buf).is_err());

    // Through the table: the ICV verifies (so the nonce and AAD are built as in the
    // draft), then the trailer is refused because these vectors carry next header 1
    // rather than 4, and the sequence number was committed.
    let mut p = params(spi, Direction::Inbound, 1, 0);
    p.key = key;
    let t = SaTable::new().apply(&DatapathCommand::InstallInbound(p)).unwrap();
    assert_eq!(open(&t, &packet), Err(DropReason::Malformed));
    assert_eq!(open(&t, &packet), Err(DropReason::Replay));
    let c = &t.stats()[0].counters;
    assert_eq!((c.auth_failed, c.replay, c.seq), (0, 1, u64::from(seq)));
}

#[test]
fn draft_mcgrew_gcm_test_aes128_esp_packet() {
    check_vector(&GCM128);
}

#[test]
fn draft_mcgrew_gcm_test_aes256_esp_packet() {
    check_vector(&GCM256);
}

/// The exact layout `seal` emits, checked with an independent ring computation of
/// nonce (salt || IV) and AAD (SPI || seq, or SPI || seq_hi || seq_lo with ESN).
#[test]
fn seal_layout_is_byte_exact() {
    for esn in [false, true] {
        let (left, right) = pair(0xc0ffee01, |p| p.esn = esn);
        let k = key(EncrAlg::AesGcm16_256, 7);
        let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k.key()).unwrap());
        for (n, len) in [(1u64, 61usize), (2, 62), (3, 63), (4, 64)] {
            let inner = ipv4("10.1.0.5", "10.2.0.9", len);
            let esp = seal(&left, &inner);
            // AES-GCM ciphertexts are whole 16-byte blocks.
            let pad = (16 - (len + 2) % 16) % 16;
            assert_eq!(esp.len(), 8 + 8 + len + pad + 2 + 16);
            assert_eq!(&esp[..4], &[0xc0, 0xff, 0xee, 0x01]);
            assert_eq!(&esp[4..8], &(n as u32).to_be_bytes());
            assert_eq!(&esp[8..16], &n.to_be_bytes(), "IV is the 64-bit sequence number");

            let mut nonce = k.salt().to_vec();
            nonce.extend_from_slice(&esp[8..16]);
            let mut aad = esp[..4].to_vec();
            if esn {
                aad.extend_from_slice(&((n >> 32) as u32).to_be_bytes());
            }
            aad.extend_from_slice(&esp[4..8]);
            let mut body = esp[16..].to_vec();
            let pt = ring_key
                .open_in_place(Nonce::try_assume_unique_for_key(&nonce).unwrap(), Aad::from(&aad), &mut body)
                .unwrap();
            let mut expect = inner.clone();
            expect.extend((1..=pad as u8).collect::<Vec<_>>());
            expect.push(pad as u8);
            expect.push(4);
            assert_eq!(pt, expect.as_slice(), "esn {esn} len {len}");
            assert_eq!(open(&right, &esp), Ok(inner));
        }
    }
}

/// IPv6 inner packets carry next header 41.
#[test]
fn seal_ipv6_next_header_is_41() {
    let (left, _) = pair(0x5000, |_| {});
    let k = key(EncrAlg::AesGcm16_256, 7);
    let aead = AesGcm16::new(&k).unwrap();
    let inner = ipv6("2001:db8:1::1", "2001:db8:2::1", 100);
    let esp = seal(&left, &inner);
    let (ct, icv) = esp[16..].split_at(esp.len() - 32);
    let mut buf = ct.to_vec();
    let pt = aead
        .open_in_place(0x5000, 1, false, esp[8..16].try_into().unwrap(), icv.try_into().unwrap(), &mut buf)
        .unwrap();
    assert_eq!(pt.last(), Some(&41));
    assert_eq!(&pt[..100], inner.as_slice());
}
