//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// The two-node picture of the design: one underlay link, one pod per node.
type nodeSpec struct {
	name    string // namespace short name
	ip      string // underlay address
	podNS   string // the pod's namespace short name
	podCIDR string
	podNet  string // network address of podCIDR: the kernel vtep address
	podGW   string // first address of podCIDR: the node side of the pod link
	podIP   string
	mac     string // kernel vxlan device MAC
	// The IPv6 modes: the underlay address and the pod's, as above.
	ip6      string
	podCIDR6 string
	podNet6  string
	podGW6   string
	podIP6   string
}

var nodes = [2]nodeSpec{
	{name: "node1", ip: "10.169.72.233", podNS: "pod1", podCIDR: "10.1.1.0/24",
		podNet: "10.1.1.0", podGW: "10.1.1.1", podIP: "10.1.1.10", mac: "02:b0:0a:01:01:00",
		ip6: "fd69:72::233", podCIDR6: "fd00:1:1::/64", podNet6: "fd00:1:1::", podGW6: "fd00:1:1::1", podIP6: "fd00:1:1::10"},
	{name: "node2", ip: "10.169.72.238", podNS: "pod2", podCIDR: "10.1.2.0/24",
		podNet: "10.1.2.0", podGW: "10.1.2.1", podIP: "10.1.2.20", mac: "02:b0:0a:01:02:00",
		ip6: "fd69:72::238", podCIDR6: "fd00:1:2::/64", podNet6: "fd00:1:2::", podGW6: "fd00:1:2::1", podIP6: "fd00:1:2::20"},
}

const (
	underlayMTU = 1500
	podMTU      = 1450 // underlay minus 50 bytes of VXLAN over IPv4
	podMTU6     = 1430 // underlay minus 70 bytes of VXLAN over IPv6
	vxlanPort   = "8472"
)

// ipv6Mode reports whether mode runs IPv6 pods over an IPv6 underlay.
func ipv6Mode(mode string) bool { return strings.HasSuffix(mode, "-ipv6") }

// notAvailable marks a mode this build or machine cannot run (AF_XDP not
// implemented or refused); it is reported, not treated as a failure.
type notAvailable struct{ reason string }

func (e *notAvailable) Error() string { return "not available: " + e.reason }

// env is one built topology, ready for traffic.
type env struct {
	lab    *lab
	mode   string
	agents []*nstest.Proc // vxdp modes only
	// procs are the processes that move the packets, whose CPU the
	// figures charge to the dataplane: the vxdp agents, or ovs-vswitchd.
	procs    []*nstest.Proc
	sockets  []string // their API sockets
	underlay string   // what the agents report, vxdp modes only
	detail   string   // underlay_reason and version, for the report
	v6       bool     // IPv6 pods over an IPv6 underlay
}

// podAddr is the address of node i's pod in e's family.
func (e *env) podAddr(i int) string {
	if e.v6 {
		return nodes[i].podIP6
	}
	return nodes[i].podIP
}

// podAddrPort is podAddr with a port, bracketed for IPv6.
func (e *env) podAddrPort(i int, port string) string { return net.JoinHostPort(e.podAddr(i), port) }

