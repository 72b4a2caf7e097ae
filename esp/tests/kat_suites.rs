//! Known-answer tests of the transforms beyond AES-GCM-16:
//! - AES-CBC: the ESP packets of RFC 3602 section 4, cases 5 to 8 (encrypted with the
//!   RFC's IVs; cases 7 and 8 are tunnel mode and also go through `SaTable::open`), and
//!   Wycheproof's AES-CBC vectors for 128, 192 and 256-bit keys;
//! - HMAC-SHA1-96: RFC 2202 section 3, cases 1 to 3, truncated to 96 bits (RFC 2404);
//! - HMAC-SHA2-256-128, -384-192, -512-256: RFC 4868 section 2.7.2.1 (AUTH256-1/2,
//!   AUTH384-1/2, AUTH512-1/2);
//! - ChaCha20-Poly1305: the ESP example of RFC 7634 appendix A (a tunnel-mode packet,
//!   sealed with the RFC's IV and opened through `SaTable::open`), and the AEAD vector
//!   of RFC 7539 section 2.8.2, whose 12-byte AAD and nonce are exactly those of an ESP
//!   packet with ESN (RFC 7634 section 2): salt 07000000, IV 4041424344454647, SPI
//!   50515253, ESN c0c1c2c3 c4c5c6c7.

mod common;

use common::*;
use esp::cipher::{Aead, CbcHmac, EspCipher, Integ};
use esp::SaTable;
use ipsec_types::{DatapathCommand, Direction, EncrAlg, EspKey, IntegAlg};

