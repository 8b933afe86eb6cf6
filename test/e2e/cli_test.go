package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Invalid configuration never reaches the kernel: the agent exits 2 with
// one line per problem, naming the key and the value; a source with several
// problems names them all in one run.
func TestAgentConfigErrors(t *testing.T) {
	lab := nstest.New(t)
	ns := lab.Netns("cfg")
	dir := t.TempDir()
	tests := []struct {
		name string
		yaml string
		cm   map[string]string // a ConfigMap directory (--config-dir), if any
		args []string
		want [][]string // what each line of the message names
	}{
		{"missing node-ip", "pod-cidr: 10.1.1.0/24\n", nil, nil, [][]string{{"node-ip"}}},
		{"bad pod-cidr", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/33\n", nil, nil, [][]string{{"pod-cidr", "10.1.1.0/33"}}},
		{"unknown key", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\ntunel-port: 1\n", nil, nil, [][]string{{"tunel-port"}}},
		{"bad underlay", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nunderlay: dpdk\n", nil, nil, [][]string{{"underlay", "dpdk"}}},
		{"bad flag value", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\n", nil, []string{"--node-ip", "10.169.72.300"}, [][]string{{"node-ip", "10.169.72.300"}}},
		{"endpoint outside pod cidr", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nendpoints:\n  - {name: a, ip: 10.1.2.5, netns: /run/netns/x}\n", nil, nil, [][]string{{"endpoints[0].ip", "10.1.2.5"}}},
		{"every problem of the file", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\ntunel-port: 1\ndebug: \"true\"\nmtu: jumbo\n", nil, nil,
			[][]string{{"tunel-port", "line 3"}, {"mtu", "jumbo", "line 5"}}},
		{"two unknown keys in the directory", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\n",
			map[string]string{"cluster-name": "default", "routing-mod": "tunnel", "tunnel-protcol": "vxlan"}, nil,
			[][]string{{"routing-mod", "unknown key"}, {"tunnel-protcol", "unknown key"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"netns", "exec", ns.Name, vxdpBin, "agent", "--config", path, "--socket", filepath.Join(dir, "s.sock")}, tt.args...)
			if tt.cm != nil {
				args = append(args, "--config-dir", configMapDir(t, tt.cm))
			}
			out, err := exec.Command("ip", args...).CombinedOutput()
			if exitCode(err) != 2 {
				t.Fatalf("exit %d, want 2\n%s", exitCode(err), out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("want %d lines on stderr, got %d:\n%s", len(tt.want), len(lines), out)
			}
			for i, want := range tt.want {
				for _, w := range want {
					if !strings.Contains(lines[i], w) {
						t.Errorf("line %d lacks %q:\n%s", i+1, w, out)
					}
				}
			}
		})
	}
}

// configMapDir lays out a directory the way the kubelet mounts a ConfigMap:
// the files in a timestamped directory, "..data" linking to it, each key a
// link through "..data".
func configMapDir(t *testing.T, data map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
	must(t, os.Mkdir(ts, 0o755))
	for k, v := range data {
		write(t, filepath.Join(ts, k), v)
	}
	must(t, os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")))
	for k := range data {
		must(t, os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)))
	}
	return dir
}

// The cilium-config ConfigMap that Cilium's Helm chart renders
// (config/testdata/cilium-config.yaml), mounted as the kubelet mounts it,
// starts an agent: the node's own keys come from the file, the keys vxdp
// implements take effect (the VTEP), the others are named in one warning.
func TestAgentCiliumConfigMap(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "testdata", "cilium-config.yaml"))
	must(t, err)
	var cm struct{ Data map[string]string }
	must(t, yaml.Unmarshal(raw, &cm))
	if len(cm.Data) < 100 {
		t.Fatalf("fixture has %d keys", len(cm.Data))
	}

	lab := nstest.New(t)
	node, peer := lab.Netns("node1"), lab.Netns("peer")
	lab.Veth(node, "eth0", "10.169.72.233/24", peer, "eth0", "10.169.72.236/24", 1500)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "node.yaml")
	write(t, cfg, "state-dir: "+filepath.Join(dir, "state")+"\nnode-name: node1\nnode-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nunderlay: udp\n")
	sock := filepath.Join(dir, "vxdp.sock")
	p := lab.Start(node, "agent", vxdpBin, "agent", "--config", cfg, "--config-dir", configMapDir(t, cm.Data), "--socket", sock)
	waitAgent(t, p, sock)

	out, err := runCLI(sock, "vtep", "list")
	if err != nil || !strings.Contains(out, "10.1.5.0/24") || !strings.Contains(out, "10.169.72.236") {
		t.Errorf("vtep list: %v\n%s", err, out)
	}
	if n := strings.Count(p.Output(), "Cilium keys vxdp does not use"); n != 1 ||
		!strings.Contains(p.Output(), "ignoring 147 Cilium keys vxdp does not use: agent-not-ready-taint-key, ") {
		t.Errorf("want one warning naming the 147 ignored keys (%d):\n%s", n, p.Output())
	}
	// Cilium's procfs, /host/proc, is its DaemonSet's mount; on a host
	// without it the agent says so and writes its sysctls under /proc.
	if !strings.Contains(p.Output(), "procfs has no sys directory; using /proc") || strings.Contains(p.Output(), "/host/proc/sys") {
		t.Errorf("want the procfs fallback and no sysctl under /host/proc:\n%s", p.Output())
	}
}

func TestCLIUsage(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"frobnicate"}, 2},
		{[]string{"node", "add"}, 2},
		{[]string{"node", "add", "x", "--ip", "10.0.0.1"}, 2},
		{[]string{"tunnel", "list", "--bogus"}, 2},
		{[]string{"tunnel", "list", "-o", "yaml"}, 2},
		{[]string{"tunnel", "list"}, 1}, // no agent on that socket
		{[]string{"--help"}, 0},
	}
	for _, tt := range tests {
		cmd := exec.Command(vxdpBin, append([]string{"--socket", sock}, tt.args...)...)
		out, err := cmd.CombinedOutput()
		if got := exitCode(err); got != tt.code {
			t.Errorf("vxdp %s: exit %d, want %d\n%s", strings.Join(tt.args, " "), got, tt.code, out)
		}
	}
	// VXDP_SOCKET is honoured.
	cmd := exec.Command(vxdpBin, "status")
	cmd.Env = append(os.Environ(), "VXDP_SOCKET="+sock)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), sock) {
		t.Errorf("VXDP_SOCKET ignored:\n%s", out)
	}
}
