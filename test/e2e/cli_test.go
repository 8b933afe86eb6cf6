package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Invalid configuration never reaches the kernel: the agent exits 2 with
// one line naming the key and the value.
func TestAgentConfigErrors(t *testing.T) {
	lab := nstest.New(t)
	ns := lab.Netns("cfg")
	dir := t.TempDir()
	tests := []struct {
		name string
		yaml string
		args []string
		want []string
	}{
		{"missing node-ip", "pod-cidr: 10.1.1.0/24\n", nil, []string{"node-ip"}},
		{"bad pod-cidr", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/33\n", nil, []string{"pod-cidr", "10.1.1.0/33"}},
		{"unknown key", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\ntunel-port: 1\n", nil, []string{"tunel-port"}},
		{"bad underlay", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nunderlay: dpdk\n", nil, []string{"underlay", "dpdk"}},
		{"bad flag value", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\n", []string{"--node-ip", "10.169.72.300"}, []string{"node-ip", "10.169.72.300"}},
		{"endpoint outside pod cidr", "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\nendpoints:\n  - {name: a, ip: 10.1.2.5, netns: /run/netns/x}\n", nil, []string{"endpoints[0].ip", "10.1.2.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"netns", "exec", ns.Name, vxdpBin, "agent", "--config", path, "--socket", filepath.Join(dir, "s.sock")}, tt.args...)
			out, err := exec.Command("ip", args...).CombinedOutput()
			if exitCode(err) != 2 {
				t.Fatalf("exit %d, want 2\n%s", exitCode(err), out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 {
				t.Errorf("want one line on stderr, got %d:\n%s", len(lines), out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("message lacks %q:\n%s", w, out)
				}
			}
		})
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
