//! The control thread: owns the `ike::Endpoint`, is the only writer of the SA table,
//! and answers control-socket requests.
//!
//! Loop: drain `poll_output` (Transmit -> WAN socket, Datapath -> `SaTable::apply` +
//! publish, Event -> log), then wait on the channel until `poll_timeout`, feed what
//! arrives, and call `handle_timeout` when due. Datapath events (volume expiry) are
//! collected from `esp` every [`EVENT_POLL`]. Tunnel commands from `vpnctl` (`up`,
//! `down`, `rekey`) become `ike::Command`s; their answers wait (in
//! `control::action::Tracker`s) until the effect shows in the IKE state or events. On
//! shutdown it sends DELETEs for every IKE SA and keeps running until the endpoint is
//! idle or [`SHUTDOWN_GRACE`] passes.
//!
//! `vpnctl reload` and SIGHUP ([`ControlMsg::Reload`]) read the configuration again
//! through [`crate::reload::Reloader`], which also changes the routes; the daemon sets
//! up the TUN device, sockets and first routes before [`Driver::run`], and the routes go
//! when the driver (which owns them from then on) is dropped.
//!
//! State changes (`ike` events, with rekeys and dead peers told apart by
//! `watch::Observer`) go to the `vpnctl watch` clients through bounded queues that never
//! block this thread, and are counted per tunnel for the status and the metrics.

use crate::clock::{until, Clock};
use crate::control::action::{self, Tracker};
use crate::control::proto::{ErrorCode, ErrorReply, EventKind, Reply, Request, WatchEvent, WatchInfo};
use crate::datapath::{IoCounters, SharedTable};
use crate::failover::Failover;
use crate::status;
use crate::watch::{self, Observer, Subscriber, Subscribers};
use ipsec_types::{DatapathCommand, Timestamp};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

/// How long shutdown waits for DELETE exchanges to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often datapath events (volume limits reached) are collected from `esp`. Short,
/// since a hard limit makes the datapath refuse the SA until `ike` replaces it;
/// collecting is one uncontended lock when nothing happened.
pub const EVENT_POLL: Duration = Duration::from_millis(100);

/// How often inbound ESP counters are checked so that ESP from the peer counts as
/// liveness (dead peer detection then needs no INFORMATIONAL while traffic flows).
pub const ACTIVITY_POLL: Duration = Duration::from_secs(1);

/// Inbound packet counts seen at the last activity poll, per SPI.
#[derive(Default)]
struct EspActivity {
    seen: std::collections::HashMap<ipsec_types::Spi, u64>,
}

impl EspActivity {
    /// Tells `endpoint` about every inbound SA whose packet count grew since last time.
    fn poll(&mut self, now: Timestamp, table: &esp::SaTable, endpoint: &mut ike::Endpoint) {
        let mut current = std::collections::HashMap::with_capacity(self.seen.len());
        for sa in table.stats() {
            if sa.direction != ipsec_types::Direction::Inbound {
                continue;
            }
            if sa.counters.packets > self.seen.get(&sa.spi).copied().unwrap_or(0) {
                endpoint.handle_esp_activity(now, sa.spi);
            }
            current.insert(sa.spi, sa.counters.packets);
        }
        self.seen = current;
    }
}

/// A tunnel command waiting for its effect, and where its answer goes.
struct PendingAction {
    tracker: Tracker,
    reply: Sender<Reply>,
}

/// Capacity of the control thread's queue. Readers drop (and count) IKE datagrams
/// beyond it rather than buffer without bound under a flood.
pub const QUEUE_CAPACITY: usize = 1024;

