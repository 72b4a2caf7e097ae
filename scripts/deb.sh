#!/usr/bin/env bash
# Builds the Debian package vpngw_<version>-1_<arch>.deb:  ./scripts/deb.sh
#
#  1. renders the man pages vpngw(8), vpnctl(8) and vpnctl-<command>(8) from the clap
#     definitions behind --help (gateway/examples/manpages.rs), gzipped,
#  2. builds vpngw and vpnctl in release and runs cargo-deb on them (contents, unit and
#     conffile in gateway/Cargo.toml [package.metadata.deb] and gateway/debian/).
# Prints the path of the package on its last line. Needs cargo-deb
# (scripts/install-deps.sh installs it). Does not need root.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "deb.sh: cargo-deb missing: cargo install cargo-deb --locked (or ./scripts/install-deps.sh)" >&2
    exit 1
fi
target="${CARGO_TARGET_DIR:-target}"
man="$target/release/man"
rm -rf "$man"
mkdir -p "$man"
cargo run -q -p gateway --example manpages -- "$man"
# -n: no name or time stamp in the gzip header, so the package is reproducible.
gzip -9nf "$man"/*.8
# Only vpngw and vpnctl (cargo-deb alone would build the whole workspace).
cargo build --release -p gateway --bins >&2
cargo deb -p gateway --no-build -o "$target/debian" >&2
deb="$(ls -t "$target"/debian/vpngw_*.deb | head -n 1)"
echo "$deb"
