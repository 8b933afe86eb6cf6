package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// The VTEP scenario of Cilium's VTEP integration guide
// (docs.cilium.io/en/stable/network/vtep/): node1 (10.169.72.233) whose
// pod 10.0.1.1 lives in the pod CIDR 10.0.1.0/24 inside 10.0.0.0/16 (the
// first address is a pod's, as in the guide: host-ipv4 moves vxdp_host to
// the last), and two "Linux VMs" on the same
// underlay, each a kernel vxlan device configured with the guide's own
// commands. The VTEP keys come from a ConfigMap directory holding the
// guide's text verbatim.
func TestVTEPGuideScenario(t *testing.T) {
	lab := nstest.New(t)
	dir := t.TempDir()
	sw := lab.Netns("switch")
	node := lab.Netns("node1")
	pod := lab.Netns("pod")
	vm1 := lab.Netns("vm1")
	vm2 := lab.Netns("vm2")
	underlaySwitch(t, lab, sw, []*nstest.Netns{node, vm1, vm2}, []string{"10.169.72.233/24", "10.169.72.236/24", "10.169.72.238/24"})

	cfg := filepath.Join(dir, "node1.yaml")
	write(t, cfg, fmt.Sprintf(`state-dir: `+filepath.Join(dir, "state")+`
node-name: node1
node-ip: 10.169.72.233
pod-cidr: 10.0.1.0/24
host-ipv4: 10.0.1.254
endpoints:
  - {name: busybox, ip: 10.0.1.1, netns: %s, identity: 1000}
`, pod.Path))
	cm := filepath.Join(dir, "configmap")
	must(t, os.Mkdir(cm, 0o755))
	for k, v := range map[string]string{ // the guide's text, verbatim
		"enable-vtep":   "true",
		"vtep-endpoint": "10.169.72.236    10.169.72.238",
		"vtep-cidr":     "10.1.1.0/24   10.1.2.0/24",
		"vtep-mask":     "255.255.255.0",
		"vtep-mac":      "82:36:4c:98:2e:56 82:36:4c:98:2e:58",
	} {
		write(t, filepath.Join(cm, k), v+"\n")
	}
	sock := filepath.Join(dir, "node1.sock")
	agent := lab.Start(node, "agent", vxdpBin, "agent", "--config", cfg, "--config-dir", cm, "--socket", sock, "--log-level", "debug")
	cli := func(args ...string) (string, error) {
		return runCLI(sock, args...)
	}
	waitAgent(t, agent, sock)

	// The guide's VM commands, unchanged but for addresses and devices.
	guideVM := func(vm *nstest.Netns, id, local, mac, addr string) {
		for _, cmd := range [][]string{
			{"ip", "link", "add", "vxlan" + id, "type", "vxlan", "id", id, "dstport", "8472", "local", local, "dev", "eth0"},
			{"ip", "link", "set", "dev", "vxlan" + id, "address", mac},
			{"ip", "link", "set", "vxlan" + id, "up"},
			{"ip", "addr", "add", addr, "dev", "vxlan" + id},
			{"ip", "route", "add", "10.0.0.0/16", "dev", "vxlan" + id, "proto", "kernel", "scope", "link", "src", strings.Split(addr, "/")[0]},
			{"bridge", "fdb", "append", "00:00:00:00:00:00", "dst", "10.169.72.233", "dev", "vxlan" + id},
		} {
			vm.MustRun(t, cmd...)
		}
	}
	guideVM(vm1, "2", "10.169.72.236", "82:36:4c:98:2e:56", "10.1.1.236/24")
	guideVM(vm2, "2", "10.169.72.238", "82:36:4c:98:2e:58", "10.1.2.238/24")

	t.Run("host address", func(t *testing.T) {
		if out := node.MustRun(t, "ip", "-4", "addr", "show", "dev", "vxdp_host"); !strings.Contains(out, "10.0.1.254/24") {
			t.Errorf("vxdp_host lacks host-ipv4 10.0.1.254:\n%s", out)
		}
		if out, err := nstest.Ping(node, "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.1"); err != nil {
			t.Errorf("node -> pod 10.0.1.1: %v\n%s", err, out)
		}
		if out, err := nstest.Ping(pod, "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.254"); err != nil {
			t.Errorf("pod -> host 10.0.1.254: %v\n%s", err, out)
		}
	})

	t.Run("vtep list", func(t *testing.T) {
		out, err := cli("vtep", "list")
		if err != nil {
			t.Fatal(err, out)
		}
		for _, want := range []string{"10.1.1.0/24", "10.169.72.236", "82:36:4c:98:2e:56", "10.1.2.0/24", "10.169.72.238", "82:36:4c:98:2e:58"} {
			if !strings.Contains(out, want) {
				t.Errorf("vtep list lacks %s:\n%s", want, out)
			}
		}
	})
	t.Run("VM pings the pod", func(t *testing.T) {
		for _, vm := range []*nstest.Netns{vm1, vm2} {
			out, err := nstest.Ping(vm, "-c", "3", "-i", "0.2", "-W", "2", "10.0.1.1")
			if err != nil || !strings.Contains(out, " 0% packet loss") {
				t.Fatalf("ping from %s: %v\n%s", vm.Name, err, out)
			}
		}
		// The VM learnt the pod's MAC from vxdp's ARP reply: the node's tunnel MAC.
		out := vm1.MustRun(t, "ip", "neigh", "show", "10.0.1.1", "dev", "vxlan2")
		if !strings.Contains(out, "02:58:0a:a9:48:e9") {
			t.Fatalf("VM's neighbour entry for the pod:\n%s", out)
		}
		st, _ := cli("stats")
		if !strings.Contains(st, "ARP replies sent") {
			t.Fatalf("stats:\n%s", st)
		}
	})
	t.Run("TCP VM to pod and pod to VM", func(t *testing.T) {
		if _, err := nstest.TCPTransfer(vm1, pod, addr("10.0.1.1"), 6001, 20<<20, 20*time.Second); err != nil {
			st, _ := cli("stats")
			t.Fatalf("vm1 -> pod: %v\n%s", err, st)
		}
		if _, err := nstest.TCPTransfer(pod, vm1, addr("10.1.1.236"), 6002, 20<<20, time.Minute); err != nil {
			t.Fatalf("pod -> vm1: %v", err)
		}
		if _, err := nstest.TCPTransfer(pod, vm2, addr("10.1.2.238"), 6003, 5<<20, time.Minute); err != nil {
			t.Fatalf("pod -> vm2: %v", err)
		}
	})
	t.Run("policy: world only when allowed", func(t *testing.T) {
		if out, err := cli("endpoint", "policy", "busybox", "--allow-from", "1000"); err != nil {
			t.Fatal(err, out)
		}
		if out, err := nstest.Ping(vm1, "-c", "2", "-i", "0.2", "-W", "1", "10.0.1.1"); err == nil {
			t.Fatalf("VTEP (world) got through a policy without world:\n%s", out)
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
	t.Run("VNI 3 is dropped", func(t *testing.T) {
		before := dropCount(t, sock, "invalid_vni")
		vm1.MustRun(t, "ip", "link", "del", "vxlan2")
		guideVM(vm1, "3", "10.169.72.236", "82:36:4c:98:2e:56", "10.1.1.236/24")
		out, err := nstest.Ping(vm1, "-c", "2", "-i", "0.2", "-W", "1", "10.0.1.1")
		if err == nil {
			t.Fatalf("ping with VNI 3 succeeded:\n%s", out)
		}
		if after := dropCount(t, sock, "invalid_vni"); after < before+2 {
			t.Fatalf("invalid_vni %d -> %d", before, after)
		}
	})
	t.Run("VTEPs reloaded through the API", func(t *testing.T) {
		if out, err := cli("vtep", "del", "10.1.2.0/24"); err != nil {
			t.Fatal(err, out)
		}
		out, err := nstest.Ping(vm2, "-c", "1", "-W", "1", "10.0.1.1")
		if err == nil {
			t.Fatalf("ping from a removed VTEP succeeded:\n%s", out)
		}
		if out, err := cli("vtep", "add", "10.1.2.0/24", "--endpoint", "10.169.72.238", "--mac", "82:36:4c:98:2e:58"); err != nil {
			t.Fatal(err, out)
		}
		if out, err := nstest.Ping(vm2, "-c", "2", "-i", "0.2", "-W", "2", "10.0.1.1"); err != nil {
			t.Fatalf("ping after re-adding: %v\n%s", err, out)
		}
		if out, err := cli("vtep", "add", "10.0.1.0/25", "--endpoint", "10.169.72.239", "--mac", "82:36:4c:98:2e:59"); exitCode(err) != 2 {
			t.Fatalf("vtep over the pod cidr: exit %d\n%s", exitCode(err), out)
		}
	})
}

// VTEP configuration errors, with the guide's keys.
func TestVTEPConfigErrors(t *testing.T) {
	lab := nstest.New(t)
	ns := lab.Netns("cfg")
	dir := t.TempDir()
	base := "node-ip: 10.169.72.233\npod-cidr: 10.0.0.0/17\nenable-vtep: \"true\"\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"unequal lists", `vtep-endpoint: "10.169.72.236    10.169.72.238"
vtep-cidr: "10.1.1.0/24"
vtep-mask: "255.255.255.0"
vtep-mac: "82:36:4c:98:2e:56 82:36:4c:98:2e:58"
`, "vtep-"},
		{"bad mac", `vtep-endpoint: "10.169.72.236"
vtep-cidr: "10.1.1.0/24"
vtep-mac: "82:36:4c:98:2e"
`, "vtep-mac"},
		{"ipsec", `enable-ipsec: "true"
vtep-endpoint: "10.169.72.236"
vtep-cidr: "10.1.1.0/24"
vtep-mac: "82:36:4c:98:2e:56"
`, "ipsec"},
		{"overlaps pod cidr", `vtep-endpoint: "10.169.72.236"
vtep-cidr: "10.0.0.0/24"
vtep-mac: "82:36:4c:98:2e:56"
`, "vtep-cidr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			write(t, path, base+tt.yaml)
			out, err := ns.Run(vxdpBin, "agent", "--config", path, "--socket", filepath.Join(dir, "s.sock"))
			if exitCode(err) != 2 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want 2 naming %q:\n%s", exitCode(err), tt.want, out)
			}
		})
	}
}