/// The 4-byte non-ESP marker preceding IKE on the NAT-T port (RFC 3948 section 2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What the control thread receives.
#[derive(Debug)]
pub enum ControlMsg {
    /// An IKE datagram (non-ESP marker already stripped).
    Datagram {
        /// Our address and port it arrived on.
        local: SocketAddr,
        /// The sender.
        remote: SocketAddr,
        /// The IKE message.
        data: Vec<u8>,
    },
    /// A control-socket request and where to send the answer.
    Request {
        /// The request.
        request: Request,
        /// The answer goes here.
        reply: Sender<Reply>,
    },
    /// `vpnctl watch`: queue state changes for this client from now on; the answer
    /// (`Reply::Watching`, or an error) goes to `reply`.
    Watch {
        /// The control thread's end of the client's queue.
        subscriber: Subscriber,
        /// The answer goes here.
        reply: Sender<Reply>,
    },
    /// SIGINT/SIGTERM: the first starts a graceful shutdown, a second ends it at once.
    Shutdown,
    /// SIGHUP: read the configuration file again (as `vpnctl reload`; the outcome is logged).
    Reload,
    /// A part of the daemon failed beyond repair: shut down gracefully, then exit with
    /// an error.
    Fatal(String),
}

/// How [`Driver::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Shutdown was requested.
    Requested,
    /// A [`ControlMsg::Fatal`] arrived (or every sender vanished).
    Failed(String),
}

/// Sends IKE messages.
pub trait IkeTransmit {
    /// Sends one message.
    fn transmit(&self, t: &ike::Transmit) -> io::Result<()>;
}

/// The WAN UDP sockets as an [`IkeTransmit`].
pub struct WanSockets {
    /// Bound to the IKE port.
    pub ike: Arc<UdpSocket>,
    /// Bound to the NAT-T port.
    pub natt: Arc<UdpSocket>,
    /// The NAT-T port number.
    pub natt_port: u16,
    /// The IKE port number.
    pub ike_port: u16,
}

impl IkeTransmit for WanSockets {
    fn transmit(&self, t: &ike::Transmit) -> io::Result<()> {
        let port = t.local.port();
        if port == self.natt_port && t.data == ike::NAT_KEEPALIVE {
            // A NAT-keepalive (RFC 3948 2.3) is the one octet alone, without the marker.
            self.natt.send_to(&t.data, t.remote).map(drop)
        } else if port == self.natt_port {
            let mut buf = Vec::with_capacity(NON_ESP_MARKER.len() + t.data.len());
            buf.extend_from_slice(&NON_ESP_MARKER);
            buf.extend_from_slice(&t.data);
            self.natt.send_to(&buf, t.remote).map(drop)
        } else if port == self.ike_port {
            self.ike.send_to(&t.data, t.remote).map(drop)
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no socket bound to port {port}")))
        }
    }
}

/// The control thread's state.
pub struct Driver<C: Clock, T: IkeTransmit> {
    /// The IKE endpoint.
    pub endpoint: ike::Endpoint,
    /// The SA table (only this thread stores into it).
    pub table: SharedTable,
    /// IKE output.
    pub tx: T,
    /// The clock.
    pub clock: Arc<C>,
    /// Input.
    pub rx: Receiver<ControlMsg>,
    /// The configuration (for status).
    pub config: Arc<config::Config>,
    /// When the daemon started.
    pub started: Timestamp,
    /// The gateway's I/O error counters.
    pub io: Arc<IoCounters>,
    /// Reads the configuration file again on `vpnctl reload` and SIGHUP (`None`: refused).
    pub reload: Option<crate::reload::Reloader>,
}

