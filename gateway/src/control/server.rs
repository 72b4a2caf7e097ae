//! The daemon side of the control socket: a Unix stream socket, root only.
//!
//! Access control is layered: the parent directory is created 0700 (an existing one must
//! be a real directory, not a symlink, owned by root and writable by nobody else), the
//! socket file is 0600, and every connection's SO_PEERCRED uid must be 0. Each connection gets its own
//! short-lived thread (a bounded number at once); every request is forwarded to the
//! control thread, which owns all state, and its reply is written back as one line.
//! A `watch` request turns the connection into a stream: the control thread queues
//! events for it (bounded, never waiting for the client), this thread writes them as
//! they come and ends when the client closes the connection or stops reading.
//! This module does not interpret requests beyond decoding them (see `driver`).

use super::proto::{self, ErrorCode, ErrorReply, Reply, MAX_LINE};
use crate::driver::ControlMsg;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// Connections served at once; further clients are refused until one finishes.
const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send a request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the control thread may take to answer (plus the wait of a tunnel command).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound socket. Dropping it removes the socket file (if it is still ours).
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we bound.
    file: (u64, u64),
}

impl ControlSocket {
    /// Creates the parent directory (0700) if needed, checks it ([`check_directory`]),
    /// refuses a symlink or any other non-socket at `path` and a running daemon's socket,
    /// removes a stale socket, binds, and restricts the file to 0600.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if fs::symlink_metadata(dir).is_err() {
            DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create control socket directory {}: {e}", dir.display()))
            })?;
        }
        check_directory(dir)?;
        check_ancestors(dir)?;
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is a symbolic link; refusing to follow or replace it", path.display()),
                ));
            }
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket; refusing to replace it", path.display()),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another vpngw is already serving {}", path.display()),
                ));
            }
            // unlink never follows a symlink: at worst it removes what replaced the stale
            // socket in a directory only root can write to.
            fs::remove_file(path)?;
        }
        // bind(2) creates the file and fails if anything (a symlink included) is there.
        let listener = UnixListener::bind(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind control socket {}: {e}", path.display())))?;
        let meta = fs::symlink_metadata(path)?;
        let this = Self { listener, path: path.to_path_buf(), file: (meta.dev(), meta.ino()) };
        // By path, but in a directory no one else can write to, under ancestors no one else
        // can rename entries of (both checked above): nothing can have swapped it. (Not a
        // umask around bind: the mask is per process and would leak into other threads.)
        fs::set_permissions(path, Permissions::from_mode(0o600))?;
        Ok(this)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections on a new thread until the process exits. Requests go to
    /// `control`.
    pub fn serve(&self, control: SyncSender<ControlMsg>) -> io::Result<std::thread::JoinHandle<()>> {
        let listener = self.listener.try_clone()?;
        std::thread::Builder::new().name("control-socket".into()).spawn(move || accept_loop(&listener, &control))
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // Only the file we bound: a socket another daemon bound there since is not ours.
        if fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The control socket's directory must be a directory itself, not a symbolic link to one
/// (opened with O_NOFOLLOW and examined through that descriptor), owned by root or by
/// this process's user, and writable by no one else: otherwise another user could
/// replace the socket, or point the path at a file of their choosing.
pub fn check_directory(dir: &Path) -> io::Result<()> {
    let refuse = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    let opened = OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir);
    let meta = match opened {
        Ok(f) => f.metadata()?,
        // O_NOFOLLOW refuses a symlink with ELOOP, or with ENOTDIR next to O_DIRECTORY.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
            let link = fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
            let what = if link { "a symbolic link; refusing it (use the real directory)" } else { "not a directory" };
            return Err(refuse(format!("control socket directory {} is {what}", dir.display())));
        }
        Err(e) => return Err(io::Error::new(e.kind(), format!("control socket directory {}: {e}", dir.display()))),
    };
    let euid = crate::sys::euid();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(refuse(format!(
            "control socket directory {} is owned by uid {}, not by root; refusing it",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "control socket directory {} is writable by group or others (mode {mode:04o}); refusing it \
             (use a directory only root can write to, e.g. the default /run/vpngw)",
            dir.display()
        )));
    }
    Ok(())
}

/// Every directory above the control socket's must be one that no other user can rename
/// or replace entries of: owned by root or by us, and not writable by group or others
/// unless sticky (like /tmp, where others cannot rename what is not theirs).
pub fn check_ancestors(dir: &Path) -> io::Result<()> {
    let abs = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir()?.join(dir) };
    let euid = crate::sys::euid();
    for a in abs.ancestors().skip(1) {
        let meta = fs::metadata(a)
            .map_err(|e| io::Error::new(e.kind(), format!("control socket path: {}: {e}", a.display())))?;
        let mode = meta.mode() & 0o7777;
        let foreign = meta.uid() != 0 && meta.uid() != euid;
        let open = mode & 0o022 != 0 && mode & 0o1000 == 0;
        if foreign || open {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "control socket path: {} (uid {}, mode {mode:04o}) can be changed by another user; refusing it",
                    a.display(),
                    meta.uid()
                ),
            ));
        }
    }
    Ok(())
}

fn accept_loop(listener: &UnixListener, control: &SyncSender<ControlMsg>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "control socket accept");
                continue;
            }
        };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let _ = write_error(&mut stream, ErrorCode::Unavailable, "too many control connections".into());
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (control, active2) = (control.clone(), Arc::clone(&active));
        let spawned = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
            if let Err(e) = serve_connection(stream, &control) {
                tracing::debug!(error = %e, "control connection");
            }
            active2.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Serves one client: requests line by line until EOF.
