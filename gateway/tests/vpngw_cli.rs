//! `vpngw` start-up behaviour that needs no network: configuration errors exit 2 and
//! name file, line and key; `--check` validates; usage errors exit 2.

use std::process::Command;

const GOOD: &str = r#"[gateway]
local_address = "192.0.2.1"
tun_name = "vgtest0"

[[tunnel]]
name = "site-b"
remote_address = "192.0.2.2"
psk = "0123456789abcdef0123456789abcdef"
local_subnets = ["10.1.0.0/24"]
remote_subnets = ["10.2.0.0/24"]
"#;

fn vpngw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vpngw")).args(args).env_remove("RUST_LOG").output().unwrap()
}

#[test]
fn config_error_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    // Line 10: a subnet that is not a subnet.
    std::fs::write(&path, GOOD.replace("remote_subnets = [\"10.2.0.0/24\"]", "remote_subnets = [\"10.2.0/24\"]"))
        .unwrap();
    let out = vpngw(&["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:10", path.display())), "{err}");
    assert!(err.contains("remote_subnets"), "{err}");
}

#[test]
fn unreadable_config_exits_2() {
    let out = vpngw(&["--config", "/nonexistent/vpngw.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/vpngw.toml"));
}

#[test]
fn check_accepts_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = vpngw(&["--check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK: 1 tunnel(s) on 192.0.2.1 (site-b)"), "{stdout}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vpngw(&[]).status.code(), Some(2));
    assert_eq!(vpngw(&["--bogus"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = vpngw(&["--config", path.to_str().unwrap(), "--log-level", "info,=[bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
}

#[test]
fn refuses_to_run_without_root() {
    if !gateway::sys::is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root (to drop it) and setpriv");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(&path, GOOD).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_vpngw"), "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));
}
