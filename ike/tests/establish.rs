//! IKE_SA_INIT + IKE_AUTH + first CHILD SA between two in-memory endpoints.

use ike::testing::{peer_config, Pair, Side};
use ike::{Command, Event, Output};
use ipsec_types::{DatapathCommand, Direction, SaParams, Spi};
use std::time::Duration;

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ike=debug").try_init();
}

fn installs(cmds: &[DatapathCommand]) -> (SaParams, SaParams) {
    match cmds {
        [DatapathCommand::InstallInbound(i), DatapathCommand::InstallOutbound(o)] => (i.clone(), o.clone()),
        other => panic!("expected InstallInbound then InstallOutbound, got {other:?}"),
    }
}

/// Both sides installed matching SAs: A's outbound is B's inbound and vice versa.
fn assert_keys_cross_match(p: &Pair) -> (SaParams, SaParams, SaParams, SaParams) {
    let (a_in, a_out) = installs(&p.datapath(Side::A));
    let (b_in, b_out) = installs(&p.datapath(Side::B));
    assert_eq!(a_out.spi, b_in.spi);
    assert_eq!(b_out.spi, a_in.spi);
    assert_eq!(a_out.key.key(), b_in.key.key());
    assert_eq!(a_out.key.salt(), b_in.key.salt());
    assert_eq!(b_out.key.key(), a_in.key.key());
    assert_ne!(a_out.key.key(), a_in.key.key());
    assert_eq!(a_in.direction, Direction::Inbound);
    assert_eq!(a_out.direction, Direction::Outbound);
    assert_eq!(a_in.child, a_out.child);
    (a_in, a_out, b_in, b_out)
}

#[test]
fn handshake_installs_matching_child_sas() {
    init_logs();
    let mut p = Pair::standard();
    assert_eq!(p.a.poll_timeout(), Some(ipsec_types::Timestamp::ZERO));
    p.run();
    let (a_in, a_out, b_in, _) = assert_keys_cross_match(&p);
    assert_eq!(a_in.child.tunnel, "site-b");
    assert_eq!(b_in.child.tunnel, "site-a");
    assert_eq!(a_out.local_ts[0].to_string(), "10.1.0.0/24");
    assert_eq!(a_out.remote_ts[0].to_string(), "10.2.0.0/24");
    assert_eq!(b_in.local_ts[0].to_string(), "10.2.0.0/24");
    assert_eq!(a_in.endpoints.encap, None, "no NAT: raw ESP");
    assert_eq!(a_in.replay_window, 64);
    assert!(!a_in.esn);
    assert_eq!(
        p.events(Side::A),
        vec![
            Event::IkeUp { peer: "site-b".into() },
            Event::ChildUp { peer: "site-b".into(), spi_in: a_in.spi, spi_out: a_out.spi }
        ]
    );
    // The responder installs before its IKE_AUTH response leaves.
    let log = p.log(Side::B);
    let pos = |f: &dyn Fn(&Output) -> bool| log.iter().position(|o| f(o)).unwrap();
    let inbound = pos(&|o| matches!(o, Output::Datapath(DatapathCommand::InstallInbound(_))));
    let last_tx = log.iter().rposition(|o| matches!(o, Output::Transmit(_))).unwrap();
    assert!(inbound < last_tx);
    let st = p.a.status();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].state, "ESTABLISHED");
    assert!(st[0].initiator);
    assert_eq!(st[0].children.len(), 1);
    assert_eq!(st[0].children[0].spi_in, a_in.spi);
    assert!(!st[0].nat_detected);
    let sb = p.b.status();
    assert_eq!((sb[0].spi_i, sb[0].spi_r), (st[0].spi_i, st[0].spi_r));
    assert!(!sb[0].initiator);
    assert_eq!(p.a.poll_timeout(), None, "nothing outstanding");
}
