//! State changes for `vpnctl watch` and the per-tunnel counters of `vpnctl status` and
//! the metrics: [`Observer`] turns `ike`'s events, read against its status snapshot,
//! into [`WatchEvent`]s; [`Subscribers`] hands them to the `watch` connections without
//! ever blocking the control thread.
//!
//! `ike` reports an IKE SA established by IKE_AUTH (or Main Mode) and every CHILD SA
//! installed or removed; a rekey is seen here, against the status: a CHILD SA that comes
//! up while another one of the tunnel has the same traffic selectors replaces it, and an
//! IKE SA that is established without an `IkeUp` (IKEv2 rekeys hand over silently) is
//! the rekey of the tunnel's older one. An IKEv1 Main Mode that completes while the
//! tunnel holds another ISAKMP SA re-authenticates it, the IKEv1 form of an IKE rekey.
//! The control thread calls [`Observer::observe`] after every batch of `ike` output
//! that carried events and once a second (an IKEv2 rekey emits none; two IKE rekeys of
//! one tunnel within that second would count as one, at rekey times of hours).

use crate::control::proto::{EventKind, ReloadReport, TunnelCounters, WatchEvent};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Events held for one `watch` client at most.
pub const QUEUE: usize = 256;
/// `watch` clients at once (each holds one of the control socket's connections).
pub const MAX_WATCHERS: usize = 8;

/// An IKE SA as the observer remembers it: tunnel, SPIs, version.
type IkeKey = (String, u64, u64);

/// Derives watch events and counters from `ike`'s events and status.
#[derive(Debug, Default)]
pub struct Observer {
    counters: HashMap<String, TunnelCounters>,
    /// The established IKE SAs seen at the last look.
    established: HashSet<IkeKey>,
}

impl Observer {
    /// The counters of `tunnel` (zero if nothing happened to it yet).
    pub fn counters(&self, tunnel: &str) -> TunnelCounters {
        self.counters.get(tunnel).cloned().unwrap_or_default()
    }

