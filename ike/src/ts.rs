//! Traffic selector negotiation (RFC 7296 2.9): what we propose for a CHILD SA, how the
//! responder narrows the initiator's proposal to its configured subnets, and what the
//! initiator accepts as a narrowed answer.
//!
//! A tunnel's `local_ts` x `remote_ts` either travel together in one CHILD SA (the
//! default, as strongSwan does with several subnets in one `children` section) or,
//! with [`PeerConfig::child_sa_per_subnet_pair`], as one CHILD SA per (local, remote)
//! subnet pair of the same address family (what policy-based peers expect). TSi and
//! TSr are independent lists: a CHILD SA covers every TSi entry with every TSr entry.

use crate::api::PeerConfig;
use ipsec_types::TrafficSelector;

/// The selectors of one CHILD SA to propose: ours (TSi when we initiate) and the peer's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Proposal {
    pub(crate) local: Vec<TrafficSelector>,
    pub(crate) remote: Vec<TrafficSelector>,
}

/// The (local, remote) subnet pairs of a tunnel, local-major, same family only.
pub(crate) fn pairs(peer: &PeerConfig) -> Vec<(TrafficSelector, TrafficSelector)> {
    let mut out = Vec::new();
    for l in &peer.local_ts {
        for r in peer.remote_ts.iter().filter(|r| r.is_ipv4() == l.is_ipv4()) {
            out.push((*l, *r));
        }
    }
    out
}

/// What to propose for the CHILD SA `pair` (an index into [`pairs`]) or, for `None`,
/// for the tunnel's first CHILD SA: every subnet (combined mode) or the first pair.
pub(crate) fn proposal(peer: &PeerConfig, pair: Option<usize>) -> Proposal {
    let combined = Proposal { local: peer.local_ts.clone(), remote: peer.remote_ts.clone() };
    if !peer.child_sa_per_subnet_pair {
        return combined;
    }
    match pairs(peer).get(pair.unwrap_or(0)) {
        Some((l, r)) => Proposal { local: vec![*l], remote: vec![*r] },
        None => combined,
    }
}

/// At most this many selectors come out of [`narrow`] (a narrower answer is still a
/// valid one, RFC 7296 2.9), so that a TS payload with thousands of entries costs its
/// length times our configured subnets, not the square of it.
pub(crate) const MAX_NARROWED: usize = 64;

/// Intersects what the initiator proposed with our configuration (RFC 7296 2.9),
/// dropping results contained in another result. Empty: nothing in common
/// (TS_UNACCEPTABLE).
///
/// The work is bounded by the product of both list lengths (a TS payload's entries are
/// limited by the message size, ours by the configuration) plus [`MAX_NARROWED`]
/// squared.
pub(crate) fn narrow(offered: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut all: Vec<TrafficSelector> = Vec::new();
    for o in offered {
        for c in ours {
            if let Some(x) = o.intersect(c) {
                if all.len() < MAX_NARROWED && !all.contains(&x) {
                    all.push(x);
                }
            }
        }
    }
    widest(&all)
}

/// `all` without duplicates and without entries contained in another entry.
fn widest(all: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for (i, x) in all.iter().enumerate() {
        let inside_another = all.iter().enumerate().any(|(j, y)| j != i && y.is_superset_of(x) && y != x);
        if !inside_another && !out.contains(x) {
            out.push(*x);
        }
    }
    out
}

/// The initiator's check of a (possibly narrowed) answer: non-empty, at most
/// [`MAX_NARROWED`] entries (what we would accept as a responder), and every entry within
/// one entry of what we proposed. Returns the selectors to install: the answer without
/// duplicates and without entries contained in another one, so that a responder cannot
/// make our datapath check more selectors than the answer's distinct ranges.
pub(crate) fn accept(got: &[TrafficSelector], proposed: &[TrafficSelector]) -> Option<Vec<TrafficSelector>> {
    let ok = !got.is_empty()
        && got.len() <= MAX_NARROWED
        && got.iter().all(|g| proposed.iter().any(|o| o.is_superset_of(g)));
    ok.then(|| widest(got))
}

/// Whether a CHILD SA with these selectors carries (part of) the pair `(l, r)`.
pub(crate) fn covers(
    local: &[TrafficSelector],
    remote: &[TrafficSelector],
    l: &TrafficSelector,
    r: &TrafficSelector,
) -> bool {
    local.iter().any(|x| x.intersect(l).is_some()) && remote.iter().any(|x| x.intersect(r).is_some())
}

