//! nettool: a minimal TCP bulk-transfer checker for the interop scenarios and the demo.
//!
//! `nettool serve --port P [--bind ADDR]` accepts one connection, reads to EOF, prints
//! `received bytes=N sha256=HEX`, sends that line back to the sender and exits.
//! `nettool send --to ADDR:P --bytes N [--seed S]` sends N deterministic pseudo-random
//! bytes, prints `sent bytes=N sha256=HEX`, then waits for and prints the receiver's line
//! (`peer received ...`). Exit status is 0 only when everything completed.
//!
//! `nettool udpsend --to ADDR:P [--rate-mbit R] [--seconds S] [--size B]` sends numbered
//! datagrams of B bytes at R Mbit/s (UDP payload) for S seconds, then an end marker
//! carrying the count, and prints `udpsend sent=N errors=E seconds=S`.
//! `nettool udprecv --port P [--idle-ms MS] [--gap-report-ms G]` counts them until the
//! end marker arrives (or nothing arrived for MS ms after the first datagram) and prints
//! `gap at_ms=T ms=G` for every silence of at least G ms and `lost from=S to=E` for every
//! run of missing sequence numbers (at most 100 lines each), then
//! `udprecv received=.. unique=.. lost=.. dup=.. reordered=.. total=.. longest_gap_ms=..
//! longest_gap_at_ms=..` (`total` is the sender's count from the end marker, or `?`).
//! `nettool ping --to ADDR [--rate N] [--seconds S] [--linger-ms MS]` sends ICMP echo
//! requests at exactly N per second (root) and prints `lost from=S to=E` for every run of
//! unanswered requests, then `ping sent=.. received=.. dup=.. longest_gap_ms=..
//! longest_gap_at_ms=..`.
//!
//! Attack tools (root; spoofed sources through a raw socket with IP_HDRINCL):
//! `nettool ikeflood --target IP:PORT --count N [--rate PPS] (--source-prefix CIDR |
//! --source IP) [--group 31] [--seed S]` sends spoofed IKE_SA_INIT requests (see
//! `nettool/ikeflood.rs`) and prints `ikeflood sent=.. errors=.. seconds=..`.
//! `nettool hostile --target IP [--peer IP] [--spoof CIDR]... [--count N] [--seconds S]
//! [--rate PPS] [--big N] [--replay PCAP] [--seed S]` sends a bounded mix of payload
//! bombs, truncated and mutated IKE messages and replayed and tampered ESP (see
//! `nettool/hostile.rs`) and prints what it sent by kind.
#![forbid(unsafe_code)]

#[path = "nettool/hostile.rs"]
mod hostile;
#[path = "nettool/icmp.rs"]
mod icmp;
#[path = "nettool/ikeflood.rs"]
mod ikeflood;
#[path = "nettool/spoof.rs"]
mod spoof;
#[path = "nettool/udpseq.rs"]
mod udpseq;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use sha2::{Digest, Sha256};