fn hx(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

struct CbcCase {
    key: &'static str,
    spi: u32,
    seq: u32,
    iv: &'static str,
    /// The payload before the ESP trailer (transport-mode ICMP in 5 and 6, an inner
    /// IPv4 packet in 7 and 8).
    payload: &'static str,
    next_header: u8,
    /// The whole ESP packet (these cases carry no ICV).
    packet: &'static str,
}

const CBC_CASES: [CbcCase; 4] = [
    // Case #5: 64 bytes of ICMP, 128-bit key.
    CbcCase {
        key: "90d382b4 10eeba7a d938c46c ec1a82bf",
        spi: 0x4321,
        seq: 1,
        iv: "e96e8c08 ab465763 fd098d45 dd3ff893",
        payload: "08000ebd a70a0000 8e9c083d b95b0700 08090a0b 0c0d0e0f 10111213 14151617
                  18191a1b 1c1d1e1f 20212223 24252627 28292a2b 2c2d2e2f 30313233 34353637",
        next_header: 1,
        packet: "00004321 00000001 e96e8c08 ab465763 fd098d45 dd3ff893 f663c25d 325c18c6
                 a9453e19 4e120849 a4870b66 cc6b9965 330013b4 898dc856 a4699e52 3a55db08
                 0b59ec3a 8e4b7e52 775b07d1 db34ed9c 538ab50c 551b874a a269add0 47ad2d59
                 13ac19b7 cfbad4a6",
    },
    // Case #6: 28 bytes of ICMP, 128-bit key.
    CbcCase {
        key: "90d382b4 10eeba7a d938c46c ec1a82bf",
        spi: 0x4321,
        seq: 8,
        iv: "69d08df7 d203329d b093fc49 24e5bd80",
        payload: "0800b5e8 a80a0500 a69c083d 0b660e00 77777777 77777777 77777777",
        next_header: 1,
        packet: "00004321 00000008 69d08df7 d203329d b093fc49 24e5bd80 f5199588 1ec4e0c4
                 488987ce 742e8109 689bb379 d2d750c0 d915dca3 46a89f75",
    },
    // Case #7: an 84-byte IPv4 ICMP packet in tunnel mode, 128-bit key.
    CbcCase {
        key: "01234567 89abcdef 01234567 89abcdef",
        spi: 0x8765,
        seq: 2,
        iv: "f4e76524 4f6407ad f13dc138 0f673f37",
        payload: "45000054 09040000 4001f988 c0a87b03 c0a87bc8 08009f76 a90a0100 b49c083d
                  02a20400 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f 20212223
                  24252627 28292a2b 2c2d2e2f 30313233 34353637",
        next_header: 4,
        packet: "00008765 00000002 f4e76524 4f6407ad f13dc138 0f673f37 773b5241 a4c44922
                 5e4f3ce5 ed611b0c 237ca96c f74a9301 3c1b0ea1 a0cf70f8 e4ecaec7 8ac53aad
                 7a0f022b 859243c6 47752e94 a859352b 8a4d4d2d ecd136e5 c177f132 ad3fbfb2
                 201ac990 4c74ee0a 109e0ca1 e4dfe9d5 a100b842 f1c22f0d",
    },
    // Case #8: a 68-byte IPv4 ICMP packet in tunnel mode, 128-bit key.
    CbcCase {
        key: "01234567 89abcdef 01234567 89abcdef",
        spi: 0x8765,
        seq: 5,
        iv: "85d47224 b5f3dd5d 2101d4ea 8dffab22",
        payload: "45000044 090c0000 4001f990 c0a87b03 c0a87bc8 0800d63c aa0a0200 c69c083d
                  a3de0300 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff
                  ffffffff",
        next_header: 4,
        packet: "00008765 00000005 85d47224 b5f3dd5d 2101d4ea 8dffab22 15b92683 819596a8
                 047232cc 00f7048f e45318e1 1f8a0f62 ede3c3fc 61203bb5 0f980a08 c9843fd3
                 a1b06d5c 07ff9639 b7eb7dfb 3512e5de 435e7207 ed971ef3 d2726d9b 5ef6affc
                 6d17a0de cbb13892",
    },
];

/// The RFC 3602 key with an integrity key beside it (the RFC's packets carry no ICV).
fn cbc_key(key: &[u8], integ: IntegAlg) -> EspKey {
    let km = [key, &vec![0x11; integ.key_len()]].concat();
    EspKey::from_keymat(EncrAlg::AesCbc128, Some(integ), &km).unwrap()
}

/// Payload, padding 1, 2, 3.. to the AES block, pad length, next header (RFC 4303 2.4).
fn with_trailer(payload: &[u8], nh: u8) -> Vec<u8> {
    let pad = (16 - (payload.len() + 2) % 16) % 16;
    let mut p = payload.to_vec();
    p.extend((1..=pad).map(|i| i as u8));
    p.extend([pad as u8, nh]);
    p
}

#[test]
fn rfc3602_aes_cbc_esp_packets() {
    for (n, case) in CBC_CASES.iter().enumerate() {
        let c = CbcHmac::new(&cbc_key(&hx(case.key), IntegAlg::HmacSha1_96)).unwrap();
        let packet = hx(case.packet);
        let iv: [u8; 16] = hx(case.iv).try_into().unwrap();
        assert_eq!(packet[..4], case.spi.to_be_bytes(), "case {}", n + 5);
        assert_eq!(packet[4..8], case.seq.to_be_bytes());
        assert_eq!(packet[8..24], iv);
        let mut buf = with_trailer(&hx(case.payload), case.next_header);
        c.encrypt(&iv, &mut buf).unwrap();
        assert_eq!(buf, packet[24..], "case {} encrypts to the RFC's ciphertext", n + 5);
        let mut back = vec![0u8; buf.len()];
        c.decrypt(&iv, &packet[24..], &mut back).unwrap();
        assert_eq!(back, with_trailer(&hx(case.payload), case.next_header));
    }
}

#[test]
fn rfc3602_tunnel_mode_packets_open_through_the_table() {
    // Cases 7 and 8 are tunnel-mode ESP packets; with an ICV appended (RFC 3602 has
    // none) they must open through the full inbound path: replay, ICV, CBC decryption,
    // trailer, inner IPv4 header.
    for case in &CBC_CASES[2..] {
        for integ in IntegAlg::ALL {
            let key = cbc_key(&hx(case.key), integ);
            let mut p = params(case.spi, Direction::Inbound, 1, 0);
            p.key = key.clone();
            p.local_ts = vec![ts("0.0.0.0/0")];
            p.remote_ts = vec![ts("0.0.0.0/0")];
            let table = SaTable::new().apply(&DatapathCommand::InstallInbound(p)).unwrap();
            let mut packet = hx(case.packet);
            let mut icv = vec![0u8; integ.icv_len()];
            Integ::new(integ, key.integ_key()).icv_into(&[&packet], &mut icv).unwrap();
            packet.extend_from_slice(&icv);
            assert_eq!(open(&table, &packet), Ok(hx(case.payload)), "{integ}");
            let c = EspCipher::new(&key).unwrap();
            let mut out = vec![0u8; packet.len()];
            let pt = c.open(case.spi, u64::from(case.seq), false, &packet, &mut out).unwrap();
            assert_eq!(pt, with_trailer(&hx(case.payload), case.next_header));
        }
    }
}

struct MacCase {
    alg: IntegAlg,
    key: &'static str,
    data: &'static [u8],
    icv: &'static str,
}

const MAC_CASES: [MacCase; 9] = [
    // RFC 2202 section 3, HMAC-SHA-1 test cases 1 to 3, first 96 bits (RFC 2404).
    MacCase {
        alg: IntegAlg::HmacSha1_96,
        key: "0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b",
        data: b"Hi There",
        icv: "b6173186 55057264 e28bc0b6",
    },
    MacCase {
        alg: IntegAlg::HmacSha1_96,
        key: "4a656665",
        data: b"what do ya want for nothing?",
        icv: "effcdf6a e5eb2fa2 d27416d5",
    },
    MacCase {
        alg: IntegAlg::HmacSha1_96,
        key: "aaaaaaaa aaaaaaaa aaaaaaaa aaaaaaaa aaaaaaaa",
        data: &[0xdd; 50],
        icv: "125d7342 b9ac11cd 91a39af4",
    },
    // RFC 4868 section 2.7.2.1.
    MacCase {
        alg: IntegAlg::HmacSha256_128,
        key: "0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b",
        data: b"Hi There",
        icv: "198a607e b44bfbc6 9903a0f1 cf2bbdc5",
    },
    MacCase {
        alg: IntegAlg::HmacSha256_128,
        key: "4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665",
        data: b"what do ya want for nothing?",
        icv: "167f9285 88c5cc2e ef8e3093 caa0e87c",
    },
    MacCase {
        alg: IntegAlg::HmacSha384_192,
        key: "0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b
              0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b",
        data: b"Hi There",
        icv: "b6a8d563 6f5c6a72 24f9977d cf7ee6c7 fb6d0c48 cbdee973",
    },
    MacCase {
        alg: IntegAlg::HmacSha384_192,
        key: "4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665
              4a656665 4a656665 4a656665 4a656665",
        data: b"what do ya want for nothing?",
        icv: "2c735397 4f1842fd 66d53c45 2ca42122 b28c0b59 4cfb184d",
    },
    MacCase {
        alg: IntegAlg::HmacSha512_256,
        key: "0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b
              0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b 0b0b0b0b",
        data: b"Hi There",
        icv: "637edc6e 01dce7e6 742a9945 1aae82df 23da3e92 439e590e 43e761b3 3e910fb8",
    },
    MacCase {
        alg: IntegAlg::HmacSha512_256,
        key: "4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665
              4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665 4a656665",
        data: b"what do ya want for nothing?",
        icv: "cb370917 ae8a7ce2 8cfd1d8f 4705d614 1c173b2a 9362c15d f235dfb2 51b15454",
    },
];

#[test]
fn hmac_truncated_icvs() {
    for case in &MAC_CASES {
        let m = Integ::new(case.alg, &hx(case.key));
        let want = hx(case.icv);
        assert_eq!(m.icv_len(), want.len(), "{}", case.alg);
        let mut icv = vec![0u8; want.len()];
        m.icv_into(&[case.data], &mut icv).unwrap();
        assert_eq!(icv, want, "{} over {:?}", case.alg, case.data);
        // The same in two parts (the datapath feeds header, ciphertext, ESN apart).
        let (a, b) = case.data.split_at(3);
        m.icv_into(&[a, b], &mut icv).unwrap();
        assert_eq!(icv, want);
        assert!(m.verify(&[case.data], &want));
        let mut bad = want.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!m.verify(&[case.data], &bad));
        assert!(!m.verify(&[case.data], &want[..want.len() - 1]), "a short ICV never verifies");
    }
}