/// Space-separated, for logs.
pub(crate) fn list(ts: &[TrafficSelector]) -> String {
    ts.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        TrafficSelector::parse_cidr(s).unwrap()
    }
    fn tss(l: &[&str]) -> Vec<TrafficSelector> {
        l.iter().map(|s| ts(s)).collect()
    }

    #[test]
    fn initiator_accepts_a_bounded_normalised_answer() {
        let proposed = tss(&["10.1.0.0/16"]);
        let got = tss(&["10.1.1.0/24", "10.1.1.0/24", "10.1.1.128/25", "10.1.2.0/24"]);
        assert_eq!(accept(&got, &proposed), Some(tss(&["10.1.1.0/24", "10.1.2.0/24"])));
        assert_eq!(accept(&tss(&["10.2.0.0/24"]), &proposed), None);
        assert_eq!(accept(&[], &proposed), None);
        let many: Vec<TrafficSelector> = (0..=MAX_NARROWED).map(|i| ts(&format!("10.1.{i}.0/24"))).collect();
        assert_eq!(accept(&many, &proposed), None, "more entries than we would answer with");
        assert_eq!(accept(&many[..MAX_NARROWED], &proposed).map(|v| v.len()), Some(MAX_NARROWED));
    }

    #[test]
    fn responder_narrows_to_its_subset_and_keeps_the_widest_results() {
        // The initiator offers a /16 plus two /24s; we have two /24s, one inside the /16.
        let offered = tss(&["10.1.0.0/16", "10.9.0.0/24", "192.0.2.0/24"]);
        let ours = tss(&["10.1.5.0/24", "10.9.0.0/23"]);
        assert_eq!(narrow(&offered, &ours), tss(&["10.1.5.0/24", "10.9.0.0/24"]));
        // The packet-specific selector a trap sends first is inside the subnet: dropped.
        let mut host = ts("10.1.5.7/32");
        host.protocol = 6;
        host.start_port = 443;
        host.end_port = 443;
        assert_eq!(narrow(&[host, ts("10.1.0.0/16")], &ours), tss(&["10.1.5.0/24"]));
        assert!(narrow(&tss(&["172.16.0.0/12"]), &ours).is_empty());
        assert!(narrow(&tss(&["2001:db8::/32"]), &ours).is_empty());
        // Thousands of distinct host selectors inside our subnet: a bounded answer.
        let many: Vec<TrafficSelector> = (0..4000u32)
            .map(|i| {
                TrafficSelector::from_prefix(std::net::Ipv4Addr::from(0x0a01_0500 | (i % 256)).into(), 32).unwrap()
            })
            .collect();
        let got = narrow(&many, &ours);
        assert_eq!(got.len(), MAX_NARROWED);
        assert!(accept(&got, &ours).is_some());
    }

    #[test]
    fn initiator_accepts_only_subsets_of_its_proposal() {
        let proposed = tss(&["10.1.0.0/24", "10.3.0.0/24"]);
        assert!(accept(&tss(&["10.3.0.0/24"]), &proposed).is_some());
        assert!(accept(&tss(&["10.1.0.128/25", "10.3.0.0/24"]), &proposed).is_some());
        assert!(accept(&tss(&["10.1.0.0/23"]), &proposed).is_none(), "wider than offered");
        assert!(accept(&tss(&["10.1.0.0/24", "10.4.0.0/24"]), &proposed).is_none(), "one entry outside");
        assert!(accept(&[], &proposed).is_none(), "empty");
    }

    #[test]
    fn pairs_are_local_major_and_same_family() {
        let mut peer = crate::testing::peer_config("t", "192.0.2.1", "198.51.100.1", true, true);
        peer.local_ts = tss(&["10.1.0.0/24", "10.3.0.0/24", "fd00:1::/64"]);
        peer.remote_ts = tss(&["10.2.0.0/24", "fd00:2::/64", "10.4.0.0/24"]);
        let p = pairs(&peer);
        let want = [
            ("10.1.0.0/24", "10.2.0.0/24"),
            ("10.1.0.0/24", "10.4.0.0/24"),
            ("10.3.0.0/24", "10.2.0.0/24"),
            ("10.3.0.0/24", "10.4.0.0/24"),
            ("fd00:1::/64", "fd00:2::/64"),
        ];
        assert_eq!(p, want.iter().map(|(l, r)| (ts(l), ts(r))).collect::<Vec<_>>());
        assert_eq!(proposal(&peer, None).local.len(), 3, "combined: everything in one CHILD SA");
        peer.child_sa_per_subnet_pair = true;
        assert_eq!(proposal(&peer, None), Proposal { local: tss(&["10.1.0.0/24"]), remote: tss(&["10.2.0.0/24"]) });
        assert_eq!(proposal(&peer, Some(4)), Proposal { local: tss(&["fd00:1::/64"]), remote: tss(&["fd00:2::/64"]) });
        assert!(covers(&tss(&["10.3.0.0/25"]), &tss(&["10.0.0.0/8"]), &ts("10.3.0.0/24"), &ts("10.4.0.0/24")));
        assert!(!covers(&tss(&["10.1.0.0/24"]), &tss(&["10.2.0.0/24"]), &ts("10.3.0.0/24"), &ts("10.2.0.0/24")));
    }
}
