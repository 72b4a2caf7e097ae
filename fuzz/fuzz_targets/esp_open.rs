//! Arbitrary bytes into `SaTable::open` with one fixed inbound SA.
//!
//! The first input byte picks the mode:
//! - even: the rest is an ESP packet as received from the network (exercises header
//!   parsing, SPI lookup, replay check, ICV rejection);
//! - odd: the rest (after 4 bytes of sequence number) is an ESP *payload* which is
//!   encrypted with the SA's key first, so the ICV verifies and the trailer, inner
//!   header and selector checks see arbitrary plaintext.
//!
//! Invariant checked: never a panic, and a delivered packet is a prefix of the payload.
#![no_main]

use esp::cipher::AesGcm16;
use esp::{Opened, SaTable};
use ipsec_types::{
    AeadKey, ChildRef, DatapathCommand, Direction, EncrAlg, SaEndpoints, SaParams, Spi, Timestamp, TrafficSelector,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SPI: u32 = 0x0102_0304;

fn key() -> AeadKey {
    AeadKey::from_keymat(EncrAlg::AesGcm16_128, &[0x5a; 20]).expect("20 bytes of keymat")
}

fn table() -> &'static (SaTable, AesGcm16) {
    static T: OnceLock<(SaTable, AesGcm16)> = OnceLock::new();
    T.get_or_init(|| {
        let ts = |s: &str| TrafficSelector::parse_cidr(s).expect("selector");
        let p = SaParams {
            spi: Spi(SPI),
            direction: Direction::Inbound,
            child: ChildRef { tunnel: "fuzz".into(), child_id: 1 },
            endpoints: SaEndpoints {
                local: "192.0.2.1".parse().expect("addr"),
                remote: "192.0.2.2".parse().expect("addr"),
                encap: None,
            },
            key: key(),
            // Window disabled so that repeated inputs keep reaching the ICV check.
            replay_window: 0,
            esn: false,
            local_ts: vec![ts("10.1.0.0/16"), ts("2001:db8:1::/48")],
            remote_ts: vec![ts("0.0.0.0/1"), ts("2001:db8::/32")],
            limits: Default::default(),
        };
        let t = SaTable::new().apply(&DatapathCommand::InstallInbound(p)).expect("install");
        (t, AesGcm16::new(&key()).expect("key"))
    })
}

fuzz_target!(|data: &[u8]| {
    let (t, aead) = table();
    let Some((mode, rest)) = data.split_first() else { return };
    let mut out = vec![0u8; rest.len() + 64];
    if mode & 1 == 0 {
        let _ = t.open(Timestamp::ZERO, rest, &mut out);
        return;
    }
    let Some((seq, payload)) = rest.split_first_chunk::<4>() else { return };
    let seq = u32::from_be_bytes(*seq).max(1);
    let mut body = payload.to_vec();
    let Ok(icv) = aead.seal_in_place(SPI, u64::from(seq), false, [0; 8], &mut body) else { return };
    let mut pkt = Vec::with_capacity(body.len() + 32);
    pkt.extend_from_slice(&SPI.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(&[0; 8]);
    pkt.extend_from_slice(&body);
    pkt.extend_from_slice(&icv);
    if let Opened::Deliver { packet, .. } = t.open(Timestamp::ZERO, &pkt, &mut out) {
        assert!(payload.starts_with(packet), "delivered bytes must come from the payload");
    }
});