// buildUnderlay creates the four namespaces and the node-to-node link,
// addressed in IPv6 with v6.
func buildUnderlay(ctx context.Context, l *lab, v6 bool) error {
	for _, n := range nodes {
		for _, ns := range []string{n.name, n.podNS} {
			if err := l.addNetns(ns); err != nil {
				return err
			}
		}
	}
	var err error
	if v6 {
		err = l.AddVeth(l.netns(nodes[0].name), "eth0", nodes[0].ip6+"/64", l.netns(nodes[1].name), "eth0", nodes[1].ip6+"/64", underlayMTU)
	} else {
		err = l.AddVeth(l.netns(nodes[0].name), "eth0", nodes[0].ip+"/24", l.netns(nodes[1].name), "eth0", nodes[1].ip+"/24", underlayMTU)
	}
	if err != nil || !l.underlayGRO {
		return err
	}
	// A veth with GRO receives through NAPI (for datagrams of local
	// sockets, UDP GRO forwarding too), as a NIC's queue does.
	for _, n := range nodes {
		if out, err := l.exec(ctx, n.name, cmdTimeout, "ethtool", "-K", "eth0", "gro", "on", "rx-udp-gro-forwarding", "on"); err != nil {
			return fmt.Errorf("%s: ethtool -K eth0 gro on rx-udp-gro-forwarding on: %v: %s", n.name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// buildKernel is the flannel vxlan backend by hand: per node a vxlan device
// without learning, an address for the node's own vtep, an onlink route to
// the remote pod CIDR via the remote vtep address, a permanent neighbour
// entry for that address and an fdb entry sending its MAC to the remote
// node. Pods hang off the node on veth pairs with /32 routes, as a
// point-to-point CNI does, and the node forwards between them and vxlan0.
func buildKernel(ctx context.Context, l *lab) (*env, error) {
	if err := buildUnderlay(ctx, l, false); err != nil {
		return nil, err
	}
	for i, n := range nodes {
		peer := nodes[1-i]
		sysctls := []string{
			"net.ipv4.ip_forward=1",
			// Off rather than inherited: a strict reverse-path check would
			// depend on the machine's defaults, not on this topology.
			"net.ipv4.conf.all.rp_filter=0",
			"net.ipv4.conf.default.rp_filter=0",
		}
		for _, s := range sysctls {
			if _, err := l.exec(ctx, n.name, cmdTimeout, "sysctl", "-qw", s); err != nil {
				return nil, err
			}
		}
		steps := [][]string{
			{"link", "add", "vxlan0", "type", "vxlan", "id", "1", "dstport", vxlanPort, "local", n.ip, "dev", "eth0", "nolearning"},
			{"link", "set", "vxlan0", "address", n.mac},
			{"addr", "add", n.podNet + "/32", "dev", "vxlan0"},
			{"link", "set", "vxlan0", "up"},
			{"route", "add", peer.podCIDR, "via", peer.podNet, "dev", "vxlan0", "onlink"},
			{"neigh", "add", peer.podNet, "lladdr", peer.mac, "dev", "vxlan0", "nud", "permanent"},
		}
		for _, s := range steps {
			if err := l.ip(n.name, s...); err != nil {
				return nil, err
			}
		}
		// The pod link: node side "pod", pod side eth0.
		if err := l.AddVeth(l.netns(n.name), "pod", n.podGW+"/32", l.netns(n.podNS), "eth0", n.podIP+"/32", podMTU); err != nil {
			return nil, err
		}
		if err := l.ip(n.name, "route", "add", n.podIP+"/32", "dev", "pod"); err != nil {
			return nil, err
		}
		if _, err := l.exec(ctx, n.name, cmdTimeout, "bridge", "fdb", "append", peer.mac, "dev", "vxlan0", "dst", peer.ip); err != nil {
			return nil, err
		}
		podSteps := [][]string{
			{"route", "add", n.podGW, "dev", "eth0", "scope", "link"},
			{"route", "add", "default", "via", n.podGW, "dev", "eth0"},
		}
		for _, s := range podSteps {
			if err := l.ip(n.podNS, s...); err != nil {
				return nil, err
			}
		}
	}
	return &env{lab: l, mode: "kernel", detail: "Linux vxlan, id 1, dstport " + vxlanPort + ", nolearning"}, nil
}

// buildKernel6 is buildKernel for IPv6 pods over an IPv6 underlay, as
// flannel's IPv6 vxlan backend sets it up: the vxlan device has an IPv6
// local address, its vtep the network address of the node's IPv6 pod
// CIDR, and the remote pod CIDR is routed onlink via the remote vtep, a
// permanent neighbour entry and an fdb entry towards the remote node's
// IPv6 address. Every address skips duplicate address detection, so that
// none waits tentative.
func buildKernel6(ctx context.Context, l *lab) (*env, error) {
	if err := buildUnderlay(ctx, l, true); err != nil {
		return nil, err
	}
	for i, n := range nodes {
		peer := nodes[1-i]
		if _, err := l.exec(ctx, n.name, cmdTimeout, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"); err != nil {
			return nil, err
		}
		steps := [][]string{
			{"link", "add", "vxlan0", "type", "vxlan", "id", "1", "dstport", vxlanPort, "local", n.ip6, "dev", "eth0", "nolearning"},
			{"link", "set", "vxlan0", "address", n.mac},
			{"-6", "addr", "add", n.podNet6 + "/128", "dev", "vxlan0", "nodad"},
			{"link", "set", "vxlan0", "up"},
			{"-6", "route", "add", peer.podCIDR6, "via", peer.podNet6, "dev", "vxlan0", "onlink"},
			{"-6", "neigh", "add", peer.podNet6, "lladdr", peer.mac, "dev", "vxlan0", "nud", "permanent"},
		}
		for _, s := range steps {
			if err := l.ip(n.name, s...); err != nil {
				return nil, err
			}
		}
		if err := l.AddVeth(l.netns(n.name), "pod", n.podGW6+"/128", l.netns(n.podNS), "eth0", n.podIP6+"/128", podMTU6); err != nil {
			return nil, err
		}
		if err := l.ip(n.name, "-6", "route", "add", n.podIP6+"/128", "dev", "pod"); err != nil {
			return nil, err
		}
		if _, err := l.exec(ctx, n.name, cmdTimeout, "bridge", "fdb", "append", peer.mac, "dev", "vxlan0", "dst", peer.ip6); err != nil {
			return nil, err
		}
		podSteps := [][]string{
			{"-6", "route", "add", n.podGW6, "dev", "eth0"},
			{"-6", "route", "add", "default", "via", n.podGW6, "dev", "eth0"},
		}
		for _, s := range podSteps {
			if err := l.ip(n.podNS, s...); err != nil {
				return nil, err
			}
		}
	}
	return &env{lab: l, mode: "kernel-ipv6", v6: true, detail: "Linux vxlan over IPv6, id 1, dstport " + vxlanPort + ", nolearning"}, nil
}

// buildVXDP starts one vxdp agent per node with the given underlay; the
// agents create the pods' devices (endpoints in the configuration). For
// AF_XDP, an agent that refuses to start or falls back to something else
// makes the mode "not available". With v6 the underlay and the pods are
// IPv6 only.
func buildVXDP(ctx context.Context, l *lab, vxdpBin, keys, underlay string, v6 bool) (*env, error) {
	if err := buildUnderlay(ctx, l, v6); err != nil {
		return nil, err
	}
	mode := "vxdp-" + underlay
	if v6 {
		mode += "-ipv6"
	}
	stateDir := filepath.Join(l.dir, mode+"-state")
	e := &env{lab: l, mode: mode, v6: v6}
	var socks [2]string
	for i, n := range nodes {
		peer := nodes[1-i]
		ip, podCIDR, podIP, peerIP, peerCIDR, extra := n.ip, n.podCIDR, n.podIP, peer.ip, peer.podCIDR, ""
		if v6 {
			ip, podCIDR, podIP, peerIP, peerCIDR = n.ip6, n.podCIDR6, n.podIP6, peer.ip6, peer.podCIDR6
			extra = "enable-ipv4: false\nenable-ipv6: true\nunderlay-protocol: ipv6\n"
		}
		extra += keys
		// state-dir lives in the run's directory: the agents' restart
		// records are keyed by node IP, which other runs on this machine
		// (tests, the demo) use too.
		cfg := fmt.Sprintf(`node-name: %s
node-ip: "%s"
pod-cidr: "%s"
device: eth0
underlay: %s
state-dir: %s
%snodes:
  - {name: %s, ip: "%s", pod-cidr: "%s"}
endpoints:
  - {name: %s, ip: "%s", netns: %s}
`, n.name, ip, podCIDR, underlay, stateDir, extra, peer.name, peerIP, peerCIDR,
			n.podNS, podIP, l.netns(n.podNS).Path)
		cfgPath := filepath.Join(l.dir, fmt.Sprintf("%s-%s.yaml", mode, n.name))
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		socks[i] = filepath.Join(l.dir, fmt.Sprintf("%s-%s.sock", mode, n.name))
		p, err := l.start(n.name, fmt.Sprintf("%s-%s-agent", mode, n.name), vxdpBin, "agent",
			"--config", cfgPath, "--socket", socks[i], "--log-level", "warn")
		if err != nil {
			return nil, err
		}
		e.agents = append(e.agents, p)
		e.procs = append(e.procs, p)
		e.sockets = append(e.sockets, socks[i])
	}
	for i, p := range e.agents {
		st, err := waitAgent(ctx, vxdpBin, p, socks[i])
		if err != nil {
			if underlay == "afxdp" {
				return nil, &notAvailable{reason: fmt.Sprintf("%s agent: %v", nodes[i].name, err)}
			}
			return nil, fmt.Errorf("%s agent: %w", nodes[i].name, err)
		}
		if st.Underlay != underlay {
			msg := fmt.Sprintf("%s agent runs underlay %q (%s)", nodes[i].name, st.Underlay, st.UnderlayReason)
			if underlay == "afxdp" {
				return nil, &notAvailable{reason: msg}
			}
			return nil, errors.New(msg)
		}
		e.underlay = st.Underlay
		e.detail = fmt.Sprintf("vxdp %s, underlay %s (%s)", st.Version, st.Underlay, st.UnderlayReason)
	}
	return e, nil
}

// agentStatus is the part of `vxdp status -o json` the benchmark reads.
type agentStatus struct {
	Healthy        bool   `json:"healthy"`
	Underlay       string `json:"underlay"`
	UnderlayReason string `json:"underlay_reason"`
	Version        string `json:"version"`
}

// waitAgent waits until the agent answers `status` healthy, failing early
// with the agent's last words when it exits.
func waitAgent(ctx context.Context, vxdpBin string, p *nstest.Proc, sock string) (*agentStatus, error) {
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for {
		if !p.Alive() {
			return nil, fmt.Errorf("exited (%v): %s", exitError(p), oneLine(logTail(p, 4)))
		}
		if _, err := os.Stat(sock); err == nil {
			// The CLI only talks HTTP over the unix socket; it needs no
			// namespace.
			out, err := runLocal(ctx, cmdTimeout, vxdpBin, "--socket", sock, "status", "-o", "json")
			var st agentStatus
			if jerr := json.Unmarshal(out, &st); jerr == nil && st.Underlay != "" {
				if st.Healthy {
					return &st, nil
				}
				last = "unhealthy: " + oneLine(string(out))
			} else if err != nil {
				last = err.Error()
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not ready after 20s (%s): %s", last, oneLine(logTail(p, 4)))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkPath pings pod2 from pod1 until it answers (ARP or neighbour
// discovery, agents settling), for at most 10 s.
func checkPath(ctx context.Context, e *env) error {
	l := e.lab
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := l.exec(ctx, nodes[0].podNS, 5*time.Second, "ping", "-c", "1", "-W", "1", e.podAddr(1))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod1 cannot reach pod2 %s: %v %s", e.podAddr(1), err, oneLine(string(out)))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
