package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Native routing over an IPv6 underlay with dual-stack pods and
// auto-direct-node-routes: IPv6 forwarding is on, each node routes the
// other's IPv6 pod CIDR via its IPv6 address and the IPv4 one via the same
// address (`via inet6`, RTA_VIA); pods reach each other over both families
// and the underlay carries their packets as they are, nothing in UDP.
func TestNativeIPv6(t *testing.T) {
	// A state directory of its own: the default one is shared with every
	// other agent on the machine that has the same node-ip.
	extra := "routing-mode: native\nauto-direct-node-routes: true\nipv6-native-routing-cidr: fd00:1::/32\ncluster-pool-ipv6-cidr: fd00:1::/32\nstate-dir: " + t.TempDir()
	c := newLabOn(t, "ipv6", [2]string{"10.1.1.0/24,fd00:1:1::/64", "10.1.2.0/24,fd00:1:2::/64"}, [2]string{extra, extra})
	c.configs[0] = c.writeConfig("node1", 0, 1, fmt.Sprintf(`
  - {name: pod1a, ip: "10.1.1.10,fd00:1:1::10", netns: %s, identity: 1000}`, c.pods["pod1a"].Path))
	c.configs[1] = c.writeConfig("node2", 1, 0, fmt.Sprintf(`
  - {name: pod2a, ip: "10.1.2.20,fd00:1:2::20", netns: %s, identity: 2000}`, c.pods["pod2a"].Path))
	c.startAgents("--log-level", "debug")

	for i, n := range c.node {
		for _, key := range []string{"/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv4/ip_forward"} {
			if v := strings.TrimSpace(n.MustRun(t, "cat", key)); v != "1" {
				t.Fatalf("%s %s = %s", n.Name, key, v)
			}
		}
		peer := c.nodeIPs[1-i]
		own, other := fmt.Sprintf("fd00:1:%d::/64", i+1), fmt.Sprintf("fd00:1:%d::/64", 2-i)
		if out := n.MustRun(t, "ip", "-6", "route", "show", "proto", "208"); !strings.Contains(out, other+" via "+peer+" dev eth0") ||
			strings.Contains(out, "vxdp_host") {
			t.Fatalf("%s's IPv6 routes (want %s via %s, none to vxdp_host):\n%s", n.Name, other, peer, out)
		}
		if out := n.MustRun(t, "ip", "-6", "route", "show", "exact", own); !strings.Contains(out, "dev vxdp_host") {
			t.Fatalf("%s does not reach its own IPv6 pods through vxdp_host:\n%s", n.Name, out)
		}
		if out := n.MustRun(t, "ip", "route", "show", "proto", "208"); !strings.Contains(out, fmt.Sprintf("10.1.%d.0/24 via inet6 %s dev eth0", 2-i, peer)) {
			t.Fatalf("%s's IPv4 route via the IPv6 node:\n%s", n.Name, out)
		}
	}
	if out := c.pods["pod1a"].MustRun(t, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1500 ") {
		t.Fatalf("native pods get the full MTU:\n%s", out)
	}
	if st := c.mustCLI(0, "status"); !strings.Contains(st, "native") || !strings.Contains(st, "IPv6 forwarding") {
		t.Fatalf("status:\n%s", st)
	}

	capt, err := nstest.StartCapture(c.node[0], "eth0")
	must(t, err)
	c.mustPing("pod1a", "fd00:1:2::20")
	c.mustPing("pod2a", "fd00:1:1::10")
	c.mustPing("pod1a", "10.1.2.20") // IPv4 through the IPv6 next hop
	transfer(t, c.pods["pod1a"], c.pods["pod2a"], "fd00:1:2::20", 7011, 32<<20, time.Minute)
	transfer(t, c.pods["pod2a"], c.pods["pod1a"], "10.1.1.10", 7012, 4<<20, time.Minute)
	frames := capt.Stop()
	plain6, plain4 := 0, 0
	for _, f := range frames {
		p := nstest.Decode(f)
		if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && (udp.DstPort == 8472 || udp.DstPort == 6081 || udp.SrcPort == 8472 || udp.SrcPort == 6081) {
			t.Fatalf("tunnel traffic in native mode: %v", p)
		}
		if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
			s, d := ip.SrcIP.String(), ip.DstIP.String()
			if (s == "fd00:1:1::10" && d == "fd00:1:2::20") || (s == "fd00:1:2::20" && d == "fd00:1:1::10") {
				plain6++
			}
		}
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			s, d := ip.SrcIP.String(), ip.DstIP.String()
			if (s == "10.1.1.10" && d == "10.1.2.20") || (s == "10.1.2.20" && d == "10.1.1.10") {
				plain4++
			}
		}
	}
	t.Logf("underlay: %d frames, %d plain IPv6 and %d plain IPv4 pod packets", len(frames), plain6, plain4)
	if plain6 < 500 || plain4 < 100 {
		t.Fatalf("only %d plain IPv6 and %d plain IPv4 pod packets on the underlay", plain6, plain4)
	}

	t.Run("routes follow node del and add", func(t *testing.T) {
		c.mustCLI(0, "node", "del", "node2")
		if out := c.node[0].MustRun(t, "ip", "-6", "route", "show", "proto", "208") + c.node[0].MustRun(t, "ip", "route", "show", "proto", "208"); strings.Contains(out, "fd00:1:2::") ||
			strings.Contains(out, "10.1.2.0") {
			t.Fatalf("routes left after node del:\n%s", out)
		}
		c.mustCLI(0, "node", "add", "node2", "--ip", c.nodeIPs[1], "--pod-cidr", "10.1.2.0/24,fd00:1:2::/64")
		if out := c.node[0].MustRun(t, "ip", "-6", "route", "show", "proto", "208"); !strings.Contains(out, "fd00:1:2::/64 via "+c.nodeIPs[1]) {
			t.Fatalf("route not back:\n%s", out)
		}
		c.mustPing("pod1a", "fd00:1:2::20")
	})
}