impl<C: Clock, T: IkeTransmit> Driver<C, T> {
    /// Runs until shutdown completes (or every sender is gone).
    pub fn run(mut self) -> Exit {
        let mut now = self.clock.now();
        self.endpoint.handle_timeout(now);
        let mut shutdown_deadline: Option<Timestamp> = None;
        let mut exit = Exit::Requested;
        let mut next_event_poll = now + EVENT_POLL;
        let mut next_activity_poll = now + ACTIVITY_POLL;
        let mut activity = EspActivity::default();
        let mut pending: Vec<PendingAction> = Vec::new();
        // Tunnels stopped with `vpnctl down` (until `vpnctl up`), for the status.
        let mut stopped: Vec<String> = Vec::new();
        let mut observer = Observer::default();
        let mut watchers = Subscribers::default();
        let mut errors: Vec<String> = Vec::new();
        let mut failover = Failover::new(&self.config);
        self.publish_ranks(&failover);
        loop {
            let events = self.drain(&mut errors);
            if !events.is_empty() || !errors.is_empty() {
                self.tell(&mut observer, &mut watchers, &events, &mut errors);
            }
            self.fail_over(&mut failover, &mut watchers);
            self.settle(now, &mut pending, &events, &stopped, &observer, &failover);
            if let Some(deadline) = shutdown_deadline {
                if self.endpoint.is_idle() {
                    tracing::info!("all IKE SAs closed");
                    break;
                }
                if now >= deadline {
                    tracing::warn!(
                        open = self.endpoint.status().len(),
                        "shutdown: peers did not confirm DELETE within {SHUTDOWN_GRACE:?}, exiting anyway"
                    );
                    break;
                }
            }
            let mut wake = next_event_poll;
            for p in &pending {
                wake = wake.min(p.tracker.deadline());
            }
            if let Some(t) = self.endpoint.poll_timeout() {
                wake = wake.min(t);
            }
            if let Some(d) = shutdown_deadline {
                wake = wake.min(d);
            }
            let wait = until(now, wake);
            let msg = if wait.is_zero() {
                self.rx.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                self.rx.recv_timeout(wait)
            };
            now = self.clock.now();
            match msg {
                Ok(ControlMsg::Datagram { local, remote, data }) => {
                    self.endpoint.handle_datagram(now, local, remote, &data);
                }
                Ok(ControlMsg::Request { request: Request::Reload, reply }) => {
                    let answer = if shutdown_deadline.is_some() {
                        shutting_down()
                    } else {
                        self.reload(now, "vpnctl", &mut stopped, &mut observer, &mut watchers, &mut failover)
                    };
                    drop(reply.send(answer));
                }
                Ok(ControlMsg::Reload) => {
                    if shutdown_deadline.is_none() {
                        self.reload(now, "SIGHUP", &mut stopped, &mut observer, &mut watchers, &mut failover);
                    }
                }
                Ok(ControlMsg::Request { request, reply }) => {
                    let started = match &request {
                        Request::Status { .. } => None,
                        _ => {
                            let tunnels: Vec<&str> = self.config.tunnels.iter().map(|t| t.name.as_str()).collect();
                            action::start(now, &request, &tunnels, &self.endpoint.status())
                        }
                    };
                    match started {
                        // The client may have gone away; nothing to do then.
                        None => drop(reply.send(self.answer(now, &request, &stopped, &observer, &failover))),
                        Some(Err(e)) => drop(reply.send(Reply::Error(e))),
                        Some(Ok(_)) if shutdown_deadline.is_some() => drop(reply.send(shutting_down())),
                        Some(Ok(started)) => {
                            let tunnel = started.tracker.tunnel().to_string();
                            match &started.command {
                                ike::Command::Terminate { .. } if !stopped.contains(&tunnel) => stopped.push(tunnel),
                                ike::Command::Initiate { .. } => stopped.retain(|t| *t != tunnel),
                                _ => {}
                            }
                            tracing::info!(command = ?started.command, "tunnel command from vpnctl");
                            self.endpoint.handle_command(now, started.command);
                            pending.push(PendingAction { tracker: started.tracker, reply });
                        }
                    }
                }
                Ok(ControlMsg::Watch { subscriber, reply }) => {
                    let answer = match watchers.add(subscriber) {
                        Ok(()) => Reply::Watching(WatchInfo { queue: watch::QUEUE }),
                        Err(_) => Reply::Error(ErrorReply {
                            code: ErrorCode::Unavailable,
                            message: format!("{} clients are watching already", watch::MAX_WATCHERS),
                        }),
                    };
                    drop(reply.send(answer));
                }
                Ok(ControlMsg::Fatal(reason)) => {
                    tracing::error!(%reason, "fatal error: shutting down");
                    errors.push(format!("fatal error, shutting down: {reason}"));
                    if shutdown_deadline.is_none() {
                        self.endpoint.handle_command(now, ike::Command::TerminateAll);
                        shutdown_deadline = Some(now + SHUTDOWN_GRACE);
                    }
                    exit = Exit::Failed(reason);
                }
                Ok(ControlMsg::Shutdown) => {
                    if shutdown_deadline.is_some() {
                        tracing::warn!("second shutdown signal: exiting without waiting for DELETE confirmations");
                        break;
                    }
                    tracing::info!(tunnels = self.endpoint.status().len(), "shutting down: deleting IKE SAs");
                    self.endpoint.handle_command(now, ike::Command::TerminateAll);
                    shutdown_deadline = Some(now + SHUTDOWN_GRACE);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    exit = Exit::Failed("control channel closed".into());
                    break;
                }
            }
            // ESP activity first: a liveness check due at the same moment then sees the
            // peer's latest ESP instead of going out on a heard time up to a poll old.
            if now >= next_activity_poll {
                activity.poll(now, &self.table.load(), &mut self.endpoint);
                next_activity_poll = now + ACTIVITY_POLL;
                // An IKEv2 rekey hands over without an event: look for one once a second.
                self.tell(&mut observer, &mut watchers, &[], &mut errors);
            }
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            if now >= next_event_poll {
                for ev in self.table.load().drain_events() {
                    tracing::info!(event = ?ev, "datapath event");
                    self.endpoint.handle_datapath_event(now, ev);
                }
                next_event_poll = now + EVENT_POLL;
            }
        }
        let events = self.drain(&mut errors);
        self.tell(&mut observer, &mut watchers, &events, &mut errors);
        self.settle(now, &mut pending, &events, &stopped, &observer, &failover);
        for p in pending {
            let report = p.tracker.report(now, None);
            let _ = p.reply.send(Reply::Action(report));
        }
        exit
    }

