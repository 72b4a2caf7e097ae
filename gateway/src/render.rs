//! Human-readable `vpnctl status`: one block per tunnel, one sub-block per CHILD SA,
//! then the drops no SA owns. Pure formatting of a [`StatusReport`]; the machine form
//! is the JSON of the same report.

use crate::control::proto::{
    ActionReport, ChildSaInfo, Encapsulation, IkeSaInfo, ReloadReport, SaTraffic, StatusReport, TunnelStatus,
    WatchEvent,
};
use std::fmt::Write;

/// `42s`, `5m 03s`, `2h 07m`, `3d 04h`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d {:02}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// `250 ms`, `1.5 s`, then as [`duration`].
pub fn duration_ms(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
    } else {
        duration(d.as_secs())
    }
}

/// `in 5m 03s`, or `due now` at zero.
fn due(secs: u64) -> String {
    if secs == 0 {
        "due now".into()
    } else {
        format!("in {}", duration(secs))
    }
}

/// `999 B`, `1.2 KiB`, `3.4 MiB`, `5.6 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)] // display only: three significant digits
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in UNITS.iter().skip(1) {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn ago(secs: Option<u64>) -> String {
    secs.map_or_else(|| "never".into(), |s| format!("{} ago", duration(s)))
}

fn join_or(v: &[String], none: &str) -> String {
    if v.is_empty() {
        none.into()
    } else {
        v.join(", ")
    }
}

/// Renders the whole report.
pub fn status(r: &StatusReport) -> String {
    let mut o = String::new();
    let d = &r.daemon;
    let _ = writeln!(
        o,
        "vpngw {} (pid {}), up {} | WAN {} (IKE {}, NAT-T {}) | {} mtu {}, ESP overhead <= {} B",
        d.version,
        d.pid,
        duration(d.uptime_s),
        d.local_address,
        d.ike_port,
        d.natt_port,
        d.tun_name,
        d.tun_mtu,
        d.esp_overhead_max
    );
    let (ike, x) = (&r.ike, &r.ike.drops);
    let _ = writeln!(
        o,
        "IKE: {} half-open; refused: malformed {}, unknown SPI {}, COOKIE required {}, half-open cap {}, \
         rate-limited {}, no proposal {}, CHILD SA cap {}; COOKIEs sent {}; fragments dropped: malformed {}, \
         unauthenticated {}, over limit {}, duplicate {}",
        ike.half_open,
        x.malformed,
        x.unknown_spi,
        x.cookie_required,
        x.half_open_cap,
        x.rate_limited,
        x.refused_proposal,
        x.child_sa_cap,
        x.cookies_sent,
        x.fragment_malformed,
        x.fragment_unauthenticated,
        x.fragment_limit,
        x.fragment_duplicate
    );
    for t in &r.tunnels {
        o.push('\n');
        tunnel(&mut o, t);
    }
    let g = &r.global_drops;
    let _ = writeln!(
        o,
        "\nglobal drops: malformed {}, unknown SPI {}, no SA (outbound) {}",
        g.malformed, g.unknown_spi, g.no_sa
    );
    let io = &r.io_errors;
    let _ = writeln!(
        o,
        "gateway I/O:  WAN send errors {}, TUN write errors {}, malformed TUN reads {}, IKE queue overflows {}",
        io.wan_send, io.tun_write, io.tun_read_malformed, io.ike_queue_full
    );
    o
}

fn tunnel(o: &mut String, t: &TunnelStatus) {
    let subnets = format!("{} === {}", join_or(&t.local_subnets, "-"), join_or(&t.remote_subnets, "-"));
    if t.ike_sas.is_empty() {
        let what = if t.stopped {
            format!("stopped by `vpnctl down`; `vpnctl up {}` starts it", t.name)
        } else if t.start == "initiate" {
            "will initiate".into()
        } else {
            "waiting for the peer".into()
        };
        let _ = writeln!(o, "tunnel {}: DOWN ({what}), peer {}, {subnets}", t.name, t.remote_address);
        failover(o, t);
        return;
    }
    let newer = t.ike_sas.iter().any(|sa| sa.state == "ESTABLISHED");
    for sa in &t.ike_sas {
        ike_sa(o, t, sa, newer && sa.state != "ESTABLISHED");
    }
    let c = &t.counters;
    if c.ike_rekeys + c.child_rekeys + c.dpd_failures > 0 {
        let _ = writeln!(
            o,
            "  since start: {} IKE rekeys, {} CHILD rekeys, {} dead peers detected",
            c.ike_rekeys, c.child_rekeys, c.dpd_failures
        );
    }
    failover(o, t);
}

/// The active/standby line of a tunnel in a group.
fn failover(o: &mut String, t: &TunnelStatus) {
    let Some(f) = &t.failover else { return };
    let state = match f.state.as_str() {
        "active" => "active (carries the group's outbound traffic)",
        "standby" => "standby (up, takes over if the active tunnel fails)",
        "down" => "down (no CHILD SA)",
        other => other,
    };
    let failback = if f.failback { ", failback on" } else { "" };
    let _ = writeln!(
        o,
        "  failover     {state}; {} of group {}{failback}; became active {} times since start",
        f.role, f.group, f.activations
    );
}

/// `replaced`: an IKE SA on its way out while another one of the tunnel is established
/// (an IKE rekey): its CHILD SAs have moved to the new one.
fn ike_sa(o: &mut String, t: &TunnelStatus, sa: &IkeSaInfo, replaced: bool) {
    if sa.ike_version == 1 {
        return isakmp_sa(o, t, sa, replaced);
    }
    let _ = writeln!(o, "tunnel {}: {}, {}", t.name, sa.state, sa.role);
    let _ = writeln!(o, "  addresses    {} <-> {}", sa.local, sa.remote);
    let _ = writeln!(o, "  identities   {} <-> {}", sa.local_id, sa.remote_id);
    let (ours_i, ours_r) = if sa.role == "initiator" { (" (ours)", "") } else { ("", " (ours)") };
    let _ = writeln!(o, "  IKE SPIs     initiator {}{ours_i}, responder {}{ours_r}", sa.spi_i, sa.spi_r);
    let algs: Vec<&str> = [&sa.encr, &sa.integ, &sa.prf, &sa.dh].into_iter().filter_map(|a| a.as_deref()).collect();
    let algs = if algs.is_empty() { "not negotiated yet".to_string() } else { algs.join("/") };
    let _ = writeln!(o, "  algorithms   {algs}");
    let _ = writeln!(o, "  NAT-T        {}", nat_line(sa, t));
    let children = if t.child_sa_per_subnet_pair { "one per subnet pair" } else { "one for all subnets" };
    let _ = writeln!(o, "  CHILD SAs    {children} (as initiator); {} now", sa.children.len());
    let est = match sa.established_ago_s {
        Some(s) => format!("{} ago", duration(s)),
        None => "not yet".into(),
    };
    let _ = writeln!(o, "  established  {est}, last heard from peer {}", ago(sa.last_heard_ago_s));
    if sa.established_ago_s.is_some() {
        let rekey = sa.next_rekey_in_s.map_or_else(|| "none scheduled".to_string(), due);
        let _ = writeln!(o, "  IKE rekey    {rekey}");
        let _ = writeln!(o, "  DPD          {}", dpd_line(t));
    }
    if sa.children.is_empty() && replaced {
        let _ = writeln!(o, "  no CHILD SA (moved to the new IKE SA of this tunnel)");
    } else if sa.children.is_empty() {
        let _ = writeln!(
            o,
            "  no CHILD SA (configured {} === {})",
            join_or(&t.local_subnets, "-"),
            join_or(&t.remote_subnets, "-")
        );
    }
    for c in &sa.children {
        child(o, c);
    }
}

fn child(o: &mut String, c: &ChildSaInfo) {
    let _ = writeln!(
        o,
        "  child #{} {}: {} === {}",
        c.child_id,
        c.state,
        join_or(&c.local_ts, "-"),
        join_or(&c.remote_ts, "-")
    );
    let _ = writeln!(o, "    SPIs         in {}, out {}", c.spi_in, c.spi_out);
    let (pfs, encap) = pfs_and_encapsulation(c);
    let cipher = c.integ.as_ref().map_or_else(|| c.encr.clone(), |i| format!("{}/{i}", c.encr));
    let _ = writeln!(o, "    ESP          {cipher}, {pfs}, {encap}, tunnel mode, replay window {}", c.replay_window);
    let _ = writeln!(o, "    in           {}", traffic(c.inbound.as_ref()));
    let superseded = c.outbound.as_ref().is_some_and(|t| t.superseded);
    let note = if superseded { " (superseded: new traffic uses the newer SA)" } else { "" };
    let _ = writeln!(o, "    out          {}{note}", traffic(c.outbound.as_ref()));
    match &c.inbound {
        Some(t) => {
            let d = &t.drops;
            let expired = if d.expired > 0 { format!(", expired {}", d.expired) } else { String::new() };
            let _ = writeln!(
                o,
                "    drops (in)   replay {}, ICV failure {}, selector mismatch {}{expired}",
                d.replay, d.icv_failure, d.selector_mismatch
            );
        }
        None => {
            let _ = writeln!(o, "    drops (in)   -");
        }
    }
    if let Some(t) = c.outbound.as_ref().filter(|t| t.drops.expired > 0) {
        let _ = writeln!(o, "    drops (out)  expired {} (hard limit reached)", t.drops.expired);
    }
    let _ = writeln!(o, "    established  {} ago", duration(c.established_ago_s));
    let rekey = c.rekey_in_s.map_or_else(|| "no rekey scheduled".to_string(), |s| format!("rekey {}", due(s)));
    let expires = match c.expires_in_s {
        None => "no hard lifetime".to_string(),
        Some(0) => "expires now".to_string(),
        Some(s) => format!("expires in {}", duration(s)),
    };
    let _ = writeln!(o, "    lifetime     {rekey}, {expires}");
}

/// The NAT-T line of an IKE SA: raw ESP or ESP in UDP, and why.
fn nat_line(sa: &IkeSaInfo, t: &TunnelStatus) -> &'static str {
    match sa.encap_reason.as_deref() {
        Some("vpngw_peer") => {
            "ESP in UDP (peer is vpngw: faster than raw ESP here; encapsulation = \"raw\" keeps IP protocol 50)"
        }
        Some("forced") => "ESP in UDP (forced by encapsulation = \"udp\")",
        Some(_) => "NAT detected: ESP in UDP",
        // No reason: raw ESP, or a report of an older daemon, which has only the NAT flag.
        None => match (sa.nat_detected, t.encapsulation.as_str()) {
            (true, "udp") => "ESP in UDP (forced by encapsulation = \"udp\")",
            (true, _) => "NAT detected: ESP in UDP",
            (false, "raw") => "no NAT: raw ESP (IP protocol 50, encapsulation = \"raw\")",
            (false, _) => "no NAT: raw ESP (IP protocol 50)",
        },
    }
}