pub fn serve_connection(mut stream: UnixStream, control: &SyncSender<ControlMsg>) -> io::Result<()> {
    let uid = crate::sys::peer_uid(stream.as_fd())?;
    if uid != 0 {
        tracing::warn!(uid, "control connection refused: not root");
        return write_error(&mut stream, ErrorCode::PermissionDenied, "vpngw control requires root".into());
    }
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
        let n = (&mut reader).take(limit).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && n > MAX_LINE {
            return write_error(&mut stream, ErrorCode::TooLong, format!("request longer than {MAX_LINE} bytes"));
        }
        let reply = match std::str::from_utf8(&line) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match proto::decode_request(text.trim_end()) {
                Ok(proto::Request::Watch) => return watch(stream, control),
                Ok(request) => ask(control, request),
                Err(proto::DecodeError(e)) => Reply::Error(e),
            },
            Err(_) => Reply::Error(ErrorReply { code: ErrorCode::BadRequest, message: "request is not UTF-8".into() }),
        };
        stream.write_all(proto::encode_reply(reply).as_bytes())?;
    }
}

/// Forwards a request to the control thread and waits for the answer.
fn ask(control: &SyncSender<ControlMsg>, request: proto::Request) -> Reply {
    let unavailable = |m: &str| Reply::Error(ErrorReply { code: ErrorCode::Unavailable, message: m.into() });
    let (tx, rx) = mpsc::channel();
    // Tunnel commands are answered once their effect is seen or their wait is over.
    let timeout = ANSWER_TIMEOUT + request.wait();
    if control.send(ControlMsg::Request { request, reply: tx }).is_err() {
        return unavailable("vpngw is shutting down");
    }
    rx.recv_timeout(timeout).unwrap_or_else(|_| unavailable("vpngw did not answer in time"))
}

/// How often a quiet `watch` connection checks whether its client is still there.
const WATCH_CHECK: Duration = Duration::from_secs(1);

/// Subscribes to the control thread's events and streams them to the client until it
/// closes the connection (or a write fails: a client that stops reading for
/// [`ANSWER_TIMEOUT`] is dropped; one that reads slowly loses events, and is told).
fn watch(mut stream: UnixStream, control: &SyncSender<ControlMsg>) -> io::Result<()> {
    let (subscriber, watcher) = crate::watch::channel(crate::watch::QUEUE);
    let (tx, rx) = mpsc::channel();
    if control.send(ControlMsg::Watch { subscriber, reply: tx }).is_err() {
        return write_error(&mut stream, ErrorCode::Unavailable, "vpngw is shutting down".into());
    }
    let reply = rx.recv_timeout(ANSWER_TIMEOUT).unwrap_or_else(|_| {
        Reply::Error(ErrorReply { code: ErrorCode::Unavailable, message: "vpngw did not answer in time".into() })
    });
    let subscribed = matches!(reply, Reply::Watching(_));
    stream.write_all(proto::encode_reply(reply).as_bytes())?;
    if !subscribed {
        return Ok(());
    }
    let probe = stream.try_clone()?;
    forward(&watcher, &mut stream, || client_gone(&probe))
}

/// Writes the watcher's events to `out` as reply lines, with a `lost` event once the
/// queue has run dry after events were dropped for it; returns when the control
/// thread is gone, a write fails, or `gone()` (asked while no event comes) says the
/// client left.
pub fn forward(
    watcher: &crate::watch::Watcher,
    out: &mut impl Write,
    mut gone: impl FnMut() -> bool,
) -> io::Result<()> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let write =
        |out: &mut dyn Write, e: proto::WatchEvent| out.write_all(proto::encode_reply(Reply::Event(e)).as_bytes());
    loop {
        match watcher.events.try_recv() {
            Ok(e) => {
                write(out, e)?;
                continue;
            }
            Err(TryRecvError::Disconnected) => return report_lost(watcher, out),
            Err(TryRecvError::Empty) => {}
        }
        // Everything queued is written: the lost events came after it.
        report_lost(watcher, out)?;
        match watcher.events.recv_timeout(WATCH_CHECK) {
            Ok(e) => write(out, e)?,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                if gone() {
                    return Ok(());
                }
            }
        }
    }
}

/// Writes a `lost` event if events were dropped for this client since it was last told.
fn report_lost(watcher: &crate::watch::Watcher, out: &mut impl Write) -> io::Result<()> {
    let lost = watcher.lost.swap(0, Ordering::Relaxed);
    if lost > 0 {
        let mut e = proto::WatchEvent::new(
            crate::watch::unix_ms(),
            proto::EventKind::Lost,
            None,
            format!("{lost} event(s) lost: this client read too slowly"),
        );
        e.lost = Some(lost);
        out.write_all(proto::encode_reply(Reply::Event(e)).as_bytes())?;
    }
    out.flush()
}

/// Whether the client of a `watch` connection has closed it (it sends nothing after
/// its request, so anything readable means it is gone or misbehaving).
fn client_gone(stream: &UnixStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let gone = match (&*stream).read(&mut byte) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) | Ok(_) => true,
    };
    gone || stream.set_nonblocking(false).is_err()
}

fn write_error(stream: &mut UnixStream, code: ErrorCode, message: String) -> io::Result<()> {
    stream.write_all(proto::encode_reply(Reply::Error(ErrorReply { code, message })).as_bytes())
}