#[test]
fn rfc7539_chacha20_poly1305_as_an_esn_esp_packet() {
    let key = "80818283 84858687 88898a8b 8c8d8e8f 90919293 94959697 98999a9b 9c9d9e9f";
    let keymat = hx(&format!("{key} 07000000"));
    let k = EspKey::from_keymat(EncrAlg::ChaCha20Poly1305, None, &keymat).unwrap();
    let a = Aead::new(&k).unwrap();
    let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let ciphertext = hx("d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
                         3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
                         92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
                         3ff4def08e4b7a9de576d26586cec64b6116");
    let tag = hx("1ae10b594f09e26a7e902ecbd0600691");
    let (spi, seq, iv) = (0x5051_5253, 0xc0c1_c2c3_c4c5_c6c7, [0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47]);
    let mut buf = plaintext.to_vec();
    let icv = a.seal_in_place(spi, seq, true, iv, &mut buf).unwrap();
    assert_eq!((buf.clone(), icv.to_vec()), (ciphertext, tag));
    let opened = a.open_in_place(spi, seq, true, iv, icv, &mut buf).unwrap();
    assert_eq!(opened, plaintext);
    // As a whole ESP packet through `EspCipher` (whose IV is the sequence number, so
    // the IV here is what it writes for this sequence number).
    let c = EspCipher::new(&k).unwrap();
    let mut pkt = [&spi.to_be_bytes()[..], &(seq as u32).to_be_bytes(), &[0; 8], plaintext, &[0; 16]].concat();
    c.seal(spi, seq, true, &mut pkt).unwrap();
    assert_eq!(pkt[8..16], seq.to_be_bytes());
    let mut out = vec![0u8; pkt.len()];
    assert_eq!(c.open(spi, seq, true, &pkt, &mut out).unwrap(), plaintext);
}

#[test]
fn rfc7634_appendix_a_esp_example() {
    let keymat = hx("80818283 84858687 88898a8b 8c8d8e8f 90919293 94959697 98999a9b 9c9d9e9f a0a1a2a3");
    let (spi, seq, iv) = (0x0102_0304u32, 5u64, [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]);
    // The inner IPv4 ICMP echo request (84 bytes), then padding 01 02, pad length 2,
    // next header 4.
    let inner = hx("45000054 a6f20000 4001e778 c6336405 c0000205 08005b7a 3a080000 553bec10
                    00073627 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f 20212223
                    24252627 28292a2b 2c2d2e2f 30313233 34353637");
    let plaintext = [inner.as_slice(), &[0x01, 0x02, 0x02, 0x04]].concat();
    let ciphertext = hx("24039428 b97f417e 3c13753a 4f05087b 67c352e6 a7fab1b9 82d466ef 407ae5c6
                         14ee8099 d52844eb 61aa95df ab4c02f7 2aa71e7c 4c4f64c9 befe2fac c638e8f3
                         cbec163f ac469b50 2773f6fb 94e664da 9165b828 29f641e0");
    let tag = hx("76aaa826 6b7fb0f7 b11b3699 07e1ad43");
    let k = EspKey::from_keymat(EncrAlg::ChaCha20Poly1305, None, &keymat).unwrap();
    let a = Aead::new(&k).unwrap();
    let mut buf = plaintext.clone();
    let icv = a.seal_in_place(spi, seq, false, iv, &mut buf).unwrap();
    assert_eq!((buf.clone(), icv.to_vec()), (ciphertext.clone(), tag.clone()));
    // The whole packet, as a peer would send it, through the inbound path.
    let packet = [&spi.to_be_bytes()[..], &(seq as u32).to_be_bytes(), &iv, &ciphertext, &tag].concat();
    let mut p = params(spi, Direction::Inbound, 1, 0);
    p.key = k;
    p.local_ts = vec![ts("0.0.0.0/0")];
    p.remote_ts = vec![ts("0.0.0.0/0")];
    let table = SaTable::new().apply(&DatapathCommand::InstallInbound(p)).unwrap();
    assert_eq!(open(&table, &packet), Ok(inner));
    assert_eq!(open(&table, &packet), Err(esp::DropReason::Replay));
}

/// Wycheproof `aes_cbc_pkcs5_test.json` (C2SP/wycheproof, testvectors_v1), valid cases
/// of each key size: (tcId, key, iv, msg, ct). The ciphertext is CBC over the message
/// with PKCS #5 padding, which the test adds, so these check the raw CBC transform.
const WYCHEPROOF_CBC: [(u32, &str, &str, &str, &str); 17] = [
    (1, "e34f15c7bd819930fe9d66e0c166e61c", "da9520f7d3520277035173299388bee2", "", "b10ab60153276941361000414aed0a9d"),
    (
        2,
        "e09eaa5a3f5e56d279d5e7a03373f6ea",
        "c9ee3cd746bf208c65ca9e72a266d54f",
        "ef4eab37181f98423e53e947e7050fd0",
        "d1fa697f3e2e04d64f1a0da203813ca5bc226a0b1d42287b2a5b994a66eaf14a",
    ),
    (
        3,
        "9bd3902ed0996c869b572272e76f3889",
        "8b2e86a9a185cfa6f51c7cc595b822bc",
        "a7ba19d49ee1ea02f098aa8e30c740d893a4456ccc294040484ed8a00a55f93e",
        "514cbc69aced506926deacdeb0cc0a5a07d540f65d825b65c7db0075cf930a06e0124ae598461cab0b3251baa853e377",
    ),
    (
        5,
        "e1e726677f4893890f8c027f9d8ef80d",
        "155fd397579b0b5d991d42607f2cc9ad",
        "3f",
        "599d77aca16910b42d8b4ac9560efe1b",
    ),
    (
        20,
        "831e664c9e3f0c3094c0b27b9d908eb2",
        "54f2459e40e002763144f4752cde2fb5",
        "26603bb76dd0a0180791c4ed4d3b058807",
        "8d55dc10584e243f55d2bdbb5758b7fabcd58c8d3785f01c7e3640b2a1dadcd9",
    ),
    (
        23,
        "efd9caa8ac68e9e29acdae57e93bcea8",
        "c98b47808add45c0c891983ec4b09846",
        "3e1d2001f1e475b972738936443a5f51eedaf802a66fadf2406cfaadb0549149fcb9f485e534dc2d",
        "84904fc92bd2e7590aa268e667370327b9446f41067dd40d3e5091a63a0d5687e4926e00cc3cb461c3b85d80ee2da818",
    ),
    (
        73,
        "3d6bf9edae6d881eade0ff8c7076a4835b71320c1f36b631",
        "db20f9a6f4d6b4e478f1a4b9d4051d34",
        "",
        "ff0c315873b4b1872abef2353b792ef0",
    ),
    (
        74,
        "f4bfa5aa4f0f4d62cf736cd2969c43d580fdb92f2753bedb",
        "69a76dc4da64d89c580eb75ae975ec39",
        "0e239f239705b282ce2200fe20de1165",
        "7dbd573e4db58a318edfe29f199d8cda538a49f36486337c2711163e55fd5d0b",
    ),
    (
        77,
        "915429743435c28997a33b33b6574a953d81dae0e7032e6a",
        "1379d48493f743e6a149deb3b9bab31e",
        "58",
        "519925956d32e4fa350b1144f088e4e8",
    ),
    (
        92,
        "cfd3f68873d81a27d2bfce876c79f6e609074dec39e34614",
        "c45b52a240eba3bdde5dfd57f3d474fb",
        "b1973cb25aa87ef9d1a8888b0a0f5c04c6",
        "401ad889bdb9d38816c782e00b168ccccde9bf75f4be868ceb91237e8b37b750",
    ),
    (
        95,
        "1381fbd5e79045d40f29790fc1a436c95b040a046ebf0b0f",
        "fdf97645e4192ba84728bbf6683f79de",
        "d575dce596dd0a2cd1c18dab7eb0948fafb8669969a48b6314493bfb8daf8acacd51382f9bb5b357",
        "03225f08592efca14ad8ecf822465e8be4157465d0be150dd3d645b6fef1b19ca7bbaa5940b2a7895fa2b0ee55b0d4ec",
    ),
    (
        145,
        "7bf9e536b66a215c22233fe2daaa743a898b9acb9f7802de70b40e3d6e43ef97",
        "eb38ef61717e1324ae064e86f1c3e797",
        "",
        "e7c166554d1bb32792c981fa674cc4d8",
    ),
    (
        146,
        "612e837843ceae7f61d49625faa7e7494f9253e20cb3adcea686512b043936cd",
        "9ec7b863ac845cad5e4673da21f5b6a9",
        "cc37fae15f745a2f40e2c8b192f2b38d",
        "299295be47e9f5441fe83a7a811c4aeb2650333e681e69fa6b767d28a6ccf282",
    ),
    (
        147,
        "96e1e4896fb2cd05f133a6a100bc5609a7ac3ca6d81721e922dadd69ad07a892",
        "e70d83a77a2ce722ac214c00837acedf",
        "91a17e4dfcc3166a1add26ff0e7c12056e8a654f28a6de24f4ba739ceb5b5b18",
        "a615a39ff8f59f82cf72ed13e1b01e32459700561be112412961365c7a0b58aa7a16d68c065e77ebe504999051476bd7",
    ),
    (
        149,
        "e754076ceab3fdaf4f9bcab7d4f0df0cbbafbc87731b8f9b7cd2166472e8eebc",
        "014d2e13dfbcb969ba3bb91442d52eca",
        "40",
        "42c0b89a706ed2606cd94f9cb361fa51",
    ),
    (
        164,
        "73216fafd0022d0d6ee27198b2272578fa8f04dd9f44467fbb6437aa45641bf7",
        "4b74bd981ea9d074757c3e2ef515e5fb",
        "d5247b8f6c3edcbfb1d591d13ece23d2f5",
        "fbea776fb1653635f88e2937ed2450ba4e9063e96d7cdba04928f01cb85492fe",
    ),
    (
        167,
        "5f99f7d60653d79f088dd07ef306b65e057d36e053fa1c9f6854425c019fd4df",
        "6eedf45753ffe38f2407fbc28ab5959c",
        "fcc9212c23675c5d69a1266c77389bc955e453daba20034aabbcd502a1b73e05af30f8b7622abdbc",
        "a9b051354f0cf61f11921b330e60f996de796aeb68140a0f9c5962e1f48e4805262fb6f53b26d9bb2fa0e359efe14734",
    ),
];

#[test]
fn wycheproof_aes_cbc_of_each_key_size() {
    for (tc, key, iv, msg, ct) in WYCHEPROOF_CBC {
        let key = hx(key);
        let encr = match key.len() {
            16 => EncrAlg::AesCbc128,
            24 => EncrAlg::AesCbc192,
            _ => EncrAlg::AesCbc256,
        };
        let km = [key.as_slice(), &[0x22; 20]].concat();
        let c = CbcHmac::new(&EspKey::from_keymat(encr, Some(IntegAlg::HmacSha1_96), &km).unwrap()).unwrap();
        let iv: [u8; 16] = hx(iv).try_into().unwrap();
        let mut buf = hx(msg);
        let pad = 16 - buf.len() % 16;
        buf.resize(buf.len() + pad, pad as u8);
        let padded = buf.clone();
        c.encrypt(&iv, &mut buf).unwrap();
        assert_eq!(buf, hx(ct), "tcId {tc}");
        let mut back = vec![0u8; buf.len()];
        c.decrypt(&iv, &buf, &mut back).unwrap();
        assert_eq!(back, padded, "tcId {tc}");
    }
}
