//! Assembles `vpnctl status` ([`StatusReport`]) from the three places that know a part
//! of it: the configuration (tunnels, subnets, replay window), `ike` (IKE and CHILD SAs)
//! and `esp` (per-SA counters and drops). A pure function, so it is tested without I/O.
//! Rendering for humans is in `render`; the control thread calls [`build`].

use crate::clock::secs_since;

/// Whole seconds from `now` until `then` (zero if it has passed), rounded up so that
/// "in 0 s" means due.
fn secs_until(now: Timestamp, then: Timestamp) -> u64 {
    let d = then.saturating_since(now);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
use crate::control::proto::{
    ChildSaInfo, DaemonInfo, Encapsulation, GlobalDrops, IkeDropCounters, IkeInfo, IkeSaInfo, IoErrors, SaDrops,
    SaTraffic, StatusReport, TunnelCounters, TunnelStatus,
};
use ipsec_types::{Direction, EncrAlg, EspProposal, IkeProposal, IntegAlg, Spi, Timestamp};

/// Everything [`build`] reads.
pub struct Inputs<'a> {
    /// Now.
    pub now: Timestamp,
    /// When the daemon started.
    pub started: Timestamp,
    /// The configuration.
    pub config: &'a config::Config,
    /// `ike::Endpoint::status()`.
    pub ike: &'a [ike::IkeSaStatus],
    /// `ike::Endpoint::half_open()`.
    pub half_open: usize,
    /// `ike::Endpoint::drops()`.
    pub ike_drops: ike::IkeDrops,
    /// `esp::SaTable::stats()`.
    pub esp: &'a [esp::SaStats],
    /// `esp::SaTable::global_drops()`.
    pub global: &'a esp::GlobalDrops,
    /// The gateway's own I/O error counters.
    pub io: IoErrors,
    /// Tunnels stopped with `vpnctl down`.
    pub stopped: &'a [String],
}

/// Builds the status report.
pub fn build(inp: &Inputs<'_>) -> StatusReport {
    let g = &inp.config.gateway;
    let daemon = DaemonInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        uptime_s: secs_since(inp.now, inp.started),
        local_address: g.local_address.to_string(),
        ike_port: g.ike_port,
        natt_port: g.natt_port,
        tun_name: g.tun_name.clone(),
        tun_mtu: g.tun_mtu,
        esp_overhead_max: u16::try_from(esp::MAX_OVERHEAD).unwrap_or(u16::MAX),
    };
    let tunnels = inp
        .config
        .tunnels
        .iter()
        .map(|t| TunnelStatus {
            name: t.name.clone(),
            remote_address: t.remote_address.to_string(),
            local_subnets: t.local_subnets.iter().map(ToString::to_string).collect(),
            remote_subnets: t.remote_subnets.iter().map(ToString::to_string).collect(),
            start: start_keyword(t.start).into(),
            encapsulation: t.encapsulation.as_str().into(),
            child_sa_per_subnet_pair: t.child_sa_per_subnet_pair,
            stopped: inp.stopped.contains(&t.name),
            // Filled in by the control thread, which counts them (`watch::Observer`).
            counters: TunnelCounters::default(),
            dpd_delay_s: t.dpd.delay.map(|d| d.as_secs()),
            dpd_timeout_s: t.dpd.timeout.as_secs(),
            dpd_action: dpd_action_keyword(t.dpd.action).into(),
            ike_sas: inp
                .ike
                .iter()
                .filter(|sa| sa.tunnel == t.name)
                .map(|sa| ike_sa(inp, sa, t.replay_window))
                .collect(),
            // Filled in by the control thread, which keeps the groups (`failover`).
            failover: None,
        })
        .collect();
    let gd = inp.global;
    let d = &inp.ike_drops;
    let ike = IkeInfo {
        half_open: u64::try_from(inp.half_open).unwrap_or(u64::MAX),
        drops: IkeDropCounters {
            malformed: d.malformed,
            unknown_spi: d.unknown_spi,
            cookie_required: d.cookie_required,
            half_open_cap: d.half_open_cap,
            rate_limited: d.rate_limited,
            refused_proposal: d.refused_proposal,
            child_sa_cap: d.child_sa_cap,
            cookies_sent: d.cookies_sent,
            fragment_malformed: d.fragment_malformed,
            fragment_unauthenticated: d.fragment_unauthenticated,
            fragment_limit: d.fragment_limit,
            fragment_duplicate: d.fragment_duplicate,
        },
    };
    StatusReport {
        daemon,
        ike,
        tunnels,
        global_drops: GlobalDrops { malformed: gd.malformed, unknown_spi: gd.unknown_spi, no_sa: gd.no_sa },
        io_errors: inp.io.clone(),
    }
}

