//! The interop matrix: vpngw against strongSwan over a representative cross-product of
//! IKE encryption x integrity x PRF x group and ESP encryption x integrity x PFS group,
//! in both roles, plus the peer profiles shipped in `examples/` (the classic gateway's
//! aes128-sha1-modp1024, AWS's defaults, Azure's default policy).
//!
//! Each row, on one topology shared by all rows of a test (the daemons are started
//! afresh per row, so nothing carries over): the tunnel comes up; the negotiated
//! algorithms are read on both sides (`vpnctl status --json`, `swanctl --list-sas`) and
//! must be the row's; pings cross both ways; a CHILD SA rekey with PFS is asked for
//! (`vpnctl rekey` or `swanctl --rekey`, alternating by row) and awaited on both sides
//! (one CHILD SA, new SPIs mirrored, the PFS group in both views, the old SA deleted);
//! then 10 MiB cross the rekeyed SA (SHA-256 checked at the far end) and vpngw's
//! counters of the new SA must show them, without ICV failures. Every row runs even after another failed; the test
//! lists every failed row with its logs (kept under the scenario's directory).
//!
//! `VG_MATRIX_ROWS=a,b` runs only the rows whose name contains one of the words.
//! Needs root (see `interop::scenario::run_scenario`); run one test at a time:
//! `cargo test --release -p interop --test matrix -- --test-threads=1`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gateway::control::proto::{ChildSaInfo, StatusReport};
use interop::scenario::{run_scenario, swan_site_a, swan_site_b, vpngw_site_a, vpngw_site_b, Scenario, SA_TIMEOUT};
use interop::strongswan::{parse_list_sas, StrongSwan, SwanSa};
use interop::vpngw::{child_sas, datapath_drops, one_line, Encap, Start, Vpngw};
use interop::{ensure, netns, traffic, wait_for, Binaries, Error, Result};

/// nettool: `NETTOOL_BIN`, else the copy cargo built for this test.
fn nettool() -> PathBuf {
    std::env::var_os("NETTOOL_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nettool")), PathBuf::from)
}

/// Who plays which part in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// vpngw on gwA initiates, strongSwan on gwB responds.
    VpngwInitiates,
    /// strongSwan on gwA initiates, vpngw on gwB responds.
    SwanInitiates,
}

/// Who asks for the CHILD SA rekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rekeyer {
    Vpngw,
    Swan,
}

/// The algorithms one SA must show, in the names charon and vpnctl both print.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Algs {
    encr: String,
    integ: Option<String>,
    prf: Option<String>,
    group: Option<String>,
}

impl Algs {
    /// charon's `--list-sas` spelling: `ENCR[/INTEG][/PRF][/GROUP]`.
    fn swan_line(&self) -> String {
        let parts = [Some(&self.encr), self.integ.as_ref(), self.prf.as_ref(), self.group.as_ref()];
        parts.into_iter().flatten().cloned().collect::<Vec<_>>().join("/")
    }
}

/// The name of a swanctl keyword: (transform type, name).
fn keyword_name(kw: &str) -> Option<(&'static str, &'static str)> {
    Some(match kw {
        "aes128" => ("encr", "AES_CBC-128"),
        "aes192" => ("encr", "AES_CBC-192"),
        "aes256" => ("encr", "AES_CBC-256"),
        "aes128gcm16" => ("encr", "AES_GCM_16-128"),
        "aes256gcm16" => ("encr", "AES_GCM_16-256"),
        "chacha20poly1305" => ("encr", "CHACHA20_POLY1305"),
        "sha1" => ("integ", "HMAC_SHA1_96"),
        "sha256" => ("integ", "HMAC_SHA2_256_128"),
        "sha384" => ("integ", "HMAC_SHA2_384_192"),
        "sha512" => ("integ", "HMAC_SHA2_512_256"),
        "prfsha1" => ("prf", "PRF_HMAC_SHA1"),
        "prfsha256" => ("prf", "PRF_HMAC_SHA2_256"),
        "prfsha384" => ("prf", "PRF_HMAC_SHA2_384"),
        "prfsha512" => ("prf", "PRF_HMAC_SHA2_512"),
        "modp1024" => ("group", "MODP_1024"),
        "modp1536" => ("group", "MODP_1536"),
        "modp2048" => ("group", "MODP_2048"),
        "modp3072" => ("group", "MODP_3072"),
        "modp4096" => ("group", "MODP_4096"),
        "ecp256" => ("group", "ECP_256"),
        "ecp384" => ("group", "ECP_384"),
        "ecp521" => ("group", "ECP_521"),
        "x25519" => ("group", "CURVE_25519"),
        _ => return None,
    })
}

