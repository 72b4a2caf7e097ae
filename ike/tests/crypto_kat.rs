//! Known-answer tests of `ike::crypto` against published vectors:
//! RFC 4231 (HMAC-SHA2), RFC 7748 (X25519), RFC 5903 (ECP-256/384/521), MODP vectors
//! computed independently (see `modp_fixed_secret_vectors`), the GCM specification
//! (McGrew & Viega, test cases 4 and 16) and a Wycheproof AES-GCM subset.
//! Vector data is copied from those documents; the hex strings may contain spaces.

use ike::crypto::{prf, prf_plus, CryptoError, KeyExchange, SkCipher};
use ike::Rng;
use ipsec_types::{DhGroup, EncrAlg, PrfAlg};

fn h(s: &str) -> Vec<u8> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(compact).expect("valid hex in test vector")
}

/// An Rng that hands out the given bytes (a known private key), then panics if asked for more.
struct FixedRng(Vec<u8>);
impl Rng for FixedRng {
    fn fill(&mut self, buf: &mut [u8]) {
        assert!(self.0.len() >= buf.len(), "FixedRng exhausted");
        let rest = self.0.split_off(buf.len());
        buf.copy_from_slice(&self.0);
        self.0 = rest;
    }
}

// ---------------------------------------------------------------- RFC 4231

struct HmacCase {
    name: &'static str,
    key: Vec<u8>,
    data: Vec<u8>,
    sha256: &'static str,
    sha384: &'static str,
    sha512: &'static str,
}

fn rfc4231_cases() -> Vec<HmacCase> {
    let case7_data = concat!(
        "54686973206973206120746573742075 73696e672061206c6172676572207468",
        "616e20626c6f636b2d73697a65206b65 7920616e642061206c61726765722074",
        "68616e20626c6f636b2d73697a652064 6174612e20546865206b6579206e6565",
        "647320746f2062652068617368656420 6265666f7265206265696e6720757365",
        "642062792074686520484d414320616c 676f726974686d2e"
    );
    vec![
        HmacCase {
            name: "4.2 Test Case 1",
            key: vec![0x0b; 20],
            data: h("4869205468657265"),
            sha256: "b0344c61d8db38535ca8afceaf0bf12b 881dc200c9833da726e9376c2e32cff7",
            sha384:
                "afd03944d84895626b0825f4ab46907f 15f9dadbe4101ec682aa034c7cebc59c faea9ea9076ede7f4af152e8b2fa9cb6",
            sha512: "87aa7cdea5ef619d4ff0b4241a1d6cb0 2379f4e2ce4ec2787ad0b30545e17cde \
                     daa833b7d6b8a702038b274eaea3f4e4 be9d914eeb61f1702e696c203a126854",
        },
        HmacCase {
            name: "4.3 Test Case 2",
            key: h("4a656665"),
            data: h("7768617420646f2079612077616e7420 666f72206e6f7468696e673f"),
            sha256: "5bdcc146bf60754e6a042426089575c7 5a003f089d2739839dec58b964ec3843",
            sha384:
                "af45d2e376484031617f78d2b58a6b1b 9c7ef464f5a01b47e42ec3736322445e 8e2240ca5e69e2c78b3239ecfab21649",
            sha512: "164b7a7bfcf819e2e395fbe73b56e0a3 87bd64222e831fd610270cd7ea250554 \
                     9758bf75c05a994a6d034f65f8f0e6fd caeab1a34d4a6b4b636e070a38bce737",
        },
        HmacCase {
            name: "4.4 Test Case 3",
            key: vec![0xaa; 20],
            data: vec![0xdd; 50],
            sha256: "773ea91e36800e46854db8ebd09181a7 2959098b3ef8c122d9635514ced565fe",
            sha384:
                "88062608d3e6ad8a0aa2ace014c8a86f 0aa635d947ac9febe83ef4e55966144b 2a5ab39dc13814b94e3ab6e101a34f27",
            sha512: "fa73b0089d56a284efb0f0756c890be9 b1b5dbdd8ee81a3655f83e33b2279d39 \
                     bf3e848279a722c806b485a47e67c807 b946a337bee8942674278859e13292fb",
        },
        HmacCase {
            name: "4.5 Test Case 4",
            key: h("0102030405060708090a0b0c0d0e0f10 111213141516171819"),
            data: vec![0xcd; 50],
            sha256: "82558a389a443c0ea4cc819899f2083a 85f0faa3e578f8077a2e3ff46729665b",
            sha384:
                "3e8a69b7783c25851933ab6290af6ca7 7a9981480850009cc5577c6e1f573b4e 6801dd23c4a7d679ccf8a386c674cffb",
            sha512: "b0ba465637458c6990e5a8c5f61d4af7 e576d97ff94b872de76f8050361ee3db \
                     a91ca5c11aa25eb4d679275cc5788063 a5f19741120c4f2de2adebeb10a298dd",
        },
        HmacCase {
            name: "4.7 Test Case 6",
            key: vec![0xaa; 131],
            data: h("54657374205573696e67204c61726765 72205468616e20426c6f636b2d53697a \
                     65204b6579202d2048617368204b6579 204669727374"),
            sha256: "60e431591ee0b67f0d8a26aacbf5b77f 8e0bc6213728c5140546040f0ee37f54",
            sha384:
                "4ece084485813e9088d2c63a041bc5b4 4f9ef1012a2b588f3cd11f05033ac4c6 0c2ef6ab4030fe8296248df163f44952",
            sha512: "80b24263c7c1a3ebb71493c1dd7be8b4 9b46d1f41b4aeec1121b013783f8f352 \
                     6b56d037e05f2598bd0fd2215d6a1e52 95e64f73f63f0aec8b915a985d786598",
        },
        HmacCase {
            name: "4.8 Test Case 7",
            key: vec![0xaa; 131],
            data: h(case7_data),
            sha256: "9b09ffa71b942fcb27635fbcd5b0e944 bfdc63644f0713938a7f51535c3a35e2",
            sha384:
                "6617178e941f020d351e2f254e8fd32c 602420feb0b8fb9adccebb82461e99c5 a678cc31e799176d3860e6110c46523e",
            sha512: "e37b6a775dc87dbaa4dfa9f96e5e3ffd debd71f8867289865df5a32d20cdc944 \
                     b6022cac3c4982b10d5eeb55c3e4de15 134676fb6de0446065c97440fa8c6a58",
        },
    ]
}

