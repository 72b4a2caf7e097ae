//! Writes the manual pages of `vpngw` and `vpnctl` (section 8) into a directory:
//! `cargo run -p gateway --example manpages -- DIR`. They are rendered from the same
//! clap definitions as `--help`, so the two cannot disagree; `scripts/deb.sh` runs this
//! before building the Debian package.

use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

const VPNGW_EXTRA: &str = r#".SH SIGNALS
.TP
\fBSIGINT\fR, \fBSIGTERM\fR
Shut down: DELETE sent for every IKE SA, routes and the control socket removed, the TUN device closed.
.TP
\fBSIGHUP\fR
Read the configuration file again and apply the difference, as \fBvpnctl reload\fR does; a file that is invalid or changes a key that needs a restart is refused (logged) and the running configuration stays.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
Log filter; wins over \fB\-\-log\-level\fR.
.TP
\fBNOTIFY_SOCKET\fR
Set by systemd for Type=notify services: READY=1 is sent once the TUN device, the WAN sockets, the routes and the control socket exist, STOPPING=1 when shutdown begins.
.TP
\fBJOURNAL_STREAM\fR
When it names stderr, log lines carry syslog priorities for journald and no timestamp.
.TP
\fBVPNGW_TUN_QUEUES\fR, \fBVPNGW_NO_*\fR
Datapath switches, read once at start (see the README's Performance section).
.SH EXIT STATUS
0 after a requested shutdown, 1 on a start-up or run-time failure, 2 on a configuration or usage error.
.SH FILES
.TP
\fI/etc/vpngw/vpngw.toml\fR
The configuration (TOML): a [gateway] table and [[tunnel]] tables; keys in the README's configuration reference (/usr/share/doc/vpngw/README.md.gz).
.TP
\fI/run/vpngw/vpngw.sock\fR
The default control socket (mode 0600, root only).
.TP
\fI/usr/lib/systemd/system/vpngw.service\fR
The systemd unit.
.SH SEE ALSO
\fBvpnctl\fR(8), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

const VPNCTL_EXTRA: &str = r#".SH EXIT STATUS
0 success, 1 error (daemon not reachable, request refused, unknown tunnel, command failed, bad \fB\-\-config\fR file), 2 usage error, 3 the command was started but its effect was not seen within \fB\-\-wait\fR.
.SH FILES
.TP
\fI/run/vpngw/vpngw.sock\fR
The default control socket.
.SH SEE ALSO
\fBvpngw\fR(8)
"#;

fn write_page(cmd: clap::Command, extra: &str, path: &Path) -> std::io::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).section("8").manual("vpngw").render(&mut out)?;
    out.extend_from_slice(extra.as_bytes());
    std::fs::File::create(path)?.write_all(&out)
}

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| "target/man".into()));
    std::fs::create_dir_all(&dir)?;
    write_page(gateway::daemon::Args::command(), VPNGW_EXTRA, &dir.join("vpngw.8"))?;
    let vpnctl = gateway::cli::Cli::command();
    write_page(vpnctl.clone(), VPNCTL_EXTRA, &dir.join("vpnctl.8"))?;
    // One page per command, as git does (vpnctl-status(8), ...), carrying its options.
    for sub in vpnctl.get_subcommands() {
        // clap takes names as `&'static str` (without its `string` feature); this
        // program ends right after, so leaking the few names costs nothing.
        let name: &'static str = Box::leak(format!("vpnctl-{}", sub.get_name()).into_boxed_str());
        let page = sub.clone().name(name).bin_name(format!("vpnctl {}", sub.get_name()));
        write_page(page, "", &dir.join(format!("{name}.8")))?;
    }
    Ok(())
}
