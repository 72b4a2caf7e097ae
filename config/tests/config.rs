//! Behaviour of `config::parse` / `config::load`: the reference file, defaults, every
//! class of bad configuration (line + key in the error), warnings, and no panics.

use config::{load, parse, Config, ConfigError, DpdAction, Encapsulation, IkeVersion, StartAction};
use ipsec_types::{EspProposal, Identity, IkeProposal, TrafficSelector};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file from the brief, with `psk_file` pointing at `{psk}`.
fn reference(psk: &str) -> String {
    format!(
        r#"[gateway]
local_address = "192.0.2.1"               # WAN address: IKE on UDP 500 and 4500
tun_name = "vpn0"                          # TUN interface carrying the clear side
control_socket = "/run/vpngw/vpngw.sock"   # vpnctl connects here

[[tunnel]]
name = "site-b"
remote_address = "192.0.2.2"
local_id = "gw-a.example.net"              # optional, default local_address
remote_id = "gw-b.example.net"             # optional, default remote_address
psk_file = "{psk}"         # or psk = "...": exactly one of the two
local_subnets = ["10.1.0.0/24"]
remote_subnets = ["10.2.0.0/24"]
start = "initiate"                         # initiate | respond
ike_proposals = ["aes256gcm16-prfsha256-x25519", "aes128gcm16-prfsha256-ecp256"]
esp_proposals = ["aes256gcm16", "aes128gcm16"]
encapsulation = "auto"                     # auto: UDP behind NAT or with vpngw | raw | udp: always
"#
    )
}

/// A minimal valid file with an inline PSK; `tunnel` lines are appended to the tunnel.
fn minimal(gateway_extra: &str, tunnel_extra: &str) -> String {
    format!(
        "[gateway]\nlocal_address = \"192.0.2.1\"\n{gateway_extra}\n\n[[tunnel]]\nname = \"site-b\"\n\
         remote_address = \"192.0.2.2\"\npsk = \"0123456789abcdef0123\"\nlocal_subnets = [\"10.1.0.0/24\"]\n\
         remote_subnets = [\"10.2.0.0/24\"]\n{tunnel_extra}\n"
    )
}

const FILE: &str = "/etc/vpngw/a.toml";

