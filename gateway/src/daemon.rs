//! `vpngw`: command line, logging, start-up and shutdown ordering.
//!
//! Start: no core dumps -> load config (errors exit 2; `--check` prints the effective
//! settings and exits here) -> root check -> block SIGINT/SIGTERM/SIGHUP -> TUN (MTU, up)
//! -> WAN sockets -> routes -> control socket -> metrics listener (if `metrics_listen`)
//! -> IKE endpoint -> drop privileges (`sys::privs`: only CAP_NET_ADMIN, CAP_NET_RAW,
//! CAP_NET_BIND_SERVICE, NO_NEW_PRIVS) -> datapath workers -> control loop on the main
//! thread; then `READY=1` to the service manager (`sys::notify`, when `NOTIFY_SOCKET`
//! is set). SIGHUP reloads the configuration (`reload`; routes change with
//! CAP_NET_ADMIN). Shutdown (SIGINT/SIGTERM): `STOPPING=1`, DELETE every IKE SA, wait
//! until idle or 2 s, remove
//! routes (CAP_NET_ADMIN, kept for this) and the control socket; the TUN device goes away
//! with its fd when the process exits. Every resource is an RAII guard, so a start-up
//! failure half way also cleans up what was already set up.

use crate::clock::{BootClock, Clock};
use crate::control::server::ControlSocket;
use crate::datapath::{Datapath, IoCounters, SharedTable};
use crate::driver::{ControlMsg, Driver, Exit, WanSockets, QUEUE_CAPACITY};
use crate::metrics::MetricsServer;
use crate::reload::{wanted_routes, Reloader, SystemHost};
use crate::switches::Switches;
use crate::sys::notify::Notifier;
use crate::sys::privs;
use crate::sys::route::Routes;
use crate::sys::tun::Tun;
use crate::sys::udp::{bind_udp, RawEsp};
use crate::sys::{self, DaemonSignals};
use arc_swap::ArcSwap;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

/// Exit code for configuration and usage errors.
pub const EXIT_CONFIG: u8 = 2;

/// Site-to-site IPsec gateway (IKEv2 and IKEv1 with pre-shared keys, userspace ESP over TUN).
#[derive(Debug, Parser)]
#[command(name = "vpngw", version)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// Log filter when RUST_LOG is not set: error, warn, info, debug, trace, or
    /// directives such as `info,ike=debug`.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Validate the configuration, print the effective settings (defaults filled in,
    /// keys hidden) and exit: 0 when valid, 2 when not (the error on stderr). Does not
    /// need root.
    #[arg(long)]
    pub check: bool,
}

