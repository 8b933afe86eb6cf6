package config

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The fixture testdata/cilium-config.yaml is the cilium-config ConfigMap
// that Cilium's Helm chart 1.20.0 renders (cilium-1.20.0.tgz of Cilium's
// chart repository, built from cilium/cilium 450c53145dc0), produced with
// the chart engine of helm.sh/helm/v4 v4.3.2 (release "cilium" in
// kube-system, Helm's default capabilities) and these values:
//
//	routingMode: tunnel
//	tunnelProtocol: vxlan
//	ipam.mode: cluster-pool
//	ipam.operator.clusterPoolIPv4PodCIDRList: ["10.1.0.0/16"]
//	ipam.operator.clusterPoolIPv4MaskSize: 24
//	kubeProxyReplacement: "false"
//	vtep: {enabled: true, endpoint: 10.169.72.236, cidr: 10.1.5.0/24,
//	       mask: 255.255.255.0, mac: 82:36:4c:98:2e:56}
//
// The template's comments and blank lines were dropped; keys and values are
// as rendered. It holds 161 keys, 10 of which vxdp implements.

// fixtureIgnored is how many of the fixture's keys vxdp does not use.
const fixtureIgnored = 147

// loadConfigMap reads the data of the ConfigMap manifest at path.
func loadConfigMap(t *testing.T, path string) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind     string
		Metadata struct{ Name string }
		Data     map[string]string
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != "cilium-config" || len(cm.Data) == 0 {
		t.Fatalf("%s: not the cilium-config ConfigMap: kind %q name %q, %d keys", path, cm.Kind, cm.Metadata.Name, len(cm.Data))
	}
	return cm.Data
}

