//! esp seal+open of 1400-byte inner packets vs bare ring AES-256-GCM seal+open of
//! 1400 bytes: the ratio is the datapath's overhead over the cipher itself.
//!
//! `cargo bench -p esp --bench seal_open` (add `-- --quick` for a short run).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use esp::{Opened, SaTable, Sealed};
use ipsec_types::{
    AeadKey, ChildRef, DatapathCommand, Direction, EncrAlg, SaEndpoints, SaParams, Spi, Timestamp, TrafficSelector,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use std::hint::black_box;

const LEN: usize = 1400;

fn params(direction: Direction) -> SaParams {
    let (a, b) =
        (TrafficSelector::parse_cidr("10.1.0.0/16").unwrap(), TrafficSelector::parse_cidr("10.2.0.0/16").unwrap());
    let (local_ts, remote_ts) = if direction == Direction::Outbound { (a, b) } else { (b, a) };
    SaParams {
        spi: Spi(0x1234_5678),
        direction,
        child: ChildRef { tunnel: "bench".into(), child_id: 1 },
        endpoints: SaEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            encap: None,
        },
        key: AeadKey::from_keymat(EncrAlg::AesGcm16_256, &[7u8; 36]).unwrap(),
        replay_window: 1024,
        esn: false,
        local_ts: vec![local_ts],
        remote_ts: vec![remote_ts],
    }
}

fn inner() -> Vec<u8> {
    let mut p = vec![0u8; LEN];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(LEN as u16).to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&[10, 1, 0, 1]);
    p[16..20].copy_from_slice(&[10, 2, 0, 1]);
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal_open_1400");
    g.throughput(Throughput::Bytes(LEN as u64));

    let left = SaTable::new().apply(&DatapathCommand::InstallOutbound(params(Direction::Outbound)));
    let right = SaTable::new().apply(&DatapathCommand::InstallInbound(params(Direction::Inbound)));
    let pkt = inner();
    let mut wire = vec![0u8; LEN + esp::MAX_OVERHEAD];
    let mut back = vec![0u8; LEN + esp::MAX_OVERHEAD];
    g.bench_function("esp", |b| {
        b.iter(|| {
            let n = match left.seal(Timestamp::ZERO, black_box(&pkt), &mut wire) {
                Sealed::Send { packet, .. } => packet.len(),
                Sealed::Drop(r) => panic!("{r:?}"),
            };
            match right.open(Timestamp::ZERO, &wire[..n], &mut back) {
                Opened::Deliver { packet, .. } => black_box(packet.len()),
                Opened::Drop(r) => panic!("{r:?}"),
            }
        })
    });

    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut buf = vec![0u8; LEN];
    let mut ctr: u64 = 0;
    g.bench_function("bare_ring_aes256gcm", |b| {
        b.iter(|| {
            ctr += 1;
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&ctr.to_be_bytes());
            let aad = ctr.to_be_bytes();
            buf.copy_from_slice(black_box(&pkt));
            let tag =
                key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&aad), &mut buf).unwrap();
            let pt = key
                .open_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&aad), tag, &mut buf, 0..)
                .unwrap();
            black_box(pt.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