#[test]
fn rfc4231_hmac_sha2() {
    for case in rfc4231_cases() {
        for (alg, expected) in
            [(PrfAlg::HmacSha256, case.sha256), (PrfAlg::HmacSha384, case.sha384), (PrfAlg::HmacSha512, case.sha512)]
        {
            let out = prf(alg, &case.key, &case.data);
            assert_eq!(hex::encode(&out[..]), hex::encode(h(expected)), "{} {alg}", case.name);
        }
    }
}

#[test]
fn prf_plus_first_block_is_prf_of_seed_and_counter() {
    // RFC 7296 2.13: T1 = prf(K, S | 0x01), T2 = prf(K, T1 | S | 0x02), checked with the
    // PRF the RFC 4231 test above pins down (key of RFC 4231 Test Case 1).
    let key = vec![0x0b; 20];
    let seed = b"Hi Ther".to_vec();
    for alg in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512] {
        let n = alg.output_len();
        let out = prf_plus(alg, &key, &seed, 2 * n);
        let t1 = prf(alg, &key, &[&seed[..], &[1]].concat());
        let t2 = prf(alg, &key, &[&t1[..], &seed[..], &[2]].concat());
        assert_eq!(&out[..n], &t1[..]);
        assert_eq!(&out[n..], &t2[..]);
    }
}

// ---------------------------------------------------------------- RFC 7748

