//! Every configuration shipped in `examples/` is one `vpngw --config` accepts: each file
//! is read by the real parser (with its `psk_file` paths pointed at a key written here),
//! parses without warnings, and the peer profiles say what their comments promise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use config::{parse, Config, DpdAction, IkeVersion, StartAction};
use ipsec_types::{DhGroup, EncrAlg, IntegAlg};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// `path`'s text with every `psk_file = "..."` value replaced by `psk`.
fn with_psk(path: &Path, psk: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) if k.trim() == "psk_file" => format!("{k}= \"{}\"", psk.display()),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn load_all() -> Vec<(String, Config)> {
    let dir = tempfile::tempdir().unwrap();
    let psk = dir.path().join("example.psk");
    std::fs::write(&psk, b"0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let cfg = parse(&with_psk(&p, &psk), &p).unwrap_or_else(|e| panic!("examples/{name} is refused: {e}"));
            (name, cfg)
        })
        .collect()
}

fn example(name: &str) -> Config {
    load_all().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("examples/{name} is missing")).1
}

#[test]
fn every_example_parses_without_warnings() {
    let all = load_all();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let expected = [
        "aws-site-to-site.toml",
        "azure-vpn-gateway.toml",
        "classic-gateway.toml",
        "classic-gateway-ikev1.toml",
        "site-a.toml",
    ];
    for expected in expected {
        assert!(names.contains(&expected), "examples/{expected} missing from {names:?}");
    }
    for (name, cfg) in &all {
        assert!(cfg.warnings.is_empty(), "examples/{name}: {:?}", cfg.warnings);
        assert!(!cfg.tunnels.is_empty(), "examples/{name} has no tunnel");
        // The peer profiles bring their tunnel up themselves (the cloud ends wait).
        if !name.starts_with("site-") {
            assert!(cfg.tunnels.iter().all(|t| t.start == StartAction::Initiate), "examples/{name}");
        }
    }
}

/// The classic gateway: aes128-sha1-modp1024 for IKE and ESP, PFS group 2, the PRF taken
/// from the integrity algorithm.
#[test]
fn classic_gateway_is_aes128_sha1_modp1024_with_pfs() {
    let cfg = example("classic-gateway.toml");
    let t = &cfg.tunnels[0];
    assert_eq!(t.ike_proposals.len(), 1);
    assert_eq!(t.ike_proposals[0].to_string(), "aes128-sha1-prfsha1-modp1024");
    let esp = &t.esp_proposals[0];
    assert_eq!(
        (esp.encr.as_slice(), esp.integ.as_slice(), esp.dh.as_slice()),
        ([EncrAlg::AesCbc128].as_slice(), [IntegAlg::HmacSha1_96].as_slice(), [DhGroup::Modp1024].as_slice())
    );
}

/// The walkthrough's classic gateway with IKEv1: Main Mode aes128-sha1-modp1024, Quick
/// Mode aes128-sha1 with PFS group 2, initiating (AWS cannot initiate IKEv1), DPD on.
#[test]
fn classic_gateway_ikev1_is_the_walkthrough_profile() {
    let cfg = example("classic-gateway-ikev1.toml");
    let [t] = cfg.tunnels.as_slice() else { panic!("one tunnel expected") };
    assert_eq!(t.ike_version, IkeVersion::V1);
    assert_eq!(t.start, StartAction::Initiate);
    let ike: Vec<String> = t.ike_proposals.iter().map(ToString::to_string).collect();
    assert_eq!(ike, ["aes128-sha1-prfsha1-modp1024"]);
    let esp: Vec<String> = t.esp_proposals.iter().map(ToString::to_string).collect();
    assert_eq!(esp, ["aes128-sha1-modp1024"]);
    assert!(t.dpd.delay.is_some() && t.dpd.action == DpdAction::Restart, "{:?}", t.dpd);
    // Rekeyed and re-authenticated before AWS's lifetimes (3600 s and 28800 s).
    assert!(t.timers.child_rekey_time.as_secs() < 3600 && t.timers.ike_rekey_time.as_secs() < 28_800);
    assert!(!t.fragmentation && t.child_sa_per_subnet_pair);
    // The same as the IKEv2 classic profile apart from the version.
    let v2 = example("classic-gateway.toml");
    assert_eq!((&t.ike_proposals, &t.esp_proposals), (&v2.tunnels[0].ike_proposals, &v2.tunnels[0].esp_proposals));
}

