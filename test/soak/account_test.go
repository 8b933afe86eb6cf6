package soak

import (
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Where the garbage goes. The agents' drop counters are per reason, not
// per sender, and faults drop the pods' own traffic for some of the same
// reasons (no_endpoint while a restarted agent sets up, unknown_tunnel_source
// while a peer is removed); a packet the dataplane takes as valid is
// counted nowhere by the agent, and one the kernel drops before the agent
// reads it neither. So the soak accounts for garbage in two ways:
//
//   - a calibration at the start, before any fault: each kind alone, a
//     fixed number of packets, and the change of every counter that can
//     see them: the agents' drop reasons, the pods' kernels (UDP and IP
//     errors: garbage the dataplane delivered), the nodes' kernels (UDP
//     errors on the tunnel socket: garbage dropped before the agent);
//   - over the run, the generator notes each packet sent to a node whose
//     agent or underlay link is down at that moment, or spoofed from a
//     peer the target has removed: the faults, not the agent, decide
//     their fate.

// Kernel counters read from /proc/net/snmp and snmp6, as "Udp:NoPorts".
var (
	// podCounters see garbage the dataplane delivered into a pod: no
	// socket on the port, a bad checksum, a bad or misaddressed header.
	// (Not InErrors: it counts a full receive buffer too, which the
	// 64-byte UDP load causes in its receiver.)
	podCounters = []string{"Udp:NoPorts", "Udp:InCsumErrors", "Ip:InHdrErrors", "Ip:InAddrErrors",
		"Ip:InUnknownProtos", "Ip:InDiscards", "Ip6InHdrErrors", "Ip6InAddrErrors", "Ip6InNoRoutes", "Ip6InUnknownProtos",
		"Ip6InTruncatedPkts", "Ip6InDiscards", "Udp6NoPorts", "Udp6InCsumErrors",
		// A mutated protocol number makes TCP or ICMP of it.
		"Tcp:InCsumErrors", "Icmp:InCsumErrors", "Icmp:InErrors", "Icmp6InCsumErrors", "Icmp6InErrors"}
	// nodeCounters see garbage dropped on its way to the agent's tunnel
	// socket: a full receive buffer, no socket (no agent), a bad
	// checksum.
	nodeCounters = []string{"Udp:NoPorts", "Udp:RcvbufErrors", "Udp:InCsumErrors", "Ip:InHdrErrors", "Ip:InDiscards",
		// Garbage whose mutated inner destination the dataplane hands to
		// the node (vxdp_host), which has no route for it or no socket.
		"Ip:OutNoRoutes", "Ip:InAddrErrors", "Icmp:OutDestUnreachs"}
)

// readSNMP reads the counters of ns named in want.
func readSNMP(ns *nstest.Netns, want []string) map[string]int {
	out, err := ns.Run("cat", "/proc/net/snmp", "/proc/net/snmp6")
	m := map[string]int{}
	if err != nil {
		return m
	}
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && !strings.HasSuffix(f[0], ":"):
			v, _ := strconv.Atoi(f[1])
			m[f[0]] = v
		case len(f) > 1 && strings.HasSuffix(f[0], ":"):
			if names == nil || names[0] != f[0] {
				names = f
				continue
			}
			for i := 1; i < len(f) && i < len(names); i++ {
				v, _ := strconv.Atoi(f[i])
				m[f[0]+names[i]] = v
			}
			names = nil
		}
	}
	kept := map[string]int{}
	for _, k := range want {
		kept[k] = m[k]
	}
	return kept
}

// counterSet is every counter the garbage can move, summed over the
// nodes or the pods.
type counterSet struct {
	Drops map[string]int `json:"agent_drops"`
	Pods  map[string]int `json:"pod_kernels"`
	Nodes map[string]int `json:"node_kernels"`
}

func (s *soak) readCounters() counterSet {
	c := counterSet{Drops: map[string]int{}, Pods: map[string]int{}, Nodes: map[string]int{}}
	for _, d := range s.drops {
		d.poll(s)
		d.mu.Lock()
		for k, v := range d.total {
			c.Drops[k] += v
		}
		d.mu.Unlock()
	}
	for _, n := range s.nodes {
		for k, v := range readSNMP(n.ns, nodeCounters) {
			c.Nodes[k] += v
		}
		for _, pod := range []*nstest.Netns{s.pods[podName(n.i, 0)], s.pods[podName(n.i, 1)], n.hupPod, n.churn} {
			for k, v := range readSNMP(pod, podCounters) {
				c.Pods[k] += v
			}
		}
	}
	return c
}

func diff(a, b map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range b {
		if v-a[k] != 0 {
			d[k] = v - a[k]
		}
	}
	return d
}

func sum(m map[string]int) int {
	t := 0
	for _, v := range m {
		t += v
	}
	return t
}

// calibration is one kind of garbage sent alone, and where it went.
type calibration struct {
	Kind  string         `json:"kind"`
	Sent  int            `json:"sent"`
	Drops map[string]int `json:"agent_drops"`
	Pods  map[string]int `json:"pod_kernels"`
	Nodes map[string]int `json:"node_kernels"`
	// Unseen is sent less every counter that moved: packets the
	// dataplane took as valid and that a pod's kernel accepted without
	// an error counter (or that went out as an ICMP error the agent
	// answered with), or lost where no counter looks.
	Unseen int `json:"unseen"`
}

// calibrate sends count packets of each kind alone, at a bounded rate,
// and reads what moved. It runs before the first fault, with the pods'
// load going (which moves none of these counters by itself).
func (s *soak) calibrate(count int) []calibration {
	var out []calibration
	for _, kind := range garbageKinds {
		before := s.readCounters()
		sent := s.garbage.burst(kind, count, 5000)
		time.Sleep(300 * time.Millisecond)
		after := s.readCounters()
		c := calibration{Kind: kind, Sent: sent, Drops: diff(before.Drops, after.Drops), Pods: diff(before.Pods, after.Pods),
			Nodes: diff(before.Nodes, after.Nodes)}
		c.Unseen = c.Sent - sum(c.Drops) - sum(c.Pods) - sum(c.Nodes)
		out = append(out, c)
	}
	return out
}

// unavailability of a node, read by the garbage generator for each packet
// it sends there.
type unavailability struct {
	agentDown atomic.Bool // killed, the new agent not yet serving
	linkDown  atomic.Bool // its underlay link down
	removed   atomic.Uint32
}

// garbageFate says why a packet to dst from src (spoofed or not) has a
// fate the faults decide, "" when the agent sees it as usual.
func (s *soak) garbageFate(dst, src netip.Addr, spoofed bool) string {
	for _, n := range s.nodes {
		if nodeIP(n.i) != dst {
			continue
		}
		switch {
		case n.unavail.agentDown.Load():
			return "target agent down"
		case n.unavail.linkDown.Load():
			return "target link down"
		case spoofed && n.unavail.removed.Load() == uint32(src.As4()[3]):
			return "spoofed from a removed peer"
		}
	}
	return ""
}

// accounting is the run's garbage, class by class.
type accounting struct {
	Calibration []calibration  `json:"calibration"`
	Fates       map[string]int `json:"sent_to_unavailable"`
	Run         counterSet     `json:"run_counters"`
}

func cloneCounters(c counterSet) counterSet {
	return counterSet{Drops: maps.Clone(c.Drops), Pods: maps.Clone(c.Pods), Nodes: maps.Clone(c.Nodes)}
}
