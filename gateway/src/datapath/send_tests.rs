//! Which packets share a batch, and how a batch leaves.

use super::*;
use crate::datapath::mem::sas::{self, NOW, PEER};
use crate::datapath::mem::{How, MemWan};
use ipsec_types::UdpEncap;

fn ep(last: u8, encap: bool) -> SaEndpoints {
    SaEndpoints {
        local: "192.0.2.1".parse().unwrap(),
        remote: std::net::IpAddr::from([192, 0, 2, last]),
        encap: encap.then_some(UdpEncap { local_port: 4500, remote_port: 4500 }),
    }
}

/// Simulates sealing `len` bytes at the end of the batch, as `seal` does.
fn add(tx: &mut TxBatch, to: SaEndpoints, len: usize, gso: bool) -> bool {
    let fits = tx.fits(&to, len, gso);
    if !fits {
        tx.clear();
    }
    tx.push(to, len);
    fits
}

#[test]
fn udp_gso_batches_equal_sizes_and_a_shorter_last() {
    let a = ep(2, true);
    let mut tx = TxBatch::new();
    assert!(add(&mut tx, a, 1436, true));
    assert!(add(&mut tx, a, 1436, true));
    assert!(add(&mut tx, a, 500, true), "a shorter last datagram may join");
    assert!(!add(&mut tx, a, 500, true), "nothing may follow the shorter one");
    assert!(!add(&mut tx, a, 600, true), "a longer one starts a new batch");
    assert!(!add(&mut tx, ep(3, true), 600, true), "another peer starts a new batch");
    // Without GSO, ESP-in-UDP and raw ESP batch any sizes to one peer.
    let mut tx = TxBatch::new();
    for len in [100, 1436, 60] {
        assert!(add(&mut tx, a, len, false));
    }
    let r = ep(2, false);
    assert!(!add(&mut tx, r, 100, true), "raw and UDP to one host differ");
    assert!(add(&mut tx, r, 1436, true));
    assert_eq!(tx.packets().map(<[u8]>::len).collect::<Vec<_>>(), vec![100, 1436]);
}

#[test]
fn batches_are_bounded() {
    let a = ep(2, true);
    let mut tx = TxBatch::new();
    let mut batches = 1;
    for _ in 0..200 {
        if !add(&mut tx, a, 1436, true) {
            batches += 1;
        }
        assert!(tx.used <= batch::MAX_GSO_BYTES && tx.count <= batch::MAX_MMSG);
    }
    // 45 datagrams of 1436 bytes fit in one UDP GSO send (64 KiB).
    assert_eq!(batches, 200usize.div_ceil(45));
    let r = ep(2, false);
    let mut tx = TxBatch::new();
    let mut batches = 1;
    for _ in 0..200 {
        if !add(&mut tx, r, 100, true) {
            batches += 1;
        }
    }
    assert_eq!(batches, 200usize.div_ceil(batch::MAX_MMSG));
}

/// Seals every packet of `inner` into one batch as a worker does, flushing at the end;
/// returns the batches as they were handed over (their ESP packets).
fn seal_all(table: &esp::SaTable, inner: &[Vec<u8>], gso: bool) -> Vec<Vec<Vec<u8>>> {
    let mut batches = Vec::new();
    let mut send = |tx: &TxBatch| batches.push(tx.packets().map(<[u8]>::to_vec).collect::<Vec<_>>());
    let mut tx = TxBatch::new();
    for p in inner {
        tx.seal(table, NOW, p, gso, &mut send);
    }
    tx.flush(&mut send);
    batches
}

#[test]
fn sealing_cuts_a_gso_run_where_the_size_changes_and_keeps_the_order() {
    let (ours, peer) = sas::tables(true);
    // Four full-sized packets, a short one (ends the run), then full-sized again.
    let lens = [1000, 1000, 1000, 1000, 300, 1000, 1000];
    let inner: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &l)| sas::outbound(i as u16, l)).collect();
    let batches = seal_all(&ours, &inner, true);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![5, 2], "the short packet ends the first run");
    let opened: Vec<Vec<u8>> = batches.iter().flatten().map(|p| sas::open(&peer, p)).collect();
    assert_eq!(opened, inner, "every packet, once, in order");
    // Without GSO the sizes do not matter: one batch.
    let (ours, _) = sas::tables(true);
    assert_eq!(seal_all(&ours, &inner, false).iter().map(Vec::len).collect::<Vec<_>>(), vec![7]);
}

#[test]
fn sealing_sends_a_full_buffer_before_the_next_packet() {
    let (ours, peer) = sas::tables(true);
    // 1400-byte inner packets: about 46 fill the 64 KiB of one UDP GSO send.
    let inner: Vec<Vec<u8>> = (0..100).map(|i| sas::outbound(i, 1400)).collect();
    let batches = seal_all(&ours, &inner, true);
    for b in &batches {
        assert!(b.iter().map(Vec::len).sum::<usize>() <= batch::MAX_GSO_BYTES);
        assert!(b.windows(2).all(|w| w[0].len() == w[1].len()));
    }
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    let per = batch::MAX_GSO_BYTES / batches[0][0].len();
    assert_eq!(sizes, vec![per, per, 100 - 2 * per]);
    let opened: Vec<Vec<u8>> = batches.iter().flatten().map(|p| sas::open(&peer, p)).collect();
    assert_eq!(opened, inner);
}

