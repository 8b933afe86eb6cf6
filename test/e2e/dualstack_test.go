package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/api"
)

// dualCluster is two nodes on an underlay of the given family whose pods
// are dual-stack (pod1a, pod2a), IPv6-only (pod1b) or IPv4-only (pod2b).
func dualCluster(t *testing.T, underlay string) *cluster {
	t.Helper()
	return dualClusterWith(t, underlay, [2]string{})
}

// dualClusterWith is dualCluster with extra configuration lines per node.
func dualClusterWith(t *testing.T, underlay string, extra [2]string) *cluster {
	t.Helper()
	v6pool := "cluster-pool-ipv6-cidr: fd00:1::/32"
	c := newLabOn(t, underlay, [2]string{"10.1.1.0/24,fd00:1:1::/64", "10.1.2.0/24,fd00:1:2::/64"},
		[2]string{v6pool + "\n" + extra[0], v6pool + "\n" + extra[1]})
	c.configs[0] = c.writeConfig("node1", 0, 1, fmt.Sprintf(`
  - {name: pod1a, ip: "10.1.1.10,fd00:1:1::10", netns: %s, identity: 1000}
  - {name: pod1b, ip: "fd00:1:1::11", netns: %s, identity: 1001}`, c.pods["pod1a"].Path, c.pods["pod1b"].Path))
	c.configs[1] = c.writeConfig("node2", 1, 0, fmt.Sprintf(`
  - {name: pod2a, ip: "10.1.2.20,fd00:1:2::20", netns: %s, identity: 2000}
  - {name: pod2b, ip: 10.1.2.21, netns: %s}`, c.pods["pod2a"].Path, c.pods["pod2b"].Path))
	c.startAgents()
	return c
}

// Dual-stack pods over an IPv4 and over an IPv6 underlay: each pod's TUN
// carries both families; both cross nodes and stay within a node; the
// node reaches remote IPv6 pods through vxdp_host; path MTU, policy and
// the tables speak IPv6 too.
func TestDualStack(t *testing.T) {
	for _, underlay := range []string{"ipv4", "ipv6"} {
		t.Run(underlay+" underlay", func(t *testing.T) { testDualStack(t, underlay) })
	}
}