fn ike_sa(inp: &Inputs<'_>, sa: &ike::IkeSaStatus, replay_window: u32) -> IkeSaInfo {
    IkeSaInfo {
        ike_version: sa.version.number(),
        state: sa.state.to_string(),
        role: if sa.initiator { "initiator" } else { "responder" }.into(),
        local: sa.local.to_string(),
        remote: sa.remote.to_string(),
        local_id: sa.local_id.to_string(),
        remote_id: sa.remote_id.to_string(),
        spi_i: format!("{:016x}", sa.spi_i),
        spi_r: format!("{:016x}", sa.spi_r),
        encr: sa.encr.map(|a| a.to_string()),
        integ: sa.integ.map(|a| a.to_string()),
        prf: sa.prf.map(|a| a.to_string()),
        dh: sa.dh.map(|a| a.to_string()),
        proposal: ike_proposal(sa),
        nat_detected: sa.nat_detected,
        encap_reason: sa.encap_reason.map(|r| r.as_str().to_string()),
        established_ago_s: sa.established_at.map(|t| secs_since(inp.now, t)),
        last_heard_ago_s: sa.last_heard.map(|t| secs_since(inp.now, t)),
        next_rekey_in_s: sa.next_rekey.map(|t| secs_until(inp.now, t)),
        children: sa.children.iter().map(|c| child_sa(inp, &sa.tunnel, c, replay_window)).collect(),
    }
}

fn child_sa(inp: &Inputs<'_>, tunnel: &str, c: &ike::ChildSaStatus, replay_window: u32) -> ChildSaInfo {
    ChildSaInfo {
        child_id: c.child_id,
        state: c.state.to_string(),
        local_ts: c.local_ts.iter().map(ToString::to_string).collect(),
        remote_ts: c.remote_ts.iter().map(ToString::to_string).collect(),
        spi_in: c.spi_in.to_string(),
        spi_out: c.spi_out.to_string(),
        encr: c.encr.to_string(),
        integ: c.integ.map(|a| a.to_string()),
        dh: c.dh.map(|d| d.to_string()),
        proposal: EspProposal {
            encr: vec![c.encr],
            integ: c.integ.into_iter().collect(),
            dh: c.dh.into_iter().collect(),
            esn: false,
        }
        .to_string(),
        esp_overhead_max: esp_overhead_max(c.encr, c.integ),
        encapsulation: match c.encap {
            Some(u) => Encapsulation::Udp { local_port: u.local_port, remote_port: u.remote_port },
            None => Encapsulation::Raw,
        },
        replay_window,
        established_ago_s: secs_since(inp.now, c.established_at),
        rekey_in_s: c.next_rekey.map(|t| secs_until(inp.now, t)),
        expires_in_s: c.expires_at.map(|t| secs_until(inp.now, t)),
        inbound: traffic(inp.esp, tunnel, c.spi_in, Direction::Inbound),
        outbound: traffic(inp.esp, tunnel, c.spi_out, Direction::Outbound),
    }
}

/// The IKE SA's algorithms as a swanctl proposal string. IKEv1 has no separate PRF: its
/// hash (reported as the HMAC PRF) is written as the integrity keyword of the same hash,
/// `aes128-sha1-modp1024`, the way IKEv1 proposals are configured.
fn ike_proposal(sa: &ike::IkeSaStatus) -> Option<String> {
    let encr = sa.encr?;
    let (integ, prf) = match sa.version {
        ike::IkeVersion::V1 => {
            (sa.prf.and_then(|p| IntegAlg::ALL.into_iter().find(|i| i.prf() == p)).into_iter().collect(), vec![])
        }
        ike::IkeVersion::V2 => (sa.integ.into_iter().collect(), sa.prf.into_iter().collect()),
    };
    Some(IkeProposal { encr: vec![encr], integ, prf, dh: sa.dh.into_iter().collect() }.to_string())
}

