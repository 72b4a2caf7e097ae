//! Fuzz-ish: mutated handshake messages into a responder never panic and never leave
//! more than the one half-open IKE SA a valid IKE_SA_INIT creates.

use ike::testing::{Pair, Side};
use ike::Output;
use proptest::prelude::*;

/// A's IKE_SA_INIT and IKE_AUTH requests of a standard handshake (deterministic RNGs).
fn transcript() -> Vec<Vec<u8>> {
    let mut p = Pair::standard();
    p.run();
    p.transmits(Side::A).into_iter().map(|t| t.data).collect()
}

fn fresh_responder() -> Pair {
    Pair::standard()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_messages_never_panic(which in 0usize..2, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<Option<usize>>()) {
        let msgs = transcript();
        let mut p = fresh_responder();
        let (a, b) = ("192.0.2.1:500".parse().unwrap(), "192.0.2.2:500".parse().unwrap());
        if which == 1 {
            p.b.handle_datagram(p.now, b, a, &msgs[0]);
        }
        let mut m = msgs[which].clone();
        for (i, v) in flips {
            let n = m.len();
            m[i % n] ^= v | 1;
        }
        if let Some(c) = cut {
            m.truncate(c % (m.len() + 1));
        }
        p.b.handle_datagram(p.now, b, a, &m);
        p.b.handle_timeout(p.now + std::time::Duration::from_secs(31));
        p.drain();
        prop_assert!(p.b.status().len() <= 1);
        // Nothing is ever installed from a tampered IKE_AUTH (it cannot authenticate).
        if which == 1 {
            prop_assert!(!p.log_b.iter().any(|o| matches!(o, Output::Datapath(_))));
        }
    }
}