    /// Reads the configuration again and applies it; logs and returns the outcome, and
    /// tells the `watch` clients (a `reload` event if it changed something, an `error`
    /// if it was refused). A tunnel stopped with `vpnctl down` stays stopped if the
    /// reload left it unchanged.
    fn reload(
        &mut self,
        now: Timestamp,
        by: &str,
        stopped: &mut Vec<String>,
        observer: &mut Observer,
        watchers: &mut Subscribers,
        failover: &mut Failover,
    ) -> Reply {
        let Some(reloader) = self.reload.as_mut() else {
            return Reply::Error(ErrorReply {
                code: crate::control::proto::ErrorCode::Unavailable,
                message: "this vpngw cannot reload its configuration".into(),
            });
        };
        tracing::info!(file = %reloader.path.display(), requested_by = by, "reloading the configuration");
        match reloader.reload(now, &mut self.endpoint, &self.config) {
            Ok((config, report)) => {
                for w in &report.warnings {
                    tracing::warn!("config {}: {w}", report.file);
                }
                stopped.retain(|t| report.unchanged.contains(t));
                self.config = Arc::new(config);
                failover.reconfigure(&self.config);
                self.publish_ranks(failover);
                tracing::info!(
                    added = ?report.added,
                    removed = ?report.removed,
                    changed = ?report.changed,
                    unchanged = report.unchanged.len(),
                    gateway = ?report.gateway,
                    routes = ?report.routes,
                    "configuration reloaded"
                );
                for t in &report.removed {
                    observer.forget(t);
                }
                if let Some(e) = watch::reload_event(watch::unix_ms(), &report, by) {
                    watchers.publish(&[e]);
                }
                Reply::Reload(report)
            }
            Err(e) => {
                tracing::error!("configuration reload refused, the running configuration stays: {}", e.message);
                let told =
                    format!("configuration reload (by {by}) refused, the running configuration stays: {}", e.message);
                watchers.publish(&[WatchEvent::new(watch::unix_ms(), EventKind::Error, None, told)]);
                Reply::Error(e)
            }
        }
    }