/// The most bytes ESP adds to an inner packet with this transform, from `esp`'s own
/// layout of it (the datapath's bound, `esp::MAX_OVERHEAD`, for a suite no SA can have).
fn esp_overhead_max(encr: EncrAlg, integ: Option<IntegAlg>) -> u16 {
    let max = esp::cipher::Layout::of(encr, integ).map_or(esp::MAX_OVERHEAD, esp::cipher::Layout::max_overhead);
    u16::try_from(max).unwrap_or(u16::MAX)
}

/// The counters of the SA (tunnel, SPI, direction): outbound SPIs are the peers'
/// choice, so two tunnels may have the same one.
fn traffic(stats: &[esp::SaStats], tunnel: &str, spi: Spi, direction: Direction) -> Option<SaTraffic> {
    let s = stats.iter().find(|s| s.child.tunnel == tunnel && s.spi == spi && s.direction == direction)?;
    let c = &s.counters;
    Some(SaTraffic {
        bytes: c.bytes,
        packets: c.packets,
        seq: c.seq,
        superseded: !s.active,
        drops: SaDrops {
            replay: c.replay,
            icv_failure: c.auth_failed,
            selector_mismatch: c.selector_mismatch,
            expired: c.expired,
        },
    })
}

/// `initiate` / `respond`, as shown by `vpnctl status`.
fn start_keyword(s: config::StartAction) -> &'static str {
    match s {
        config::StartAction::Initiate => "initiate",
        config::StartAction::Respond => "respond",
    }
}

