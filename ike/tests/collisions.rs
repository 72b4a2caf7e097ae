//! Exchange collisions (RFC 7296 2.8.1, 2.8.2, 2.25) as a table: two in-memory
//! endpoints exchange messages one by one, with deterministic nonces (RNG seeds) and
//! time. Each case asserts the exact install/remove sequence each datapath sees, and
//! that exactly one pair of CHILD SAs (and one IKE SA) survives with matching keys.
//!
//! In the expected sequences `O` is the CHILD SA from before the case, `W` the one that
//! survives, `L` a redundant one. `+in`/`+out` install, `-in`/`-out` remove.

use ike::testing::{peer_config, Pair, Side};
use ike::Command;
use ipsec_types::{DatapathCommand, DatapathEvent, Direction, ExpiryReason, Spi};
use std::collections::HashMap;
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

#[derive(Clone, Copy, Debug)]
enum Step {
    /// The operator rekeys the CHILD SA (false) or the IKE SA (true) on a side.
    Rekey(Side, bool),
    /// The CHILD SA hits its hard volume limit on a side (it sends DELETE).
    HardExpire(Side),
    /// Deliver the oldest datagram towards a side.
    Deliver(Side),
    /// The oldest datagram towards a side is lost.
    Lose(Side),
    /// The oldest datagram towards a side is held back (reordered)...
    Hold(Side),
    /// ... and delivered now.
    Release(Side),
    /// Advance the clock (fires timers, e.g. retransmissions) without delivering.
    Wait(u64),
    /// Deliver everything in order, then let 40 s of grace periods, retries and waits
    /// for redundant SAs pass.
    Settle,
}

use Side::{A, B};
use Step::*;

