//! Routes of the remote subnets into the TUN device, installed with `ip route replace`
//! and removed when the [`Routes`] guard is dropped (or explicitly at shutdown).
//!
//! Spawning iproute2 keeps this small and auditable; the commands are logged at debug.
//! The arguments are never passed through a shell. This module does not pick which
//! routes exist: the daemon derives them from the configuration.

use ipsec_types::TrafficSelector;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

/// Where iproute2's `ip` usually lives.
const IP_CANDIDATES: &[&str] = &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"];

/// Finds the `ip` binary.
pub fn ip_binary() -> io::Result<PathBuf> {
    IP_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("iproute2 `ip` not found (looked in {})", IP_CANDIDATES.join(", ")),
        )
    })
}

/// One route: a subnet through the TUN device, optionally with a preferred source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination, e.g. `10.2.0.0/24`.
    pub dest: String,
    /// Device.
    pub dev: String,
    /// Preferred source address (our LAN address inside the local subnets).
    pub src: Option<IpAddr>,
}

impl Route {
    /// Arguments of `ip` that install this route.
    pub fn install_args(&self) -> Vec<String> {
        let mut a = vec![self.family_flag(), "route".into(), "replace".into(), self.dest.clone()];
        a.extend(["dev".into(), self.dev.clone()]);
        if let Some(src) = self.src {
            a.extend(["src".into(), src.to_string()]);
        }
        a
    }

    /// Arguments of `ip` that remove it.
    pub fn remove_args(&self) -> Vec<String> {
        vec![self.family_flag(), "route".into(), "del".into(), self.dest.clone(), "dev".into(), self.dev.clone()]
    }

    /// Whether both route the same destination through the same device (what `ip route
    /// replace` replaces and `ip route del` removes), whatever their source.
    pub fn same_destination(&self, other: &Route) -> bool {
        self.dest == other.dest && self.dev == other.dev
    }

    fn family_flag(&self) -> String {
        if self.dest.contains(':') {
            "-6".into()
        } else {
            "-4".into()
        }
    }
}

/// The route for `remote` through `dev`, with `src` set to the first of `host_addrs`
/// that lies inside one of `local_subnets` of the same family.
pub fn route_for(
    remote: &TrafficSelector,
    dev: &str,
    local_subnets: &[TrafficSelector],
    host_addrs: &[IpAddr],
) -> Route {
    let src = host_addrs
        .iter()
        .copied()
        .find(|a| a.is_ipv4() == remote.is_ipv4() && local_subnets.iter().any(|s| s.contains_addr(*a)));
    Route { dest: remote.to_string(), dev: dev.to_string(), src }
}

fn run_ip(ip: &PathBuf, args: &[String]) -> io::Result<()> {
    tracing::debug!(cmd = %format!("{} {}", ip.display(), args.join(" ")), "route");
    let out = Command::new(ip).args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(io::Error::other(format!("`ip {}` failed: {}", args.join(" "), stderr.trim())))
    }
}

/// Installed routes; removed on drop.
#[derive(Debug)]
pub struct Routes {
    ip: PathBuf,
    installed: Vec<Route>,
}

impl Routes {
    /// Installs every route, or none: on failure the ones already installed are removed.
    pub fn install(routes: Vec<Route>) -> io::Result<Self> {
        let mut this = Self { ip: ip_binary()?, installed: Vec::with_capacity(routes.len()) };
        for r in routes {
            run_ip(&this.ip, &r.install_args())?;
            this.installed.push(r);
        }
        Ok(this)
    }

    /// What is installed.
    pub fn installed(&self) -> &[Route] {
        &self.installed
    }

    /// Installs one more route (`ip route replace`: a route to the same destination
    /// through the same device is replaced, here too).
    pub fn add(&mut self, route: Route) -> io::Result<()> {
        run_ip(&self.ip, &route.install_args())?;
        self.installed.retain(|r| !r.same_destination(&route));
        self.installed.push(route);
        Ok(())
    }

    /// Removes one route (forgotten even if `ip` fails: it may be gone already).
    pub fn remove(&mut self, route: &Route) -> io::Result<()> {
        self.installed.retain(|r| !r.same_destination(route));
        run_ip(&self.ip, &route.remove_args())
    }

    /// Removes every route now. Errors are logged (the route may already be gone with
    /// its device).
    pub fn remove_all(&mut self) {
        for r in self.installed.drain(..).rev() {
            if let Err(e) = run_ip(&self.ip, &r.remove_args()) {
                tracing::debug!(route = %r.dest, error = %e, "route removal");
            }
        }
    }
}

impl Drop for Routes {
    fn drop(&mut self) {
        self.remove_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> TrafficSelector {
        TrafficSelector::parse_cidr(s).unwrap()
    }

    #[test]
    fn picks_a_source_inside_the_local_subnets() {
        let addrs: Vec<IpAddr> =
            ["192.0.2.1", "10.1.0.1", "2001:db8:1::1"].iter().map(|a| a.parse().unwrap()).collect();
        let r = route_for(&ts("10.2.0.0/24"), "vpn0", &[ts("10.1.0.0/24")], &addrs);
        assert_eq!(r.install_args().join(" "), "-4 route replace 10.2.0.0/24 dev vpn0 src 10.1.0.1");
        assert_eq!(r.remove_args().join(" "), "-4 route del 10.2.0.0/24 dev vpn0");
        let r = route_for(&ts("10.2.0.0/24"), "vpn0", &[ts("10.9.0.0/24")], &addrs);
        assert_eq!(r.src, None);
        let r = route_for(&ts("2001:db8:2::/48"), "vpn0", &[ts("10.1.0.0/24"), ts("2001:db8:1::/48")], &addrs);
        assert_eq!(r.install_args().join(" "), "-6 route replace 2001:db8:2::/48 dev vpn0 src 2001:db8:1::1");
    }
}
