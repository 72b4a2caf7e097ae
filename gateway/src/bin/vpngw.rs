//! `vpngw --config FILE`: the site-to-site IPsec gateway daemon.
fn main() -> std::process::ExitCode {
    gateway::daemon::main()
}
