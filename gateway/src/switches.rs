//! The environment switches of the datapath: the one place that reads `VPNGW_*`
//! variables. Every lever of the datapath is on unless switched off for a
//! measurement; the TUN device opens with one queue unless asked for more.
//!
//! | Variable | Effect (off: set to anything but empty or `0`) |
//! |---|---|
//! | `VPNGW_NO_OFFLOAD` | TUN offloads off (no `IFF_VNET_HDR`/TSO/USO, so no TUN GRO either) |
//! | `VPNGW_NO_TUN_GRO` | no coalescing of TUN writes |
//! | `VPNGW_NO_TUN_UDP_GRO` | no coalescing of UDP datagrams into TUN writes (TCP still) |
//! | `VPNGW_NO_UDP_GSO` | no UDP GSO sends and no UDP GRO receives on UDP 4500 |
//! | `VPNGW_NO_BATCH` | blocking TUN reads, no `sendmmsg`/`recvmmsg` batches, no cross-serving |
//! | `VPNGW_NO_TXQUEUE` | the TUN transmit queue keeps the kernel's default length |
//! | `VPNGW_NO_CROSS_SERVE` | each worker reads only its own source |
//! | `VPNGW_TUN_QUEUES=N` | N TUN queues, one worker each (1 to [`MAX_QUEUES`], default 1; anything unparsable is 1) |
//! | `VPNGW_SPIN_US=N` | a worker that has just sent what it read from TUN keeps polling for the answer (yielding the core between rounds, until any worker delivers something) for up to N microseconds before it sleeps (0 to [`MAX_SPIN_US`], default [`DEFAULT_SPIN_US`]; 0 is off; anything unparsable is the default) |
//!
//! `vpngw` reads them once at start ([`Switches::from_env`]); the datapath and
//! `sys::tun` get the result as plain values.

use crate::sys::tun::{TunOptions, MAX_QUEUES};
use std::ffi::OsString;

/// How long a worker polls for the answer to what it just sent, unless `VPNGW_SPIN_US`
/// says otherwise (microseconds). Measured (docs/performance.md): longer windows did not
/// lower the added round trip measurably on a 2-core machine, but cost more CPU per
/// request; a round trip through the far gateway takes about 100 us there.
pub const DEFAULT_SPIN_US: u32 = 200;

/// The longest spin `VPNGW_SPIN_US` may ask for (microseconds): larger values are this.
pub const MAX_SPIN_US: u32 = 2000;

/// Which of the datapath's levers are on (all, unless switched off: see the module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levers {
    /// Coalesce TCP segments into GSO writes to TUN (needs TUN offloads).
    pub tun_gro: bool,
    /// Coalesce UDP datagrams too (UDP_L4 GSO writes to TUN).
    pub tun_udp_gro: bool,
    /// UDP GSO/GRO on the NAT-T socket.
    pub udp_gso: bool,
    /// Batched TUN reads and mmsg calls.
    pub batch: bool,
    /// A TUN transmit queue of `datapath::TUN_TX_QUEUE` packets instead of the default 500.
    pub txqueue: bool,
    /// Workers serve each other's sources when their own runs dry.
    pub cross_serve: bool,
    /// Microseconds a worker that has just sent what it read from TUN (and delivered
    /// nothing) keeps polling every source before it sleeps; 0: it sleeps at once.
    pub spin_us: u32,
}

impl Default for Levers {
    /// Every lever on.
    fn default() -> Self {
        Self {
            tun_gro: true,
            tun_udp_gro: true,
            udp_gso: true,
            batch: true,
            txqueue: true,
            cross_serve: true,
            spin_us: DEFAULT_SPIN_US,
        }
    }
}

/// Everything the environment decides about the datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Switches {
    /// How the TUN device is opened (`VPNGW_NO_OFFLOAD`, `VPNGW_TUN_QUEUES`).
    pub tun: TunOptions,
    /// The datapath's levers.
    pub levers: Levers,
}

