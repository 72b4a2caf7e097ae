//! Tunnel commands (`vpnctl up`, `down`, `rekey`) from request to answer.
//!
//! [`start`] checks a request against the configuration and the current IKE state and
//! picks the `ike::Command`; the control thread applies it and keeps the returned
//! [`Tracker`], feeds it every `ike::Event` ([`Tracker::observe`]) and, after each
//! turn of its loop, the IKE status ([`Tracker::check`]) until the command's effect is
//! seen or its wait runs out. The answer is an [`ActionReport`]. Pure logic: no
//! channels, no clock (the driver passes `now`), so it is tested without threads.

use super::proto::{Action, ActionReport, ErrorCode, ErrorReply, Outcome, Request, TunnelStatus};
use crate::render::duration_ms;
use ipsec_types::{Spi, Timestamp};
use std::time::Duration;

/// One command on its way to an answer.
#[derive(Debug)]
pub struct Tracker {
    tunnel: String,
    action: Action,
    started: Timestamp,
    deadline: Timestamp,
    /// IKE SPIs (initiator, responder) of the tunnel before the command.
    before_ike: Vec<(u64, u64)>,
    /// Inbound SPIs of the tunnel's CHILD SAs before the command.
    before_children: Vec<Spi>,
    events: Vec<String>,
    last_down_reason: Option<String>,
    result: Option<(Outcome, String)>,
}

/// The command to apply and its tracker.
#[derive(Debug)]
pub struct Started {
    /// For `ike::Endpoint::handle_command`.
    pub command: ike::Command,
    /// Feed it events and status until it has an answer.
    pub tracker: Tracker,
}

fn error(code: ErrorCode, message: String) -> ErrorReply {
    ErrorReply { code, message }
}

fn established(sa: &ike::IkeSaStatus) -> bool {
    sa.state == "ESTABLISHED"
}

/// What answers call the SAs: IKEv1 operators know them as the ISAKMP SA and Quick Mode
/// SAs, with cookies for SPIs.
struct Words {
    ike: &'static str,
    child: &'static str,
    ike_spis: &'static str,
    rekeyed_ike: &'static str,
}

fn words(sa: &ike::IkeSaStatus) -> Words {
    match sa.version {
        ike::IkeVersion::V1 => Words {
            ike: "ISAKMP SA",
            child: "Quick Mode SA",
            ike_spis: "cookies",
            rekeyed_ike: "re-authenticated ISAKMP SA",
        },
        ike::IkeVersion::V2 => {
            Words { ike: "IKE SA", child: "CHILD SA", ike_spis: "SPIs", rekeyed_ike: "rekeyed IKE SA" }
        }
    }
}

/// Starts a tunnel command (`Up`, `Down`, `Rekey`; `None` for other requests).
/// `tunnels` are the configured tunnel names, `status` is `ike::Endpoint::status()`.
pub fn start(
    now: Timestamp,
    request: &Request,
    tunnels: &[&str],
    status: &[ike::IkeSaStatus],
) -> Option<Result<Started, ErrorReply>> {
    let (tunnel, action) = match request {
        Request::Status { .. } | Request::Reload | Request::Watch => return None,
        Request::Up { tunnel, .. } => (tunnel, Action::Up),
        Request::Down { tunnel, .. } => (tunnel, Action::Down),
        Request::Rekey { tunnel, ike: false, .. } => (tunnel, Action::RekeyChild),
        Request::Rekey { tunnel, ike: true, .. } => (tunnel, Action::RekeyIke),
    };
    Some(start_action(now, tunnel, action, request.wait(), tunnels, status))
}

/// The error for a tunnel name that is not configured.
pub fn unknown_tunnel(tunnel: &str, tunnels: &[&str]) -> ErrorReply {
    let known = if tunnels.is_empty() { "none".to_string() } else { tunnels.join(", ") };
    error(ErrorCode::UnknownTunnel, format!("no tunnel named {tunnel:?} is configured (tunnels: {known})"))
}

