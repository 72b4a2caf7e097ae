//! `vpnctl --config FILE`: only the control socket's path, read from a file that may
//! otherwise be invalid. An operator who has just broken the file must still be able to
//! ask the running daemon for its status, or to reload and hear the daemon refuse the
//! file with its own `file:line: key` error; so nothing but `[gateway] control_socket`
//! is looked at (no other key checked, no `psk_file` read).

use crate::validate::{line_of, toml_error, DEFAULT_CONTROL_SOCKET};
use crate::{read_limited, ConfigError, MAX_CONFIG_BYTES};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The file seen through `[gateway] control_socket` alone (other keys are ignored).
#[derive(Deserialize)]
struct SocketOnly {
    gateway: Option<GatewaySocket>,
}

#[derive(Deserialize)]
struct GatewaySocket {
    control_socket: Option<Spanned<String>>,
}

/// The control socket a configuration file names (relative to the file's directory, as
/// `vpngw` resolves it; the default if it names none). Errors only if the file cannot
/// be read, is not TOML, or `control_socket` is not a non-empty string.
pub fn control_socket(path: &Path) -> Result<PathBuf, ConfigError> {
    let fail = |line: Option<usize>, key: Option<String>, message: String| ConfigError {
        file: path.to_path_buf(),
        line,
        key,
        tunnel: None,
        message,
    };
    let (bytes, _) = read_limited(path, MAX_CONFIG_BYTES).map_err(|m| fail(None, None, m))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| fail(None, None, format!("not UTF-8 text (at byte {})", e.valid_up_to())))?;
    let file: SocketOnly = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
    let Some(socket) = file.gateway.and_then(|g| g.control_socket) else {
        return Ok(PathBuf::from(DEFAULT_CONTROL_SOCKET));
    };
    if socket.get_ref().trim().is_empty() {
        let line = Some(line_of(text, socket.span().start));
        return Err(fail(line, Some("gateway.control_socket".into()), "is empty".into()));
    }
    let p = Path::new(socket.get_ref());
    Ok(match path.parent() {
        Some(dir) if p.is_relative() && !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    })
}