/// The DPD line of a tunnel.
fn dpd_line(t: &TunnelStatus) -> String {
    match t.dpd_delay_s {
        Some(d) => format!(
            "liveness check after {} of silence, dead after {} of silence, action {}",
            duration(d),
            duration(t.dpd_timeout_s),
            t.dpd_action
        ),
        None => "off".into(),
    }
}

/// An IKEv1 ISAKMP SA, in the words of IKEv1: Main Mode, cookies, phase 1, Quick Mode
/// SAs, remaining key lifetime, encaps/decaps.
fn isakmp_sa(o: &mut String, t: &TunnelStatus, sa: &IkeSaInfo, replaced: bool) {
    let state = match sa.state.as_str() {
        "ESTABLISHED" => "IKEv1 Main Mode established".to_string(),
        "MAIN_MODE" => "IKEv1 Main Mode in progress".to_string(),
        "DELETING" => "IKEv1 ISAKMP SA being deleted".to_string(),
        other => format!("IKEv1 {other}"),
    };
    let _ = writeln!(o, "tunnel {}: {state}, {}", t.name, sa.role);
    let _ = writeln!(o, "  addresses    {} <-> {}", sa.local, sa.remote);
    let _ = writeln!(o, "  identities   {} <-> {}", sa.local_id, sa.remote_id);
    let (ours_i, ours_r) = if sa.role == "initiator" { (" (ours)", "") } else { ("", " (ours)") };
    let _ = writeln!(o, "  cookies i/r  {}{ours_i} / {}{ours_r}", sa.spi_i, sa.spi_r);
    let _ = writeln!(o, "  phase 1      {}", sa.proposal.as_deref().unwrap_or("not negotiated yet"));
    let _ = writeln!(o, "  NAT-T        {}", nat_line(sa, t));
    let est = match sa.established_ago_s {
        Some(s) => format!("{} ago", duration(s)),
        None => "not yet".into(),
    };
    let _ = writeln!(o, "  established  {est}, last heard from peer {}", ago(sa.last_heard_ago_s));
    if sa.established_ago_s.is_some() {
        let reauth =
            sa.next_rekey_in_s.map_or_else(|| "none scheduled".to_string(), |s| format!("new Main Mode {}", due(s)));
        let _ = writeln!(o, "  re-auth      {reauth}");
        let _ = writeln!(o, "  DPD          {}", dpd_line(t));
    }
    let per = if t.child_sa_per_subnet_pair { "one per subnet pair" } else { "one for all subnets" };
    if sa.children.is_empty() {
        let why = if replaced {
            "a newer ISAKMP SA of this tunnel holds them".to_string()
        } else {
            format!("configured {} === {}", join_or(&t.local_subnets, "-"), join_or(&t.remote_subnets, "-"))
        };
        let _ = writeln!(o, "  Quick Mode SAs: none ({why})");
        return;
    }
    let _ = writeln!(o, "  Quick Mode SAs: {} ({per} as initiator)", sa.children.len());
    for c in &sa.children {
        quick_mode_sa(o, c);
    }
}

