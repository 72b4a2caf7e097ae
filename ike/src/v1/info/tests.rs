//! Informational messages between the two ends of one Main Mode SA: deletes, DPD and
//! INITIAL-CONTACT both ways; forged, foreign and unprotected ones say nothing.

use super::*;
use crate::testing::TestRng;
use crate::v1::main_mode::{Initiator, MainModeConfig, Responder, Step};
use crate::v1::message::emit_clear;
use ipsec_types::{Identity, IkeProposal};

/// Main Mode between two sides whose RNGs start from `seed` and `seed + 1`.
fn phase1(seed: u64) -> (Phase1Sa, Phase1Sa) {
    let props = vec![IkeProposal::parse("aes256-sha256-modp2048").expect("p")];
    let (a, b) = (Identity::parse("192.0.2.1").expect("id"), Identity::parse("198.51.100.1").expect("id"));
    let ci = MainModeConfig { proposals: &props, psk: b"k", local_id: &a, remote_id: None, life_secs: 3600 };
    let cr = MainModeConfig { proposals: &props, psk: b"k", local_id: &b, remote_id: None, life_secs: 3600 };
    let (mut ri, mut rr) = (TestRng::new(seed), TestRng::new(seed + 1));
    let (mut i, m1) = Initiator::start(&ci, &mut ri);
    let (mut r, m2) = Responder::accept(&cr, &mut rr, &m1).expect("1");
    let send = |s| match s {
        Ok(Step::Send(m)) => m,
        other => panic!("{other:?}"),
    };
    let m3 = send(i.handle(&ci, &mut ri, &m2));
    let m4 = send(r.handle(&cr, &mut rr, &m3));
    let m5 = send(i.handle(&ci, &mut ri, &m4));
    let Ok(Step::Done(sr, Some(m6))) = r.handle(&cr, &mut rr, &m5) else { panic!("6") };
    let Ok(Step::Done(si, None)) = i.handle(&ci, &mut ri, &m6) else { panic!("done") };
    (*si, *sr)
}

#[test]
fn deletes_dpd_and_initial_contact_both_ways() {
    let (a, b) = phase1(41);
    let mut rng = TestRng::new(5);
    let m = seal_informational(&a, &mut rng, vec![dpd(&a, false, 7)]).expect("seal");
    assert_eq!(open_informational(&b, &m), Ok(vec![Info::RUThere { ack: false, seq: 7 }]));
    let m = seal_informational(&b, &mut rng, vec![dpd(&b, true, 7)]).expect("seal");
    assert_eq!(open_informational(&a, &m), Ok(vec![Info::RUThere { ack: true, seq: 7 }]));
    let m = seal_informational(&a, &mut rng, vec![isakmp_notify(&a, notify::INITIAL_CONTACT, vec![])]).expect("seal");
    assert_eq!(open_informational(&b, &m), Ok(vec![Info::InitialContact]));
    let m = seal_informational(&b, &mut rng, vec![delete_esp(&[0xc000_0001, 0xc000_0002])]).expect("seal");
    assert_eq!(open_informational(&a, &m), Ok(vec![Info::DeleteEsp(vec![0xc000_0001, 0xc000_0002])]));
    let m = seal_informational(&a, &mut rng, vec![delete_isakmp(&a)]).expect("seal");
    assert_eq!(open_informational(&b, &m), Ok(vec![Info::DeleteIsakmp]));
}

#[test]
fn forged_foreign_and_unprotected_messages_say_nothing() {
    let (a, b) = phase1(41);
    let (c, _) = phase1(51);
    let mut rng = TestRng::new(6);
    let m = seal_informational(&a, &mut rng, vec![delete_isakmp(&a)]).expect("seal");
    let mut forged = m.clone();
    forged[28 + 3] ^= 0x40;
    assert_eq!(open_informational(&b, &forged), Err(InfoError::NotAuthenticated));
    // Another SA's message (other cookies).
    let other = seal_informational(&c, &mut rng, vec![delete_isakmp(&c)]).expect("seal");
    assert!(c.cky_i != b.cky_i || c.cky_r != b.cky_r);
    assert_eq!(open_informational(&b, &other), Err(InfoError::Unexpected));
    // A cleartext delete.
    let hdr = Header {
        cky_i: b.cky_i,
        cky_r: b.cky_r,
        next_payload: 0,
        exchange: exchange::INFORMATIONAL,
        flags: 0,
        message_id: 9,
        length: 0,
    };
    let clear =
        emit_clear(hdr, &[Payload::Notify(Notify { doi: 1, protocol: 1, msg_type: 14, spi: vec![], data: vec![] })]);
    assert_eq!(open_informational(&b, &clear), Err(InfoError::Unexpected));
}
