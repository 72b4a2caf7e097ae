#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for a bounded time, with inputs
# up to 65,535 bytes and memory limits, so that the targets cannot rot and the class of
# bug where a count is trusted over the bytes present is found:
#   -max_len=65535 -len_control=0   inputs as large as a UDP datagram, from the start
#   -malloc_limit_mb=1              a single allocation of 1 MiB or more is a crash: no
#                                   target legitimately asks for more than ~70 KiB at
#                                   once from a 64 KiB input, and a Vec sized from a
#                                   16-bit count of 24-byte entries (the Delete bomb) is 1.5 MiB
#   -rss_limit_mb=2048              the process (ASan's quarantine included) stays under 2 GiB
#   -timeout=10                     no input takes 10 s (work in proportion to a count)
# built with debug assertions (-a), so an arithmetic overflow is a crash too.
# ike_parse and v1_parse (IKEv2 and IKEv1) also check the parser's allocation bound
# themselves (8 * len + 8 KiB).
#
# Usage: ./scripts/fuzz.sh [TARGET...]     (default: every target `cargo fuzz list` shows)
#   FUZZ_SECONDS   seconds per target (default 20; 0 only builds every target)
# The corpus grows in fuzz/corpus/<target> (not in git); fuzz/seeds/<target> (in git)
# holds hand-made starting inputs (real IKE messages, large plaintext chains). A crash
# leaves its input in fuzz/artifacts/<target>/; replay it (with a backtrace) with
#   RUST_BACKTRACE=1 cargo +nightly fuzz run -a <target> fuzz/artifacts/<target>/<file>
#
# Needs cargo-fuzz (scripts/install-deps.sh installs it) and a toolchain that accepts
# -Z flags: nightly when `rustup toolchain list` has one, otherwise the stable toolchain
# with RUSTC_BOOTSTRAP=1 (stable ships the sanitizer runtimes cargo fuzz links).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=+nightly
else
    echo "fuzz: no nightly toolchain; using the default toolchain with RUSTC_BOOTSTRAP=1"
    toolchain=
    export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz missing (scripts/install-deps.sh installs it)" >&2
    exit 1
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo $toolchain fuzz list)
fi

echo "fuzz: building ${targets[*]} (cargo $toolchain fuzz build -a)"
cargo $toolchain fuzz build -a
if [ "$seconds" = 0 ]; then
    echo "fuzz: FUZZ_SECONDS=0: every target builds; not running them"
    exit 0
fi

logs="$(mktemp -d /tmp/vpngw-fuzz.XXXXXX)"
failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    dirs=("fuzz/corpus/$t")
    [ -d "fuzz/seeds/$t" ] && dirs+=("fuzz/seeds/$t")
    [ "$t" = config_toml ] && dirs+=(examples)
    log="$logs/$t.log"
    rc=0
    # No backtrace: symbolizing one allocates megabytes, which the malloc limit would
    # report as out-of-memory instead of the panic (replay the input to get one).
    RUST_BACKTRACE=0 cargo $toolchain fuzz run -a "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -max_len=65535 -len_control=0 \
        -malloc_limit_mb=1 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n1; }
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz: %-13s ok: %s runs in %ss (%s/s), %s new inputs, corpus %s, peak RSS %s MiB\n' "$t" \
            "$(stat number_of_executed_units)" "$seconds" "$(stat average_exec_per_sec)" \
            "$(stat new_units_added)" "$(ls "fuzz/corpus/$t" | wc -l)" "$(stat peak_rss_mb)"
    else
        failed+=("$t")
        echo "fuzz: $t FAILED (exit $rc); the end of its log ($log):" >&2
        grep -v -E '^#[0-9]+' "$log" | tail -n 40 >&2
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in $logs)" >&2
    exit 1
fi
rm -rf "$logs"
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s each without a crash"
