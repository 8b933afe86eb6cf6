package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/vxdp/vxdp/internal/nstest"
)

// nativeNode starts an agent in native routing mode with one pod.
func nativeNode(t *testing.T, lab *nstest.TestLab, ns, pod *nstest.Netns, name, nodeIP, podCIDR, podIP, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, name+".yaml")
	write(t, cfg, fmt.Sprintf(`state-dir: `+filepath.Join(dir, "state")+`
node-name: %s
node-ip: %s
pod-cidr: %s
routing-mode: native
%s
endpoints:
  - {name: pod-%s, ip: %s, netns: %s, identity: 1000}
`, name, nodeIP, podCIDR, extra, name, podIP, pod.Path))
	sock := filepath.Join(dir, name+".sock")
	p := lab.Start(ns, name, vxdpBin, "agent", "--config", cfg, "--socket", sock, "--log-level", "debug")
	waitAgent(t, p, sock)
	return sock
}

// Two nodes on one link, auto-direct-node-routes: the kernel routes pod
// CIDRs to the nodes; nothing is encapsulated.
func TestNativeAutoDirectRoutes(t *testing.T) {
	lab := nstest.New(t)
	n1, n2 := lab.Netns("node1"), lab.Netns("node2")
	p1, p2 := lab.Netns("pod1"), lab.Netns("pod2")
	world := lab.Netns("world")
	lab.Veth(n1, "eth0", "10.169.72.233/24", n2, "eth0", "10.169.72.238/24", 1500)
	lab.Veth(n1, "w0", "192.0.2.1/24", world, "eth0", "192.0.2.2/24", 1500)
	world.MustRun(t, "ip", "route", "add", "10.1.0.0/16", "via", "192.0.2.1")

	s1 := nativeNode(t, lab, n1, p1, "node1", "10.169.72.233", "10.1.1.0/24", "10.1.1.10",
		"auto-direct-node-routes: \"true\"\nnodes:\n  - {name: node2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}")
	s2 := nativeNode(t, lab, n2, p2, "node2", "10.169.72.238", "10.1.2.0/24", "10.1.2.20",
		"auto-direct-node-routes: \"true\"\nnodes:\n  - {name: node1, ip: 10.169.72.233, pod-cidr: 10.1.1.0/24}")

	for _, n := range []*nstest.Netns{n1, n2} {
		if v := strings.TrimSpace(n.MustRun(t, "cat", "/proc/sys/net/ipv4/ip_forward")); v != "1" {
			t.Fatalf("%s ip_forward = %s", n.Name, v)
		}
	}
	if out := n1.MustRun(t, "ip", "route"); !strings.Contains(out, "10.1.2.0/24 via 10.169.72.238") {
		t.Fatalf("node1 lacks the direct route:\n%s", out)
	}
	if out := p1.MustRun(t, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1500 ") {
		t.Fatalf("native pods get the full MTU:\n%s", out)
	}
	st, _ := runCLI(s1, "status")
	if !strings.Contains(st, "native") || !strings.Contains(st, "IP forwarding") {
		t.Fatalf("status:\n%s", st)
	}

	capt, err := nstest.StartCapture(n1, "eth0")
	must(t, err)
	out, err := nstest.Ping(p1, "-c", "3", "-i", "0.2", "-W", "2", "10.1.2.20")
	if err != nil {
		t.Fatalf("ping across: %v\n%s", err, out)
	}
	if _, err := nstest.TCPTransfer(p1, p2, addr("10.1.2.20"), 7001, 100<<20, 2*time.Minute); err != nil {
		t.Fatalf("TCP across: %v", err)
	}
	frames := capt.Stop()
	plain := 0
	for _, f := range frames {
		p := nstest.Decode(f)
		if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && (udp.DstPort == 8472 || udp.DstPort == 6081 || udp.SrcPort == 8472 || udp.SrcPort == 6081) {
			t.Fatalf("tunnel traffic in native mode: %v", p)
		}
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			if (ip.SrcIP.String() == "10.1.1.10" && ip.DstIP.String() == "10.1.2.20") || (ip.SrcIP.String() == "10.1.2.20" && ip.DstIP.String() == "10.1.1.10") {
				plain++
			}
		}
	}
	if plain < 1000 {
		t.Fatalf("only %d plain pod-to-pod packets on the underlay", plain)
	}

	t.Run("world behind node1", func(t *testing.T) {
		out, err := nstest.Ping(p1, "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.2")
		if err != nil {
			t.Fatalf("pod to world: %v\n%s", err, out)
		}
	})
	t.Run("routes follow node add and del", func(t *testing.T) {
		if out, err := runCLI(s1, "node", "del", "node2"); err != nil {
			t.Fatal(err, out)
		}
		if out := n1.MustRun(t, "ip", "route"); strings.Contains(out, "10.1.2.0/24") {
			t.Fatalf("route left after node del:\n%s", out)
		}
		if out, err := runCLI(s1, "node", "add", "node2", "--ip", "10.169.72.238", "--pod-cidr", "10.1.2.0/24"); err != nil {
			t.Fatal(err, out)
		}
		if out := n1.MustRun(t, "ip", "route"); !strings.Contains(out, "10.1.2.0/24 via 10.169.72.238") {
			t.Fatalf("route not back:\n%s", out)
		}
		if out, err := nstest.Ping(p1, "-c", "2", "-i", "0.2", "-W", "2", "10.1.2.20"); err != nil {
			t.Fatalf("ping after re-add: %v\n%s", err, out)
		}
		out, _ := runCLI(s1, "fib", "list")
		for _, want := range []string{"10.1.1.10/32", "local", "10.1.2.0/24", "host"} {
			if !strings.Contains(out, want) {
				t.Fatalf("fib list lacks %s:\n%s", want, out)
			}
		}
	})
	_ = s2
}

