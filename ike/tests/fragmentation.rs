//! IKE fragmentation (RFC 7383) between two in-memory endpoints: negotiated in
//! IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA (CHILD rekey with PFS) and the IKE rekey sent
//! as fragments that each fit the configured datagram size, every fragment resent on
//! retransmission, a retransmitted fragmented request answered once, tampered and
//! duplicate fragments counted and not kept, IPv6's larger header, every message as
//! fragments (DELETE included), INVALID_IKE_SPI for fragments of an unknown IKE SA; and
//! the memory a peer can make us hold.

use ike::testing::{
    fragment_probe, peer_config, FragDrop, Pair, ProbeResult, ReassemblyProbe, Side, MAX_FRAGMENTS, MAX_REASSEMBLED,
};
use ike::{Command, IkeSaStatus, PeerConfig, Transmit};
use ipsec_types::{EncrAlg, EspProposal, IkeProposal};
use std::time::Duration;

const SKF: u8 = 53;
const IKE_SA_INIT: u8 = 34;
const IKE_AUTH: u8 = 35;
const CREATE_CHILD_SA: u8 = 36;
/// IPv4 + UDP + non-ESP marker in front of every IKE message.
const OVERHEAD: usize = 20 + 8 + 4;
/// Small enough that IKE_AUTH and CREATE_CHILD_SA messages need several fragments.
const SIZE: u16 = 200;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn configs(a: Option<u16>, b: Option<u16>) -> (PeerConfig, PeerConfig) {
    configs_with(a, b, "aes256gcm16-prfsha256-x25519")
}

fn configs_with(a: Option<u16>, b: Option<u16>, ike: &str) -> (PeerConfig, PeerConfig) {
    let mut pa = peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true);
    let mut pb = peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false);
    (pa.fragment_size, pb.fragment_size) = (a, b);
    for p in [&mut pa, &mut pb] {
        p.ike_proposals = vec![IkeProposal::parse(ike).unwrap()];
    }
    // PFS: the CHILD rekey carries a KE payload too.
    for p in [&mut pa, &mut pb] {
        p.esp_proposals = vec![EspProposal::parse("aes256gcm16-x25519").unwrap()];
    }
    (pa, pb)
}

fn is_fragment(t: &Transmit) -> bool {
    t.data.get(16) == Some(&SKF)
}

fn exchange(t: &Transmit) -> u8 {
    t.data.get(18).copied().unwrap_or(0)
}

fn is_response(t: &Transmit) -> bool {
    t.data.get(19).is_some_and(|f| f & 0x20 != 0)
}

/// (fragments, whole messages) a side sent in `exchange` since `from`.
fn sent(p: &Pair, side: Side, exch: u8, from: usize) -> (usize, usize) {
    let t: Vec<Transmit> = p.transmits(side).into_iter().skip(from).filter(|t| exchange(t) == exch).collect();
    (t.iter().filter(|t| is_fragment(t)).count(), t.iter().filter(|t| !is_fragment(t)).count())
}

fn established(st: &[IkeSaStatus]) -> Vec<&IkeSaStatus> {
    st.iter().filter(|s| s.state == "ESTABLISHED").collect()
}

#[test]
fn fragments_through_ike_auth_child_rekey_and_ike_rekey() {
    init_logs();
    // Every kind of SK cipher: AEAD with a counter IV, AES-CBC with a random IV.
    for ike in ["aes256gcm16-prfsha256-x25519", "chacha20poly1305-prfsha256-x25519", "aes128-sha256-x25519"] {
        fragments_through_every_exchange(ike);
    }
}