impl Switches {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var_os(k))
    }

    /// From `get`, which answers a variable's value as the environment would.
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Self {
        let off = |k: &str| get(k).is_some_and(|v| !v.is_empty() && v != "0");
        // Not Unicode, not a number: the default, like an unset variable.
        let number = |k: &str| get(k).and_then(|v| v.into_string().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        let queues = number("VPNGW_TUN_QUEUES").map_or(1, |q| usize::try_from(q).unwrap_or(MAX_QUEUES));
        let spin_us = number("VPNGW_SPIN_US")
            .map_or(DEFAULT_SPIN_US, |us| u32::try_from(us.min(MAX_SPIN_US.into())).unwrap_or(MAX_SPIN_US));
        Self {
            tun: TunOptions { offload: !off("VPNGW_NO_OFFLOAD"), queues: usize::clamp(queues, 1, MAX_QUEUES) },
            levers: Levers {
                tun_gro: !off("VPNGW_NO_TUN_GRO"),
                tun_udp_gro: !off("VPNGW_NO_TUN_UDP_GRO"),
                udp_gso: !off("VPNGW_NO_UDP_GSO"),
                batch: !off("VPNGW_NO_BATCH"),
                txqueue: !off("VPNGW_NO_TXQUEUE"),
                cross_serve: !off("VPNGW_NO_CROSS_SERVE"),
                spin_us,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switches(vars: &[(&str, &str)]) -> Switches {
        Switches::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v)))
    }

    #[test]
    fn everything_is_on_with_one_queue_by_default() {
        let s = switches(&[]);
        assert_eq!(s.levers, Levers::default());
        assert_eq!(s.tun, TunOptions { offload: true, queues: 1 });
    }

    #[test]
    fn a_switch_is_off_unless_empty_or_zero() {
        for (value, on) in [("1", false), ("yes", false), ("00", false), ("", true), ("0", true)] {
            let s = switches(&[
                ("VPNGW_NO_OFFLOAD", value),
                ("VPNGW_NO_TUN_GRO", value),
                ("VPNGW_NO_TUN_UDP_GRO", value),
                ("VPNGW_NO_UDP_GSO", value),
                ("VPNGW_NO_BATCH", value),
                ("VPNGW_NO_TXQUEUE", value),
                ("VPNGW_NO_CROSS_SERVE", value),
            ]);
            let all = Levers {
                tun_gro: on,
                tun_udp_gro: on,
                udp_gso: on,
                batch: on,
                txqueue: on,
                cross_serve: on,
                spin_us: DEFAULT_SPIN_US,
            };
            assert_eq!((s.levers, s.tun.offload), (all, on), "value {value:?}");
        }
        // One at a time: each variable turns off its own lever only.
        let s = switches(&[("VPNGW_NO_CROSS_SERVE", "1")]);
        assert_eq!(s.levers, Levers { cross_serve: false, ..Levers::default() });
        let s = switches(&[("VPNGW_NO_TUN_UDP_GRO", "1")]);
        assert_eq!(s.levers, Levers { tun_udp_gro: false, ..Levers::default() });
        assert!(s.tun.offload);
    }

    #[test]
    fn the_spin_is_in_microseconds_clamped_and_junk_is_the_default() {
        assert_eq!(switches(&[]).levers.spin_us, DEFAULT_SPIN_US);
        for (value, us) in [
            ("0", 0),
            ("50", 50),
            (" 300 ", 300),
            ("2000", MAX_SPIN_US),
            ("2001", MAX_SPIN_US),
            ("99999999999999999999", DEFAULT_SPIN_US),
            ("-1", DEFAULT_SPIN_US),
            ("", DEFAULT_SPIN_US),
            ("fast", DEFAULT_SPIN_US),
        ] {
            let s = switches(&[("VPNGW_SPIN_US", value)]);
            assert_eq!(s.levers, Levers { spin_us: us, ..Levers::default() }, "value {value:?}");
        }
    }

    #[test]
    fn tun_queues_are_clamped_and_junk_is_one() {
        for (value, queues) in [("2", 2), (" 3 ", 3), ("8", 8), ("9", MAX_QUEUES), ("0", 1), ("-2", 1), ("two", 1)] {
            assert_eq!(switches(&[("VPNGW_TUN_QUEUES", value)]).tun.queues, queues, "value {value:?}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let s = Switches::from_lookup(|k| (k == "VPNGW_TUN_QUEUES").then(|| OsString::from_vec(vec![b'2', 0xff])));
            assert_eq!(s.tun.queues, 1, "not Unicode: the default");
        }
    }
}
