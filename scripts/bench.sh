#!/usr/bin/env bash
# The project's benchmark command. Run as root:  sudo ./scripts/bench.sh [bench options]
#
#  1. installs missing system packages (scripts/install-deps.sh: strongSwan, iperf3, ...),
#  2. builds every binary in release (cargo build --release --workspace --bins),
#  3. runs target/release/bench, which measures on the namespace topology, one after
#     another: plain routing, strongSwan<->strongSwan, vpngw<->vpngw as installed
#     (ESP-in-UDP, agreed between two vpngw), with raw ESP and with ESP-in-UDP forced,
#     vpngw<->strongSwan, the AES-CBC suites (iperf3 TCP and UDP, ping RTT,
#     CPU seconds per GB), prints a table with the ratios to the strongSwan anchor and
#     writes target/bench/throughput.json.
#
# Options go to the bench binary, e.g. a quick run:
#   sudo ./scripts/bench.sh --only plain,strongswan --tcp-seconds 3 --runs 1
# See docs/benchmark.md (and `target/release/bench --help`).
#
# Ctrl-C stops the run: the bench stops the gateways it started (by PID) and deletes its
# namespaces; this script returns only once that is done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh: run as root (sudo ./scripts/bench.sh): the benchmark creates network namespaces" >&2
    exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
./scripts/install-deps.sh

step "build release binaries (cargo build --release --workspace --bins)"
if ! cargo build --release --workspace --bins; then
    # Still allow the plain and strongSwan cases; the bench refuses to run a stale vpngw.
    echo "bench.sh: WARNING: the workspace does not build; building only the bench, vpngw cases will fail" >&2
    cargo build --release -p interop --bin bench
    export VG_BENCH_VPNGW_BUILD_FAILED=1
fi

bench="${CARGO_TARGET_DIR:-target}/release/bench"
step "benchmark ($bench $*)"
# shellcheck source=scripts/lib/supervised.sh
. scripts/lib/supervised.sh
run_supervised bench "$bench" "$@"
