//! `vpngw` start-up behaviour that needs no network: configuration errors exit 2 and
//! name file, line and key; `--check` validates; usage errors exit 2.

use std::process::Command;
use testkit::Need;

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

/// Writes a configuration holding an inline `psk` as it must be: mode 0600.
fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn vpngw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vpngw")).args(args).env_remove("RUST_LOG").output().unwrap()
}

#[test]
fn config_error_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    // Line 10: a subnet that is not a subnet.
    write_private(&path, &GOOD.replace("remote_subnets = [\"10.2.0.0/24\"]", "remote_subnets = [\"10.2.0/24\"]"));
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
    write_private(&path, GOOD);
    let out = vpngw(&["--check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("# {}: OK: 1 tunnel(s) on 192.0.2.1 (site-b)", path.display())), "{stdout}");
    // The effective settings, defaults filled in, the key hidden.
    for line in [
        "\n[gateway]\n",
        "\ntun_mtu = 1400\n",
        "\nike_port = 500\n",
        "\nnatt_port = 4500\n",
        "\nhalf_open_max = 1000\n",
        "\n[[tunnel]]\nname = \"site-b\"\n",
        "\nlocal_id = \"192.0.2.1\"\n",
        "\npsk = \"<hidden>\"\n",
        "\nremote_subnets = [\"10.2.0.0/24\"]\n",
        "\nreplay_window = 1024\n",
        "\nchild_rekey_time = \"1h\"\n",
        "\ndpd_delay = \"30s\"\n",
        "\ndpd_action = \"restart\"\n",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("0123456789abcdef"), "{stdout}");
    // What it prints is a configuration (with a key put back) that says the same.
    let again = dir.path().join("again.toml");
    write_private(&again, &stdout.replace("<hidden>", "0123456789abcdef0123456789abcdef"));
    let out2 = vpngw(&["--check", "--config", again.to_str().unwrap()]);
    assert!(out2.status.success(), "{}", String::from_utf8_lossy(&out2.stderr));
    let body = |s: &str| s.split_once('\n').map(|(_, b)| b.to_string()).unwrap_or_default();
    assert_eq!(body(&String::from_utf8_lossy(&out2.stdout)), body(&stdout));
}

#[test]
fn check_of_an_invalid_config_exits_2_with_the_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    write_private(&path, &GOOD.replace("remote_subnets = [\"10.2.0.0/24\"]", "remote_subnets = [\"10.2.0/24\"]"));
    let out = vpngw(&["--check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:10: tunnel[0] (site-b) `remote_subnets`:", path.display())), "{err}");
}

#[test]
fn check_refuses_an_inline_psk_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    write_private(&path, GOOD);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = vpngw(&["--check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    // Line 8 holds the psk.
    assert!(err.contains(&format!("{}:8: tunnel[0] (site-b) `psk`: ", path.display())), "{err}");
    assert!(err.contains("mode 0644") && err.contains("allow_insecure_key_files"), "{err}");
    assert!(!err.contains("0123456789abcdef"), "{err}");
    // Opting out: it runs, with a warning.
    write_private(&path, &GOOD.replace("[gateway]\n", "[gateway]\nallow_insecure_key_files = true\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = vpngw(&["--check", "--config", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("accepted because allow_insecure_key_files = true"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vpngw(&[]).status.code(), Some(2));
    assert_eq!(vpngw(&["--bogus"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    write_private(&path, GOOD);
    let out = vpngw(&["--config", path.to_str().unwrap(), "--log-level", "info,=[bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
}

#[test]
fn refuses_to_run_without_root() {
    if !testkit::require("refuses_to_run_without_root", &[Need::Root, Need::Command("setpriv")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("good.toml");
    // Private to the user it runs as (root or that user may own a key file).
    write_private(&path, GOOD);
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_vpngw"), "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"));
}

/// Runs `vpngw --check` on a configuration with a short key (one WARN line), stderr in
/// a file, `JOURNAL_STREAM` naming `journal` (`None`: unset; `Some(true)`: that file,
/// `Some(false)`: another one); returns stderr.
fn check_logging_to_file(journal: Option<bool>) -> String {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short-key.toml");
    write_private(&path, &GOOD.replace("0123456789abcdef0123456789abcdef", "short"));
    let err_path = dir.path().join("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let other = std::fs::File::create(dir.path().join("other")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpngw"));
    cmd.args(["--check", "--config", path.to_str().unwrap()]).env_remove("RUST_LOG").env_remove("JOURNAL_STREAM");
    if let Some(this_file) = journal {
        let m = if this_file { err.metadata() } else { other.metadata() }.unwrap();
        cmd.env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()));
    }
    let out = cmd.stderr(err).output().unwrap();
    assert!(out.status.success());
    std::fs::read_to_string(err_path).unwrap()
}

#[test]
fn journal_lines_carry_their_priority_and_no_timestamp() {
    let journal = check_logging_to_file(Some(true));
    let line = journal.lines().find(|l| l.contains("shorter than")).unwrap_or_else(|| panic!("{journal}"));
    assert!(line.starts_with("<4> WARN "), "syslog priority 4 (warning), no timestamp: {line:?}");
    assert!(!journal.contains('\u{1b}'), "no ANSI: {journal:?}");

    // Not the journal: the usual lines, timestamp first, no priority, no colour (not a
    // terminal) — also when JOURNAL_STREAM names some other file (a child of a service
    // whose stderr was redirected).
    for not_journal in [check_logging_to_file(None), check_logging_to_file(Some(false))] {
        let line = not_journal.lines().find(|l| l.contains("shorter than")).unwrap_or_else(|| panic!("{not_journal}"));
        assert!(line.starts_with("20") && line.contains(" WARN "), "{line:?}");
        assert!(!not_journal.contains('\u{1b}') && !not_journal.contains("<4>"), "{not_journal:?}");
    }
}
