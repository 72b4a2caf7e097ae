//! The control thread: owns the `ike::Endpoint`, is the only writer of the SA table,
//! and answers control-socket requests.
//!
//! Loop: drain `poll_output` (Transmit -> WAN socket, Datapath -> `SaTable::apply` +
//! publish, Event -> log), then wait on the channel until `poll_timeout`, feed what
//! arrives, and call `handle_timeout` when due. Datapath events (volume expiry) are
//! collected from `esp` once a second. On shutdown it sends DELETEs for every IKE SA
//! and keeps running until the endpoint is idle or [`SHUTDOWN_GRACE`] passes.
//!
//! It does no packet I/O of its own beyond IKE transmissions, and no routing or TUN
//! work: the daemon sets those up before and tears them down after [`Driver::run`].

use crate::clock::{until, Clock};
use crate::control::proto::{Reply, Request};
use crate::datapath::{IoCounters, SharedTable};
use crate::status;
use ipsec_types::{DatapathCommand, Timestamp};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

/// How long shutdown waits for DELETE exchanges to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often datapath events are collected from `esp`.
const EVENT_POLL: Duration = Duration::from_secs(1);

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
    /// SIGINT/SIGTERM: the first starts a graceful shutdown, a second ends it at once.
    Shutdown,
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
        if port == self.natt_port {
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
}

impl<C: Clock, T: IkeTransmit> Driver<C, T> {
    /// Runs until shutdown completes (or every sender is gone).
    pub fn run(mut self) -> Exit {
        let mut now = self.clock.now();
        self.endpoint.handle_timeout(now);
        let mut shutdown_deadline: Option<Timestamp> = None;
        let mut exit = Exit::Requested;
        let mut next_event_poll = now + EVENT_POLL;
        loop {
            self.drain();
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
                Ok(ControlMsg::Request { request, reply }) => {
                    // The client may have gone away; nothing to do then.
                    let _ = reply.send(self.answer(now, &request));
                }
                Ok(ControlMsg::Fatal(reason)) => {
                    tracing::error!(%reason, "fatal error: shutting down");
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
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
            }
            if now >= next_event_poll {
                for ev in self.table.load().drain_events() {
                    tracing::debug!(event = ?ev, "datapath event");
                    self.endpoint.handle_datapath_event(now, ev);
                }
                next_event_poll = now + EVENT_POLL;
            }
        }
        self.drain();
        exit
    }

    /// Drains every pending output of the endpoint.
    fn drain(&mut self) {
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
                    let next = self.table.load().apply(&cmd);
                    self.table.store(Arc::new(next));
                }
                ike::Output::Event(ev) => log_event(&ev),
            }
        }
    }

    fn answer(&self, now: Timestamp, request: &Request) -> Reply {
        match request {
            Request::Status => {
                let table = self.table.load();
                let ike = self.endpoint.status();
                let esp = table.stats();
                let global = table.global_drops();
                Reply::Status(status::build(&status::Inputs {
                    now,
                    started: self.started,
                    config: &self.config,
                    ike: &ike,
                    esp: &esp,
                    global: &global,
                    io: self.io.snapshot(),
                }))
            }
        }
    }
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
        DatapathCommand::Remove { spi, direction } => tracing::debug!(%spi, ?direction, "remove SA"),
        DatapathCommand::UpdateEndpoints { spi, direction, endpoints } => {
            tracing::info!(%spi, ?direction, remote = %endpoints.remote, "SA endpoints updated (NAT mapping changed)");
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