/// AWS: everything offered is on AWS's default lists, every ESP proposal has PFS.
#[test]
fn aws_profile_stays_within_aws_defaults() {
    let cfg = example("aws-site-to-site.toml");
    let aws_encr = [EncrAlg::AesCbc128, EncrAlg::AesCbc256, EncrAlg::AesGcm16_128, EncrAlg::AesGcm16_256];
    let aws_integ = IntegAlg::ALL;
    let aws_ike_groups = [DhGroup::Modp1024, DhGroup::Modp2048, DhGroup::Modp3072, DhGroup::Modp4096];
    let aws_ike_groups: Vec<DhGroup> =
        aws_ike_groups.into_iter().chain([DhGroup::Ecp256, DhGroup::Ecp384, DhGroup::Ecp521]).collect();
    for t in &cfg.tunnels {
        for p in &t.esp_proposals {
            assert!(p.encr.iter().all(|e| aws_encr.contains(e)), "{p}");
            assert!(p.integ.iter().all(|i| aws_integ.contains(i)), "{p}");
            assert!(!p.dh.is_empty() && p.dh.iter().all(|g| aws_ike_groups.contains(g) || *g == DhGroup::Modp1536));
        }
        for p in &t.ike_proposals {
            assert!(p.encr.iter().all(|e| aws_encr.contains(e)), "{p}");
            assert!(p.dh.iter().all(|g| aws_ike_groups.contains(g)), "{p}");
        }
        assert_eq!(t.ike_proposals[0].to_string(), "aes256-sha256-prfsha256-modp2048");
        assert_eq!(t.esp_proposals[0].to_string(), "aes256-sha256-modp2048");
    }
    // The connection's two tunnels: tunnel 2 stands by for tunnel 1.
    let groups = cfg.failover_groups();
    let names: Vec<Vec<&str>> = groups.iter().map(|g| g.iter().map(|t| t.name.as_str()).collect()).collect();
    assert_eq!(names, [["aws-tunnel-1", "aws-tunnel-2"]]);
    assert!(cfg.tunnels[1].failback);
}

/// Azure's default policy: IKE with group 2 only, ESP without PFS.
#[test]
fn azure_profile_matches_the_default_policy() {
    let cfg = example("azure-vpn-gateway.toml");
    let t = &cfg.tunnels[0];
    assert!(t.ike_proposals.iter().all(|p| p.dh == [DhGroup::Modp1024]));
    assert!(t.esp_proposals.iter().all(|p| p.dh.is_empty()));
}

/// `vpngw --check` prints every example's effective settings without the key, and that
/// text, with a key put back, is a configuration with the same settings.
#[test]
fn effective_settings_hide_the_key_and_read_back_the_same() {
    const KEY: &str = "0123456789abcdef0123456789abcdef";
    for (name, cfg) in load_all() {
        let shown = cfg.effective_toml();
        assert!(!shown.contains(KEY), "examples/{name}: the key is printed");
        assert_eq!(shown.matches(&format!("psk = \"{}\"", config::HIDDEN)).count(), cfg.tunnels.len(), "{shown}");
        let with_key = shown.replace(config::HIDDEN, KEY);
        let path = Path::new("/effective.toml");
        let again = parse(&with_key, path).unwrap_or_else(|e| panic!("examples/{name}: {e}\n{with_key}"));
        assert_eq!(again.effective_toml(), shown, "examples/{name}");
        assert_eq!(again.tunnels.len(), cfg.tunnels.len());
        for (a, b) in again.tunnels.iter().zip(&cfg.tunnels) {
            assert_eq!(a.psk.0.as_slice(), b.psk.0.as_slice(), "examples/{name}: {}", a.name);
            assert_eq!((a.timers, a.dpd), (b.timers, b.dpd), "examples/{name}: {}", a.name);
            assert_eq!((&a.local_id, &a.remote_id), (&b.local_id, &b.remote_id));
        }
    }
}