    /// Feeds the pending tunnel commands the latest events and IKE state, and answers
    /// those that are complete (or out of time).
    fn settle(
        &self,
        now: Timestamp,
        pending: &mut Vec<PendingAction>,
        events: &[ike::Event],
        stopped: &[String],
        observer: &Observer,
        failover: &Failover,
    ) {
        if pending.is_empty() {
            return;
        }
        let status = self.endpoint.status();
        let mut i = 0;
        while i < pending.len() {
            let Some(p) = pending.get_mut(i) else { break };
            for ev in events {
                p.tracker.observe(ev);
            }
            if p.tracker.check(now, &status).is_some() {
                let p = pending.swap_remove(i);
                let tunnel = self.tunnel_status(now, p.tracker.tunnel(), stopped, observer, failover);
                let _ = p.reply.send(Reply::Action(p.tracker.report(now, tunnel)));
            } else {
                i += 1;
            }
        }
    }

    /// The status of one tunnel (for answers to tunnel commands).
    fn tunnel_status(
        &self,
        now: Timestamp,
        tunnel: &str,
        stopped: &[String],
        observer: &Observer,
        failover: &Failover,
    ) -> Option<crate::control::proto::TunnelStatus> {
        let request = Request::Status { tunnel: Some(tunnel.to_string()) };
        match self.answer(now, &request, stopped, observer, failover) {
            Reply::Status(mut r) => r.tunnels.pop(),
            _ => None,
        }
    }

    /// Publishes the SA table with the tunnel ranks of the active/standby groups.
    fn publish_ranks(&self, failover: &Failover) {
        let next = self.table.load().with_ranks(failover.ranks());
        self.table.store(Arc::new(next));
    }

    /// Moves the outbound traffic of active/standby groups where the SA table says it
    /// must go (see `failover`), and tells the log and the `watch` clients.
    fn fail_over(&self, failover: &mut Failover, watchers: &mut Subscribers) {
        let switches = {
            let table = self.table.load();
            failover.update(|t| table.has_outbound(t))
        };
        if switches.is_empty() {
            return;
        }
        self.publish_ranks(failover);
        let at = watch::unix_ms();
        let mut told = Vec::with_capacity(switches.len());
        for s in switches {
            tracing::warn!(group = %s.group, from = %s.from, to = %s.to, "failover: traffic moves to tunnel {}: {}", s.to, s.why);
            let message = format!("group {}: traffic moves from {} to {} ({})", s.group, s.from, s.to, s.why);
            told.push(WatchEvent::new(at, EventKind::Failover, Some(&s.to), message));
        }
        watchers.publish(&told);
    }

    /// Reads the latest events against the IKE state (counting rekeys and dead peers)
    /// and queues what they mean, with the `errors` collected since, for the `watch`
    /// clients.
    fn tell(
        &self,
        observer: &mut Observer,
        watchers: &mut Subscribers,
        events: &[ike::Event],
        errors: &mut Vec<String>,
    ) {
        let at = watch::unix_ms();
        let mut told = observer.observe(at, events, &self.endpoint.status());
        told.extend(errors.drain(..).map(|m| WatchEvent::new(at, EventKind::Error, None, m)));
        watchers.publish(&told);
    }