fn fragments_through_every_exchange(ike: &str) {
    let (a, b) = configs_with(Some(SIZE), Some(SIZE), ike);
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.datapath(Side::A).len(), 2, "CHILD SA installed on A");
    assert_eq!(p.datapath(Side::B).len(), 2, "CHILD SA installed on B");
    // IKE_SA_INIT is never fragmented; IKE_AUTH both ways is, and only IKE_AUTH.
    for side in [Side::A, Side::B] {
        assert_eq!(sent(&p, side, IKE_SA_INIT, 0), (0, 1));
        let (frags, whole) = sent(&p, side, IKE_AUTH, 0);
        assert!(frags >= 2 && whole == 0, "{side:?}: {frags} fragments, {whole} whole IKE_AUTH messages");
    }
    // Every datagram fits the configured size (but IKE_SA_INIT, which cannot be split).
    for side in [Side::A, Side::B] {
        for t in p.transmits(side).into_iter().filter(|t| exchange(t) != IKE_SA_INIT) {
            assert!(t.data.len() + OVERHEAD <= usize::from(SIZE), "{} octets", t.data.len());
        }
    }

    // CHILD rekey with PFS, from B (the responder of the IKE SA).
    let (ta, tb) = (p.transmits(Side::A).len(), p.transmits(Side::B).len());
    p.command(Side::B, Command::Rekey { peer: "site-a".into(), ike: false });
    p.run();
    p.advance(Duration::from_secs(3));
    let (req, _) = sent(&p, Side::B, CREATE_CHILD_SA, tb);
    let (resp, _) = sent(&p, Side::A, CREATE_CHILD_SA, ta);
    assert!(req >= 2 && resp >= 2, "CREATE_CHILD_SA fragments: request {req}, response {resp}");
    let st = p.a.status();
    assert_eq!(established(&st).len(), 1);
    assert_eq!(st[0].children.len(), 1, "one CHILD SA after the rekey: {:?}", st[0].children);
    assert!(st[0].children[0].dh.is_some(), "rekeyed with PFS");
    let old_child = st[0].children[0].spi_in;

    // IKE rekey, from A: the new IKE SA keeps fragmentation.
    let old = (st[0].spi_i, st[0].spi_r);
    let ta = p.transmits(Side::A).len();
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: true });
    p.run();
    p.advance(Duration::from_secs(3));
    let (req, _) = sent(&p, Side::A, CREATE_CHILD_SA, ta);
    assert!(req >= 2, "IKE rekey request in {req} fragments");
    let st = p.a.status();
    let up = established(&st);
    assert_eq!(up.len(), 1, "{st:?}");
    assert_ne!((up[0].spi_i, up[0].spi_r), old, "a new IKE SA");
    assert_eq!(up[0].children.len(), 1);
    assert_eq!(up[0].children[0].spi_in, old_child, "the CHILD SA moved to the new IKE SA");

    // A CHILD rekey on the new IKE SA is fragmented too (negotiated once, inherited).
    let tb = p.transmits(Side::B).len();
    p.command(Side::B, Command::Rekey { peer: "site-a".into(), ike: false });
    p.run();
    p.advance(Duration::from_secs(3));
    let (frags, whole) = sent(&p, Side::B, CREATE_CHILD_SA, tb);
    assert!(frags >= 2 && whole == 0, "{frags} fragments, {whole} whole");
    let new_spis: Vec<u64> = p.transmits(Side::B).iter().skip(tb).filter(|t| is_fragment(t)).map(wire_spi_i).collect();
    assert!(new_spis.iter().all(|s| *s == up[0].spi_i), "on the new IKE SA");
    assert_ne!(p.a.status()[0].children[0].spi_in, old_child);
    let d = p.a.drops();
    assert_eq!(
        (d.fragment_malformed, d.fragment_unauthenticated, d.fragment_limit, d.fragment_duplicate),
        (0, 0, 0, 0)
    );
}

fn wire_spi_i(t: &Transmit) -> u64 {
    u64::from_be_bytes(t.data[..8].try_into().unwrap())
}

/// Over IPv6 the 40-octet IP header counts against the fragment size.
#[test]
fn ipv6_fragments_leave_room_for_the_larger_header() {
    let mut a = peer_config("site-b", "2001:db8::1", "2001:db8::2", true, true);
    let mut b = peer_config("site-a", "2001:db8::2", "2001:db8::1", false, false);
    (a.fragment_size, b.fragment_size) = (Some(SIZE), Some(SIZE));
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.datapath(Side::A).len(), 2);
    for side in [Side::A, Side::B] {
        let (frags, _) = sent(&p, side, IKE_AUTH, 0);
        assert!(frags >= 2, "{side:?}: {frags}");
        for t in p.transmits(side).into_iter().filter(|t| exchange(t) != IKE_SA_INIT) {
            assert!(t.data.len() + 40 + 8 + 4 <= usize::from(SIZE), "{} octets", t.data.len());
        }
    }
}