// TestCiliumConfigMap: the ConfigMap Cilium's chart renders, mounted the
// way the kubelet mounts it, configures vxdp: the keys vxdp implements take
// their values, the rest are ignored and listed once; an unknown key and
// bad values are all reported together.
func TestCiliumConfigMap(t *testing.T) {
	data := loadConfigMap(t, filepath.Join("testdata", "cilium-config.yaml"))
	var mine, theirs []string
	for k := range data {
		if _, ok := keyIndex[k]; ok {
			mine = append(mine, k)
		} else {
			theirs = append(theirs, k)
		}
	}
	slices.Sort(mine)
	slices.Sort(theirs)
	wantMine := []string{"auto-direct-node-routes", "cluster-pool-ipv4-cidr", "cluster-pool-ipv4-mask-size", "enable-ipv4", "enable-ipv6",
		"enable-vtep", "ipam", "procfs", "routing-mode", "tunnel-protocol", "vtep-cidr", "vtep-endpoint", "vtep-mac", "vtep-mask"}
	if !slices.Equal(mine, wantMine) {
		t.Fatalf("the fixture's vxdp keys are %v, want %v", mine, wantMine)
	}

	// The node's own keys, which a ConfigMap shared by all nodes cannot
	// hold, come from the file.
	c := parse(t, "node-ip: 10.169.72.233\npod-cidr: 10.1.1.0/24\n")
	if err := c.ApplyDir(configMapDir(t, data)); err != nil {
		t.Fatalf("ApplyDir: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	mac, _ := net.ParseMAC("82:36:4c:98:2e:56")
	wantVTEPs := []VTEP{{Endpoint: mustAddr("10.169.72.236"), CIDR: mustPrefix("10.1.5.0/24"), MAC: mac}}
	if c.RoutingMode != RoutingTunnel || c.TunnelProtocol != ProtocolVXLAN || c.TunnelPort != DefaultVXLANPort ||
		c.ClusterCIDR != mustPrefix("10.1.0.0/16") || c.PodCIDRMaskSize != 24 || c.AutoDirectNodeRoutes ||
		!c.EnableVTEP || !reflect.DeepEqual(c.VTEPs, wantVTEPs) {
		t.Errorf("after the ConfigMap: %+v", c)
	}

	ignored := c.Ignored()
	if len(ignored) != fixtureIgnored || !slices.Equal(ignored, theirs) {
		t.Errorf("Ignored() = %d keys %v, want the fixture's %d other keys %v", len(ignored), ignored, fixtureIgnored, theirs)
	}
	for _, k := range []string{"bpf-lb-map-max", "debug", "enable-policy", "identity-allocation-mode",
		"kube-proxy-replacement", "operator-api-serve-addr", "write-cni-conf-when-ready"} {
		if !slices.Contains(ignored, k) {
			t.Errorf("Ignored() lacks %q", k)
		}
	}
	msg := IgnoredMessage(ignored)
	if want := "ignoring 147 Cilium keys vxdp does not use: agent-not-ready-taint-key, bpf-distributed-lru, "; !strings.HasPrefix(msg, want) ||
		strings.ContainsAny(msg, "\r\n") {
		t.Errorf("IgnoredMessage = %.120q..., want it to start %q", msg, want)
	}

	// An unknown key and two bad values: one error names all three.
	bad := make(map[string]string, len(data)+1)
	for k, v := range data {
		bad[k] = v
	}
	bad["tunnel-protocl"] = "geneve"
	bad["tunnel-protocol"] = "gre"
	bad["cluster-pool-ipv4-mask-size"] = "33"
	dir := configMapDir(t, bad)
	before := *c
	err := c.ApplyDir(dir)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("ApplyDir = %v (%T), want Errors", err, err)
	}
	// The directory is read in name order.
	want := []struct{ key, value string }{
		{"cluster-pool-ipv4-mask-size", "33"},
		{"tunnel-protocl", ""},
		{"tunnel-protocol", "gre"},
	}
	if len(errs) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		e := errs[i]
		if e.Key != w.key || e.Value != w.value || e.Reason == "" || e.File != filepath.Join(dir, w.key) {
			t.Errorf("problem %d = %+v, want key %q value %q in %s", i, e, w.key, w.value, filepath.Join(dir, w.key))
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "config: tunnel-protocl: unknown key (") {
		t.Errorf("message:\n%s", err)
	}
	var first *Error
	if !errors.As(err, &first) || first != errs[0] {
		t.Errorf("errors.As(*Error) = %v, want the first problem", first)
	}
	if !reflect.DeepEqual(*c, before) {
		t.Error("a refused directory changed the config")
	}
}

// TestCiliumConfigMapAsFile: the same ConfigMap's data as a YAML file
// (--config) is read the same way, with lines in the errors.
func TestCiliumConfigMapAsFile(t *testing.T) {
	data := loadConfigMap(t, filepath.Join("testdata", "cilium-config.yaml"))
	doc, err := yaml.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, string(doc))
	if got := c.Ignored(); len(got) != fixtureIgnored {
		t.Errorf("Ignored() has %d keys, want %d", len(got), fixtureIgnored)
	}
	if !c.EnableVTEP || c.ClusterCIDR != mustPrefix("10.1.0.0/16") {
		t.Errorf("after the file: %+v", c)
	}

	bad := "node-ip: 10.169.72.233\n" + string(doc) + "tunnel-protocl: geneve\nmtu: jumbo\nunderlay: dpdk\n"
	_, err = Parse([]byte(bad))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("Parse = %v, want three problems", err)
	}
	n := strings.Count(bad, "\n")
	for i, w := range []struct {
		key  string
		line int
	}{{"tunnel-protocl", n - 2}, {"mtu", n - 1}, {"underlay", n}} {
		if errs[i].Key != w.key || errs[i].Line != w.line {
			t.Errorf("problem %d = %+v, want key %q on line %d", i, errs[i], w.key, w.line)
		}
	}
}

