//! The IKE SA and CHILD SA ciphers negotiated end to end between two in-memory
//! endpoints: AES-CBC with HMAC-SHA1/SHA2 (the SK payload and ESP), PRF_HMAC_SHA1 from
//! the integrity algorithm, ChaCha20-Poly1305 for either SA, each through IKE_SA_INIT,
//! IKE_AUTH, a CHILD rekey with PFS and an IKE rekey; and the proposal mismatches that
//! must end in NO_PROPOSAL_CHOSEN.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, Event, IkeSaStatus, PeerConfig};
use ipsec_types::{DatapathCommand, DhGroup, EncrAlg, EspKey, EspProposal, IkeProposal, IntegAlg, PrfAlg};

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn configs(ike_a: &str, esp_a: &str, ike_b: &str, esp_b: &str) -> (PeerConfig, PeerConfig) {
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    a.ike_proposals = vec![IkeProposal::parse(ike_a).unwrap()];
    b.ike_proposals = vec![IkeProposal::parse(ike_b).unwrap()];
    a.esp_proposals = vec![EspProposal::parse(esp_a).unwrap()];
    b.esp_proposals = vec![EspProposal::parse(esp_b).unwrap()];
    (a, b)
}

/// What one suite must negotiate.
struct Suite {
    ike: &'static str,
    esp: &'static str,
    ike_algs: (EncrAlg, Option<IntegAlg>, PrfAlg, DhGroup),
    esp_algs: (EncrAlg, Option<IntegAlg>),
    /// The CHILD rekey's PFS group (the ESP proposal names one).
    pfs: Option<DhGroup>,
}

fn status(p: &mut Pair, side: Side) -> Vec<IkeSaStatus> {
    p.ep(side).status()
}

/// Every SA installed on `side` in direction `inbound`, by SPI.
fn installed(p: &Pair, side: Side, inbound: bool) -> Vec<(ipsec_types::Spi, EspKey)> {
    p.datapath(side)
        .into_iter()
        .filter_map(|c| match c {
            DatapathCommand::InstallInbound(s) if inbound => Some((s.spi, s.key)),
            DatapathCommand::InstallOutbound(s) if !inbound => Some((s.spi, s.key)),
            _ => None,
        })
        .collect()
}

/// Every outbound SA of one side has the keys (cipher key, salt, integrity key) of the
/// other side's inbound SA with its SPI, and the suite's algorithms; `children` SAs in
/// each direction on each side.
fn assert_child_keys(p: &Pair, s: &Suite, children: usize, what: &str) {
    for (from, to) in [(Side::A, Side::B), (Side::B, Side::A)] {
        let outs = installed(p, from, false);
        let ins = installed(p, to, true);
        assert_eq!((outs.len(), ins.len()), (children, children), "{what}");
        for (spi, x) in &outs {
            let (_, y) = ins.iter().find(|(i, _)| i == spi).expect("the peer's inbound SA");
            assert_eq!((x.key(), x.salt(), x.integ_key()), (y.key(), y.salt(), y.integ_key()), "{what}");
            assert_eq!((x.alg(), x.integ()), s.esp_algs, "{what}");
            let integ_len = s.esp_algs.1.map_or(0, |i| i.key_len());
            assert_eq!((x.key().len(), x.integ_key().len()), (s.esp_algs.0.key_len(), integ_len), "{what}");
            let (_, back) = &installed(p, to, false)[0];
            assert_ne!(x.key(), back.key(), "{what}: one key per direction");
        }
    }
}

/// Both sides hold one established IKE SA with the suite's algorithms and the CHILD SAs
/// listed with their ESP algorithms.
fn assert_ike(p: &mut Pair, s: &Suite, what: &str) {
    for side in [Side::A, Side::B] {
        let st = status(p, side);
        assert_eq!(st.len(), 1, "{what} {side:?}");
        let sa = &st[0];
        assert_eq!(sa.state, "ESTABLISHED", "{what} {side:?}");
        let (encr, integ, prf, dh) = s.ike_algs;
        assert_eq!((sa.encr, sa.integ, sa.prf, sa.dh), (Some(encr), integ, Some(prf), Some(dh)), "{what} {side:?}");
        assert!(!sa.children.is_empty(), "{what} {side:?}");
        for c in &sa.children {
            assert_eq!((c.encr, c.integ), s.esp_algs, "{what} {side:?}");
        }
    }
}

fn child_ups(p: &Pair, side: Side) -> usize {
    p.events(side).iter().filter(|e| matches!(e, Event::ChildUp { .. })).count()
}

