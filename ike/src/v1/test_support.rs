//! Shared by the exchange tests: a Main Mode SA established in memory between two
//! sides, for Quick Mode and Informational tests to run under.

use super::main_mode::{Initiator, MainModeConfig, Phase1Sa, Responder, Step};
use crate::testing::TestRng;
use ipsec_types::{Identity, IkeProposal};

/// Main Mode with `proposal` and a common key between 192.0.2.1 (initiator) and
/// 198.51.100.1, RNGs seeded `seed` and `seed + 1`: (initiator's SA, responder's SA).
pub(crate) fn phase1(proposal: &str, seed: u64) -> (Phase1Sa, Phase1Sa) {
    let props = vec![IkeProposal::parse(proposal).expect("proposal")];
    let (a, b) = (Identity::parse("192.0.2.1").expect("id"), Identity::parse("198.51.100.1").expect("id"));
    let (sa, sb) = ("192.0.2.1:500".parse().expect("addr"), "198.51.100.1:500".parse().expect("addr"));
    let ci = MainModeConfig {
        proposals: &props,
        psk: b"k",
        local_id: &a,
        remote_id: None,
        life_secs: 28_800,
        local: sa,
        remote: sb,
        fake_nat: false,
        announce_vpngw: false,
        initial_contact: true,
    };
    let cr = MainModeConfig {
        proposals: &props,
        psk: b"k",
        local_id: &b,
        remote_id: None,
        life_secs: 28_800,
        local: sb,
        remote: sa,
        fake_nat: false,
        announce_vpngw: false,
        initial_contact: true,
    };
    let (mut ri, mut rr) = (TestRng::new(seed), TestRng::new(seed + 1));
    let (mut i, m1) = Initiator::start(&ci, &mut ri);
    let (mut r, m2) = Responder::accept(&cr, &mut rr, &m1).expect("message 1");
    let send = |s| match s {
        Ok(Step::Send(m)) => m,
        other => panic!("expected a message: {other:?}"),
    };
    let m3 = send(i.handle(&ci, &mut ri, &m2));
    let m4 = send(r.handle(&cr, &mut rr, &m3));
    let m5 = send(i.handle(&ci, &mut ri, &m4));
    let Ok(Step::Done(sr, Some(m6))) = r.handle(&cr, &mut rr, &m5) else { panic!("message 6") };
    let Ok(Step::Done(si, None)) = i.handle(&ci, &mut ri, &m6) else { panic!("established") };
    (*si, *sr)
}