#[test]
fn rfc7748_section_5_2_x25519() {
    let vectors = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            // The input u-coordinate has its top bit set; X25519 must mask it.
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (scalar, u, out) in vectors {
        let kx = KeyExchange::generate(DhGroup::Curve25519, &mut FixedRng(h(scalar)));
        assert_eq!(hex::encode(&kx.agree(&h(u)).expect("valid u")[..]), out);
    }
}

#[test]
fn rfc7748_section_6_1_diffie_hellman() {
    let alice_priv = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    let alice_pub = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    let bob_priv = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    let bob_pub = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    let k = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

    let alice = KeyExchange::generate(DhGroup::Curve25519, &mut FixedRng(h(alice_priv)));
    let bob = KeyExchange::generate(DhGroup::Curve25519, &mut FixedRng(h(bob_priv)));
    assert_eq!(alice.group(), DhGroup::Curve25519);
    assert_eq!(hex::encode(alice.public_value()), alice_pub);
    assert_eq!(hex::encode(bob.public_value()), bob_pub);
    assert_eq!(hex::encode(&alice.agree(&h(bob_pub)).expect("valid")[..]), k);
    assert_eq!(hex::encode(&bob.agree(&h(alice_pub)).expect("valid")[..]), k);
}

// ---------------------------------------------------------------- RFC 5903

#[test]
fn rfc5903_section_8_1_ecp256() {
    let i = "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433";
    let gix = "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180";
    let giy = "5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3";
    let r = "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53";
    let grx = "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63";
    let gry = "56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB";
    let girx = "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE";

    let gi = [h(gix), h(giy)].concat();
    let gr = [h(grx), h(gry)].concat();
    let initiator = KeyExchange::generate(DhGroup::Ecp256, &mut FixedRng(h(i)));
    let responder = KeyExchange::generate(DhGroup::Ecp256, &mut FixedRng(h(r)));
    assert_eq!(initiator.group(), DhGroup::Ecp256);
    // The KE data is x || y, 64 octets, no 0x04 prefix (RFC 5903 section 7).
    assert_eq!(initiator.public_value(), gi);
    assert_eq!(responder.public_value(), gr);
    assert_eq!(&initiator.agree(&gr).expect("valid g^r")[..], &h(girx)[..]);
    assert_eq!(&responder.agree(&gi).expect("valid g^i")[..], &h(girx)[..]);

    // g^r with a coordinate altered is not on the curve.
    let mut bad = gr.clone();
    bad[40] ^= 0x01;
    assert_eq!(initiator.agree(&bad), Err(CryptoError::InvalidPublicKey));
}

/// One RFC 5903 section 8 exchange: both public values, both shared secrets, and a g^r with
/// its last byte altered (off the curve) refused.
/// The strings are i, g^i x, g^i y, r, g^r x, g^r y, g^ir x.
fn rfc5903_exchange(group: DhGroup, [i, gix, giy, r, grx, gry, girx]: [&str; 7]) {
    let gi = [h(gix), h(giy)].concat();
    let gr = [h(grx), h(gry)].concat();
    let initiator = KeyExchange::generate(group, &mut FixedRng(h(i)));
    let responder = KeyExchange::generate(group, &mut FixedRng(h(r)));
    assert_eq!(initiator.group(), group);
    assert_eq!(gi.len(), group.public_len());
    assert_eq!(initiator.public_value(), gi);
    assert_eq!(responder.public_value(), gr);
    assert!(KeyExchange::plausible_public(group, &gr));
    assert_eq!(&initiator.agree(&gr).expect("valid g^r")[..], &h(girx)[..]);
    assert_eq!(&responder.agree(&gi).expect("valid g^i")[..], &h(girx)[..]);
    let mut bad = gr.clone();
    if let Some(last) = bad.last_mut() {
        *last ^= 0x01;
    }
    assert!(!KeyExchange::plausible_public(group, &bad));
    assert_eq!(initiator.agree(&bad), Err(CryptoError::InvalidPublicKey));
}