/// With a fragment size below the smallest encrypted message, every message after
/// IKE_SA_INIT travels as IKE fragments, the empty INFORMATIONAL ones too: the DELETE
/// exchange of a terminated tunnel completes (the fragmented response is not taken for
/// an unprotected INVALID_IKE_SPI answer).
#[test]
fn every_encrypted_message_as_fragments() {
    let (a, b) = configs(Some(88), Some(88));
    let mut p = Pair::new(a, b);
    p.run();
    assert_eq!(p.datapath(Side::A).len(), 2);
    let (ta, tb) = (p.transmits(Side::A).len(), p.transmits(Side::B).len());
    p.command(Side::A, Command::Terminate { peer: "site-b".into() });
    p.run();
    let (req, whole_req) = sent(&p, Side::A, 37, ta);
    let (resp, whole_resp) = sent(&p, Side::B, 37, tb);
    assert!(req >= 1 && resp >= 1 && whole_req == 0 && whole_resp == 0, "{req}/{whole_req} {resp}/{whole_resp}");
    assert_eq!(p.a.ike_sa_count(), 0, "the DELETE was answered");
    assert_eq!(p.b.ike_sa_count(), 0);
    for t in p.transmits(Side::A).iter().chain(&p.transmits(Side::B)).filter(|t| exchange(t) != IKE_SA_INIT) {
        assert!(is_fragment(t), "exchange {} sent whole", exchange(t));
    }
}

/// A fragmented request for an IKE SA the responder no longer knows (it restarted) is
/// answered with INVALID_IKE_SPI like a whole one.
#[test]
fn fragments_for_an_unknown_ike_sa_get_invalid_ike_spi() {
    let (a, b) = configs(Some(SIZE), Some(SIZE));
    let mut p = Pair::new(a, b.clone());
    p.run();
    assert_eq!(p.datapath(Side::A).len(), 2);
    p.restart(Side::B, b, 9);
    p.command(Side::A, Command::Rekey { peer: "site-b".into(), ike: false });
    let n = p.pending_to(Side::B);
    assert!(n >= 2, "CREATE_CHILD_SA request in {n} fragments");
    assert!(p.deliver_to(Side::B));
    let answers = p.transmits(Side::B);
    assert_eq!(answers.len(), 1, "{answers:?}");
    let t = &answers[0];
    assert!(!is_fragment(t) && is_response(t) && exchange(t) == 37);
    assert!(t.data.ends_with(&4u16.to_be_bytes()), "an INVALID_IKE_SPI notify (its type ends the message)");
    assert_eq!(p.b.drops().unknown_spi, 1);
}

#[test]
fn not_negotiated_unless_both_announce() {
    for (a, b) in [(Some(SIZE), None), (None, Some(SIZE)), (None, None)] {
        let (ca, cb) = configs(a, b);
        let mut p = Pair::new(ca, cb);
        p.run();
        assert_eq!(p.datapath(Side::A).len(), 2, "{a:?}/{b:?}: up without fragmentation");
        for side in [Side::A, Side::B] {
            let (frags, whole) = sent(&p, side, IKE_AUTH, 0);
            assert_eq!((frags, whole), (0, 1), "{a:?}/{b:?} {side:?}");
            // The notify is only in the IKE_SA_INIT of a side that has fragmentation on.
            let init = p.transmits(side).into_iter().find(|t| exchange(t) == IKE_SA_INIT).unwrap();
            let announced = init.data.windows(2).any(|w| w == 16430u16.to_be_bytes());
            let on = if side == Side::A { a.is_some() } else { b.is_some() && a.is_some() };
            assert_eq!(announced, on, "{a:?}/{b:?} {side:?}");
        }
    }
}

