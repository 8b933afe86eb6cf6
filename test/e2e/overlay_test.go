package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/vxdp/vxdp/internal/nstest"
)

func init() {
	// gopacket decodes VXLAN on IANA's port only; the overlay uses 8472.
	layers.RegisterUDPPortLayerType(8472, layers.LayerTypeVXLAN)
}

func TestOverlay(t *testing.T) {
	// node1 reads its pods on one TUN queue and the tunnel port on one
	// socket, node2 on two of each (the default): both layouts carry
	// everything below. node1 sends its pods' TCP super-packets whole
	// (tunnel-gso, the default), node2 cuts them up (tunnel-gso off).
	c := newClusterWith(t, [2]string{"pod-queues: 1\nunderlay-sockets: 1", "tunnel-gso: off"})

	t.Run("pod interface", func(t *testing.T) {
		out := c.pods["pod1a"].MustRun(t, "ip", "-o", "link", "show", "eth0")
		if !strings.Contains(out, "mtu 1450 ") {
			t.Fatalf("pod eth0 MTU is not 1450:\n%s", out)
		}
		out = c.pods["pod1a"].MustRun(t, "ip", "-o", "-4", "addr", "show", "eth0")
		if !strings.Contains(out, "10.1.1.10/32") {
			t.Fatalf("pod eth0 address:\n%s", out)
		}
		out = c.pods["pod1a"].MustRun(t, "ip", "route")
		if !strings.Contains(out, "default dev eth0") {
			t.Fatalf("pod default route:\n%s", out)
		}
		out = c.node[0].MustRun(t, "ip", "-o", "-4", "addr", "show", "vxdp_host")
		if !strings.Contains(out, "10.1.1.1/24") {
			t.Fatalf("vxdp_host:\n%s", out)
		}
	})

	t.Run("tunnel list", func(t *testing.T) {
		out := c.mustCLI(0, "tunnel", "list")
		want := "TUNNEL       VALUE\n10.1.2.0:0   10.169.72.238:0\n"
		if out != want {
			t.Fatalf("vxdp tunnel list on node1:\n%q\nwant\n%q", out, want)
		}
	})

	// Capture the underlay on node1 while pods talk, and check what the
	// wire carries with gopacket.
	capt, err := nstest.StartCapture(c.node[0], "eth0")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ping across nodes", func(t *testing.T) {
		c.mustPing("pod1a", "10.1.2.20")
		c.mustPing("pod2b", "10.1.1.11")
	})
	t.Run("ping on the same node", func(t *testing.T) {
		c.mustPing("pod1a", "10.1.1.11")
		c.mustPing("pod2a", "10.1.2.21")
	})
	t.Run("node to remote pod", func(t *testing.T) {
		c.mustPing("node1", "10.1.2.20")
		c.mustPing("node2", "10.1.1.10")
	})
	t.Run("node to local pod and pod to node", func(t *testing.T) {
		c.mustPing("node1", "10.1.1.11")
		c.mustPing("pod1a", "10.169.72.233")
	})
	frames := capt.Stop()

	t.Run("capture shows VXLAN with the sender's identity", func(t *testing.T) {
		// inner source -> VNI seen on the wire
		seen := map[string]map[uint32]int{}
		// inner source and destination -> outer source ports node1 sent
		// them from: one per flow, and the flows spread over several.
		ports := map[string]map[layers.UDPPort]bool{}
		node1Ports := map[layers.UDPPort]bool{}
		for _, f := range frames {
			p := nstest.Decode(f)
			ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			vx, _ := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
			if ip4 == nil || udp == nil || udp.DstPort != 8472 {
				continue
			}
			if vx == nil {
				t.Fatalf("UDP to 8472 that gopacket cannot decode as VXLAN: %v", p)
			}
			if udp.SrcPort < 49152 {
				t.Errorf("outer source port %d outside 49152-65535", udp.SrcPort)
			}
			if ip4.TTL != 64 {
				t.Errorf("outer TTL %d", ip4.TTL)
			}
			// The inner packet is the first IPv4 layer after VXLAN.
			var inner *layers.IPv4
			for _, l := range p.Layers() {
				if x, ok := l.(*layers.IPv4); ok && x != ip4 {
					inner = x
				}
			}
			if inner == nil {
				t.Fatalf("VXLAN without an inner IPv4 packet: %v", p)
			}
			src := inner.SrcIP.String()
			if seen[src] == nil {
				seen[src] = map[uint32]int{}
			}
			if ip4.SrcIP.String() == "10.169.72.233" {
				flow := src + ">" + inner.DstIP.String()
				if ports[flow] == nil {
					ports[flow] = map[layers.UDPPort]bool{}
				}
				ports[flow][udp.SrcPort] = true
				node1Ports[udp.SrcPort] = true
			}
			seen[src][vx.VNI]++
			if strings.HasPrefix(src, "10.1.1.") && strings.HasPrefix(inner.DstIP.String(), "10.1.1.") {
				t.Errorf("same-node traffic %s -> %s went over the underlay", src, inner.DstIP)
			}
		}
		want := map[string]uint32{
			"10.1.1.10": 1000, // pod1a
			"10.1.2.20": 2000, // pod2a replies
			"10.1.2.21": 256,  // pod2b: default workload identity
			"10.1.1.11": 1001, // pod1b replies
			"10.1.1.1":  6,    // node1 itself: remote-node
			"10.1.2.1":  6,    // node2 itself
		}
		for src, vni := range want {
			if len(seen[src]) != 1 || seen[src][vni] == 0 {
				t.Errorf("inner source %s: VNIs on the wire %v, want only %d", src, seen[src], vni)
			}
		}
		for flow, ps := range ports {
			if len(ps) != 1 {
				t.Errorf("flow %s left node1 from %d source ports %v, want one", flow, len(ps), ps)
			}
		}
		if len(ports) < 3 || len(node1Ports) < 2 {
			t.Errorf("%d flows from node1 used %d outer source port(s): flows are not spread", len(ports), len(node1Ports))
		}
	})

	t.Run("TCP 100MB across nodes", func(t *testing.T) {
		transfer(t, c.pods["pod1a"], c.pods["pod2a"], "10.1.2.20", 5001, 100<<20, 2*time.Minute)
	})
	t.Run("TCP 100MB across nodes, the other way", func(t *testing.T) {
		transfer(t, c.pods["pod2a"], c.pods["pod1a"], "10.1.1.10", 5006, 100<<20, 2*time.Minute)
	})
	t.Run("offloads carried those transfers", func(t *testing.T) {
		// pod1a's kernel handed its TUN super-packets, node1 sent them
		// whole to the kernel through vxdp_gso (tunnel-gso). pod2a's
		// were cut up by node2 (tunnel-gso off) and sent as UDP_SEGMENT
		// runs, which node1 received coalesced and wrote as merged
		// super-packets into pod1a.
		for _, chk := range []struct {
			node         int
			device, name string
		}{
			{0, "pod1a", "tun-tso"}, {0, "underlay", "tunnel-gso"},
			{1, "pod2a", "tun-tso"}, {1, "underlay", "udp-gso"},
			{0, "underlay", "udp-gro"}, {0, "pod1a", "tun-gro"},
		} {
			o := c.offload(chk.node, chk.device, chk.name)
			if !o.Active || o.Count == 0 || o.Largest <= 1500 {
				t.Errorf("node%d %s %s: %+v; want active, used, units larger than the 1500-byte MTU", chk.node+1, chk.device, chk.name, o)
			}
		}
		if o := c.offload(0, "pod1a", "tun-tso-whole"); !o.Active || o.Count == 0 {
			t.Errorf("node1 pod1a tun-tso-whole: %+v; want active and used", o)
		}
		// node2 received those whole and wrote them into pod2a as they
		// came, the checksum left to pod2a's kernel.
		if o := c.offload(1, "pod2a", "tun-super-write"); !o.Active || o.Count == 0 {
			t.Errorf("node2 pod2a tun-super-write: %+v; want active and used", o)
		}
		if o := c.offload(1, "underlay", "tunnel-gso"); o.Active || o.Reason != "tunnel-gso is off" {
			t.Errorf("node2 tunnel-gso: %+v; want off, as configured", o)
		}
		if o := c.offload(1, "pod2a", "tun-tso-whole"); o.Active || o.Count != 0 {
			t.Errorf("node2 pod2a tun-tso-whole: %+v; want off and unused", o)
		}
		if out := c.mustCLI(0, "stats"); !strings.Contains(out, "tun-tso") || !strings.Contains(out, "tunnel-gso") {
			t.Errorf("stats lacks the offload table:\n%s", out)
		}
	})
	t.Run("TCP 100MB on the same node", func(t *testing.T) {
		transfer(t, c.pods["pod2b"], c.pods["pod2a"], "10.1.2.20", 5002, 100<<20, 2*time.Minute)
	})
	t.Run("TCP node to remote pod", func(t *testing.T) {
		if _, err := nstest.TCPTransfer(c.node[0], c.pods["pod2b"], addr("10.1.2.21"), 5003, 20<<20, time.Minute); err != nil {
			t.Fatal(err)
		}
		// The node's own super-packets left whole as well.
		if o := c.offload(0, "vxdp_host", "tun-tso-whole"); !o.Active || o.Count == 0 {
			t.Errorf("node1 vxdp_host tun-tso-whole: %+v; want active and used", o)
		}
	})

	t.Run("path MTU discovery", func(t *testing.T) {
		// With the pod's own MTU (1450) the kernel refuses locally.
		out, err := c.ping("pod1a", "10.1.2.20", "-c", "1", "-M", "do", "-s", "1473")
		if err == nil || !strings.Contains(strings.ToLower(out), "message too long") {
			t.Fatalf("oversize ping with DF at MTU 1450: %v\n%s", err, out)
		}
		// A pod that believes in 1500 learns 1450 from vxdp's ICMP.
		before := c.drops(0, "frag_needed")
		c.pods["pod1a"].MustRun(t, "ip", "link", "set", "eth0", "mtu", "1500")
		defer c.pods["pod1a"].MustRun(t, "ip", "link", "set", "eth0", "mtu", "1450")
		out, _ = c.ping("pod1a", "10.1.2.20", "-c", "1", "-M", "do", "-s", "1472")
		if !regexp.MustCompile(`(?i)frag needed.*mtu = 1450|mtu=1450`).MatchString(out) {
			t.Fatalf("no fragmentation-needed from the dataplane:\n%s", out)
		}
		if after := c.drops(0, "frag_needed"); after <= before {
			t.Fatalf("frag_needed drops %d -> %d", before, after)
		}
		// TCP still flows: the pod's kernel now uses the learnt PMTU.
		// Flush first so this connection has to discover it again.
		c.pods["pod1a"].MustRun(t, "ip", "route", "flush", "cache")
		if _, err := nstest.TCPTransfer(c.pods["pod1a"], c.pods["pod2a"], addr("10.1.2.20"), 5004, 20<<20, time.Minute); err != nil {
			t.Fatalf("TCP with PMTU discovery: %v", err)
		}
		// Small DF packets pass.
		if out, err := c.ping("pod1a", "10.1.2.20", "-c", "1", "-M", "do", "-s", "1422"); err != nil {
			t.Fatalf("1450-byte DF ping: %v\n%s", err, out)
		}
	})

	t.Run("monitor streams drops", func(t *testing.T) {
		// Other drops (a pod's IPv6 router solicitation) may come first.
		expectMonitorDrop(t, c.sockets[0], func() {
			c.ping("pod1a", "10.1.9.9", "-c", "1", "-W", "1") // inside the cluster CIDR, held by no node
		}, "drop no_route dev pod1a (pod) icmp 10.1.1.10 -> 10.1.9.9 identity 1000")
	})

	t.Run("capture to pcap, read by tshark", func(t *testing.T) {
		file := filepath.Join(c.dir, "pod1a.pcap")
		for _, point := range []string{"pod:pod1a", "underlay"} {
			cmd := exec.Command(vxdpBin, "--socket", c.sockets[0], "capture", "--point", point, "--count", "4", "-w", file)
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			must(t, cmd.Start())
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			time.Sleep(300 * time.Millisecond)
			c.ping("pod1a", "10.1.2.20", "-c", "3", "-i", "0.1")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("capture %s: %v\n%s", point, err, out)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("capture %s did not finish:\n%s", point, out)
			}
			ts, err := exec.Command("tshark", "-r", file, "-d", "udp.port==8472,vxlan", "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type").Output()
			if err != nil {
				t.Fatalf("tshark: %v\n%s", err, ts)
			}
			lines := strings.Split(strings.TrimSpace(string(ts)), "\n")
			if len(lines) != 4 || !strings.Contains(string(ts), "10.1.1.10") || !strings.Contains(string(ts), "10.1.2.20") {
				t.Fatalf("capture at %s, tshark reads:\n%s", point, ts)
			}
			if point == "underlay" && !strings.Contains(string(ts), "10.169.72.233") {
				t.Fatalf("underlay capture without outer addresses:\n%s", ts)
			}
		}
		// A refused capture leaves an existing file alone; a negative
		// count is bad usage.
		keep := filepath.Join(t.TempDir(), "keep.pcap")
		write(t, keep, "precious")
		for _, tt := range []struct {
			args []string
			code int
		}{
			{[]string{"--point", "pod:nosuch", "-w", keep}, 1},
			{[]string{"--point", "underlay", "--count", "-1", "-w", keep}, 2},
		} {
			out, err := exec.Command(vxdpBin, append([]string{"--socket", c.sockets[0], "capture"}, tt.args...)...).CombinedOutput()
			if exitCode(err) != tt.code {
				t.Errorf("capture %v: exit %d, want %d\n%s", tt.args, exitCode(err), tt.code, out)
			}
			if b, _ := os.ReadFile(keep); string(b) != "precious" {
				t.Fatalf("capture %v changed the file to %q", tt.args, b)
			}
		}
	})

	t.Run("ingress policy", func(t *testing.T) {
		// pod2a admits identity 1000 (pod1a) only.
		c.mustCLI(1, "endpoint", "policy", "pod2a", "--allow-from", "1000")
		if out := c.mustCLI(1, "endpoint", "list"); !strings.Contains(out, "1000") {
			t.Fatalf("endpoint list:\n%s", out)
		}
		before := c.drops(1, "policy_denied")
		c.mustPing("pod1a", "10.1.2.20")
		if out, err := c.ping("pod2b", "10.1.2.20", "-c", "2"); err == nil {
			t.Fatalf("identity 256 got through:\n%s", out)
		}
		if out, err := c.ping("pod1b", "10.1.2.20", "-c", "2"); err == nil {
			t.Fatalf("identity 1001 got through:\n%s", out)
		}
		if after := c.drops(1, "policy_denied"); after < before+4 {
			t.Fatalf("policy_denied %d -> %d", before, after)
		}
		// A long allowed transfer runs while the policy changes twice.
		errc := make(chan error, 1)
		go func() {
			_, err := nstest.TCPTransfer(c.pods["pod1a"], c.pods["pod2a"], addr("10.1.2.20"), 5005, 200<<20, time.Minute)
			errc <- err
		}()
		time.Sleep(200 * time.Millisecond)
		c.mustCLI(1, "endpoint", "policy", "pod2a", "--allow-from", "1000,256")
		// The bulk transfer fills pod2a's backlog, so a ping may lose a
		// packet to it; the policy itself must let the first one through.
		out, err := c.ping("pod2b", "10.1.2.20", "-c", "5", "-i", "0.2", "-W", "1") // one second of pings
		if !strings.Contains(out, "bytes from 10.1.2.20") {
			t.Fatalf("pod2b still denied right after the change: %v\n%s", err, out)
		}
		c.mustCLI(1, "endpoint", "policy", "pod2a", "--allow-all")
		if err := <-errc; err != nil {
			t.Fatalf("allowed flow broken by policy changes: %v", err)
		}
	})

	t.Run("endpoint add and del at runtime", func(t *testing.T) {
		extra := c.lab.Netns("pod1c")
		c.mustCLI(0, "endpoint", "add", "pod1c", "--ip", "10.1.1.30", "--netns", extra.Path, "--identity", "3000")
		if out := c.mustCLI(0, "endpoint", "list"); !strings.Contains(out, "pod1c") || !strings.Contains(out, "10.1.1.30") {
			t.Fatalf("endpoint list:\n%s", out)
		}
		c.pods["pod1c"] = extra
		c.mustPing("pod2a", "10.1.1.30")
		c.mustCLI(0, "endpoint", "del", "pod1c")
		if out, _ := extra.Run("ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Fatalf("pod device still present after delete:\n%s", out)
		}
		// Errors: duplicate, bad address, unknown name.
		if out, err := c.cli(0, "endpoint", "add", "dup", "--ip", "10.1.1.10", "--netns", extra.Path); exitCode(err) != 1 || !strings.Contains(out, "10.1.1.10") {
			t.Fatalf("duplicate ip: exit %d\n%s", exitCode(err), out)
		}
		if out, err := c.cli(0, "endpoint", "add", "bad", "--ip", "10.9.9.9", "--netns", extra.Path); exitCode(err) != 2 || !strings.Contains(out, "10.9.9.9") {
			t.Fatalf("address outside pod cidr: exit %d\n%s", exitCode(err), out)
		}
		if out, err := c.cli(0, "endpoint", "del", "nosuch"); exitCode(err) != 1 {
			t.Fatalf("unknown endpoint: exit %d\n%s", exitCode(err), out)
		}
		// A pod whose namespace is deleted under it: the list says so,
		// and deleting the endpoint then succeeds.
		doomed := c.lab.Netns("pod1d")
		c.mustCLI(0, "endpoint", "add", "pod1d", "--ip", "10.1.1.31", "--netns", doomed.Path)
		if out, err := exec.Command("ip", "netns", "del", doomed.Name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del: %v\n%s", err, out)
		}
		deadline := time.Now().Add(5 * time.Second)
		out := ""
		for time.Now().Before(deadline) {
			if out = c.mustCLI(0, "endpoint", "list"); strings.Contains(out, "gone") {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(out, "pod1d") || !strings.Contains(out, "gone") {
			t.Fatalf("endpoint list after the namespace went:\n%s", out)
		}
		if out, err := c.cli(0, "endpoint", "del", "pod1d"); err != nil {
			t.Fatalf("deleting the endpoint of a deleted namespace: exit %d\n%s", exitCode(err), out)
		}
	})

	t.Run("no node or vtep takes the underlay", func(t *testing.T) {
		// A pod CIDR over the underlay subnet would replace the node's
		// connected route with one into the overlay.
		routeBefore := c.node[0].MustRun(t, "ip", "-4", "route", "show", "10.169.72.0/24")
		for _, args := range [][]string{
			{"node", "add", "x", "--ip", "10.169.72.253", "--pod-cidr", "10.169.72.0/24"},
			{"node", "add", "x", "--ip", "10.169.72.253", "--pod-cidr", "10.169.72.128/25"},
			{"node", "add", "x", "--ip", "10.1.2.99", "--pod-cidr", "10.1.9.0/24"},
			{"vtep", "add", "10.169.72.0/24", "--endpoint", "10.169.72.250", "--mac", "82:36:4c:98:2e:56"},
		} {
			out, err := c.cli(0, args...)
			if exitCode(err) != 2 {
				t.Errorf("%v: exit %d, want 2 (refused)\n%s", args, exitCode(err), out)
			}
		}
		if after := c.node[0].MustRun(t, "ip", "-4", "route", "show", "10.169.72.0/24"); after != routeBefore {
			t.Fatalf("underlay route changed:\n%s\nnow:\n%s", routeBefore, after)
		}
		c.mustPing("node1", "10.169.72.238")
		c.mustPing("pod1a", "10.1.2.20")
	})

	t.Run("deleting a node makes its pods unreachable", func(t *testing.T) {
		before := c.drops(0, "no_route")
		c.mustCLI(0, "node", "del", "node2")
		if out := c.mustCLI(0, "tunnel", "list"); out != "TUNNEL       VALUE\n" {
			t.Fatalf("tunnel list after delete:\n%s", out)
		}
		out, err := c.ping("pod1a", "10.1.2.20", "-c", "2")
		if err == nil || !strings.Contains(out, "Destination Host Unreachable") {
			t.Fatalf("ping to a deleted node's pod: %v\n%s", err, out)
		}
		if after := c.drops(0, "no_route"); after < before+2 {
			t.Fatalf("no_route drops %d -> %d", before, after)
		}
		// And back, at runtime.
		c.mustCLI(0, "node", "add", "node2", "--ip", "10.169.72.238", "--pod-cidr", "10.1.2.0/24")
		if out := c.mustCLI(0, "node", "list"); !strings.Contains(out, "node2") || !strings.Contains(out, "api") {
			t.Fatalf("node list:\n%s", out)
		}
		c.mustPing("pod1a", "10.1.2.20")
	})

	t.Run("status and stats", func(t *testing.T) {
		out := c.mustCLI(0, "status")
		for _, want := range []string{"Health:", "ok", "tunnel", "vxlan port 8472", "udp", "pods 1450"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		out = c.mustCLI(0, "stats")
		for _, want := range []string{"pod1a", "vxdp_host", "no_route", "frag_needed", "invalid_source"} {
			if !strings.Contains(out, want) {
				t.Errorf("stats lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("a thousand nodes in one request", func(t *testing.T) {
		var b strings.Builder
		for i := 0; i < 1000; i++ {
			fmt.Fprintf(&b, "- {name: bulk%d, ip: 10.200.%d.%d, pod-cidr: 10.1.%d.%d/28}\n", i, i/250, i%250+1, 16+i/16, i%16*16)
		}
		list := filepath.Join(c.dir, "nodes.yaml")
		if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		// One bad entry (its pod CIDR inside node2's) refuses the list.
		bad := filepath.Join(c.dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte(b.String()+"- {name: bad, ip: 10.201.0.1, pod-cidr: 10.1.2.128/25}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := c.cli(0, "node", "add", "--file", bad); err == nil || !strings.Contains(out, "overlaps node node2") {
			t.Fatalf("a list with an overlapping entry was not refused: %v\n%s", err, out)
		}
		if out := c.mustCLI(0, "node", "list"); strings.Contains(out, "bulk") {
			t.Fatalf("part of a refused list was added:\n%s", out)
		}
		start := time.Now()
		c.mustCLI(0, "node", "add", "--file", list)
		t.Logf("1000 nodes added in %v (one CLI call)", time.Since(start).Round(time.Millisecond))
		if n := strings.Count(c.mustCLI(0, "node", "list"), "bulk"); n != 1000 {
			t.Fatalf("%d bulk nodes listed, want 1000", n)
		}
		// Pod traffic is untouched.
		c.mustPing("pod1a", "10.1.2.20")
	})

	t.Run("status follows the underlay device", func(t *testing.T) {
		// statusSays waits until node1's status exits with code and says
		// want.
		statusSays := func(code int, want string) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			var out string
			var err error
			for time.Now().Before(deadline) {
				out, err = c.cli(0, "status")
				if exitCode(err) == code && strings.Contains(out, want) {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatalf("status: exit %d, want %d saying %q:\n%s", exitCode(err), code, want, out)
		}
		n1 := c.node[0]
		n1.MustRun(t, "ip", "link", "set", "eth0", "down")
		statusSays(1, "underlay device eth0 is down")
		n1.MustRun(t, "ip", "link", "set", "eth0", "up")
		statusSays(0, "")
		// A new MTU is followed (TestUnderlayMTUChange has the details):
		// healthy, and said on the MTU line.
		n1.MustRun(t, "ip", "link", "set", "eth0", "mtu", "1400")
		statusSays(0, "underlay 1400, pods 1350 (changed from 1500 at ")
		n1.MustRun(t, "ip", "link", "set", "eth0", "mtu", "1500")
		statusSays(0, "underlay 1500, pods 1450 (changed from 1400 at ")
		c.mustPing("pod1a", "10.1.2.20")
	})

	t.Run("clean shutdown", func(t *testing.T) {
		for i := range c.agents {
			if err := c.agents[i].Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		for i := range c.agents {
			code, err := c.agents[i].Wait(10 * time.Second)
			if err != nil || code != 0 {
				t.Fatalf("agent %d: exit %d, %v\n%s", i+1, code, err, c.agents[i].Output())
			}
			if _, err := os.Stat(c.sockets[i]); !os.IsNotExist(err) {
				t.Errorf("agent %d left its socket: %v", i+1, err)
			}
			out, _ := c.node[i].Run("ip", "-o", "link")
			if strings.Contains(out, "vxdp") {
				t.Errorf("node %d keeps vxdp devices:\n%s", i+1, out)
			}
			out, _ = c.node[i].Run("ip", "route")
			if strings.Contains(out, "10.1.") {
				t.Errorf("node %d keeps routes:\n%s", i+1, out)
			}
		}
		for name, p := range c.pods {
			if out, _ := p.Run("ip", "-o", "link"); strings.Contains(out, "eth0") {
				t.Errorf("%s keeps eth0 after shutdown:\n%s", name, out)
			}
		}
	})
}