func TestCiliumKeysList(t *testing.T) {
	var keys []string
	for _, line := range strings.Split(ciliumKeysText, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	if len(keys) < 400 || len(keys) != len(ciliumKeys) || !slices.IsSorted(keys) {
		t.Errorf("cilium_keys.txt: %d keys (%d distinct), sorted %v", len(keys), len(ciliumKeys), slices.IsSorted(keys))
	}
	for _, k := range []string{"routing-mode", "tunnel", "enable-vtep", "bpf-lb-map-max", "debug", "identity-allocation-mode"} {
		if !isCiliumKey(k) {
			t.Errorf("%q is not in the list", k)
		}
	}
	// vxdp's own keys, and the agent's flags that are not configuration.
	for _, k := range []string{"node-ip", "pod-cidr", "underlay", "nodes", "endpoints", "socket", "log-level",
		"help", "version", "config", "config-dir", "", "# Sources:"} {
		if isCiliumKey(k) {
			t.Errorf("%q is in the list", k)
		}
	}
}

// TestIgnoredKeys: a Cilium key vxdp does not use is set aside, whatever
// its value; any other unknown key stays an error.
func TestIgnoredKeys(t *testing.T) {
	c := parse(t, base+"debug: not-even-a-bool\nbpf-lb-map-max: 65536\nmtu: 1500\n")
	if got := c.Ignored(); !slices.Equal(got, []string{"bpf-lb-map-max", "debug"}) {
		t.Errorf("Ignored() = %v", got)
	}
	if c.MTU != 1500 {
		t.Errorf("MTU = %d", c.MTU)
	}
	// Ignored returns a copy.
	c.Ignored()[0] = "x"
	if c.Ignored()[0] != "bpf-lb-map-max" {
		t.Error("Ignored() shares its slice")
	}

	// A directory adds its own, each key once.
	dir := configMapDir(t, map[string]string{"debug": "true", "cluster-name": "default", "mtu": "9000"})
	if err := c.ApplyDir(dir); err != nil {
		t.Fatal(err)
	}
	if got := c.Ignored(); !slices.Equal(got, []string{"bpf-lb-map-max", "cluster-name", "debug"}) {
		t.Errorf("Ignored() after ApplyDir = %v", got)
	}

	if got := parse(t, base).Ignored(); got != nil {
		t.Errorf("Ignored() = %v without Cilium keys, want nil", got)
	}
	_, err := Parse([]byte(base + "clustr-name: default\n"))
	wantKey(t, err, "clustr-name")
	// A Cilium key is still not something to Set: nothing would read it.
	wantKey(t, Default().Set("debug", "true"), "debug")
}

func TestIgnoredMessage(t *testing.T) {
	for _, tt := range []struct {
		keys []string
		want string
	}{
		{[]string{"debug"}, "ignoring 1 Cilium key vxdp does not use: debug"},
		{[]string{"bpf-lb-map-max", "debug"}, "ignoring 2 Cilium keys vxdp does not use: bpf-lb-map-max, debug"},
	} {
		if got := IgnoredMessage(tt.keys); got != tt.want {
			t.Errorf("IgnoredMessage(%v) = %q, want %q", tt.keys, got, tt.want)
		}
	}
}

// TestAllErrors: every bad key of a document is reported, in order, each
// with its line; one problem alone is an *Error, not Errors.
func TestAllErrors(t *testing.T) {
	doc := "node-ip: 10.169.72.233\n" + // 1
		"mtu: 100\n" + // 2
		"foo: bar\n" + // 3
		"pod-cidr: 10.1.1.0/33\n" + // 4
		"mtu: 1500\n" + // 5
		"nodes: [{name: a, ip: x}]\n" + // 6
		"tunnel: disabled\n" + // 7
		"routing-mode: tunnel\n" // 8
	_, err := Parse([]byte(doc))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse = %v (%T), want Errors", err, err)
	}
	want := []struct {
		key  string
		line int
	}{{"mtu", 2}, {"foo", 3}, {"pod-cidr", 4}, {"mtu", 5}, {"nodes[0].ip", 6}, {"tunnel", 7}}
	if len(errs) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if errs[i].Key != w.key || errs[i].Line != w.line {
			t.Errorf("problem %d = %v, want key %q line %d", i, errs[i], w.key, w.line)
		}
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(errs) {
		t.Fatalf("%d lines for %d problems:\n%v", len(lines), len(errs), err)
	}
	for i, l := range lines {
		if l != errs[i].Error() {
			t.Errorf("line %d = %q, want %q", i, l, errs[i].Error())
		}
	}
	var first *Error
	if !errors.As(err, &first) || first != errs[0] {
		t.Errorf("errors.As(*Error) = %v", first)
	}
	if !errors.Is(err, errs[3]) {
		t.Error("errors.Is does not see the problems")
	}

	_, err = Parse([]byte("mtu: 100\nfoo: 1\n"))
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Errorf("two problems: %v", err)
	}
	_, err = Parse([]byte("mtu: 100\nunderlay: udp\n"))
	if _, ok := err.(*Error); !ok {
		t.Errorf("one problem is %T, want *Error", err)
	}
	if joinErrors(nil) != nil {
		t.Error("joinErrors(nil) is not nil")
	}
}
