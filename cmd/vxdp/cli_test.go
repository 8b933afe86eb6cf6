package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A configuration with several problems is refused with exit code 2 and
// one line on stderr per problem, each naming the file and the line.
func TestAgentConfigProblems(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		yaml string
		want []string // one per line, in order
	}{
		{"one", "node-ip: 10.169.72.233\nunderlay: dpdk\n", []string{`underlay: invalid value "dpdk"`}},
		{"three", "node-ip: 10.169.72.233\ntunel-port: 1\nmtu: jumbo\ndebug: \"true\"\nrouting-mod: tunnel\n",
			[]string{"tunel-port: unknown key", `mtu: invalid value "jumbo"`, "routing-mod: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"agent", "--config", path, "--socket", filepath.Join(dir, "s.sock")}, &stdout, &stderr)
			if code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s", code, exitUsage, stderr.String())
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines on stderr, want %d:\n%s", len(lines), len(tt.want), stderr.String())
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], "vxdp: config: "+w) || !strings.Contains(lines[i], path+" line ") {
					t.Errorf("line %d = %q, want %q in %s", i, lines[i], w, path)
				}
			}
		})
	}
}
