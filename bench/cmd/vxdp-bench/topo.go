//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
}

var nodes = [2]nodeSpec{
	{name: "node1", ip: "10.169.72.233", podNS: "pod1", podCIDR: "10.1.1.0/24",
		podNet: "10.1.1.0", podGW: "10.1.1.1", podIP: "10.1.1.10", mac: "02:b0:0a:01:01:00"},
	{name: "node2", ip: "10.169.72.238", podNS: "pod2", podCIDR: "10.1.2.0/24",
		podNet: "10.1.2.0", podGW: "10.1.2.1", podIP: "10.1.2.20", mac: "02:b0:0a:01:02:00"},
}

const (
	underlayMTU = 1500
	podMTU      = 1450 // underlay minus 50 bytes of VXLAN over IPv4
	vxlanPort   = "8472"
)

// notAvailable marks a mode this build or machine cannot run (AF_XDP not
// implemented or refused); it is reported, not treated as a failure.
type notAvailable struct{ reason string }

func (e *notAvailable) Error() string { return "not available: " + e.reason }

// env is one built topology, ready for traffic.
type env struct {
	lab      *lab
	mode     string
	agents   []*nstest.Proc // vxdp modes only
	sockets  []string       // their API sockets
	underlay string         // what the agents report, vxdp modes only
	detail   string         // underlay_reason and version, for the report
}

// buildUnderlay creates the four namespaces and the node-to-node link.
func buildUnderlay(l *lab) error {
	for _, n := range nodes {
		for _, ns := range []string{n.name, n.podNS} {
			if err := l.addNetns(ns); err != nil {
				return err
			}
		}
	}
	return l.AddVeth(l.netns(nodes[0].name), "eth0", nodes[0].ip+"/24", l.netns(nodes[1].name), "eth0", nodes[1].ip+"/24", underlayMTU)
}

// buildKernel is the flannel vxlan backend by hand: per node a vxlan device
// without learning, an address for the node's own vtep, an onlink route to
// the remote pod CIDR via the remote vtep address, a permanent neighbour
// entry for that address and an fdb entry sending its MAC to the remote
// node. Pods hang off the node on veth pairs with /32 routes, as a
// point-to-point CNI does, and the node forwards between them and vxlan0.
func buildKernel(ctx context.Context, l *lab) (*env, error) {
	if err := buildUnderlay(l); err != nil {
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

// buildVXDP starts one vxdp agent per node with the given underlay; the
// agents create the pods' devices (endpoints in the configuration). For
// AF_XDP, an agent that refuses to start or falls back to something else
// makes the mode "not available".
func buildVXDP(ctx context.Context, l *lab, vxdpBin, underlay string) (*env, error) {
	if err := buildUnderlay(l); err != nil {
		return nil, err
	}
	mode := "vxdp-" + underlay
	stateDir := filepath.Join(l.dir, mode+"-state")
	e := &env{lab: l, mode: mode}
	var socks [2]string
	for i, n := range nodes {
		peer := nodes[1-i]
		// state-dir lives in the run's directory: the agents' restart
		// records are keyed by node IP, which other runs on this machine
		// (tests, the demo) use too.
		cfg := fmt.Sprintf(`node-name: %s
node-ip: %s
pod-cidr: %s
device: eth0
underlay: %s
state-dir: %s
nodes:
  - {name: %s, ip: %s, pod-cidr: %s}
endpoints:
  - {name: %s, ip: %s, netns: %s}
`, n.name, n.ip, n.podCIDR, underlay, stateDir, peer.name, peer.ip, peer.podCIDR,
			n.podNS, n.podIP, l.netns(n.podNS).Path)
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

// checkPath pings pod2 from pod1 until it answers (ARP, agents settling),
// for at most 10 s.
func checkPath(ctx context.Context, l *lab) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := l.exec(ctx, nodes[0].podNS, 5*time.Second, "ping", "-c", "1", "-W", "1", nodes[1].podIP)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod1 cannot reach pod2 %s: %v %s", nodes[1].podIP, err, oneLine(string(out)))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