/// The algorithms of a proposal naming one of each (`aes128-sha1-prfsha1-modp1024`). An
/// IKE proposal with integrity but no PRF takes the integrity algorithm's PRF, as in
/// strongSwan.
fn algs(proposal: &str, ike: bool) -> Algs {
    let mut a = Algs::default();
    for kw in proposal.split('-') {
        let (kind, name) = keyword_name(kw).unwrap_or_else(|| panic!("no name for {kw:?} in {proposal:?}"));
        let slot = match kind {
            "encr" => {
                a.encr = name.to_owned();
                continue;
            }
            "integ" => &mut a.integ,
            "prf" => &mut a.prf,
            _ => &mut a.group,
        };
        assert!(slot.replace(name.to_owned()).is_none(), "{proposal:?} names two of a kind");
    }
    if ike && a.prf.is_none() {
        let integ = a.integ.as_deref().unwrap_or_else(|| panic!("IKE proposal {proposal:?} names no PRF"));
        a.prf = Some(integ.replacen("HMAC", "PRF_HMAC", 1).rsplit_once('_').map(|(p, _)| p.to_owned()).unwrap());
    }
    a
}

/// One row: what each side is configured with and what must be negotiated.
#[derive(Clone, Debug)]
struct Row {
    name: String,
    vpngw_ike: Vec<String>,
    vpngw_esp: Vec<String>,
    /// swanctl `proposals` / `esp_proposals` (comma-separated lists allowed).
    swan_ike: String,
    swan_esp: String,
    /// The IKE SA's algorithms.
    ike: Algs,
    /// The CHILD SA's algorithms; `group` is the PFS group of the rekeyed SA (`None`: rekeyed
    /// without a key exchange).
    esp: Algs,
    rekeyer: Rekeyer,
}

/// A matrix row: both sides configured with the same single proposal.
fn row(ike: &str, esp: &str, rekeyer: Rekeyer) -> Row {
    Row {
        name: format!("{ike}+{esp}"),
        vpngw_ike: vec![ike.into()],
        vpngw_esp: vec![esp.into()],
        swan_ike: ike.into(),
        swan_esp: esp.into(),
        ike: algs(ike, true),
        esp: algs(esp, false),
        rekeyer,
    }
}

/// The matrix for one role: every algorithm and group of the issue at least once, as IKE
/// and as ESP, in combinations that differ between the two roles.
fn matrix(role: Role) -> Vec<Row> {
    let pairs: &[(&str, &str)] = match role {
        Role::VpngwInitiates => &[
            ("aes128-sha1-prfsha1-modp1024", "aes128-sha1-modp1536"),
            ("aes192-sha256-prfsha256-modp1536", "aes192-sha256-modp2048"),
            ("aes256-sha384-prfsha384-modp2048", "aes256-sha384-modp3072"),
            ("aes256-sha512-prfsha512-modp3072", "aes128-sha512-modp4096"),
            ("aes128gcm16-prfsha256-modp4096", "aes128gcm16-ecp256"),
            ("aes256gcm16-prfsha384-ecp256", "aes256gcm16-ecp384"),
            ("chacha20poly1305-prfsha512-ecp384", "chacha20poly1305-ecp521"),
            ("aes128-sha256-prfsha1-ecp521", "aes256-sha1-x25519"),
            ("aes256gcm16-prfsha256-x25519", "aes256gcm16-modp1024"),
        ],
        Role::SwanInitiates => &[
            ("aes256-sha1-prfsha1-x25519", "aes128gcm16-modp1024"),
            ("aes128-sha512-prfsha512-modp1024", "chacha20poly1305-modp1536"),
            ("aes192-sha384-prfsha384-modp1536", "aes192-sha512-modp2048"),
            ("aes128gcm16-prfsha512-modp2048", "aes256-sha384-modp3072"),
            ("chacha20poly1305-prfsha256-modp3072", "aes128-sha1-modp4096"),
            ("aes256gcm16-prfsha1-modp4096", "aes256gcm16-ecp256"),
            ("aes128-sha256-prfsha256-ecp256", "aes256-sha256-ecp384"),
            ("aes256-sha256-prfsha384-ecp384", "aes128-sha256-ecp521"),
            ("aes256gcm16-prfsha512-ecp521", "aes128gcm16-x25519"),
        ],
    };
    pairs
        .iter()
        .enumerate()
        .map(|(i, (ike, esp))| row(ike, esp, if i % 2 == 0 { Rekeyer::Vpngw } else { Rekeyer::Swan }))
        .collect()
}

