#!/usr/bin/env bash
# make demo: two vxdp nodes, three pods, traffic across the overlay, the
# tunnel map, counters, then everything removed again. All addresses live
# in network namespaces this script creates; nothing touches the root
# namespace's addresses or routes.
set -euo pipefail

# Usage: demo.sh [tunnel|native]   (default tunnel: VXLAN between nodes)
MODE=${1:-tunnel}
case $MODE in tunnel | native) ;; *) echo "usage: $0 [tunnel|native]" >&2; exit 2 ;; esac
VXDP=${VXDP:-$(dirname "$0")/../bin/vxdp}
VXDP=$(readlink -f "$VXDP")
P=vxdemo$$-            # namespace prefix, unique per run
WORK=$(mktemp -d /tmp/vxdp-demo.XXXXXX)
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
	set +e
	if [[ -n ${PODMAN:-} ]]; then
		"${PODMAN[@]}" rm --force --all --time 0 >/dev/null 2>&1
		"${PODMAN[@]}" system reset --force >/dev/null 2>&1
	fi
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	for ns in $(ip netns list | awk '{print $1}' | grep "^$P"); do ip netns del "$ns"; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $EUID -ne 0 ]]; then echo "make demo needs root (network namespaces)" >&2; exit 1; fi

say "Building the hosts: two nodes and a Linux VM on one underlay switch, pods as namespaces"
for ns in switch node1 node2 vm pod1 pod2 pod3; do ip netns add "$P$ns"; ip -n "$P$ns" link set lo up; done
ip -n "${P}switch" link add br0 type bridge
ip -n "${P}switch" link set br0 up
i=0
for host in node1:10.169.72.233 node2:10.169.72.238 vm:10.169.72.236; do
	ns=$P${host%%:*}
	ip -n "$ns" link add eth0 type veth peer name "port$i" netns "${P}switch"
	ip -n "$ns" addr add "${host#*:}/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "${P}switch" link set "port$i" master br0
	ip -n "${P}switch" link set "port$i" up
	i=$((i + 1))
done
echo "node1 10.169.72.233 (pods 10.1.1.0/24), node2 10.169.72.238 (pods 10.1.2.0/24),"
echo "vm 10.169.72.236 (a Linux vxlan VTEP for 10.1.5.0/24), all on one bridge, MTU 1500"

# The embedded default: the two-node picture of Cilium's VTEP integration
# guide (docs.cilium.io/en/stable/network/vtep/).
MODEKEYS=""
if [[ $MODE == native ]]; then
	# Native routing: the kernel routes pod CIDRs, vxdp installs
	# `podCIDR via nodeIP` for every node; only VTEP traffic is tunnelled.
	MODEKEYS=$'routing-mode: native\nauto-direct-node-routes: "true"'
fi
# In tunnel mode the busybox pods are dual-stack: an IPv4 and an IPv6
# address on the same eth0.
CIDR1=10.1.1.0/24 CIDR2=10.1.2.0/24 BB1=10.1.1.154 BB2=10.1.2.154
if [[ $MODE != native ]]; then
	CIDR1=10.1.1.0/24,fd00:1:1::/64 CIDR2=10.1.2.0/24,fd00:1:2::/64
	BB1=10.1.1.154,fd00:1:1::154 BB2=10.1.2.154,fd00:1:2::154
fi
cat >"$WORK/node1.yaml" <<YAML
$MODEKEYS
node-name: node1
state-dir: $WORK/state1
# The VM behind a VTEP, in the guide's key format.
enable-vtep: "true"
vtep-endpoint: "10.169.72.236"
vtep-cidr: "10.1.5.0/24"
vtep-mask: "255.255.255.0"
vtep-mac: "82:36:4c:98:2e:56"
node-ip: 10.169.72.233
pod-cidr: "$CIDR1"
cluster-pool-ipv4-cidr: 10.1.0.0/16
nodes:
  - {name: node2, ip: 10.169.72.238, pod-cidr: "$CIDR2"}
endpoints:
  - {name: busybox, ip: "$BB1", netns: /run/netns/${P}pod1, identity: 1000}
  - {name: web, ip: 10.1.1.155, netns: /run/netns/${P}pod2, identity: 2000}
YAML
cat >"$WORK/node2.yaml" <<YAML
$MODEKEYS
node-name: node2
state-dir: $WORK/state2
node-ip: 10.169.72.238
pod-cidr: "$CIDR2"
cluster-pool-ipv4-cidr: 10.1.0.0/16
nodes:
  - {name: node1, ip: 10.169.72.233, pod-cidr: "$CIDR1"}
endpoints:
  - {name: busybox, ip: "$BB2", netns: /run/netns/${P}pod3, identity: 1000}
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

if [[ $MODE == native ]]; then
	say "Native routing: the routes vxdp installed on node1, and IP forwarding"
	run ip netns exec "${P}node1" ip route
	run ip netns exec "${P}node1" cat /proc/sys/net/ipv4/ip_forward
	say "Pod to pod across nodes (10.1.1.154 -> 10.1.2.154, plain IP routed by the kernels)"
