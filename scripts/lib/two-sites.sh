# Sourced by scripts/demo.sh and scripts/deb-test.sh: the two-site topology in network
# namespaces named PREFIX-lana, PREFIX-gwa, PREFIX-gwb, PREFIX-lanb:
#
#   lanA 10.1.0.10 -- gwA 10.1.0.1 | 192.0.2.1 ==WAN== 192.0.2.2 | 10.2.0.1 gwB -- lanB 10.2.0.10
#
#   two_sites_up PREFIX     creates it (deleting leftovers of an earlier run first)
#   two_sites_down PREFIX   deletes the four namespaces (and with them every interface)
# IPv6 is off in every namespace; both gateways forward IPv4.
two_sites_namespaces() { echo "$1-lana $1-gwa $1-gwb $1-lanb"; }

two_sites_down() {
    local ns
    for ns in $(two_sites_namespaces "$1"); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

two_sites_up() {
    local P=$1 ns
    two_sites_down "$P"
    for ns in $(two_sites_namespaces "$P"); do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip -n "$P-gwa" link add wan0 type veth peer name wan0 netns "$P-gwb"
    ip -n "$P-gwa" link add lan0 type veth peer name eth0 netns "$P-lana"
    ip -n "$P-gwb" link add lan0 type veth peer name eth0 netns "$P-lanb"
    _two_sites_addr "$P-gwa" wan0 192.0.2.1/24
    _two_sites_addr "$P-gwb" wan0 192.0.2.2/24
    _two_sites_addr "$P-gwa" lan0 10.1.0.1/24
    _two_sites_addr "$P-gwb" lan0 10.2.0.1/24
    _two_sites_addr "$P-lana" eth0 10.1.0.10/24
    _two_sites_addr "$P-lanb" eth0 10.2.0.10/24
    ip -n "$P-lana" route add default via 10.1.0.1
    ip -n "$P-lanb" route add default via 10.2.0.1
    ip netns exec "$P-gwa" sysctl -q -w net.ipv4.ip_forward=1
    ip netns exec "$P-gwb" sysctl -q -w net.ipv4.ip_forward=1
}

_two_sites_addr() {
    ip -n "$1" addr add "$3" dev "$2"
    ip -n "$1" link set "$2" up
}