/// A pair with fragmentation at `SIZE` on both sides, A initiating, IKE_SA_INIT done both
/// ways: A's IKE_AUTH request (in fragments) waits to be delivered to B.
fn past_ike_sa_init() -> Pair {
    let (a, b) = configs(Some(SIZE), Some(SIZE));
    let mut p = Pair::new(a, b);
    p.tick(p.now);
    assert!(p.deliver_to(Side::B));
    assert!(p.deliver_to(Side::A));
    p
}

#[test]
fn a_lost_fragment_means_every_fragment_is_resent() {
    init_logs();
    let mut p = past_ike_sa_init();
    let n = p.pending_to(Side::B);
    assert!(n >= 2, "IKE_AUTH request in {n} fragments");
    // The second fragment is lost; the others arrive and are held.
    let first = p.take_to(Side::B).unwrap();
    let lost = p.take_to(Side::B).unwrap();
    p.inject(Side::B, &first);
    while p.deliver_to(Side::B) {}
    assert_eq!(p.pending_to(Side::A), 0, "no response before every fragment is in");
    // Retransmission: every fragment again, byte for byte.
    p.tick(p.now + Duration::from_secs(1));
    let again: Vec<Transmit> = (0..n).filter_map(|_| p.take_to(Side::B)).collect();
    assert_eq!(again.len(), n);
    assert_eq!(again[0].data, first.data);
    assert_eq!(again[1].data, lost.data);
    // Fragments already held are duplicates; the lost one completes the message.
    for (i, t) in again.iter().enumerate() {
        if i != 1 {
            p.inject(Side::B, t);
        }
    }
    assert_eq!(p.b.drops().fragment_duplicate, u64::try_from(n - 1).unwrap());
    assert_eq!(p.pending_to(Side::A), 0);
    p.inject(Side::B, &again[1]);
    p.run();
    assert_eq!(p.datapath(Side::A).len(), 2);
    assert_eq!(p.datapath(Side::B).len(), 2);
}

#[test]
fn a_retransmitted_fragmented_request_is_answered_once() {
    let mut p = past_ike_sa_init();
    let request: Vec<Transmit> = (0..p.pending_to(Side::B)).filter_map(|_| p.take_to(Side::B)).collect();
    for t in &request {
        p.inject(Side::B, t);
    }
    let response = p.pending_to(Side::A);
    assert!(response >= 2, "IKE_AUTH response in {response} fragments");
    let tb = p.transmits(Side::B).len();
    // The whole request again (its response was lost): only fragment 1 brings the
    // whole response back, once.
    for t in &request {
        p.inject(Side::B, t);
    }
    let resent: Vec<Transmit> = p.transmits(Side::B).into_iter().skip(tb).collect();
    assert_eq!(resent.len(), response, "the response once, all its fragments");
    assert!(resent.iter().all(|t| is_fragment(t) && is_response(t)));
    // A tampered fragment 1 brings nothing back.
    let mut bad = request[0].clone();
    let last = bad.data.len() - 1;
    bad.data[last] ^= 1;
    let tb = p.transmits(Side::B).len();
    p.inject(Side::B, &bad);
    assert_eq!(p.transmits(Side::B).len(), tb);
    p.run();
    assert_eq!(p.datapath(Side::A).len(), 2);
}

#[test]
fn tampered_fragments_are_counted_and_not_kept() {
    let mut p = past_ike_sa_init();
    let request: Vec<Transmit> = (0..p.pending_to(Side::B)).filter_map(|_| p.take_to(Side::B)).collect();
    for t in &request {
        let mut bad = t.clone();
        let mid = bad.data.len() / 2;
        bad.data[mid] ^= 0x80;
        p.inject(Side::B, &bad);
    }
    let d = p.b.drops();
    assert_eq!(d.fragment_unauthenticated, u64::try_from(request.len()).unwrap());
    assert_eq!(p.pending_to(Side::A), 0);
    // The genuine fragments still complete the exchange: nothing forged was held.
    for t in &request {
        p.inject(Side::B, t);
    }
    p.run();
    assert_eq!(p.datapath(Side::B).len(), 2);
}