/// A batch of `n` sealed packets of `len` inner bytes, ESP-in-UDP if `encap`.
fn sealed_batch(encap: bool, n: u16, len: usize) -> TxBatch {
    let (ours, _) = sas::tables(encap);
    let mut tx = TxBatch::new();
    for i in 0..n {
        tx.seal(&ours, NOW, &sas::outbound(i, len), true, &mut |_: &TxBatch| panic!("fits in one batch"));
    }
    tx
}

/// The batch's packets, copied.
fn packets(tx: &TxBatch) -> Vec<Vec<u8>> {
    tx.packets().map(<[u8]>::to_vec).collect()
}

/// Sends `tx` with `sender` and checks it left as one call `how` to `to`, whole.
fn sent_once(sender: &Sender, wan: &MemWan, tx: &TxBatch, how: How, to: SocketAddr) {
    assert_eq!(sender.send(wan, tx), 0);
    let sent = wan.take_sent();
    assert_eq!(sent.len(), 1, "one call");
    assert_eq!((sent[0].how, sent[0].to), (how, to));
    assert_eq!(sent[0].packets, packets(tx));
}

fn local() -> SocketAddr {
    SocketAddr::from((sas::LOCAL, 4500))
}

#[test]
fn esp_in_udp_leaves_in_one_gso_send_or_one_datagram_each() {
    let tx = sealed_batch(true, 3, 500);
    let wan = MemWan::new(local(), true);
    let seg = u16::try_from(tx.packets().next().unwrap().len()).unwrap();
    sent_once(&Sender::new(true, true), &wan, &tx, How::Gso(seg), SocketAddr::from((PEER, 4500)));
    // UDP GSO off: one datagram each, in order.
    assert_eq!(Sender::new(false, true).send(&wan, &tx), 0);
    let sent = wan.take_sent();
    assert!(sent.iter().all(|s| s.how == How::Udp));
    assert_eq!(sent.into_iter().flat_map(|s| s.packets).collect::<Vec<_>>(), packets(&tx));
    // A single datagram never needs GSO.
    let one = sealed_batch(true, 1, 500);
    Sender::new(true, true).send(&wan, &one);
    assert_eq!(wan.take_sent().iter().map(|s| s.how).collect::<Vec<_>>(), vec![How::Udp]);
    assert_eq!(wan.gso_calls(), 1);
}

#[test]
fn a_kernel_without_udp_gso_gets_datagrams_from_then_on() {
    let tx = sealed_batch(true, 4, 500);
    let wan = MemWan::new(local(), true);
    wan.fail_gso(libc::EIO);
    let sender = Sender::new(true, true);
    assert_eq!(sender.send(&wan, &tx), 0, "the batch goes out one datagram at a time");
    let sent = wan.take_sent();
    assert_eq!(sent.iter().map(|s| s.how).collect::<Vec<_>>(), vec![How::Udp; 4]);
    assert_eq!(wan.gso_calls(), 1);
    sender.send(&wan, &tx);
    assert_eq!(wan.gso_calls(), 1, "GSO is not tried again");
    assert_eq!(wan.take_sent().len(), 4);
}

#[test]
fn a_failed_gso_send_loses_the_batch_and_gso_stays_on() {
    let tx = sealed_batch(true, 4, 500);
    let wan = MemWan::new(local(), true);
    wan.fail_gso(libc::ENOBUFS);
    let sender = Sender::new(true, true);
    assert_eq!(sender.send(&wan, &tx), 4, "all four counted as lost");
    assert!(wan.take_sent().is_empty(), "and not sent again one by one");
    sender.send(&wan, &tx);
    assert_eq!(wan.gso_calls(), 2, "GSO is still tried");
}

#[test]
fn raw_esp_leaves_in_one_sendmmsg_or_one_send_each() {
    let tx = sealed_batch(false, 5, 200);
    let wan = MemWan::new(local(), true);
    sent_once(&Sender::new(true, true), &wan, &tx, How::RawMany, SocketAddr::from((PEER, 0)));
    // Batching off: one send per packet.
    assert_eq!(Sender::new(true, false).send(&wan, &tx), 0);
    assert_eq!(wan.take_sent().iter().map(|s| s.how).collect::<Vec<_>>(), vec![How::Raw; 5]);
    // No raw socket: every packet is lost, and counted.
    let no_raw = MemWan::new(local(), false);
    assert_eq!(Sender::new(true, true).send(&no_raw, &tx), 5);
    assert!(no_raw.take_sent().is_empty());
}
