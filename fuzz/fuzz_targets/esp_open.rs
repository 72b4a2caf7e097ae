//! Arbitrary bytes into `SaTable::open` with one fixed inbound SA of each kind: bit 1
//! of the first input byte picks AES-GCM-16 (0) or AES-CBC with HMAC-SHA2-256-128 (1).
//!
//! Bit 0 of the first input byte picks the mode:
//! - even: the rest is an ESP packet as received from the network (exercises header
//!   parsing, SPI lookup, replay check, ICV rejection);
//! - odd: the rest (after 4 bytes of sequence number) is an ESP *payload* which is
//!   encrypted with the SA's key first, so the ICV verifies and the trailer, inner
//!   header and selector checks see arbitrary plaintext (with CBC, only payloads of
//!   whole AES blocks can be encrypted; others end the run).
//!
//! Invariant checked: never a panic, and a delivered packet is a prefix of the payload.
#![no_main]

use esp::cipher::EspCipher;
use esp::{Opened, SaTable};
use ipsec_types::{
    ChildRef, DatapathCommand, Direction, EncrAlg, EspKey, IntegAlg, SaEndpoints, SaParams, Spi, Timestamp,
    TrafficSelector,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SPI: u32 = 0x0102_0304;

fn key(cbc: bool) -> EspKey {
    if cbc {
        EspKey::from_keymat(EncrAlg::AesCbc128, Some(IntegAlg::HmacSha256_128), &[0x5a; 48]).expect("48 bytes")
    } else {
        EspKey::from_keymat(EncrAlg::AesGcm16_128, None, &[0x5a; 20]).expect("20 bytes of keymat")
    }
}

fn table(cbc: bool) -> &'static (SaTable, EspCipher) {
    static T: [OnceLock<(SaTable, EspCipher)>; 2] = [OnceLock::new(), OnceLock::new()];
    T[usize::from(cbc)].get_or_init(|| {
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
            key: key(cbc),
            // Window disabled so that repeated inputs keep reaching the ICV check.
            replay_window: 0,
            esn: false,
            local_ts: vec![ts("10.1.0.0/16"), ts("2001:db8:1::/48")],
            remote_ts: vec![ts("0.0.0.0/1"), ts("2001:db8::/32")],
            limits: Default::default(),
        };
        let t = SaTable::new().apply(&DatapathCommand::InstallInbound(p)).expect("install");
        (t, EspCipher::new(&key(cbc)).expect("key"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let (t, cipher) = table(mode & 2 != 0);
    let mut out = vec![0u8; rest.len() + 64];
    if mode & 1 == 0 {
        let _ = t.open(Timestamp::ZERO, rest, &mut out);
        return;
    }
    let Some((seq, payload)) = rest.split_first_chunk::<4>() else { return };
    let seq = u32::from_be_bytes(*seq).max(1);
    let l = cipher.layout();
    let mut pkt = Vec::with_capacity(payload.len() + 64);
    pkt.extend_from_slice(&SPI.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.resize(l.header_len(), 0);
    pkt.extend_from_slice(payload);
    pkt.resize(pkt.len() + l.icv_len, 0);
    if cipher.seal(SPI, u64::from(seq), false, &mut pkt).is_err() {
        return;
    }
    if let Opened::Deliver { packet, .. } = t.open(Timestamp::ZERO, &pkt, &mut out) {
        assert!(payload.starts_with(packet), "delivered bytes must come from the payload");
    }
});
