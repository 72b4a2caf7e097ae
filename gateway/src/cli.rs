//! `vpnctl`: the operator's command line for a running `vpngw`.
//!
//! Exit codes: 0 success, 1 error (daemon unreachable, request refused, unknown
//! tunnel, command failed), 2 usage, 3 a tunnel command was started but its effect
//! was not seen within `--wait` (the daemon carries on).
//! The socket is `--socket PATH`, else `gateway.control_socket` of `--config FILE`,
//! else [`DEFAULT_SOCKET`](crate::control::DEFAULT_SOCKET).

use crate::control::client::{self, ClientError};
use crate::control::proto::{Outcome, Reply, Request, ResponseFrame, DEFAULT_WAIT_MS, MAX_WAIT_MS, VERSION};
use crate::control::DEFAULT_SOCKET;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long vpnctl waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Query and control a running vpngw.
#[derive(Debug, Parser)]
#[command(name = "vpnctl", version)]
pub struct Cli {
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", global = true, conflicts_with = "config")]
    pub socket: Option<PathBuf>,
    /// Read the control socket path from this vpngw configuration file (only that key:
    /// the rest of the file may be invalid).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// vpnctl commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tunnels, IKE and CHILD SAs, algorithms, SPIs, lifetimes, traffic counters and drops.
    Status {
        /// Only this tunnel.
        tunnel: Option<String>,
        /// Print the status as JSON (a stable, versioned document).
        #[arg(long)]
        json: bool,
    },
    /// Bring a tunnel up now (initiate) and keep it up; waits until it is established.
    Up {
        /// Tunnel name from the configuration.
        tunnel: String,
        #[command(flatten)]
        opts: ActionOpts,
    },
    /// Delete a tunnel's IKE and CHILD SAs and stop initiating it until `vpnctl up`.
    Down {
        /// Tunnel name from the configuration.
        tunnel: String,
        #[command(flatten)]
        opts: ActionOpts,
    },
    /// Rekey a tunnel's CHILD SAs now (or its IKE SA with --ike); waits for the new SA.
    Rekey {
        /// Tunnel name from the configuration.
        tunnel: String,
        /// Rekey the IKE SA instead of the CHILD SAs.
        #[arg(long)]
        ike: bool,
        #[command(flatten)]
        opts: ActionOpts,
    },
    /// Make vpngw read its configuration file again and apply the difference (as SIGHUP
    /// does): unchanged tunnels keep their SAs, added ones start, removed ones are
    /// deleted, changed ones are negotiated again. An invalid file, or one changing a
    /// `[gateway]` key that needs a restart, is refused and the running one stays.
    Reload {
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print state changes as they happen (tunnel up/down with the reason, CHILD SA
    /// up/down, rekeys, dead peers, configuration reloads, errors), one line each, until
    /// interrupted.
    Watch {
        /// One JSON object per line (the control protocol's event frames).
        #[arg(long)]
        json: bool,
    },
}

/// Options of the tunnel commands.
#[derive(Debug, clap::Args)]
pub struct ActionOpts {
    /// Seconds to wait for the effect before answering (0: answer at once; at most 60).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_WAIT_MS as f64 / 1000.0)]
    pub wait: f64,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

impl ActionOpts {
    fn wait_ms(&self) -> Result<u64, String> {
        if !self.wait.is_finite() || self.wait < 0.0 {
            return Err(format!("--wait {}: expected seconds >= 0", self.wait));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // finite, >= 0, clamped
        let ms = (self.wait * 1000.0).min(MAX_WAIT_MS as f64) as u64;
        Ok(ms)
    }
}

/// What `vpnctl` prints and how it exits.
#[derive(Debug, PartialEq, Eq)]
pub struct Output {
    /// For stdout.
    pub text: String,
    /// The process exit code.
    pub code: u8,
}

/// `vpnctl`'s main.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            print!("{}", out.text);
            if out.code == 3 {
                eprintln!("vpnctl: not completed within the wait; check `vpnctl status`");
            }
            ExitCode::from(out.code)
        }
        Err(e) => {
            eprintln!("vpnctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line; returns what to print on stdout and the exit code, or
/// the error for stderr (exit code 1).
pub fn run(cli: &Cli) -> Result<Output, String> {
    let socket = socket_path(cli)?;
    let (request, json) = match &cli.command {
        Command::Watch { json } => return watch(&socket, *json, &mut std::io::stdout()),
        Command::Status { tunnel, json } => (Request::Status { tunnel: tunnel.clone() }, *json),
        Command::Up { tunnel, opts } => (Request::Up { tunnel: tunnel.clone(), wait_ms: opts.wait_ms()? }, opts.json),
        Command::Down { tunnel, opts } => {
            (Request::Down { tunnel: tunnel.clone(), wait_ms: opts.wait_ms()? }, opts.json)
        }
        Command::Rekey { tunnel, ike, opts } => {
            (Request::Rekey { tunnel: tunnel.clone(), ike: *ike, wait_ms: opts.wait_ms()? }, opts.json)
        }
        Command::Reload { json } => (Request::Reload, *json),
    };
    let reply = client::request(&socket, &request, TIMEOUT + request.wait()).map_err(|e| explain(&e))?;
    let code = match &reply {
        Reply::Status(_) | Reply::Reload(_) => 0,
        Reply::Action(a) => match a.outcome {
            Outcome::Done | Outcome::Unchanged => 0,
            Outcome::Failed => 1,
            Outcome::Pending => 3,
        },
        Reply::Error(e) => return Err(refused(e)),
        Reply::Watching(_) | Reply::Event(_) => return Err("vpngw answered with a watch frame".into()),
    };
    let text = if json {
        let frame = ResponseFrame { v: VERSION, reply };
        let mut s = serde_json::to_string_pretty(&frame).map_err(|e| format!("cannot encode JSON: {e}"))?;
        s.push('\n');
        s
    } else {
        match &reply {
            Reply::Status(report) => crate::render::status(report),
            Reply::Action(a) => crate::render::action(a),
            Reply::Reload(r) => crate::render::reload(r),
            Reply::Error(_) | Reply::Watching(_) | Reply::Event(_) => String::new(),
        }
    };
    Ok(Output { text, code })
}

fn refused(e: &crate::control::proto::ErrorReply) -> String {
    let code = serde_json::to_value(e.code).ok().and_then(|v| v.as_str().map(str::to_owned));
    format!("vpngw refused the request: {} ({})", e.message, code.unwrap_or_default())
}

/// `vpnctl watch`: writes each event to `out` as it arrives (flushed, so a pipe sees it
/// at once) until the daemon goes away, which is an error (exit 1); a closed `out`
/// (e.g. `vpnctl watch | head`) ends it quietly.
pub fn watch(socket: &std::path::Path, json: bool, out: &mut impl std::io::Write) -> Result<Output, String> {
    let result = client::watch(socket, TIMEOUT, |frame| {
        let line = match frame {
            // Scripts learn that the subscription is in place (and may act on it); an
            // operator at a terminal, on stderr.
            Reply::Watching(_) if !json => {
                eprintln!("vpnctl: watching {} (one line per event; Ctrl-C ends)", socket.display());
                return Ok(());
            }
            Reply::Event(e) if !json => crate::render::event(&e),
            frame => crate::control::proto::encode_reply(frame),
        };
        out.write_all(line.as_bytes())?;
        out.flush()
    });
    match result {
        Ok(None) => Err("vpngw closed the watch connection (shutting down?)".into()),
        Ok(Some(e)) => Err(refused(&e)),
        Err(ClientError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Output { text: String::new(), code: 0 })
        }
        Err(e) => Err(explain(&e)),
    }
}

fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(p) = &cli.socket {
        return Ok(p.clone());
    }
    if let Some(cfg) = &cli.config {
        // Only `control_socket`: the rest of the file may be broken (the daemon says
        // how when asked to reload it).
        return config::control_socket(cfg).map_err(|e| format!("configuration error: {e}"));
    }
    Ok(PathBuf::from(DEFAULT_SOCKET))
}

fn explain(e: &ClientError) -> String {
    match e {
        ClientError::Connect { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("{e} (vpnctl must run as root)")
        }
        _ => e.to_string(),
    }
}
