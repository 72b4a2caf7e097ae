//! Informational messages between the two ends of one Main Mode SA: deletes, DPD and
//! INITIAL-CONTACT both ways; forged, foreign and unprotected ones say nothing.

use super::*;
use crate::testing::TestRng;
use crate::v1::message::emit_clear;
use crate::v1::test_support::phase1;

#[test]
fn deletes_dpd_and_initial_contact_both_ways() {
    let (a, b) = phase1("aes256-sha256-modp2048", 41);
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
    let (a, b) = phase1("aes256-sha256-modp2048", 41);
    let (c, _) = phase1("aes256-sha256-modp2048", 51);
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
