package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestYAMLTypesAndStrings: a value may be any YAML scalar or the same text
// as a string, since a ConfigMap can only hold strings.
func TestYAMLTypesAndStrings(t *testing.T) {
	tests := []struct {
		name  string
		docs  []string
		check func(c *Config) bool
	}{
		{"int", []string{"mtu: 1500", `mtu: "1500"`, "mtu: '1500'", "mtu: !!str 1500"},
			func(c *Config) bool { return c.MTU == 1500 }},
		{"bool", []string{"enable-vtep: true", `enable-vtep: "true"`, "enable-vtep: True", `enable-vtep: "TRUE"`},
			func(c *Config) bool { return c.EnableVTEP }},
		{"false", []string{"tunnel-source-check: false", `tunnel-source-check: "false"`, "tunnel-source-check: FALSE"},
			func(c *Config) bool { return !c.TunnelSourceCheck }},
		{"port", []string{"tunnel-port: 4789", `tunnel-port: "4789"`},
			func(c *Config) bool { return c.TunnelPort == 4789 }},
		{"hex", []string{"vxlan-reserved-tolerance: 0x00ff0000", `vxlan-reserved-tolerance: "0x00ff0000"`, "vxlan-reserved-tolerance: 16711680"},
			func(c *Config) bool { return c.VXLANReservedMask == 0x00ff0000 }},
		{"address", []string{"node-ip: 10.169.72.233", `node-ip: "10.169.72.233"`},
			func(c *Config) bool { return c.NodeIP == mustAddr("10.169.72.233") }},
		{"null is the default", []string{"mtu:", "mtu: ~", "mtu: null", `mtu: ""`, "tunnel-source-check:", "log-level: ~"},
			func(c *Config) bool { return reflect.DeepEqual(c, Default()) }},
		{"identity", []string{
			"endpoints: [{name: a, identity: 1000}]",
			`endpoints: [{name: a, identity: "1000"}]`,
		}, func(c *Config) bool { return c.Endpoints[0].Identity == 1000 }},
		{"allow-from", []string{
			"endpoints: [{name: a, allow-from: [1000, world]}]",
			`endpoints: [{name: a, allow-from: "1000,world"}]`,
			`endpoints: [{name: a, allow-from: "1000, World"}]`,
			"endpoints: [{name: a, allow-from: 1000 world}]",
			"endpoints:\n  - name: a\n    allow-from:\n      - 1000\n      - world\n",
		}, func(c *Config) bool { return reflect.DeepEqual(c.Endpoints[0].AllowFrom, []string{"1000", "world"}) }},
		{"single allow-from", []string{"endpoints: [{name: a, allow-from: 1000}]", "endpoints: [{name: a, allow-from: [1000]}]"},
			func(c *Config) bool { return reflect.DeepEqual(c.Endpoints[0].AllowFrom, []string{"1000"}) }},
		{"word lists", []string{
			`vtep-endpoint: "10.169.72.236    10.169.72.238"`,
			"vtep-endpoint: 10.169.72.236 10.169.72.238",
			"vtep-endpoint: [10.169.72.236, 10.169.72.238]",
			"vtep-endpoint:\n  - 10.169.72.236\n  - 10.169.72.238\n",
			"vtep-endpoint: |\n  10.169.72.236\n  10.169.72.238\n",
		}, func(c *Config) bool {
			return reflect.DeepEqual(c.raw.vtepEndpoints, []netip.Addr{mustAddr("10.169.72.236"), mustAddr("10.169.72.238")})
		}},
		{"nodes as a string", []string{
			"nodes: [{name: n2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}]",
			`nodes: "[{name: n2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}]"`,
			"nodes: |\n  - name: n2\n    ip: 10.169.72.238\n    pod-cidr: 10.1.2.0/24\n",
		}, func(c *Config) bool {
			return reflect.DeepEqual(c.Nodes, []Node{{Name: "n2", IP: mustAddr("10.169.72.238"), PodCIDR: mustPrefix("10.1.2.0/24")}})
		}},
		{"anchors", []string{"pod-cidr: &p 10.1.1.0/24\ncluster-pool-ipv4-cidr: *p"},
			func(c *Config) bool { return c.ClusterCIDR == mustPrefix("10.1.1.0/24") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, doc := range tt.docs {
				c, err := Parse([]byte(doc))
				if err != nil {
					t.Fatalf("Parse(%q): %v", doc, err)
				}
				if !tt.check(c) {
					t.Errorf("Parse(%q) = %+v", doc, c)
				}
			}
		})
	}
}

