//! The vpngw daemon and vpnctl: sockets, TUN, routes, clock, signals, control socket.