struct Case {
    name: &'static str,
    seeds: (u64, u64),
    steps: &'static [Step],
    /// Who initiated the surviving IKE SA (`None`: it is the original one).
    ike_winner: Option<Side>,
    /// The datapath commands after the initial two, per side.
    a: &'static [&'static str],
    b: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "both rekey the CHILD SA, B's nonces are the lowest: A's SA survives",
        seeds: (3, 2),
        steps: &[Rekey(A, false), Rekey(B, false), Deliver(B), Deliver(A), Deliver(A), Deliver(B), Settle],
        ike_winner: None,
        a: &["+in L", "+in W", "+out W", "-in L", "-out O", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the CHILD SA, A's nonces are the lowest: B's SA survives",
        seeds: (1, 2),
        steps: &[Rekey(A, false), Rekey(B, false), Deliver(B), Deliver(A), Deliver(A), Deliver(B), Settle],
        ike_winner: None,
        a: &["+in W", "+out W", "-out O", "-in O"],
        b: &["+in L", "+in W", "+out W", "-in L", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the CHILD SA, A gets its response before B's request: TEMPORARY_FAILURE for B",
        seeds: (3, 2),
        steps: &[Rekey(A, false), Rekey(B, false), Deliver(B), Hold(A), Deliver(A), Release(A), Settle],
        ike_winner: None,
        a: &["+in W", "+out W", "-out O", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the CHILD SA, the winner's DELETE overtakes the loser's response",
        seeds: (3, 2),
        steps: &[
            Rekey(A, false),
            Rekey(B, false),
            Deliver(B),
            Deliver(A),
            Deliver(A),
            Hold(B),
            Wait(1000),
            Deliver(B),
            Release(B),
            Settle,
        ],
        ike_winner: None,
        a: &["+in L", "+in W", "+out W", "-out O", "-in L", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the IKE SA, A's survives",
        seeds: (1, 2),
        steps: &[Rekey(A, true), Rekey(B, true), Deliver(B), Deliver(A), Deliver(A), Deliver(B), Settle],
        ike_winner: Some(A),
        a: &[],
        b: &[],
    },
    Case {
        name: "both rekey the IKE SA, B's survives",
        seeds: (3, 2),
        steps: &[Rekey(A, true), Rekey(B, true), Deliver(B), Deliver(A), Deliver(A), Deliver(B), Settle],
        ike_winner: Some(B),
        a: &[],
        b: &[],
    },
    Case {
        name: "both rekey the IKE SA, A gets its response before B's request: TEMPORARY_FAILURE for B",
        seeds: (3, 2),
        steps: &[Rekey(A, true), Rekey(B, true), Deliver(B), Hold(A), Deliver(A), Release(A), Settle],
        ike_winner: Some(A),
        a: &[],
        b: &[],
    },
    Case {
        name: "both rekey the IKE SA, the winner's DELETE of the old IKE SA overtakes the loser's response",
        seeds: (1, 2),
        steps: &[
            Rekey(A, true),
            Rekey(B, true),
            Deliver(B),
            Deliver(A),
            Deliver(A),
            Hold(B),
            Deliver(B),
            Release(B),
            Settle,
        ],
        ike_winner: Some(A),
        a: &[],
        b: &[],
    },
    Case {
        name: "both rekey the IKE SA while B's CHILD SA waits for A's DELETE of its predecessor",
        seeds: (1, 2),
        steps: &[Rekey(A, false), Deliver(B), Deliver(A), Rekey(A, true), Rekey(B, true), Settle],
        ike_winner: Some(A),
        a: &["+in W", "+out W", "-out O", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "A's CHILD rekey crosses B's DELETE of that CHILD SA: A creates a new one",
        seeds: (1, 2),
        steps: &[Rekey(A, false), HardExpire(B), Deliver(B), Deliver(A), Deliver(A), Deliver(B), Settle],
        ike_winner: None,
        a: &["-out O", "-in O", "+in W", "+out W"],
        b: &["-out O", "-in O", "+in W", "+out W"],
    },
    Case {
        name: "A's CHILD rekey crosses B's IKE rekey: both TEMPORARY_FAILURE, both retry later",
        seeds: (1, 2),
        steps: &[Rekey(A, false), Rekey(B, true), Deliver(B), Deliver(A), Deliver(A), Deliver(B), Settle],
        ike_winner: Some(B),
        a: &["+in W", "+out W", "-out O", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the CHILD SA, B's request is lost and retransmitted",
        seeds: (1, 2),
        steps: &[Rekey(A, false), Rekey(B, false), Lose(A), Deliver(B), Deliver(A), Wait(1000), Settle],
        ike_winner: None,
        a: &["+in W", "+out W", "-out O", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the CHILD SA, B's response is lost, A retransmits and gets it from the cache",
        seeds: (3, 2),
        steps: &[
            Rekey(A, false),
            Rekey(B, false),
            Deliver(B),
            Hold(A),
            Lose(A),
            Release(A),
            Deliver(B),
            Wait(1000),
            Settle,
        ],
        ike_winner: None,
        a: &["+in L", "-in L", "+in W", "+out W", "-out O", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the IKE SA, B's request is lost and retransmitted",
        seeds: (3, 2),
        steps: &[Rekey(A, true), Rekey(B, true), Lose(A), Deliver(B), Deliver(A), Wait(1000), Settle],
        ike_winner: Some(A),
        a: &[],
        b: &[],
    },
    Case {
        name: "both rekey the CHILD SA and each gets the other's request while its own is open, answers held back \
               (the interop suite's forced collision)",
        seeds: (3, 2),
        steps: FORCED_CROSSING_CHILD,
        ike_winner: None,
        a: &["+in L", "+in W", "+out W", "-in L", "-out O", "-in O"],
        b: &["+in W", "+out W", "-out O", "-in O"],
    },
    Case {
        name: "the same with A's nonces the lowest",
        seeds: (1, 2),
        steps: FORCED_CROSSING_CHILD,
        ike_winner: None,
        a: &["+in W", "+out W", "-out O", "-in O"],
        b: &["+in L", "+in W", "+out W", "-in L", "-out O", "-in O"],
    },
    Case {
        name: "both rekey the IKE SA and each gets the other's request while its own is open, answers held back",
        seeds: (3, 2),
        steps: FORCED_CROSSING_IKE,
        ike_winner: Some(B),
        a: &[],
        b: &[],
    },
];

/// The collision `interop::hold` forces on real gateways: both requests are lost (held)
/// on the way, B then receives A's retransmission (its own request still open) and its
/// answer is lost; A receives B's next retransmission (its own request still open) and
/// its answer is lost, as is B's cached answer to A's next retransmission; then nothing
/// is held and retransmissions complete both exchanges.
const fn forced_crossing(ike: bool) -> [Step; 14] {
    [
        Rekey(A, ike),
        Rekey(B, ike),
        Lose(B),
        Lose(A),
        Wait(1000),
        Deliver(B),
        Lose(A),
        Lose(A),
        Wait(2000),
        Deliver(A),
        Deliver(B),
        Lose(A),
        Lose(B),
        Settle,
    ]
}
const FORCED_CROSSING_CHILD: &[Step] = &forced_crossing(false);
const FORCED_CROSSING_IKE: &[Step] = &forced_crossing(true);

fn tunnel(side: Side) -> String {
    if side == A {
        "site-b".into()
    } else {
        "site-a".into()
    }
}

fn run_case(c: &Case) -> Pair {
    let mut p = Pair::with_seeds(
        peer_config("site-b", "192.0.2.1", "192.0.2.2", true, true),
        peer_config("site-a", "192.0.2.2", "192.0.2.1", false, false),
        c.seeds.0,
        c.seeds.1,
    );
    p.run();
    let mut held = Vec::new();
    for step in c.steps {
        match *step {
            Hold(side) => held.push((side, p.take_to(side).expect("something to hold"))),
            Release(side) => {
                let i = held.iter().position(|(s, _)| *s == side).expect("held datagram");
                let (_, t) = held.remove(i);
                p.inject(side, &t);
            }
            Rekey(side, ike) => p.command(side, Command::Rekey { peer: tunnel(side), ike }),
            HardExpire(side) => {
                let spi = p.ep(side).status()[0].children[0].spi_in;
                let now = p.now;
                let ev = DatapathEvent::Expired {
                    tunnel: tunnel(side),
                    spi,
                    direction: Direction::Inbound,
                    hard: true,
                    reason: ExpiryReason::Bytes,
                };
                p.ep(side).handle_datapath_event(now, ev);
                p.drain();
            }
            Deliver(side) => assert!(p.deliver_to(side), "{}: nothing to deliver to {side:?}", c.name),
            Lose(side) => assert!(p.take_to(side).is_some(), "{}: nothing to lose towards {side:?}", c.name),
            Wait(ms) => {
                let t = p.now + Duration::from_millis(ms);
                p.tick(t);
            }
            Settle => {
                p.run();
                for _ in 0..40 {
                    p.advance(Duration::from_secs(1));
                }
            }
        }
    }
    p
}

fn cmds(p: &Pair, side: Side) -> Vec<(bool, Direction, Spi)> {
    p.datapath(side)
        .iter()
        .filter_map(|c| match c {
            DatapathCommand::InstallInbound(s) => Some((true, Direction::Inbound, s.spi)),
            DatapathCommand::InstallOutbound(s) => Some((true, Direction::Outbound, s.spi)),
            DatapathCommand::Remove { spi, direction, .. } => Some((false, *direction, *spi)),
            DatapathCommand::UpdateEndpoints { .. } => None,
        })
        .collect()
}

/// Checks the surviving state and returns each side's labelled datapath sequence.
fn outcome(c: &Case, p: &Pair) -> (Vec<String>, Vec<String>) {
    let (sa, sb) = (p.a.status(), p.b.status());
    assert_eq!((sa.len(), sb.len()), (1, 1), "{}: one IKE SA each: {sa:#?} {sb:#?}", c.name);
    assert_eq!((sa[0].spi_i, sa[0].spi_r), (sb[0].spi_i, sb[0].spi_r), "{}", c.name);
    assert_eq!((sa[0].state, sb[0].state), ("ESTABLISHED", "ESTABLISHED"));
    match c.ike_winner {
        None => assert!(sa[0].initiator, "{}: the original IKE SA", c.name),
        Some(w) => {
            assert_eq!(sa[0].initiator, w == A, "{}: IKE SA of {w:?} survives", c.name);
            assert_eq!(sb[0].initiator, w == B, "{}", c.name);
        }
    }
    assert_eq!((sa[0].children.len(), sb[0].children.len()), (1, 1), "{}: one CHILD SA each", c.name);
    let (ca, cb) = (&sa[0].children[0], &sb[0].children[0]);
    assert_eq!((ca.spi_in, ca.spi_out), (cb.spi_out, cb.spi_in), "{}", c.name);
    assert_eq!((ca.state, cb.state), ("INSTALLED", "INSTALLED"), "{}", c.name);
    for side in [A, B] {
        let downs: Vec<_> = p.events(side).into_iter().filter(|e| matches!(e, ike::Event::IkeDown { .. })).collect();
        assert!(downs.is_empty(), "{}: {side:?} reported {downs:?}", c.name);
    }
    let mut labels = Vec::new();
    for (side, (w_in, w_out)) in [(A, (ca.spi_in, ca.spi_out)), (B, (cb.spi_in, cb.spi_out))] {
        let all = cmds(p, side);
        let (o_in, o_out) = (all[0].2, all[1].2);
        let mut live: HashMap<(Direction, Spi), bool> = HashMap::new();
        let mut seq = Vec::new();
        for (install, dir, spi) in &all {
            live.insert((*dir, *spi), *install);
            let name = if *spi == w_in || *spi == w_out {
                "W"
            } else if *spi == o_in || *spi == o_out {
                "O"
            } else {
                "L"
            };
            let d = if *dir == Direction::Inbound { "in" } else { "out" };
            seq.push(format!("{}{d} {name}", if *install { "+" } else { "-" }));
        }
        let alive: Vec<_> = live.iter().filter(|(_, v)| **v).map(|(k, _)| *k).collect();
        assert_eq!(alive.len(), 2, "{}: {side:?} has exactly one pair in the datapath: {seq:?}", c.name);
        assert!(alive.contains(&(Direction::Inbound, w_in)) && alive.contains(&(Direction::Outbound, w_out)));
        // The last outbound install is the survivor: the seal path uses it.
        let last_out = all.iter().rev().find(|(i, d, _)| *i && *d == Direction::Outbound).map(|x| x.2);
        assert_eq!(last_out, Some(w_out), "{}: {side:?} seals with the survivor", c.name);
        labels.push(seq.split_off(2));
    }
    let b = labels.pop().unwrap_or_default();
    let a = labels.pop().unwrap_or_default();
    (a, b)
}

#[test]
fn collision_table() {
    init_logs();
    let mut failures = Vec::new();
    for c in CASES {
        let r = std::panic::catch_unwind(|| {
            let p = run_case(c);
            outcome(c, &p)
        });
        let Ok((a, b)) = r else {
            failures.push(format!("{}: panicked (see above)", c.name));
            continue;
        };
        let (ea, eb): (Vec<String>, Vec<String>) =
            (c.a.iter().map(|s| s.to_string()).collect(), c.b.iter().map(|s| s.to_string()).collect());
        if a != ea || b != eb {
            failures.push(format!("{}:\n  A {a:?}\n  B {b:?}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
