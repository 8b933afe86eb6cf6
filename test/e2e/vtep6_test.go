package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
)

// The VTEP guide's scenario (TestVTEPGuideScenario) on an IPv6 underlay:
// node1 at fd69:72::233 and two "Linux VMs" whose kernel vxlan devices
// have IPv6 local and remote addresses on port 8472. Inside, all stays
// IPv4, as Cilium's VTEPs are; only the endpoints are IPv6. The kernel's
// vxlan computes the outer UDP checksum over IPv6 and refuses a zero one
// (udp6zerocsumtx/rx off), so traffic in both directions also shows that
// vxdp's outer checksums are right.
func TestVTEPIPv6Underlay(t *testing.T) {
	const (
		nodeIP = "fd69:72::233"
		vm1IP  = "fd69:72::236"
		vm2IP  = "fd69:72::238"
		peerIP = "fd69:72::237" // a node entry with no agent: the tunnel list shows it
	)
	lab := nstest.New(t)
	dir := t.TempDir()
	sw := lab.Netns("switch")
	node := lab.Netns("node1")
	pod := lab.Netns("pod")
	vm1 := lab.Netns("vm1")
	vm2 := lab.Netns("vm2")
	underlaySwitch(t, lab, sw, []*nstest.Netns{node, vm1, vm2}, []string{nodeIP + "/64", vm1IP + "/64", vm2IP + "/64"})

	cfg := filepath.Join(dir, "node1.yaml")
	write(t, cfg, fmt.Sprintf(`node-name: node1
node-ip: %s
pod-cidr: 10.0.0.0/17
state-dir: %s
nodes:
  - {name: node2, ip: "%s", pod-cidr: 10.0.128.0/24}
endpoints:
  - {name: busybox, ip: 10.0.1.1, netns: %s, identity: 1000}
`, nodeIP, filepath.Join(dir, "state"), peerIP, pod.Path))
	cm := filepath.Join(dir, "configmap")
	must(t, os.Mkdir(cm, 0o755))
	for k, v := range map[string]string{ // the guide's keys, with IPv6 endpoints
		"enable-vtep":   "true",
		"vtep-endpoint": vm1IP + "    " + vm2IP,
		"vtep-cidr":     "10.1.1.0/24   10.1.2.0/24",
		"vtep-mask":     "255.255.255.0",
		"vtep-mac":      "82:36:4c:98:2e:56 82:36:4c:98:2e:58",
	} {
		write(t, filepath.Join(cm, k), v+"\n")
	}
	sock := filepath.Join(dir, "node1.sock")
	agent := lab.Start(node, "agent", vxdpBin, "agent", "--config", cfg, "--config-dir", cm, "--socket", sock, "--log-level", "debug")
	cli := func(args ...string) (string, error) { return runCLI(sock, args...) }
	waitAgent(t, agent, sock)

	// The guide's VM commands with IPv6 local and remote addresses.
	// opts are further options of the vxlan device.
	guideVM := func(vm *nstest.Netns, id, local, mac, addr string, opts ...string) {
		for _, cmd := range [][]string{
			append([]string{"ip", "link", "add", "vxlan" + id, "type", "vxlan", "id", id, "dstport", "8472", "local", local, "dev", "eth0"}, opts...),
			{"ip", "link", "set", "dev", "vxlan" + id, "address", mac},
			{"ip", "link", "set", "vxlan" + id, "up"},
			{"ip", "addr", "add", addr, "dev", "vxlan" + id},
			{"ip", "route", "add", "10.0.0.0/16", "dev", "vxlan" + id, "proto", "kernel", "scope", "link", "src", strings.Split(addr, "/")[0]},
			{"bridge", "fdb", "append", "00:00:00:00:00:00", "dst", nodeIP, "dev", "vxlan" + id},
		} {
			vm.MustRun(t, cmd...)
		}
	}
	guideVM(vm1, "2", vm1IP, "82:36:4c:98:2e:56", "10.1.1.236/24")
	guideVM(vm2, "2", vm2IP, "82:36:4c:98:2e:58", "10.1.2.238/24")
	if out := vm1.MustRun(t, "ip", "-d", "link", "show", "vxlan2"); !strings.Contains(out, "local "+vm1IP) {
		t.Fatalf("vm1's vxlan device:\n%s", out)
	}

	t.Run("tables", func(t *testing.T) {
		out, err := cli("vtep", "list")
		if err != nil {
			t.Fatal(err, out)
		}
		for _, want := range []string{"10.1.1.0/24", vm1IP, "82:36:4c:98:2e:56", "10.1.2.0/24", vm2IP, "82:36:4c:98:2e:58"} {
			if !strings.Contains(out, want) {
				t.Errorf("vtep list lacks %s:\n%s", want, out)
			}
		}
		out, err = cli("tunnel", "list")
		if err != nil || !strings.Contains(out, "10.0.128.0:0") || !strings.Contains(out, "["+peerIP+"]:0") {
			t.Errorf("tunnel list: %v\n%s", err, out)
		}
		out, err = cli("fib", "list")
		if err != nil || !strings.Contains(out, "vtep "+vm1IP+" 82:36:4c:98:2e:56") || !strings.Contains(out, "node node2 "+peerIP) {
			t.Errorf("fib list: %v\n%s", err, out)
		}
		out, err = cli("vtep", "list", "-o", "json")
		if err != nil || !strings.Contains(out, `"endpoint":"`+vm1IP+`"`) && !strings.Contains(out, `"endpoint": "`+vm1IP+`"`) {
			t.Errorf("vtep list -o json: %v\n%s", err, out)
		}
	})
	t.Run("VM pings the pod", func(t *testing.T) {
		for _, vm := range []*nstest.Netns{vm1, vm2} {
			out, err := nstest.Ping(vm, "-c", "3", "-i", "0.2", "-W", "2", "10.0.1.1")
			if err != nil || !strings.Contains(out, " 0% packet loss") {
				st, _ := cli("stats")
				t.Fatalf("ping from %s: %v\n%s\n%s", vm.Name, err, out, st)
			}
		}
		// The VM learnt the pod's MAC from vxdp's ARP reply, sent back over
		// IPv6: the node's tunnel MAC, derived from its IPv6 address.
		out := vm1.MustRun(t, "ip", "neigh", "show", "10.0.1.1", "dev", "vxlan2")
		if mac := encap.TunnelMAC(addr(nodeIP)).String(); !strings.Contains(out, "lladdr "+mac) {
			t.Fatalf("VM's neighbour entry for the pod:\n%s", out)
		}
		// And its forwarding table holds the node's IPv6 address.
		if out := vm1.MustRun(t, "bridge", "fdb", "show", "dev", "vxlan2"); !strings.Contains(out, "dst "+nodeIP) {
			t.Fatalf("VM's fdb:\n%s", out)
		}
	})
	t.Run("pod pings the VMs", func(t *testing.T) {
		for _, ip := range []string{"10.1.1.236", "10.1.2.238"} {
			out, err := nstest.Ping(pod, "-c", "3", "-i", "0.2", "-W", "2", ip)
			if err != nil || !strings.Contains(out, " 0% packet loss") {
				t.Fatalf("pod -> %s: %v\n%s", ip, err, out)
			}
		}
	})
	t.Run("TCP VM to pod and pod to VM", func(t *testing.T) {
		if _, err := nstest.TCPTransfer(vm1, pod, addr("10.0.1.1"), 6001, 20<<20, 30*time.Second); err != nil {
			st, _ := cli("stats")
			t.Fatalf("vm1 -> pod: %v\n%s", err, st)
		}
		if _, err := nstest.TCPTransfer(pod, vm1, addr("10.1.1.236"), 6002, 20<<20, time.Minute); err != nil {
			t.Fatalf("pod -> vm1: %v", err)
		}
		if _, err := nstest.TCPTransfer(pod, vm2, addr("10.1.2.238"), 6003, 5<<20, time.Minute); err != nil {
			t.Fatalf("pod -> vm2: %v", err)
		}
		// The kernel's vxlan drops what fails its checksum before the
		// device counts it: the transfers above would have stalled. Its
		// own counters say nothing was refused either.
		out := vm1.MustRun(t, "cat", "/proc/net/snmp6")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && (f[0] == "Udp6InCsumErrors" || f[0] == "Udp6InErrors") && f[1] != "0" {
				t.Errorf("vm1 refused UDP over IPv6: %s", l)
			}
		}
	})
	t.Run("policy: world only when allowed", func(t *testing.T) {
		if out, err := cli("endpoint", "policy", "busybox", "--allow-from", "1000"); err != nil {
			t.Fatal(err, out)
		}
		before := dropCount(t, sock, "policy_denied")
		if out, err := nstest.Ping(vm1, "-c", "2", "-i", "0.2", "-W", "1", "10.0.1.1"); err == nil {
			t.Fatalf("VTEP (world) got through a policy without world:\n%s", out)
		}
		if after := dropCount(t, sock, "policy_denied"); after < before+2 {
			t.Errorf("policy_denied %d -> %d", before, after)
		}
		if out, err := cli("endpoint", "policy", "busybox", "--allow-from", "world"); err != nil {
			t.Fatal(err, out)
		}
		if out, err := nstest.Ping(vm1, "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.1"); err != nil {
			t.Fatalf("VTEP with world allowed: %v\n%s", err, out)
		}
		if out, err := cli("endpoint", "policy", "busybox", "--allow-all"); err != nil {
			t.Fatal(err, out)
		}
	})
	t.Run("IPv6 inside from a VTEP is refused", func(t *testing.T) {
		// VTEPs carry IPv4 (their CIDRs are IPv4): the VM's neighbour
		// solicitations and pings over its vxlan device are dropped.
		vm1.MustRun(t, "ip", "addr", "add", "fd00:5::236/64", "dev", "vxlan2", "nodad")
		defer vm1.MustRun(t, "ip", "addr", "del", "fd00:5::236/64", "dev", "vxlan2")
		before := dropCount(t, sock, "unsupported_protocol")
		if out, err := nstest.Ping(vm1, "-c", "2", "-i", "0.2", "-W", "1", "fd00:5::1"); err == nil {
			t.Fatalf("IPv6 ping over the VTEP answered:\n%s", out)
		}
		if after := dropCount(t, sock, "unsupported_protocol"); after < before+1 {
			t.Errorf("unsupported_protocol %d -> %d", before, after)
		}
	})
	t.Run("VTEPs through the API", func(t *testing.T) {
		if out, err := cli("vtep", "del", "10.1.2.0/24"); err != nil {
			t.Fatal(err, out)
		}
		if out, err := nstest.Ping(vm2, "-c", "1", "-W", "1", "10.0.1.1"); err == nil {
			t.Fatalf("ping from a removed VTEP succeeded:\n%s", out)
		}
		// An IPv4 endpoint cannot be reached from an IPv6 underlay.
		out, err := cli("vtep", "add", "10.1.2.0/24", "--endpoint", "10.169.72.238", "--mac", "82:36:4c:98:2e:58")
		if exitCode(err) != 2 || !strings.Contains(out, "endpoint") || !strings.Contains(out, "family") {
			t.Fatalf("IPv4 endpoint on an IPv6 underlay: exit %d\n%s", exitCode(err), out)
		}
		if out, err := cli("vtep", "add", "10.1.2.0/24", "--endpoint", vm2IP, "--mac", "82:36:4c:98:2e:58"); err != nil {
			t.Fatal(err, out)
		}
		if out, err := nstest.Ping(vm2, "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.1"); err != nil {
			t.Fatalf("ping after re-adding: %v\n%s", err, out)
		}
		// A CIDR the configuration lacks, on the same device.
		if out, err := cli("vtep", "add", "10.1.3.0/24", "--endpoint", vm2IP, "--mac", "82:36:4c:98:2e:58"); err != nil {
			t.Fatal(err, out)
		}
	})
	t.Run("VNI 3 is dropped", func(t *testing.T) {
		before := dropCount(t, sock, "invalid_vni")
		vm1.MustRun(t, "ip", "link", "del", "vxlan2")
		guideVM(vm1, "3", vm1IP, "82:36:4c:98:2e:56", "10.1.1.236/24")
		if out, err := nstest.Ping(vm1, "-c", "2", "-i", "0.2", "-W", "1", "10.0.1.1"); err == nil {
			t.Fatalf("ping with VNI 3 succeeded:\n%s", out)
		}
		if after := dropCount(t, sock, "invalid_vni"); after < before+2 {
			t.Fatalf("invalid_vni %d -> %d", before, after)
		}
	})
	t.Run("API VTEPs survive a restart", func(t *testing.T) {
		// The table set through the API above is kept in the state file,
		// IPv6 endpoints included, and restored by the next agent.
		must(t, agent.Signal(syscall.SIGKILL))
		agent.Wait(5 * time.Second)
		agent = lab.Start(node, "agent-restarted", vxdpBin, "agent", "--config", cfg, "--config-dir", cm, "--socket", sock)
		waitAgent(t, agent, sock)
		out, err := cli("vtep", "list")
		if err != nil || !strings.Contains(out, "10.1.3.0/24") || !strings.Contains(out, vm2IP) || !strings.Contains(out, vm1IP) {
			t.Fatalf("vtep list after the restart: %v\n%s\n%s", err, out, agent.Output())
		}
		if out, err := nstest.Ping(vm2, "-c", "3", "-i", "0.2", "-W", "2", "10.0.1.1"); err != nil || !strings.Contains(out, " 0% packet loss") {
			t.Fatalf("vm2 -> pod after the restart: %v\n%s", err, out)
		}
	})
	t.Run("a VTEP sending zero checksums is refused", func(t *testing.T) {
		// RFC 6935/6936 allow a zero UDP checksum over IPv6 only where
		// both ends are set up for it; vxdp is not (nor is the kernel's
		// vxlan by default): node1's kernel drops and counts what such a
		// device sends.
		vm1.MustRun(t, "ip", "link", "del", "vxlan3")
		guideVM(vm1, "2", vm1IP, "82:36:4c:98:2e:56", "10.1.1.236/24", "udp6zerocsumtx", "udp6zerocsumrx")
		before := snmp6(t, node, "Udp6InCsumErrors")
		if out, err := nstest.Ping(vm1, "-c", "2", "-i", "0.2", "-W", "1", "10.0.1.1"); err == nil {
			t.Fatalf("ping with zero checksums answered:\n%s", out)
		}
		if after := snmp6(t, node, "Udp6InCsumErrors"); after <= before {
			t.Errorf("node1's kernel counted no zero checksums (%d -> %d)", before, after)
		}
	})
	if !agent.Alive() {
		t.Fatalf("agent exited:\n%s", agent.Output())
	}
}