func testDualStack(t *testing.T, underlay string) {
	c := dualCluster(t, underlay)
	// The pods' MTU: the underlay's 1500 less VXLAN over IPv4 (50) or
	// IPv6 (70).
	podMTU := 1450
	if underlay == "ipv6" {
		podMTU = 1430
	}

	t.Run("pod interfaces", func(t *testing.T) {
		for pod, want := range map[string][]string{
			"pod1a": {"10.1.1.10/32", "fd00:1:1::10/128"},
			"pod1b": {"fd00:1:1::11/128"},
			"pod2b": {"10.1.2.21/32"},
		} {
			out := c.pods[pod].MustRun(t, "ip", "-o", "addr", "show", "eth0")
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("%s lacks %s:\n%s", pod, w, out)
				}
			}
			if strings.Contains(out, "fe80:") || strings.Contains(out, "tentative") {
				t.Errorf("%s: link-local or tentative address:\n%s", pod, out)
			}
		}
		if out := c.pods["pod1a"].MustRun(t, "ip", "-6", "route"); !strings.Contains(out, "default dev eth0") {
			t.Errorf("pod1a IPv6 default route:\n%s", out)
		}
		if out := c.node[0].MustRun(t, "ip", "-6", "addr", "show", "vxdp_host"); !strings.Contains(out, "fd00:1:1::1/64") {
			t.Errorf("vxdp_host IPv6 address:\n%s", out)
		}
		if out := c.node[0].MustRun(t, "ip", "-6", "route", "show", "proto", "208"); !strings.Contains(out, "fd00:1:2::/64 dev vxdp_host") ||
			!strings.Contains(out, "fd00:1::/32 dev vxdp_host") {
			t.Errorf("node1's IPv6 routes:\n%s", out)
		}
	})

	t.Run("ping over both families", func(t *testing.T) {
		c.mustPing("pod1a", "fd00:1:2::20") // across nodes
		c.mustPing("pod1a", "fd00:1:1::11") // within the node
		c.mustPing("pod1b", "fd00:1:2::20") // IPv6-only to dual-stack
		c.mustPing("pod1a", "10.1.2.20")    // IPv4 as before
		c.mustPing("pod1a", "10.1.2.21")
		c.mustPing("node1", "fd00:1:2::20") // the node through vxdp_host
		c.mustPing("pod2a", "fd00:1:1::1")  // a pod to the remote host address
	})

	t.Run("tcp across nodes and within a node", func(t *testing.T) {
		if underlay == "ipv4" {
			// Over IPv4 the super-packets leave whole once node1's
			// probe through vxdp_gso passed.
			deadline := time.Now().Add(10 * time.Second)
			for !c.offload(0, "underlay", "tunnel-gso").Active {
				if time.Now().After(deadline) {
					t.Fatalf("node1 tunnel-gso: %+v", c.offload(0, "underlay", "tunnel-gso"))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		transfer(t, c.pods["pod1a"], c.pods["pod2a"], "fd00:1:2::20", 5201, 32<<20, 30*time.Second)
		// Nothing but that transfer has used pod1a's and pod2a's TUN
		// offloads yet: pod1a's kernel handed over TSO6 super-packets;
		// over an IPv4 underlay node1 sent them whole (tunnel-gso) and
		// node2 wrote them into pod2a as they came, over an IPv6 one
		// (no tunnel-gso) node2 wrote merged IPv6 super-packets.
		checks := []struct {
			node         int
			device, name string
		}{{0, "pod1a", "tun-tso"}, {1, "pod2a", "tun-gro"}}
		if underlay == "ipv4" {
			checks[1].name = "tun-super-write"
			checks = append(checks, struct {
				node         int
				device, name string
			}{0, "pod1a", "tun-tso-whole"})
		}
		for _, chk := range checks {
			o := c.offload(chk.node, chk.device, chk.name)
			if !o.Active || o.Count == 0 || o.Largest <= 1500 && chk.name != "tun-super-write" && chk.name != "tun-tso-whole" {
				t.Errorf("node%d %s %s after the IPv6 transfer: %+v; want active, used, units larger than the MTU", chk.node+1, chk.device, chk.name, o)
			}
		}
		transfer(t, c.pods["pod1a"], c.pods["pod2a"], "10.1.2.20", 5204, 32<<20, 30*time.Second) // the same over IPv4, to compare
		transfer(t, c.pods["pod1b"], c.pods["pod1a"], "fd00:1:1::10", 5202, 8<<20, 30*time.Second)
		transfer(t, c.pods["pod2a"], c.pods["pod1a"], "10.1.1.10", 5203, 8<<20, 30*time.Second) // and IPv4
	})

	t.Run("packet too big", func(t *testing.T) {
		// Bigger than the pod MTU allows: the dataplane answers with
		// ICMPv6 Packet Too Big at the tunnel MTU.
		c.pods["pod1a"].MustRun(t, "ip", "link", "set", "eth0", "mtu", "1500")
		defer c.pods["pod1a"].MustRun(t, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(podMTU))
		before := c.drops(0, "frag_needed")
		out, _ := c.ping("pod1a", "fd00:1:2::20", "-M", "do", "-s", "1440", "-c", "2")
		if !strings.Contains(out, fmt.Sprintf("mtu=%d", podMTU)) {
			t.Errorf("no Packet Too Big with mtu %d:\n%s", podMTU, out)
		}
		if after := c.drops(0, "frag_needed"); after < before+1 {
			t.Errorf("frag_needed drops %d -> %d", before, after)
		}
		c.pods["pod1a"].MustRun(t, "ip", "route", "flush", "cache")
	})

	t.Run("policy over IPv6", func(t *testing.T) {
		c.mustCLI(1, "endpoint", "policy", "pod2a", "--allow-from", "1001")
		before := c.drops(1, "policy_denied")
		if out, err := c.ping("pod1a", "fd00:1:2::20", "-c", "2"); err == nil {
			t.Errorf("ping from identity 1000 passed a policy allowing 1001 only:\n%s", out)
		}
		if after := c.drops(1, "policy_denied"); after < before+2 {
			t.Errorf("policy_denied drops %d -> %d", before, after)
		}
		c.mustPing("pod1b", "fd00:1:2::20") // identity 1001
		c.mustCLI(1, "endpoint", "policy", "pod2a", "--allow-all")
		c.mustPing("pod1a", "fd00:1:2::20")
	})

	t.Run("anti-spoofing over IPv6", func(t *testing.T) {
		// A pod that takes an address of its pod CIDR it was not given is
		// refused at its TUN, across nodes as within one.
		pod := c.pods["pod1a"]
		pod.MustRun(t, "ip", "-6", "addr", "add", "fd00:1:1::99/128", "dev", "eth0", "nodad")
		before := c.drops(0, "invalid_source")
		for _, to := range []string{"fd00:1:2::20", "fd00:1:1::11"} {
			if out, err := c.ping("pod1a", to, "-I", "fd00:1:1::99", "-c", "2"); err == nil {
				t.Errorf("ping %s from a spoofed source passed:\n%s", to, out)
			}
		}
		if after := c.drops(0, "invalid_source"); after < before+4 {
			t.Errorf("invalid_source drops %d -> %d", before, after)
		}
		// Removed before anything else is sent: the kernel may pick it as
		// the source of the next ping.
		pod.MustRun(t, "ip", "-6", "addr", "del", "fd00:1:1::99/128", "dev", "eth0")
		// Nor may a pod send to a node's tunnel port: that would be
		// decapsulated with whatever VNI the pod wrote.
		if underlay == "ipv6" {
			before := c.drops(0, "encap_prohibited")
			var conn net.PacketConn
			must(t, pod.Do(func() error {
				var err error
				conn, err = net.ListenPacket("udp6", "[fd00:1:1::10]:0")
				return err
			}))
			defer conn.Close()
			for _, node := range c.nodeIPs {
				if _, err := conn.WriteTo([]byte("not a tunnel packet"), &net.UDPAddr{IP: net.ParseIP(node), Port: 8472}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
			if after := c.drops(0, "encap_prohibited"); after < before+2 {
				t.Errorf("encap_prohibited drops %d -> %d", before, after)
			}
		}
		c.mustPing("pod1a", "fd00:1:2::20")
	})

	t.Run("monitor shows IPv6 drops", func(t *testing.T) {
		expectMonitorDrop(t, c.sockets[0], func() {
			c.ping("pod1a", "fd00:1:9::9", "-c", "1", "-W", "1") // inside cluster-pool-ipv6-cidr, held by no node
		}, "drop no_route dev pod1a (pod) icmpv6 fd00:1:1::10 -> fd00:1:9::9 identity 1000")
	})

	t.Run("tables", func(t *testing.T) {
		out := c.mustCLI(0, "endpoint", "list")
		if !strings.Contains(out, "10.1.1.10,fd00:1:1::10") || !strings.Contains(out, "fd00:1:1::11") {
			t.Errorf("endpoint list:\n%s", out)
		}
		if out := c.mustCLI(0, "node", "list"); !strings.Contains(out, "10.1.2.0/24,fd00:1:2::/64") {
			t.Errorf("node list:\n%s", out)
		}
		peer := c.nodeIPs[1] + ":0"
		if underlay == "ipv6" {
			peer = "[" + c.nodeIPs[1] + "]:0"
		}
		out = c.mustCLI(0, "tunnel", "list")
		if !regexp.MustCompile(`10\.1\.2\.0:0 +` + regexp.QuoteMeta(peer) + `\n\[fd00:1:2::\]:0 +` + regexp.QuoteMeta(peer)).MatchString(out) {
			t.Errorf("tunnel list:\n%s", out)
		}
		out = c.mustCLI(0, "-o", "json", "tunnel", "list")
		var tunnels []api.Tunnel
		if err := json.Unmarshal([]byte(out), &tunnels); err != nil {
			t.Fatalf("tunnel list -o json: %v\n%s", err, out)
		}
		found := false
		for _, tn := range tunnels {
			if tn.Prefix == netip.MustParsePrefix("fd00:1:2::/64") && tn.Endpoint == addr(c.nodeIPs[1]) && tn.Node == "node2" {
				found = true
			}
		}
		if !found {
			t.Errorf("tunnel list -o json lacks fd00:1:2::/64 via %s:\n%s", c.nodeIPs[1], out)
		}
		// The FIB holds the IPv6 prefixes beside the IPv4 ones: the remote
		// pod CIDR through its node, the local pods.
		out = c.mustCLI(0, "fib", "list")
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`fd00:1:2::/64 +\S+ +.*` + regexp.QuoteMeta(c.nodeIPs[1])),
			regexp.MustCompile(`fd00:1:1::10/128 +\S+ +.*pod1a`),
			regexp.MustCompile(`10\.1\.2\.0/24 +\S+ +.*` + regexp.QuoteMeta(c.nodeIPs[1])),
		} {
			if !want.MatchString(out) {
				t.Errorf("fib list lacks %s:\n%s", want, out)
			}
		}
		if out := c.mustCLI(0, "status"); !strings.Contains(out, "fd00:1:1::/64 (host fd00:1:1::1)") {
			t.Errorf("status:\n%s", out)
		}
	})

	t.Run("endpoint and node added at run time", func(t *testing.T) {
		pod := c.lab.Netns("pod1c")
		c.mustCLI(0, "endpoint", "add", "pod1c", "--ip", "10.1.1.12", "--ip", "fd00:1:1::12", "--netns", pod.Path)
		c.pods["pod1c"] = pod
		c.mustPing("pod1c", "fd00:1:2::20")
		c.mustPing("pod1c", "10.1.2.20")
		if out, err := c.cli(0, "endpoint", "add", "pod1d", "--ip", "fd00:1:2::30", "--netns", pod.Path); exitCode(err) != 2 ||
			!strings.Contains(out, "not inside pod-cidr fd00:1:1::/64") {
			t.Errorf("an IPv6 address outside the pod CIDR: exit %d\n%s", exitCode(err), out)
		}
		c.mustCLI(0, "endpoint", "del", "pod1c")
	})
}

// An IPv6-only cluster: IPv6 underlay, IPv6 pod CIDRs only, IPv4 turned
// off with Cilium's keys.
func TestIPv6Only(t *testing.T) {
	extra := "enable-ipv4: false\nenable-ipv6: true\nunderlay-protocol: ipv6\ncluster-pool-ipv6-cidr: fd00:1::/32"
	c := newLabOn(t, "ipv6", [2]string{"fd00:1:1::/64", "fd00:1:2::/64"}, [2]string{extra, extra})
	c.configs[0] = c.writeConfig("node1", 0, 1, fmt.Sprintf(`
  - {name: pod1a, ip: "fd00:1:1::10", netns: %s, identity: 1000}
  - {name: pod1b, ip: "fd00:1:1::11", netns: %s}`, c.pods["pod1a"].Path, c.pods["pod1b"].Path))
	c.configs[1] = c.writeConfig("node2", 1, 0, fmt.Sprintf(`
  - {name: pod2a, ip: "fd00:1:2::20", netns: %s, identity: 2000}`, c.pods["pod2a"].Path))
	c.startAgents()

	out := c.pods["pod1a"].MustRun(t, "ip", "-o", "addr", "show", "eth0")
	if !strings.Contains(out, "fd00:1:1::10/128") || strings.Contains(out, "inet ") {
		t.Errorf("pod1a's addresses:\n%s", out)
	}
	c.mustPing("pod1a", "fd00:1:2::20")
	c.mustPing("pod1a", "fd00:1:1::11")
	c.mustPing("node2", "fd00:1:1::10")
	transfer(t, c.pods["pod1a"], c.pods["pod2a"], "fd00:1:2::20", 5201, 16<<20, 30*time.Second)
	transfer(t, c.pods["pod1b"], c.pods["pod1a"], "fd00:1:1::10", 5202, 4<<20, 30*time.Second)
	if out := c.mustCLI(0, "tunnel", "list"); !strings.Contains(out, "[fd00:1:2::]:0") || !strings.Contains(out, "[fd69:72::238]:0") ||
		strings.Contains(out, "10.") {
		t.Errorf("tunnel list:\n%s", out)
	}
	if out := c.mustCLI(0, "status"); !strings.Contains(out, "fd69:72::233") {
		t.Errorf("status:\n%s", out)
	}
	// An IPv4 address for a pod is refused: the node has no IPv4 pod CIDR.
	pod := c.lab.Netns("pod1c")
	if out, err := c.cli(0, "endpoint", "add", "pod1c", "--ip", "10.1.1.12", "--netns", pod.Path); exitCode(err) != 2 {
		t.Errorf("IPv4 endpoint on an IPv6-only node: exit %d\n%s", exitCode(err), out)
	}
}
