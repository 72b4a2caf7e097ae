#!/usr/bin/env bash
# Installs the system packages the tests and the demo need (strongSwan as the reference
# peer, iproute2, ping, tcpdump, jq, ...; dpkg-dev, systemd and man-db for the Debian
# package's test: dpkg-shlibdeps, systemd-analyze, man) and cargo-fuzz and cargo-deb. Idempotent: does nothing when
# all are present.
# Usage (as root): ./scripts/install-deps.sh
set -euo pipefail

packages=(
    strongswan-charon strongswan-swanctl
    libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins
    iproute2 iputils-ping iperf3 tcpdump jq nftables procps util-linux
    dpkg-dev systemd man-db
)

# cargo-fuzz for scripts/fuzz.sh (from crates.io; the fuzz targets also need a nightly
# toolchain, which scripts/fuzz.sh checks for).
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked --version '^0.13'
fi

# cargo-deb for scripts/deb.sh (the Debian package).
if ! cargo deb --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-deb (cargo install cargo-deb --locked)"
    cargo install cargo-deb --locked --version '^3'
fi

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# --no-install-recommends: some of these otherwise pull in a kernel image.
apt-get install -y -q --no-install-recommends "${missing[@]}"

for tool in ip ping tcpdump swanctl jq nft sysctl unshare setpriv systemd-analyze dpkg-shlibdeps; do
    command -v "$tool" >/dev/null || { echo "install-deps: $tool still missing" >&2; exit 1; }
done
[ -x /usr/lib/ipsec/charon ] || { echo "install-deps: /usr/lib/ipsec/charon missing" >&2; exit 1; }
echo "install-deps: done"