/// IKE_SA_INIT + IKE_AUTH, a CHILD rekey with PFS, an IKE rekey, and a CHILD rekey over
/// the rekeyed IKE SA.
fn full_life(s: &Suite) {
    let (a, b) = configs(s.ike, s.esp, s.ike, s.esp);
    let mut p = Pair::new(a, b);
    p.run();
    assert_ike(&mut p, s, s.ike);
    assert_child_keys(&p, s, 1, s.ike);
    assert_eq!(status(&mut p, Side::A)[0].children[0].dh, None, "IKE_AUTH children have no key exchange");

    // CHILD rekey by the responder, with the PFS group of the ESP proposal.
    p.command(Side::B, Command::Rekey { peer: "site-a".into(), ike: false });
    p.run();
    p.advance(std::time::Duration::from_secs(3));
    assert_ike(&mut p, s, s.ike);
    assert_child_keys(&p, s, 2, s.ike);
    for side in [Side::A, Side::B] {
        let st = status(&mut p, side);
        let pfs: Vec<Option<DhGroup>> = st[0].children.iter().map(|c| c.dh).collect();
        assert!(pfs.contains(&s.pfs), "{}: {side:?} rekeyed CHILD SA with {:?}, has {pfs:?}", s.ike, s.pfs);
    }
    assert_eq!(child_ups(&p, Side::A), 2, "{}", s.ike);

    // IKE rekey by the initiator: new SPIs, same algorithms, CHILD SAs moved over.
    let before = status(&mut p, Side::A)[0].spi_i;
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: true });
    p.run();
    assert_ike(&mut p, s, s.ike);
    assert_ne!(status(&mut p, Side::A)[0].spi_i, before, "{}", s.ike);
    assert!(p.events(Side::A).iter().all(|e| !matches!(e, Event::IkeDown { .. })), "{}", s.ike);

    // The new IKE SA's SK payloads work: a CHILD rekey over it.
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    p.run();
    p.advance(std::time::Duration::from_secs(3));
    assert_ike(&mut p, s, s.ike);
    assert_child_keys(&p, s, 3, s.ike);
    assert_eq!(child_ups(&p, Side::A), 3, "{}", s.ike);
}

#[test]
fn aes128_sha1_modp1024_classic_gateway_profile() {
    init_logs();
    let s = Suite {
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1-modp1024",
        ike_algs: (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96), PrfAlg::HmacSha1, DhGroup::Modp1024),
        esp_algs: (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96)),
        pfs: Some(DhGroup::Modp1024),
    };
    full_life(&s);
    // The IKE_AUTH request travels in an AES-CBC SK payload: a 16-byte IV, whole
    // blocks, a 12-byte ICV.
    let (a, b) = configs(s.ike, s.esp, s.ike, s.esp);
    let mut p = Pair::new(a, b);
    p.run();
    let auth = &p.transmits(Side::A)[1].data;
    assert_eq!(auth[18], 35, "IKE_AUTH");
    let sk_body = auth.len() - 28 - 4;
    assert_eq!((sk_body - 16 - 12) % 16, 0, "IV, whole blocks, ICV");
}

#[test]
fn aes256_sha256_modp2048() {
    init_logs();
    full_life(&Suite {
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256-modp2048",
        ike_algs: (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha256_128), PrfAlg::HmacSha256, DhGroup::Modp2048),
        esp_algs: (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha256_128)),
        pfs: Some(DhGroup::Modp2048),
    });
}

#[test]
fn aes256_sha512_and_aes192_sha384() {
    init_logs();
    full_life(&Suite {
        ike: "aes256-sha512-ecp384",
        esp: "aes256-sha512-ecp384",
        ike_algs: (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256), PrfAlg::HmacSha512, DhGroup::Ecp384),
        esp_algs: (EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256)),
        pfs: Some(DhGroup::Ecp384),
    });
    full_life(&Suite {
        ike: "aes192-sha384-x25519",
        esp: "aes192-sha384-x25519",
        ike_algs: (EncrAlg::AesCbc192, Some(IntegAlg::HmacSha384_192), PrfAlg::HmacSha384, DhGroup::Curve25519),
        esp_algs: (EncrAlg::AesCbc192, Some(IntegAlg::HmacSha384_192)),
        pfs: Some(DhGroup::Curve25519),
    });
}

#[test]
fn explicit_prf_beside_cbc_integrity() {
    init_logs();
    full_life(&Suite {
        ike: "aes128-sha256-prfsha384-ecp256",
        esp: "aes128-sha1-ecp256",
        ike_algs: (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128), PrfAlg::HmacSha384, DhGroup::Ecp256),
        esp_algs: (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha1_96)),
        pfs: Some(DhGroup::Ecp256),
    });
}