/// One Quick Mode SA pair, laid out like the classic `show crypto ipsec sa`: SPIs,
/// transform and settings, encaps/decaps, errors, remaining key lifetime.
fn quick_mode_sa(o: &mut String, c: &ChildSaInfo) {
    // The pair new traffic goes out on: the classic "current outbound spi".
    let current = c.state == "INSTALLED" && c.outbound.as_ref().is_some_and(|t| !t.superseded);
    let _ = writeln!(
        o,
        "  #{} {}{}: {} === {}",
        c.child_id,
        c.state,
        if current { " (current)" } else { "" },
        join_or(&c.local_ts, "-"),
        join_or(&c.remote_ts, "-")
    );
    let _ = writeln!(o, "    SPIs         in {}, out {}", c.spi_in, c.spi_out);
    let (pfs, encap) = pfs_and_encapsulation(c);
    let _ = writeln!(o, "    transform    esp {}, {pfs}, tunnel mode, {encap}", c.proposal);
    let _ = writeln!(
        o,
        "    settings     replay detection on (window {}), ESP overhead <= {} B",
        c.replay_window, c.esp_overhead_max
    );
    let superseded = c.outbound.as_ref().is_some_and(|t| t.superseded);
    let note = if superseded { " (superseded: new traffic uses the newer SA)" } else { "" };
    let _ = writeln!(o, "    encaps       {}{note}", packets(c.outbound.as_ref()));
    let _ = writeln!(o, "    decaps       {}", packets(c.inbound.as_ref()));
    match &c.inbound {
        Some(t) => {
            let d = &t.drops;
            let total =
                d.replay.saturating_add(d.icv_failure).saturating_add(d.selector_mismatch).saturating_add(d.expired);
            let _ = writeln!(
                o,
                "    recv errors  {total}: replay {}, ICV failure {}, selector mismatch {}, expired {}",
                d.replay, d.icv_failure, d.selector_mismatch, d.expired
            );
        }
        None => {
            let _ = writeln!(o, "    recv errors  -");
        }
    }
    match &c.outbound {
        Some(t) => {
            let _ = writeln!(o, "    send errors  {} (refused at the SA's hard limit)", t.drops.expired);
        }
        None => {
            let _ = writeln!(o, "    send errors  -");
        }
    }
    let _ = writeln!(o, "    established  {} ago", duration(c.established_ago_s));
    let lifetime = if c.state == "REKEYED" {
        match c.expires_in_s {
            Some(s) => format!("rekeyed, in grace period, deleted in {s} s"),
            None => "rekeyed, in grace period".to_string(),
        }
    } else {
        let rekey = c.rekey_in_s.map_or_else(|| "no rekey scheduled".to_string(), |s| format!("rekey {}", due(s)));
        match c.expires_in_s {
            Some(s) => format!("remaining key lifetime {s} s ({}), {rekey}", duration(s)),
            None => format!("no hard lifetime, {rekey}"),
        }
    };
    let _ = writeln!(o, "    lifetime     {lifetime}");
}

