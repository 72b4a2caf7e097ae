//! The key exchange groups beyond x25519/ecp256 negotiated end to end between two in-memory
//! endpoints: MODP 2048/3072/4096 and ECP 384/521 in IKE_SA_INIT and as CHILD SA PFS, the
//! legacy MODP groups only where both proposals name them, INVALID_KE_PAYLOAD into a MODP
//! group, and a responder refusing an out-of-range MODP value before it spends a key
//! generation on it.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, Event, PeerConfig};
use ipsec_types::{DatapathCommand, DhGroup, EspProposal, IkeProposal};

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn configs(ike_a: &str, ike_b: &str) -> (PeerConfig, PeerConfig) {
    let mut a = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut b = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    a.ike_proposals = vec![IkeProposal::parse(ike_a).unwrap()];
    b.ike_proposals = vec![IkeProposal::parse(ike_b).unwrap()];
    (a, b)
}

/// Both sides hold one established IKE SA of `group` with one CHILD SA, and the CHILD SA
/// keys match across.
fn assert_up_with(p: &Pair, group: DhGroup) {
    for side in [Side::A, Side::B] {
        let st = match side {
            Side::A => p.a.status(),
            Side::B => p.b.status(),
        };
        assert_eq!(st.len(), 1, "{side:?}");
        assert_eq!(st[0].state, "ESTABLISHED");
        assert_eq!(st[0].dh, Some(group), "{side:?}");
        assert_eq!(st[0].children.len(), 1);
    }
    let key = |side: Side, inbound: bool| {
        p.datapath(side)
            .iter()
            .rev()
            .find_map(|c| match c {
                DatapathCommand::InstallInbound(s) if inbound => Some(s.key.key().to_vec()),
                DatapathCommand::InstallOutbound(s) if !inbound => Some(s.key.key().to_vec()),
                _ => None,
            })
            .expect("installed")
    };
    assert_eq!(key(Side::A, false), key(Side::B, true));
    assert_eq!(key(Side::B, false), key(Side::A, true));
}

#[test]
fn ike_sa_in_each_new_group() {
    init_logs();
    for (kw, group) in [
        ("modp2048", DhGroup::Modp2048),
        ("modp3072", DhGroup::Modp3072),
        ("modp4096", DhGroup::Modp4096),
        ("ecp384", DhGroup::Ecp384),
        ("ecp521", DhGroup::Ecp521),
    ] {
        let proposal = format!("aes256gcm16-prfsha256-{kw}");
        let (a, b) = configs(&proposal, &proposal);
        let mut p = Pair::new(a, b);
        p.run();
        assert_up_with(&p, group);
        // One IKE_SA_INIT and one IKE_AUTH: the KE payload carried the group's full value.
        let tx = p.transmits(Side::A);
        assert_eq!(tx.len(), 2, "{kw}");
        assert!(tx[0].data.len() > group.public_len(), "{kw}");
    }
}

#[test]
fn legacy_modp_only_when_both_proposals_name_it() {
    init_logs();
    // A names modp1024 alone; B is on the default x25519 proposal: no proposal chosen.
    let (a, b) = configs("aes128gcm16-prfsha256-modp1024", "aes256gcm16-prfsha256-x25519");
    let mut b2 = b.clone();
    b2.ike_proposals = vec![IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap()];
    let mut p = Pair::new(a.clone(), b2);
    p.run();
    assert!(p.a.status().iter().all(|s| s.state != "ESTABLISHED"));
    assert!(p.b.status().is_empty(), "the responder keeps nothing");
    assert_eq!(p.b.drops().refused_proposal, 1);

    // B prefers x25519 but also names modp1024: A's only group is chosen.
    let mut b3 = b;
    b3.ike_proposals = vec![IkeProposal::parse("aes128gcm16-prfsha256-x25519-modp1024").unwrap()];
    let mut p = Pair::new(a, b3);
    p.run();
    assert_up_with(&p, DhGroup::Modp1024);

    assert_eq!(p.b.status()[0].dh, Some(DhGroup::Modp1024));

    // Both name modp768 and modp1536 as well: the initiator's first choice wins.
    let (a, b) = configs("aes128gcm16-prfsha256-modp1536-modp768", "aes128gcm16-prfsha256-modp768-modp1536");
    let mut p = Pair::new(a, b);
    p.run();
    assert_up_with(&p, DhGroup::Modp1536);
}

#[test]
fn invalid_ke_payload_retry_into_a_modp_group() {
    init_logs();
    let (a, b) = configs("aes256gcm16-prfsha256-ecp384-modp2048", "aes256gcm16-prfsha256-modp2048");
    let mut p = Pair::new(a, b);
    p.run();
    assert_up_with(&p, DhGroup::Modp2048);
    let tx = p.transmits(Side::A);
    assert_eq!(tx.len(), 3, "IKE_SA_INIT (ecp384), IKE_SA_INIT (modp2048), IKE_AUTH");
    assert_eq!(tx[0].data[..8], tx[1].data[..8], "same SPIi on the retry");
}