    /// Reads one batch of events against the status taken after it; returns what a
    /// `watch` client sees, in order.
    pub fn observe(&mut self, unix_ms: u64, events: &[ike::Event], status: &[ike::IkeSaStatus]) -> Vec<WatchEvent> {
        let mut out = Vec::new();
        let now_established: HashSet<IkeKey> =
            status.iter().filter(|s| s.state == "ESTABLISHED").map(|s| (s.tunnel.clone(), s.spi_i, s.spi_r)).collect();
        // IKE SAs new since the last look, and which of them an `IkeUp` announced.
        let mut fresh: Vec<&ike::IkeSaStatus> = status
            .iter()
            .filter(|s| s.state == "ESTABLISHED" && !self.established.contains(&(s.tunnel.clone(), s.spi_i, s.spi_r)))
            .collect();
        for ev in events {
            match ev {
                ike::Event::IkeUp { peer } => {
                    let pos = fresh.iter().position(|s| s.tunnel == *peer);
                    let sa = pos.map(|i| fresh.remove(i));
                    let older = sa.and_then(|sa| self.older_sa(sa));
                    let c = self.counters.entry(peer.clone()).or_default();
                    let mut e = match (sa, older) {
                        // IKEv1 re-authentication: a new Main Mode beside the old ISAKMP SA.
                        (Some(sa), Some(old)) if sa.version == ike::IkeVersion::V1 => {
                            c.ike_rekeys += 1;
                            WatchEvent::new(
                                unix_ms,
                                EventKind::IkeRekeyed,
                                Some(peer),
                                format!("ISAKMP SA re-authenticated: {old} replaced by {}", spis(sa)),
                            )
                        }
                        _ => {
                            c.ike_up += 1;
                            let what = if sa.is_some_and(|s| s.version == ike::IkeVersion::V1) {
                                "ISAKMP SA established"
                            } else {
                                "IKE SA established"
                            };
                            let msg = sa.map_or_else(|| what.to_string(), |s| format!("{what}: {}", spis(s)));
                            WatchEvent::new(unix_ms, EventKind::IkeUp, Some(peer), msg)
                        }
                    };
                    if let Some(sa) = sa {
                        e.ike_spis = Some(spis(sa));
                        e.ike_version = Some(sa.version.number());
                    }
                    out.push(e);
                }
                ike::Event::IkeDown { peer, reason } => {
                    if *reason == ike::DownReason::DeadPeer {
                        self.counters.entry(peer.clone()).or_default().dpd_failures += 1;
                        out.push(WatchEvent::new(
                            unix_ms,
                            EventKind::DpdFailed,
                            Some(peer),
                            "dead peer detection: liveness checks went unanswered".into(),
                        ));
                    }
                    let mut e =
                        WatchEvent::new(unix_ms, EventKind::IkeDown, Some(peer), format!("IKE SA down: {reason}"));
                    e.reason = Some(reason.to_string());
                    out.push(e);
                }
                ike::Event::ChildUp { peer, spi_in, spi_out } => {
                    let replaced = replaced_child(status, peer, *spi_in);
                    let mut e = match replaced {
                        Some(old) => {
                            self.counters.entry(peer.clone()).or_default().child_rekeys += 1;
                            let mut e = WatchEvent::new(
                                unix_ms,
                                EventKind::ChildRekeyed,
                                Some(peer),
                                format!("CHILD SA rekeyed: {old} replaced by in {spi_in}, out {spi_out}"),
                            );
                            e.old_spi_in = Some(old.to_string());
                            e
                        }
                        None => WatchEvent::new(
                            unix_ms,
                            EventKind::ChildUp,
                            Some(peer),
                            format!("CHILD SA installed: in {spi_in}, out {spi_out}"),
                        ),
                    };
                    e.spi_in = Some(spi_in.to_string());
                    e.spi_out = Some(spi_out.to_string());
                    out.push(e);
                }
                ike::Event::ChildDown { peer, spi_in } => {
                    let mut e = WatchEvent::new(
                        unix_ms,
                        EventKind::ChildDown,
                        Some(peer),
                        format!("CHILD SA removed: in {spi_in}"),
                    );
                    e.spi_in = Some(spi_in.to_string());
                    out.push(e);
                }
            }
        }
        // Established without an `IkeUp`: an IKEv2 rekey took over from an older SA.
        for sa in fresh {
            let Some(old) = self.older_sa(sa) else { continue };
            self.counters.entry(sa.tunnel.clone()).or_default().ike_rekeys += 1;
            let mut e = WatchEvent::new(
                unix_ms,
                EventKind::IkeRekeyed,
                Some(&sa.tunnel),
                format!("IKE SA rekeyed: {old} replaced by {}", spis(sa)),
            );
            e.ike_spis = Some(spis(sa));
            e.ike_version = Some(sa.version.number());
            out.push(e);
        }
        self.established = now_established;
        out
    }

    /// Forgets a tunnel a reload removed: its counters (a tunnel of that name added
    /// later starts from zero) and its IKE SAs (their `ike_down` events still follow).
    pub fn forget(&mut self, tunnel: &str) {
        self.counters.remove(tunnel);
        self.established.retain(|(t, _, _)| t != tunnel);
    }

    /// Another IKE SA of `sa`'s tunnel that was established at the last look (it may be
    /// gone since: the rekey's initiator deletes it at once): the one `sa` replaces.
    fn older_sa(&self, sa: &ike::IkeSaStatus) -> Option<String> {
        self.established
            .iter()
            .find(|(t, i, r)| *t == sa.tunnel && (*i, *r) != (sa.spi_i, sa.spi_r))
            .map(|(_, i, r)| format!("{i:016x}_i {r:016x}_r"))
    }
}

/// The `reload` event of a reload that changed something (`None` if it changed
/// nothing): which tunnels were added, removed or changed, the `[gateway]` keys now in
/// force and the routes; `by` says who asked (`vpnctl`, `SIGHUP`).
pub fn reload_event(unix_ms: u64, report: &ReloadReport, by: &str) -> Option<WatchEvent> {
    let lists = [
        ("added", &report.added),
        ("removed", &report.removed),
        ("changed", &report.changed),
        ("gateway", &report.gateway),
        ("routes", &report.routes),
    ];
    let parts: Vec<String> =
        lists.iter().filter(|(_, v)| !v.is_empty()).map(|(what, v)| format!("{what} {}", v.join(" "))).collect();
    if parts.is_empty() {
        return None;
    }
    let message = format!("configuration reloaded from {} (by {by}): {}", report.file, parts.join("; "));
    let mut e = WatchEvent::new(unix_ms, EventKind::Reload, None, message);
    e.added.clone_from(&report.added);
    e.removed.clone_from(&report.removed);
    e.changed.clone_from(&report.changed);
    Some(e)
}

