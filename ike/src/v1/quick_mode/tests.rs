//! Quick Mode in memory under a Main Mode SA established by `main_mode`: the
//! walkthrough's profile with PFS, without PFS, a responder asking for a shorter
//! lifetime, selectors outside our configuration, a proposal mismatch, forged
//! messages, and the ID payload forms of traffic selectors.

use super::*;
use crate::testing::TestRng;
use crate::v1::test_support::phase1;
use ipsec_types::{DhGroup, EncrAlg, IntegAlg};

fn ts(s: &str) -> TrafficSelector {
    TrafficSelector::parse_cidr(s).expect("cidr")
}

fn esp(s: &str) -> Vec<EspProposal> {
    vec![EspProposal::parse(s).expect("esp")]
}

struct Cfg {
    props: Vec<EspProposal>,
    local: TrafficSelector,
    remote: TrafficSelector,
    life: u64,
}

impl Cfg {
    fn new(p: &str, local: &str, remote: &str, life: u64) -> Self {
        Self { props: esp(p), local: ts(local), remote: ts(remote), life }
    }
    fn q(&self) -> QuickConfig<'_> {
        QuickConfig {
            proposals: &self.props,
            local_ts: &self.local,
            remote_ts: &self.remote,
            life_secs: self.life,
            encap: crate::v1::proposal::ENCAP_TUNNEL,
        }
    }
}

/// The keys each side seals with open on the other side.
fn assert_keys_cross(a: &QuickSa, b: &QuickSa) {
    assert_eq!((a.spi_in, a.spi_out), (b.spi_out, b.spi_in));
    assert_eq!(a.key_out.key(), b.key_in.key());
    assert_eq!(a.key_in.key(), b.key_out.key());
    assert_ne!(a.key_in.key(), a.key_out.key());
    assert_eq!(a.algs, b.algs);
}

fn run(ic: &Cfg, rc: &Cfg) -> Result<(QuickSa, QuickSa), QuickError> {
    let (p_i, p_r) = phase1("aes128-sha1-modp1024", 11);
    let (mut ri, mut rr) = (TestRng::new(21), TestRng::new(22));
    let (qi, m1) = QuickInitiator::start(&p_i, &ic.q(), &mut ri, 0xc000_0001)?;
    let (qr, sa_r, m2) = QuickResponder::accept(&p_r, &rc.q(), &mut rr, &m1, 0xc000_0002)?;
    assert_eq!(qi.message_id(), qr.message_id());
    let (sa_i, m3) = qi.handle(&p_i, &ic.q(), &m2)?;
    qr.handle(&p_r, &m3)?;
    Ok((sa_i, sa_r))
}

#[test]
fn walkthrough_quick_mode_with_pfs() {
    let ic = Cfg::new("aes128-sha1-modp1024", "10.1.0.0/16", "10.2.0.0/16", 3600);
    let rc = Cfg::new("aes128-sha1-modp1024", "10.2.0.0/16", "10.1.0.0/16", 3600);
    let (a, b) = run(&ic, &rc).expect("quick mode");
    assert_keys_cross(&a, &b);
    let want = QuickAlgs { encr: EncrAlg::AesCbc128, integ: Some(IntegAlg::HmacSha1_96), pfs: Some(DhGroup::Modp1024) };
    assert_eq!(a.algs, want);
    assert_eq!((a.spi_in, a.spi_out), (0xc000_0001, 0xc000_0002));
    assert_eq!((&a.local_ts, &a.remote_ts), (&b.remote_ts, &b.local_ts));
    assert_eq!((a.life_secs, b.life_secs), (Some(3600), Some(3600)));
}

