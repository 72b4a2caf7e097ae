//! The control socket: `vpngw` serves it ([`server`]), `vpnctl` talks to it
//! ([`client`]), and both speak [`proto`] (newline-delimited, versioned JSON).
//! [`action`] follows a tunnel command (`up`, `down`, `rekey`) to its answer.

pub mod action;
pub mod client;
pub mod proto;
pub mod server;

/// Where `vpnctl` looks for the socket when neither `--socket` nor `--config` is given.
pub const DEFAULT_SOCKET: &str = "/run/vpngw/vpngw.sock";