/// `PFS CURVE_25519` or `no PFS`, and `raw ESP` or `ESP-in-UDP 4500->4500`.
fn pfs_and_encapsulation(c: &ChildSaInfo) -> (String, String) {
    let pfs = c.dh.as_ref().map_or_else(|| "no PFS".to_string(), |d| format!("PFS {d}"));
    let encap = match c.encapsulation {
        Encapsulation::Raw => "raw ESP".to_string(),
        Encapsulation::Udp { local_port, remote_port } => format!("ESP-in-UDP {local_port}->{remote_port}"),
    };
    (pfs, encap)
}

/// `827 packets, 96.5 KiB (98765 bytes), last seq 827`.
fn packets(t: Option<&SaTraffic>) -> String {
    match t {
        Some(t) => format!("{} packets, {} ({} bytes), last seq {}", t.packets, bytes(t.bytes), t.bytes, t.seq),
        None => "not installed in the datapath".into(),
    }
}

/// Human-readable answer to `vpnctl up`, `down` or `rekey`: the outcome, the IKE
/// events seen while waiting, then the tunnel's status block.
pub fn action(r: &ActionReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", r.message);
    for e in &r.events {
        let _ = writeln!(o, "  event: {e}");
    }
    if let Some(t) = &r.tunnel_status {
        o.push('\n');
        tunnel(&mut o, t);
    }
    o
}

