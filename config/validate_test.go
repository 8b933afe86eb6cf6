package config

import (
	"strings"
	"testing"
)

// TestValidate starts from base, changes one thing, and expects Validate
// to name the key at fault (or to accept the change).
func TestValidate(t *testing.T) {
	set := func(kv ...string) func(*Config) error {
		return func(c *Config) error {
			for i := 0; i+1 < len(kv); i += 2 {
				if err := c.Set(kv[i], kv[i+1]); err != nil {
					return err
				}
			}
			return nil
		}
	}
	edit := func(f func(*Config)) func(*Config) error {
		return func(c *Config) error { f(c); return nil }
	}
	node2 := "{name: node2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}"
	tests := []struct {
		name    string
		change  func(*Config) error
		wantKey string // "" = valid
	}{
		{"base", set(), ""},

		{"node-name missing", edit(func(c *Config) { c.NodeName = "" }), "node-name"},
		{"node-name bad", edit(func(c *Config) { c.NodeName = "a\tb" }), "node-name"},
		{"node-ip missing", set("node-ip", ""), "node-ip"},
		{"node-ip loopback in code", edit(func(c *Config) { c.NodeIP = mustAddr("127.0.0.1") }), "node-ip"},
		{"device bad in code", edit(func(c *Config) { c.Device = "a:b" }), "device"},
		{"pod-cidr missing", set("pod-cidr", ""), "pod-cidr"},
		{"pod-cidr too small in code", edit(func(c *Config) { c.PodCIDR = mustPrefix("10.1.1.0/31") }), "pod-cidr"},
		{"pod-cidr unmasked in code is masked", edit(func(c *Config) { c.PodCIDR = mustPrefix("10.1.1.9/24") }), ""},
		{"pod-cidr holds node-ip", set("node-ip", "10.1.1.200"), "pod-cidr"},

		{"routing-mode in code", edit(func(c *Config) { c.RoutingMode = "Tunnel" }), "routing-mode"},
		{"tunnel-protocol in code", edit(func(c *Config) { c.TunnelProtocol = "gre" }), "tunnel-protocol"},
		{"underlay in code", edit(func(c *Config) { c.Underlay = "" }), "underlay"},
		{"mtu in code", edit(func(c *Config) { c.MTU = 100 }), "mtu"},
		{"mtu ok", set("mtu", "1500"), ""},
		{"mtu too small for IPv6 pods", set("pod-cidr", "fd00:1::/64", "nodes", "", "endpoints", "", "mtu", "1320"), "mtu"},
		{"mtu enough for IPv6 pods", set("pod-cidr", "fd00:1::/64", "nodes", "", "endpoints", "", "mtu", "1330"), ""},
		{"mtu IPv6 pods native", set("pod-cidr", "fd00:1::/64", "nodes", "", "endpoints", "", "mtu", "1280", "routing-mode", "native"), ""},

		{"auto-direct-node-routes in tunnel mode", set("auto-direct-node-routes", "true"), "auto-direct-node-routes"},
		{"auto-direct-node-routes in native mode", set("auto-direct-node-routes", "true", "routing-mode", "native"), ""},
		{"auto-direct-node-routes with legacy disabled", set("auto-direct-node-routes", "true", "tunnel", "disabled"), ""},
		{"auto-direct-node-routes IPv6 pods over IPv4", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "routing-mode", "native", "auto-direct-node-routes", "true"), "auto-direct-node-routes"},
		{"native IPv6 pods over IPv4 routed by the network", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "routing-mode", "native"), ""},
		{"auto-direct-node-routes dual-stack over IPv6", set("node-ip", "fd69:72::233", "nodes", "", "pod-cidr", "10.1.1.0/24,fd00:1:1::/64",
			"routing-mode", "native", "auto-direct-node-routes", "true", "ipv6-native-routing-cidr", "fd00:1::/32"), ""},
		{"native-routing-cidr ignored in tunnel mode", set("ipv4-native-routing-cidr", "10.0.0.0/8"), ""},
		{"native-routing-cidr in native mode", set("ipv4-native-routing-cidr", "10.0.0.0/8", "routing-mode", "native"), ""},
		{"native-routing-cidr v6 in code", edit(func(c *Config) { c.NativeRoutingCIDR = mustPrefix("fd00::/8") }), "ipv4-native-routing-cidr"},
		{"enable-ipsec alone", set("enable-ipsec", "true"), ""},

		{"cluster-pool ok", set("cluster-pool-ipv4-cidr", "10.1.0.0/16"), ""},
		{"cluster-pool misses pod-cidr", set("cluster-pool-ipv4-cidr", "10.2.0.0/16"), "pod-cidr"},
		{"cluster-pool smaller than pod-cidr", set("cluster-pool-ipv4-cidr", "10.1.1.0/25"), "pod-cidr"},
		{"cluster-pool misses a node", set("cluster-pool-ipv4-cidr", "10.1.1.0/24"), "nodes[0].pod-cidr"},
		{"cluster-pool v6 in code", edit(func(c *Config) { c.ClusterCIDR = mustPrefix("fd00::/8") }), "cluster-pool-ipv4-cidr"},

		{"no nodes", set("nodes", ""), ""},
		{"node name missing", set("nodes", "[{ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}]"), "nodes[0].name"},
		{"node name duplicate", set("nodes", "["+node2+", {name: node2, ip: 10.169.72.239, pod-cidr: 10.1.3.0/24}]"), "nodes[1].name"},
		{"node name is ours", set("nodes", "[{name: node1, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}]"), "nodes[0].name"},
		{"node ip missing", set("nodes", "[{name: node2, pod-cidr: 10.1.2.0/24}]"), "nodes[0].ip"},
		{"node ip duplicate", set("nodes", "["+node2+", {name: node3, ip: 10.169.72.238, pod-cidr: 10.1.3.0/24}]"), "nodes[1].ip"},
		{"node ip is ours", set("nodes", "[{name: node2, ip: 10.169.72.233, pod-cidr: 10.1.2.0/24}]"), "nodes[0].ip"},
		{"node ip other family", set("nodes", "[{name: node2, ip: '2001:db8::2', pod-cidr: 10.1.2.0/24}]"), "nodes[0].ip"},
		{"node ip multicast in code", edit(func(c *Config) { c.Nodes[0].IP = mustAddr("224.0.0.5") }), "nodes[0].ip"},
		{"node pod-cidr missing", set("nodes", "[{name: node2, ip: 10.169.72.238}]"), "nodes[0].pod-cidr"},
		{"node pod-cidr overlaps ours", set("nodes", "[{name: node2, ip: 10.169.72.238, pod-cidr: 10.1.0.0/16}]"), "nodes[0].pod-cidr"},
		{"node pod-cidr equals ours", set("nodes", "[{name: node2, ip: 10.169.72.238, pod-cidr: 10.1.1.0/24}]"), "nodes[0].pod-cidr"},
		{"node pod-cidrs overlap", set("nodes", "["+node2+", {name: node3, ip: 10.169.72.239, pod-cidr: 10.1.2.128/25}]"), "nodes[1].pod-cidr"},
		{"node pod-cidr holds node-ip", set("nodes", "[{name: node2, ip: 10.169.72.238, pod-cidr: 10.169.72.0/24}]"), "nodes[0].pod-cidr"},
		{"node ip in our pod-cidr", set("nodes", "[{name: node2, ip: 10.1.1.77, pod-cidr: 10.1.2.0/24}]"), "nodes[0].ip"},
		{"node ip in a node's pod-cidr", set("nodes", "["+node2+", {name: node3, ip: 10.1.2.9, pod-cidr: 10.1.3.0/24}]"), "nodes[1].ip"},
		{"dual-stack", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "nodes", "[{name: node2, ip: 10.169.72.238, pod-cidr: '10.1.2.0/24,fd00:1:2::/64'}]",
			"endpoints", "[{name: a, ip: '10.1.1.10,fd00:1:1::10', netns: /n}, {name: b, ip: 'fd00:1:1::11', netns: /n}]"), ""},
		{"dual-stack node over own IPv6", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "nodes", "[{name: node2, ip: 10.169.72.238, pod-cidr: '10.1.2.0/24,fd00:1::/32'}]"), "nodes[0].pod-cidr"},
		{"dual-stack nodes overlap in IPv6", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64",
			"nodes", "[{name: n2, ip: 10.169.72.238, pod-cidr: 'fd00:1:2::/64'}, {name: n3, ip: 10.169.72.239, pod-cidr: 'fd00:1:2::/80'}]"), "nodes[1].pod-cidr"},
		{"endpoint IPv6 without IPv6 pod-cidr", set("endpoints", "[{name: a, ip: 'fd00:1:1::10', netns: /n}]"), "endpoints[0].ip"},
		{"endpoint IPv6 host address", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "endpoints", "[{name: a, ip: 'fd00:1:1::1', netns: /n}]"), "endpoints[0].ip"},
		{"endpoints share an IPv6 address", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64",
			"endpoints", "[{name: a, ip: 'fd00:1:1::10', netns: /n}, {name: b, ip: '10.1.1.11,fd00:1:1::10', netns: /n}]"), "endpoints[1].ip"},
		{"enable-ipv6 without IPv6 pod-cidr", set("enable-ipv6", "true"), "enable-ipv6"},
		{"enable-ipv6 false with IPv6 pod-cidr", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "enable-ipv6", "false"), "enable-ipv6"},
		{"enable-ipv4 false with IPv4 pod-cidr", set("enable-ipv4", "false"), "enable-ipv4"},
		{"enable-ipv4 true as given", set("enable-ipv4", "true"), ""},
		{"underlay-protocol differs", set("underlay-protocol", "ipv6"), "underlay-protocol"},
		{"underlay-protocol ipv6", set("node-ip", "2001:db8::1", "underlay-protocol", "ipv6", "nodes", ""), ""},
		{"cluster-pool-ipv6-cidr outside", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "cluster-pool-ipv6-cidr", "fd00:2::/32"), "pod-cidr"},
		{"cluster-pool-ipv6-cidr node outside", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "cluster-pool-ipv6-cidr", "fd00:1::/32",
			"nodes", "[{name: node2, ip: 10.169.72.238, pod-cidr: '10.1.2.0/24,fd00:9::/64'}]"), "nodes[0].pod-cidr"},
		{"IPv6 underlay", set("node-ip", "2001:db8::1", "nodes", "[{name: node2, ip: '2001:db8::2', pod-cidr: 10.1.2.0/24}]"), ""},
		{"host-ipv4 elsewhere frees the first address", set("host-ipv4", "10.1.1.254", "endpoints", "[{name: a, ip: 10.1.1.1, netns: /n}]"), ""},
		{"endpoint on host-ipv4", set("host-ipv4", "10.1.1.254", "endpoints", "[{name: a, ip: 10.1.1.254, netns: /n}]"), "endpoints[0].ip"},
		{"host-ipv4 outside pod-cidr", set("host-ipv4", "10.1.2.1"), "host-ipv4"},
		{"host-ipv4 network address", set("host-ipv4", "10.1.1.0"), "host-ipv4"},
		{"host-ipv4 broadcast", set("host-ipv4", "10.1.1.255"), "host-ipv4"},
		{"host-ipv4 of IPv6", set("host-ipv4", "fd00:1:1::5"), "host-ipv4"},
		{"host-ipv6 without IPv6 pod-cidr", set("host-ipv6", "fd00:1:1::5"), "host-ipv6"},
		{"host-ipv6", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "host-ipv6", "fd00:1:1::ffff", "endpoints", "[{name: a, ip: 'fd00:1:1::1', netns: /n}]"), ""},
		{"host-ipv6 network address", set("pod-cidr", "10.1.1.0/24,fd00:1:1::/64", "host-ipv6", "fd00:1:1::"), "host-ipv6"},

		{"no endpoints", set("endpoints", ""), ""},
		{"endpoint name missing", set("endpoints", "[{ip: 10.1.1.154, netns: /n}]"), "endpoints[0].name"},
		{"endpoint name duplicate", set("endpoints", "[{name: a, ip: 10.1.1.154, netns: /n}, {name: a, ip: 10.1.1.155, netns: /n}]"), "endpoints[1].name"},
		{"endpoint name dotdot in code", edit(func(c *Config) { c.Endpoints[0].Name = ".." }), "endpoints[0].name"},
		{"endpoint name too long in code", edit(func(c *Config) { c.Endpoints[0].Name = strings.Repeat("a", 64) }), "endpoints[0].name"},
		{"endpoint name 63", set("endpoints", "[{name: "+strings.Repeat("a", 63)+", ip: 10.1.1.154, netns: /n}]"), ""},
		{"endpoint ip missing", set("endpoints", "[{name: a, netns: /n}]"), "endpoints[0].ip"},
		{"endpoint ip duplicate", set("endpoints", "[{name: a, ip: 10.1.1.154, netns: /n}, {name: b, ip: 10.1.1.154, netns: /n}]"), "endpoints[1].ip"},
		{"endpoint ip outside", set("endpoints", "[{name: a, ip: 10.1.2.154, netns: /n}]"), "endpoints[0].ip"},
		{"endpoint ip network", set("endpoints", "[{name: a, ip: 10.1.1.0, netns: /n}]"), "endpoints[0].ip"},
		{"endpoint ip host device", set("endpoints", "[{name: a, ip: 10.1.1.1, netns: /n}]"), "endpoints[0].ip"},
		{"endpoint ip second", set("endpoints", "[{name: a, ip: 10.1.1.2, netns: /n}]"), ""},
		{"endpoint ip broadcast", set("endpoints", "[{name: a, ip: 10.1.1.255, netns: /n}]"), "endpoints[0].ip"},
		{"endpoint ip last usable", set("endpoints", "[{name: a, ip: 10.1.1.254, netns: /n}]"), ""},
		{"endpoint IPv6 last is usable", set("pod-cidr", "fd00:1::/120", "nodes", "",
			"endpoints", "[{name: a, ip: 'fd00:1::ff', netns: /n}]"), ""},
		{"endpoint IPv6 host device", set("pod-cidr", "fd00:1::/120", "nodes", "",
			"endpoints", "[{name: a, ip: 'fd00:1::1', netns: /n}]"), "endpoints[0].ip"},
		{"endpoint netns missing", set("endpoints", "[{name: a, ip: 10.1.1.154}]"), "endpoints[0].netns"},
		{"endpoint ifname empty in code is eth0", edit(func(c *Config) { c.Endpoints[0].Ifname = "" }), ""},
		{"endpoint ifname bad in code", edit(func(c *Config) { c.Endpoints[0].Ifname = "a b" }), "endpoints[0].ifname"},
		{"endpoint identity ok", set("endpoints", "[{name: a, ip: 10.1.1.154, netns: /n, identity: 256}]"), ""},
		{"endpoint identity max", set("endpoints", "[{name: a, ip: 10.1.1.154, netns: /n, identity: 16777215}]"), ""},
		{"endpoint identity reserved in code", edit(func(c *Config) { c.Endpoints[0].Identity = 255 }), "endpoints[0].identity"},
		{"endpoint identity too big in code", edit(func(c *Config) { c.Endpoints[0].Identity = 1 << 24 }), "endpoints[0].identity"},
		{"endpoint allow-from bad in code", edit(func(c *Config) { c.Endpoints[0].AllowFrom = []string{"world", "x"} }), "endpoints[0].allow-from"},

		{"reserved mask in code", edit(func(c *Config) { c.VXLANReservedMask = 0xffffffff }), "vxlan-reserved-tolerance"},
		{"socket empty in code", edit(func(c *Config) { c.Socket = "" }), "socket"},
		{"log-level in code", edit(func(c *Config) { c.LogLevel = "verbose" }), "log-level"},
		{"state-dir empty in code", edit(func(c *Config) { c.StateDir = "" }), "state-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parse(t, base)
			if err := tt.change(c); err != nil {
				t.Fatalf("change: %v", err)
			}
			err := c.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			wantKey(t, err, tt.wantKey)
		})
	}
}

// TestValidateNormalizes checks what Validate fills in for a Config built
// in code.
func TestValidateNormalizes(t *testing.T) {
	c := Default()
	c.NodeIP = mustAddr("10.169.72.233")
	c.PodCIDR = mustPrefix("10.1.1.77/24")
	c.Nodes = []Node{{Name: "node2", IP: mustAddr("10.169.72.238"), PodCIDR: mustPrefix("10.1.2.3/24")}}
	c.Endpoints = []Endpoint{{Name: "a", IP: mustAddr("10.1.1.154"), Netns: "/n"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.PodCIDR != mustPrefix("10.1.1.0/24") || c.Nodes[0].PodCIDR != mustPrefix("10.1.2.0/24") {
		t.Errorf("prefixes not masked: %v %v", c.PodCIDR, c.Nodes[0].PodCIDR)
	}
	if c.Endpoints[0].Ifname != "eth0" || c.TunnelPort != 8472 {
		t.Errorf("defaults not filled in: %+v port %d", c.Endpoints[0], c.TunnelPort)
	}
}