// TestYAMLErrors: each bad document is an *Error naming the key (empty for
// a problem with the document itself) and, where known, the line.
func TestYAMLErrors(t *testing.T) {
	tests := []struct {
		name     string
		doc      string
		wantKey  string
		wantLine int
	}{
		{"unknown key", "node-ip: 10.169.72.233\nfoo: bar\n", "foo", 2},
		{"misspelt key", "node_ip: 10.169.72.233\n", "node_ip", 1},
		{"unknown node key", "nodes:\n  - name: a\n    address: 10.169.72.238\n", "nodes[0].address", 3},
		{"unknown endpoint key", "endpoints:\n  - {name: a}\n  - {name: b, mac: x}\n", "endpoints[1].mac", 3},
		{"duplicate key", "mtu: 1500\nmtu: 9000\n", "mtu", 2},
		{"duplicate item key", "nodes: [{name: a, name: b}]\n", "nodes[0].name", 1},
		{"bad value line", "node-ip: 10.169.72.233\n\npod-cidr: 10.1.1.0/33\n", "pod-cidr", 3},
		{"yaml bool is not ours", "enable-vtep: yes\n", "enable-vtep", 1},
		{"list for a scalar", "mtu: [1500]\n", "mtu", 1},
		{"map for a scalar", "node-ip: {a: b}\n", "node-ip", 1},
		{"map for a list", "nodes: {name: a}\n", "nodes", 1},
		{"nested list in a word list", "vtep-mac: [[a]]\n", "vtep-mac", 1},
		{"bad word in a list", "vtep-mac:\n  - 82:36:4c:98:2e:56\n  - nope\n", "vtep-mac", 2},
		{"not a mapping", "- node-ip\n", "", 1},
		{"scalar document", "hello\n", "", 1},
		{"two documents", "mtu: 1500\n---\nmtu: 9000\n", "", 2},
		{"syntax", "mtu: [1500\n", "", 0},
		{"tabs", "mtu:\t1500\n\tfoo: 1\n", "", 0},
		{"complex key", "? [a]\n: b\n", "", 1},
		{"merge key", "<<: {mtu: 1500}\n", "<<", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			e := wantKey(t, err, tt.wantKey)
			if e.Line != tt.wantLine {
				t.Errorf("Line = %d, want %d (%v)", e.Line, tt.wantLine, err)
			}
		})
	}
}

func TestLegacyTunnel(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		wantKey   string
		wantMode  string
		wantProto string
	}{
		{"disabled is native", "tunnel: disabled", "", "native", "vxlan"},
		{"vxlan", "tunnel: vxlan", "", "tunnel", "vxlan"},
		{"geneve", "tunnel: geneve", "", "tunnel", "geneve"},
		{"agrees with routing-mode", "tunnel: disabled\nrouting-mode: native", "", "native", "vxlan"},
		{"agrees, either order", "routing-mode: tunnel\ntunnel: geneve\ntunnel-protocol: geneve", "", "tunnel", "geneve"},
		{"native with a protocol", "tunnel: disabled\ntunnel-protocol: geneve", "", "native", "geneve"},
		{"disabled vs tunnel", "tunnel: disabled\nrouting-mode: tunnel", "tunnel", "", ""},
		{"vxlan vs native", "routing-mode: native\ntunnel: vxlan", "tunnel", "", ""},
		{"vxlan vs geneve", "tunnel: vxlan\ntunnel-protocol: geneve", "tunnel", "", ""},
		{"empty legacy key", "tunnel: \"\"\nrouting-mode: native", "", "native", "vxlan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc))
			if tt.wantKey != "" {
				wantKey(t, err, tt.wantKey)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.RoutingMode != tt.wantMode || c.TunnelProtocol != tt.wantProto {
				t.Errorf("mode %q protocol %q, want %q %q", c.RoutingMode, c.TunnelProtocol, tt.wantMode, tt.wantProto)
			}
		})
	}

	// Across sources the later one wins instead: a flag overriding the
	// file is not a contradiction.
	c := parse(t, "tunnel: disabled\n")
	if err := c.Set("routing-mode", "tunnel"); err != nil {
		t.Fatal(err)
	}
	if c.RoutingMode != "tunnel" {
		t.Errorf("RoutingMode = %q after the override", c.RoutingMode)
	}
	if v, _ := c.Get("tunnel"); v != "" {
		t.Errorf("Get(tunnel) = %q after an override, want empty", v)
	}
}

func TestTunnelPort(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want uint16
	}{
		{"vxlan default", "", 8472},
		{"geneve default", "tunnel-protocol: geneve", 6081},
		{"legacy geneve", "tunnel: geneve", 6081},
		{"explicit zero", "tunnel-port: 0\ntunnel-protocol: geneve", 6081},
		{"override", "tunnel-port: 4789", 4789},
		{"override with geneve", "tunnel-protocol: geneve\ntunnel-port: 6082", 6082},
		{"native keeps a port", "routing-mode: native", 8472},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid(t, base+tt.doc+"\n")
			if c.TunnelPort != tt.want {
				t.Errorf("TunnelPort = %d, want %d", c.TunnelPort, tt.want)
			}
		})
	}
	// The port is resolved by Validate, not by Parse: a later flag may
	// still change the protocol.
	c := parse(t, base)
	if c.TunnelPort != 0 {
		t.Errorf("Parse resolved the port early: %d", c.TunnelPort)
	}
	if err := c.Set("tunnel-protocol", "geneve"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.TunnelPort != 6081 {
		t.Errorf("TunnelPort = %d, err %v; want 6081", c.TunnelPort, err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vxdp.yaml")
	if err := os.WriteFile(path, []byte(base+"underlay: udp\nlog-level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Underlay != "udp" || c.NodeIP != mustAddr("10.169.72.233") {
		t.Errorf("Load = %+v", c)
	}

	// Flags override the file's keys.
	for k, v := range map[string]string{"underlay": "afxdp", "pod-cidr": "10.1.3.0/24", "log-level": "debug"} {
		if err := c.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if c.Underlay != "afxdp" || c.PodCIDR != mustPrefix("10.1.3.0/24") || c.LogLevel != "debug" {
		t.Errorf("after Set: %+v", c)
	}
	// The endpoint now lies outside the new pod-cidr.
	wantKey(t, c.Validate(), "endpoints[0].ip")

	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	wantKey(t, err, "")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("node-ip: 10.169.72.233\nmtu: 100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	e := wantKey(t, err, "mtu")
	if e.File != bad || e.Line != 2 || e.Value != "100" {
		t.Errorf("error = %+v", e)
	}
}