// VTEP endpoints are underlay addresses: of node-ip's family. The agent
// refuses a file that mixes them, naming the key.
func TestVTEPIPv6ConfigErrors(t *testing.T) {
	lab := nstest.New(t)
	ns := lab.Netns("cfg")
	dir := t.TempDir()
	tests := []struct {
		name, nodeIP, endpoint, cidr, want string
	}{
		{"IPv4 endpoint, IPv6 node-ip", "fd69:72::233", "10.169.72.236", "10.1.1.0/24", "vtep-endpoint"},
		{"IPv6 endpoint, IPv4 node-ip", "10.169.72.233", "fd69:72::236", "10.1.1.0/24", "vtep-endpoint"},
		{"link-local endpoint", "fd69:72::233", "fe80::236", "10.1.1.0/24", "vtep-endpoint"},
		{"IPv6 cidr", "fd69:72::233", "fd69:72::236", "fd00:1:5::/64", "vtep-cidr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			write(t, path, fmt.Sprintf(`node-ip: %s
pod-cidr: 10.0.0.0/17
enable-vtep: "true"
vtep-endpoint: "%s"
vtep-cidr: "%s"
vtep-mac: "82:36:4c:98:2e:56"
`, tt.nodeIP, tt.endpoint, tt.cidr))
			out, err := ns.Run(vxdpBin, "agent", "--config", path, "--socket", filepath.Join(dir, "s.sock"))
			if exitCode(err) != 2 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want 2 naming %q:\n%s", exitCode(err), tt.want, out)
			}
		})
	}
}