/// `restart` / `clear`, as shown by `vpnctl status`.
fn dpd_action_keyword(a: config::DpdAction) -> &'static str {
    match a {
        config::DpdAction::Restart => "restart",
        config::DpdAction::Clear => "clear",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ike_config::tests::sample_config;
    use ipsec_types::{ChildRef, DhGroup, Identity, PrfAlg, TrafficSelector, UdpEncap};

    /// One established IKE SA for `site-b` with one CHILD SA, as `ike` would report it.
    pub(crate) fn sample_ike() -> Vec<ike::IkeSaStatus> {
        vec![ike::IkeSaStatus {
            tunnel: "site-b".into(),
            version: ike::IkeVersion::V2,
            state: "ESTABLISHED",
            initiator: true,
            spi_i: 0x9f1c_2e0a_4b3d_2c1a,
            spi_r: 0x0123_4567_89ab_cdef,
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "192.0.2.2:4500".parse().unwrap(),
            local_id: Identity::parse("gw-a.example.net").unwrap(),
            remote_id: Identity::parse("gw-b.example.net").unwrap(),
            encr: Some(EncrAlg::AesGcm16_256),
            integ: None,
            prf: Some(PrfAlg::HmacSha256),
            dh: Some(DhGroup::Curve25519),
            nat_detected: true,
            encap_reason: Some(ike::EncapReason::Forced),
            established_at: Some(Timestamp::from_secs(100)),
            last_heard: Some(Timestamp::from_secs(3690)),
            next_rekey: Some(Timestamp::from_secs(7000)),
            children: vec![ike::ChildSaStatus {
                child_id: 1,
                state: "INSTALLED",
                spi_in: Spi(0xc7cc_eebf),
                spi_out: Spi(0xe2b8_3fd5),
                local_ts: vec![TrafficSelector::parse_cidr("10.1.0.0/24").unwrap()],
                remote_ts: vec![TrafficSelector::parse_cidr("10.2.0.0/24").unwrap()],
                encr: EncrAlg::AesGcm16_256,
                integ: None,
                dh: None,
                encap: Some(UdpEncap { local_port: 4500, remote_port: 4500 }),
                established_at: Timestamp::from_secs(160),
                next_rekey: Some(Timestamp::from_millis(6_640_001)),
                expires_at: Some(Timestamp::from_secs(7240)),
            }],
        }]
    }

    pub(crate) fn sample_esp() -> Vec<esp::SaStats> {
        let child = ChildRef { tunnel: "site-b".into(), child_id: 1 };
        vec![
            esp::SaStats {
                spi: Spi(0xc7cc_eebf),
                direction: Direction::Inbound,
                child: child.clone(),
                counters: esp::SaCounters {
                    bytes: 1_234_567,
                    packets: 764,
                    replay: 2,
                    auth_failed: 1,
                    selector_mismatch: 0,
                    expired: 0,
                    seq: 766,
                },
                active: true,
            },
            esp::SaStats {
                spi: Spi(0xe2b8_3fd5),
                direction: Direction::Outbound,
                child,
                counters: esp::SaCounters { bytes: 98_765, packets: 827, seq: 827, ..Default::default() },
                active: true,
            },
        ]
    }

    pub(crate) fn sample_report() -> StatusReport {
        report_with(&sample_esp())
    }

    /// An IKEv1 ISAKMP SA for `site-b` (Main Mode done, `aes128-sha1-modp1024`, floated
    /// to port 4500 as `encapsulation = "udp"` asks) with two Quick Mode SA pairs, as `ike` reports them: #2 INSTALLED (PFS MODP_1024) and
    /// #1 REKEYED, which #2 replaced and which is deleted 12 s from now.
    pub(crate) fn sample_v1_ike() -> Vec<ike::IkeSaStatus> {
        let pair = |child_id, state, spi_in, spi_out| ike::ChildSaStatus {
            child_id,
            state,
            spi_in: Spi(spi_in),
            spi_out: Spi(spi_out),
            local_ts: vec![TrafficSelector::parse_cidr("10.1.0.0/24").unwrap()],
            remote_ts: vec![TrafficSelector::parse_cidr("10.2.0.0/24").unwrap()],
            encr: EncrAlg::AesCbc128,
            integ: Some(IntegAlg::HmacSha1_96),
            dh: Some(DhGroup::Modp1024),
            encap: Some(UdpEncap { local_port: 4500, remote_port: 4500 }),
            established_at: Timestamp::from_secs(100),
            next_rekey: None,
            expires_at: Some(Timestamp::from_secs(3712)),
        };
        let installed = ike::ChildSaStatus {
            established_at: Timestamp::from_secs(3640),
            next_rekey: Some(Timestamp::from_secs(6641)),
            expires_at: Some(Timestamp::from_secs(7240)),
            ..pair(2, "INSTALLED", 0xe2b8_3fd5, 0xc7cc_eebf)
        };
        // Cookies, addresses and times as in `sample_ike`.
        vec![ike::IkeSaStatus {
            version: ike::IkeVersion::V1,
            local_id: Identity::parse("192.0.2.1").unwrap(),
            remote_id: Identity::parse("192.0.2.2").unwrap(),
            encr: Some(EncrAlg::AesCbc128),
            integ: None,
            prf: Some(PrfAlg::HmacSha1),
            dh: Some(DhGroup::Modp1024),
            next_rekey: Some(Timestamp::from_secs(28_000)),
            children: vec![installed, pair(1, "REKEYED", 0x1111_1111, 0x2222_2222)],
            ..sample_ike().remove(0)
        }]
    }

    /// The datapath's SAs of `sample_v1_ike`: both pairs, the old outbound superseded.
    pub(crate) fn sample_v1_esp() -> Vec<esp::SaStats> {
        let stats = |child_id, spi, direction, counters, active| esp::SaStats {
            spi: Spi(spi),
            direction,
            child: ChildRef { tunnel: "site-b".into(), child_id },
            counters,
            active,
        };
        vec![
            stats(
                2,
                0xe2b8_3fd5,
                Direction::Inbound,
                esp::SaCounters {
                    bytes: 64_000,
                    packets: 764,
                    replay: 2,
                    auth_failed: 1,
                    seq: 766,
                    ..Default::default()
                },
                true,
            ),
            stats(
                2,
                0xc7cc_eebf,
                Direction::Outbound,
                esp::SaCounters { bytes: 70_000, packets: 827, seq: 827, ..Default::default() },
                true,
            ),
            stats(
                1,
                0x1111_1111,
                Direction::Inbound,
                esp::SaCounters { bytes: 5_000, packets: 50, selector_mismatch: 3, seq: 50, ..Default::default() },
                true,
            ),
            stats(
                1,
                0x2222_2222,
                Direction::Outbound,
                esp::SaCounters { bytes: 4_000, packets: 40, seq: 40, ..Default::default() },
                false,
            ),
        ]
    }

    pub(crate) fn sample_v1_report() -> StatusReport {
        report_of(&sample_v1_ike(), &sample_v1_esp())
    }

    /// The report of `sample_config` and `sample_ike` with the datapath's `esp` stats.
    fn report_with(esp: &[esp::SaStats]) -> StatusReport {
        report_of(&sample_ike(), esp)
    }

    /// The report of `sample_config` with these IKE SAs and `esp` stats.
    fn report_of(ike: &[ike::IkeSaStatus], esp: &[esp::SaStats]) -> StatusReport {
        let cfg = sample_config();
        let global = esp::GlobalDrops { malformed: 3, unknown_spi: 5, no_sa: 7 };
        build(&Inputs {
            now: Timestamp::from_secs(3700),
            started: Timestamp::from_secs(90),
            config: &cfg,
            ike,
            half_open: 2,
            ike_drops: ike::IkeDrops {
                malformed: 1,
                unknown_spi: 2,
                cookie_required: 3,
                half_open_cap: 4,
                rate_limited: 5,
                refused_proposal: 6,
                child_sa_cap: 7,
                cookies_sent: 8,
                fragment_malformed: 9,
                fragment_unauthenticated: 10,
                fragment_limit: 11,
                fragment_duplicate: 12,
            },
            esp,
            global: &global,
            io: IoErrors::default(),
            stopped: &[],
        })
    }

    #[test]
    fn integrity_algorithms_are_reported_with_aes_cbc() {
        let mut ike = sample_ike();
        ike[0].encr = Some(EncrAlg::AesCbc128);
        ike[0].integ = Some(ipsec_types::IntegAlg::HmacSha1_96);
        ike[0].prf = Some(PrfAlg::HmacSha1);
        ike[0].children[0].encr = EncrAlg::AesCbc256;
        ike[0].children[0].integ = Some(ipsec_types::IntegAlg::HmacSha256_128);
        let r = report_of(&ike, &sample_esp());
        let sa = &r.tunnels[0].ike_sas[0];
        assert_eq!(
            (sa.encr.as_deref(), sa.integ.as_deref(), sa.prf.as_deref()),
            (Some("AES_CBC-128"), Some("HMAC_SHA1_96"), Some("PRF_HMAC_SHA1"))
        );
        assert_eq!(
            (sa.children[0].encr.as_str(), sa.children[0].integ.as_deref()),
            ("AES_CBC-256", Some("HMAC_SHA2_256_128"))
        );
        // AEADs: none.
        let r = sample_report();
        assert_eq!(
            (r.tunnels[0].ike_sas[0].integ.as_deref(), r.tunnels[0].ike_sas[0].children[0].integ.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn merges_config_ike_and_esp() {
        let r = sample_report();
        assert_eq!(r.daemon.uptime_s, 3610);
        assert_eq!(r.daemon.tun_name, "vpn0");
        assert_eq!(r.tunnels.len(), 2);
        let b = &r.tunnels[0];
        assert_eq!((b.name.as_str(), b.start.as_str(), b.encapsulation.as_str()), ("site-b", "initiate", "udp"));
        let sa = &b.ike_sas[0];
        assert_eq!(sa.spi_i, "9f1c2e0a4b3d2c1a");
        assert_eq!(sa.encr.as_deref(), Some("AES_GCM_16-256"));
        assert_eq!((sa.established_ago_s, sa.last_heard_ago_s), (Some(3600), Some(10)));
        assert_eq!(sa.next_rekey_in_s, Some(3300));
        let c = &sa.children[0];
        assert_eq!((c.spi_in.as_str(), c.spi_out.as_str()), ("c7cceebf", "e2b83fd5"));
        assert_eq!(c.replay_window, 1024);
        assert_eq!((b.dpd_delay_s, b.dpd_timeout_s, b.dpd_action.as_str()), (Some(30), 150, "restart"));
        assert_eq!(c.established_ago_s, 3540);
        // Rounded up: "in 0 s" only when due.
        assert_eq!((c.rekey_in_s, c.expires_in_s), (Some(2941), Some(3540)));
        let inb = c.inbound.as_ref().unwrap();
        assert_eq!((inb.bytes, inb.packets, inb.drops.replay, inb.drops.icv_failure), (1_234_567, 764, 2, 1));
        assert_eq!(c.outbound.as_ref().unwrap().packets, 827);
        assert_eq!(c.encapsulation, Encapsulation::Udp { local_port: 4500, remote_port: 4500 });
        assert_eq!(b.ike_sas[0].encap_reason.as_deref(), Some("forced"));
        // A configured tunnel without an IKE SA is still listed.
        assert_eq!(r.tunnels[1].name, "site-c");
        assert!(r.tunnels[1].ike_sas.is_empty());
        assert_eq!((r.global_drops.malformed, r.global_drops.unknown_spi, r.global_drops.no_sa), (3, 5, 7));
        let d = &r.ike.drops;
        assert_eq!(r.ike.half_open, 2);
        assert_eq!(
            [
                d.malformed,
                d.unknown_spi,
                d.cookie_required,
                d.half_open_cap,
                d.rate_limited,
                d.refused_proposal,
                d.child_sa_cap,
                d.cookies_sent,
                d.fragment_malformed,
                d.fragment_unauthenticated,
                d.fragment_limit,
                d.fragment_duplicate
            ],
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
    }

    #[test]
    fn ikev1_sa_reports_version_proposals_pairs_and_counters() {
        let r = sample_v1_report();
        let sa = &r.tunnels[0].ike_sas[0];
        assert_eq!((sa.ike_version, sa.state.as_str()), (1, "ESTABLISHED"));
        assert_eq!((sa.spi_i.as_str(), sa.spi_r.as_str()), ("9f1c2e0a4b3d2c1a", "0123456789abcdef"));
        assert_eq!(sa.proposal.as_deref(), Some("aes128-sha1-modp1024"));
        assert_eq!(sa.next_rekey_in_s, Some(24_300));
        let [new, old] = &sa.children[..] else { panic!("two Quick Mode SA pairs: {:?}", sa.children) };
        assert_eq!(
            (new.child_id, new.state.as_str(), old.child_id, old.state.as_str()),
            (2, "INSTALLED", 1, "REKEYED")
        );
        assert_eq!((new.proposal.as_str(), new.esp_overhead_max), ("aes128-sha1-modp1024", 8 + 16 + 15 + 2 + 12));
        assert_eq!((new.expires_in_s, new.rekey_in_s), (Some(3540), Some(2941)));
        assert_eq!((old.expires_in_s, old.rekey_in_s), (Some(12), None));
        let (inb, out) = (new.inbound.as_ref().unwrap(), new.outbound.as_ref().unwrap());
        assert_eq!((inb.packets, inb.drops.replay, inb.drops.icv_failure, out.packets), (764, 2, 1, 827));
        let (inb, out) = (old.inbound.as_ref().unwrap(), old.outbound.as_ref().unwrap());
        assert_eq!((inb.packets, inb.drops.selector_mismatch, out.packets, out.superseded), (50, 3, 40, true));

        let json = serde_json::to_value(&r).unwrap();
        let sa = &json["tunnels"][0]["ike_sas"][0];
        assert_eq!(sa["ike_version"], 1);
        assert_eq!(sa["state"], "ESTABLISHED");
        assert_eq!(sa["proposal"], "aes128-sha1-modp1024");
        assert_eq!((&sa["prf"], &sa["integ"]), (&serde_json::json!("PRF_HMAC_SHA1"), &serde_json::Value::Null));
        let c = &sa["children"];
        assert_eq!(
            (&c[0]["state"], &c[0]["spi_in"], &c[0]["spi_out"]),
            (&"INSTALLED".into(), &"e2b83fd5".into(), &"c7cceebf".into())
        );
        assert_eq!((&c[0]["proposal"], &c[0]["esp_overhead_max"]), (&"aes128-sha1-modp1024".into(), &53.into()));
        assert_eq!((&c[0]["expires_in_s"], &c[0]["rekey_in_s"]), (&3540.into(), &2941.into()));
        assert_eq!((&c[0]["inbound"]["packets"], &c[0]["outbound"]["packets"]), (&764.into(), &827.into()));
        assert_eq!(c[0]["inbound"]["drops"]["replay"], 2);
        assert_eq!((&c[1]["state"], &c[1]["expires_in_s"]), (&"REKEYED".into(), &12.into()));
        assert_eq!(c[1]["outbound"]["superseded"], true);
        assert_eq!(c[1]["local_ts"][0], "10.1.0.0/24");
        assert_eq!((&c[0]["encapsulation"]["mode"], &c[0]["replay_window"]), (&"udp".into(), &1024.into()));

        // IKEv2 SAs say 2 and name their proposal with the PRF; reports from daemons
        // before `ike_version` are IKEv2 ones.
        let r = sample_report();
        let sa = &r.tunnels[0].ike_sas[0];
        assert_eq!((sa.ike_version, sa.proposal.as_deref()), (2, Some("aes256gcm16-prfsha256-x25519")));
        assert_eq!((sa.children[0].proposal.as_str(), sa.children[0].esp_overhead_max), ("aes256gcm16", 49));
        let mut json = serde_json::to_value(sa).unwrap();
        json.as_object_mut().unwrap().remove("ike_version");
        let back: IkeSaInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back.ike_version, 2);
    }

    #[test]
    fn esp_overhead_matches_the_datapath_bound() {
        // The largest transform is the one `esp::MAX_OVERHEAD` is sized for.
        assert_eq!(
            usize::from(esp_overhead_max(EncrAlg::AesCbc256, Some(IntegAlg::HmacSha512_256))),
            esp::MAX_OVERHEAD
        );
        assert_eq!(esp_overhead_max(EncrAlg::ChaCha20Poly1305, None), 37);
        assert_eq!(esp_overhead_max(EncrAlg::AesGcm16_256, None), 8 + 8 + 15 + 2 + 16);
        assert_eq!(esp_overhead_max(EncrAlg::AesCbc256, Some(IntegAlg::HmacSha256_128)), 8 + 16 + 15 + 2 + 16);
    }

    #[test]
    fn missing_datapath_sa_is_none_not_zero() {
        let cfg = sample_config();
        let ike = sample_ike();
        let global = esp::GlobalDrops::default();
        let r = build(&Inputs {
            now: Timestamp::from_secs(10),
            started: Timestamp::ZERO,
            config: &cfg,
            ike: &ike,
            half_open: 0,
            ike_drops: ike::IkeDrops::default(),
            esp: &[],
            global: &global,
            io: IoErrors::default(),
            stopped: &[],
        });
        let c = &r.tunnels[0].ike_sas[0].children[0];
        assert!(c.inbound.is_none() && c.outbound.is_none());
    }

    #[test]
    fn datapath_counters_are_matched_by_tunnel_and_spi() {
        // site-c's peer chose site-b's outbound SPI for its own SA (listed first).
        let mut esp = sample_esp();
        let mut other = esp[1].clone();
        other.child = ChildRef { tunnel: "site-c".into(), child_id: 2 };
        other.counters.packets = 5;
        esp.insert(0, other);
        let r = report_with(&esp);
        assert_eq!(r.tunnels[0].ike_sas[0].children[0].outbound.as_ref().unwrap().packets, 827);
    }

    #[test]
    fn rekey_in_progress_shows_both_child_sas_and_which_one_sends() {
        let cfg = sample_config();
        let mut ike = sample_ike();
        let mut old = ike[0].children[0].clone();
        old.state = "REKEYED";
        old.spi_in = Spi(0x1111_1111);
        old.spi_out = Spi(0x2222_2222);
        ike[0].children.push(old);
        ike[0].children[0].dh = Some(DhGroup::Curve25519);
        let mut esp = sample_esp();
        let child = esp[0].child.clone();
        esp.push(esp::SaStats {
            spi: Spi(0x2222_2222),
            direction: Direction::Outbound,
            child,
            counters: esp::SaCounters { packets: 9, expired: 4, ..Default::default() },
            active: false,
        });
        let global = esp::GlobalDrops::default();
        let r = build(&Inputs {
            now: Timestamp::from_secs(3700),
            started: Timestamp::ZERO,
            config: &cfg,
            ike: &ike,
            half_open: 0,
            ike_drops: ike::IkeDrops::default(),
            esp: &esp,
            global: &global,
            io: IoErrors::default(),
            stopped: &[],
        });
        let children = &r.tunnels[0].ike_sas[0].children;
        assert_eq!(children.len(), 2);
        assert_eq!((children[0].state.as_str(), children[0].dh.as_deref()), ("INSTALLED", Some("CURVE_25519")));
        assert!(!children[0].outbound.as_ref().unwrap().superseded);
        assert_eq!(children[1].state, "REKEYED");
        let out = children[1].outbound.as_ref().unwrap();
        assert!(out.superseded);
        assert_eq!(out.drops.expired, 4);
        assert!(children[1].inbound.is_none(), "no inbound SA 11111111 in the datapath");
    }

    #[test]
    fn stopped_tunnels_are_marked() {
        let cfg = sample_config();
        let global = esp::GlobalDrops::default();
        let stopped = ["site-c".to_string()];
        let r = build(&Inputs {
            now: Timestamp::from_secs(10),
            started: Timestamp::ZERO,
            config: &cfg,
            ike: &[],
            half_open: 0,
            ike_drops: ike::IkeDrops::default(),
            esp: &[],
            global: &global,
            io: IoErrors::default(),
            stopped: &stopped,
        });
        assert_eq!((r.tunnels[0].stopped, r.tunnels[1].stopped), (false, true));
    }
}
