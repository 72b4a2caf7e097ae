#!/bin/sh
# Manual IKE-only interop check of `ike` against strongSwan 5.9 (kernel-libipsec), in
# two network namespaces (vgikc-a: ike_probe, vgikc-b: charon). Needs root.
#   ike/examples/ike_probe_netns.sh we-initiate|they-initiate [force_encap 0|1]
# Build first: cargo build -p ike --example ike_probe (CARGO_TARGET_DIR honoured).
set -eu
MODE=${1:-we-initiate}; FORCE=${2:-0}
D=$(mktemp -d /tmp/ike-probe.XXXXXX)
BIN=${CARGO_TARGET_DIR:-$(dirname "$0")/../../target}/debug/examples/ike_probe
CHARON=
cleanup() {
    [ -n "$CHARON" ] && kill "$CHARON" 2>/dev/null || true
    sleep 0.3
    ip netns del vgikc-a 2>/dev/null || true
    ip netns del vgikc-b 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add vgikc-a; ip netns add vgikc-b
ip link add vgikc0 type veth peer name vgikc1
ip link set vgikc0 netns vgikc-a; ip link set vgikc1 netns vgikc-b
ip link add vgikc2 type veth peer name vgikc3
ip link set vgikc2 netns vgikc-b; ip link set vgikc3 netns vgikc-b
ip -n vgikc-a addr add 192.0.2.1/24 dev vgikc0
ip -n vgikc-b addr add 192.0.2.2/24 dev vgikc1
ip -n vgikc-b addr add 10.2.0.1/24 dev vgikc2
for l in vgikc0; do ip -n vgikc-a link set $l up; done
for l in vgikc1 vgikc2 vgikc3; do ip -n vgikc-b link set $l up; done
ip -n vgikc-a link set lo up; ip -n vgikc-b link set lo up
[ "$MODE" = we-initiate ] && START=none || START=start
[ "$MODE" = we-initiate ] && WE=1 || WE=0
mkdir -p "$D/swanctl"
cat > "$D/strongswan.conf" <<EOT
charon {
    load = random nonce aesni openssl gcm aes sha1 sha2 hmac kdf curve25519 pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici
    install_routes = yes
    routing_table = 220
    routing_table_prio = 220
    interfaces_use = vgikc1
    plugins {
        vici {
            socket = unix://$D/charon.vici
        }
    }
    filelog {
        charon {
            path = $D/charon.log
            default = 1
            ike = 2
            cfg = 2
        }
    }
}
swanctl {
    load = pem pkcs1 x509 pubkey random nonce
}
EOT
cat > "$D/swanctl/swanctl.conf" <<EOT
connections {
    s2s {
        version = 2
        local_addrs = 192.0.2.2
        remote_addrs = 192.0.2.1
        proposals = aes256gcm16-prfsha256-x25519
        mobike = no
        local {
            auth = psk
            id = gw-b.example.net
        }
        remote {
            auth = psk
            id = gw-a.example.net
        }
        children {
            net {
                local_ts = 10.2.0.0/24
                remote_ts = 10.1.0.0/24
                esp_proposals = aes256gcm16
                start_action = $START
            }
        }
    }
}
secrets {
    ike-s2s {
        id-a = gw-a.example.net
        id-b = gw-b.example.net
        secret = "interop-secret-123"
    }
}
EOT
ip netns exec vgikc-a "$BIN" 192.0.2.1 192.0.2.2 gw-a.example.net gw-b.example.net interop-secret-123 \
    10.1.0.0/24 10.2.0.0/24 $WE 6 "$FORCE" > "$D/probe.out" 2>&1 &
PROBE=$!
ip netns exec vgikc-b unshare -m --propagation private sh -c \
    "mount -t tmpfs tmpfs /run && exec env STRONGSWAN_CONF=$D/strongswan.conf /usr/lib/ipsec/charon" >/dev/null 2>&1 &
CHARON=$!
sleep 1.5
SWANCTL_DIR="$D/swanctl" swanctl --load-all --uri "unix://$D/charon.vici" >/dev/null 2>&1
sleep 3
swanctl --list-sas --uri "unix://$D/charon.vici"
wait $PROBE || true
grep -E "EVENT|DATAPATH|WARN|ERROR|STATUS" "$D/probe.out" || true
echo "logs in $D"
