#!/usr/bin/env bash
# The project's test command. Run as root:  sudo ./scripts/test.sh
#
#  1. installs missing system packages (scripts/install-deps.sh),
#  2. builds every binary in release (vpngw, vpnctl, nettool),
#  3. runs the unit, in-memory and simulation tests of every crate (debug build),
#  4. builds every fuzz target in fuzz/ and runs each for FUZZ_SECONDS (default 20; 0
#     only builds them) with inputs up to 65,535 bytes and a 1 MiB malloc limit
#     (scripts/fuzz.sh: nightly if installed, else the stable toolchain with
#     RUSTC_BOOTSTRAP=1),
#  5. runs the interop scenarios in network namespaces, one at a time, against the
#     release binaries: vpngw<->vpngw, vpngw<->strongSwan both ways, wrong PSK,
#     disjoint proposals, rekeys under load, forced rekey collisions, strongSwan
#     SIGKILL+restart, 10% WAN loss (interop/tests/rekey.rs, ~8 min;
#     VG_REKEY_SECONDS / VG_RESTART_SECONDS shorten them), and the gateway under
#     attack from a hostile internet namespace (interop/tests/attack.rs, ~1 min),
#     IKE fragmentation over an MTU-limited WAN (interop/tests/fragmentation.rs, ~10 s),
#     IPv6 inside and outside (interop/tests/ipv6.rs, ~30 s), several subnets and CHILD
#     SAs (interop/tests/subnets.rs, ~40 s), IKEv1 against strongSwan and vpngw (raw
#     ESP, NAT-T through a NAT, Quick Mode rekeys and re-authentication under load, DPD,
#     several subnets, Aggressive Mode, wrong PSK and no proposal;
#     interop/tests/ikev1.rs, ~85 s),
#     the algorithm matrix and peer profiles against strongSwan in both roles
#     (interop/tests/matrix.rs, ~1 min), and active/standby tunnels to two strongSwan
#     peers of one remote LAN: failover under load when the active peer dies, failback
#     (interop/tests/failover.rs, ~75 s) (see docs/interop.md),
#  6. builds the Debian package (scripts/deb.sh), installs it, checks its contents, the
#     --help screens against the README and the unit with systemd-analyze verify, runs
#     the unit's ExecStart line against the shipped example configuration in network
#     namespaces, and removes the package (scripts/deb-test.sh, ~30 s; docs/install.md).
# A failed build stops at once; otherwise every test step runs and a summary lists what
# failed (exit status non-zero if anything did), how many tests passed, and every test
# that was skipped, with its reason. A failed scenario keeps its logs, configs and WAN
# capture in a temp directory and prints its path.
#
# Skips: a test that cannot run here (not root, a kernel without a feature) appends
# `SKIPPED <test>: <reason>` to $VG_SKIP_LOG; it is listed as skipped, never counted as
# passed. With CI=true a test that needs root or network namespaces and cannot have
# them fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: run as root (sudo ./scripts/test.sh): the interop scenarios create network namespaces" >&2
    exit 1
fi

step() { printf '\n==> %s\n' "$*"; }
failed=()
results="$(mktemp -d /tmp/vpngw-test.XXXXXX)"
export VG_SKIP_LOG="$results/skipped"
: >"$VG_SKIP_LOG"
# Runs a cargo test command, keeping its output (for the totals) while showing it.
cargo_test() {
    local log="$results/$1.log"
    shift
    set +e
    "$@" 2>&1 | tee "$log"
    local rc="${PIPESTATUS[0]}"
    set -e
    return "$rc"
}

step "system packages"
./scripts/install-deps.sh

step "build release binaries (cargo build --release --workspace --bins)"
cargo build --release --workspace --bins

step "unit, in-memory and simulation tests (cargo test --workspace --exclude interop)"
cargo_test unit cargo test --workspace --exclude interop --no-fail-fast || failed+=("unit/in-memory tests")

step "fuzz targets: build all, run each ${FUZZ_SECONDS:-20} s, inputs up to 65,535 bytes, 1 MiB malloc limit (scripts/fuzz.sh)"
./scripts/fuzz.sh || failed+=("fuzz targets")

step "interop scenarios in network namespaces (cargo test --release -p interop -- --test-threads=1)"
cargo_test interop cargo test --release -p interop --no-fail-fast -- --test-threads=1 --nocapture ||
    failed+=("interop scenarios")

step "Debian package: build, install, run in namespaces, systemd-analyze verify, remove (scripts/deb-test.sh)"
./scripts/deb-test.sh || failed+=("Debian package")

# Totals over every `test result:` line of both cargo test steps.
read -r passed nfailed ignored < <(grep -h '^test result:' "$results"/*.log |
    awk '{for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i;
          if ($(i+1) ~ /^ignored/) g += $i } } END { print p + 0, f + 0, g + 0 }')
mapfile -t skipped < <(sort -u "$VG_SKIP_LOG")
step "tests: $((passed - ${#skipped[@]})) passed, ${#skipped[@]} skipped, $nfailed failed, $ignored ignored"
for s in "${skipped[@]}"; do
    echo "  $s"
done

if [ "${#failed[@]}" -ne 0 ]; then
    step "FAILED: ${failed[*]} (see the failures above)"
    exit 1
fi
step "all tests passed"
