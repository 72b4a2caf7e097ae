//! IKEv1 proposals: the walkthrough's profile end to end over the codec, our order
//! deciding, and what is skipped or refused.

use super::*;
use crate::v1::message::payload::Payload;
use crate::v1::message::{emit_clear, exchange, Header, Message};

fn ike(s: &str) -> Vec<IkeProposal> {
    s.split(',').map(|p| IkeProposal::parse(p).expect("ike proposal")).collect()
}

fn esp(s: &str) -> Vec<EspProposal> {
    s.split(',').map(|p| EspProposal::parse(p).expect("esp proposal")).collect()
}

/// `sa` as it arrives: sent in a Main Mode message and parsed back.
fn over_the_wire(sa: Sa) -> Sa {
    let h =
        Header { cky_i: 1, cky_r: 0, next_payload: 0, exchange: exchange::MAIN, flags: 0, message_id: 0, length: 0 };
    let wire = emit_clear(h, &[Payload::Sa(sa)]);
    match Message::parse(&wire).expect("parse").payloads.into_iter().next() {
        Some(Payload::Sa(sa)) => sa,
        other => panic!("not an SA: {other:?}"),
    }
}

#[test]
fn walkthrough_phase1_both_roles() {
    let cfg = ike("aes128-sha1-modp1024");
    let offer = over_the_wire(phase1_offer(&cfg, 28_800));
    let t = &offer.proposals[0].transforms;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].attr(p1attr::ENCRYPTION), Some(7));
    assert_eq!(t[0].attr(p1attr::KEY_LENGTH), Some(128));
    assert_eq!(t[0].attr(p1attr::HASH), Some(2));
    assert_eq!(t[0].attr(p1attr::AUTH_METHOD), Some(1));
    assert_eq!(t[0].attr(p1attr::GROUP), Some(2));
    assert_eq!(t[0].attr(p1attr::LIFE_DURATION), Some(28_800));
    let choice = select_phase1(&offer, &cfg).expect("responder chooses");
    let want = Phase1Algs { encr: EncrAlg::AesCbc128, hash: PrfAlg::HmacSha1, dh: DhGroup::Modp1024 };
    assert_eq!(choice.algs, want);
    assert_eq!(choice.algs.keywords(), "aes128-sha1-modp1024");
    assert_eq!(choice.life_secs, Some(28_800));
    // The answer is the chosen transform as offered.
    assert_eq!(choice.answer.proposals[0].transforms, offer.proposals[0].transforms);
    let answer = over_the_wire(choice.answer);
    assert_eq!(accept_phase1_answer(&answer, &cfg), Some((want, Some(28_800))));
}

#[test]
fn phase1_our_order_decides_and_combinations_are_transforms() {
    let peer = ike("aes128-sha1-modp1024,aes256-sha256-modp2048");
    let offer = over_the_wire(phase1_offer(&peer, 86_400));
    assert_eq!(offer.proposals[0].transforms.len(), 2);
    let ours = ike("aes256-sha256-modp2048,aes128-sha1-modp1024");
    let c = select_phase1(&offer, &ours).expect("choice");
    assert_eq!(c.algs.keywords(), "aes256-sha256-modp2048");
    assert_eq!(c.answer.proposals[0].transforms[0].num, 2);
    // aes128-aes256-sha1-sha256-modp1024-modp2048: 2 x 2 x 2 transforms, encr outermost.
    let many = phase1_offer(&ike("aes128-aes256-sha1-sha256-modp1024-modp2048"), 3600);
    assert_eq!(many.proposals[0].transforms.len(), 8);
    assert_eq!(many.proposals[0].transforms[1].attr(p1attr::GROUP), Some(14));
    // AEAD proposals have no IKEv1 phase-1 form.
    assert!(phase1_offer(&ike("aes256gcm16-prfsha256-ecp256"), 3600).proposals[0].transforms.is_empty());
}

#[test]
fn phase1_skips_what_it_cannot_use() {
    let cfg = ike("aes128-sha1-modp1024");
    let mut offer = phase1_offer(&cfg, 28_800);
    let good = offer.proposals[0].transforms[0].clone();
    let with = |f: &dyn Fn(&mut Transform)| {
        let mut t = good.clone();
        f(&mut t);
        t
    };
    offer.proposals[0].transforms = vec![
        // 3DES (5), RSA signatures (3), an attribute we do not know, an unreadable life.
        with(&|t| t.attrs[0] = Attr::new(p1attr::ENCRYPTION, 5)),
        with(&|t| t.attrs[3] = Attr::new(p1attr::AUTH_METHOD, 3)),
        with(&|t| t.attrs.push(Attr::new(16, 1))),
        with(&|t| t.attrs[6] = Attr::unreadable(p1attr::LIFE_DURATION)),
    ];
    assert_eq!(select_phase1(&offer, &cfg), None);
    // Without a Key Length attribute AES is AES-128; a lifetime in kilobytes is taken.
    offer.proposals[0].transforms.push(with(&|t| {
        t.attrs.remove(1);
        t.attrs[4] = Attr::new(p1attr::LIFE_TYPE, life::KILOBYTES);
        t.attrs[5] = Attr::new(p1attr::LIFE_DURATION, 4_608_000);
        t.num = 5;
    }));
    let c = select_phase1(&offer, &cfg).expect("the fifth");
    assert_eq!((c.algs.encr, c.life_secs, c.answer.proposals[0].transforms[0].num), (EncrAlg::AesCbc128, None, 5));
}