#[test]
fn child_rekey_with_modp_and_ecp_pfs() {
    init_logs();
    for (kw, group) in [("modp2048", DhGroup::Modp2048), ("ecp521", DhGroup::Ecp521), ("modp1024", DhGroup::Modp1024)] {
        let (mut a, mut b) = configs("aes256gcm16-prfsha256-ecp384", "aes256gcm16-prfsha256-ecp384");
        let esp = format!("aes256gcm16-{kw}");
        a.esp_proposals = vec![EspProposal::parse(&esp).unwrap()];
        b.esp_proposals = vec![EspProposal::parse(&esp).unwrap()];
        let mut p = Pair::new(a, b);
        p.run();
        assert_up_with(&p, DhGroup::Ecp384);
        assert_eq!(p.a.status()[0].children[0].dh, None, "IKE_AUTH children have no key exchange");
        p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
        p.run();
        let (sa, sb) = (p.a.status(), p.b.status());
        let live = |st: &[ike::IkeSaStatus]| st[0].children.iter().filter(|c| c.dh == Some(group)).count();
        assert_eq!((live(&sa), live(&sb)), (1, 1), "{kw}: the rekeyed CHILD SA used {group}");
        assert!(p.events(Side::A).iter().filter(|e| matches!(e, Event::ChildUp { .. })).count() >= 2, "{kw}");
    }
}

/// The KE payload's data in an IKE_SA_INIT request (payload type 34), as a byte range.
fn ke_data_range(datagram: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut next = *datagram.get(16)?;
    let mut at = 28;
    while next != 0 {
        let len = usize::from(u16::from_be_bytes([*datagram.get(at + 2)?, *datagram.get(at + 3)?]));
        if next == 34 {
            return Some(at + 8..at + len);
        }
        next = *datagram.get(at)?;
        at += len;
    }
    None
}

#[test]
fn responder_refuses_out_of_range_modp_values() {
    init_logs();
    for bad in ["zero", "one", "p-1", "all-ff"] {
        let proposal = "aes256gcm16-prfsha256-modp2048";
        let (a, b) = configs(proposal, proposal);
        let mut p = Pair::new(a, b);
        p.a.handle_timeout(p.now);
        let mut init = p.take_to(Side::B).expect("IKE_SA_INIT");
        let range = ke_data_range(&init.data).expect("KE payload");
        assert_eq!(range.len(), 256);
        let ke = &mut init.data[range];
        match bad {
            "zero" => ke.fill(0),
            "one" => {
                ke.fill(0);
                ke[255] = 1;
            }
            // p - 1 (of order 2): the prime ends in 64 one bits, so only its last byte changes.
            "p-1" => {
                ke.copy_from_slice(&prime_2048());
                ke[255] = 0xfe;
            }
            _ => ke.fill(0xff),
        }
        p.inject(Side::B, &init);
        assert!(p.b.status().is_empty(), "{bad}: no state for an invalid KE value");
        let answer = p.take_to(Side::A).expect("an error notify");
        assert!(answer.data.len() < 100, "{bad}: a bare notify, no KE of B's own");
    }
    // Control: the unaltered request gets a half-open SA and a full answer.
    let proposal = "aes256gcm16-prfsha256-modp2048";
    let (a, b) = configs(proposal, proposal);
    let mut p = Pair::new(a, b);
    p.a.handle_timeout(p.now);
    let init = p.take_to(Side::B).expect("IKE_SA_INIT");
    p.inject(Side::B, &init);
    assert_eq!(p.b.status().len(), 1);
    assert!(p.take_to(Side::A).expect("answer").data.len() > 256);
}

#[test]
fn legacy_groups_are_listed_for_the_start_up_warning() {
    let (mut a, b) = configs("aes128gcm16-prfsha256-modp2048-modp1024", "aes256gcm16-prfsha256-ecp384");
    a.esp_proposals = vec![EspProposal::parse("aes128gcm16-modp1024-modp768").unwrap()];
    assert_eq!(a.legacy_groups(), vec![DhGroup::Modp1024, DhGroup::Modp768]);
    assert!(b.legacy_groups().is_empty());
    assert!(peer_config("x", "192.0.2.1", "192.0.2.2", true, true).legacy_groups().is_empty(), "not in the defaults");
}

/// The 2048-bit MODP prime, copied from RFC 3526 section 3.
fn prime_2048() -> Vec<u8> {
    hex::decode(concat!(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    ))
    .expect("hex")
}

#[test]
fn ike_rekey_in_modp_and_ecp_groups() {
    init_logs();
    for (kw, group) in [("modp3072", DhGroup::Modp3072), ("ecp521", DhGroup::Ecp521)] {
        let proposal = format!("aes256gcm16-prfsha384-{kw}");
        let (a, b) = configs(&proposal, &proposal);
        let mut p = Pair::new(a, b);
        p.run();
        assert_up_with(&p, group);
        let before = (p.a.status()[0].spi_i, p.a.status()[0].spi_r);
        p.command(Side::B, Command::Rekey { peer: "site-a".into(), ike: true });
        p.run();
        for st in [p.a.status(), p.b.status()] {
            assert_eq!(st.len(), 1, "{kw}: old IKE SA deleted");
            assert_ne!((st[0].spi_i, st[0].spi_r), before, "{kw}");
            assert_eq!(st[0].dh, Some(group), "{kw}");
            assert_eq!(st[0].children.len(), 1, "{kw}");
        }
        assert!(p.events(Side::A).iter().all(|e| !matches!(e, Event::IkeDown { .. })), "{kw}");
        // The rekeyed IKE SA carries a CHILD rekey.
        p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
        p.run();
        assert!(p.events(Side::A).iter().filter(|e| matches!(e, Event::ChildUp { .. })).count() >= 2, "{kw}");
    }
}
