//! Active/standby groups (`standby_for`, `failback`): a primary tunnel and the tunnels
//! that stand by for it, each to its own peer, all protecting the same subnets (the
//! pattern of a cloud VPN connection with two tunnels to two endpoints).
//!
//! Checked here, once every tunnel is known: `standby_for` names another tunnel of the
//! file that is itself a primary (no chains: the preference order is the primary, then
//! its standbys in file order), and the standby protects exactly the primary's
//! `local_subnets` and `remote_subnets` (as sets); `failback` only on a standby.

use crate::raw::RawTunnel;
use crate::validate::Ctx;
use crate::{ConfigError, TunnelConfig};
use ipsec_types::TrafficSelector;
use std::ops::Range;
use toml::Spanned;

/// Where a tunnel's group keys are in the file (for errors).
#[derive(Debug, Default)]
pub(crate) struct Spans {
    standby_for: Option<Range<usize>>,
    failback: Option<Range<usize>>,
}

impl Spans {
    pub(crate) fn of(t: &RawTunnel) -> Self {
        Self {
            standby_for: t.standby_for.as_ref().map(Spanned::span),
            failback: t.failback.as_ref().map(Spanned::span),
        }
    }
}

/// Whether `a` and `b` belong to one active/standby group.
pub(crate) fn same_group(a: &TunnelConfig, b: &TunnelConfig) -> bool {
    let primary = |t: &TunnelConfig| t.standby_for.clone().unwrap_or_else(|| t.name.clone());
    (a.standby_for.is_some() || b.standby_for.is_some()) && primary(a) == primary(b)
}

fn sorted(ts: &[TrafficSelector]) -> Vec<String> {
    let mut v: Vec<String> = ts.iter().map(ToString::to_string).collect();
    v.sort();
    v.dedup();
    v
}

pub(crate) fn check(cx: &Ctx<'_>, tunnels: &[TunnelConfig], spans: &[Spans]) -> Result<(), ConfigError> {
    for (i, (t, sp)) in tunnels.iter().zip(spans).enumerate() {
        let key = |k: &str| format!("tunnel[{i}].{k}");
        let n = Some(t.name.as_str());
        let Some(primary_name) = t.standby_for.as_deref() else {
            if t.failback {
                return Err(cx.err(
                    sp.failback.clone(),
                    key("failback"),
                    n,
                    "failback applies to a standby tunnel: set standby_for to the primary tunnel's name, or remove this key"
                        .into(),
                ));
            }
            continue;
        };
        let err = |message: String| Err(cx.err(sp.standby_for.clone(), key("standby_for"), n, message));
        if primary_name.is_empty() {
            return err("is empty: name the primary tunnel this one stands by for".into());
        }
        if primary_name == t.name {
            return err("a tunnel cannot stand by for itself".into());
        }
        let Some(primary) = tunnels.iter().find(|p| p.name == primary_name) else {
            let names: Vec<&str> = tunnels.iter().filter(|p| p.name != t.name).map(|p| p.name.as_str()).collect();
            return err(format!("no tunnel is named {primary_name:?} (tunnels: {})", names.join(", ")));
        };
        if let Some(further) = &primary.standby_for {
            return err(format!(
                "tunnel {primary_name:?} is itself a standby (for {further:?}): name the primary, {further:?}; \
                 the standbys of one primary take over in file order"
            ));
        }
        for (what, mine, theirs) in [
            ("local_subnets", &t.local_subnets, &primary.local_subnets),
            ("remote_subnets", &t.remote_subnets, &primary.remote_subnets),
        ] {
            let (mine, theirs) = (sorted(mine), sorted(theirs));
            if mine != theirs {
                return err(format!(
                    "a standby protects the same subnets as its primary: this tunnel's {what} are [{}], \
                     tunnel {primary_name:?}'s are [{}]",
                    mine.join(", "),
                    theirs.join(", ")
                ));
            }
        }
    }
    Ok(())
}
