use super::*;
use std::cell::RefCell;
use std::collections::HashSet;

/// Tunnels `a` (primary), `b` and `c` (standbys of `a`, `b` with `failback`), and `x`
/// in no group.
fn config(failback_b: bool) -> config::Config {
    let tunnel = |name: &str, addr: &str, extra: &str| {
        format!(
            "[[tunnel]]\nname = \"{name}\"\nremote_address = \"{addr}\"\npsk = \"0123456789abcdef0123\"\n\
             local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.2.0.0/24\"]\n{extra}\n"
        )
    };
    let text = format!(
        "[gateway]\nlocal_address = \"192.0.2.1\"\n\n{}{}{}{}",
        tunnel("a", "192.0.2.2", ""),
        tunnel("b", "192.0.2.3", &format!("standby_for = \"a\"\nfailback = {failback_b}")),
        tunnel("c", "192.0.2.4", "standby_for = \"a\""),
        tunnel("x", "192.0.2.5", "").replace("10.2.0.0/24", "10.9.0.0/24"),
    );
    config::parse(&text, std::path::Path::new("/etc/vpngw/t.toml")).expect("valid")
}

/// Which tunnels have an outbound SA.
struct Up(RefCell<HashSet<&'static str>>);

impl Up {
    fn new(up: &[&'static str]) -> Self {
        Self(RefCell::new(up.iter().copied().collect()))
    }
    fn set(&self, up: &[&'static str]) {
        *self.0.borrow_mut() = up.iter().copied().collect();
    }
    fn has(&self) -> impl Fn(&str) -> bool + '_ {
        |t| self.0.borrow().contains(t)
    }
}

fn moves(s: &[Switch]) -> Vec<(&str, &str)> {
    s.iter().map(|s| (s.from.as_str(), s.to.as_str())).collect()
}

fn state(f: &Failover, up: &Up, t: &str) -> String {
    f.status(t, up.has()).map(|s| s.state).unwrap_or_default()
}

#[test]
fn the_primary_carries_the_traffic_once_up_even_if_a_standby_came_up_first() {
    let mut f = Failover::new(&config(false));
    assert_eq!(f.ranks(), HashMap::from([("a".into(), 0), ("b".into(), 1), ("c".into(), 2)]));
    assert!(f.status("x", |_| true).is_none(), "x is in no group");
    let up = Up::new(&[]);
    assert!(f.update(up.has()).is_empty());
    assert_eq!(state(&f, &up, "a"), "down");
    up.set(&["b"]);
    assert_eq!(moves(&f.update(up.has())), [("a", "b")]);
    assert_eq!(f.ranks()["b"], 0);
    // The primary's first appearance takes the traffic although b has no failback.
    up.set(&["a", "b"]);
    assert_eq!(moves(&f.update(up.has())), [("b", "a")]);
    assert_eq!((state(&f, &up, "a").as_str(), state(&f, &up, "b").as_str()), ("active", "standby"));
    assert!(f.update(up.has()).is_empty(), "nothing changes without a change");
}

#[test]
fn a_dead_active_tunnel_hands_over_in_preference_order_and_failback_follows_the_setting() {
    for failback in [false, true] {
        let mut f = Failover::new(&config(failback));
        let up = Up::new(&["a", "b", "c"]);
        assert!(f.update(up.has()).is_empty());
        // a dies: b (earlier than c) takes over.
        up.set(&["b", "c"]);
        let s = f.update(up.has());
        assert_eq!(moves(&s), [("a", "b")]);
        assert!(s[0].why.contains("a is down"), "{}", s[0].why);
        assert_eq!(f.ranks(), HashMap::from([("b".into(), 0), ("a".into(), 1), ("c".into(), 2)]));
        let st = f.status("b", up.has()).unwrap();
        assert_eq!((st.group.as_str(), st.role.as_str(), st.state.as_str()), ("a", "standby", "active"));
        assert_eq!((st.activations, st.failback), (1, failback));
        // a comes back.
        up.set(&["a", "b", "c"]);
        let s = f.update(up.has());
        if failback {
            assert_eq!(moves(&s), [("b", "a")]);
            assert!(s[0].why.contains("failback"), "{}", s[0].why);
        } else {
            assert!(s.is_empty(), "b stays active without failback");
            assert_eq!(state(&f, &up, "a"), "standby");
            // Until b fails.
            up.set(&["a", "c"]);
            assert_eq!(moves(&f.update(up.has())), [("b", "a")]);
        }
    }
}

#[test]
fn a_standby_without_failback_hands_over_to_the_next_when_it_fails_and_nothing_is_up_stays() {
    let mut f = Failover::new(&config(false));
    let up = Up::new(&["a", "b", "c"]);
    f.update(up.has());
    up.set(&["c"]);
    assert_eq!(moves(&f.update(up.has())), [("a", "c")], "b is down too: c");
    // c (no failback) keeps the traffic when b returns.
    up.set(&["b", "c"]);
    assert!(f.update(up.has()).is_empty());
    up.set(&[]);
    assert!(f.update(up.has()).is_empty(), "nobody up: nothing to move to");
    assert_eq!(state(&f, &up, "c"), "down");
}

#[test]
fn a_reload_keeps_the_active_member_and_the_counts() {
    let mut f = Failover::new(&config(false));
    let up = Up::new(&["a", "b"]);
    f.update(up.has());
    up.set(&["b"]);
    f.update(up.has());
    f.reconfigure(&config(true));
    assert_eq!(f.ranks()["b"], 0);
    let st = f.status("b", up.has()).unwrap();
    assert_eq!((st.state.as_str(), st.activations, st.failback), ("active", 1, true));
    // A configuration without the group drops it.
    let text = "[gateway]\nlocal_address = \"192.0.2.1\"\n";
    f.reconfigure(&config::parse(text, std::path::Path::new("/t.toml")).unwrap());
    assert!(f.ranks().is_empty() && f.status("b", up.has()).is_none());
}
