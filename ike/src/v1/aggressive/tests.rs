//! Aggressive Mode in memory, both roles: both sides end with the same keys and the
//! same phase-2 IV base; a wrong key fails at HASH_R (initiator) or HASH_I (responder);
//! NAT detection works from messages 2 and 3; message 3 may come in cleartext.

use super::*;
use crate::testing::TestRng;
use crate::v1::keys::phase2_iv;
use crate::v1::main_mode::Phase1Sa;
use ipsec_types::IkeProposal;
use std::net::SocketAddr;

struct Side {
    proposals: Vec<IkeProposal>,
    psk: Vec<u8>,
    local: Identity,
    remote: Identity,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
}

fn sides(psk_r: &str, r_sees_i: &str) -> (Side, Side) {
    let i = Side {
        proposals: vec![IkeProposal::parse("aes128-sha1-modp2048").expect("proposal")],
        psk: b"k".to_vec(),
        local: Identity::parse("a.example").expect("id"),
        remote: Identity::parse("b.example").expect("id"),
        local_addr: "192.0.2.1:500".parse().expect("addr"),
        remote_addr: "198.51.100.1:500".parse().expect("addr"),
    };
    let r = Side {
        proposals: i.proposals.clone(),
        psk: psk_r.as_bytes().to_vec(),
        local: i.remote.clone(),
        remote: i.local.clone(),
        local_addr: i.remote_addr,
        remote_addr: r_sees_i.parse().expect("addr"),
    };
    (i, r)
}

impl Side {
    fn cfg(&self) -> MainModeConfig<'_> {
        MainModeConfig {
            proposals: &self.proposals,
            psk: &self.psk,
            local_id: &self.local,
            remote_id: Some(&self.remote),
            life_secs: 28_800,
            local: self.local_addr,
            remote: self.remote_addr,
            fake_nat: false,
            announce_vpngw: false,
            initial_contact: false,
        }
    }
}

fn run(i: &Side, r: &Side, clear3: bool) -> Result<(Phase1Sa, Phase1Sa), MainModeError> {
    let (mut ri, mut rr) = (TestRng::new(1), TestRng::new(2));
    let (mut init, m1) = Initiator::start(&i.cfg(), &mut ri).expect("a group");
    let (mut resp, m2) = Responder::accept(&r.cfg(), &mut rr, &m1)?;
    let Step::Done(a, Some(m3)) = init.handle(&i.cfg(), &mut ri, &m2)? else { panic!("initiator done") };
    let m3 = if clear3 {
        // Some peers send message 3 in cleartext: HDR, HASH_I.
        let mut m = Message::parse(&m3).expect("3");
        let k = a.keys.cipher().expect("cipher");
        m.decrypt(&m3, &k, &phase1_iv_of(&resp)).expect("decrypt");
        emit_clear(header(a.cky_i, a.cky_r), &m.payloads)
    } else {
        m3
    };
    let Step::Done(b, None) = resp.handle(&r.cfg(), &m3)? else { panic!("responder done") };
    Ok((*a, *b))
}

fn phase1_iv_of(r: &Responder) -> [u8; BLOCK] {
    let k = r.keyed.as_ref().expect("keyed");
    phase1_iv(k.algs.hash, &k.g_xi, &k.g_xr)
}

#[test]
fn both_sides_agree() {
    let (i, r) = sides("k", "192.0.2.1:500");
    let (a, b) = run(&i, &r, false).expect("established");
    assert_eq!((a.cky_i, a.cky_r), (b.cky_i, b.cky_r));
    assert_eq!(a.last_block, b.last_block);
    assert_eq!(phase2_iv(a.algs.hash, &a.last_block, 9), phase2_iv(b.algs.hash, &b.last_block, 9));
    let (ni, nr) = ([1u8; 16], [2u8; 16]);
    assert_eq!(*a.keys.quick_keymat(None, 3, 7, &ni, &nr, 36), *b.keys.quick_keymat(None, 3, 7, &ni, &nr, 36));
    assert_eq!(a.peer_id, r.local);
    assert_eq!(b.peer_id, i.local);
    assert!(!a.nat.detected() && !b.nat.detected());
}

#[test]
fn cleartext_message_3_is_accepted() {
    let (i, r) = sides("k", "192.0.2.1:500");
    let (a, b) = run(&i, &r, true).expect("established");
    assert_eq!(a.keys.quick_hash3(5, &[1], &[2]), b.keys.quick_hash3(5, &[1], &[2]));
}

#[test]
fn wrong_key_fails_at_hash_r() {
    let (i, r) = sides("other", "192.0.2.1:500");
    assert_eq!(run(&i, &r, false).unwrap_err(), MainModeError::AuthenticationFailed);
}

#[test]
fn nat_is_detected_from_messages_2_and_3() {
    let (i, r) = sides("k", "203.0.113.9:4500");
    let (a, b) = run(&i, &r, false).expect("established");
    assert!(a.nat.local_behind && a.nat.detected());
    assert!(b.nat.remote_behind && b.nat.detected());
}