#[test]
fn phase1_answers_must_be_one_transform_we_offered() {
    let cfg = ike("aes128-sha1-modp1024");
    let offer = phase1_offer(&ike("aes128-sha1-modp1024,aes256-sha256-modp2048"), 3600);
    // Two transforms in an answer.
    assert_eq!(accept_phase1_answer(&offer, &cfg), None);
    // One we did not offer.
    let mut other = offer.clone();
    other.proposals[0].transforms.remove(0);
    assert_eq!(accept_phase1_answer(&other, &cfg), None);
}

#[test]
fn walkthrough_quick_mode_with_pfs_both_roles() {
    let cfg = esp("aes128-sha1-modp1024");
    let terms = QuickTerms { encap: ENCAP_TUNNEL, life_secs: Some(3600), life_kb: None };
    let offer = over_the_wire(quick_offer(&cfg, 0xc000_0001, terms));
    assert_eq!(offer.proposals.len(), 1);
    let t = &offer.proposals[0].transforms[0];
    assert_eq!((t.id, t.attr(p2attr::AUTH_ALG), t.attr(p2attr::GROUP)), (12, Some(2), Some(2)));
    assert_eq!((t.attr(p2attr::ENCAPSULATION), t.attr(p2attr::KEY_LENGTH)), (Some(1), Some(128)));
    let c = select_quick(&offer, &cfg, 0xc000_0002).expect("choice");
    let want = QuickAlgs { encr: EncrAlg::AesCbc128, integ: Some(IntegAlg::HmacSha1_96), pfs: Some(DhGroup::Modp1024) };
    assert_eq!((c.algs, c.peer_spi, c.terms), (want, 0xc000_0001, terms));
    assert_eq!(c.answer.proposals[0].spi, [0xc0, 0, 0, 2]);
    let answer = over_the_wire(c.answer);
    assert_eq!(accept_quick_answer(&answer, &cfg), Some((want, 0xc000_0002, terms)));
    // Without PFS configured, a PFS offer is not ours, nor the other way round.
    assert_eq!(select_quick(&offer, &esp("aes128-sha1"), 1), None);
    assert_eq!(accept_quick_answer(&answer, &esp("aes128-sha1")), None);
}

#[test]
fn quick_mode_groups_become_proposals_and_our_order_decides() {
    let terms = QuickTerms { encap: ENCAP_UDP_TUNNEL, life_secs: Some(3600), life_kb: Some(4_608_000) };
    let offer = over_the_wire(quick_offer(&esp("aes128-aes256-sha1-sha256-modp1024-modp2048"), 7, terms));
    assert_eq!(offer.proposals.len(), 2, "one proposal per PFS group");
    assert_eq!(offer.proposals[0].transforms.len(), 4);
    assert_eq!(offer.proposals[1].transforms[0].attr(p2attr::GROUP), Some(14));
    let c = select_quick(&offer, &esp("aes256-sha256-modp2048,aes128-sha1-modp1024"), 8).expect("choice");
    assert_eq!(c.algs.encr, EncrAlg::AesCbc256);
    assert_eq!(c.algs.pfs, Some(DhGroup::Modp2048));
    assert_eq!((c.answer.proposals[0].num, c.terms), (2, terms));
    // GCM: no integrity attribute.
    let gcm = over_the_wire(quick_offer(&esp("aes256gcm16"), 9, terms));
    assert_eq!(gcm.proposals[0].transforms[0].attr(p2attr::AUTH_ALG), None);
    assert_eq!(select_quick(&gcm, &esp("aes256gcm16"), 10).map(|c| c.algs.integ), Some(None));
}

#[test]
fn quick_mode_skips_what_it_cannot_use() {
    let cfg = esp("aes128-sha1");
    let terms = QuickTerms { encap: ENCAP_TUNNEL, life_secs: None, life_kb: None };
    let mut offer = quick_offer(&cfg, 1, terms);
    let good = offer.proposals[0].transforms[0].clone();
    let mut transport = good.clone();
    transport.attrs.retain(|a| a.ty != p2attr::ENCAPSULATION);
    transport.attrs.push(Attr::new(p2attr::ENCAPSULATION, 2));
    let mut cbc_alone = good.clone();
    cbc_alone.attrs.retain(|a| a.ty != p2attr::AUTH_ALG);
    let mut bad_spi = offer.clone();
    bad_spi.proposals[0].spi = vec![1, 2, 3];
    assert_eq!(select_quick(&bad_spi, &cfg, 2), None);
    offer.proposals[0].transforms = vec![transport, cbc_alone];
    assert_eq!(select_quick(&offer, &cfg, 2), None);
}