/// A profile's vpngw side: the proposals of the first tunnel of `examples/FILE`, read by
/// the real configuration parser (what `vpngw --config` would negotiate with).
fn example_proposals(file: &str) -> Result<(Vec<String>, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(file);
    let dir = std::env::temp_dir().join(format!("vg-matrix-example-{}", interop::unique_id()));
    std::fs::create_dir_all(&dir)?;
    let psk = dir.join("example.psk");
    std::fs::write(&psk, b"0123456789abcdef0123456789abcdef")?;
    std::fs::set_permissions(&psk, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let text: String = std::fs::read_to_string(&path)?
        .lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) if k.trim() == "psk_file" => format!("{k}= \"{}\"\n", psk.display()),
            _ => format!("{l}\n"),
        })
        .collect();
    let parsed = config::parse(&text, &path);
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = parsed.map_err(|e| Error::new(format!("examples/{file}: {e}")))?;
    let t = cfg.tunnels.first().ok_or_else(|| Error::new(format!("examples/{file} has no tunnel")))?;
    Ok((
        t.ike_proposals.iter().map(ToString::to_string).collect(),
        t.esp_proposals.iter().map(ToString::to_string).collect(),
    ))
}

/// strongSwan configured as AWS's endpoint with the tunnel options at their defaults:
/// every algorithm and group (of those both implementations know) AWS accepts, in AWS's
/// order, lowest first.
const AWS_IKE: &str = "aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521,\
                       aes128gcm16-aes256gcm16-prfsha1-prfsha256-prfsha384-prfsha512-modp1024-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521";
const AWS_ESP: &str =
    "aes128-aes256-sha1-sha256-sha384-sha512-modp1024-modp1536-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521,\
                       aes128gcm16-aes256gcm16-modp1024-modp1536-modp2048-modp3072-modp4096-ecp256-ecp384-ecp521";

/// strongSwan configured as an Azure VPN gateway with its default IPsec/IKE policy: main
/// mode AES256/AES128 with SHA1/SHA256 and DH group 2, quick mode GCM-AES-256, AES256 +
/// SHA1, AES256 + SHA256, AES128 + SHA1, no PFS.
const AZURE_IKE: &str = "aes256-sha1-modp1024,aes256-sha256-modp1024,aes128-sha1-modp1024,aes128-sha256-modp1024";
const AZURE_ESP: &str = "aes256gcm16,aes256-sha1,aes256-sha256,aes128-sha1";

/// The profile rows: vpngw configured from `examples/`, strongSwan as the peer.
fn profiles(role: Role) -> Result<Vec<Row>> {
    let (classic_ike, classic_esp) = example_proposals("classic-gateway.toml")?;
    let (aws_ike, aws_esp) = example_proposals("aws-site-to-site.toml")?;
    let classic = Row {
        name: "profile-classic-gateway".into(),
        vpngw_ike: classic_ike,
        vpngw_esp: classic_esp,
        // The classic gateway: `aes` + `sha` + group 2, transform set esp-aes esp-sha-hmac, PFS group 2.
        swan_ike: "aes128-sha1-modp1024".into(),
        swan_esp: "aes128-sha1-modp1024".into(),
        ike: algs("aes128-sha1-modp1024", true),
        esp: algs("aes128-sha1-modp1024", false),
        rekeyer: if role == Role::VpngwInitiates { Rekeyer::Swan } else { Rekeyer::Vpngw },
    };
    // The responder's order decides, in both implementations: AWS's (strongSwan's) own
    // first proposal meets vpngw's first, aes256-sha256-modp2048; as responder vpngw
    // picks its first, the same. The PFS group is the first one both name.
    let aws = Row {
        name: "profile-aws-defaults".into(),
        vpngw_ike: aws_ike,
        vpngw_esp: aws_esp,
        swan_ike: AWS_IKE.into(),
        swan_esp: AWS_ESP.into(),
        ike: algs("aes256-sha256-prfsha256-modp2048", true),
        esp: algs("aes256-sha256-modp2048", false),
        rekeyer: if role == Role::VpngwInitiates { Rekeyer::Vpngw } else { Rekeyer::Swan },
    };
    // Azure's default policy (no custom policy on the connection): the responder's order
    // decides again. Azure's own list starts with aes256-sha1, which vpngw offers second;
    // vpngw, answering, takes its first, aes256-sha256. ESP: GCM first on both lists, and
    // no PFS, so the CHILD SA is rekeyed without a key exchange.
    let (azure_ike, azure_esp) = example_proposals("azure-vpn-gateway.toml")?;
    let azure = Row {
        name: "profile-azure-default-policy".into(),
        vpngw_ike: azure_ike,
        vpngw_esp: azure_esp,
        swan_ike: AZURE_IKE.into(),
        swan_esp: AZURE_ESP.into(),
        ike: match role {
            Role::VpngwInitiates => algs("aes256-sha1-modp1024", true),
            Role::SwanInitiates => algs("aes256-sha256-modp1024", true),
        },
        esp: algs("aes256gcm16", false),
        rekeyer: if role == Role::VpngwInitiates { Rekeyer::Swan } else { Rekeyer::Vpngw },
    };
    Ok(vec![classic, aws, azure])
}