/// `<spi_i>_i <spi_r>_r`, as `vpnctl` writes an IKE SA.
fn spis(sa: &ike::IkeSaStatus) -> String {
    format!("{:016x}_i {:016x}_r", sa.spi_i, sa.spi_r)
}

/// The inbound SPI of another CHILD SA of `tunnel` with the same traffic selectors as
/// the one with inbound SPI `spi_in` (which that one replaces), if any.
fn replaced_child(status: &[ike::IkeSaStatus], tunnel: &str, spi_in: ipsec_types::Spi) -> Option<ipsec_types::Spi> {
    let children = || status.iter().filter(|s| s.tunnel == tunnel).flat_map(|s| &s.children);
    let new = children().find(|c| c.spi_in == spi_in)?;
    children()
        .find(|c| c.spi_in != spi_in && c.local_ts == new.local_ts && c.remote_ts == new.remote_ts)
        .map(|c| c.spi_in)
}

/// The control thread's end of one `watch` client: its queue, and how many events it
/// lost since it was last told.
#[derive(Debug)]
pub struct Subscriber {
    events: SyncSender<WatchEvent>,
    lost: Arc<AtomicU64>,
}

/// The connection's end of a `watch` client.
#[derive(Debug)]
pub struct Watcher {
    /// The events, in order.
    pub events: Receiver<WatchEvent>,
    /// Events dropped because the queue was full; the connection reports and resets it.
    pub lost: Arc<AtomicU64>,
}

/// A new client's two ends, with a queue of `capacity` events.
pub fn channel(capacity: usize) -> (Subscriber, Watcher) {
    let (tx, rx) = mpsc::sync_channel(capacity);
    let lost = Arc::new(AtomicU64::new(0));
    (Subscriber { events: tx, lost: Arc::clone(&lost) }, Watcher { events: rx, lost })
}

impl Subscriber {
    /// Whether the connection has ended (its [`Watcher`] is gone).
    fn gone(&self) -> bool {
        Arc::strong_count(&self.lost) == 1
    }
}

/// The `watch` clients of the control thread.
#[derive(Debug, Default)]
pub struct Subscribers {
    list: Vec<Subscriber>,
}

impl Subscribers {
    /// Adds a client, unless [`MAX_WATCHERS`] are watching already.
    pub fn add(&mut self, s: Subscriber) -> Result<(), Subscriber> {
        // Count only clients still connected.
        self.list.retain(|s| !s.gone());
        if self.list.len() >= MAX_WATCHERS {
            return Err(s);
        }
        self.list.push(s);
        Ok(())
    }

