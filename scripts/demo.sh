#!/usr/bin/env bash
# Two-site demo. Run as root:  sudo ./scripts/demo.sh
#
# Builds vpngw, then in network namespaces (prefix vgdemo) builds
#
#   lanA 10.1.0.10 -- gwA 10.1.0.1 | 192.0.2.1 ==WAN== 192.0.2.2 | 10.2.0.1 gwB -- lanB 10.2.0.10
#
# starts vpngw on both gateways (A initiates, B responds), waits for the CHILD SA, pings
# lanA -> lanB, sends 10 MiB over TCP (SHA-256 checked at the far end), prints
# `vpnctl status` of both gateways and tears everything down on exit (also on Ctrl-C or
# failure). Set DEMO_KEEP=1 to keep the logs directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: run as root (sudo ./scripts/demo.sh): it creates network namespaces" >&2
    exit 1
fi

P=vgdemo
# shellcheck source=scripts/lib/two-sites.sh
. scripts/lib/two-sites.sh
WORK=$(mktemp -d /tmp/vgdemo.XXXXXX)
PIDS=()
# Where cargo puts the release binaries (CARGO_TARGET_DIR if set, as scripts/deb.sh).
BIN="${CARGO_TARGET_DIR:-target}/release"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    two_sites_down $P
    if [ "$rc" -ne 0 ]; then
        echo
        echo "demo FAILED (exit $rc). Last lines of the gateway logs:"
        for f in "$WORK"/*.log; do
            [ -f "$f" ] || continue
            echo "--- $f"
            tail -n 20 "$f"
        done
        echo "logs kept in $WORK"
    elif [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    echo "torn down: namespaces $(two_sites_namespaces $P) deleted"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "system packages"
./scripts/install-deps.sh

say "build (cargo build --release --workspace --bins)"
cargo build --release --workspace --bins

say "topology"
two_sites_up $P   # deletes what a previous demo killed hard left behind
echo "lanA 10.1.0.10 -- gwA 192.0.2.1 == WAN == 192.0.2.2 gwB -- lanB 10.2.0.10"

say "gateway configs ($WORK)"
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/site.psk")
gateway_config() { # site local remote local_id remote_id local_net remote_net start
    cat > "$WORK/$1.toml" <<CONF
[gateway]
local_address = "$2"
tun_name = "vpn0"
control_socket = "$WORK/$1.sock"

[[tunnel]]
name = "site-$1-peer"
remote_address = "$3"
local_id = "$4"
remote_id = "$5"
psk_file = "$WORK/site.psk"
local_subnets = ["$6"]
remote_subnets = ["$7"]
start = "$8"
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
encapsulation = "auto"
CONF
}
gateway_config a 192.0.2.1 192.0.2.2 gw-a.example.net gw-b.example.net 10.1.0.0/24 10.2.0.0/24 initiate
gateway_config b 192.0.2.2 192.0.2.1 gw-b.example.net gw-a.example.net 10.2.0.0/24 10.1.0.0/24 respond
cat "$WORK/a.toml"

vpnctl() { "$BIN/vpnctl" --socket "$WORK/$1.sock" "${@:2}"; }
installed_children() { # counts INSTALLED CHILD SAs in `vpnctl status --json`
    vpnctl "$1" status --json 2>/dev/null |
        jq '[.. | objects | select(has("children")) | .children[] | select(.state == "INSTALLED")] | length' 2>/dev/null ||
        echo 0
}
wait_until() { # seconds description command...
    local secs=$1 what=$2
    shift 2
    for _ in $(seq $((secs * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    echo "timed out after ${secs}s waiting for $what" >&2
    return 1
}

say "start vpngw on gwB (responder), then gwA (initiator)"
ip netns exec $P-gwb "$BIN/vpngw" --config "$WORK/b.toml" 2> "$WORK/gwb.log" &
PIDS+=($!)
wait_until 20 "gwB's control socket" vpnctl b status >/dev/null 2>&1
ip netns exec $P-gwa "$BIN/vpngw" --config "$WORK/a.toml" 2> "$WORK/gwa.log" &
PIDS+=($!)
has_child() { local n; n=$(installed_children "$1"); [ "${n:-0}" -gt 0 ] 2>/dev/null; }
wait_until 30 "the CHILD SA on gwA" has_child a
wait_until 30 "the CHILD SA on gwB" has_child b
echo "CHILD SA installed on both gateways"

say "ping lanA (10.1.0.10) -> lanB (10.2.0.10)"
ip netns exec $P-lana ping -n -c 5 -i 0.2 10.2.0.10

say "TCP transfer of 10 MiB lanA -> lanB"
ip netns exec $P-lanb "$BIN/nettool" serve --port 5001 > "$WORK/serve.out" &
serve_pid=$!
PIDS+=("$serve_pid")
wait_until 10 "nettool to listen" grep -q listening "$WORK/serve.out"
start=$(date +%s.%N)
ip netns exec $P-lana "$BIN/nettool" send --to 10.2.0.10:5001 --bytes 10485760 | tee "$WORK/send.out"
end=$(date +%s.%N)
wait "$serve_pid"          # it exits after one connection; reaped here, so never signalled
PIDS=("${PIDS[@]:0:2}")
sent=$(awk '/^sent /{print $3}' "$WORK/send.out")
got=$(awk '/^received /{print $3}' "$WORK/serve.out")
if [ -z "$sent" ] || [ "$sent" != "$got" ]; then
    echo "transfer corrupted: sender $sent, receiver $got" >&2
    exit 1
fi
awk -v s="$start" -v e="$end" 'BEGIN { printf "10 MiB in %.2f s (%.0f Mbit/s), SHA-256 matches at lanB\n", e - s, 10485760 * 8 / (e - s) / 1e6 }'

say "vpnctl status on gwA"
vpnctl a status
say "vpnctl status on gwB"
vpnctl b status

say "demo finished; tearing down"
