//! The `vpnctl` side of the control socket: connect, send one request line, read one
//! response line. Errors say what the operator should check.

use super::proto::{self, Reply, Request, MAX_LINE};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a request failed before an answer arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon at the path (or no permission).
    #[error("vpngw is not running? cannot connect to {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The connection broke.
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The daemon answered something we cannot read.
    #[error("{0}")]
    Protocol(String),
}

/// Sends `request` to the daemon at `path` and returns its reply.
pub fn request(path: &Path, request: &Request, timeout: Duration) -> Result<Reply, ClientError> {
    let mut stream =
        UnixStream::connect(path).map_err(|source| ClientError::Connect { path: path.to_path_buf(), source })?;
    let io_err = |source| ClientError::Io { path: path.to_path_buf(), source };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    if let Err(e) = stream.write_all(proto::encode_request(request).as_bytes()) {
        // The daemon may refuse (and close) before reading our request; its reason is
        // then already waiting to be read, so only other errors end here.
        if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
            return Err(io_err(e));
        }
    }
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
    BufReader::new(&stream).take(limit).read_until(b'\n', &mut line).map_err(io_err)?;
    if line.is_empty() {
        return Err(ClientError::Protocol("vpngw closed the connection without answering".into()));
    }
    let text = std::str::from_utf8(&line).map_err(|_| ClientError::Protocol("reply is not UTF-8".into()))?;
    Ok(proto::decode_response(text.trim_end()).map_err(ClientError::Protocol)?.reply)
}

/// `vpnctl watch`: subscribes at the daemon at `path` and hands `on_frame` the
/// confirmation (`Reply::Watching`), then every `Reply::Event`, until the daemon closes
/// the connection (`Ok(None)`) or `on_frame` fails (its error is returned, e.g. stdout
/// closed). A refusal is returned as `Ok(Some(reply))`.
pub fn watch(
    path: &Path,
    timeout: Duration,
    mut on_frame: impl FnMut(Reply) -> io::Result<()>,
) -> Result<Option<proto::ErrorReply>, ClientError> {
    let mut stream =
        UnixStream::connect(path).map_err(|source| ClientError::Connect { path: path.to_path_buf(), source })?;
    let io_err = |source| ClientError::Io { path: path.to_path_buf(), source };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream.write_all(proto::encode_request(&Request::Watch).as_bytes()).map_err(io_err)?;
    let mut reader = BufReader::new(&stream);
    let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        (&mut reader).take(limit).read_until(b'\n', &mut line).map_err(io_err)?;
        if line.is_empty() {
            return if first {
                Err(ClientError::Protocol("vpngw closed the connection without answering".into()))
            } else {
                Ok(None)
            };
        }
        let text = std::str::from_utf8(&line).map_err(|_| ClientError::Protocol("reply is not UTF-8".into()))?;
        match proto::decode_response(text.trim_end()).map_err(ClientError::Protocol)?.reply {
            r @ Reply::Watching(_) if first => {
                // Events come when they happen: no read timeout from now on.
                stream.set_read_timeout(None).map_err(io_err)?;
                on_frame(r).map_err(io_err)?;
            }
            r @ Reply::Event(_) if !first => on_frame(r).map_err(io_err)?,
            Reply::Error(e) => return Ok(Some(e)),
            other => return Err(ClientError::Protocol(format!("unexpected reply to watch: {other:?}"))),
        }
        first = false;
    }
}