#[test]
fn rfc5903_section_8_2_ecp384() {
    rfc5903_exchange(
        DhGroup::Ecp384,
        [
            "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 \
             0647B674 14DCE655 E35B5380 41E649EE 3FAEF896 783AB194",
            "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 \
             1634FE72 B4C55EE6 DE3AC808 ACB4BDB4 C88732AE E95F41AA",
            "9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD \
             A0241815 35A0F38E EB9FCFF3 C2C947DA E69B4C63 4573A81C",
            "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 \
             855CC9BD A0AA2942 E0308312 916B8ED2 960E4BD5 5A7448FC",
            "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D \
             83CFA417 32BC509D 0D1AC43A 0336DEF9 6FDA41D0 774A3571",
            "DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 \
             DD5F0C68 759DD1FF F83FA401 42209DFF 5EAAD96D B9E6386C",
            "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 \
             7521287E 7156C5C4 D6031355 69B9E9D0 9CF5D4A2 70F59746",
        ],
    );
}

#[test]
fn rfc5903_section_8_3_ecp521() {
    // 66-octet coordinates and scalars; the x || y KE data is 132 octets.
    rfc5903_exchange(
        DhGroup::Ecp521,
        [
            "0037ADE9 319A89F4 DABDB3EF 411AACCC A5123C61 ACAB57B5 393DCE47 608172A0 95AA85A3 0FE1C295 \
             2C6771D9 37BA9777 F5957B26 39BAB072 462F68C2 7A57382D 4A52",
            "0015417E 84DBF28C 0AD3C278 713349DC 7DF153C8 97A1891B D98BAB43 57C9ECBE E1E3BF42 E00B8E38 \
             0AEAE57C 2D107564 94188594 2AF5A7F4 601723C4 195D176C ED3E",
            "017CAE20 B6641D2E EB695786 D8C94614 6239D099 E18E1D5A 514C739D 7CB4A10A D8A78801 5AC405D7 \
             799DC75E 7B7D5B6C F2261A6A 7F150743 8BF01BEB 6CA3926F 9582",
            "0145BA99 A847AF43 793FDD0E 872E7CDF A16BE30F DC780F97 BCCC3F07 8380201E 9C677D60 0B343757 \
             A3BDBF2A 3163E4C2 F869CCA7 458AA4A4 EFFC311F 5CB15168 5EB9",
            "00D0B397 5AC4B799 F5BEA16D 5E13E9AF 971D5E9B 984C9F39 728B5E57 39735A21 9B97C356 436ADC6E \
             95BB0352 F6BE64A6 C2912D4E F2D0433C ED2B6171 640012D9 460F",
            "015C6822 6383956E 3BD066E7 97B623C2 7CE0EAC2 F551A10C 2C724D98 52077B87 220B6536 C5C408A1 \
             D2AEBB8E 86D678AE 49CB5709 1F473229 6579AB44 FCD17F0F C56A",
            "01144C7D 79AE6956 BC8EDB8E 7C787C45 21CB086F A64407F9 7894E5E6 B2D79B04 D1427E73 CA4BAA24 \
             0A347868 59810C06 B3C715A3 A8CC3151 F2BEE417 996D19F3 DDEA",
        ],
    );
}

// ---------------------------------------------------------------- MODP

