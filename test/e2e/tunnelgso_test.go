package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A node whose firewall drops what it forwards from vxdp_gso keeps bulk
// TCP working: the probe through the device fails, super-packets are cut
// up as without tunnel-gso, and vxdp stats says why. Once the firewall
// lets the packets through, a later probe passes and the way out carries
// them.
func TestTunnelGSOBehindAFirewall(t *testing.T) {
	c := newLab(t, [2]string{"10.1.1.0/24", "10.1.2.0/24"}, [2]string{})
	// The firewall is in node1's namespace before its agent starts: a
	// forward chain that drops what comes in on vxdp_gso.
	c.node[0].MustRun(t, "nft", "add", "table", "inet", "vxdpt")
	c.node[0].MustRun(t, "nft", "add chain inet vxdpt vxdpfw { type filter hook forward priority 0 ; policy accept ; }")
	c.node[0].MustRun(t, "nft", "add", "rule", "inet", "vxdpt", "vxdpfw", "iifname", "vxdp_gso", "counter", "drop")
	c.configs[0] = c.writeConfig("node1", 0, 1, fmt.Sprintf(`
  - {name: pod1a, ip: 10.1.1.10, netns: %s}`, c.pods["pod1a"].Path))
	c.configs[1] = c.writeConfig("node2", 1, 0, fmt.Sprintf(`
  - {name: pod2a, ip: 10.1.2.20, netns: %s}`, c.pods["pod2a"].Path))
	c.startAgents()

	deadline := time.Now().Add(10 * time.Second)
	for {
		o := c.offload(0, "underlay", "tunnel-gso")
		if !o.Active && strings.Contains(o.Reason, "no echo reply") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node1 tunnel-gso behind the firewall: %+v; want off, the probe unanswered", o)
		}
		time.Sleep(100 * time.Millisecond)
	}
	transfer(t, c.pods["pod1a"], c.pods["pod2a"], "10.1.2.20", 5101, 50<<20, 2*time.Minute)
	if o := c.offload(0, "pod1a", "tun-tso-whole"); o.Count != 0 {
		t.Fatalf("pod1a tun-tso-whole %+v: super-packets went into the firewall", o)
	}
	if o := c.offload(0, "underlay", "udp-gso"); o.Count == 0 {
		t.Fatalf("node1 udp-gso %+v: the transfer did not go the usual way", o)
	}
	// Lift the firewall: the next probe passes (they back off up to 30 s).
	c.node[0].MustRun(t, "nft", "delete", "table", "inet", "vxdpt")
	deadline = time.Now().Add(40 * time.Second)
	for !c.offload(0, "underlay", "tunnel-gso").Active {
		if time.Now().After(deadline) {
			t.Fatalf("tunnel-gso still off after the firewall went: %+v", c.offload(0, "underlay", "tunnel-gso"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	transfer(t, c.pods["pod1a"], c.pods["pod2a"], "10.1.2.20", 5102, 50<<20, 2*time.Minute)
	if o := c.offload(0, "pod1a", "tun-tso-whole"); o.Count == 0 {
		t.Fatalf("pod1a tun-tso-whole %+v: super-packets were still cut up", o)
	}
}