fn start_action(
    now: Timestamp,
    tunnel: &str,
    action: Action,
    wait: Duration,
    tunnels: &[&str],
    status: &[ike::IkeSaStatus],
) -> Result<Started, ErrorReply> {
    if !tunnels.contains(&tunnel) {
        return Err(unknown_tunnel(tunnel, tunnels));
    }
    let mine: Vec<&ike::IkeSaStatus> = status.iter().filter(|s| s.tunnel == tunnel).collect();
    let up = mine.iter().find(|s| established(s) && !s.children.is_empty());
    let peer = tunnel.to_string();
    let mut result = None;
    let command = match action {
        Action::Up => {
            if let Some(sa) = up {
                let w = words(sa);
                let child = sa.children.first().map(|c| format!(", {} in {}", w.child, c.spi_in)).unwrap_or_default();
                result = Some((Outcome::Unchanged, format!("{tunnel} is already up ({} {}{child})", w.ike, sa.state)));
            }
            ike::Command::Initiate { peer }
        }
        Action::Down => {
            if mine.is_empty() {
                result = Some((
                    Outcome::Unchanged,
                    format!("{tunnel} has no IKE SA; it will not be initiated until `vpnctl up {tunnel}`"),
                ));
            }
            ike::Command::Terminate { peer }
        }
        Action::RekeyChild | Action::RekeyIke => {
            let ike = action == Action::RekeyIke;
            let ok = if ike { mine.iter().any(|s| established(s)) } else { up.is_some() };
            if !ok {
                let what = if ike { "established IKE SA" } else { "installed CHILD SA" };
                return Err(error(
                    ErrorCode::NotEstablished,
                    format!("{tunnel} has no {what} to rekey (bring it up with `vpnctl up {tunnel}`)"),
                ));
            }
            ike::Command::Rekey { peer, ike }
        }
    };
    let tracker = Tracker {
        tunnel: tunnel.to_string(),
        action,
        started: now,
        deadline: now + wait,
        before_ike: mine.iter().map(|s| (s.spi_i, s.spi_r)).collect(),
        before_children: mine.iter().flat_map(|s| s.children.iter().map(|c| c.spi_in)).collect(),
        events: Vec::new(),
        last_down_reason: None,
        result,
    };
    Ok(Started { command, tracker })
}

/// One line for an event, with the tunnel it belongs to.
pub fn describe(ev: &ike::Event) -> (&str, String) {
    match ev {
        ike::Event::IkeUp { peer } => (peer, "IKE SA established".into()),
        ike::Event::IkeDown { peer, reason } => (peer, format!("IKE SA down: {reason}")),
        ike::Event::ChildUp { peer, spi_in, spi_out } => {
            (peer, format!("CHILD SA installed: in {spi_in}, out {spi_out}"))
        }
        ike::Event::ChildDown { peer, spi_in } => (peer, format!("CHILD SA removed: in {spi_in}")),
    }
}

impl Tracker {
    /// The tunnel it is about.
    pub fn tunnel(&self) -> &str {
        &self.tunnel
    }

    /// When it answers at the latest.
    pub fn deadline(&self) -> Timestamp {
        self.deadline
    }

    /// Records an event of this tunnel.
    pub fn observe(&mut self, ev: &ike::Event) {
        let (peer, line) = describe(ev);
        if peer != self.tunnel {
            return;
        }
        if let ike::Event::IkeDown { reason, .. } = ev {
            self.last_down_reason = Some(reason.to_string());
        }
        self.events.push(line);
    }

    /// Looks at the IKE state after a turn of the control loop; `Some` once there is
    /// an answer (the effect was seen, it failed, or the deadline passed).
    pub fn check(&mut self, now: Timestamp, status: &[ike::IkeSaStatus]) -> Option<(Outcome, String)> {
        if self.result.is_none() {
            self.result = self.judge(status);
        }
        if self.result.is_none() && now >= self.deadline {
            self.result = Some((Outcome::Pending, self.pending_message(now, status)));
        }
        self.result.clone()
    }