/// MODP groups 2 and 14 with fixed private exponents (the Rng hands them out: 256 bits for
/// group 2, 320 bits for group 14, the exponent lengths `KeyExchange` draws). No RFC
/// publishes MODP exchange vectors; these were computed independently of this crate at
/// test-writing time with Python 3's built-in pow() (g = 2, the primes derived from the
/// RFC 2409 / RFC 3526 formula 2^k - 2^(k-64) - 1 + 2^64 * ([2^(k-130) pi] + N) and checked to
/// be safe primes), each exponent being SHA-256("vpngw modp kat {i|r} {group}") repeated
/// and cut to length.
#[test]
fn modp_fixed_secret_vectors() {
    struct Case {
        group: DhGroup,
        xi: &'static str,
        xr: &'static str,
        gi: &'static str,
        gr: &'static str,
        gir: &'static str,
    }
    let cases = [
        Case {
            group: DhGroup::Modp1024,
            xi: "ccd6c9b70d1151ce09a663319e733200fba43d24a573543563ce471930fa20df",
            xr: "2a76dc7b83938bf2130e4622750ea1481b9d433b050e7ea3723c42fcf5d02ffe",
            gi: "e5016e62a9d18e8f60b026d14ae01e07696852fe945da92e52a6ae73123f34c8ac02df19861a5661572f72401e7adab6\
                 a5f0813e0c4fbcb102211c967d5886d596a780deef11ead98ee1c70465ff1a6ace90eb2a4d3f6247685571290b044b1f\
                 911a8c2cf3d896c18666f8969a7dfca0ef136ac0e0ed0d226c83b78551210aa2",
            gr: "74873cc1c5cbc5035812d9dfaafd055e50ee50d50d7bd5562a93befd06a85aa6984e13aab576500550c97fbc8b4920eb\
                 67eab954aabcddc0e4b6c7252bec3349786800f5910b984e1a514aa936034c97a3ec0901472e8dd008c70ac4bd957cd8\
                 1ebc26acd97675c71a820cdb85e7876ed0d929a98be6b30bcf3057a6fe8802fe",
            gir: "c4ef1a80144cdfa800940909c95cc866b2b1fcb97bffe23039d666fb20f74b48a4baf413bf3e0ee471591608dcaad6df\
                  3615a09600cf48b8af801b14d75b50c8b50af06ff27464287c0343c9cab4f535aa8d38b24469994cb8f6ad80858d6cc2\
                  23b89870acb7bd398a0cffb83c8516e25cc7191634353d19cc79eaa127390ee9",
        },
        Case {
            group: DhGroup::Modp2048,
            xi: "2424c4e2a4d1c4f0bf7138889dddd2739b20cf5ec2c84d54b0d12aa3ad8aadea2424c4e2a4d1c4f0",
            xr: "ec9183ce9284507acf3e2d484692121cfef3728dacf2ec4894eaae88d0f67425ec9183ce9284507a",
            gi: "f9e0fac80e390676f9b1903ef375a9f800c05a6f492b1ff81141d2777aa631c208702864c343b7325432bdaa3e20c928\
                 656d8a594896f442509ea23409b02835ad36d7bcb35c9a64383abc6122b7290b499c10e531744bcee9502d103ba26f46\
                 0e86cc647e41eaef23feab64ae096830c4fbe6c2b0beba16643042d08493ea9fb8cab2f8c8dae35aa309f1a50ac75497\
                 fade983546a94e9e99429bf9d79b1ce3851424234a52a76f88d0d9299d4e3b2514cf385102dc530d59ee038958648daf\
                 a1ed2255836df8ab8410e324f8f0ef3860ca0e55d042fd397cf5436a5f45cf7808f3a6caaef17b994814b7d2b2bdf964\
                 ac4169fa4c36f0bd20ea37b39d8ddd88",
            gr: "956a1f3ec045edeb08b4cc990c79f2f2ef5f4e2aeeb60249ac8348bb80fba083e4eb006010383646f94f12509f7707b9\
                 8f37294963a66e57964415fe6687644379f6776f16b1ba544c961d4875ae8e764d89d32f2aaaf655549a51f577d92f4e\
                 959b84ac2c540ccac9533149d5043cd8d497287da0bf83375bbbd1126b0af8565f59be9f6fdedd36399d1a85f4c422fa\
                 ca1150ec40d06347894cf223728a63c3e32b6a884df1ad88a6039491fb74e556458ae491a9191c96c84c8a938068addb\
                 f456a5667e31580ca16bea777ef87e55c76c0b72afcb135d81d9f838c2e97fc8eb6d05852fa4ef4c6ac25eeab5bafd06\
                 1fe8d6c349616a8934f233f9e5a82b54",
            gir: "ec45c04907bf05d44329915117b3f34633609b4a6579b686cd1e30de6c6cb514f5e650c699430796c967a9dbe8bab9f7\
                  e9bbb93f28c6ded7168a2c0d78158da91aff579b5e287c480222d2668d8d64fb4318ba582c84c5e74497d2139198a71e\
                  530dc85f0b0e176dddbbe283a32b63f42e9dfa588584e111105eb55ea15894964612970e8377a62d10f38614aaad9eab\
                  26dbd6cdb0de822ceb8e8cfba56ad5863b54e83573e2079abeeeea29083783027f9d79ffe335258d9a92f03e7ec23fa3\
                  e6431f79e9e6bca44b992705ca01d3e1f9645fca8538ae8400216f588d34ecac8a1e5d3152080accd6c8c41c090359f2\
                  af20f0b5e3703bde887854b3a17d6939",
        },
    ];
    for c in cases {
        let initiator = KeyExchange::generate(c.group, &mut FixedRng(h(c.xi)));
        let responder = KeyExchange::generate(c.group, &mut FixedRng(h(c.xr)));
        assert_eq!(initiator.group(), c.group);
        assert_eq!(initiator.public_value(), h(c.gi), "{}", c.group);
        assert_eq!(responder.public_value(), h(c.gr), "{}", c.group);
        assert_eq!(&initiator.agree(&h(c.gr)).expect("valid g^r")[..], &h(c.gir)[..], "{}", c.group);
        assert_eq!(&responder.agree(&h(c.gi)).expect("valid g^i")[..], &h(c.gir)[..], "{}", c.group);
    }
}