#[test]
fn gcm_ike_sa_with_chacha20poly1305_esp() {
    init_logs();
    full_life(&Suite {
        ike: "aes128gcm16-prfsha256-x25519",
        esp: "chacha20poly1305-x25519",
        ike_algs: (EncrAlg::AesGcm16_128, None, PrfAlg::HmacSha256, DhGroup::Curve25519),
        esp_algs: (EncrAlg::ChaCha20Poly1305, None),
        pfs: Some(DhGroup::Curve25519),
    });
}

#[test]
fn chacha20poly1305_ike_sa() {
    init_logs();
    full_life(&Suite {
        ike: "chacha20poly1305-prfsha256-x25519",
        esp: "aes256gcm16-x25519",
        ike_algs: (EncrAlg::ChaCha20Poly1305, None, PrfAlg::HmacSha256, DhGroup::Curve25519),
        esp_algs: (EncrAlg::AesGcm16_256, None),
        pfs: Some(DhGroup::Curve25519),
    });
    // ChaCha20-Poly1305 transforms carry no Key Length attribute (RFC 7634 section 4):
    // the IKE_SA_INIT request's SA payload holds ENCR 28 as a bare 8-byte transform.
    let (a, b) = configs(
        "chacha20poly1305-prfsha256-x25519",
        "chacha20poly1305",
        "chacha20poly1305-prfsha256-x25519",
        "chacha20poly1305",
    );
    let mut p = Pair::new(a, b);
    p.run();
    let init = &p.transmits(Side::A)[0].data;
    let bare_chacha = [3u8, 0, 0, 8, 1, 0, 0, 28];
    let with_attr = [0u8, 0, 0, 12, 1, 0, 0, 28];
    assert!(init.windows(8).any(|w| w == bare_chacha || w[1..] == bare_chacha[1..]), "bare ENCR 28 transform");
    assert!(!init.windows(8).any(|w| w[1..] == with_attr[1..]), "no Key Length attribute");
    assert_eq!(status(&mut p, Side::B)[0].children[0].encr, EncrAlg::ChaCha20Poly1305);
}

#[test]
fn a_cbc_and_an_aead_proposal_side_by_side() {
    init_logs();
    // A offers GCM first and CBC second; B only accepts CBC with SHA-256: the second
    // proposal is chosen, for the IKE SA and the CHILD SA.
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    a.ike_proposals = vec![
        IkeProposal::parse("aes256gcm16-prfsha256-x25519").unwrap(),
        IkeProposal::parse("aes256-sha256-x25519").unwrap(),
    ];
    a.esp_proposals = vec![EspProposal::parse("aes256gcm16").unwrap(), EspProposal::parse("aes128-sha256").unwrap()];
    b.ike_proposals = vec![IkeProposal::parse("aes256-aes128-sha1-sha256-x25519").unwrap()];
    b.esp_proposals = vec![EspProposal::parse("aes128-sha512-sha256").unwrap()];
    let mut p = Pair::new(a, b);
    p.run();
    for side in [Side::A, Side::B] {
        let st = status(&mut p, side);
        assert_eq!(st[0].state, "ESTABLISHED");
        assert_eq!((st[0].encr, st[0].integ), (Some(EncrAlg::AesCbc256), Some(IntegAlg::HmacSha256_128)), "{side:?}");
        // B's proposal lists prfsha1 and prfsha256 (from its integrity algorithms); A's
        // second proposal only prfsha256.
        assert_eq!(st[0].prf, Some(PrfAlg::HmacSha256));
        assert_eq!(
            (st[0].children[0].encr, st[0].children[0].integ),
            (EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128))
        );
    }
}

#[test]
fn ike_integrity_mismatch_is_no_proposal_chosen() {
    init_logs();
    for (ike_a, ike_b) in [
        // Same cipher, other integrity (and so other PRF).
        ("aes128-sha1-modp1024", "aes128-sha256-modp1024"),
        // Same integrity, other key size.
        ("aes128-sha256-x25519", "aes256-sha256-x25519"),
        // CBC against an AEAD.
        ("aes256-sha256-prfsha256-x25519", "aes256gcm16-prfsha256-x25519"),
        // Same cipher and integrity, other PRF.
        ("aes128-sha256-prfsha256-x25519", "aes128-sha256-prfsha512-x25519"),
        ("chacha20poly1305-prfsha256-x25519", "aes256gcm16-prfsha256-x25519"),
    ] {
        let (a, b) = configs(ike_a, "aes128gcm16", ike_b, "aes128gcm16");
        let mut p = Pair::new(a, b);
        p.run();
        assert!(p.a.status().iter().all(|s| s.state != "ESTABLISHED"), "{ike_a} vs {ike_b}");
        assert!(p.b.status().is_empty(), "{ike_a} vs {ike_b}: the responder keeps nothing");
        assert_eq!(p.b.drops().refused_proposal, 1, "{ike_a} vs {ike_b}");
        // B's unprotected answer is NO_PROPOSAL_CHOSEN (notify type 14).
        let answer = &p.transmits(Side::B)[0].data;
        assert!(answer.windows(4).any(|w| w == [0, 0, 0, 14]), "{ike_a} vs {ike_b}: NO_PROPOSAL_CHOSEN");
    }
}