    fn judge(&self, status: &[ike::IkeSaStatus]) -> Option<(Outcome, String)> {
        let t = &self.tunnel;
        let mine: Vec<&ike::IkeSaStatus> = status.iter().filter(|s| s.tunnel == *t).collect();
        let down_reason = || self.last_down_reason.clone().unwrap_or_else(|| "no reason given".into());
        match self.action {
            Action::Up => {
                if let Some(sa) = mine.iter().find(|s| established(s) && !s.children.is_empty()) {
                    let children: Vec<String> =
                        sa.children.iter().map(|c| format!("in {}, out {}", c.spi_in, c.spi_out)).collect();
                    let w = words(sa);
                    return Some((
                        Outcome::Done,
                        format!(
                            "{t} is up: {} {:016x} established, {} {}",
                            w.ike,
                            sa.spi_i,
                            w.child,
                            children.join("; ")
                        ),
                    ));
                }
                self.last_down_reason.as_ref().map(|r| {
                    (Outcome::Failed, format!("{t}: IKE SA failed: {r} (vpngw keeps retrying; see `vpnctl status`)"))
                })
            }
            Action::Down => mine
                .is_empty()
                .then(|| (Outcome::Done, format!("{t} is down: IKE SA deleted; it stays down until `vpnctl up {t}`"))),
            Action::RekeyChild => {
                let new = mine.iter().find_map(|s| {
                    let c =
                        s.children.iter().find(|c| c.state == "INSTALLED" && !self.before_children.contains(&c.spi_in));
                    c.map(|c| (s, c))
                });
                if let Some((sa, c)) = new {
                    let old: Vec<String> = self.before_children.iter().map(ToString::to_string).collect();
                    let pfs = c.dh.map_or_else(|| "no PFS".to_string(), |d| format!("PFS {d}"));
                    return Some((
                        Outcome::Done,
                        format!(
                            "{t}: rekeyed {} {}: new SAs in {}, out {} ({pfs})",
                            words(sa).child,
                            old.join(", "),
                            c.spi_in,
                            c.spi_out
                        ),
                    ));
                }
                mine.is_empty().then(|| {
                    (Outcome::Failed, format!("{t}: the IKE SA went down during the rekey: {}", down_reason()))
                })
            }
            Action::RekeyIke => {
                let new = mine.iter().find(|s| established(s) && !self.before_ike.contains(&(s.spi_i, s.spi_r)));
                if let Some(sa) = new {
                    let old: Vec<String> =
                        self.before_ike.iter().map(|(i, r)| format!("{i:016x}_i {r:016x}_r")).collect();
                    let w = words(sa);
                    return Some((
                        Outcome::Done,
                        format!(
                            "{t}: {} {}: new {} {:016x}_i {:016x}_r",
                            w.rekeyed_ike,
                            old.join(", "),
                            w.ike_spis,
                            sa.spi_i,
                            sa.spi_r
                        ),
                    ));
                }
                mine.is_empty().then(|| {
                    (Outcome::Failed, format!("{t}: the IKE SA went down during the rekey: {}", down_reason()))
                })
            }
        }
    }

    fn pending_message(&self, now: Timestamp, status: &[ike::IkeSaStatus]) -> String {
        let t = &self.tunnel;
        let waited = duration_ms(now.saturating_since(self.started));
        let state = status.iter().find(|s| s.tunnel == *t).map_or("no IKE SA", |s| s.state);
        match self.action {
            Action::Up => format!("{t}: initiation started, not up after {waited} ({state}); vpngw keeps trying"),
            Action::Down => {
                format!("{t}: DELETE sent, not confirmed by the peer after {waited} ({state}); vpngw removes it anyway")
            }
            Action::RekeyChild => {
                let old: Vec<String> = self.before_children.iter().map(ToString::to_string).collect();
                format!("{t}: rekey of CHILD SA {} started, no new CHILD SA after {waited}", old.join(", "))
            }
            Action::RekeyIke => {
                let old: Vec<String> = self.before_ike.iter().map(|(i, _)| format!("{i:016x}")).collect();
                format!("{t}: rekey of IKE SA {} started, no new IKE SA after {waited}", old.join(", "))
            }
        }
    }