// ---------------------------------------------------------------- AES-GCM

/// (key, 12-byte nonce, aad, plaintext, ciphertext, tag). The nonce is split into the
/// 4-byte salt (end of SK_e) and the 8-byte explicit IV, as RFC 5282 does.
struct GcmCase {
    name: &'static str,
    key: &'static str,
    nonce: &'static str,
    aad: &'static str,
    pt: &'static str,
    ct: &'static str,
    tag: &'static str,
}

const GCM_PT_60: &str = "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72 \
                         1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b39";

const GCM_CASES: &[GcmCase] = &[
    GcmCase {
        name: "GCM spec test case 4 (AES-128)",
        key: "feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        pt: GCM_PT_60,
        ct: "42831ec2217774244b7221b784d0d49c e3aa212f2c02a4e035c17e2329aca12e \
             21d514b25466931c7d8f6a5aac84aa05 1ba30b396a0aac973d58e091",
        tag: "5bc94fbc3221a5db94fae95ae7121a47",
    },
    GcmCase {
        name: "GCM spec test case 16 (AES-256)",
        key: "feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308",
        nonce: "cafebabefacedbaddecaf888",
        aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        pt: GCM_PT_60,
        ct: "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa \
             8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662",
        tag: "76fc6ece0f4e1768cddf8853bb2d551b",
    },
    GcmCase {
        name: "Wycheproof aes_gcm tcId 2",
        key: "5b9604fe14eadba931b0ccf34843dab9",
        nonce: "921d2507fa8007b7bd067d34",
        aad: "00112233445566778899aabbccddeeff",
        pt: "001d0c231287c1182784554ca3a21908",
        ct: "49d8b9783e911913d87094d1f63cc765",
        tag: "1e348ba07cca2cf04c618cb4d43a5b92",
    },
    GcmCase {
        name: "Wycheproof aes_gcm tcId 4 (empty)",
        key: "bedcfb5a011ebc84600fcb296c15af0d",
        nonce: "438a547a94ea88dce46c6c85",
        aad: "",
        pt: "",
        ct: "",
        tag: "960247ba5cde02e41a313c4c0136edc3",
    },
    GcmCase {
        name: "Wycheproof aes_gcm tcId 91",
        key: "92ace3e348cd821092cd921aa3546374299ab46209691bc28b8752d17f123c20",
        nonce: "00112233445566778899aabb",
        aad: "00000000ffffffff",
        pt: "00010203040506070809",
        ct: "e27abdd2d2a53d2f136b",
        tag: "9a4a2579529301bcfb71c78d4060f52c",
    },
    GcmCase {
        name: "Wycheproof aes_gcm tcId 129",
        key: "00112233445566778899aabbccddeeff102132435465768798a9bacbdcedfe0f",
        nonce: "ffffffffffffffffffffffff",
        aad: "",
        pt: "c6152244cea1978d3e0bc274cf8c0b3b",
        ct: "7cb6fc7c6abc009efe9551a99f36a421",
        tag: "00000000000000000000000000000000",
    },
];

