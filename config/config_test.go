package config

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// base is a small valid configuration the tests start from.
const base = `
node-name: node1
node-ip: 10.169.72.233
pod-cidr: 10.1.1.0/24
nodes:
  - {name: node2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}
endpoints:
  - {name: busybox, ip: 10.1.1.154, netns: /run/netns/pod1}
`

func parse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func valid(t *testing.T, doc string) *Config {
	t.Helper()
	c := parse(t, doc)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return c
}

// wantKey fails unless err is an *Error about key whose message is one line.
func wantKey(t *testing.T, err error, key string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *Error for key %q", err, err, key)
	}
	if e.Key != key {
		t.Fatalf("error key = %q, want %q; error: %v", e.Key, key, err)
	}
	if strings.ContainsAny(e.Error(), "\r\n") {
		t.Fatalf("error message spans lines: %q", e.Error())
	}
	return e
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

func TestDefault(t *testing.T) {
	c := Default()
	want := &Config{
		NodeName:            c.NodeName, // the host name; checked below
		RoutingMode:         "tunnel",
		TunnelProtocol:      "vxlan",
		Underlay:            "auto",
		TunnelGSO:           "auto",
		TunnelSourceCheck:   true,
		PodQueues:           2,
		UnderlaySockets:     2,
		Nice:                -10,
		BusyPoll:            200 * time.Microsecond,
		UnderlaySourcePorts: 64,
		Socket:              "/run/vxdp/vxdp.sock",
		LogLevel:            "info",
		StateDir:            "/var/lib/vxdp",
		ProcFS:              "/proc",
		PodCIDRMaskSize:     24,
		PodCIDRMaskSize6:    120,
		IPAM:                "cluster-pool",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() = %+v, want %+v", c, want)
	}
	if h, err := os.Hostname(); err == nil && c.NodeName != h {
		t.Errorf("NodeName = %q, want the host name %q", c.NodeName, h)
	}
	// The defaults alone lack node-ip.
	wantKey(t, c.Validate(), "node-ip")
}

func TestEmptyDocument(t *testing.T) {
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		c, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("Parse(%q): %v", doc, err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("Parse(%q) = %+v, want the defaults", doc, c)
		}
		wantKey(t, c.Validate(), "node-ip")
	}
}