#[test]
fn esp_integrity_mismatch_leaves_the_ike_sa_without_child() {
    init_logs();
    for (esp_a, esp_b) in [
        ("aes128-sha1", "aes128-sha256"),
        ("aes128-sha1", "aes128gcm16"),
        ("chacha20poly1305", "aes256gcm16"),
        ("aes256-sha384", "aes128-sha384"),
    ] {
        let (a, b) = configs("aes128-sha256-x25519", esp_a, "aes128-sha256-x25519", esp_b);
        let mut p = Pair::new(a, b);
        p.run();
        assert_eq!(p.a.status()[0].state, "ESTABLISHED", "{esp_a} vs {esp_b}");
        assert!(p.a.status()[0].children.is_empty() && p.b.status()[0].children.is_empty(), "{esp_a} vs {esp_b}");
        assert!(p.datapath(Side::A).is_empty() && p.datapath(Side::B).is_empty(), "{esp_a} vs {esp_b}");
    }
}

/// A's IKE_SA_INIT and IKE_AUTH requests of an AES-CBC + HMAC-SHA2-256 handshake (the
/// RNGs are deterministic: a fresh pair answers them identically).
fn cbc_pair() -> Pair {
    let (a, b) = configs("aes256-sha256-x25519", "aes128-sha1", "aes256-sha256-x25519", "aes128-sha1");
    Pair::new(a, b)
}

/// Control for the property below: the unmodified IKE_AUTH replayed into a fresh
/// responder installs the CHILD SA (inbound and outbound), and one flipped ICV bit
/// installs nothing.
#[test]
fn replayed_cbc_ike_auth_installs_and_a_flipped_icv_bit_does_not() {
    let mut p = cbc_pair();
    p.run();
    let msgs: Vec<Vec<u8>> = p.transmits(Side::A).into_iter().map(|t| t.data).collect();
    let (a, b) = ("192.0.2.1:500".parse().unwrap(), "192.0.2.2:500".parse().unwrap());
    for flip in [false, true] {
        let mut q = cbc_pair();
        q.b.handle_datagram(q.now, b, a, &msgs[0]);
        let mut m = msgs[1].clone();
        if flip {
            *m.last_mut().unwrap() ^= 1;
        }
        q.b.handle_datagram(q.now, b, a, &m);
        q.drain();
        assert_eq!(q.datapath(Side::B).len(), if flip { 0 } else { 2 }, "flip {flip}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Mutated or cut IKE_AUTH requests in an AES-CBC SK payload never panic the
    /// responder and never install anything (they fail the ICV, or the length checks
    /// before it); the unmodified one still works.
    #[test]
    fn mutated_cbc_ike_auth_never_panics_or_installs(
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..4),
        cut in proptest::prelude::any::<Option<usize>>(),
    ) {
        let mut p = cbc_pair();
        p.run();
        let msgs: Vec<Vec<u8>> = p.transmits(Side::A).into_iter().map(|t| t.data).collect();
        let mut q = cbc_pair();
        let (a, b) = ("192.0.2.1:500".parse().unwrap(), "192.0.2.2:500".parse().unwrap());
        q.b.handle_datagram(q.now, b, a, &msgs[0]);
        let mut m = msgs[1].clone();
        let pristine = flips.is_empty() && cut.is_none_or(|c| c % (m.len() + 1) == m.len());
        for (i, v) in flips {
            let n = m.len();
            m[i % n] ^= v | 1;
        }
        if let Some(c) = cut {
            m.truncate(c % (m.len() + 1));
        }
        q.b.handle_datagram(q.now, b, a, &m);
        q.drain();
        let installed = q.datapath(Side::B).len();
        if pristine {
            proptest::prop_assert_eq!(installed, 2);
        } else {
            proptest::prop_assert_eq!(installed, 0);
        }
        proptest::prop_assert!(q.b.status().len() <= 1);
    }
}