/// Rows selected by `VG_MATRIX_ROWS` (all if unset).
fn selected(rows: Vec<Row>) -> Vec<Row> {
    match std::env::var("VG_MATRIX_ROWS") {
        Ok(words) if !words.trim().is_empty() => {
            rows.into_iter().filter(|r| words.split(',').any(|w| r.name.contains(w.trim()))).collect()
        }
        _ => rows,
    }
}

/// The one INSTALLED CHILD SA of vpngw's single IKE SA, checked against `want`.
fn vpngw_check(st: &StatusReport, json: &str, row: &Row, pfs: bool) -> Result<ChildSaInfo> {
    let ikes: Vec<_> = st.tunnels.iter().flat_map(|t| &t.ike_sas).collect();
    ensure!(ikes.len() == 1, "vpngw: {} IKE SAs, expected 1: {}", ikes.len(), one_line(st));
    let ike = ikes[0];
    let got = (ike.encr.as_deref(), ike.prf.as_deref(), ike.dh.as_deref());
    let want = (Some(row.ike.encr.as_str()), row.ike.prf.as_deref(), row.ike.group.as_deref());
    ensure!(got == want, "vpngw: IKE SA negotiated {got:?}, expected {want:?}");
    let installed: Vec<&ChildSaInfo> = child_sas(st).into_iter().filter(|c| c.state == "INSTALLED").collect();
    ensure!(installed.len() == 1, "vpngw: {} INSTALLED CHILD SAs, expected 1: {}", installed.len(), one_line(st));
    let c = installed[0];
    let want_dh = if pfs { row.esp.group.as_deref() } else { None };
    ensure!(
        c.encr == row.esp.encr && c.dh.as_deref() == want_dh,
        "vpngw: CHILD SA negotiated {} PFS {:?}, expected {} PFS {want_dh:?}",
        c.encr,
        c.dh,
        row.esp.encr
    );
    // Integrity is checked where the status names it (`integ` of the IKE SA and of the
    // CHILD SA in the JSON); strongSwan's view below always shows it.
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::new(format!("status JSON: {e}")))?;
    let ike_v = &v["status"]["tunnels"][0]["ike_sas"][0];
    if let Some(integ) = ike_v.get("integ") {
        let got = integ.as_str();
        ensure!(got == row.ike.integ.as_deref(), "vpngw: IKE SA integrity {got:?}, expected {:?}", row.ike.integ);
    }
    let child_v = ike_v["children"].as_array().into_iter().flatten().find(|x| x["spi_in"] == c.spi_in.as_str());
    if let Some(integ) = child_v.and_then(|x| x.get("integ")) {
        let got = integ.as_str();
        ensure!(got == row.esp.integ.as_deref(), "vpngw: CHILD SA integrity {got:?}, expected {:?}", row.esp.integ);
    }
    Ok(c.clone())
}

