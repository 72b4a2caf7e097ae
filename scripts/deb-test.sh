#!/usr/bin/env bash
# Tests the Debian package as an operator meets it. Run as root:
#   sudo ./scripts/deb-test.sh [PACKAGE.deb]     (default: build it with scripts/deb.sh)
#
#  1. installs it (dpkg -i) and checks what it put where: vpngw and vpnctl in /usr/bin,
#     the unit, the man pages, /etc/vpngw/vpngw.toml as a conffile of mode 0600, owned by
#     root;
#  2. checks that `vpngw --help` and `vpnctl --help` (and each command's) name no
#     option the README does not document, and that the man pages carry the same;
#  3. `systemd-analyze verify` on the installed unit (the binaries, man pages and every
#     directive; these machines have no systemd as PID 1, so the unit is not started);
#  4. runs the unit's ExecStart line, as written, in the demo's topology in network
#     namespaces (prefix vgdeb; lanA - gwA == WAN == gwB - lanB), under the unit's
#     capability bounding set and no-new-privileges (setpriv), against the installed
#     example configuration: first without its key file (it must refuse, exit 2, naming
#     the file), then with one, towards a second installed vpngw on gwB configured from
#     the shipped examples/site-b.toml; the tunnel comes up, lanA pings lanB, the
#     installed vpnctl reads the status by the ExecReload line's --config; the ExecReload
#     line itself, run after a tunnel is added to the configuration, adds it (status,
#     route, a `reload` event for `vpnctl watch`) and leaves the running one's SAs alone,
#     run after the file is broken, refuses it naming file, line and key while the daemon
#     runs on; SIGHUP with the shipped file removes the tunnel again; then SIGTERM
#     (KillMode=mixed sends it to vpngw alone) stops it with the route and control socket
#     gone;
#  5. removes the package (dpkg -P) and checks that nothing of it is left.
# Everything (daemons by PID, namespaces, the key file, the package) is removed on exit,
# also on failure. Refuses to run if a vpngw package is installed already.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "deb-test.sh: run as root: it installs a package and creates network namespaces" >&2
    exit 1
fi
if dpkg-query -W -f='${Status}' vpngw 2>/dev/null | grep -q 'installed'; then
    echo "deb-test.sh: a vpngw package is installed already; remove it first (dpkg -P vpngw)" >&2
    exit 1
fi
if [ -e /run/vpngw/vpngw.sock ]; then
    echo "deb-test.sh: /run/vpngw/vpngw.sock exists: is a vpngw running on this host?" >&2
    exit 1
fi
if ! command -v systemd-analyze >/dev/null; then
    echo "deb-test.sh: installing systemd (for systemd-analyze)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd
fi

deb="${1:-}"
if [ -z "$deb" ]; then
    deb="$(./scripts/deb.sh | tail -n 1)"
fi

P=vgdeb
# shellcheck source=scripts/lib/two-sites.sh
. scripts/lib/two-sites.sh
WORK=$(mktemp -d /tmp/vgdeb.XXXXXX)
PIDS=()
INSTALLED=0
PSK=/etc/vpngw/site-b.psk
UNIT=/usr/lib/systemd/system/vpngw.service

