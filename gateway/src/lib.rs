//! The vpngw daemon and vpnctl: sockets, TUN, routes, clock, signals, control socket.
//!
//! `ike` and `esp` are sans-I/O; this crate is where packets, time and signals meet
//! them. [`daemon`] is `vpngw`'s entry point, [`cli`] is `vpnctl`'s. `unsafe` code
//! lives only in [`sys`].
#![deny(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod driver;
pub mod failover;
pub mod ike_config;
pub mod metrics;
pub mod reload;
pub mod render;
pub mod rng;
pub mod status;
pub mod switches;
pub mod sys;
pub mod watch;