#[test]
fn fragments_before_keys_or_without_negotiation_are_refused() {
    // B announced nothing: a fragment sealed with the IKE SA's real keys is still
    // dropped, because fragmentation was not negotiated.
    let (a, b) = configs(Some(SIZE), None);
    let mut p = Pair::new(a, b);
    p.run();
    // A datagram that claims SKF in IKE_SA_INIT does not parse at all.
    let mut init = p.transmits(Side::A)[0].clone();
    init.data[16] = SKF;
    let before = p.b.drops();
    p.inject(Side::B, &init);
    assert_eq!(p.b.drops().malformed, before.malformed + 1);
    // Fragments for the established SA that did not negotiate fragmentation.
    let frags = fragment_probe(43, &vendor_chain(600), 200, &test_cipher());
    let mut f = frags[0].clone();
    let st = p.b.status();
    f[..8].copy_from_slice(&st[0].spi_i.to_be_bytes());
    f[8..16].copy_from_slice(&st[0].spi_r.to_be_bytes());
    // The peer's next request.
    f[20..24].copy_from_slice(&2u32.to_be_bytes());
    let t = Transmit { local: p.transmits(Side::A)[1].local, remote: p.transmits(Side::A)[1].remote, data: f };
    p.inject(Side::B, &t);
    assert_eq!(p.b.drops().fragment_malformed, before.fragment_malformed + 1);
}

fn test_cipher() -> ike::crypto::SkCipher {
    cipher_with(9)
}

fn cipher_with(k: u8) -> ike::crypto::SkCipher {
    ike::crypto::SkCipher::new(EncrAlg::AesGcm16_256, None, &[k; 36], &[]).unwrap()
}

/// A payload chain of one Vendor ID payload of `len` octets in all.
fn vendor_chain(len: usize) -> Vec<u8> {
    let mut v = vec![0, 0];
    v.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    v.resize(len, 0x42);
    v
}

/// What reassembly can be made to hold, measured with the allocator: a message of
/// `MAX_REASSEMBLED` octets in `MAX_FRAGMENTS` fragments costs its plaintext and a copy
/// per fragment in flight, never more than a small multiple of what arrived; and bytes
/// sealed with another key cost their own length and are gone again.
#[test]
fn reassembly_memory_is_bounded() {
    let c = test_cipher();
    let chain = vendor_chain(MAX_REASSEMBLED - 100);
    let max_len = 1400;
    let frags = fragment_probe(43, &chain, max_len, &c);
    assert!(frags.len() <= usize::from(MAX_FRAGMENTS));
    let total: usize = frags.iter().map(Vec::len).sum();
    let mut r = ReassemblyProbe::default();
    let mut peak = 0;
    for f in &frags[..frags.len() - 1] {
        let info = allocation_counter::measure(|| assert_eq!(r.add(f, &c), ProbeResult::Held));
        // One fragment costs at most a small multiple of its own size.
        assert!(info.bytes_total <= 3 * f.len() as u64 + 4096, "{} for {}", info.bytes_total, f.len());
        peak = peak.max(r.held_bytes());
    }
    assert!(peak <= MAX_REASSEMBLED);
    let last = frags.last().unwrap();
    let info = allocation_counter::measure(|| assert!(matches!(r.add(last, &c), ProbeResult::Complete(_))));
    assert!(info.bytes_total <= 8 * total as u64 + 8192, "{} for {total}", info.bytes_total);
    assert_eq!(r.held_bytes(), 0);

    // Forged fragments (another key): each is dropped after costing a copy of itself.
    let forged = fragment_probe(43, &chain, max_len, &cipher_with(1));
    for f in &forged {
        let info =
            allocation_counter::measure(|| assert_eq!(r.add(f, &c), ProbeResult::Dropped(FragDrop::Unauthenticated)));
        assert!(info.bytes_total <= 2 * f.len() as u64 + 1024);
        assert_eq!(r.held_bytes(), 0);
    }
    // Over the octet cap: the message goes, nothing stays.
    let over = fragment_probe(43, &vec![0u8; MAX_REASSEMBLED + 500], max_len, &c);
    let outcomes: Vec<ProbeResult> = over.iter().map(|f| r.add(f, &c)).collect();
    assert!(outcomes.contains(&ProbeResult::Dropped(FragDrop::Limit)), "{outcomes:?}");
    assert!(r.held_bytes() <= MAX_REASSEMBLED);
}