#[test]
fn without_pfs_and_with_gcm() {
    let ic = Cfg::new("aes256gcm16", "10.1.0.0/16", "10.2.0.0/16", 3600);
    let rc = Cfg::new("aes256gcm16", "10.2.0.0/16", "10.1.0.0/16", 3600);
    let (a, b) = run(&ic, &rc).expect("quick mode");
    assert_keys_cross(&a, &b);
    assert_eq!((a.algs.pfs, a.algs.integ), (None, None));
    assert_eq!(EspKey::keymat_len(EncrAlg::AesGcm16_256, None), Some(36), "AES-256 key and 4-octet salt");
    assert_eq!(a.key_out.key().len(), 32);
}

#[test]
fn responder_lifetime_shortens_the_initiators() {
    let ic = Cfg::new("aes256-sha256-modp2048", "10.1.0.0/16", "10.2.0.0/16", 28_800);
    let rc = Cfg::new("aes256-sha256-modp2048", "10.2.0.0/16", "10.1.0.0/16", 3600);
    let (a, b) = run(&ic, &rc).expect("quick mode");
    assert_keys_cross(&a, &b);
    assert_eq!((a.life_secs, b.life_secs), (Some(3600), Some(3600)));
}

#[test]
fn responder_lifetimes_longer_than_two_octets() {
    let ic = Cfg::new("aes128-sha1", "10.1.0.0/16", "10.2.0.0/16", 200_000);
    let rc = Cfg::new("aes128-sha1", "10.2.0.0/16", "10.1.0.0/16", 86_400);
    let (a, b) = run(&ic, &rc).expect("quick mode");
    assert_eq!((a.life_secs, b.life_secs), (Some(86_400), Some(86_400)));
}

#[test]
fn selectors_outside_ours_and_other_proposals_are_refused() {
    // The initiator asks for 10.9.0.0/16 behind us.
    let ic = Cfg::new("aes128-sha1-modp1024", "10.1.0.0/16", "10.9.0.0/16", 3600);
    let rc = Cfg::new("aes128-sha1-modp1024", "10.2.0.0/16", "10.1.0.0/16", 3600);
    assert_eq!(run(&ic, &rc).err(), Some(QuickError::TsUnacceptable));
    // A subset of ours is taken as asked.
    let ic = Cfg::new("aes128-sha1-modp1024", "10.1.2.0/24", "10.2.0.0/16", 3600);
    let (_, b) = run(&ic, &rc).expect("subset");
    assert_eq!(b.remote_ts, ts("10.1.2.0/24"));
    // PFS on one side only.
    let ic = Cfg::new("aes128-sha1", "10.1.0.0/16", "10.2.0.0/16", 3600);
    assert_eq!(run(&ic, &rc).err(), Some(QuickError::NoProposalChosen));
}

#[test]
fn forged_and_replayed_messages_are_not_authenticated() {
    let ic = Cfg::new("aes128-sha1-modp1024", "10.1.0.0/16", "10.2.0.0/16", 3600);
    let rc = Cfg::new("aes128-sha1-modp1024", "10.2.0.0/16", "10.1.0.0/16", 3600);
    let (p_i, p_r) = phase1("aes128-sha1-modp1024", 11);
    let (mut ri, mut rr) = (TestRng::new(31), TestRng::new(32));
    let (qi, m1) = QuickInitiator::start(&p_i, &ic.q(), &mut ri, 1).expect("1");
    // A bit flipped in the first ciphertext block garbles the HASH payload.
    let mut forged = m1.clone();
    forged[28 + 5] ^= 1;
    assert_eq!(QuickResponder::accept(&p_r, &rc.q(), &mut rr, &forged, 2).err(), Some(QuickError::NotAuthenticated));
    let (qr, _, m2) = QuickResponder::accept(&p_r, &rc.q(), &mut rr, &m1, 2).expect("1");
    // Message 1 offered as message 2.
    assert!(qi.handle(&p_i, &ic.q(), &m1).is_err());
    let (_, m3) = qi.handle(&p_i, &ic.q(), &m2).expect("2");
    // Message 2 offered as message 3.
    assert_eq!(qr.handle(&p_r, &m2).err(), Some(QuickError::NotAuthenticated));
    qr.handle(&p_r, &m3).expect("3");
}

