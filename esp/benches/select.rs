//! Outbound SA selection: the cost of `SaTable::seal` for a 64-byte inner packet when
//! the table holds 1, 4, 64 or 1024 outbound SAs with disjoint selectors (one CHILD SA
//! per subnet pair, or many tunnels), the packet matching the oldest SA. Small packets
//! so the selection is not hidden behind the cipher.
//!
//! `cargo bench -p esp --bench select`. Prints the median thread CPU time per seal over
//! 31 rounds (thread CPU time stays meaningful on a shared machine).

use cpu_time::ThreadTime;
use esp::{SaTable, Sealed};
use ipsec_types::{
    ChildRef, DatapathCommand, Direction, EncrAlg, EspKey, SaEndpoints, SaParams, Spi, Timestamp, TrafficSelector,
};
use std::hint::black_box;
use std::net::Ipv4Addr;

/// Outbound SA `i`: 10.1.(i/256).(i%256)/32 ... as a /32 local host and 10.2.x.y/32
/// remote (disjoint selectors), or, with `wide`, 10.1.0.0/16 === 10.2.0.0/16.
fn params(i: u32) -> SaParams {
    let host = |net: u8| {
        let a = Ipv4Addr::new(10, net, (i >> 8) as u8, i as u8);
        TrafficSelector::from_prefix(a.into(), 32).unwrap()
    };
    SaParams {
        spi: Spi(0x1000 + i),
        direction: Direction::Outbound,
        child: ChildRef { tunnel: format!("t{}", i % 7), child_id: u64::from(i) + 1 },
        endpoints: SaEndpoints {
            local: "192.0.2.1".parse().unwrap(),
            remote: "192.0.2.2".parse().unwrap(),
            encap: None,
        },
        key: EspKey::from_keymat(EncrAlg::AesGcm16_128, None, &[7u8; 20]).unwrap(),
        replay_window: 0,
        esn: true,
        local_ts: vec![host(1)],
        remote_ts: vec![host(2)],
        limits: Default::default(),
    }
}

fn table(n: u32) -> SaTable {
    let mut t = SaTable::new();
    for i in 0..n {
        t = t.apply(&DatapathCommand::InstallOutbound(params(i))).unwrap();
    }
    t
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let (rounds, iters) = if bench_mode { (31, 20_000) } else { (3, 10) };
    // The packet of SA 0, the oldest (searched last by a newest-first scan).
    let pkt = testkit::packet::ipv4_udp([10, 1, 0, 0].into(), [10, 2, 0, 0].into(), 4000, 5000, &[0; 36]);
    let mut out = vec![0u8; 64 + esp::MAX_OVERHEAD];
    for n in [1u32, 4, 64, 1024] {
        let t = table(n);
        let mut seal = || match t.seal(Timestamp::ZERO, black_box(&pkt), &mut out) {
            Sealed::Send { packet, .. } => black_box(packet.len()),
            Sealed::Drop(r) => panic!("{r:?}"),
        };
        for _ in 0..iters {
            seal();
        }
        let mut ns: Vec<f64> = (0..rounds)
            .map(|_| {
                let s = ThreadTime::now();
                for _ in 0..iters {
                    seal();
                }
                s.elapsed().as_secs_f64() * 1e9 / f64::from(iters)
            })
            .collect();
        ns.sort_by(f64::total_cmp);
        if bench_mode {
            println!(
                "select: seal of 64 B with {n:>4} outbound SAs: {:.0} ns (median of {rounds} x {iters}; quartiles {:.0}..{:.0})",
                ns[rounds / 2],
                ns[rounds / 4],
                ns[3 * rounds / 4]
            );
        }
    }
}