fn write_psk(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

fn ok(text: &str) -> Config {
    match parse(text, Path::new(FILE)) {
        Ok(c) => c,
        Err(e) => panic!("expected success, got: {e}"),
    }
}

fn err(text: &str) -> ConfigError {
    match parse(text, Path::new(FILE)) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// 1-based line of the first line containing `needle`.
fn line_with(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("{needle:?} not in text"))
}

/// Replaces the line starting with `prefix` by `with` (which may span several lines).
fn replace_line(text: &str, prefix: &str, with: &str) -> String {
    assert!(text.lines().any(|l| l.starts_with(prefix)), "{prefix:?} not in text");
    text.lines()
        .map(|l| if l.starts_with(prefix) { with.to_string() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the error is at `line`, for key path `key`, and the message contains `msg`;
/// and that its rendering carries file, line and key.
fn assert_err(e: &ConfigError, line: usize, key: &str, msg: &str) {
    let shown = e.to_string();
    assert_eq!(e.line, Some(line), "line of: {shown}");
    assert_eq!(e.key.as_deref(), Some(key), "key of: {shown}");
    assert!(e.message.contains(msg), "message {:?} lacks {msg:?}", e.message);
    assert!(shown.starts_with(&format!("{FILE}:{line}: ")), "{shown}");
    let leaf = key.rsplit('.').next().unwrap();
    assert!(shown.contains(&format!("`{leaf}`")), "{shown}");
}

/// The error of `text`, which must concern key `key` of the first tunnel (site-b), at the
/// first line holding `marker`, with `msg` in its message.
fn tunnel0_err(text: &str, key: &str, marker: &str, msg: &str) -> ConfigError {
    let e = err(text);
    assert_err(&e, line_with(text, marker), &format!("tunnel[0].{key}"), msg);
    assert_eq!(e.tunnel.as_deref(), Some("site-b"), "{e}");
    e
}

#[test]
fn reference_file_parses() {
    let dir = tempfile::tempdir().unwrap();
    let psk = write_psk(dir.path(), "site-b.psk", b"correct-horse-battery-staple-42\n", 0o600);
    let text = reference(psk.to_str().unwrap());
    let c = parse(&text, &dir.path().join("vpngw.toml")).unwrap();
    assert_eq!(c.warnings, Vec::<String>::new());
    let g = &c.gateway;
    assert_eq!(g.local_address, "192.0.2.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(g.tun_name, "vpn0");
    assert_eq!(g.control_socket, PathBuf::from("/run/vpngw/vpngw.sock"));
    assert_eq!((g.tun_mtu, g.ike_port, g.natt_port), (1400, 500, 4500));
    assert_eq!(c.tunnels.len(), 1);
    let t = c.tunnel("site-b").unwrap();
    assert_eq!(t.remote_address, "192.0.2.2".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(t.local_id, Identity::Fqdn("gw-a.example.net".into()));
    assert_eq!(t.remote_id, Identity::Fqdn("gw-b.example.net".into()));
    assert_eq!(t.psk.0.as_slice(), b"correct-horse-battery-staple-42");
    assert_eq!(t.local_subnets, vec![TrafficSelector::parse_cidr("10.1.0.0/24").unwrap()]);
    assert_eq!(t.remote_subnets, vec![TrafficSelector::parse_cidr("10.2.0.0/24").unwrap()]);
    assert_eq!(t.start, StartAction::Initiate);
    assert_eq!(
        t.ike_proposals,
        vec![
            IkeProposal::parse("aes256gcm16-prfsha256-x25519").unwrap(),
            IkeProposal::parse("aes128gcm16-prfsha256-ecp256").unwrap()
        ]
    );
    assert_eq!(
        t.esp_proposals,
        vec![EspProposal::parse("aes256gcm16").unwrap(), EspProposal::parse("aes128gcm16").unwrap()]
    );
    assert_eq!(t.encapsulation, Encapsulation::Auto);
    assert_eq!(t.replay_window, 1024);
    assert!(!t.child_sa_per_subnet_pair, "one CHILD SA for all subnets by default");
    assert!(c.tunnel("nope").is_none());
}

#[test]
fn load_reads_the_file_and_resolves_psk_file_relative_to_it() {
    let dir = tempfile::tempdir().unwrap();
    write_psk(dir.path(), "site-b.psk", b"  \tcorrect-horse-battery-staple-42 \r\n", 0o600);
    let cfg = dir.path().join("vpngw.toml");
    std::fs::write(&cfg, reference("site-b.psk")).unwrap();
    let c = load(&cfg).unwrap();
    assert_eq!(c.tunnels[0].psk.0.as_slice(), b"correct-horse-battery-staple-42");

    let missing = dir.path().join("nope.toml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.file, missing);
    assert!(e.to_string().contains("nope.toml") && e.message.contains("cannot read"), "{e}");

    std::fs::write(&cfg, b"[gateway]\nlocal_address = \"\xff\"\n").unwrap();
    assert!(load(&cfg).unwrap_err().message.contains("UTF-8"));
    assert!(load(dir.path()).unwrap_err().message.contains("not a regular file"));
}

#[test]
fn defaults() {
    let c = ok(&minimal("", ""));
    let g = &c.gateway;
    assert_eq!(g.tun_name, "vpn0");
    assert_eq!(g.control_socket, PathBuf::from("/run/vpngw/vpngw.sock"));
    assert_eq!((g.tun_mtu, g.ike_port, g.natt_port), (1400, 500, 4500));
    let t = &c.tunnels[0];
    assert_eq!(t.local_id, Identity::Ipv4("192.0.2.1".parse().unwrap()));
    assert_eq!(t.remote_id, Identity::Ipv4("192.0.2.2".parse().unwrap()));
    assert_eq!(t.start, StartAction::Respond);
    assert_eq!(t.encapsulation, Encapsulation::Auto);
    assert_eq!(t.replay_window, 1024);
    assert!(t.fragmentation);
    assert_eq!(t.fragment_size, config::DEFAULT_FRAGMENT_SIZE);
    assert_eq!(t.fragment_size, 1280);
    assert_eq!(t.ike_proposals, vec![IkeProposal::parse("aes256gcm16-prfsha256-x25519").unwrap()]);
    assert_eq!(t.esp_proposals, vec![EspProposal::parse("aes256gcm16").unwrap()]);
    assert_eq!(t.psk.0.as_slice(), b"0123456789abcdef0123");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(
        g.limits,
        config::Limits {
            cookie_threshold: 10,
            half_open_max: 1000,
            half_open_per_source: 5,
            child_sa_max: 32,
            ike_sa_per_peer_max: 5
        }
    );
    assert_eq!(g.limits, config::Limits::default());
    assert!(!g.allow_insecure_key_files);
    // Lifetimes and liveness.
    let h = |n: u64| Duration::from_secs(n * 3600);
    assert_eq!((t.timers.ike_rekey_time, t.timers.ike_life_time), (h(4), h(4) + Duration::from_secs(24 * 60)));
    assert_eq!((t.timers.child_rekey_time, t.timers.child_life_time), (h(1), h(1) + Duration::from_secs(6 * 60)));
    assert_eq!(t.timers.rekey_jitter_percent, 10);
    assert_eq!((t.timers.child_rekey_bytes, t.timers.child_rekey_packets), (None, None));
    assert_eq!((t.dpd.delay, t.dpd.timeout), (Some(Duration::from_secs(30)), Duration::from_secs(150)));
    assert_eq!(t.dpd.action, DpdAction::Restart);
    // They are the defaults declared with the settings.
    assert_eq!((t.timers, t.dpd), (config::SaTimers::default(), config::Dpd::default()));
}

#[test]
fn lifetime_and_liveness_values_are_taken() {
    let secs = Duration::from_secs;
    let c = ok(&minimal(
        "",
        "ike_rekey_time = \"1d\"\nike_life_time = 90000\nchild_rekey_time = \"10m\"\nchild_life_time = \"700s\"\n\
         rekey_jitter = \"25%\"\nchild_rekey_bytes = \"500M\"\nchild_rekey_packets = 1000000\n\
         dpd_delay = \"1m\"\ndpd_timeout = \"2m\"\ndpd_action = \"clear\"",
    ));
    let t = &c.tunnels[0];
    assert_eq!((t.timers.ike_rekey_time, t.timers.ike_life_time), (secs(86_400), secs(90_000)));
    assert_eq!((t.timers.child_rekey_time, t.timers.child_life_time), (secs(600), secs(700)));
    assert_eq!(t.timers.rekey_jitter_percent, 25);
    assert_eq!((t.timers.child_rekey_bytes, t.timers.child_rekey_packets), (Some(500 * 1024 * 1024), Some(1_000_000)));
    assert_eq!((t.dpd.delay, t.dpd.timeout, t.dpd.action), (Some(secs(60)), secs(120), DpdAction::Clear));

    // Integers are seconds / percent / counts; 0 turns DPD and the volume limits off.
    let c = ok(&minimal(
        "",
        "child_rekey_time = 7200\nrekey_jitter = 0\nchild_rekey_bytes = 0\nchild_rekey_packets = \"0\"\n\
         dpd_delay = \"0s\"\ndpd_timeout = 5\ndpd_action = \"restart\"",
    ));
    let t = &c.tunnels[0];
    // The default hard lifetime follows the configured rekey time.
    assert_eq!((t.timers.child_rekey_time, t.timers.child_life_time), (secs(7200), secs(7920)));
    assert_eq!(t.timers.rekey_jitter_percent, 0);
    assert_eq!((t.timers.child_rekey_bytes, t.timers.child_rekey_packets), (None, None));
    assert_eq!((t.dpd.delay, t.dpd.timeout, t.dpd.action), (None, secs(5), DpdAction::Restart));
    assert_eq!(ok(&minimal("", "dpd_delay = 0")).tunnels[0].dpd.delay, None);
    // A dpd_timeout shorter than a dpd_delay is fine while DPD is off.
    assert_eq!(ok(&minimal("", "dpd_delay = 0\ndpd_timeout = \"1s\"")).tunnels[0].dpd.timeout, secs(1));
    // Lifetimes are per tunnel.
    let two = format!(
        "{}\n[[tunnel]]\nname = \"c\"\nremote_address = \"192.0.2.3\"\npsk = \"0123456789abcdef0123\"\n\
         local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.3.0.0/24\"]\nike_rekey_time = \"2h\"\n",
        minimal("", "ike_rekey_time = \"3h\"")
    );
    let c = ok(&two);
    assert_eq!(
        (c.tunnels[0].timers.ike_rekey_time, c.tunnels[1].timers.ike_rekey_time),
        (secs(3 * 3600), secs(2 * 3600))
    );
}

#[test]
fn lifetime_and_liveness_errors() {
    let t = |extra: &str| minimal("", extra);
    // (extra lines, key expected in the error, line marker, message fragment)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("ike_rekey_time = \"4x\"", "ike_rekey_time", "ike_rekey_time", "is not a duration"),
        ("ike_rekey_time = \"0s\"", "ike_rekey_time", "ike_rekey_time", "minimum is 1s"),
        ("child_rekey_time = 0", "child_rekey_time", "child_rekey_time", "minimum is 1s"),
        ("child_rekey_time = -5", "child_rekey_time", "child_rekey_time", "negative"),
        ("child_rekey_time = \"400d\"", "child_rekey_time", "child_rekey_time", "maximum is 365d"),
        ("ike_life_time = \"4h\"", "ike_life_time", "ike_life_time", "longer than ike_rekey_time (4h)"),
        ("ike_rekey_time = \"2h\"\nike_life_time = \"1h\"", "ike_life_time", "ike_life_time", "1h must be longer"),
        ("child_life_time = \"30m\"", "child_life_time", "child_life_time", "longer than child_rekey_time (1h)"),
        ("child_rekey_time = \"2h\"\nchild_life_time = \"2h\"", "child_life_time", "child_life_time", "hard limit"),
        ("rekey_jitter = \"100%\"", "rekey_jitter", "rekey_jitter", "below 100%"),
        ("rekey_jitter = 150", "rekey_jitter", "rekey_jitter", "outside 0..=100%"),
        ("rekey_jitter = \"ten\"", "rekey_jitter", "rekey_jitter", "not a percentage"),
        ("child_rekey_bytes = \"5T\"", "child_rekey_bytes", "child_rekey_bytes", "not a count"),
        ("child_rekey_packets = -1", "child_rekey_packets", "child_rekey_packets", "negative"),
        ("dpd_delay = \"soon\"", "dpd_delay", "dpd_delay", "is not a duration"),
        ("dpd_timeout = \"10s\"", "dpd_timeout", "dpd_timeout", "dpd_timeout (10s) is shorter than dpd_delay (30s)"),
        (
            "dpd_delay = \"5m\"",
            "dpd_delay",
            "dpd_delay",
            "dpd_timeout (150s, the default) is shorter than dpd_delay (5m)",
        ),
        ("dpd_delay = \"1m\"\ndpd_timeout = 59", "dpd_timeout", "dpd_timeout", "shorter than dpd_delay (1m)"),
        ("dpd_delay = 0\ndpd_timeout = 0", "dpd_timeout", "dpd_timeout", "minimum is 1s"),
        ("dpd_action = \"hold\"", "dpd_action", "dpd_action", "\"restart\", \"clear\""),
    ];
    for &(extra, key, marker, msg) in cases {
        tunnel0_err(&t(extra), key, marker, msg);
    }
    // The second tunnel's error names it.
    let text = format!(
        "{}\n[[tunnel]]\nname = \"c\"\nremote_address = \"192.0.2.3\"\npsk = \"0123456789abcdef0123\"\n\
         local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.3.0.0/24\"]\nchild_life_time = \"1m\"\n",
        minimal("", "")
    );
    let e = err(&text);
    assert_err(&e, line_with(&text, "child_life_time"), "tunnel[1].child_life_time", "longer than");
    assert!(e.to_string().contains("tunnel[1] (c) `child_life_time`"), "{e}");
    // Wrong TOML types are located by the parser.
    for bad in ["ike_rekey_time = 1.5", "dpd_delay = true", "child_rekey_bytes = [1]"] {
        let text = t(bad);
        let k = bad.split(' ').next().unwrap();
        assert_err(&err(&text), line_with(&text, k), &format!("tunnel[0].{k}"), "expected an integer or a string");
    }
    let text = t("dpd_action = 1");
    assert_err(&err(&text), line_with(&text, "dpd_action"), "tunnel[0].dpd_action", "invalid type");
}

#[test]
fn encapsulation_takes_auto_raw_and_udp_and_check_prints_it_back() {
    for (word, want) in [("auto", Encapsulation::Auto), ("raw", Encapsulation::Raw), ("udp", Encapsulation::Udp)] {
        let c = ok(&minimal("", &format!("encapsulation = \"{word}\"")));
        assert_eq!(c.tunnels[0].encapsulation, want);
        assert_eq!(want.as_str(), word);
        let shown = c.effective_toml();
        assert!(shown.contains(&format!("encapsulation = \"{word}\"\n")), "{shown}");
    }
    assert_eq!(ok(&minimal("", "")).tunnels[0].encapsulation, Encapsulation::Auto, "the default");
}

#[test]
fn explicit_values_are_taken() {
    let c = ok(&minimal(
        "tun_mtu = 1280\nike_port = 1500\nnatt_port = 14500\ncontrol_socket = \"run/ctl.sock\"",
        "start = \"respond\"\nencapsulation = \"udp\"\nreplay_window = 1048576\nlocal_id = \"ops@example.net\"",
    ));
    assert_eq!((c.gateway.tun_mtu, c.gateway.ike_port, c.gateway.natt_port), (1280, 1500, 14500));
    assert_eq!(c.gateway.control_socket, PathBuf::from("/etc/vpngw/run/ctl.sock"));
    let t = &c.tunnels[0];
    assert_eq!((t.start, t.encapsulation, t.replay_window), (StartAction::Respond, Encapsulation::Udp, 1 << 20));
    assert_eq!(t.local_id, Identity::Rfc822("ops@example.net".into()));

    let c = ok(&minimal("", "child_sa_per_subnet_pair = true")
        .replace("local_subnets = [\"10.1.0.0/24\"]", "local_subnets = [\"10.1.0.0/24\", \"10.3.0.0/24\"]"));
    let t = &c.tunnels[0];
    assert!(t.child_sa_per_subnet_pair);
    assert_eq!(t.local_subnets.len(), 2);
    let text = minimal("", "child_sa_per_subnet_pair = \"yes\"");
    assert_err(
        &err(&text),
        line_with(&text, "child_sa_per_subnet_pair"),
        "tunnel[0].child_sa_per_subnet_pair",
        "invalid type",
    );
}

#[test]
fn limits_are_taken_and_checked() {
    let c = ok(&minimal(
        "cookie_threshold = 0\nhalf_open_max = 20000\nhalf_open_per_source = 2\nchild_sa_max = 1\n\
         ike_sa_per_peer_max = 3\nallow_insecure_key_files = false",
        "",
    ));
    let l = c.gateway.limits;
    assert_eq!(
        (l.cookie_threshold, l.half_open_max, l.half_open_per_source, l.child_sa_max, l.ike_sa_per_peer_max),
        (0, 20_000, 2, 1, 3)
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(ok(&minimal("allow_insecure_key_files = true", "")).gateway.allow_insecure_key_files);

    // (setting, key, message fragment); every setting is on line 3.
    let cases: &[(&str, &str, &str)] = &[
        ("cookie_threshold = -1", "cookie_threshold", "-1 is outside 0..=1000000"),
        ("half_open_max = 0", "half_open_max", "0 is outside 1..=1000000"),
        ("half_open_max = 1000001", "half_open_max", "outside 1..=1000000"),
        ("half_open_per_source = 0", "half_open_per_source", "outside 1..="),
        ("child_sa_max = 0", "child_sa_max", "outside 1..="),
        ("ike_sa_per_peer_max = -5", "ike_sa_per_peer_max", "outside 1..="),
        ("child_sa_max = \"many\"", "child_sa_max", "invalid type"),
        ("allow_insecure_key_files = \"yes\"", "allow_insecure_key_files", "invalid type"),
    ];
    for (setting, key, msg) in cases {
        assert_err(&err(&minimal(setting, "")), 3, &format!("gateway.{key}"), msg);
    }

    // Combinations in which a limit cannot take effect are warnings naming the line.
    let c = ok(&minimal("half_open_max = 10", ""));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains(&format!("{FILE}:3: gateway: cookie_threshold (10) is not below half_open_max (10)"))),
        "{:?}",
        c.warnings
    );
    let c = ok(&minimal("cookie_threshold = 2\nhalf_open_max = 4\nhalf_open_per_source = 8", ""));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains(":5: gateway: half_open_per_source (8) is above half_open_max (4)"),
        "{:?}",
        c.warnings
    );
}

/// Sets `path` to `mode`.
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn psk_files_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a.toml");
    let key = write_psk(dir.path(), "k.psk", b"0123456789abcdef0123456789abcdef\n", 0o600);
    let base = replace_line(&minimal("", ""), "psk =", "psk_file = \"k.psk\"");
    let line = line_with(&base, "psk_file");
    for mode in [0o600, 0o400, 0o700] {
        chmod(&key, mode);
        let c = parse(&base, &cfg).unwrap_or_else(|e| panic!("mode {mode:o}: {e}"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610] {
        chmod(&key, mode);
        let e = parse(&base, &cfg).unwrap_err();
        let shown = e.to_string();
        assert_eq!((e.line, e.key.as_deref()), (Some(line), Some("tunnel[0].psk_file")), "{shown}");
        assert!(shown.contains(&format!("{}:{line}: tunnel[0] (site-b) `psk_file`: ", cfg.display())), "{shown}");
        let what = format!("{} grants permissions to group or others (mode {mode:04o})", key.display());
        assert!(e.message.contains(&what), "{shown}");
        assert!(e.message.contains("chmod 600 it, or set [gateway] allow_insecure_key_files = true"), "{shown}");
    }
    // The operator may opt out: then a warning naming file, line, key and the problem.
    chmod(&key, 0o644);
    let allowed = base.replace("[gateway]\n", "[gateway]\nallow_insecure_key_files = true\n");
    let c = parse(&allowed, &cfg).unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert!(w.starts_with(&format!("{}:{}: tunnel[0].psk_file: ", cfg.display(), line + 1)), "{w}");
    assert!(w.contains("mode 0644") && w.contains("accepted because allow_insecure_key_files = true"), "{w}");
    assert!(!w.contains("0123456789abcdef"), "{w}");
}

#[test]
fn psk_files_must_belong_to_root() {
    if !testkit::is_root() {
        let why = "needs root to give a file away (chown)".to_owned();
        return testkit::skip("psk_files_must_belong_to_root", testkit::Skip::Environment(why));
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a.toml");
    let key = write_psk(dir.path(), "k.psk", b"0123456789abcdef0123456789abcdef\n", 0o600);
    std::os::unix::fs::chown(&key, Some(65534), Some(65534)).unwrap();
    let base = replace_line(&minimal("", ""), "psk =", "psk_file = \"k.psk\"");
    let e = parse(&base, &cfg).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("tunnel[0].psk_file"));
    assert_eq!(e.line, Some(line_with(&base, "psk_file")));
    assert!(e.message.contains(&format!("{} is owned by uid 65534, not by root: chown root it", key.display())), "{e}");
    let allowed = base.replace("[gateway]\n", "[gateway]\nallow_insecure_key_files = true\n");
    let c = parse(&allowed, &cfg).unwrap();
    assert!(c.warnings[0].contains("owned by uid 65534"), "{:?}", c.warnings);
    // The same file owned by root is fine.
    std::os::unix::fs::chown(&key, Some(0), Some(0)).unwrap();
    assert!(parse(&base, &cfg).unwrap().warnings.is_empty());
}

#[test]
fn a_config_with_an_inline_psk_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("a.toml");
    let text = minimal("", "");
    std::fs::write(&cfg, &text).unwrap();
    chmod(&cfg, 0o644);
    let e = load(&cfg).unwrap_err();
    let line = line_with(&text, "psk =");
    assert_eq!((e.file.as_path(), e.line, e.key.as_deref()), (cfg.as_path(), Some(line), Some("tunnel[0].psk")));
    let shown = e.to_string();
    assert!(shown.starts_with(&format!("{}:{line}: tunnel[0] (site-b) `psk`: ", cfg.display())), "{shown}");
    assert!(
        e.message.contains(&format!(
            "{} holds this key inline and grants permissions to group or others (mode 0644): chmod 600",
            cfg.display()
        )),
        "{shown}"
    );
    assert!(!shown.contains("0123456789abcdef0123"), "{shown}");
    // `parse` has no file to examine; a private file loads; so does a readable one without
    // an inline key.
    assert!(parse(&text, &cfg).is_ok());
    chmod(&cfg, 0o600);
    assert!(load(&cfg).unwrap().warnings.is_empty());
    let key = write_psk(dir.path(), "k.psk", b"0123456789abcdef0123456789abcdef\n", 0o600);
    std::fs::write(&cfg, replace_line(&text, "psk =", &format!("psk_file = \"{}\"", key.display()))).unwrap();
    chmod(&cfg, 0o644);
    assert!(load(&cfg).unwrap().warnings.is_empty());
    // Opting out turns the error into a warning.
    std::fs::write(&cfg, minimal("allow_insecure_key_files = true", "")).unwrap();
    chmod(&cfg, 0o640);
    let c = load(&cfg).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("holds this key inline") && w.contains("mode 0640")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn mixed_subnet_families_and_ipv6_wan_are_fine() {
    let text = minimal("", "").replace("[\"10.2.0.0/24\"]", "[\"10.2.0.0/24\", \"2001:db8:2::/48\"]");
    let c = ok(&text);
    assert_eq!(c.tunnels[0].remote_subnets.len(), 2);
    let v6 = minimal("", "").replace("192.0.2.1", "2001:db8::1").replace("192.0.2.2", "2001:db8::2");
    assert_eq!(ok(&v6).tunnels[0].remote_id, Identity::Ipv6("2001:db8::2".parse().unwrap()));
}

#[test]
fn ipv6_subnets_need_the_ipv6_minimum_mtu() {
    let v6 = |mtu: u16| {
        minimal(&format!("tun_mtu = {mtu}"), "").replace("[\"10.2.0.0/24\"]", "[\"10.2.0.0/24\", \"fd00:b::/64\"]")
    };
    assert_eq!(ok(&v6(1280)).gateway.tun_mtu, 1280);
    let text = v6(1279);
    assert_err(&err(&text), line_with(&text, "tun_mtu"), "gateway.tun_mtu", "1279 is below 1280, the IPv6 minimum");
    // An IPv6 local subnet alone counts too; without any IPv6 subnet 1279 is fine.
    let local_v6 = minimal("tun_mtu = 1279", "").replace("[\"10.1.0.0/24\"]", "[\"fd00:a::/64\"]");
    assert_err(&err(&local_v6), 3, "gateway.tun_mtu", "IPv6 minimum");
    assert_eq!(ok(&minimal("tun_mtu = 1279", "")).gateway.tun_mtu, 1279);
}

#[test]
fn error_format_matches_the_documented_example() {
    let text = minimal("", "").replace("[\"10.1.0.0/24\"]", "[\"10.1.0/24\"]");
    let e = err(&text);
    let line = line_with(&text, "local_subnets");
    assert!(
        e.to_string().starts_with(&format!(
            "/etc/vpngw/a.toml:{line}: tunnel[0] (site-b) `local_subnets`: \"10.1.0/24\" is not a CIDR subnet"
        )),
        "{e}"
    );
    assert_eq!(e.tunnel.as_deref(), Some("site-b"));
}

#[test]
fn unknown_keys_are_named_with_the_valid_ones() {
    let text = minimal("", "lifetime = 3600");
    let e = err(&text);
    assert_err(&e, line_with(&text, "lifetime"), "tunnel[0].lifetime", "unknown field `lifetime`");
    assert!(e.message.contains("`remote_subnets`") && e.message.contains("`replay_window`"), "{e}");

    let text = minimal("tun_nmae = \"vpn1\"", "");
    assert_err(&err(&text), 3, "gateway.tun_nmae", "expected one of");

    let text = format!("{}\n[extra]\nx = 1\n", minimal("", ""));
    assert_err(&err(&text), line_with(&text, "[extra]"), "extra", "unknown field `extra`");
}

#[test]
fn malformed_addresses_and_subnets() {
    let text = replace_line(&minimal("", ""), "local_address", "local_address = \"192.0.2\"");
    assert_err(&err(&text), 2, "gateway.local_address", "not an IP address");
    let text = replace_line(&minimal("", ""), "remote_address", "remote_address = \"gw-b.example.net\"");
    assert_err(&err(&text), line_with(&text, "remote_address"), "tunnel[0].remote_address", "not an IP address");
    let text = replace_line(&minimal("", ""), "remote_address", "remote_address = \"0.0.0.0\"");
    assert_err(&err(&text), line_with(&text, "remote_address"), "tunnel[0].remote_address", "not a unicast");
    let text = replace_line(&minimal("", ""), "remote_address", "remote_address = \"2001:db8::2\"");
    assert_err(&err(&text), line_with(&text, "remote_address"), "tunnel[0].remote_address", "same address family");
    // A bad element on a continuation line of a multi-line array is located on its line.
    let text = replace_line(
        &minimal("", ""),
        "remote_subnets",
        "remote_subnets = [\n  \"10.2.0.0/24\",\n  \"10.3.0.0/33\",\n]",
    );
    assert_err(&err(&text), line_with(&text, "10.3.0.0/33"), "tunnel[0].remote_subnets", "bad prefix length");
}

#[test]
fn psk_rules() {
    let base = minimal("", "");
    let psk_line = line_with(&base, "psk =");

    let text = replace_line(&base, "psk =", "");
    let e = err(&text);
    assert_err(&e, line_with(&text, "[[tunnel]]"), "tunnel[0].psk", "exactly one of");

    let text = replace_line(&base, "psk =", "psk = \"0123456789abcdef\"\npsk_file = \"/nonexistent/x.psk\"");
    assert_err(&err(&text), psk_line + 1, "tunnel[0].psk_file", "only one of");

    let text = replace_line(&base, "psk =", "psk = \"\"");
    assert_err(&err(&text), psk_line, "tunnel[0].psk", "empty");

    let text = replace_line(&base, "psk =", "psk_file = \"missing.psk\"");
    let e = err(&text);
    assert_err(&e, psk_line, "tunnel[0].psk_file", "cannot read /etc/vpngw/missing.psk");

    let dir = tempfile::tempdir().unwrap();
    write_psk(dir.path(), "empty.psk", b" \n\n", 0o600);
    let cfg = dir.path().join("a.toml");
    let text = replace_line(&base, "psk =", "psk_file = \"empty.psk\"");
    let e = parse(&text, &cfg).unwrap_err();
    assert_eq!(e.line, Some(psk_line));
    assert!(e.message.contains("empty.psk") && e.message.contains("no key"), "{e}");
}

#[test]
fn proposal_rules() {
    let base = minimal("", "ike_proposals = [\"aes256gcm16-prfsha256-x25519\"]\nesp_proposals = [\"aes256gcm16\"]");
    let text = replace_line(&base, "ike_proposals", "ike_proposals = [\"aes256gcm16-prfsha256-modp8192\"]");
    assert_err(
        &err(&text),
        line_with(&text, "ike_proposals"),
        "tunnel[0].ike_proposals",
        "unknown proposal keyword \"modp8192\"",
    );
    let text = replace_line(&base, "esp_proposals", "esp_proposals = [\"aes256gcm16\", \"3des\"]");
    assert_err(
        &err(&text),
        line_with(&text, "esp_proposals"),
        "tunnel[0].esp_proposals",
        "unknown proposal keyword \"3des\"",
    );
    let text = replace_line(&base, "ike_proposals", "ike_proposals = []");
    assert_err(&err(&text), line_with(&text, "ike_proposals"), "tunnel[0].ike_proposals", "empty");
    let text = replace_line(&base, "esp_proposals", "esp_proposals = []");
    assert_err(&err(&text), line_with(&text, "esp_proposals"), "tunnel[0].esp_proposals", "empty");
}

#[test]
fn subnet_lists_must_be_present_and_non_empty() {
    let base = minimal("", "");
    let text = replace_line(&base, "local_subnets", "local_subnets = []");
    assert_err(&err(&text), line_with(&text, "local_subnets"), "tunnel[0].local_subnets", "empty");
    let text = replace_line(&base, "remote_subnets", "remote_subnets = []");
    assert_err(&err(&text), line_with(&text, "remote_subnets"), "tunnel[0].remote_subnets", "empty");
    let text = replace_line(&base, "remote_subnets", "");
    assert_err(&err(&text), line_with(&text, "[[tunnel]]"), "tunnel[0].remote_subnets", "missing");
}

#[test]
fn duplicate_tunnel_names() {
    let one = minimal("", "");
    let tunnel = one.split_once("[[tunnel]]").unwrap().1.replace("10.2.0.0/24", "10.3.0.0/24");
    let text = format!("{one}\n[[tunnel]]{tunnel}");
    let second_name = text.lines().enumerate().filter(|(_, l)| l.starts_with("name =")).nth(1).unwrap().0 + 1;
    let e = err(&text);
    assert_err(&e, second_name, "tunnel[1].name", "duplicate tunnel name \"site-b\"");
    let ok_text = text.replacen("name = \"site-b\"\nremote_address = \"192.0.2.2\"\npsk = \"0123456789abcdef0123\"\nlocal_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.3", "name = \"site-c\"\nremote_address = \"192.0.2.2\"\npsk = \"0123456789abcdef0123\"\nlocal_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.3", 1);
    assert_eq!(ok(&ok_text).tunnels.len(), 2);
}

#[test]
fn tun_name_rules() {
    for bad in ["", "a-very-long-name", "vpn/0", "vpn 0", "vpn\\t0"] {
        let text = minimal(&format!("tun_name = \"{bad}\""), "");
        assert_err(&err(&text), 3, "gateway.tun_name", "");
    }
    assert_eq!(ok(&minimal("tun_name = \"fifteen-bytes-x\"", "")).gateway.tun_name, "fifteen-bytes-x");
}

#[test]
fn toml_syntax_and_type_errors() {
    let text = replace_line(&minimal("", ""), "remote_address", "remote_address = \"192.0.2.2");
    let e = err(&text);
    assert_eq!(e.line, Some(line_with(&text, "remote_address")), "{e}");
    assert!(e.message.starts_with("invalid TOML"), "{e}");

    let text = minimal("tun_mtu = \"1400\"", "");
    assert_err(&err(&text), 3, "gateway.tun_mtu", "invalid type: string");
    let text = minimal("tun_mtu = 70000", "");
    assert_err(&err(&text), 3, "gateway.tun_mtu", "70000");
    let text = minimal("", "replay_window = -1");
    assert_err(&err(&text), line_with(&text, "replay_window"), "tunnel[0].replay_window", "-1");
    let text = replace_line(&minimal("", ""), "local_subnets", "local_subnets = \"10.1.0.0/24\"");
    assert_err(&err(&text), line_with(&text, "local_subnets"), "tunnel[0].local_subnets", "expected a sequence");
    let text = minimal("", "").replace("[[tunnel]]", "[tunnel]");
    assert!(err(&text).message.contains("invalid type"));
}

#[test]
fn range_and_enum_checks() {
    let t = |extra: &str| minimal("", extra);
    let text = t("start = \"trap\"");
    assert_err(&err(&text), line_with(&text, "start"), "tunnel[0].start", "\"initiate\", \"respond\"");
    let text = t("encapsulation = \"esp\"");
    assert_err(&err(&text), line_with(&text, "encapsulation"), "tunnel[0].encapsulation", "\"auto\", \"raw\", \"udp\"");
    for w in ["0", "1048577"] {
        let text = t(&format!("replay_window = {w}"));
        assert_err(&err(&text), line_with(&text, "replay_window"), "tunnel[0].replay_window", "outside");
    }
    for size in ["575", "0", "-1", "65536"] {
        let text = t(&format!("fragment_size = {size}"));
        assert_err(&err(&text), line_with(&text, "fragment_size"), "tunnel[0].fragment_size", "outside 576..=65535");
    }
    let text = t("fragmentation = \"yes\"");
    assert_err(&err(&text), line_with(&text, "fragmentation"), "tunnel[0].fragmentation", "invalid type");
    let v6 = t("fragment_size = 1279").replace("192.0.2.1", "2001:db8::1").replace("192.0.2.2", "2001:db8::2");
    assert_err(&err(&v6), line_with(&v6, "fragment_size"), "tunnel[0].fragment_size", "outside 1280..=65535");
    let c = ok(&t("fragmentation = false\nfragment_size = 576"));
    assert_eq!((c.tunnels[0].fragmentation, c.tunnels[0].fragment_size), (false, 576));
    assert_err(&err(&minimal("tun_mtu = 575", "")), 3, "gateway.tun_mtu", "below 576");
    assert_err(&err(&minimal("ike_port = 0", "")), 3, "gateway.ike_port", "port 0");
    assert_err(&err(&minimal("ike_port = 4500", "")), 3, "gateway.ike_port", "distinct");
    assert_err(&err(&minimal("ike_port = 4600\nnatt_port = 4600", "")), 4, "gateway.natt_port", "distinct");
    let v6 = minimal("tun_mtu = 1200", "").replace("10.2.0.0/24", "2001:db8::/64");
    assert_err(&err(&v6), 3, "gateway.tun_mtu", "IPv6");
    let text = replace_line(&minimal("", ""), "name =", "name = \"site b\"");
    assert_err(&err(&text), line_with(&text, "name ="), "tunnel[0].name", "whitespace");
    let text = replace_line(&minimal("", ""), "name =", "");
    assert_err(&err(&text), line_with(&text, "[[tunnel]]"), "tunnel[0].name", "missing");
}

#[test]
fn missing_gateway_or_local_address() {
    let e = err("[[tunnel]]\nname = \"x\"\n");
    assert_eq!(e.key.as_deref(), Some("gateway"));
    let e = err(&replace_line(&minimal("", ""), "local_address", ""));
    assert_err(&e, 1, "gateway.local_address", "missing");
}

#[test]
fn warnings_never_carry_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write_psk(dir.path(), "short.psk", b"hunter2\n", 0o644);
    let text = replace_line(&minimal("allow_insecure_key_files = true", ""), "psk =", "psk_file = \"short.psk\"")
        .replace("[\"10.1.0.0/24\"]", "[\"10.1.0.77/24\"]");
    let c = parse(&text, &dir.path().join("a.toml")).unwrap();
    assert_eq!(c.tunnels[0].psk.0.as_slice(), b"hunter2");
    assert_eq!(c.tunnels[0].local_subnets, vec![TrafficSelector::parse_cidr("10.1.0.0/24").unwrap()]);
    let all = c.warnings.join("\n");
    assert!(all.contains("grants permissions to group or others (mode 0644)"), "{all}");
    assert!(all.contains("accepted because allow_insecure_key_files = true"), "{all}");
    assert!(all.contains("shorter than 16 bytes"), "{all}");
    assert!(all.contains("host bits"), "{all}");
    assert_eq!(c.warnings.len(), 3, "{all}");
    assert!(!all.contains("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));

    let overlap = format!(
        "{}\n[[tunnel]]\nname = \"c\"\nremote_address = \"192.0.2.3\"\npsk = \"0123456789abcdef0123\"\n\
         local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.2.0.128/25\"]\n",
        minimal("", "")
    );
    let c = ok(&overlap);
    assert!(c.warnings.iter().any(|w| w.contains("overlaps")), "{:?}", c.warnings);
    assert!(ok("[gateway]\nlocal_address = \"192.0.2.1\"\n").warnings.iter().any(|w| w.contains("no [[tunnel]]")));
}

#[test]
fn errors_never_echo_an_inline_psk() {
    let text = minimal("", "start = \"bogus\"").replace("0123456789abcdef0123", "s3cr3t-inline-key");
    let e = err(&text);
    assert!(!e.to_string().contains("s3cr3t") && !format!("{e:?}").contains("s3cr3t"));
    let text = minimal("", "").replace("psk = \"0123456789abcdef0123\"", "psk = 42");
    assert!(!err(&text).to_string().contains("42\""));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC*") {
            let _ = parse(&s, Path::new("/nonexistent/a.toml"));
        }

        #[test]
        fn toml_like_text_never_panics(s in "(\\[\\[?(gateway|tunnel)\\]\\]?\n|[a-z_]{1,14} = (\"[ -~]{0,20}\"|-?[0-9]{1,8}|\\[(\"[0-9a-f:./]{0,14}\",? ?){0,3}\\]|true)\n){0,12}") {
            let _ = parse(&s, Path::new("/nonexistent/a.toml"));
        }

        #[test]
        fn lifetime_values_never_panic(
            k in "(ike|child)_(rekey|life)_time|rekey_jitter|child_rekey_(bytes|packets)|dpd_(delay|timeout)",
            v in "\"[0-9a-zA-Z% .+-]{0,24}\"|-?[0-9]{1,19}",
        ) {
            let _ = parse(&minimal("", &format!("{k} = {v}")), Path::new(FILE));
        }

        #[test]
        fn truncated_or_edited_valid_text_never_panics(cut in 0usize..400, ins in "[ -~\n]{0,8}") {
            let base = minimal("tun_mtu = 1400", "start = \"initiate\"\nesp_proposals = [\"aes128gcm16\"]");
            let at = (0..=cut.min(base.len())).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
            let edited = format!("{}{ins}{}", &base[..at], &base[at..]);
            let _ = parse(&edited, Path::new(FILE));
            let _ = parse(&base[..at], Path::new(FILE));
        }
    }
}

/// The shipped examples (and the reference's example) parse and mirror each other.
#[test]
fn shipped_examples_parse_and_pair_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let psk = write_psk(dir.path(), "k.psk", b"0123456789abcdef0123456789abcdef\n", 0o600);
    let load_example = |rel: &str, psk_path: &str| {
        let text = std::fs::read_to_string(root.join(rel)).unwrap().replace(psk_path, psk.to_str().unwrap());
        parse(&text, &root.join(rel)).unwrap_or_else(|e| panic!("{e}"))
    };
    let a = load_example("examples/site-a.toml", "/etc/vpngw/site-b.psk");
    let b = load_example("examples/site-b.toml", "/etc/vpngw/site-a.psk");
    assert!(a.warnings.is_empty() && b.warnings.is_empty(), "{:?} {:?}", a.warnings, b.warnings);
    let (ta, tb) = (&a.tunnels[0], &b.tunnels[0]);
    assert_eq!((ta.start, tb.start), (StartAction::Initiate, StartAction::Respond));
    assert_eq!(ta.remote_address, b.gateway.local_address);
    assert_eq!(tb.remote_address, a.gateway.local_address);
    assert_eq!((&ta.local_id, &ta.remote_id), (&tb.remote_id, &tb.local_id));
    assert_eq!((&ta.local_subnets, &ta.remote_subnets), (&tb.remote_subnets, &tb.local_subnets));
    assert_eq!((&ta.ike_proposals, &ta.esp_proposals), (&tb.ike_proposals, &tb.esp_proposals));

    // The commented lifetime keys, uncommented, state the defaults.
    for rel in ["examples/site-a.toml", "examples/site-b.toml"] {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        let (head, tail) = text.split_once("# Lifetimes and liveness").unwrap();
        let keys: String =
            tail.lines().skip(1).filter_map(|l| l.strip_prefix("# ")).map(|l| format!("{l}\n")).collect();
        assert_eq!(keys.lines().count(), 8, "{keys}");
        let text = format!("{head}{keys}").replace("/etc/vpngw/site-b.psk", psk.to_str().unwrap());
        let text = text.replace("/etc/vpngw/site-a.psk", psk.to_str().unwrap());
        let c = parse(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
        let (x, d) = (&c.tunnels[0], if rel.contains("site-a") { ta } else { tb });
        assert_eq!((x.timers, x.dpd), (d.timers, d.dpd));
    }

    let doc = std::fs::read_to_string(root.join("README.md")).unwrap();
    let reference = doc.split("## Configuration reference").nth(1).unwrap();
    let block = reference.split("```toml\n").nth(1).and_then(|s| s.split("```").next()).unwrap();
    let c = parse(&block.replace("/etc/vpngw/site-b.psk", psk.to_str().unwrap()), Path::new(FILE)).unwrap();
    assert_eq!(c.tunnels[0].name, "site-b");
}

#[test]
fn ike_version_is_1_or_2_and_defaults_to_2() {
    assert_eq!(ok(&minimal("", "")).tunnels[0].ike_version, IkeVersion::V2);
    assert_eq!(ok(&minimal("", "ike_version = 2")).tunnels[0].ike_version, IkeVersion::V2);
    for bad in ["0", "3", "-1", "20"] {
        let text = minimal("", &format!("ike_version = {bad}"));
        let e = err(&text);
        assert_err(
            &e,
            line_with(&text, "ike_version"),
            "tunnel[0].ike_version",
            &format!("{bad} is not an IKE version"),
        );
        assert_eq!(e.tunnel.as_deref(), Some("site-b"));
    }
    for bad in ["\"1\"", "\"ikev1\"", "1.0", "true"] {
        let text = minimal("", &format!("ike_version = {bad}"));
        assert_err(&err(&text), line_with(&text, "ike_version"), "tunnel[0].ike_version", "invalid type");
    }
}

/// What `ike_version = 1` changes: the default IKE proposal (IKEv2's is an AEAD), no
/// fragmentation, one SA per subnet pair; everything else as with IKEv2.
#[test]
fn ikev1_tunnel_defaults() {
    let v2 = ok(&minimal("", "dpd_delay = \"10s\"\nike_rekey_time = \"8h\""));
    let c = ok(&minimal("", "ike_version = 1\ndpd_delay = \"10s\"\nike_rekey_time = \"8h\""));
    let (t, t2) = (&c.tunnels[0], &v2.tunnels[0]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(t.ike_version, IkeVersion::V1);
    assert_eq!(t.ike_proposals, vec![IkeProposal::parse(config::DEFAULT_IKE_PROPOSAL_V1).unwrap()]);
    assert_eq!(t.ike_proposals[0].to_string(), "aes256-sha256-prfsha256-modp2048");
    assert_eq!(t.esp_proposals, t2.esp_proposals, "AES-GCM is fine in Quick Mode");
    assert!(!t.fragmentation && t2.fragmentation);
    assert!(t.child_sa_per_subnet_pair && !t2.child_sa_per_subnet_pair);
    assert_eq!(
        (t.timers, t.dpd, t.local_id.clone(), t.remote_id.clone()),
        (t2.timers, t2.dpd, t2.local_id.clone(), t2.remote_id.clone())
    );
    assert_eq!(
        (&t.local_subnets, &t.remote_subnets, t.start, t.encapsulation),
        (&t2.local_subnets, &t2.remote_subnets, t2.start, t2.encapsulation)
    );
    // Explicitly off is what IKEv1 does anyway; one subnet pair is one SA either way.
    let c = ok(&minimal("", "ike_version = 1\nfragmentation = false\nchild_sa_per_subnet_pair = false"));
    assert!(!c.tunnels[0].fragmentation && c.tunnels[0].child_sa_per_subnet_pair);
    // The classic profile: prf keywords that say what IKEv1 does anyway are accepted.
    let c = ok(&minimal(
        "",
        "ike_version = 1\nike_proposals = [\"aes128-sha1-modp1024\", \"aes256-sha256-prfsha256-modp2048\", \
         \"aes256-aes128-sha384-sha1-prfsha1-prfsha384-ecp384\"]\nesp_proposals = [\"aes128-sha1-modp1024\", \
         \"aes256gcm16-modp2048\"]",
    ));
    assert_eq!(c.tunnels[0].ike_proposals.len(), 3);
}

#[test]
fn ikev1_refuses_what_it_cannot_negotiate() {
    let t = |extra: &str| minimal("", &format!("ike_version = 1\n{extra}"));
    // (extra lines, key (also on the line the error names), message fragment)
    let cases: &[(&str, &str, &str)] = &[
        (
            "ike_proposals = [\"aes128-sha1-modp1024\", \"aes256gcm16-prfsha256-x25519\"]",
            "ike_proposals",
            "\"aes256gcm16-prfsha256-x25519\" uses the AEAD cipher aes256gcm16, which IKEv1 phase 1 does not have",
        ),
        ("ike_proposals = [\"chacha20poly1305-prfsha256-ecp256\"]", "ike_proposals", "AEAD cipher chacha20poly1305"),
        (
            "ike_proposals = [\"aes128-sha256-prfsha1-modp2048\"]",
            "ike_proposals",
            "names prfsha1, but IKEv1 (ike_version = 1) has no separate PRF: it is the HMAC of the hash, here prfsha256 for sha256",
        ),
        (
            "ike_proposals = [\"aes128-sha256-sha1-prfsha256-modp2048\"]",
            "ike_proposals",
            "does not name prfsha1, yet IKEv1 (ike_version = 1) uses it with sha1",
        ),
        (
            "esp_proposals = [\"aes256gcm16\", \"chacha20poly1305\"]",
            "esp_proposals",
            "\"chacha20poly1305\" uses chacha20poly1305, for which IKEv1 peers use no transform number",
        ),
        (
            "esp_proposals = [\"aes256gcm16-modp2048-esn\"]",
            "esp_proposals",
            "extended sequence numbers, which vpngw does not negotiate over IKEv1",
        ),
        ("fragmentation = true", "fragmentation", "does not fragment IKEv1 messages"),
        ("fragment_size = 1400", "fragment_size", "does not fragment IKEv1 messages"),
        ("fragmentation = false\nfragment_size = 576", "fragment_size", "remove this key"),
    ];
    for &(extra, key, msg) in cases {
        let e = tunnel0_err(&t(extra), key, key, msg);
        assert!(e.message.contains("ike_version = 1"), "the reason names the version: {e}");
        // The same settings are fine with IKEv2.
        ok(&minimal("", extra));
    }
    // A proposal on its own line of a multi-line list is named at that line.
    let text = t("ike_proposals = [\n  \"aes128-sha1-modp1024\",\n  \"aes128gcm16-prfsha256-ecp256\",\n]");
    assert_err(&err(&text), line_with(&text, "aes128gcm16"), "tunnel[0].ike_proposals", "AEAD");

    // Several subnet pairs cannot share one SA.
    let two = t("child_sa_per_subnet_pair = false")
        .replace("local_subnets = [\"10.1.0.0/24\"]", "local_subnets = [\"10.1.0.0/24\", \"10.3.0.0/24\"]");
    assert_err(
        &err(&two),
        line_with(&two, "child_sa_per_subnet_pair"),
        "tunnel[0].child_sa_per_subnet_pair",
        "one subnet pair per SA, so the 2 pairs of local_subnets and remote_subnets get one SA each",
    );
    ok(&minimal("", "child_sa_per_subnet_pair = false")
        .replace("local_subnets = [\"10.1.0.0/24\"]", "local_subnets = [\"10.1.0.0/24\", \"10.3.0.0/24\"]"));
    // An IPv6 local subnet pairs with nothing: still one pair, so still fine.
    let c =
        ok(&t("")
            .replace("local_subnets = [\"10.1.0.0/24\"]", "local_subnets = [\"10.1.0.0/24\", \"2001:db8:1::/64\"]"));
    assert_eq!(c.tunnels[0].local_subnets.len(), 2);
    // No pair of the same family at all: nothing Quick Mode could negotiate.
    let text = t("").replace("remote_subnets = [\"10.2.0.0/24\"]", "remote_subnets = [\"2001:db8:2::/64\"]");
    assert_err(&err(&text), line_with(&text, "remote_subnets"), "tunnel[0].remote_subnets", "same family");
}

/// Aggressive Mode is an IKEv1 opt-in: off by default, refused with IKEv2.
#[test]
fn aggressive_mode_is_an_ikev1_opt_in() {
    assert!(!ok(&minimal("", "ike_version = 1")).tunnels[0].aggressive);
    let c = ok(&minimal("", "ike_version = 1\naggressive = true"));
    assert!(c.tunnels[0].aggressive);
    // The daemon warns at start-up (ike does); the configuration adds nothing.
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(!ok(&minimal("", "aggressive = false")).tunnels[0].aggressive);
    let text = minimal("", "aggressive = true");
    let e = err(&text);
    assert_err(&e, line_with(&text, "aggressive"), "tunnel[0].aggressive", "Aggressive Mode is IKEv1's");
    assert!(e.message.contains("ike_version = 1"), "{e}");
    let text = minimal("", "ike_version = 1\naggressive = \"yes\"");
    assert_err(&err(&text), line_with(&text, "aggressive"), "tunnel[0].aggressive", "invalid type");
}

#[test]
fn metrics_listen_is_off_by_default_and_checked() {
    assert_eq!(ok(&minimal("", "")).gateway.metrics_listen, None);
    let c = ok(&minimal("metrics_listen = \"127.0.0.1:9750\"", ""));
    assert_eq!(c.gateway.metrics_listen, Some("127.0.0.1:9750".parse().unwrap()));
    let c = ok(&minimal("metrics_listen = \"[::1]:9750\"", ""));
    assert_eq!(c.gateway.metrics_listen, Some("[::1]:9750".parse().unwrap()));
    // (setting, message fragment); every setting is on line 3.
    let cases: &[(&str, &str)] = &[
        ("metrics_listen = \"127.0.0.1\"", "is not an address and port"),
        ("metrics_listen = \"localhost:9750\"", "is not an address and port"),
        ("metrics_listen = \"127.0.0.1:0\"", "port 0 is not allowed"),
        ("metrics_listen = \"224.0.0.1:9750\"", "not a unicast address"),
        ("metrics_listen = 9750", "invalid type"),
    ];
    for (setting, msg) in cases {
        assert_err(&err(&minimal(setting, "")), 3, "gateway.metrics_listen", msg);
    }
}

/// `minimal` plus a second tunnel `site-b2` to another peer; `extra` goes into it.
fn with_standby(extra: &str) -> String {
    format!(
        "{}\n[[tunnel]]\nname = \"site-b2\"\nremote_address = \"192.0.2.3\"\npsk = \"0123456789abcdef0123\"\n\
         local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.2.0.0/24\"]\n{extra}\n",
        minimal("", "")
    )
}

#[test]
fn standby_tunnels_form_a_group_with_their_primary() {
    // Without a group the overlap is only a warning.
    let c = ok(&with_standby(""));
    assert!(c.failover_groups().is_empty());
    assert!(c.warnings.iter().any(|w| w.contains("overlaps")), "{:?}", c.warnings);
    let c = ok(&with_standby("standby_for = \"site-b\"\nfailback = true"));
    let groups = c.failover_groups();
    let names: Vec<Vec<&str>> = groups.iter().map(|g| g.iter().map(|t| t.name.as_str()).collect()).collect();
    assert_eq!(names, vec![vec!["site-b", "site-b2"]]);
    assert_eq!(c.tunnels[1].standby_for.as_deref(), Some("site-b"));
    assert!(c.tunnels[1].failback);
    assert!(!c.tunnels[0].failback && c.tunnels[0].standby_for.is_none());
    // Members protect the same subnets on purpose: no overlap warning.
    assert!(!c.warnings.iter().any(|w| w.contains("overlaps")), "{:?}", c.warnings);
    // failback defaults to false; --check shows both keys for the standby only.
    let c = ok(&with_standby("standby_for = \"site-b\""));
    assert!(!c.tunnels[1].failback);
    let shown = c.effective_toml();
    assert_eq!(shown.matches("standby_for = \"site-b\"").count(), 1, "{shown}");
    assert_eq!(shown.matches("failback = false").count(), 1, "{shown}");
    // Subnets compare as sets.
    let text = with_standby("standby_for = \"site-b\"")
        .replace("remote_subnets = [\"10.2.0.0/24\"]\n", "remote_subnets = [\"10.2.0.0/24\", \"10.3.0.0/24\"]\n");
    let text = text.replacen(
        "remote_subnets = [\"10.2.0.0/24\", \"10.3.0.0/24\"]\n",
        "remote_subnets = [\"10.3.0.0/24\", \"10.2.0.0/24\"]\n",
        1,
    );
    assert_eq!(ok(&text).failover_groups().len(), 1);
}

#[test]
fn standby_mistakes_name_file_line_and_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("standby_for = \"nope\"", "standby_for", "standby_for", "no tunnel is named \"nope\" (tunnels: site-b)"),
        ("standby_for = \"site-b2\"", "standby_for", "standby_for", "cannot stand by for itself"),
        ("standby_for = \"\"", "standby_for", "standby_for", "is empty"),
        ("failback = true", "failback", "failback", "applies to a standby tunnel"),
    ];
    for (setting, key, marker, msg) in cases {
        let text = with_standby(setting);
        let e = err(&text);
        assert_err(&e, line_with(&text, marker), &format!("tunnel[1].{key}"), msg);
        assert_eq!(e.tunnel.as_deref(), Some("site-b2"), "{e}");
    }
    // Different subnets.
    let text = with_standby("standby_for = \"site-b\"").replace(
        "local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.2.0.0/24\"]\nstandby_for",
        "local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.9.0.0/24\"]\nstandby_for",
    );
    let e = err(&text);
    assert_err(&e, line_with(&text, "standby_for"), "tunnel[1].standby_for", "remote_subnets are [10.9.0.0/24]");
    // No chains: a standby of a standby names the primary instead.
    let text = format!(
        "{}\n[[tunnel]]\nname = \"site-b3\"\nremote_address = \"192.0.2.4\"\npsk = \"0123456789abcdef0123\"\n\
         local_subnets = [\"10.1.0.0/24\"]\nremote_subnets = [\"10.2.0.0/24\"]\nstandby_for = \"site-b2\"\n",
        with_standby("standby_for = \"site-b\"")
    );
    let e = err(&text);
    assert_err(&e, line_with(&text, "standby_for = \"site-b2\""), "tunnel[2].standby_for", "is itself a standby");
}

#[test]
fn control_socket_alone_is_read_from_an_otherwise_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vpngw.toml");
    let at = |text: &str| {
        std::fs::write(&file, text).unwrap();
        config::control_socket(&file)
    };
    // Other keys wrong, unknown or missing, a key file that does not exist: not looked at.
    let broken = "[gateway]\nlocal_address = 7\nextra = true\ncontrol_socket = \"/run/x/vpngw.sock\"\n\n\
                  [[tunnel]]\nname = \"b\"\npsk_file = \"/nonexistent/key\"\nremote_subnets = [\"10.2.0/24\"]\n";
    assert_eq!(at(broken).unwrap(), Path::new("/run/x/vpngw.sock"));
    assert!(load(&file).is_err(), "the same file is not a valid configuration");
    // Relative to the file's directory, as vpngw resolves it; the default without one.
    assert_eq!(at("[gateway]\ncontrol_socket = \"run/s.sock\"\n").unwrap(), dir.path().join("run/s.sock"));
    assert_eq!(at("[gateway]\nlocal_address = \"192.0.2.1\"\n").unwrap(), Path::new(config::DEFAULT_CONTROL_SOCKET));
    assert_eq!(at("").unwrap(), Path::new(config::DEFAULT_CONTROL_SOCKET));
    // Errors name file, line and key.
    let e = at("[gateway]\nlocal_address = \"192.0.2.1\"\ncontrol_socket = \"  \"\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("gateway.control_socket")));
    assert!(e.to_string().starts_with(&format!("{}:3: gateway `control_socket`", file.display())), "{e}");
    let e = at("[gateway]\n\ncontrol_socket = 7\n").unwrap_err();
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("gateway.control_socket")), "{e}");
    let e = at("[gateway]\ncontrol_socket = \"/run/s\"\n[gateway\n").unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    let e = config::control_socket(&dir.path().join("missing.toml")).unwrap_err();
    assert!(e.message.contains("cannot read"), "{e}");
}