fn gcm_cipher(key: &str, nonce: &str) -> (SkCipher, [u8; 8]) {
    let key = h(key);
    let nonce = h(nonce);
    let encr = if key.len() == 16 { EncrAlg::AesGcm16_128 } else { EncrAlg::AesGcm16_256 };
    let (salt, iv) = nonce.split_at(4);
    let cipher = SkCipher::new(encr, None, &[&key[..], salt].concat(), &[]).expect("key || salt length");
    (cipher, iv.try_into().expect("8-byte IV"))
}

#[test]
fn aes_gcm_known_answers() {
    for case in GCM_CASES {
        let (cipher, iv) = gcm_cipher(case.key, case.nonce);
        let aad = h(case.aad);
        let expected = [h(case.ct), h(case.tag)].concat();

        let mut buf = h(case.pt);
        cipher.seal(&iv, &aad, &mut buf);
        assert_eq!(hex::encode(&buf), hex::encode(&expected), "seal {}", case.name);

        let mut buf = expected.clone();
        let n = cipher.open(&iv, &aad, &mut buf).unwrap_or_else(|e| panic!("open {}: {e}", case.name));
        assert_eq!(hex::encode(&buf[..n]), hex::encode(h(case.pt)), "open {}", case.name);
    }
}

#[test]
fn aes_gcm_modified_tags_are_rejected() {
    // Wycheproof aes_gcm "ModifiedTag" cases (result invalid): (tcId, key, nonce, ct, tag).
    let cases = [
        (
            41,
            "000102030405060708090a0b0c0d0e0f",
            "eb156d081ed6b6b55f4612f021d87b39",
            "d9847dbc326a06e988c77ad3863e6083",
        ),
        (
            42,
            "000102030405060708090a0b0c0d0e0f",
            "eb156d081ed6b6b55f4612f021d87b39",
            "da847dbc326a06e988c77ad3863e6083",
        ),
        (
            43,
            "000102030405060708090a0b0c0d0e0f",
            "eb156d081ed6b6b55f4612f021d87b39",
            "58847dbc326a06e988c77ad3863e6083",
        ),
        (
            45,
            "000102030405060708090a0b0c0d0e0f",
            "eb156d081ed6b6b55f4612f021d87b39",
            "d8847d3c326a06e988c77ad3863e6083",
        ),
        (
            130,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "b2061457c0759fc1749f174ee1ccadfa",
            "9de8fef6d8ab1bf1bf887232eab590dd",
        ),
        (
            131,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "b2061457c0759fc1749f174ee1ccadfa",
            "9ee8fef6d8ab1bf1bf887232eab590dd",
        ),
        (
            132,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "b2061457c0759fc1749f174ee1ccadfa",
            "1ce8fef6d8ab1bf1bf887232eab590dd",
        ),
    ];
    for (tc, key, ct, tag) in cases {
        let (cipher, iv) = gcm_cipher(key, "505152535455565758595a5b");
        let mut buf = [h(ct), h(tag)].concat();
        assert_eq!(cipher.open(&iv, &[], &mut buf), Err(CryptoError::IntegrityCheckFailed), "tcId {tc}");
    }
}

#[test]
fn aes_gcm_known_answer_tamper_fails() {
    let case = &GCM_CASES[0];
    let (cipher, iv) = gcm_cipher(case.key, case.nonce);
    let sealed = [h(case.ct), h(case.tag)].concat();
    for bit in [0usize, 7, 100, 8 * sealed.len() - 1] {
        let mut buf = sealed.clone();
        buf[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(cipher.open(&iv, &h(case.aad), &mut buf), Err(CryptoError::IntegrityCheckFailed), "bit {bit}");
    }
}