/// `vpngw`'s main.
pub fn main() -> ExitCode {
    let args = Args::parse();
    // Read (and removed from the environment) while this is the only thread.
    let notifier = match Notifier::from_env() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("vpngw: cannot notify the service manager: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = init_logging(args.log_level.as_deref()) {
        eprintln!("vpngw: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    // Before the first key is read (the configuration holds them).
    if let Err(e) = privs::forbid_core_dumps() {
        eprintln!("vpngw: cannot turn off core dumps: {e}");
        return ExitCode::FAILURE;
    }
    let cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vpngw: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("config {}: {w}", args.config.display());
    }
    if args.check {
        print!("{}", check_report(&args.config, &cfg));
        return ExitCode::SUCCESS;
    }
    if !sys::is_root() {
        eprintln!("vpngw: must run as root (it creates a TUN device, binds UDP port 500, opens a raw ESP socket and installs routes)");
        return ExitCode::FAILURE;
    }
    match run(cfg, args.config, Arc::new(notifier)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// What `vpngw --check` prints for a valid configuration: a summary line as a comment,
/// then the effective settings as TOML (see `config::Config::effective_toml`).
pub fn check_report(path: &std::path::Path, cfg: &config::Config) -> String {
    format!(
        "# {}: OK: {} tunnel(s) on {} ({}); effective settings, defaults filled in, keys hidden:\n{}",
        path.display(),
        cfg.tunnels.len(),
        cfg.gateway.local_address,
        cfg.tunnels.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
        cfg.effective_toml()
    )
}

/// Logs to stderr; `RUST_LOG` wins over `--log-level`, default `info`. Colours only on
/// a terminal. When stderr is the journal (systemd sets `JOURNAL_STREAM` to its device
/// and inode), each line starts with its syslog priority (`<3>` error ... `<7>` debug),
/// which journald takes as the entry's priority, and carries no timestamp of its own.
fn init_logging(level: Option<&str>) -> Result<(), String> {
    use tracing_subscriber::fmt::format;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).map_err(|e| format!("invalid RUST_LOG {v:?}: {e}"))?,
        _ => {
            let l = level.unwrap_or("info");
            EnvFilter::try_new(l).map_err(|e| format!("invalid --log-level {l:?}: {e}"))?
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let done = if stderr_is_journal() {
        builder.with_ansi(false).event_format(JournalFormat(format().without_time().with_ansi(false))).try_init()
    } else {
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
    };
    done.map_err(|e| format!("cannot initialize logging: {e}"))
}

/// True when `JOURNAL_STREAM` (`DEVICE:INODE`) names the file stderr is.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let meta = std::io::stderr().as_fd().try_clone_to_owned().and_then(|fd| std::fs::File::from(fd).metadata());
    match (meta, dev.parse::<u64>(), ino.parse::<u64>()) {
        (Ok(m), Ok(dev), Ok(ino)) => m.dev() == dev && m.ino() == ino,
        _ => false,
    }
}

/// The default line format behind a syslog priority prefix (sd-daemon(3)'s `<N>`).
struct JournalFormat<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalFormat<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The syslog priority of a tracing level.
fn syslog_priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// Runs the gateway until shutdown; `path` is the configuration file (read again on reload).
pub fn run(cfg: config::Config, path: PathBuf, notifier: Arc<Notifier>) -> Result<(), String> {
    let clock = Arc::new(BootClock);
    let started = clock.now();
    let g = cfg.gateway.clone();
    // Before any thread exists, so that every thread inherits the blocked mask.
    let signals = DaemonSignals::block().map_err(|e| format!("cannot block signals: {e}"))?;

    // The one read of the environment's datapath switches.
    let switches = Switches::from_env();
    let tun = Tun::create_with(&g.tun_name, switches.tun).map_err(|e| format!("TUN {}: {e}", g.tun_name))?;
    tun.set_mtu(g.tun_mtu).map_err(|e| e.to_string())?;
    let any_ipv6 = cfg.tunnels.iter().flat_map(|t| &t.remote_subnets).any(|s| !s.is_ipv4());
    if let Err(e) = tun.quiet_ipv6(!any_ipv6) {
        tracing::warn!(error = %e, "cannot turn off IPv6 autoconfiguration on the TUN device");
    }
    tun.set_up().map_err(|e| e.to_string())?;
    let tun = Arc::new(tun);
    tracing::info!(dev = tun.name(), mtu = g.tun_mtu, "TUN device up");

    let ike_sock = Arc::new(bind_udp(SocketAddr::new(g.local_address, g.ike_port)).map_err(|e| e.to_string())?);
    let natt_sock = Arc::new(bind_udp(SocketAddr::new(g.local_address, g.natt_port)).map_err(|e| e.to_string())?);
    let raw = match RawEsp::open(g.local_address) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            tracing::warn!(error = %e, "raw ESP unavailable: only UDP-encapsulated ESP will work");
            None
        }
    };
    tracing::info!(address = %g.local_address, ike = g.ike_port, natt = g.natt_port, raw_esp = raw.is_some(), "WAN sockets bound");

    let routes = install_routes(&cfg, tun.name())?;
    let subnets = || cfg.tunnels.iter().flat_map(|t| t.local_subnets.iter().chain(&t.remote_subnets));
    if subnets().any(|s| s.is_ipv4()) && sys::ipv4_forwarding() == Some(false) {
        tracing::warn!("net.ipv4.ip_forward is 0: traffic between the LAN and the tunnel will not be forwarded (sysctl -w net.ipv4.ip_forward=1)");
    }
    if subnets().any(|s| !s.is_ipv4()) && sys::ipv6_forwarding() != Some(true) {
        tracing::warn!("net.ipv6.conf.all.forwarding is not 1: IPv6 traffic between the LAN and the tunnel will not be forwarded (sysctl -w net.ipv6.conf.all.forwarding=1)");
    }

    let control_socket = ControlSocket::bind(&g.control_socket).map_err(|e| e.to_string())?;
    let metrics = g.metrics_listen.map(MetricsServer::bind).transpose().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::sync_channel::<ControlMsg>(QUEUE_CAPACITY);

    let endpoint = ike::Endpoint::new(crate::ike_config::endpoint_config(&cfg), Box::new(crate::rng::SystemRng::new()));

    // Everything that needs more than networking privileges is done; no thread runs yet
    // (capabilities are per thread, the ones started below inherit the reduced sets).
    privs::drop_privileges(&privs::DAEMON_CAPS).map_err(|e| format!("cannot drop privileges: {e}"))?;
    tracing::info!(
        keep = "CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE",
        "privileges dropped (no new privileges, not dumpable, no core file)"
    );
    let table: SharedTable = Arc::new(ArcSwap::from_pointee(esp::SaTable::new()));
    let io = Arc::new(IoCounters::default());
    Datapath {
        table: Arc::clone(&table),
        tun: Arc::clone(&tun),
        ike: Arc::clone(&ike_sock),
        natt: Arc::clone(&natt_sock),
        raw,
        control: tx.clone(),
        clock: Arc::clone(&clock),
        io: Arc::clone(&io),
        levers: switches.levers,
    }
    .spawn()
    .map_err(|e| format!("cannot start datapath threads: {e}"))?;
    spawn_signal_thread(signals, tx.clone(), Arc::clone(&notifier))?;
    if let Some(m) = metrics {
        let addr = m.local_addr().map_err(|e| format!("metrics listener: {e}"))?;
        m.serve(tx.clone()).map_err(|e| format!("cannot serve metrics: {e}"))?;
        tracing::info!(%addr, "metrics endpoint listening (GET /metrics)");
    }
    control_socket.serve(tx).map_err(|e| format!("cannot serve the control socket: {e}"))?;
    tracing::info!(socket = %control_socket.path().display(), tunnels = cfg.tunnels.len(), "vpngw running");
    // The TUN device, the WAN sockets, the routes and the control socket all exist now.
    let status = format!("{} tunnel(s), WAN {}, {}", cfg.tunnels.len(), g.local_address, tun.name());
    if let Err(e) = notifier.ready(&status) {
        tracing::warn!(error = %e, "cannot tell the service manager that vpngw is ready");
    }

    let driver = Driver {
        endpoint,
        table,
        tx: WanSockets { ike: ike_sock, natt: natt_sock, natt_port: g.natt_port, ike_port: g.ike_port },
        clock,
        rx,
        config: Arc::new(cfg),
        started,
        io,
        reload: Some(Reloader { path, host: Box::new(SystemHost { routes, tun: Arc::clone(&tun) }) }),
    };
    // The driver owns the routes from here; they are removed when it ends.
    let exit = driver.run();

    drop(control_socket);
    tracing::info!(dev = tun.name(), "routes and control socket removed; TUN device closes on exit");
    match exit {
        Exit::Requested => Ok(()),
        Exit::Failed(reason) => Err(reason),
    }
}

