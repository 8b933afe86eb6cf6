package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
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

// install-cni copies the plugin and writes a conflist naming the socket;
// running it again replaces both, and a plugin that cannot be read is an
// error that leaves nothing half written.
func TestInstallCNI(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "vxdp-cni")
	if err := os.WriteFile(plugin, []byte("plugin v1"), 0o700); err != nil {
		t.Fatal(err)
	}
	bin, conf := filepath.Join(dir, "host/opt/cni/bin"), filepath.Join(dir, "host/etc/cni/net.d")
	args := []string{"install-cni", "--plugin", plugin, "--bin-dir", bin, "--conf-dir", conf, "--socket", "/run/vxdp/vxdp.sock"}
	for _, content := range []string{"plugin v1", "plugin v2"} {
		if err := os.WriteFile(plugin, []byte(content), 0o700); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		got, err := os.ReadFile(filepath.Join(bin, "vxdp-cni"))
		if err != nil || string(got) != content {
			t.Fatalf("installed plugin %q, %v; want %q", got, err, content)
		}
		if fi, _ := os.Stat(filepath.Join(bin, "vxdp-cni")); fi.Mode().Perm() != 0o755 {
			t.Errorf("plugin mode %v", fi.Mode())
		}
	}
	b, err := os.ReadFile(filepath.Join(conf, "10-vxdp.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type, Socket, Identity string
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &cl); err != nil || cl.Name != "vxdp" || len(cl.Plugins) != 1 ||
		cl.Plugins[0].Type != "vxdp-cni" || cl.Plugins[0].Socket != "/run/vxdp/vxdp.sock" || cl.Plugins[0].Identity != "256" {
		t.Fatalf("conflist %v:\n%s", err, b)
	}
	// The packaged conflist is the same file.
	if pkg, err := os.ReadFile("../../packaging/cni/10-vxdp.conflist"); err != nil || !jsonEqual(t, pkg, b) {
		t.Errorf("packaging/cni/10-vxdp.conflist differs from what install-cni writes: %v\n%s", err, pkg)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"install-cni", "--plugin", filepath.Join(dir, "missing"), "--bin-dir", bin, "--conf-dir", conf}, &stdout, &stderr); code == 0 {
		t.Fatal("a missing plugin installed")
	}
	ents, _ := os.ReadDir(bin)
	if len(ents) != 1 {
		t.Errorf("bin dir after a failed install: %v", ents)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// The key list in `vxdp agent --help` gives each key's default where it
// has one, in the form the key takes.
func TestKeyHelpDefaults(t *testing.T) {
	help := keyHelp()
	for key, want := range map[string]string{
		"busy-poll":  "(default 200µs)",
		"nice":       "(default -10)",
		"pod-queues": "(default 2)",
		"log-level":  "(default info)",
	} {
		var line string
		for _, l := range strings.Split(help, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == key {
				line = l
			}
		}
		if !strings.HasSuffix(line, want) {
			t.Errorf("%s: %q, want it to end in %q", key, line, want)
		}
	}
	// A key whose text already says its default does not say it twice.
	for _, l := range strings.Split(help, "\n") {
		if strings.Count(l, "(default") > 1 {
			t.Errorf("default given twice: %q", l)
		}
	}
}