    /// The answer, once [`Tracker::check`] returned `Some` (or now, as `Pending`, if
    /// the daemon has to answer early, e.g. on shutdown).
    pub fn report(self, now: Timestamp, tunnel_status: Option<TunnelStatus>) -> ActionReport {
        let (outcome, message) = self.result.clone().unwrap_or_else(|| {
            (Outcome::Pending, format!("{}: vpngw is shutting down before the command completed", self.tunnel))
        });
        let elapsed = now.saturating_since(self.started).as_millis();
        ActionReport {
            tunnel: self.tunnel,
            action: self.action,
            outcome,
            message,
            events: self.events,
            elapsed_ms: u64::try_from(elapsed).unwrap_or(u64::MAX),
            tunnel_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::{sample_ike, sample_v1_ike};

    const TUNNELS: &[&str] = &["site-b", "site-c"];

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    fn begin(request: Request, status: &[ike::IkeSaStatus]) -> Result<Started, ErrorReply> {
        start(t(100), &request, TUNNELS, status).expect("a tunnel command")
    }

    fn rekey(ike: bool) -> Request {
        Request::Rekey { tunnel: "site-b".into(), ike, wait_ms: 5000 }
    }

    #[test]
    fn picks_the_command_for_that_tunnel_only() {
        let s = sample_ike();
        assert!(start(t(1), &Request::Status { tunnel: None }, TUNNELS, &s).is_none());
        let up = begin(Request::Up { tunnel: "site-c".into(), wait_ms: 0 }, &s).unwrap();
        assert!(matches!(up.command, ike::Command::Initiate { ref peer } if peer == "site-c"));
        let down = begin(Request::Down { tunnel: "site-b".into(), wait_ms: 0 }, &s).unwrap();
        assert!(matches!(down.command, ike::Command::Terminate { ref peer } if peer == "site-b"));
        let r = begin(rekey(true), &s).unwrap();
        assert!(matches!(r.command, ike::Command::Rekey { ref peer, ike: true } if peer == "site-b"));
        let r = begin(rekey(false), &s).unwrap();
        assert!(matches!(r.command, ike::Command::Rekey { ike: false, .. }));
    }

    #[test]
    fn unknown_tunnel_and_rekey_of_a_down_tunnel_are_errors() {
        let s = sample_ike();
        let e = begin(Request::Up { tunnel: "site-x".into(), wait_ms: 0 }, &s).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownTunnel);
        assert_eq!(e.message, "no tunnel named \"site-x\" is configured (tunnels: site-b, site-c)");
        let e = begin(Request::Rekey { tunnel: "site-c".into(), ike: false, wait_ms: 0 }, &s).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotEstablished);
        assert!(e.message.contains("vpnctl up site-c"), "{}", e.message);
        let mut connecting = sample_ike();
        connecting[0].state = "CONNECTING";
        let e = begin(rekey(true), &connecting).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotEstablished);
    }

    #[test]
    fn up_and_down_that_change_nothing_answer_at_once() {
        let s = sample_ike();
        let mut up = begin(Request::Up { tunnel: "site-b".into(), wait_ms: 5000 }, &s).unwrap().tracker;
        let (o, m) = up.check(t(100), &s).unwrap();
        assert_eq!(o, Outcome::Unchanged);
        assert_eq!(m, "site-b is already up (IKE SA ESTABLISHED, CHILD SA in c7cceebf)");
        let mut down = begin(Request::Down { tunnel: "site-c".into(), wait_ms: 5000 }, &s).unwrap().tracker;
        assert_eq!(down.check(t(100), &s).unwrap().0, Outcome::Unchanged);
    }

    #[test]
    fn up_waits_for_the_child_sa_or_reports_failure_or_pending() {
        let mut up = begin(Request::Up { tunnel: "site-b".into(), wait_ms: 5000 }, &[]).unwrap().tracker;
        let mut connecting = sample_ike();
        connecting[0].state = "CONNECTING";
        connecting[0].children.clear();
        assert_eq!(up.check(t(101), &connecting), None);
        up.observe(&ike::Event::IkeUp { peer: "site-c".into() });
        up.observe(&ike::Event::IkeUp { peer: "site-b".into() });
        let (o, m) = up.check(t(102), &sample_ike()).unwrap();
        assert_eq!(o, Outcome::Done);
        assert_eq!(m, "site-b is up: IKE SA 9f1c2e0a4b3d2c1a established, CHILD SA in c7cceebf, out e2b83fd5");
        let report = up.report(t(102), None);
        assert_eq!(report.events, ["IKE SA established"], "events of other tunnels are left out");
        assert_eq!(report.elapsed_ms, 2000);

        let mut up = begin(Request::Up { tunnel: "site-b".into(), wait_ms: 5000 }, &[]).unwrap().tracker;
        up.observe(&ike::Event::IkeDown { peer: "site-b".into(), reason: ike::DownReason::AuthRefused(24) });
        let (o, m) = up.check(t(101), &[]).unwrap();
        assert_eq!(o, Outcome::Failed);
        assert!(m.contains("AUTHENTICATION_FAILED"), "{m}");

        let mut up = begin(Request::Up { tunnel: "site-b".into(), wait_ms: 5000 }, &[]).unwrap().tracker;
        assert_eq!(up.deadline(), t(105));
        assert_eq!(up.check(t(104), &connecting), None);
        let (o, m) = up.check(t(105), &connecting).unwrap();
        assert_eq!(o, Outcome::Pending);
        assert_eq!(m, "site-b: initiation started, not up after 5.0 s (CONNECTING); vpngw keeps trying");
    }

    #[test]
    fn child_rekey_is_done_when_a_new_child_sa_is_installed() {
        let s = sample_ike();
        let mut r = begin(rekey(false), &s).unwrap().tracker;
        let mut rekeying = sample_ike();
        rekeying[0].children[0].state = "REKEYING";
        assert_eq!(r.check(t(101), &rekeying), None);
        let mut new = sample_ike();
        let mut c = new[0].children[0].clone();
        c.spi_in = Spi(0x1a2b_3c4d);
        c.spi_out = Spi(0x5e6f_7a8b);
        c.dh = Some(ipsec_types::DhGroup::Curve25519);
        new[0].children[0].state = "REKEYED";
        new[0].children.push(c);
        let (o, m) = r.check(t(101), &new).unwrap();
        assert_eq!(o, Outcome::Done);
        assert_eq!(m, "site-b: rekeyed CHILD SA c7cceebf: new SAs in 1a2b3c4d, out 5e6f7a8b (PFS CURVE_25519)");
    }

    #[test]
    fn ike_rekey_is_done_when_an_sa_with_new_spis_is_established() {
        let s = sample_ike();
        let mut r = begin(rekey(true), &s).unwrap().tracker;
        assert_eq!(r.check(t(101), &s), None);
        let mut both = sample_ike();
        let mut new = both[0].clone();
        new.spi_i = 0x1111;
        new.spi_r = 0x2222;
        both[0].state = "REKEYED";
        both.push(new);
        let (o, m) = r.check(t(101), &both).unwrap();
        assert_eq!(o, Outcome::Done);
        assert_eq!(
            m,
            "site-b: rekeyed IKE SA 9f1c2e0a4b3d2c1a_i 0123456789abcdef_r: new SPIs 0000000000001111_i 0000000000002222_r"
        );
    }

    #[test]
    fn ikev1_answers_name_the_isakmp_sa_and_quick_mode_sas() {
        let s = sample_v1_ike();
        let mut up = begin(Request::Up { tunnel: "site-b".into(), wait_ms: 5000 }, &s).unwrap().tracker;
        let (o, m) = up.check(t(100), &s).unwrap();
        assert_eq!(o, Outcome::Unchanged);
        assert_eq!(m, "site-b is already up (ISAKMP SA ESTABLISHED, Quick Mode SA in e2b83fd5)");

        let mut up = begin(Request::Up { tunnel: "site-b".into(), wait_ms: 5000 }, &[]).unwrap().tracker;
        let mut one = sample_v1_ike();
        one[0].children.truncate(1);
        let (o, m) = up.check(t(101), &one).unwrap();
        assert_eq!(o, Outcome::Done);
        assert_eq!(m, "site-b is up: ISAKMP SA 9f1c2e0a4b3d2c1a established, Quick Mode SA in e2b83fd5, out c7cceebf");

        // Quick Mode rekey: a new installed pair; the one it replaces stays as REKEYED.
        let mut r = begin(rekey(false), &one).unwrap().tracker;
        assert_eq!(r.check(t(101), &one), None);
        let mut new = one.clone();
        let mut c = new[0].children[0].clone();
        c.spi_in = Spi(0x1a2b_3c4d);
        c.spi_out = Spi(0x5e6f_7a8b);
        new[0].children[0].state = "REKEYED";
        new[0].children.insert(0, c);
        let (o, m) = r.check(t(102), &new).unwrap();
        assert_eq!(o, Outcome::Done);
        assert_eq!(m, "site-b: rekeyed Quick Mode SA e2b83fd5: new SAs in 1a2b3c4d, out 5e6f7a8b (PFS MODP_1024)");

        // `rekey --ike`: a new Main Mode, new cookies.
        let mut r = begin(rekey(true), &one).unwrap().tracker;
        let mut both = one.clone();
        let mut fresh = both[0].clone();
        (fresh.spi_i, fresh.spi_r) = (0x1111, 0x2222);
        both[0].state = "DELETING";
        both.push(fresh);
        let (o, m) = r.check(t(102), &both).unwrap();
        assert_eq!(o, Outcome::Done);
        assert_eq!(
            m,
            "site-b: re-authenticated ISAKMP SA 9f1c2e0a4b3d2c1a_i 0123456789abcdef_r: \
             new cookies 0000000000001111_i 0000000000002222_r"
        );
    }

    #[test]
    fn rekey_fails_when_the_tunnel_goes_down_and_pends_when_nothing_happens() {
        let s = sample_ike();
        let mut r = begin(rekey(false), &s).unwrap().tracker;
        r.observe(&ike::Event::IkeDown { peer: "site-b".into(), reason: ike::DownReason::DeletedByPeer });
        let (o, m) = r.check(t(101), &[]).unwrap();
        assert_eq!(o, Outcome::Failed);
        assert_eq!(m, "site-b: the IKE SA went down during the rekey: deleted by peer");

        let mut r = begin(rekey(false), &s).unwrap().tracker;
        let (o, m) = r.check(t(106), &s).unwrap();
        assert_eq!(o, Outcome::Pending);
        assert_eq!(m, "site-b: rekey of CHILD SA c7cceebf started, no new CHILD SA after 6.0 s");
        // An answer forced early (shutdown) is pending.
        let r = begin(rekey(true), &s).unwrap().tracker;
        assert_eq!(r.report(t(100), None).outcome, Outcome::Pending);
    }
}