// Three hosts: node1 - router - node2. The router holds the pod-CIDR
// routes; the nodes only know their default route. Native mode hands
// everything to the kernel, which proves the delegation.
func TestNativeThroughRouter(t *testing.T) {
	lab := nstest.New(t)
	n1, n2, r := lab.Netns("node1"), lab.Netns("node2"), lab.Netns("router")
	p1, p2 := lab.Netns("pod1"), lab.Netns("pod2")
	lab.Veth(n1, "eth0", "10.169.71.233/24", r, "r1", "10.169.71.1/24", 1500)
	lab.Veth(n2, "eth0", "10.169.73.238/24", r, "r2", "10.169.73.1/24", 1500)
	n1.MustRun(t, "ip", "route", "add", "default", "via", "10.169.71.1")
	n2.MustRun(t, "ip", "route", "add", "default", "via", "10.169.73.1")
	must(t, r.Sysctl("net.ipv4.ip_forward", "1"))
	r.MustRun(t, "ip", "route", "add", "10.1.1.0/24", "via", "10.169.71.233")
	r.MustRun(t, "ip", "route", "add", "10.1.2.0/24", "via", "10.169.73.238")

	nativeNode(t, lab, n1, p1, "node1", "10.169.71.233", "10.1.1.0/24", "10.1.1.10",
		"nodes:\n  - {name: node2, ip: 10.169.73.238, pod-cidr: 10.1.2.0/24}")
	nativeNode(t, lab, n2, p2, "node2", "10.169.73.238", "10.1.2.0/24", "10.1.2.20",
		"nodes:\n  - {name: node1, ip: 10.169.71.233, pod-cidr: 10.1.1.0/24}")
	if out := n1.MustRun(t, "ip", "route"); strings.Contains(out, "10.1.2.0/24") {
		t.Fatalf("node1 installed a pod route without auto-direct-node-routes:\n%s", out)
	}
	out, err := nstest.Ping(p1, "-c", "3", "-i", "0.2", "-W", "2", "10.1.2.20")
	if err != nil {
		t.Fatalf("ping through the router: %v\n%s", err, out)
	}
	// Two routers on the path: node1's kernel and the router each take one.
	if !strings.Contains(out, "ttl=6") {
		t.Logf("ping output:\n%s", out)
	}
	if _, err := nstest.TCPTransfer(p1, p2, addr("10.1.2.20"), 7002, 20<<20, time.Minute); err != nil {
		t.Fatalf("TCP through the router: %v", err)
	}
}
