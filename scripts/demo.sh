#!/usr/bin/env bash
# make demo: two vxdp nodes, three pods, traffic across the overlay, the
# tunnel map, counters, then everything removed again. All addresses live
# in network namespaces this script creates; nothing touches the root
# namespace's addresses or routes.
set -euo pipefail

VXDP=${VXDP:-$(dirname "$0")/../bin/vxdp}
VXDP=$(readlink -f "$VXDP")
P=vxdemo$$-            # namespace prefix, unique per run
WORK=$(mktemp -d /tmp/vxdp-demo.XXXXXX)
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
	set +e
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	for ns in $(ip netns list | awk '{print $1}' | grep "^$P"); do ip netns del "$ns"; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $EUID -ne 0 ]]; then echo "make demo needs root (network namespaces)" >&2; exit 1; fi

say "Building the hosts: node1 and node2 on a veth underlay, pods as namespaces"
for ns in node1 node2 pod1 pod2 pod3; do ip netns add "$P$ns"; ip -n "$P$ns" link set lo up; done
ip -n "${P}node1" link add eth0 type veth peer name eth0 netns "${P}node2"
ip -n "${P}node1" addr add 10.169.72.233/24 dev eth0
ip -n "${P}node2" addr add 10.169.72.238/24 dev eth0
ip -n "${P}node1" link set eth0 up
ip -n "${P}node2" link set eth0 up
echo "node1 10.169.72.233 (pods 10.1.1.0/24)  <-- veth, MTU 1500 -->  node2 10.169.72.238 (pods 10.1.2.0/24)"

# The embedded default: the seed's two-node picture.
cat >"$WORK/node1.yaml" <<YAML
node-name: node1
node-ip: 10.169.72.233
pod-cidr: 10.1.1.0/24
cluster-pool-ipv4-cidr: 10.1.0.0/16
nodes:
  - {name: node2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}
endpoints:
  - {name: busybox, ip: 10.1.1.154, netns: /run/netns/${P}pod1, identity: 1000}
  - {name: web, ip: 10.1.1.155, netns: /run/netns/${P}pod2, identity: 2000}
YAML
cat >"$WORK/node2.yaml" <<YAML
node-name: node2
node-ip: 10.169.72.238
pod-cidr: 10.1.2.0/24
cluster-pool-ipv4-cidr: 10.1.0.0/16
nodes:
  - {name: node1, ip: 10.169.72.233, pod-cidr: 10.1.1.0/24}
endpoints:
  - {name: busybox, ip: 10.1.2.154, netns: /run/netns/${P}pod3, identity: 1000}
YAML

say "Starting one agent per node"
for n in node1 node2; do
	ip netns exec "$P$n" "$VXDP" agent --config "$WORK/$n.yaml" --socket "$WORK/$n.sock" --log-level warn \
		>"$WORK/$n.log" 2>&1 &
	PIDS+=($!)
done
for n in node1 node2; do
	for _ in $(seq 100); do [[ -S $WORK/$n.sock ]] && break; sleep 0.1; done
	[[ -S $WORK/$n.sock ]] || { echo "agent $n did not start:"; cat "$WORK/$n.log"; exit 1; }
done
v1() { "$VXDP" --socket "$WORK/node1.sock" "$@"; }

say "node1: status, endpoints and the tunnel map (Cilium's format)"
run v1 status
run v1 endpoint list
run v1 tunnel list

say "Inside pod busybox on node1: an ordinary eth0 with the overlay MTU"
run ip netns exec "${P}pod1" ip -br addr show dev eth0
run ip netns exec "${P}pod1" ip route

say "Pod to pod across nodes (10.1.1.154 -> 10.1.2.154, VXLAN over the underlay)"
run ip netns exec "${P}pod1" ping -c 3 -i 0.2 -W 2 10.1.2.154

say "Pod to pod on the same node (never touches the underlay)"
run ip netns exec "${P}pod1" ping -c 2 -i 0.2 -W 2 10.1.1.155

say "node1 itself to a pod on node2 (through vxdp_host)"
run ip netns exec "${P}node1" ping -c 2 -i 0.2 -W 2 10.1.2.154

if command -v iperf3 >/dev/null; then
	say "TCP across the overlay for 3 seconds (iperf3)"
	ip netns exec "${P}pod3" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
	PIDS+=($!)
	sleep 0.5
	ip netns exec "${P}pod1" iperf3 -c 10.1.2.154 -p 5201 -t 3 -f m | grep -E "sender|receiver" || true
fi

say "Path MTU discovery: a 1500-byte DF packet from a pod whose MTU is too large"
ip netns exec "${P}pod1" ip link set eth0 mtu 1500
run ip netns exec "${P}pod1" ping -c 1 -M do -s 1472 -W 2 10.1.2.154 || true
ip netns exec "${P}pod1" ip link set eth0 mtu 1450

say "Removing node2 from node1: its pods become unreachable, counted as no_route"
run v1 node del node2
run ip netns exec "${P}pod1" ping -c 1 -W 1 10.1.2.154 || true
run v1 tunnel list

say "node1 counters"
run v1 stats

say "Stopping the agents; devices and namespaces are removed"