const USAGE: &str =
    "usage: nettool serve --port P [--bind ADDR]\n       nettool send --to ADDR:P --bytes N [--seed S]\n       \
                     nettool udpsend --to ADDR:P [--rate-mbit R] [--seconds S] [--size B]\n       \
                     nettool udprecv --port P [--bind ADDR] [--idle-ms MS] [--gap-report-ms G]\n       \
                     nettool ping --to ADDR [--rate N] [--seconds S] [--linger-ms MS]\n       \
                     nettool ikeflood --target IP:PORT --count N [--rate PPS] (--source-prefix CIDR | --source IP) \
                     [--group 31] [--seed S]\n       \
                     nettool hostile --target IP [--peer IP] [--spoof CIDR]... [--count N] [--seconds S] \
                     [--rate PPS] [--big N] [--replay PCAP] [--seed S]";
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("send") => send(&args[1..]),
        Some("udpsend") => udp_send(&args[1..]),
        Some("udprecv") => udp_recv(&args[1..]),
        Some("ping") => ping(&args[1..]),
        Some("ikeflood") => ike_flood(&args[1..]),
        Some("hostile") => hostile(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nettool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value following `--name`, if given.
fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn parse<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> Result<T, String> {
    match opt(args, name) {
        Some(v) => v.parse().map_err(|_| format!("invalid value for {name}: {v:?}\n{USAGE}")),
        None => default.ok_or_else(|| format!("missing {name}\n{USAGE}")),
    }
}

fn serve(args: &[String]) -> Result<(), String> {
    let port: u16 = parse(args, "--port", None)?;
    let bind = opt(args, "--bind").unwrap_or("0.0.0.0");
    let listener = TcpListener::bind((bind, port)).map_err(|e| format!("bind {bind}:{port}: {e}"))?;
    println!("listening on {bind}:{port}");
    flush();
    let (mut stream, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stream.read(&mut buf).map_err(|e| format!("read from {peer}: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let line = format!("received bytes={total} sha256={}", hex(&hasher.finalize()));
    println!("{line}");
    flush();
    stream.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("reply to {peer}: {e}"))?;
    Ok(())
}

fn send(args: &[String]) -> Result<(), String> {
    let to: SocketAddr = parse(args, "--to", None)?;
    let bytes: u64 = parse(args, "--bytes", None)?;
    let seed: u64 = parse(args, "--seed", Some(1))?;
    let mut stream =
        TcpStream::connect_timeout(&to, Duration::from_secs(10)).map_err(|e| format!("connect {to}: {e}"))?;
    let mut rng = XorShift::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let chunk = &mut buf[..n];
        rng.fill(chunk);
        hasher.update(&*chunk);
        stream.write_all(chunk).map_err(|e| format!("write to {to}: {e}"))?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write).map_err(|e| format!("shutdown: {e}"))?;
    println!("sent bytes={bytes} sha256={}", hex(&hasher.finalize()));
    flush();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(|e| format!("reading the receiver's reply: {e}"))?;
    if reply.trim().is_empty() {
        return Err("receiver closed without reporting what it received".to_owned());
    }
    println!("peer {}", reply.trim());
    Ok(())
}

fn udp_send(args: &[String]) -> Result<(), String> {
    let opts = udpseq::SendOpts {
        to: parse(args, "--to", None)?,
        rate_mbit: parse(args, "--rate-mbit", Some(20.0))?,
        seconds: parse(args, "--seconds", Some(10.0))?,
        size: parse(args, "--size", Some(1200))?,
    };
    let report = udpseq::send(&opts)?;
    println!("{report}");
    flush();
    Ok(())
}

fn udp_recv(args: &[String]) -> Result<(), String> {
    let port: u16 = parse(args, "--port", None)?;
    let bind = opt(args, "--bind").unwrap_or("0.0.0.0");
    let idle_ms: u64 = parse(args, "--idle-ms", Some(3000))?;
    let gap_report_ms: u64 = parse(args, "--gap-report-ms", Some(50))?;
    let socket = std::net::UdpSocket::bind((bind, port)).map_err(|e| format!("bind {bind}:{port}: {e}"))?;
    // A few seconds of the stream fit in the buffer, so a descheduled receiver does not
    // count as tunnel loss (capped by net.core.rmem_max).
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
    println!("listening on {bind}:{port}");
    flush();
    let report = udpseq::receive(&socket, Duration::from_millis(idle_ms), gap_report_ms)?;
    for (at_ms, ms) in &report.gaps {
        println!("gap at_ms={at_ms} ms={ms}");
    }
    for (from, to) in &report.lost_ranges {
        println!("lost from={from} to={to}");
    }
    println!("{report}");
    flush();
    Ok(())
}

fn ping(args: &[String]) -> Result<(), String> {
    let opts = icmp::PingOpts {
        to: parse(args, "--to", None)?,
        rate: parse(args, "--rate", Some(100.0))?,
        seconds: parse(args, "--seconds", Some(10.0))?,
        linger: Duration::from_millis(parse(args, "--linger-ms", Some(2000))?),
    };
    let report = icmp::run(&opts)?;
    for (from, to) in &report.lost_ranges {
        println!("lost from={from} to={to}");
    }
    println!("{report}");
    flush();
    Ok(())
}

/// A seed from `--seed`, else from the clock (printed by the tools, so a run can be repeated).
fn seed(args: &[String]) -> Result<u64, String> {
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    parse(args, "--seed", Some(clock))
}

fn ike_flood(args: &[String]) -> Result<(), String> {
    let prefix = match (opt(args, "--source-prefix"), opt(args, "--source")) {
        (Some(p), None) => p.parse()?,
        (None, Some(ip)) => ip.parse::<std::net::Ipv4Addr>().map_err(|_| format!("bad --source {ip:?}"))?.into(),
        _ => return Err(format!("give exactly one of --source-prefix and --source\n{USAGE}")),
    };
    let opts = ikeflood::FloodOpts {
        target: parse(args, "--target", None)?,
        count: parse(args, "--count", None)?,
        rate: opt(args, "--rate").map(|_| parse(args, "--rate", None)).transpose()?,
        sources: spoof::Sources(vec![prefix]),
        group: parse(args, "--group", Some(31))?,
        seed: seed(args)?,
    };
    let report = ikeflood::run(&opts)?;
    println!("{report}");
    flush();
    Ok(())
}

fn hostile(args: &[String]) -> Result<(), String> {
    let spoof = args
        .windows(2)
        .filter(|w| w[0] == "--spoof")
        .map(|w| w[1].parse())
        .collect::<Result<Vec<spoof::Prefix>, String>>()?;
    let replay = match opt(args, "--replay") {
        Some(path) => Some(std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?),
        None => None,
    };
    let opts = hostile::HostileOpts {
        target: parse(args, "--target", None)?,
        peer: opt(args, "--peer").map(|_| parse(args, "--peer", None)).transpose()?,
        spoof: spoof::Sources(spoof),
        count: parse(args, "--count", Some(10_000))?,
        seconds: parse(args, "--seconds", Some(30.0))?,
        rate: opt(args, "--rate").map(|_| parse(args, "--rate", None)).transpose()?,
        big: parse(args, "--big", Some(10))?,
        seed: seed(args)?,
        replay,
    };
    if opts.peer.is_none() && opts.spoof.0.is_empty() {
        return Err(format!("give --peer or --spoof\n{USAGE}"));
    }
    let report = hostile::run(&opts)?;
    println!("{report}");
    flush();
    Ok(())
}

fn flush() {
    let _ = std::io::stdout().flush();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// xorshift64* — deterministic filler, not for anything secret.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Never zero, or the generator sticks at zero.
        Self(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_is_deterministic_per_seed() {
        let (mut a, mut b, mut c) = (XorShift::new(7), XorShift::new(7), XorShift::new(8));
        let (mut x, mut y, mut z) = ([0u8; 37], [0u8; 37], [0u8; 37]);
        a.fill(&mut x);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn hex_is_lowercase_two_digits() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }

    #[test]
    fn options_parse_with_defaults() {
        let args: Vec<String> = ["--port", "5001"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parse::<u16>(&args, "--port", None).unwrap(), 5001);
        assert_eq!(parse::<u64>(&args, "--seed", Some(3)).unwrap(), 3);
        assert!(parse::<u64>(&args, "--bytes", None).unwrap_err().contains("missing --bytes"));
    }
}