func TestKeys(t *testing.T) {
	keys := Keys()
	if len(keys) != len(keyTable) {
		t.Fatalf("Keys() has %d keys, table %d", len(keys), len(keyTable))
	}
	seen := make(map[string]bool)
	d := Default()
	for _, k := range keys {
		if seen[k] {
			t.Errorf("key %q listed twice", k)
		}
		seen[k] = true
		if doc := KeyDoc(k); doc == "" || strings.Contains(doc, "\n") {
			t.Errorf("KeyDoc(%q) = %q, want one non-empty line", k, doc)
		}
		got, err := d.Get(k)
		if err != nil {
			t.Fatalf("Get(%q): %v", k, err)
		}
		if k != "node-name" && got != KeyDefault(k) {
			t.Errorf("Default().Get(%q) = %q, KeyDefault = %q", k, got, KeyDefault(k))
		}
	}
	// The design's keys, and the legacy one.
	for _, k := range []string{"node-name", "node-ip", "device", "pod-cidr", "routing-mode", "tunnel",
		"tunnel-protocol", "tunnel-port", "underlay", "mtu", "ipv4-native-routing-cidr",
		"auto-direct-node-routes", "enable-ipsec", "cluster-pool-ipv4-cidr", "nodes", "endpoints",
		"enable-vtep", "vtep-endpoint", "vtep-cidr", "vtep-mask", "vtep-mac",
		"vxlan-reserved-tolerance", "tunnel-source-check", "socket", "log-level", "state-dir"} {
		if !seen[k] {
			t.Errorf("key %q missing from Keys()", k)
		}
	}
	if KeyDoc("no-such-key") != "" || KeyDefault("no-such-key") != "" {
		t.Error("unknown key has a doc or default")
	}
	if _, err := d.Get("no-such-key"); err == nil {
		t.Error("Get of an unknown key succeeded")
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"value", &Error{Key: "pod-cidr", Value: "10.1.1.0/33", Reason: "bad prefix length"},
			`config: pod-cidr: invalid value "10.1.1.0/33": bad prefix length`},
		{"no value", &Error{Key: "node-ip", Reason: "required"}, `config: node-ip: required`},
		{"list item", &Error{Key: "nodes[1].pod-cidr", Value: "x", Reason: "r"}, `config: nodes[1].pod-cidr: invalid value "x": r`},
		{"document", &Error{Reason: "invalid YAML: line 2: oops"}, `config: invalid YAML: line 2: oops`},
		{"line", &Error{Key: "mtu", Value: "1", Reason: "r", Line: 4}, `config: mtu: invalid value "1": r (line 4)`},
		{"file and line", &Error{Key: "mtu", Value: "1", Reason: "r", File: "a.yaml", Line: 4}, `config: mtu: invalid value "1": r (a.yaml line 4)`},
		{"file", &Error{Key: "mtu", Value: "1", Reason: "r", File: "/d/mtu"}, `config: mtu: invalid value "1": r (/d/mtu)`},
		{"odd key quoted", &Error{Key: "a b\nc", Reason: "unknown key"}, `config: "a b\nc": unknown key`},
		{"value with newline", &Error{Key: "socket", Value: "a\nb", Reason: "r"}, `config: socket: invalid value "a\nb": r`},
		{"reason with newline", &Error{Key: "k", Reason: "one\ntwo"}, `config: k: one; two`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRouteMTU(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		nodeIP string
		in     int
		want   int
	}{
		{"vxlan over IPv4", "tunnel", "10.169.72.233", 1500, 1450},
		{"over IPv6", "tunnel", "2001:db8::1", 1500, 1430},
		{"jumbo", "tunnel", "10.169.72.233", 9000, 8950},
		{"native", "native", "10.169.72.233", 1500, 1500},
		{"native IPv6", "native", "2001:db8::1", 1500, 1500},
		{"never negative", "tunnel", "10.169.72.233", 30, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.RoutingMode = tt.mode
			c.NodeIP = mustAddr(tt.nodeIP)
			if got := c.RouteMTU(tt.in); got != tt.want {
				t.Errorf("RouteMTU(%d) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
	c := Default()
	c.TunnelProtocol = "geneve"
	c.NodeIP = mustAddr("10.169.72.233")
	if got := c.RouteMTU(1500); got != 1450 {
		t.Errorf("geneve RouteMTU(1500) = %d, want 1450", got)
	}
}

func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := valid(t, string(data))
	if c.NodeIP != mustAddr("10.169.72.233") || c.PodCIDR != mustPrefix("10.1.1.0/24") {
		t.Errorf("node = %v %v", c.NodeIP, c.PodCIDR)
	}
	if len(c.Nodes) != 1 || c.Nodes[0] != (Node{Name: "node2", IP: mustAddr("10.169.72.238"), PodCIDR: mustPrefix("10.1.2.0/24")}) {
		t.Errorf("Nodes = %+v", c.Nodes)
	}
	if len(c.Endpoints) != 1 || c.Endpoints[0].Name != "busybox" || c.Endpoints[0].Identity != 1000 {
		t.Errorf("Endpoints = %+v", c.Endpoints)
	}
	if c.TunnelPort != 8472 {
		t.Errorf("TunnelPort = %d, want 8472", c.TunnelPort)
	}
	// What it sets beyond the node's own facts is the default, so that
	// installing it as a node's file changes nothing the documentation
	// calls a default.
	def := Default()
	own := map[string]bool{"node-name": true, "node-ip": true, "device": true, "pod-cidr": true,
		"tunnel-port": true, "cluster-pool-ipv4-cidr": true, "nodes": true, "endpoints": true}
	for _, k := range Keys() {
		got, err := c.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := def.Get(k); !own[k] && got != want {
			t.Errorf("example.yaml sets %s to %q, the default is %q", k, got, want)
		}
	}
	// Every key appears in the example, so that it documents all of them
	// (the legacy key only in prose).
	for _, k := range Keys() {
		if k != "tunnel" && !strings.Contains(string(data), "\n"+k+":") && !strings.Contains(string(data), "\n# "+k+":") {
			t.Errorf("example.yaml does not show key %q", k)
		}
	}

	// Its commented VTEP block is valid too, once enabled.
	enabled := strings.ReplaceAll(string(data), "# vtep-", "vtep-")
	enabled = strings.Replace(enabled, `enable-vtep: "false"`, `enable-vtep: "true"`, 1)
	v := valid(t, enabled)
	if !v.EnableVTEP || len(v.VTEPs) != 1 || v.VTEPs[0].CIDR != mustPrefix("10.2.1.0/24") {
		t.Errorf("VTEPs = %+v", v.VTEPs)
	}
}

// TestGetSetRoundTrip checks that Get prints every key in a form Set reads
// back to the same Config.
func TestGetSetRoundTrip(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	enabled := strings.ReplaceAll(string(data), "# vtep-", "vtep-")
	enabled = strings.Replace(enabled, `enable-vtep: "false"`, `enable-vtep: "true"`, 1)
	for name, doc := range map[string]string{
		"example":      string(data),
		"example+vtep": enabled,
		"legacy":       base + "tunnel: disabled\ntunnel-protocol: geneve\n",
		"ipv6": `
node-ip: 2001:db8::1
pod-cidr: fd00:1::/64
nodes: [{name: n2, ip: "2001:db8::2", pod-cidr: "fd00:2::/64"}]
endpoints: [{name: "true", ip: "fd00:1::10", netns: "a: b", ifname: "e#0", allow-from: "world, 0300"}]
`,
	} {
		t.Run(name, func(t *testing.T) {
			c := valid(t, doc)
			checkRoundTrip(t, c)
		})
	}
}

func checkRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	c2 := Default()
	for _, k := range Keys() {
		v, err := c.Get(k)
		if err != nil {
			t.Fatalf("Get(%q): %v", k, err)
		}
		if err := c2.Set(k, v); err != nil {
			t.Fatalf("Set(%q, Get = %q): %v", k, v, err)
		}
	}
	if err := c2.Validate(); err != nil {
		t.Fatalf("Validate after round trip: %v", err)
	}
	// The Cilium keys a source set aside are not keys of vxdp's: Get has
	// nothing to say about them.
	if !reflect.DeepEqual(c2.Ignored(), []string(nil)) {
		t.Fatalf("Ignored() = %v after a round trip", c2.Ignored())
	}
	c2.ignored = c.Ignored()
	if !reflect.DeepEqual(c, c2) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", c2, c)
	}
}
