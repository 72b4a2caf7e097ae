#!/usr/bin/env bash
# The project's scale benchmark. Run as root:  sudo ./scripts/scale.sh [scale options]
#
#  1. installs missing system packages (scripts/install-deps.sh: strongSwan, ...),
#  2. builds vpngw, vpnctl and the scale bench in release,
#  3. runs target/release/scale: one gateway with 1,000 tunnels to 1,000 peer addresses
#     (the peers are one load-generator process driving the ike crate), for vpngw and then
#     for strongSwan: tunnels established per second, memory per tunnel, and the CPU
#     seconds and peak RSS of two 100,000-request IKE_SA_INIT floods; prints a table with
#     the vpngw/strongSwan ratios and writes target/bench/scale.json.
#
# Options go to the scale binary, e.g. a quick look:
#   sudo ./scripts/scale.sh --tunnels 100 --flood-count 10000 --tail 5
# See docs/scale.md (and `target/release/scale --help`). About 4 minutes with the defaults.
#
# Ctrl-C stops the run: the bench stops the daemons and the load generator it started (by
# PID) and deletes its namespaces; this script returns only once that is done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scale.sh: run as root (sudo ./scripts/scale.sh): the benchmark creates network namespaces" >&2
    exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
./scripts/install-deps.sh

step "build release binaries (vpngw, vpnctl, scale)"
if ! cargo build --release -p gateway --bins -p interop --bin scale; then
    # Still allow the strongSwan run; the bench refuses to run a stale vpngw.
    echo "scale.sh: WARNING: vpngw does not build; building only the bench, the vpngw run will fail" >&2
    cargo build --release -p interop --bin scale
    export VG_BENCH_VPNGW_BUILD_FAILED=1
fi

bin="${CARGO_TARGET_DIR:-target}/release/scale"
step "scale benchmark ($bin $*)"
# shellcheck source=scripts/lib/supervised.sh
. scripts/lib/supervised.sh
run_supervised scale "$bin" "$@"
