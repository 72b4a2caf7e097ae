//! `vpnctl`: the operator's command line for a running `vpngw`.
//!
//! Exit codes: 0 success, 1 error (daemon unreachable, request refused), 2 usage.
//! The socket is `--socket PATH`, else `gateway.control_socket` of `--config FILE`,
//! else [`DEFAULT_SOCKET`](crate::control::DEFAULT_SOCKET).

use crate::control::client::{self, ClientError};
use crate::control::proto::{Reply, Request, ResponseFrame, VERSION};
use crate::control::DEFAULT_SOCKET;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How long vpnctl waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(10);

/// vpnctl: query and control a running vpngw.
#[derive(Debug, Parser)]
#[command(name = "vpnctl", version)]
pub struct Cli {
    /// Control socket of the daemon.
    #[arg(long, value_name = "PATH", global = true, conflicts_with = "config")]
    pub socket: Option<PathBuf>,
    /// Read the control socket path from this vpngw configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// vpnctl commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tunnels, IKE and CHILD SAs, algorithms, SPIs, traffic counters and drops.
    Status {
        /// Print the status as JSON (a stable, versioned document).
        #[arg(long)]
        json: bool,
    },
}

/// `vpnctl`'s main.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vpnctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line; returns what to print on stdout.
pub fn run(cli: &Cli) -> Result<String, String> {
    let socket = socket_path(cli)?;
    match &cli.command {
        Command::Status { json } => {
            let reply = client::request(&socket, &Request::Status, TIMEOUT).map_err(|e| explain(&e))?;
            match reply {
                Reply::Status(report) => {
                    if *json {
                        let frame = ResponseFrame { v: VERSION, reply: Reply::Status(report) };
                        let mut s =
                            serde_json::to_string_pretty(&frame).map_err(|e| format!("cannot encode JSON: {e}"))?;
                        s.push('\n');
                        Ok(s)
                    } else {
                        Ok(crate::render::status(&report))
                    }
                }
                Reply::Error(e) => {
                    let code = serde_json::to_value(e.code).ok().and_then(|v| v.as_str().map(str::to_owned));
                    Err(format!("vpngw refused the request: {} ({})", e.message, code.unwrap_or_default()))
                }
            }
        }
    }
}

fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(p) = &cli.socket {
        return Ok(p.clone());
    }
    if let Some(cfg) = &cli.config {
        return config::load(cfg).map(|c| c.gateway.control_socket).map_err(|e| format!("configuration error: {e}"));
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