/// strongSwan's single IKE SA with one INSTALLED CHILD SA, checked against `row`.
fn swan_check(sas: &[SwanSa], row: &Row, pfs: bool) -> Result<()> {
    ensure!(sas.len() == 1, "strongSwan: {} IKE SAs, expected 1: {sas:?}", sas.len());
    let want = row.ike.swan_line();
    ensure!(sas[0].proposal == want, "strongSwan: IKE SA negotiated {}, expected {want}", sas[0].proposal);
    let installed: Vec<_> = sas[0].children.iter().filter(|c| c.state == "INSTALLED").collect();
    ensure!(installed.len() == 1, "strongSwan: {} INSTALLED CHILD SAs: {sas:?}", installed.len());
    let want = Algs { prf: None, group: if pfs { row.esp.group.clone() } else { None }, ..row.esp.clone() }.swan_line();
    ensure!(
        installed[0].proposal == want,
        "strongSwan: CHILD SA negotiated {}, expected {want}",
        installed[0].proposal
    );
    Ok(())
}

/// Seconds spent in each step of a row.
#[derive(Default)]
struct Times {
    up: f64,
    rekey: f64,
    transfer: f64,
    total: f64,
}

/// Runs one row on the scenario's topology; every daemon it starts is stopped when it returns.
fn run_row(sc: &Scenario, bins: &Binaries, role: Role, idx: usize, row: &Row) -> Result<Times> {
    let t0 = Instant::now();
    let mut times = Times::default();
    // Short names: charon's and vpngw's control sockets live here (Unix socket paths
    // are limited to 107 bytes). `row.txt` says which row it was.
    let dir = sc.subdir(&format!("r{idx:02}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("row.txt"), format!("{row:#?}\n"))?;
    let (vpn_ns, swan_ns) = match role {
        Role::VpngwInitiates => (&sc.topo.gw_a, &sc.topo.gw_b),
        Role::SwanInitiates => (&sc.topo.gw_b, &sc.topo.gw_a),
    };
    let mut vcfg = match role {
        Role::VpngwInitiates => vpngw_site_a(Start::Initiate, Encap::Auto),
        Role::SwanInitiates => vpngw_site_b(Start::Respond, Encap::Auto),
    };
    vcfg.tunnels[0].ike_proposals.clone_from(&row.vpngw_ike);
    vcfg.tunnels[0].esp_proposals.clone_from(&row.vpngw_esp);
    let mut scfg = match role {
        Role::VpngwInitiates => swan_site_b(false),
        Role::SwanInitiates => swan_site_a(true),
    };
    scfg.ike_proposal.clone_from(&row.swan_ike);
    scfg.esp_proposal.clone_from(&row.swan_esp);

    // Responder first, so the initiator's first IKE_SA_INIT is answered.
    let (mut vpn, mut swan) = match role {
        Role::VpngwInitiates => {
            let s = StrongSwan::start(swan_ns, &scfg, &dir.join("swan"))?;
            (Vpngw::start(vpn_ns, &vcfg, &dir.join("vpngw"), bins)?, s)
        }
        Role::SwanInitiates => {
            let v = Vpngw::start(vpn_ns, &vcfg, &dir.join("vpngw"), bins)?;
            (v, StrongSwan::start(swan_ns, &scfg, &dir.join("swan"))?)
        }
    };
    let with_logs = |e: Error, vpn: &Vpngw, swan: &StrongSwan| {
        Error::new(format!("{e}\n--- vpngw log ---\n{}\n{}", vpn.log_tail(30), swan.diagnostics()))
    };
    vpn.wait_child_sa(SA_TIMEOUT)?;
    swan.wait_child_sa(SA_TIMEOUT)?;
    // Both sides' views of the first CHILD SA (created in IKE_AUTH, so without PFS).
    let agreed = wait_for(Duration::from_secs(10), "both sides to show the negotiated SAs", || {
        let st = vpn.status().ok()?;
        let json = vpn.status_json_text().ok()?;
        let sas = parse_list_sas(&swan.list_sas().ok()?);
        Some(vpngw_check(&st, &json, row, false).and_then(|c| swan_check(&sas, row, false).map(|()| c)))
    })
    .and_then(|r| r)
    .map_err(|e| with_logs(e, &vpn, &swan))?;
    times.up = t0.elapsed().as_secs_f64();

    // The first SA carries traffic both ways.
    for (from, to) in [(&sc.topo.lan_a, netns::LAN_B_HOST), (&sc.topo.lan_b, netns::LAN_A_HOST)] {
        let p = traffic::ping(from, to, 3)?;
        ensure!(p.received == p.transmitted, "ping {} -> {to} over the first CHILD SA: {p:?}", from.name());
    }

    // CHILD SA rekey with PFS, asked for by one side, awaited on both.
    let t_rekey = Instant::now();
    match row.rekeyer {
        Rekeyer::Vpngw => vpn.rekey("peer", false)?,
        Rekeyer::Swan => swan.rekey(false)?,
    }
    let old = (agreed.spi_in.clone(), agreed.spi_out.clone());
    let rekeyed = wait_for(Duration::from_secs(30), "the CHILD SA rekey with PFS on both sides", || {
        let st = vpn.status().ok()?;
        let json = vpn.status_json_text().ok()?;
        let sas = parse_list_sas(&swan.list_sas().ok()?);
        let c = vpngw_check(&st, &json, row, true).ok()?;
        if c.spi_in == old.0 || c.spi_out == old.1 {
            return None;
        }
        // Settled: strongSwan's one INSTALLED CHILD SA is the new one, mirrored (charon
        // keeps the old one as REKEYED/DELETED for `delete_rekeyed_delay`, 5 s).
        swan_check(&sas, row, true).ok()?;
        let child = sas[0].children.iter().find(|x| x.state == "INSTALLED")?;
        if child.spi_in != c.spi_out || child.spi_out != c.spi_in {
            return None;
        }
        // ... and the old one is deleted on both sides, so nobody seals with it any more:
        // gone from vpngw, at most DELETING/DELETED at charon.
        let old_at_vpngw = child_sas(&st).into_iter().any(|x| x.spi_in == old.0 || x.spi_out == old.1);
        let old_at_swan = sas[0]
            .children
            .iter()
            .any(|x| x.spi_in == old.1 && !matches!(x.state.as_str(), "DELETING" | "DELETED" | "DESTROYING"));
        (!old_at_vpngw && !old_at_swan).then_some(c)
    })
    .map_err(|e| {
        let now = vpn.status_json_text().unwrap_or_default();
        let sas = swan.list_sas().unwrap_or_default();
        // What differs from the row, first: the checks that kept failing.
        let why: Vec<String> = [
            vpn.status().and_then(|st| vpngw_check(&st, &now, row, true)).err(),
            swan_check(&parse_list_sas(&sas), row, true).err(),
        ]
        .into_iter()
        .flatten()
        .map(|e| e.to_string())
        .collect();
        let msg = format!("{e}: {}\nvpngw status: {now}\nswanctl --list-sas:\n{sas}", why.join("; "));
        with_logs(Error::new(msg), &vpn, &swan)
    })?;
    times.rekey = t_rekey.elapsed().as_secs_f64();

    // 10 MiB lanA -> lanB over the rekeyed SA, SHA-256 checked by the receiver.
    let t_transfer = Instant::now();
    let t = sc.transfer(&bins.nettool)?;
    times.transfer = t_transfer.elapsed().as_secs_f64();
    let st = vpn.status()?;
    let c = child_sas(&st).into_iter().find(|c| c.spi_in == rekeyed.spi_in).cloned();
    let c = c.ok_or_else(|| Error::new(format!("vpngw lost the rekeyed CHILD SA: {}", one_line(&st))))?;
    // lanA -> lanB: sealed by vpngw on gwA, opened by vpngw on gwB.
    let carried = match role {
        Role::VpngwInitiates => c.outbound.as_ref().map(|o| o.bytes),
        Role::SwanInitiates => c.inbound.as_ref().map(|i| i.bytes),
    };
    ensure!(
        carried.is_some_and(|b| b >= t.bytes),
        "vpngw's rekeyed CHILD SA carried {carried:?} bytes of the {} transferred: {}",
        t.bytes,
        one_line(&st)
    );
    let drops = datapath_drops(&st);
    ensure!(drops.get("sa.icv_failure").copied().unwrap_or(0) == 0, "vpngw: ICV failures: {drops:?}");

    vpn.stop()?;
    swan.stop();
    times.total = t0.elapsed().as_secs_f64();
    Ok(times)
}

/// Runs `rows` one after another on one topology; fails listing every failed row.
fn run_rows(name: &str, role: Role, rows: impl FnOnce() -> Result<Vec<Row>>) {
    run_scenario(name, |sc| {
        let bins = Binaries::locate(nettool())?;
        let rows = selected(rows()?);
        ensure!(!rows.is_empty(), "VG_MATRIX_ROWS selects no row of {name}");
        let start = Instant::now();
        let mut failed = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let rekeyer = match row.rekeyer {
                Rekeyer::Vpngw => "vpnctl rekey",
                Rekeyer::Swan => "swanctl --rekey",
            };
            match run_row(sc, &bins, role, i, row) {
                Ok(t) => println!(
                    "[{name}] row {i:02} {} PASSED in {:.1} s (up {:.1}, rekey by {rekeyer} {:.1}, 10 MiB {:.1}); \
                     IKE {}, ESP {}",
                    row.name,
                    t.total,
                    t.up,
                    t.rekey,
                    t.transfer,
                    row.ike.swan_line(),
                    row.esp.swan_line()
                ),
                Err(e) => {
                    println!("[{name}] row {i:02} {} FAILED: {e}", row.name);
                    failed.push(format!("row {i:02} {} (logs in {}/r{i:02}): {e}", row.name, sc.dir.display()));
                }
            }
        }
        println!("[{name}] {} rows in {:.1} s, {} failed", rows.len(), start.elapsed().as_secs_f64(), failed.len());
        ensure!(failed.is_empty(), "{} of {} rows failed:\n{}", failed.len(), rows.len(), failed.join("\n\n"));
        Ok(())
    });
}

#[test]
fn matrix_vpngw_initiator_strongswan_responder() {
    run_rows("matrix_vpngw_initiator", Role::VpngwInitiates, || Ok(matrix(Role::VpngwInitiates)));
}

#[test]
fn matrix_strongswan_initiator_vpngw_responder() {
    run_rows("matrix_strongswan_initiator", Role::SwanInitiates, || Ok(matrix(Role::SwanInitiates)));
}

/// The classic gateway, AWS and Azure profiles of `examples/`, vpngw initiating.
#[test]
fn profiles_vpngw_initiator() {
    run_rows("profiles_vpngw_initiator", Role::VpngwInitiates, || profiles(Role::VpngwInitiates));
}

/// The same profiles with the peer initiating.
#[test]
fn profiles_strongswan_initiator() {
    run_rows("profiles_strongswan_initiator", Role::SwanInitiates, || profiles(Role::SwanInitiates));
}

/// The tables themselves: every algorithm and group at least once per role, for IKE and ESP.
#[test]
fn every_algorithm_appears_in_each_role() {
    let ike_encr = ["aes128", "aes192", "aes256", "aes128gcm16", "aes256gcm16", "chacha20poly1305"];
    let integ = ["sha1", "sha256", "sha384", "sha512"];
    let prf = ["prfsha1", "prfsha256", "prfsha384", "prfsha512"];
    let groups = ["modp1024", "modp1536", "modp2048", "modp3072", "modp4096", "ecp256", "ecp384", "ecp521", "x25519"];
    for role in [Role::VpngwInitiates, Role::SwanInitiates] {
        let rows = matrix(role);
        let has = |kw: &str, ike: bool| {
            rows.iter().any(|r| if ike { &r.swan_ike } else { &r.swan_esp }.split('-').any(|k| k == kw))
        };
        for kw in ike_encr.iter().chain(&integ).chain(&groups) {
            assert!(has(kw, true), "{role:?}: {kw} missing from the IKE proposals");
            assert!(has(kw, false), "{role:?}: {kw} missing from the ESP proposals");
        }
        for kw in prf {
            assert!(has(kw, true), "{role:?}: {kw} missing");
        }
        for rekeyer in [Rekeyer::Vpngw, Rekeyer::Swan] {
            assert!(rows.iter().any(|r| r.rekeyer == rekeyer), "{role:?}: no rekey asked for by {rekeyer:?}");
        }
        // Every row's names come out as both implementations spell them.
        for r in &rows {
            assert!(r.esp.prf.is_none() && r.esp.group.is_some() && r.ike.prf.is_some(), "{r:?}");
            assert_eq!(r.ike.integ.is_some(), r.ike.encr.starts_with("AES_CBC"), "{r:?}");
        }
    }
    assert_eq!(algs("aes128-sha1-modp1024", true).swan_line(), "AES_CBC-128/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024");
    assert_eq!(algs("aes256-sha512-ecp521", true).prf.as_deref(), Some("PRF_HMAC_SHA2_512"));
    assert_eq!(algs("aes256gcm16-modp2048", false).swan_line(), "AES_GCM_16-256/MODP_2048");
}