#[test]
fn selectors_as_id_payloads() {
    for s in ["10.1.0.0/16", "192.0.2.7/32", "0.0.0.0/0", "2001:db8::/32", "2001:db8::1/128"] {
        let t = ts(s);
        assert_eq!(id_to_ts(&ts_to_id(&t).expect("id")), Some(t), "{s}");
    }
    let mut range = ts("10.0.0.0/8");
    range.end = "10.0.0.9".parse().expect("ip");
    let id = ts_to_id(&range).expect("range");
    assert_eq!(id.id_type, idtype::IPV4_RANGE);
    assert_eq!(id_to_ts(&id), Some(range));
    let mut port = ts("10.1.0.0/16");
    port.protocol = 6;
    (port.start_port, port.end_port) = (443, 443);
    assert_eq!(id_to_ts(&ts_to_id(&port).expect("port")), Some(port));
    (port.start_port, port.end_port) = (1000, 2000);
    assert_eq!(ts_to_id(&port), None, "a port range has no IKEv1 form");
    // A non-contiguous mask, an empty range and a name select nothing.
    let bad_mask = Id { id_type: idtype::IPV4_SUBNET, protocol: 0, port: 0, data: vec![10, 0, 0, 0, 255, 0, 255, 0] };
    assert_eq!(id_to_ts(&bad_mask), None);
    let empty = Id { id_type: idtype::IPV4_RANGE, protocol: 0, port: 0, data: vec![10, 0, 0, 9, 10, 0, 0, 1] };
    assert_eq!(id_to_ts(&empty), None);
    let name = Id { id_type: idtype::FQDN, protocol: 0, port: 0, data: b"gw".to_vec() };
    assert_eq!(id_to_ts(&name), None);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Mutated Quick Mode messages never panic and never change the outcome: one is
    /// refused, or (IKEv1 authenticates neither the padding nor every header bit, e.g.
    /// the commit flag or the minor version) taken as the genuine one would be; the
    /// genuine messages complete the exchange afterwards.
    #[test]
    fn mutated_messages_never_panic_and_change_nothing(
        which in 1usize..=3,
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 1..6),
    ) {
        let ic = Cfg::new("aes128-sha1-modp1024", "10.1.0.0/16", "10.2.0.0/16", 3600);
        let rc = Cfg::new("aes128-sha1-modp1024", "10.2.0.0/16", "10.1.0.0/16", 3600);
        let (p_i, p_r) = phase1("aes128-sha1-modp1024", 11);
        let (mut ri, mut rr) = (TestRng::new(21), TestRng::new(22));
        let mutate = |m: &[u8]| {
            let mut v = m.to_vec();
            for (at, b) in &flips {
                let n = at.index(v.len());
                v[n] = *b;
            }
            v
        };
        let (qi, m1) = QuickInitiator::start(&p_i, &ic.q(), &mut ri, 1).expect("1");
        if which == 1 {
            let _ = QuickResponder::accept(&p_r, &rc.q(), &mut TestRng::new(23), &mutate(&m1), 2);
            let _ = crate::v1::info::open_informational(&p_r, &mutate(&m1));
        }
        let (qr, sa_r, m2) = QuickResponder::accept(&p_r, &rc.q(), &mut rr, &m1, 2).expect("1");
        let early = if which == 2 { qi.handle(&p_i, &ic.q(), &mutate(&m2)).ok() } else { None };
        let (sa_i, m3) = qi.handle(&p_i, &ic.q(), &m2).expect("2");
        if let Some((sa, _)) = early {
            assert_keys_cross(&sa, &sa_r);
        }
        if which == 3 {
            let _ = qr.handle(&p_r, &mutate(&m3));
        }
        qr.handle(&p_r, &m3).expect("3");
        assert_keys_cross(&sa_i, &sa_r);
    }
}