fn install_routes(cfg: &config::Config, dev: &str) -> Result<Routes, String> {
    let host_addrs = sys::local_addresses().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot list local addresses; routes get no preferred source");
        Vec::new()
    });
    let routes =
        Routes::install(wanted_routes(cfg, dev, &host_addrs)).map_err(|e| format!("cannot install routes: {e}"))?;
    for r in routes.installed() {
        tracing::info!(dest = %r.dest, dev = %r.dev, src = ?r.src, "route installed");
    }
    Ok(routes)
}

fn spawn_signal_thread(
    signals: DaemonSignals,
    tx: SyncSender<ControlMsg>,
    notifier: Arc<Notifier>,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match signals.wait() {
                Ok(sig) => {
                    let msg = if sys::is_reload_signal(sig) {
                        tracing::info!(signal = sys::signal_name(sig), "configuration reload requested");
                        ControlMsg::Reload
                    } else {
                        tracing::info!(signal = sys::signal_name(sig), "shutdown requested");
                        if let Err(e) = notifier.stopping("deleting SAs") {
                            tracing::warn!(error = %e, "cannot tell the service manager that vpngw is stopping");
                        }
                        ControlMsg::Shutdown
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "sigwait failed; signals are no longer handled");
                    return;
                }
            }
        })
        .map(drop)
        .map_err(|e| format!("cannot start the signal thread: {e}"))
}