    /// Drains every pending output of the endpoint; returns the events (also logged).
    /// Failures worth an operator's attention are added to `errors`.
    fn drain(&mut self, errors: &mut Vec<String>) -> Vec<ike::Event> {
        let mut events = Vec::new();
        while let Some(out) = self.endpoint.poll_output() {
            match out {
                ike::Output::Transmit(t) => {
                    if let Err(e) = self.tx.transmit(&t) {
                        self.io.wan_send_failed();
                        tracing::debug!(to = %t.remote, error = %e, "IKE send failed");
                    }
                }
                ike::Output::Datapath(cmd) => {
                    log_command(&cmd);
                    // A refused command leaves the published table as it was. `ike`
                    // never asks for one (it keeps inbound SPIs unique), so this is a
                    // bug worth an error line, once per refused command.
                    match self.table.load().apply(&cmd) {
                        Ok(next) => self.table.store(Arc::new(next)),
                        Err(e) => {
                            tracing::error!(error = %e, "datapath command refused");
                            errors.push(format!("datapath command refused: {e}"));
                        }
                    }
                }
                ike::Output::Event(ev) => {
                    log_event(&ev);
                    events.push(ev);
                }
            }
        }
        events
    }

    fn answer(
        &self,
        now: Timestamp,
        request: &Request,
        stopped: &[String],
        observer: &Observer,
        failover: &Failover,
    ) -> Reply {
        let Request::Status { tunnel } = request else {
            return Reply::Error(ErrorReply {
                code: crate::control::proto::ErrorCode::BadRequest,
                message: "not a status request".into(),
            });
        };
        let table = self.table.load();
        let ike = self.endpoint.status();
        let esp = table.stats();
        let global = table.global_drops();
        let mut report = status::build(&status::Inputs {
            now,
            started: self.started,
            config: &self.config,
            ike: &ike,
            half_open: self.endpoint.half_open(),
            ike_drops: self.endpoint.drops(),
            esp: &esp,
            global: &global,
            io: self.io.snapshot(),
            stopped,
        });
        if let Some(name) = tunnel {
            if !report.tunnels.iter().any(|t| t.name == *name) {
                let names: Vec<&str> = self.config.tunnels.iter().map(|t| t.name.as_str()).collect();
                return Reply::Error(action::unknown_tunnel(name, &names));
            }
            report.tunnels.retain(|t| t.name == *name);
        }
        for t in &mut report.tunnels {
            t.counters = observer.counters(&t.name);
            t.failover = failover.status(&t.name, |n| table.has_outbound(n));
        }
        Reply::Status(report)
    }
}

/// The answer to a request that would start something while the daemon shuts down.
fn shutting_down() -> Reply {
    Reply::Error(ErrorReply { code: ErrorCode::Unavailable, message: "vpngw is shutting down".into() })
}

/// Logs a datapath change without key material (`SaParams`' Debug redacts keys, but
/// this summary is shorter and safe by construction).
fn log_command(cmd: &DatapathCommand) {
    match cmd {
        DatapathCommand::InstallInbound(p) | DatapathCommand::InstallOutbound(p) => {
            let encap = p.endpoints.encap.map(|e| format!("udp {}->{}", e.local_port, e.remote_port));
            tracing::debug!(
                tunnel = %p.child.tunnel,
                child = p.child.child_id,
                spi = %p.spi,
                direction = ?p.direction,
                remote = %p.endpoints.remote,
                encap = encap.as_deref().unwrap_or("raw"),
                "install SA"
            );
        }
        DatapathCommand::Remove { tunnel, spi, direction } => tracing::debug!(%tunnel, %spi, ?direction, "remove SA"),
        DatapathCommand::UpdateEndpoints { tunnel, spi, direction, endpoints } => {
            tracing::info!(%tunnel, %spi, ?direction, remote = %endpoints.remote, "SA endpoints updated (NAT mapping changed)");
        }
    }
}

fn log_event(ev: &ike::Event) {
    match ev {
        ike::Event::IkeUp { peer } => tracing::info!(tunnel = %peer, "IKE SA established"),
        ike::Event::IkeDown { peer, reason } => tracing::info!(tunnel = %peer, %reason, "IKE SA down"),
        ike::Event::ChildUp { peer, spi_in, spi_out } => {
            tracing::info!(tunnel = %peer, %spi_in, %spi_out, "CHILD SA installed");
        }
        ike::Event::ChildDown { peer, spi_in } => tracing::info!(tunnel = %peer, %spi_in, "CHILD SA removed"),
    }
}
