//! Active/standby groups: a primary tunnel and the tunnels that stand by for it
//! (`standby_for`), each to its own peer, all protecting the same subnets. Every member
//! keeps its IKE and CHILD SAs up and accepts ESP; outbound traffic goes through one
//! member at a time, the group's *active* tunnel.
//!
//! The choice reaches the datapath as tunnel ranks in the SA table
//! ([`esp::SaTable::with_ranks`]): the active tunnel ranks 0, the others follow in
//! preference order (the primary, then its standbys in file order). Because a lower rank
//! only wins while it has an SA, the datapath moves to the next member the moment the
//! active tunnel's SAs are removed (its peer declared dead by DPD, a DELETE, a lifetime
//! running out), before this module has even looked; [`Failover::update`] then makes the
//! move official (ranks, status, log, `vpnctl watch` event).
//!
//! Rules, applied after every change of the SA table:
//! - the active tunnel without an outbound SA is replaced by the first member in
//!   preference order that has one (no member up: it stays, shown `down`);
//! - an active standby with `failback = true` hands over to an earlier member as soon as
//!   that one has an outbound SA again (make-before-break: both are up at the switch);
//! - until the primary has been up once (start-up, a tunnel added by a reload), every
//!   member behaves as with `failback`, so whichever peer answers first carries the
//!   traffic and the primary takes it when it comes up.
//!
//! Owns: the groups and their active member. Does not own: the SAs (`ike`, `esp`).

use crate::control::proto::FailoverStatus;
use std::collections::HashMap;

/// The active tunnel of a group changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    /// The group (its primary's name).
    pub group: String,
    /// The tunnel that carried the traffic.
    pub from: String,
    /// The tunnel that carries it now.
    pub to: String,
    /// Why, for the log and `vpnctl watch`.
    pub why: String,
}

#[derive(Debug)]
struct Member {
    name: String,
    failback: bool,
    activations: u64,
}

#[derive(Debug)]
struct Group {
    /// Preference order: the primary first.
    members: Vec<Member>,
    /// Index of the active member.
    active: usize,
    /// The primary has had an outbound SA since the group was set up.
    primary_seen: bool,
}

/// The active/standby groups of the configuration.
#[derive(Debug, Default)]
pub struct Failover {
    groups: Vec<Group>,
}

impl Failover {
    /// The groups of `config`, each with its primary active.
    pub fn new(config: &config::Config) -> Self {
        let mut f = Self::default();
        f.reconfigure(config);
        f
    }

    /// Takes the groups of a reloaded configuration. A group whose active tunnel is
    /// still one of its members keeps it (and the count of activations of every member
    /// that stays); otherwise the primary is active.
    pub fn reconfigure(&mut self, config: &config::Config) {
        let old = std::mem::take(&mut self.groups);
        for members in config.failover_groups() {
            let primary = &members[0].name;
            let before = old.iter().find(|g| g.members[0].name == *primary);
            let members: Vec<Member> = members
                .iter()
                .map(|t| Member {
                    name: t.name.clone(),
                    failback: t.failback,
                    activations: before
                        .and_then(|g| g.members.iter().find(|m| m.name == t.name))
                        .map_or(0, |m| m.activations),
                })
                .collect();
            let active = before
                .and_then(|g| g.members.get(g.active))
                .and_then(|a| members.iter().position(|m| m.name == a.name))
                .unwrap_or(0);
            let primary_seen = before.is_some_and(|g| g.primary_seen);
            self.groups.push(Group { members, active, primary_seen });
        }
    }

    /// The tunnel ranks for the SA table: per group, the active member 0 and the others
    /// 1, 2, ... in preference order. Tunnels in no group are not listed (rank 0).
    pub fn ranks(&self) -> HashMap<String, u32> {
        let mut ranks = HashMap::new();
        for g in &self.groups {
            let others = g.members.iter().enumerate().filter(|(i, _)| *i != g.active).map(|(_, m)| m);
            let order = g.members.get(g.active).into_iter().chain(others);
            for (rank, m) in (0u32..).zip(order) {
                ranks.insert(m.name.clone(), rank);
            }
        }
        ranks
    }

    /// Applies the rules of the module documentation to which tunnels have an outbound
    /// SA (`has_outbound`); returns the switches made (the caller publishes
    /// [`Failover::ranks`] when there are any).
    pub fn update(&mut self, has_outbound: impl Fn(&str) -> bool) -> Vec<Switch> {
        let mut switches = Vec::new();
        for g in &mut self.groups {
            let up: Vec<bool> = g.members.iter().map(|m| has_outbound(&m.name)).collect();
            let cur = g.active;
            let first_up = up.iter().position(|&u| u);
            // The primary's first appearance counts as a failback (see the module doc).
            let failback = g.members[cur].failback || !g.primary_seen;
            g.primary_seen |= up[0];
            let target = if !up[cur] {
                first_up
            } else if failback {
                first_up.filter(|&i| i < cur)
            } else {
                None
            };
            let Some(to) = target.filter(|&t| t != cur) else { continue };
            let (from_name, to_name) = (g.members[cur].name.clone(), g.members[to].name.clone());
            let why = if up[cur] {
                format!("{to_name} is up again and {from_name} has failback = true")
            } else if to < cur {
                format!("{from_name} has no CHILD SA; {to_name} is up")
            } else {
                format!("{from_name} is down (no CHILD SA)")
            };
            g.active = to;
            g.members[to].activations += 1;
            switches.push(Switch { group: g.members[0].name.clone(), from: from_name, to: to_name, why });
        }
        switches
    }

    /// `tunnel`'s place in its group, if it is in one; `up` as for [`Failover::update`].
    pub fn status(&self, tunnel: &str, has_outbound: impl Fn(&str) -> bool) -> Option<FailoverStatus> {
        self.groups.iter().find_map(|g| {
            let (i, m) = g.members.iter().enumerate().find(|(_, m)| m.name == tunnel)?;
            let state = match (has_outbound(tunnel), i == g.active) {
                (false, _) => "down",
                (true, true) => "active",
                (true, false) => "standby",
            };
            Some(FailoverStatus {
                group: g.members[0].name.clone(),
                role: if i == 0 { "primary" } else { "standby" }.into(),
                state: state.into(),
                failback: m.failback,
                activations: m.activations,
            })
        })
    }
}

#[cfg(test)]
mod tests;