else
	say "Pod to pod across nodes (10.1.1.154 -> 10.1.2.154, VXLAN over the underlay)"
fi
run ip netns exec "${P}pod1" ping -c 3 -i 0.2 -W 2 10.1.2.154

if [[ $MODE != native ]]; then
	say "The same pods over IPv6 (fd00:1:1::154 -> fd00:1:2::154, the same eth0, VXLAN over the IPv4 underlay)"
	run ip netns exec "${P}pod1" ping -c 3 -i 0.2 -W 2 fd00:1:2::154
fi

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

CNI=$(dirname "$VXDP")/vxdp-cni
if [[ $MODE == tunnel && -x $CNI ]] && command -v podman >/dev/null && command -v runc >/dev/null && command -v busybox >/dev/null; then
	say "Containers from a real runtime: podman attaches them through vxdp-cni, one network per node"
	# podman with its CNI backend, all of its configuration, storage and
	# networks under $WORK; the containers' root is Debian's busybox-static.
	mkdir -p "$WORK/podman/"{root,runroot,tmp,net,cni} "$WORK/rootfs/"{bin,proc,sys,dev,etc,tmp}
	cp "$(command -v busybox)" "$WORK/rootfs/bin/busybox"
	for a in sh sleep ping ip; do ln -s busybox "$WORK/rootfs/bin/$a"; done
	cp "$CNI" "$WORK/podman/cni/"
	for n in node1 node2; do
		printf '{"cniVersion": "1.0.0", "name": "vxdp-%s", "plugins": [{"type": "vxdp-cni", "socket": "%s"}]}\n' \
			"$n" "$WORK/$n.sock" >"$WORK/podman/net/vxdp-$n.conflist"
	done
	cat >"$WORK/podman/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/podman/events.log"
tmp_dir = "$WORK/podman/tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["$WORK/podman/cni"]
network_config_dir = "$WORK/podman/net"
CONF
	export CONTAINERS_CONF=$WORK/podman/containers.conf
	PODMAN=(podman --log-level error --root "$WORK/podman/root" --runroot "$WORK/podman/runroot" --storage-driver vfs)
	echo "network vxdp-node1: $(cat "$WORK/podman/net/vxdp-node1.conflist")"
	# Shown without the private storage options.
	pm() { printf '$ podman %s\n' "$*"; "${PODMAN[@]}" "$@"; }
	pm run -d --name app1 --network vxdp-node1 --rootfs "$WORK/rootfs" /bin/sleep 600 >/dev/null
	pm run -d --name app2 --network vxdp-node2 --rootfs "$WORK/rootfs" /bin/sleep 600 >/dev/null
	run v1 endpoint list
	APP2=$("${PODMAN[@]}" inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}}{{end}}' app2)
	echo "app2 on node2 got ${APP2% *} and ${APP2#* } from node2's agent"
	pm exec app1 ping -c 3 -W 2 "${APP2% *}"
	pm exec app1 ping -c 3 -W 2 "${APP2#* }"
	pm rm --force --time 0 app1 >/dev/null
	echo "(podman rm ran the plugin's DEL: app1's endpoint and addresses are gone)"
	run v1 endpoint list
fi

say "The Linux VM joins as a VTEP with the guide's commands, then pings pod busybox"
vm() { printf '$ %s\n' "$*"; ip netns exec "${P}vm" "$@"; }
vm ip link add vxlan2 type vxlan id 2 dstport 8472 local 10.169.72.236 dev eth0
vm ip link set dev vxlan2 address 82:36:4c:98:2e:56
vm ip link set vxlan2 up
vm ip addr add 10.1.5.236/24 dev vxlan2
vm ip route add 10.1.0.0/16 dev vxlan2 proto kernel scope link src 10.1.5.236
vm bridge fdb append 00:00:00:00:00:00 dst 10.169.72.233 dev vxlan2
vm ping -c 3 -i 0.2 -W 2 10.1.1.154
echo "(the VM's ARP request for 10.1.1.154 came through VXLAN and vxdp answered it:)"
vm ip neigh show dev vxlan2
run v1 vtep list

if [[ $MODE == tunnel ]]; then
	say "Path MTU discovery: a 1500-byte DF packet from a pod whose MTU is too large"
	ip netns exec "${P}pod1" ip link set eth0 mtu 1500
	run ip netns exec "${P}pod1" ping -c 1 -M do -s 1472 -W 2 10.1.2.154 || true
	ip netns exec "${P}pod1" ip link set eth0 mtu 1450
fi

say "Removing node2 from node1: its pods become unreachable, counted as no_route"
run v1 node del node2
run ip netns exec "${P}pod1" ping -c 1 -W 1 10.1.2.154 || true
run v1 tunnel list
if [[ $MODE == native ]]; then run ip netns exec "${P}node1" ip route; fi

say "node1 counters"
run v1 stats

say "Stopping the agents; devices and namespaces are removed"
