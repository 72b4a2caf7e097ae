//! `vpnctl status`: query a running vpngw.
fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