    /// How many clients are watching.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether nobody is watching.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Queues `events` for every client without waiting: a full queue counts the event
    /// as lost for that client, a closed one removes it.
    pub fn publish(&mut self, events: &[WatchEvent]) {
        if events.is_empty() {
            return;
        }
        self.list.retain(|s| {
            for e in events {
                match s.events.try_send(e.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        s.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
    }
}

/// Milliseconds since the Unix epoch, for event time stamps (0 if the clock is before
/// 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::{sample_ike, sample_v1_ike};
    use ipsec_types::Spi;

    fn kinds(v: &[WatchEvent]) -> Vec<EventKind> {
        v.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn up_child_rekey_and_dpd_are_told_apart_and_counted() {
        let mut o = Observer::default();
        let s = sample_ike();
        let evs = [
            ike::Event::IkeUp { peer: "site-b".into() },
            ike::Event::ChildUp { peer: "site-b".into(), spi_in: Spi(0xc7cc_eebf), spi_out: Spi(0xe2b8_3fd5) },
        ];
        let out = o.observe(1, &evs, &s);
        assert_eq!(kinds(&out), [EventKind::IkeUp, EventKind::ChildUp]);
        assert_eq!(out[0].message, "IKE SA established: 9f1c2e0a4b3d2c1a_i 0123456789abcdef_r");
        assert_eq!((out[0].ike_version, out[1].spi_in.as_deref()), (Some(2), Some("c7cceebf")));
        // A second CHILD SA with the same selectors replaces the first.
        let mut s2 = s.clone();
        let mut c = s2[0].children[0].clone();
        c.spi_in = Spi(0x1a2b_3c4d);
        c.spi_out = Spi(0x5e6f_7a8b);
        s2[0].children.push(c);
        let ev = ike::Event::ChildUp { peer: "site-b".into(), spi_in: Spi(0x1a2b_3c4d), spi_out: Spi(0x5e6f_7a8b) };
        let out = o.observe(2, &[ev], &s2);
        assert_eq!(kinds(&out), [EventKind::ChildRekeyed]);
        assert_eq!(out[0].old_spi_in.as_deref(), Some("c7cceebf"));
        assert_eq!(out[0].message, "CHILD SA rekeyed: c7cceebf replaced by in 1a2b3c4d, out 5e6f7a8b");
        // One with other selectors (another subnet pair) is a new CHILD SA.
        let mut s3 = s2.clone();
        let mut c = s3[0].children[0].clone();
        c.spi_in = Spi(0x0bad_cafe);
        c.remote_ts = vec![ipsec_types::TrafficSelector::parse_cidr("10.3.0.0/24").unwrap()];
        s3[0].children.push(c);
        let ev = ike::Event::ChildUp { peer: "site-b".into(), spi_in: Spi(0x0bad_cafe), spi_out: Spi(1) };
        assert_eq!(kinds(&o.observe(3, &[ev], &s3)), [EventKind::ChildUp]);
        // A dead peer: a DPD event, then the tunnel down with its reason.
        let ev = ike::Event::IkeDown { peer: "site-b".into(), reason: ike::DownReason::DeadPeer };
        let out = o.observe(4, &[ev], &[]);
        assert_eq!(kinds(&out), [EventKind::DpdFailed, EventKind::IkeDown]);
        assert_eq!(out[1].reason.as_deref(), Some("dead peer detected"));
        let c = o.counters("site-b");
        assert_eq!((c.ike_up, c.ike_rekeys, c.child_rekeys, c.dpd_failures), (1, 0, 1, 1));
        assert_eq!(o.counters("site-c"), TunnelCounters::default());
    }

    #[test]
    fn a_silent_new_ike_sa_beside_the_old_one_is_an_ike_rekey() {
        let mut o = Observer::default();
        let s = sample_ike();
        o.observe(1, &[ike::Event::IkeUp { peer: "site-b".into() }], &s);
        // Nothing changed: nothing to tell.
        assert!(o.observe(2, &[], &s).is_empty());
        let mut both = s.clone();
        let mut new = both[0].clone();
        (new.spi_i, new.spi_r) = (0x1111, 0x2222);
        both[0].state = "REKEYED";
        both.push(new);
        let out = o.observe(3, &[], &both);
        assert_eq!(kinds(&out), [EventKind::IkeRekeyed]);
        assert_eq!(
            out[0].message,
            "IKE SA rekeyed: 9f1c2e0a4b3d2c1a_i 0123456789abcdef_r replaced by 0000000000001111_i 0000000000002222_r"
        );
        assert!(o.observe(4, &[], &both).is_empty(), "told once");
        assert_eq!(o.counters("site-b").ike_rekeys, 1);
        // The first IKE SA of a tunnel after the daemon saw none is not a rekey, even
        // without an event (e.g. a status taken before the event was drained).
        let mut fresh = Observer::default();
        assert!(fresh.observe(1, &[], &s).is_empty());
    }

    #[test]
    fn an_ikev1_main_mode_beside_the_old_isakmp_sa_is_a_re_authentication() {
        let mut o = Observer::default();
        let s = sample_v1_ike();
        let out = o.observe(1, &[ike::Event::IkeUp { peer: "site-b".into() }], &s);
        assert_eq!(out[0].message, "ISAKMP SA established: 9f1c2e0a4b3d2c1a_i 0123456789abcdef_r");
        let mut both = s.clone();
        let mut new = both[0].clone();
        (new.spi_i, new.spi_r) = (0x1111, 0x2222);
        both.push(new);
        let out = o.observe(2, &[ike::Event::IkeUp { peer: "site-b".into() }], &both);
        assert_eq!(kinds(&out), [EventKind::IkeRekeyed]);
        assert!(out[0].message.starts_with("ISAKMP SA re-authenticated: 9f1c2e0a4b3d2c1a_i"), "{}", out[0].message);
        let c = o.counters("site-b");
        assert_eq!((c.ike_up, c.ike_rekeys), (1, 1));
    }

    #[test]
    fn a_reload_that_changes_something_is_one_event_and_a_removed_tunnel_is_forgotten() {
        let mut report = ReloadReport {
            file: "/etc/vpngw/vpngw.toml".into(),
            unchanged: vec!["site-b".into()],
            ..ReloadReport::default()
        };
        assert_eq!(reload_event(1, &report, "vpnctl"), None, "nothing changed: nothing to tell");
        report.added = vec!["site-c".into()];
        report.removed = vec!["site-d".into(), "site-e".into()];
        report.gateway = vec!["gateway.half_open_max".into()];
        report.routes = vec!["+10.3.0.0/24".into(), "-10.4.0.0/24".into()];
        let e = reload_event(7, &report, "SIGHUP").unwrap();
        assert_eq!((e.kind, e.tunnel.as_deref(), e.unix_ms), (EventKind::Reload, None, 7));
        assert_eq!(
            e.message,
            "configuration reloaded from /etc/vpngw/vpngw.toml (by SIGHUP): added site-c; removed site-d site-e; \
             gateway gateway.half_open_max; routes +10.3.0.0/24 -10.4.0.0/24"
        );
        assert_eq!((e.added, e.removed, e.changed), (report.added.clone(), report.removed.clone(), vec![]));
        // The JSON form carries the lists; other events do not show empty ones.
        let json = serde_json::to_value(reload_event(7, &report, "vpnctl").unwrap()).unwrap();
        assert_eq!(json["kind"], "reload");
        assert_eq!(json["removed"], serde_json::json!(["site-d", "site-e"]));
        assert!(json.get("changed").is_none());

        let mut o = Observer::default();
        let s = sample_ike();
        o.observe(1, &[ike::Event::IkeUp { peer: "site-b".into() }], &s);
        assert_eq!(o.counters("site-b").ike_up, 1);
        o.forget("site-b");
        assert_eq!(o.counters("site-b"), TunnelCounters::default());
        // Seen again after it was forgotten (removed, then added back): a new IKE SA,
        // not a rekey of the one before.
        let out = o.observe(2, &[ike::Event::IkeUp { peer: "site-b".into() }], &s);
        assert_eq!(kinds(&out), [EventKind::IkeUp]);
    }

    fn subscriber() -> (Subscriber, Watcher) {
        channel(2)
    }

    #[test]
    fn a_slow_subscriber_loses_events_and_a_gone_one_is_dropped() {
        let mut subs = Subscribers::default();
        let (slow, slow_w) = subscriber();
        let (fast, fast_w) = subscriber();
        let (gone, gone_w) = subscriber();
        for s in [slow, fast, gone] {
            subs.add(s).unwrap();
        }
        drop(gone_w);
        let (slow_rx, fast_rx) = (&slow_w.events, &fast_w.events);
        let ev = |i| WatchEvent::new(i, EventKind::Error, None, format!("event {i}"));
        subs.publish(&[ev(1), ev(2)]);
        assert_eq!(subs.len(), 2, "the closed queue is removed");
        assert_eq!(fast_rx.try_recv().unwrap().unix_ms, 1);
        assert_eq!(fast_rx.try_recv().unwrap().unix_ms, 2);
        // The slow one's queue (2) is full: the next three are lost for it, not waited for.
        subs.publish(&[ev(3), ev(4), ev(5)]);
        assert_eq!(slow_w.lost.load(Ordering::Relaxed), 3);
        assert_eq!(slow_rx.try_iter().map(|e| e.unix_ms).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(fast_rx.try_iter().map(|e| e.unix_ms).collect::<Vec<_>>(), [3, 4]);
        // At most MAX_WATCHERS; one that went away makes room without an event.
        let mut keep = Vec::new();
        while subs.len() < MAX_WATCHERS {
            let (s, w) = subscriber();
            subs.add(s).unwrap();
            keep.push(w);
        }
        let (s, _w) = subscriber();
        assert!(subs.add(s).is_err());
        drop(keep.pop());
        let (s, _w2) = subscriber();
        subs.add(s).unwrap();
        assert_eq!(subs.len(), MAX_WATCHERS);
    }
}