say() { printf '\n==> %s\n' "$*"; }
fail() { echo "deb-test: FAILED: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    two_sites_down $P
    rm -f "$PSK"
    if [ "$INSTALLED" = 1 ]; then dpkg -P vpngw >/dev/null 2>&1; fi
    if [ "$rc" -ne 0 ]; then
        for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
        echo "deb-test: logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() { # seconds description command...
    local secs=$1 what=$2
    shift 2
    for _ in $(seq $((secs * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    fail "timed out after ${secs}s waiting for $what"
}

say "install $deb"
INSTALLED=1
dpkg -i "$deb"
for f in /usr/bin/vpngw /usr/bin/vpnctl "$UNIT" /usr/share/man/man8/vpngw.8.gz /usr/share/man/man8/vpnctl.8.gz \
    /usr/share/doc/vpngw/examples/site-b.toml; do
    dpkg -S "$f" >/dev/null || fail "$f is not in the package"
    [ -e "$f" ] || fail "$f not installed"
done
[ "$(stat -c '%a %U %G' /etc/vpngw/vpngw.toml)" = "600 root root" ] ||
    fail "/etc/vpngw/vpngw.toml is $(stat -c '%a %U %G' /etc/vpngw/vpngw.toml), not 600 root root"
dpkg-query -W -f='${Conffiles}\n' vpngw | grep -q '^ /etc/vpngw/vpngw.toml ' ||
    fail "/etc/vpngw/vpngw.toml is not a conffile"
/usr/bin/vpngw --version | grep -qx "vpngw $(dpkg-query -W -f='${Version}' vpngw | sed 's/-[^-]*$//')" ||
    fail "vpngw --version does not match the package version"
echo "contents, conffile and modes: OK"

say "--help and the man pages against the README"
helps=("/usr/bin/vpngw --help" "/usr/bin/vpnctl --help")
for cmd in $(/usr/bin/vpnctl --help | awk '/^Commands:/ {on = 1; next} /^$/ {on = 0} on && $1 != "help" {print $1}'); do
    helps+=("/usr/bin/vpnctl $cmd --help")
    grep -q "vpnctl .*\b$cmd\b" README.md || fail "README does not show \`vpnctl $cmd\`"
    [ -e "/usr/share/man/man8/vpnctl-$cmd.8.gz" ] || fail "no man page vpnctl-$cmd(8)"
done
for h in "${helps[@]}"; do
    for opt in $($h | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
        case "$opt" in --help | --version) continue ;; esac
        grep -q -- "$opt" README.md || fail "\`$h\` shows $opt, the README does not"
    done
done
zcat /usr/share/man/man8/vpngw.8.gz | grep -q 'log\\-level' || fail "vpngw(8) lacks --log-level"
zcat /usr/share/man/man8/vpnctl-rekey.8.gz | grep -q 'wait' || fail "vpnctl-rekey(8) lacks --wait"
zcat /usr/share/man/man8/vpngw.8.gz | grep -q 'SIGHUP' || fail "vpngw(8) does not say what SIGHUP does"
zcat /usr/share/man/man8/vpnctl-watch.8.gz | grep -q 'reloads' || fail "vpnctl-watch(8) does not mention reloads"
echo "every option of ${#helps[@]} --help screens is in the README; man pages present"

say "systemd-analyze verify $UNIT"
systemd-analyze verify "$UNIT" 2>&1 | tee "$WORK/verify.log"
[ ! -s "$WORK/verify.log" ] || fail "systemd-analyze verify complained"
for want in 'Type=notify' 'ExecReload=/usr/bin/vpnctl --config /etc/vpngw/vpngw.toml reload' 'NoNewPrivileges=yes' \
    'ProtectSystem=strict' 'RuntimeDirectory=vpngw' 'DeviceAllow=/dev/net/tun rw'; do
    grep -qxF "$want" "$UNIT" || fail "the unit lacks $want"
done
echo "systemd-analyze verify: no complaint"

# The unit's lines, as systemd would run them.
unit_value() { sed -n "s/^$1=//p" "$UNIT"; }
read -r -a exec_start <<<"$(unit_value ExecStart)"
read -r -a exec_reload <<<"$(unit_value ExecReload)"
caps=$(unit_value CapabilityBoundingSet | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
# Under the unit's bounding set and NoNewPrivileges=yes, as systemd starts it.
sandbox=(setpriv --bounding-set "-all,$caps" --inh-caps -all --no-new-privs)
echo "ExecStart: ${exec_start[*]}; sandbox: ${sandbox[*]}"

say "topology (the demo's): lanA 10.1.0.10 -- gwA 192.0.2.1 == WAN == 192.0.2.2 gwB -- lanB 10.2.0.10"
two_sites_up $P

say "ExecStart without the key file: refused"
set +e
ip netns exec $P-gwa "${sandbox[@]}" "${exec_start[@]}" 2>"$WORK/nokey.log"
rc=$?
set -e
[ "$rc" = 2 ] || fail "vpngw without its key file exited $rc, not 2"
grep -q "/etc/vpngw/vpngw.toml:[0-9]*: .*psk_file.*$PSK" "$WORK/nokey.log" || fail "the error does not name file, line, key and key file"
cat "$WORK/nokey.log"
ip -n $P-gwa link show vpn0 >/dev/null 2>&1 && fail "a TUN device was left behind"

say "gwB: the installed vpngw with the shipped examples/site-b.toml (control socket and key file moved to $WORK)"
(umask 077; head -c 32 /dev/urandom | base64 >"$PSK"; cp "$PSK" "$WORK/site-a.psk")
sed -e "s|^control_socket = .*|control_socket = \"$WORK/b.sock\"|" \
    -e "s|^psk_file = .*|psk_file = \"$WORK/site-a.psk\"|" /usr/share/doc/vpngw/examples/site-b.toml >"$WORK/b.toml"
ip netns exec $P-gwb /usr/bin/vpngw --config "$WORK/b.toml" 2>"$WORK/gwb.log" &
PIDS+=($!)
wait_until 20 "gwB's control socket" /usr/bin/vpnctl --socket "$WORK/b.sock" status >/dev/null 2>&1

say "gwA: the unit's ExecStart with /etc/vpngw/vpngw.toml as shipped"
ip netns exec $P-gwa "${sandbox[@]}" "${exec_start[@]}" 2>"$WORK/gwa.log" &
PIDA=$!
PIDS+=($PIDA)
installed_children() {
    /usr/bin/vpnctl --config /etc/vpngw/vpngw.toml status --json 2>/dev/null |
        jq '[.. | objects | select(has("children")) | .children[] | select(.state == "INSTALLED")] | length' 2>/dev/null
}
child_up() { [ "$(installed_children)" = 1 ]; }
wait_until 30 "the CHILD SA on gwA" child_up
grep -E '^Cap(Bnd|Eff)|^NoNewPrivs' "/proc/$PIDA/status"
[ "$(sed -n 's/^NoNewPrivs:\t//p' "/proc/$PIDA/status")" = 1 ] || fail "NoNewPrivs not set"
ip netns exec $P-lana ping -c 3 -i 0.2 -W 2 10.2.0.10 || fail "lanA cannot ping lanB through the tunnel"
/usr/bin/vpnctl status site-b | head -n 12

CONF=/etc/vpngw/vpngw.toml
vpnctl_a() { /usr/bin/vpnctl --config "$CONF" "$@"; }
site_b_spis() {
    vpnctl_a status --json | jq -c '[.status.tunnels[] | select(.name == "site-b") | .ike_sas[].children[].spi_in]'
}
tunnel_names() { vpnctl_a status --json | jq -r '[.status.tunnels[].name] | join(" ")'; }
spis_before=$(site_b_spis)
cp "$CONF" "$WORK/vpngw.toml.shipped"
# A watcher for the whole reload sequence; its first line says it is subscribed.
vpnctl_a watch --json >"$WORK/watch.log" 2>"$WORK/watch.err" &
WATCH=$!
PIDS+=($WATCH)
wait_until 10 "vpnctl watch subscribed" grep -q '"watching"' "$WORK/watch.log"
watched() { jq -e -s "$1" "$WORK/watch.log" >/dev/null; }

say "ExecReload: ${exec_reload[*]}, after adding tunnel site-c (responder, 10.3.0.0/24) to $CONF"
cat >>"$CONF" <<END_OF_TUNNEL

[[tunnel]]
name = "site-c"
remote_address = "192.0.2.3"
local_id = "gw-a.example.net"
remote_id = "gw-c.example.net"
psk_file = "$PSK"
local_subnets = ["10.1.0.0/24"]
remote_subnets = ["10.3.0.0/24"]
start = "respond"
END_OF_TUNNEL
"${exec_reload[@]}" | tee "$WORK/reload.out"
grep -qx '  added:     site-c' "$WORK/reload.out" || fail "the reload did not report site-c added"
grep -qx '  unchanged: site-b' "$WORK/reload.out" || fail "the reload did not leave site-b unchanged"
[ "$(tunnel_names)" = "site-b site-c" ] || fail "vpnctl status shows tunnels '$(tunnel_names)' after the reload"
ip -n $P-gwa route show 10.3.0.0/24 | grep -q 'dev vpn0' || fail "no route to site-c's subnet after the reload"
[ "$(site_b_spis)" = "$spis_before" ] || fail "site-b's CHILD SA changed on a reload that left it alone"
ip netns exec $P-lana ping -c 2 -i 0.2 -W 2 10.2.0.10 >/dev/null || fail "lanA cannot ping lanB after the reload"
wait_until 5 "the reload event" watched 'any(.[]; .event.kind == "reload" and .event.added == ["site-c"])'
echo "site-c added and routed, site-b kept its CHILD SA $spis_before, vpnctl watch saw the reload"

say "ExecReload with an invalid $CONF: refused, naming file, line and key; the daemon runs on"
sed -i 's|^remote_subnets = \["10.3.0.0/24"\]|remote_subnets = ["10.3.0/24"]|' "$CONF"
line=$(grep -n '^remote_subnets = \["10.3.0/24"\]' "$CONF" | cut -d: -f1)
[ -n "$line" ] || fail "could not break site-c's remote_subnets"
set +e
"${exec_reload[@]}" >"$WORK/bad-reload.out" 2>&1
rc=$?
set -e
cat "$WORK/bad-reload.out"
[ "$rc" = 1 ] || fail "ExecReload of an invalid file exited $rc, not 1"
grep -qF "$CONF:$line: tunnel[1] (site-c) \`remote_subnets\`" "$WORK/bad-reload.out" ||
    fail "the refusal does not name $CONF:$line and the key"
# From the daemon (vpnctl --config reads only control_socket, so it still gets there).
grep -q '^vpnctl: vpngw refused the request: .*(invalid_config)$' "$WORK/bad-reload.out" ||
    fail "the refusal did not come from the daemon"
kill -0 "$PIDA" 2>/dev/null || fail "vpngw stopped after a refused reload"
[ "$(tunnel_names)" = "site-b site-c" ] || fail "the refused reload changed the tunnels to '$(tunnel_names)'"
child_up || fail "the tunnel went down on a refused reload"
wait_until 5 "the error event" watched 'any(.[]; .event.kind == "error" and (.event.message | contains("refused")))'
echo "refused (exit 1), running configuration kept"

say "SIGHUP (what kill -HUP \$MAINPID sends) with the shipped $CONF: site-c removed again"
cp "$WORK/vpngw.toml.shipped" "$CONF"
kill -HUP "$PIDA"
one_tunnel() { [ "$(tunnel_names)" = "site-b" ]; }
no_route_c() { [ -z "$(ip -n $P-gwa route show 10.3.0.0/24)" ]; }
wait_until 10 "site-c gone" one_tunnel
wait_until 10 "site-c's route gone" no_route_c
kill -0 "$PIDA" 2>/dev/null || fail "vpngw stopped on SIGHUP"
[ "$(site_b_spis)" = "$spis_before" ] || fail "site-b's CHILD SA changed on SIGHUP"
wait_until 5 "the SIGHUP reload event" \
    watched 'any(.[]; .event.kind == "reload" and .event.removed == ["site-c"] and (.event.message | contains("SIGHUP")))'
grep -q 'configuration reloaded' "$WORK/gwa.log" || fail "no reload in vpngw's log"
kill -TERM "$WATCH"
wait "$WATCH" 2>/dev/null || true
echo "site-c removed by SIGHUP, site-b untouched; vpnctl watch saw:"
jq -r 'select(.event) | "  \(.event.kind): \(.event.message)"' "$WORK/watch.log"

say "stop (SIGTERM to vpngw, as KillMode=mixed does)"
kill -TERM "$PIDA"
for _ in $(seq 100); do kill -0 "$PIDA" 2>/dev/null || break; sleep 0.1; done
set +e
wait "$PIDA"
rc=$?
set -e
[ "$rc" = 0 ] || fail "vpngw exited $rc on SIGTERM"
[ -z "$(ip -n $P-gwa route show 10.2.0.0/24)" ] || fail "route left behind"
[ ! -e /run/vpngw/vpngw.sock ] || fail "control socket left behind"
grep -q "routes and control socket removed" "$WORK/gwa.log" || fail "no clean shutdown in the log"
echo "stopped cleanly"

say "remove the package (dpkg -P vpngw)"
rm -f "$PSK"
dpkg -P vpngw
INSTALLED=0
for f in /usr/bin/vpngw /usr/bin/vpnctl "$UNIT" /etc/vpngw /usr/share/man/man8/vpngw.8.gz /usr/share/doc/vpngw; do
    [ ! -e "$f" ] || fail "$f left behind after dpkg -P"
done
echo "deb-test: all checks passed"