/// Human-readable answer to `vpnctl reload`: what the new configuration changed.
pub fn reload(r: &ReloadReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "reloaded {}", r.file);
    let list = |names: &[String]| if names.is_empty() { "-".to_string() } else { names.join(", ") };
    let _ = writeln!(o, "  added:     {}", list(&r.added));
    let _ = writeln!(o, "  removed:   {}", list(&r.removed));
    let _ = writeln!(o, "  changed:   {}", list(&r.changed));
    let _ = writeln!(o, "  unchanged: {}", list(&r.unchanged));
    if !r.gateway.is_empty() {
        let _ = writeln!(o, "  gateway:   {}", r.gateway.join(", "));
    }
    if !r.routes.is_empty() {
        let _ = writeln!(o, "  routes:    {}", r.routes.join(" "));
    }
    for w in &r.warnings {
        let _ = writeln!(o, "  warning: {w}");
    }
    o
}

fn traffic(t: Option<&SaTraffic>) -> String {
    match t {
        Some(t) => format!("{} ({} bytes), {} packets, last seq {}", bytes(t.bytes), t.bytes, t.packets, t.seq),
        None => "not installed in the datapath".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::{sample_report, sample_v1_report};

    #[test]
    fn units() {
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(303), "5m 03s");
        assert_eq!(duration(3600), "1h 00m");
        assert_eq!(duration(90_000), "1d 01h");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1_234_567), "1.2 MiB");
    }

    #[test]
    fn renders_every_field_an_operator_needs() {
        let out = status(&sample_report());
        for needle in [
            "tunnel site-b: ESTABLISHED, initiator",
            "192.0.2.1:4500 <-> 192.0.2.2:4500",
            "gw-a.example.net <-> gw-b.example.net",
            "initiator 9f1c2e0a4b3d2c1a (ours), responder 0123456789abcdef",
            "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519",
            "NAT-T        ESP in UDP (forced by encapsulation = \"udp\")",
            "established  1h 00m ago, last heard from peer 10s ago",
            "child #1 INSTALLED: 10.1.0.0/24 === 10.2.0.0/24",
            "in c7cceebf, out e2b83fd5",
            "AES_GCM_16-256, no PFS, ESP-in-UDP 4500->4500, tunnel mode, replay window 1024",
            "1.2 MiB (1234567 bytes), 764 packets, last seq 766",
            "96.5 KiB (98765 bytes), 827 packets",
            "replay 2, ICV failure 1, selector mismatch 0",
            "established  59m 00s ago",
            "IKE rekey    in 55m 00s",
            "DPD          liveness check after 30s of silence, dead after 2m 30s of silence, action restart",
            "lifetime     rekey in 49m 01s, expires in 59m 00s",
            "tunnel site-c: DOWN (waiting for the peer), peer 192.0.2.3, 10.1.0.0/24 === 10.3.0.0/24",
            "global drops: malformed 3, unknown SPI 5, no SA (outbound) 7",
            "vpn0 mtu 1400",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
        // The daemon section's second line: IKE state no tunnel owns.
        assert_eq!(
            out.lines().nth(1),
            Some(
                "IKE: 2 half-open; refused: malformed 1, unknown SPI 2, COOKIE required 3, half-open cap 4, \
                 rate-limited 5, no proposal 6, CHILD SA cap 7; COOKIEs sent 8; fragments dropped: malformed 9, \
                 unauthenticated 10, over limit 11, duplicate 12"
            )
        );
    }

    #[test]
    fn cbc_integrity_is_shown_after_the_cipher() {
        let mut r = sample_report();
        let sa = &mut r.tunnels[0].ike_sas[0];
        sa.encr = Some("AES_CBC-128".into());
        sa.integ = Some("HMAC_SHA1_96".into());
        sa.prf = Some("PRF_HMAC_SHA1".into());
        sa.dh = Some("MODP_1024".into());
        sa.children[0].encr = "AES_CBC-256".into();
        sa.children[0].integ = Some("HMAC_SHA2_256_128".into());
        sa.children[0].dh = Some("MODP_1024".into());
        let out = status(&r);
        for needle in [
            "algorithms   AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024",
            "ESP          AES_CBC-256/HMAC_SHA2_256_128, PFS MODP_1024, ESP-in-UDP",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
        let json = serde_json::to_value(&r.tunnels[0].ike_sas[0]).unwrap();
        assert_eq!(json["integ"], "HMAC_SHA1_96");
        assert_eq!(json["children"][0]["integ"], "HMAC_SHA2_256_128");
    }

    #[test]
    fn shows_each_child_sa_of_a_tunnel_with_its_selectors() {
        let mut r = sample_report();
        let out = status(&r);
        assert!(out.contains("CHILD SAs    one for all subnets (as initiator); 1 now"), "{out}");
        r.tunnels[0].child_sa_per_subnet_pair = true;
        let sa = &mut r.tunnels[0].ike_sas[0];
        let mut second = sa.children[0].clone();
        second.child_id = 2;
        second.local_ts = vec!["10.3.0.0/24".into()];
        second.remote_ts = vec!["10.4.0.0/24".into()];
        sa.children.push(second);
        let out = status(&r);
        for needle in [
            "CHILD SAs    one per subnet pair (as initiator); 2 now",
            "child #1 INSTALLED: 10.1.0.0/24 === 10.2.0.0/24",
            "child #2 INSTALLED: 10.3.0.0/24 === 10.4.0.0/24",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
    }

    #[test]
    fn rekey_state_lifetimes_and_expired_drops() {
        let mut r = sample_report();
        let sa = &mut r.tunnels[0].ike_sas[0];
        sa.next_rekey_in_s = Some(0);
        let mut old = sa.children[0].clone();
        old.state = "REKEYED".into();
        old.rekey_in_s = None;
        old.expires_in_s = Some(0);
        if let Some(o) = old.outbound.as_mut() {
            o.superseded = true;
            o.drops.expired = 3;
        }
        if let Some(i) = old.inbound.as_mut() {
            i.drops.expired = 2;
        }
        sa.children.push(old);
        sa.children[0].dh = Some("CURVE_25519".into());
        let out = status(&r);
        for needle in [
            "IKE rekey    due now",
            "child #1 REKEYED: 10.1.0.0/24 === 10.2.0.0/24",
            "AES_GCM_16-256, PFS CURVE_25519, ESP-in-UDP",
            "827 packets, last seq 827 (superseded: new traffic uses the newer SA)",
            "replay 2, ICV failure 1, selector mismatch 0, expired 2",
            "drops (out)  expired 3 (hard limit reached)",
            "lifetime     no rekey scheduled, expires now",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
        let mut r = sample_report();
        r.tunnels[0].ike_sas[0].next_rekey_in_s = None;
        r.tunnels[0].ike_sas[0].children[0].rekey_in_s = None;
        r.tunnels[0].ike_sas[0].children[0].expires_in_s = None;
        let out = status(&r);
        assert!(out.contains("IKE rekey    none scheduled"), "{out}");
        assert!(!out.contains("no CHILD SA (configured"), "{out}");
        // During an IKE rekey the old IKE SA has no CHILD SAs: they moved.
        let mut old = r.tunnels[0].ike_sas[0].clone();
        old.state = "DELETING".into();
        old.children.clear();
        r.tunnels[0].ike_sas.insert(0, old);
        let out = status(&r);
        assert!(out.contains("tunnel site-b: DELETING, initiator"), "{out}");
        assert!(out.contains("no CHILD SA (moved to the new IKE SA of this tunnel)"), "{out}");
        assert!(out.contains("lifetime     no rekey scheduled, no hard lifetime"), "{out}");
    }

    #[test]
    fn action_answer_lists_message_events_and_the_tunnel() {
        use crate::control::proto::{Action, Outcome};
        let r = sample_report();
        let a = ActionReport {
            tunnel: "site-b".into(),
            action: Action::RekeyChild,
            outcome: Outcome::Done,
            message: "site-b: rekeyed CHILD SA c7cceebf: new SAs in 1a2b3c4d, out 5e6f7a8b (PFS CURVE_25519)".into(),
            events: vec![
                "CHILD SA installed: in 1a2b3c4d, out 5e6f7a8b".into(),
                "CHILD SA removed: in c7cceebf".into(),
            ],
            elapsed_ms: 40,
            tunnel_status: r.tunnels.into_iter().next(),
        };
        let out = action(&a);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], a.message);
        assert_eq!(lines[1], "  event: CHILD SA installed: in 1a2b3c4d, out 5e6f7a8b");
        assert_eq!(lines[2], "  event: CHILD SA removed: in c7cceebf");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "tunnel site-b: ESTABLISHED, initiator");
        assert_eq!(duration_ms(std::time::Duration::from_millis(250)), "250 ms");
        assert_eq!(duration_ms(std::time::Duration::from_millis(1540)), "1.5 s");
        assert_eq!(duration_ms(std::time::Duration::from_secs(61)), "1m 01s");
    }

    #[test]
    fn ikev1_tunnel_reads_like_main_mode_and_quick_mode() {
        let out = status(&sample_v1_report());
        let block: Vec<&str> =
            out.lines().skip_while(|l| !l.starts_with("tunnel site-b")).take_while(|l| !l.is_empty()).collect();
        assert_eq!(
            block,
            [
                "tunnel site-b: IKEv1 Main Mode established, initiator",
                "  addresses    192.0.2.1:4500 <-> 192.0.2.2:4500",
                "  identities   192.0.2.1 <-> 192.0.2.2",
                "  cookies i/r  9f1c2e0a4b3d2c1a (ours) / 0123456789abcdef",
                "  phase 1      aes128-sha1-modp1024",
                "  NAT-T        ESP in UDP (forced by encapsulation = \"udp\")",
                "  established  1h 00m ago, last heard from peer 10s ago",
                "  re-auth      new Main Mode in 6h 45m",
                "  DPD          liveness check after 30s of silence, dead after 2m 30s of silence, action restart",
                "  Quick Mode SAs: 2 (one for all subnets as initiator)",
                "  #2 INSTALLED (current): 10.1.0.0/24 === 10.2.0.0/24",
                "    SPIs         in e2b83fd5, out c7cceebf",
                "    transform    esp aes128-sha1-modp1024, PFS MODP_1024, tunnel mode, ESP-in-UDP 4500->4500",
                "    settings     replay detection on (window 1024), ESP overhead <= 53 B",
                "    encaps       827 packets, 68.4 KiB (70000 bytes), last seq 827",
                "    decaps       764 packets, 62.5 KiB (64000 bytes), last seq 766",
                "    recv errors  3: replay 2, ICV failure 1, selector mismatch 0, expired 0",
                "    send errors  0 (refused at the SA's hard limit)",
                "    established  1m 00s ago",
                "    lifetime     remaining key lifetime 3540 s (59m 00s), rekey in 49m 01s",
                "  #1 REKEYED: 10.1.0.0/24 === 10.2.0.0/24",
                "    SPIs         in 11111111, out 22222222",
                "    transform    esp aes128-sha1-modp1024, PFS MODP_1024, tunnel mode, ESP-in-UDP 4500->4500",
                "    settings     replay detection on (window 1024), ESP overhead <= 53 B",
                "    encaps       40 packets, 3.9 KiB (4000 bytes), last seq 40 (superseded: new traffic uses the newer SA)",
                "    decaps       50 packets, 4.9 KiB (5000 bytes), last seq 50",
                "    recv errors  3: replay 0, ICV failure 0, selector mismatch 3, expired 0",
                "    send errors  0 (refused at the SA's hard limit)",
                "    established  1h 00m ago",
                "    lifetime     rekeyed, in grace period, deleted in 12 s",
            ]
        );
        // The IKEv2 view of the same tunnel is unchanged by the version field.
        assert!(status(&sample_report()).contains("tunnel site-b: ESTABLISHED, initiator\n  addresses"));
    }

    #[test]
    fn ikev1_main_mode_in_progress_and_pairs_outside_the_datapath() {
        let mut r = sample_v1_report();
        let sa = &mut r.tunnels[0].ike_sas[0];
        sa.children[1].inbound = None;
        sa.children[1].outbound = None;
        sa.children[1].expires_in_s = None;
        sa.children[0].expires_in_s = None;
        sa.children[0].rekey_in_s = Some(0);
        // Installed inbound first: not yet the pair traffic goes out on.
        sa.children[0].outbound = None;
        let mut mm = sa.clone();
        mm.state = "MAIN_MODE".into();
        mm.spi_r = "0000000000000000".into();
        mm.proposal = None;
        mm.established_ago_s = None;
        mm.children.clear();
        let mut old = sa.clone();
        old.state = "DELETING".into();
        old.children.clear();
        r.tunnels[0].ike_sas.push(old);
        let out = status(&r);
        for needle in [
            "    encaps       not installed in the datapath",
            "    decaps       not installed in the datapath",
            "    recv errors  -",
            "    send errors  -",
            "    lifetime     rekeyed, in grace period\n",
            "    lifetime     no hard lifetime, rekey due now",
            "  #2 INSTALLED: 10.1.0.0/24 === 10.2.0.0/24",
            "  #1 REKEYED: 10.1.0.0/24 === 10.2.0.0/24",
            "tunnel site-b: IKEv1 ISAKMP SA being deleted, initiator",
            "  Quick Mode SAs: none (a newer ISAKMP SA of this tunnel holds them)",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
        r.tunnels[0].ike_sas = vec![mm];
        let out = status(&r);
        for needle in [
            "tunnel site-b: IKEv1 Main Mode in progress, initiator",
            "  cookies i/r  9f1c2e0a4b3d2c1a (ours) / 0000000000000000",
            "  phase 1      not negotiated yet",
            "  established  not yet, last heard from peer 10s ago",
            "  Quick Mode SAs: none (configured 10.1.0.0/24 === 10.2.0.0/24)",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
        }
        assert!(!out.contains("re-auth") && !out.contains("DPD "), "{out}");
    }

    #[test]
    fn nat_line_tells_detected_from_forced() {
        let mut r = sample_report();
        assert!(status(&r).contains("NAT-T        ESP in UDP (forced by encapsulation = \"udp\")"));
        // A report of an older daemon, without the reason: the NAT flag and the setting.
        r.tunnels[0].ike_sas[0].encap_reason = None;
        r.tunnels[0].encapsulation = "auto".into();
        assert!(status(&r).contains("NAT-T        NAT detected: ESP in UDP"));
        r.tunnels[0].ike_sas[0].nat_detected = false;
        assert!(status(&r).contains("NAT-T        no NAT: raw ESP (IP protocol 50)\n"));
        r.tunnels[0].encapsulation = "raw".into();
        assert!(status(&r).contains("NAT-T        no NAT: raw ESP (IP protocol 50, encapsulation = \"raw\")"));
    }

    #[test]
    fn nat_line_says_why_esp_goes_in_udp() {
        let mut r = sample_report();
        r.tunnels[0].encapsulation = "auto".into();
        let sa = &mut r.tunnels[0].ike_sas[0];
        (sa.nat_detected, sa.encap_reason) = (false, Some("vpngw_peer".into()));
        let out = status(&r);
        assert!(out.contains("NAT-T        ESP in UDP (peer is vpngw: faster than raw ESP here; encapsulation = \"raw\" keeps IP protocol 50)"), "{out}");
        let sa = &mut r.tunnels[0].ike_sas[0];
        (sa.nat_detected, sa.encap_reason) = (true, Some("nat".into()));
        assert!(status(&r).contains("NAT-T        NAT detected: ESP in UDP\n"));
        r.tunnels[0].encapsulation = "udp".into();
        r.tunnels[0].ike_sas[0].encap_reason = Some("forced".into());
        assert!(status(&r).contains("NAT-T        ESP in UDP (forced by encapsulation = \"udp\")"));
        // The JSON carries the reason, and leaves it out for raw ESP.
        let json = serde_json::to_string(&r.tunnels[0].ike_sas[0]).expect("json");
        assert!(json.contains("\"encap_reason\":\"forced\""), "{json}");
        r.tunnels[0].ike_sas[0].encap_reason = None;
        let json = serde_json::to_string(&r.tunnels[0].ike_sas[0]).expect("json");
        assert!(!json.contains("encap_reason"), "{json}");
    }
}

/// One `vpnctl watch` line: UTC time to the millisecond, the tunnel (`-` for the
/// gateway itself), the kind, and the message.
pub fn event(e: &WatchEvent) -> String {
    let kind = serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    format!("{} {} {kind}: {}\n", utc(e.unix_ms), e.tunnel.as_deref().unwrap_or("-"), e.message)
}

/// `2026-12-05T13:43:05.123Z` from milliseconds since the Unix epoch (proleptic
/// Gregorian calendar, days to civil date after H. Hinnant's published algorithm).
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod event_tests {
    use super::*;
    use crate::control::proto::EventKind;

    #[test]
    fn a_tunnel_shows_its_rekeys_and_dead_peers_once_there_are_any() {
        let mut r = crate::status::tests::sample_report();
        assert!(!status(&r).contains("since start"), "nothing to say yet");
        r.tunnels[0].counters =
            crate::control::proto::TunnelCounters { ike_up: 2, ike_rekeys: 1, child_rekeys: 4, dpd_failures: 1 };
        let text = status(&r);
        assert!(text.contains("\n  since start: 1 IKE rekeys, 4 CHILD rekeys, 1 dead peers detected\n"), "{text}");
    }

    #[test]
    fn utc_times_and_event_lines() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(1_796_478_185_123), "2026-12-05T13:43:05.123Z");
        let mut e = WatchEvent::new(
            1_796_478_185_123,
            EventKind::IkeDown,
            Some("site-b"),
            "IKE SA down: deleted by peer".into(),
        );
        assert_eq!(event(&e), "2026-12-05T13:43:05.123Z site-b ike_down: IKE SA down: deleted by peer\n");
        e.tunnel = None;
        e.kind = EventKind::Lost;
        e.message = "3 event(s) lost: this client read too slowly".into();
        assert_eq!(event(&e), "2026-12-05T13:43:05.123Z - lost: 3 event(s) lost: this client read too slowly\n");
    }
}
