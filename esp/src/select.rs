//! Outbound SA selection by destination address: an index, rebuilt by the control
//! plane with every outbound change, that cuts each address family's space at every
//! start and end of an active outbound SA's remote selectors. Each resulting interval
//! lists the SAs whose remote selectors cover it, in the table's order (newest first).
//!
//! A packet costs one binary search over the interval starts and a check of the few
//! SAs of its interval (their local selectors, protocol and ports), whatever the number
//! of SAs and tunnels: several CHILD SAs of one tunnel (one per subnet pair) and
//! thousands of tunnels with disjoint subnets are all a lookup away. Nothing here
//! allocates per packet. Overlapping remote selectors (two CHILD SAs with the same
//! remote subnet and different local ones) list every such SA in their interval.
//!
//! Owns: the index and its construction. Does not own: which SAs are active (`table`)
//! or the full selector check (`tunnel`).

use crate::table::Entry;
use ipsec_types::TrafficSelector;
use std::net::IpAddr;

/// The intervals of one address family.
#[derive(Clone, Debug, Default)]
struct Family {
    /// Sorted, distinct interval starts; interval `i` runs up to `starts[i + 1]`.
    starts: Vec<u128>,
    /// Interval `i`'s candidates are `cands[spans[i]..spans[i + 1]]` (one more entry
    /// than `starts`).
    spans: Vec<u32>,
    /// Indexes into the outbound entries, per interval, newest first.
    cands: Vec<u32>,
}

/// Outbound selection index over a table's outbound entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutIndex {
    v4: Family,
    v6: Family,
}

fn addr(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address ranges of one SA's selectors in one family, sorted and merged (protocol
/// and ports ignored: the index only narrows the candidates, `tunnel` checks the rest).
/// Merging bounds what a peer's selectors cost the index: each SA's ranges are
/// disjoint, so each SA is listed at most once per interval, however its selectors
/// overlap one another.
fn merged(v4: bool, ts: &[TrafficSelector]) -> Vec<(u128, u128)> {
    let mut r: Vec<(u128, u128)> =
        ts.iter().filter(|t| t.is_ipv4() == v4).map(|t| (addr(t.start), addr(t.end))).filter(|(s, e)| s <= e).collect();
    r.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(r.len());
    for (s, e) in r {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

impl Family {
    /// The intervals of the family `v4` (true) or IPv6 over `entries`' selectors.
    fn build<'a>(v4: bool, entries: impl Iterator<Item = (u32, &'a [TrafficSelector])>) -> Self {
        let ranges: Vec<(u32, Vec<(u128, u128)>)> = entries.map(|(idx, ts)| (idx, merged(v4, ts))).collect();
        let mut starts: Vec<u128> = Vec::new();
        for (_, rs) in &ranges {
            for &(s, e) in rs {
                starts.push(s);
                // The range ends before the next address (none after the last one).
                if let Some(after) = e.checked_add(1) {
                    starts.push(after);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut per: Vec<Vec<u32>> = vec![Vec::new(); starts.len()];
        for (idx, rs) in &ranges {
            for &(s, e) in rs {
                let first = starts.partition_point(|x| *x < s);
                let last = starts.partition_point(|x| *x <= e);
                for list in per.iter_mut().take(last).skip(first) {
                    list.push(*idx);
                }
            }
        }
        let mut spans = Vec::with_capacity(per.len() + 1);
        let mut cands = Vec::new();
        spans.push(0);
        for list in per {
            cands.extend(list);
            spans.push(u32::try_from(cands.len()).unwrap_or(u32::MAX));
        }
        Self { starts, spans, cands }
    }

    fn candidates(&self, a: u128) -> &[u32] {
        let i = self.starts.partition_point(|x| *x <= a);
        let Some(i) = i.checked_sub(1) else { return &[] };
        let (Some(&lo), Some(&hi)) = (self.spans.get(i), self.spans.get(i + 1)) else { return &[] };
        self.cands.get(lo as usize..hi as usize).unwrap_or(&[])
    }
}

impl OutIndex {
    /// The index of the active entries among `outbound` (table order).
    pub(crate) fn build(outbound: &[Entry]) -> Self {
        let active = outbound
            .iter()
            .enumerate()
            .filter(|(_, e)| e.active)
            .map(|(i, e)| (u32::try_from(i).unwrap_or(u32::MAX), &e.remote_ts[..]));
        Self { v4: Family::build(true, active.clone()), v6: Family::build(false, active) }
    }

    /// The entries (indexes into the outbound list, newest first) whose remote
    /// selectors may contain `dst`.
    pub(crate) fn candidates(&self, dst: IpAddr) -> &[u32] {
        match dst {
            IpAddr::V4(_) => self.v4.candidates(addr(dst)),
            IpAddr::V6(_) => self.v6.candidates(addr(dst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn range(start: u32, end: u32) -> TrafficSelector {
        let mut t = TrafficSelector::parse_cidr("10.2.0.0/16").unwrap();
        t.start = IpAddr::V4(Ipv4Addr::from(start));
        t.end = IpAddr::V4(Ipv4Addr::from(end));
        t
    }

    #[test]
    fn overlapping_selectors_of_one_sa_cost_the_index_one_range() {
        // 64 staggered, overlapping (not nested) ranges per SA, as a peer could answer:
        // each SA is one merged range, so 32 such SAs make at most 64 intervals with at
        // most 32 candidates each, not 64 x 64 x 32.
        let base = u32::from(Ipv4Addr::new(10, 2, 0, 0));
        let sas: Vec<Vec<TrafficSelector>> = (0..32u32)
            .map(|s| (0..64).map(|j| range(base + s * 64 + j, base + 30_000 + s * 64 + j)).collect())
            .collect();
        assert_eq!(merged(true, &sas[0]), vec![(u128::from(base), u128::from(base + 30_000 + 63))]);
        let f = Family::build(true, sas.iter().enumerate().map(|(i, ts)| (i as u32, &ts[..])));
        assert!(f.starts.len() <= 64, "{} intervals", f.starts.len());
        assert!(f.cands.len() <= 32 * 64, "{} candidate entries", f.cands.len());
        // Adjacent ranges merge; disjoint ones and the other family stay apart.
        assert_eq!(merged(true, &[range(10, 19), range(20, 29), range(40, 49)]), vec![(10, 29), (40, 49)]);
        assert!(merged(false, &sas[0]).is_empty());
    }
}
