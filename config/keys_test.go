package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSet gives every key good and bad values in string form, as flags and
// ConfigMap files do. A bad value must be an *Error naming the key (or
// the list item) and leave the Config unchanged.
func TestSet(t *testing.T) {
	type check func(c *Config) bool
	tests := []struct {
		name    string
		key     string
		value   string
		wantKey string // "" = success
		check   check
	}{
		{"node-name", "node-name", "node7", "", func(c *Config) bool { return c.NodeName == "node7" }},
		{"node-name empty is the host name", "node-name", "", "", func(c *Config) bool { return c.NodeName == hostname() }},
		{"node-name white space", "node-name", "node 7", "node-name", nil},

		{"node-ip v4", "node-ip", "10.169.72.233", "", func(c *Config) bool { return c.NodeIP == mustAddr("10.169.72.233") }},
		{"node-ip v6", "node-ip", "2001:db8::1", "", func(c *Config) bool { return c.NodeIP == mustAddr("2001:db8::1") }},
		{"node-ip padded", "node-ip", "  10.169.72.233\n", "", func(c *Config) bool { return c.NodeIP == mustAddr("10.169.72.233") }},
		{"node-ip cidr", "node-ip", "10.169.72.233/24", "node-ip", nil},
		{"node-ip garbage", "node-ip", "node1", "node-ip", nil},
		{"node-ip unspecified", "node-ip", "0.0.0.0", "node-ip", nil},
		{"node-ip v6 unspecified", "node-ip", "::", "node-ip", nil},
		{"node-ip multicast", "node-ip", "224.0.0.1", "node-ip", nil},
		{"node-ip loopback", "node-ip", "127.0.0.1", "node-ip", nil},
		{"node-ip v6 loopback", "node-ip", "::1", "node-ip", nil},
		{"node-ip broadcast", "node-ip", "255.255.255.255", "node-ip", nil},
		{"node-ip mapped", "node-ip", "::ffff:10.169.72.233", "node-ip", nil},
		{"node-ip zone", "node-ip", "fe80::1%eth0", "node-ip", nil},

		{"device", "device", "eth0", "", func(c *Config) bool { return c.Device == "eth0" }},
		{"device empty", "device", "", "", func(c *Config) bool { return c.Device == "" }},
		{"device too long", "device", "abcdefghijklmnop", "device", nil},
		{"device slash", "device", "a/b", "device", nil},
		{"device space", "device", "a b", "device", nil},
		{"device dot", "device", ".", "device", nil},

		{"pod-cidr", "pod-cidr", "10.1.1.0/24", "", func(c *Config) bool { return c.PodCIDR == mustPrefix("10.1.1.0/24") }},
		{"pod-cidr host bits", "pod-cidr", "10.1.1.7/24", "pod-cidr", nil},
		{"pod-cidr v6", "pod-cidr", "fd00:1::/64", "", func(c *Config) bool { return c.PodCIDR6 == mustPrefix("fd00:1::/64") && !c.PodCIDR.IsValid() }},
		{"pod-cidr dual", "pod-cidr", "10.1.1.0/24, fd00:1::/64", "", func(c *Config) bool {
			return c.PodCIDR == mustPrefix("10.1.1.0/24") && c.PodCIDR6 == mustPrefix("fd00:1::/64")
		}},
		{"pod-cidr two v4", "pod-cidr", "10.1.1.0/24,10.1.2.0/24", "pod-cidr", nil},
		{"pod-cidr empty member", "pod-cidr", "10.1.1.0/24,", "pod-cidr", nil},
		{"enable-ipv6", "enable-ipv6", "true", "", func(c *Config) bool { return c.raw.enableIPv6 == "true" }},
		{"enable-ipv6 bad", "enable-ipv6", "maybe", "enable-ipv6", nil},
		{"underlay-protocol", "underlay-protocol", "ipv6", "", func(c *Config) bool { return c.UnderlayProtocol == "ipv6" }},
		{"underlay-protocol bad", "underlay-protocol", "ipx", "underlay-protocol", nil},
		{"cluster-pool-ipv6-cidr v4", "cluster-pool-ipv6-cidr", "10.0.0.0/8", "cluster-pool-ipv6-cidr", nil},
		{"pod-cidr /30", "pod-cidr", "10.1.1.0/30", "", nil},
		{"pod-cidr bad length", "pod-cidr", "10.1.1.0/33", "pod-cidr", nil},
		{"pod-cidr too small", "pod-cidr", "10.1.1.0/31", "pod-cidr", nil},
		{"pod-cidr v6 too small", "pod-cidr", "fd00::/127", "pod-cidr", nil},
		{"pod-cidr bare", "pod-cidr", "10.1.1.0", "pod-cidr", nil},
		{"pod-cidr leading zero", "pod-cidr", "10.1.1.0/024", "pod-cidr", nil},
		{"pod-cidr sign", "pod-cidr", "10.1.1.0/+24", "pod-cidr", nil},
		{"pod-cidr garbage", "pod-cidr", "x/24", "pod-cidr", nil},

		{"routing-mode native", "routing-mode", "native", "", func(c *Config) bool { return c.RoutingMode == "native" }},
		{"routing-mode case", "routing-mode", "NATIVE", "", func(c *Config) bool { return c.RoutingMode == "native" }},
		{"routing-mode empty", "routing-mode", "", "", func(c *Config) bool { return c.RoutingMode == "tunnel" }},
		{"routing-mode bad", "routing-mode", "bgp", "routing-mode", nil},

		{"tunnel disabled", "tunnel", "disabled", "", func(c *Config) bool { return c.RoutingMode == "native" && c.TunnelProtocol == "vxlan" }},
		{"tunnel geneve", "tunnel", "geneve", "", func(c *Config) bool { return c.RoutingMode == "tunnel" && c.TunnelProtocol == "geneve" }},
		{"tunnel vxlan", "tunnel", "vxlan", "", func(c *Config) bool { return c.RoutingMode == "tunnel" && c.TunnelProtocol == "vxlan" }},
		{"tunnel bad", "tunnel", "gre", "tunnel", nil},

		{"tunnel-protocol geneve", "tunnel-protocol", "geneve", "", func(c *Config) bool { return c.TunnelProtocol == "geneve" }},
		{"tunnel-protocol bad", "tunnel-protocol", "gre", "tunnel-protocol", nil},

		{"tunnel-port", "tunnel-port", "4789", "", func(c *Config) bool { return c.TunnelPort == 4789 }},
		{"tunnel-port max", "tunnel-port", "65535", "", func(c *Config) bool { return c.TunnelPort == 65535 }},
		{"tunnel-port zero", "tunnel-port", "0", "", func(c *Config) bool { return c.TunnelPort == 0 }},
		{"tunnel-port too big", "tunnel-port", "65536", "tunnel-port", nil},
		{"tunnel-port negative", "tunnel-port", "-1", "tunnel-port", nil},
		{"tunnel-port garbage", "tunnel-port", "vxlan", "tunnel-port", nil},

		{"underlay udp", "underlay", "udp", "", func(c *Config) bool { return c.Underlay == "udp" }},
		{"underlay afxdp", "underlay", "afxdp", "", func(c *Config) bool { return c.Underlay == "afxdp" }},
		{"underlay auto", "underlay", "auto", "", func(c *Config) bool { return c.Underlay == "auto" }},
		{"tunnel-gso off", "tunnel-gso", "off", "", func(c *Config) bool { return c.TunnelGSO == "off" }},
		{"tunnel-gso auto", "tunnel-gso", "auto", "", func(c *Config) bool { return c.TunnelGSO == "auto" }},
		{"tunnel-gso bad", "tunnel-gso", "on", "tunnel-gso", nil},
		{"underlay bad", "underlay", "dpdk", "underlay", nil},

		{"mtu", "mtu", "1500", "", func(c *Config) bool { return c.MTU == 1500 }},
		{"mtu min", "mtu", "1280", "", func(c *Config) bool { return c.MTU == 1280 }},
		{"mtu max", "mtu", "65535", "", func(c *Config) bool { return c.MTU == 65535 }},
		{"mtu zero", "mtu", "0", "", func(c *Config) bool { return c.MTU == 0 }},
		{"mtu too small", "mtu", "1279", "mtu", nil},
		{"mtu 576", "mtu", "576", "mtu", nil},
		{"mtu too big", "mtu", "65536", "mtu", nil},
		{"mtu negative", "mtu", "-1", "mtu", nil},
		{"mtu garbage", "mtu", "jumbo", "mtu", nil},

		{"native-routing-cidr", "ipv4-native-routing-cidr", "10.0.0.0/8", "", func(c *Config) bool { return c.NativeRoutingCIDR == mustPrefix("10.0.0.0/8") }},
		{"native-routing-cidr empty", "ipv4-native-routing-cidr", "", "", func(c *Config) bool { return !c.NativeRoutingCIDR.IsValid() }},
		{"native-routing-cidr v6", "ipv4-native-routing-cidr", "fd00::/8", "ipv4-native-routing-cidr", nil},
		{"native-routing-cidr bare", "ipv4-native-routing-cidr", "10.0.0.0", "ipv4-native-routing-cidr", nil},

		{"auto-direct-node-routes", "auto-direct-node-routes", "true", "", func(c *Config) bool { return c.AutoDirectNodeRoutes }},
		{"auto-direct-node-routes case", "auto-direct-node-routes", "TRUE", "", func(c *Config) bool { return c.AutoDirectNodeRoutes }},
		{"auto-direct-node-routes yes", "auto-direct-node-routes", "yes", "auto-direct-node-routes", nil},
		{"auto-direct-node-routes 1", "auto-direct-node-routes", "1", "auto-direct-node-routes", nil},

		{"enable-ipsec", "enable-ipsec", "True", "", func(c *Config) bool { return c.EnableIPsec }},
		{"enable-ipsec bad", "enable-ipsec", "on", "enable-ipsec", nil},

		{"cluster-pool", "cluster-pool-ipv4-cidr", "10.0.0.0/8", "", func(c *Config) bool { return c.ClusterCIDR == mustPrefix("10.0.0.0/8") }},
		{"cluster-pool v6", "cluster-pool-ipv4-cidr", "fd00::/8", "cluster-pool-ipv4-cidr", nil},
		{"cluster-pool bad", "cluster-pool-ipv4-cidr", "10.0.0.0/40", "cluster-pool-ipv4-cidr", nil},

		{"nodes", "nodes", "[{name: node2, ip: 10.169.72.238, pod-cidr: 10.1.2.0/24}]", "", func(c *Config) bool {
			return reflect.DeepEqual(c.Nodes, []Node{{Name: "node2", IP: mustAddr("10.169.72.238"), PodCIDR: mustPrefix("10.1.2.0/24")}})
		}},
		{"nodes block", "nodes", "- name: node2\n  ip: 10.169.72.238\n  pod-cidr: 10.1.2.0/24\n", "", func(c *Config) bool { return len(c.Nodes) == 1 }},
		{"nodes empty", "nodes", "", "", func(c *Config) bool { return c.Nodes == nil }},
		{"nodes empty list", "nodes", "[]", "", func(c *Config) bool { return c.Nodes == nil }},
		{"nodes unknown field", "nodes", "[{name: a, ip: 10.169.72.238, port: 1}]", "nodes[0].port", nil},
		{"nodes bad ip", "nodes", "[{name: a, ip: 10.169.72.238}, {name: b, ip: x}]", "nodes[1].ip", nil},
		{"nodes bad pod-cidr", "nodes", "[{name: a, pod-cidr: 10.1.2.0/33}]", "nodes[0].pod-cidr", nil},
		{"nodes bad name", "nodes", "[{name: 'a b'}]", "nodes[0].name", nil},
		{"nodes not a list", "nodes", "{name: a}", "nodes", nil},
		{"nodes item not a map", "nodes", "[a]", "nodes[0]", nil},
		{"nodes list value", "nodes", "[{name: [a]}]", "nodes[0].name", nil},
		{"nodes bad yaml", "nodes", "[{name: a", "nodes", nil},

		{"endpoints", "endpoints", "[{name: busybox, ip: 10.1.1.154, netns: /run/netns/pod1, identity: 1000, allow-from: 'world,1000'}]", "", func(c *Config) bool {
			return reflect.DeepEqual(c.Endpoints, []Endpoint{{Name: "busybox", IP: mustAddr("10.1.1.154"), Netns: "/run/netns/pod1",
				Ifname: "eth0", Identity: 1000, AllowFrom: []string{"world", "1000"}}})
		}},
		{"endpoints ifname", "endpoints", "[{name: a, ifname: net1}]", "", func(c *Config) bool { return c.Endpoints[0].Ifname == "net1" }},
		{"endpoints unknown field", "endpoints", "[{name: a, labels: x}]", "endpoints[0].labels", nil},
		{"endpoints bad name", "endpoints", "[{name: a/b}]", "endpoints[0].name", nil},
		{"endpoints bad ip", "endpoints", "[{name: a, ip: 10.1.1.300}]", "endpoints[0].ip", nil},
		{"endpoints reserved identity", "endpoints", "[{name: a, identity: 2}]", "endpoints[0].identity", nil},
		{"endpoints identity too big", "endpoints", "[{name: a, identity: 16777216}]", "endpoints[0].identity", nil},
		{"endpoints identity name", "endpoints", "[{name: a, identity: world}]", "endpoints[0].identity", nil},
		{"endpoints bad ifname", "endpoints", "[{name: a, ifname: a-very-long-name0}]", "endpoints[0].ifname", nil},
		{"endpoints bad allow-from", "endpoints", "[{name: a, allow-from: [world, nobody]}]", "endpoints[0].allow-from", nil},
		{"endpoints allow-from unknown id", "endpoints", "[{name: a, allow-from: 0}]", "endpoints[0].allow-from", nil},
		{"endpoints allow-from too big", "endpoints", "[{name: a, allow-from: 16777216}]", "endpoints[0].allow-from", nil},

		{"enable-vtep", "enable-vtep", "true", "", func(c *Config) bool { return c.EnableVTEP }},
		{"enable-vtep bad", "enable-vtep", "enabled", "enable-vtep", nil},

		{"vtep-endpoint", "vtep-endpoint", "10.169.72.236    10.169.72.238", "", func(c *Config) bool { return len(c.raw.vtepEndpoints) == 2 }},
		{"vtep-endpoint v6", "vtep-endpoint", "10.169.72.236 2001:db8::1", "vtep-endpoint", nil},
		{"vtep-endpoint garbage", "vtep-endpoint", "vm1", "vtep-endpoint", nil},
		{"vtep-endpoint multicast", "vtep-endpoint", "239.1.1.1", "vtep-endpoint", nil},

		{"vtep-cidr", "vtep-cidr", "10.1.1.0/24   10.1.2.0/24", "", func(c *Config) bool { return len(c.raw.vtepCIDRs) == 2 }},
		{"vtep-cidr bare", "vtep-cidr", "10.1.1.0", "", func(c *Config) bool { return c.raw.vtepCIDRs[0].bits == -1 }},
		{"vtep-cidr bad length", "vtep-cidr", "10.1.1.0/24 10.1.2.0/33", "vtep-cidr", nil},
		{"vtep-cidr v6", "vtep-cidr", "fd00::/64", "vtep-cidr", nil},
		{"vtep-cidr garbage", "vtep-cidr", "lb", "vtep-cidr", nil},

		{"vtep-mask", "vtep-mask", "255.255.255.0", "", func(c *Config) bool { return c.raw.vtepMaskGiven && c.raw.vtepMaskBits == 24 }},
		{"vtep-mask /32", "vtep-mask", "255.255.255.255", "", func(c *Config) bool { return c.raw.vtepMaskBits == 32 }},
		{"vtep-mask non-contiguous", "vtep-mask", "255.0.255.0", "vtep-mask", nil},
		{"vtep-mask length", "vtep-mask", "24", "vtep-mask", nil},
		{"vtep-mask v6", "vtep-mask", "ffff:ffff::", "vtep-mask", nil},

		{"vtep-mac", "vtep-mac", "82:36:4c:98:2e:56 82:36:4c:98:2e:58", "", func(c *Config) bool {
			return len(c.raw.vtepMACs) == 2 && c.raw.vtepMACs[1].String() == "82:36:4c:98:2e:58"
		}},
		{"vtep-mac dashes", "vtep-mac", "82-36-4c-98-2e-56", "", func(c *Config) bool { return c.raw.vtepMACs[0].String() == "82:36:4c:98:2e:56" }},
		{"vtep-mac multicast", "vtep-mac", "01:00:5e:00:00:01", "vtep-mac", nil},
		{"vtep-mac broadcast", "vtep-mac", "ff:ff:ff:ff:ff:ff", "vtep-mac", nil},
		{"vtep-mac zero", "vtep-mac", "00:00:00:00:00:00", "vtep-mac", nil},
		{"vtep-mac short", "vtep-mac", "82:36:4c:98:2e", "vtep-mac", nil},
		{"vtep-mac eui64", "vtep-mac", "82:36:4c:98:2e:56:00:01", "vtep-mac", nil},

		{"reserved hex", "vxlan-reserved-tolerance", "0x00ffff00", "", func(c *Config) bool { return c.VXLANReservedMask == 0x00ffff00 }},
		{"reserved upper hex", "vxlan-reserved-tolerance", "0X80000000", "", func(c *Config) bool { return c.VXLANReservedMask == 0x80000000 }},
		{"reserved decimal", "vxlan-reserved-tolerance", "16", "", func(c *Config) bool { return c.VXLANReservedMask == 16 }},
		{"reserved zero", "vxlan-reserved-tolerance", "0", "", func(c *Config) bool { return c.VXLANReservedMask == 0 }},
		{"reserved I flag", "vxlan-reserved-tolerance", "0x08000000", "vxlan-reserved-tolerance", nil},
		{"reserved too big", "vxlan-reserved-tolerance", "0x100000000", "vxlan-reserved-tolerance", nil},
		{"reserved garbage", "vxlan-reserved-tolerance", "0xzz", "vxlan-reserved-tolerance", nil},
		{"reserved negative", "vxlan-reserved-tolerance", "-1", "vxlan-reserved-tolerance", nil},

		{"tunnel-source-check", "tunnel-source-check", "false", "", func(c *Config) bool { return !c.TunnelSourceCheck }},
		{"tunnel-source-check empty", "tunnel-source-check", "", "", func(c *Config) bool { return c.TunnelSourceCheck }},
		{"tunnel-source-check bad", "tunnel-source-check", "off", "tunnel-source-check", nil},
		{"pod-queues", "pod-queues", "4", "", func(c *Config) bool { return c.PodQueues == 4 }},
		{"pod-queues zero", "pod-queues", "0", "pod-queues", nil},
		{"pod-queues too many", "pod-queues", "17", "pod-queues", nil},
		{"busy-poll", "busy-poll", "50us", "", func(c *Config) bool { return c.BusyPoll == 50*time.Microsecond }},
		{"busy-poll micro sign", "busy-poll", "1.5µs", "", func(c *Config) bool { return c.BusyPoll == 1500*time.Nanosecond }},
		{"busy-poll zero", "busy-poll", "0", "", func(c *Config) bool { return c.BusyPoll == 0 }},
		{"busy-poll zero unit", "busy-poll", "0s", "", func(c *Config) bool { return c.BusyPoll == 0 }},
		{"busy-poll no unit", "busy-poll", "50", "busy-poll", nil},
		{"busy-poll negative", "busy-poll", "-1us", "busy-poll", nil},
		{"busy-poll too long", "busy-poll", "101ms", "busy-poll", nil},
		{"nice", "nice", "-10", "", func(c *Config) bool { return c.Nice == -10 }},
		{"nice lowest", "nice", "19", "", func(c *Config) bool { return c.Nice == 19 }},
		{"nice too low", "nice", "-21", "nice", nil},
		{"nice too high", "nice", "20", "nice", nil},
		{"nice word", "nice", "high", "nice", nil},
		{"underlay-sockets", "underlay-sockets", "2", "", func(c *Config) bool { return c.UnderlaySockets == 2 }},
		{"underlay-sockets bad", "underlay-sockets", "two", "underlay-sockets", nil},

		{"socket", "socket", "/tmp/vxdp.sock", "", func(c *Config) bool { return c.Socket == "/tmp/vxdp.sock" }},
		{"socket empty", "socket", "", "", func(c *Config) bool { return c.Socket == DefaultSocket }},
		{"socket too long", "socket", "/" + strings.Repeat("s", 107), "socket", nil},

		{"log-level", "log-level", "debug", "", func(c *Config) bool { return c.LogLevel == "debug" }},
		{"log-level case", "log-level", "WARN", "", func(c *Config) bool { return c.LogLevel == "warn" }},
		{"log-level bad", "log-level", "trace", "log-level", nil},

		{"state-dir", "state-dir", "/tmp/vxdp", "", func(c *Config) bool { return c.StateDir == "/tmp/vxdp" }},
		{"state-dir empty", "state-dir", "", "", func(c *Config) bool { return c.StateDir == DefaultStateDir }},
		{"state-dir NUL", "state-dir", "/tmp/a\x00b", "state-dir", nil},

		{"unknown key", "tunnel-mode", "vxlan", "tunnel-mode", nil},
		{"Cilium key not supported", "enable-bpf-masquerade", "true", "enable-bpf-masquerade", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := c.Set(tt.key, tt.value)
			if tt.wantKey != "" {
				wantKey(t, err, tt.wantKey)
				if !reflect.DeepEqual(c, Default()) {
					t.Errorf("a rejected Set changed the config: %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatalf("Set(%q, %q): %v", tt.key, tt.value, err)
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("Set(%q, %q) gave %+v", tt.key, tt.value, c)
			}
		})
	}
}

// TestSetErrorText pins the message of a typical bad value.
func TestSetErrorText(t *testing.T) {
	err := Default().Set("pod-cidr", "10.1.1.0/33")
	const want = `config: pod-cidr: invalid value "10.1.1.0/33": bad prefix length`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	err = Default().Set("vtep-mac", "82:36:4c:98:2e:56 01:00:5e:00:00:01")
	e := wantKey(t, err, "vtep-mac")
	if e.Value != "01:00:5e:00:00:01" {
		t.Errorf("Value = %q, want the bad word only", e.Value)
	}
}

// A number out of range is refused with the key's own range, not the
// parser's.
func TestRangeMessages(t *testing.T) {
	for _, tt := range []struct{ key, value, want string }{
		{"pod-queues", "0", "from 1 to 16"},
		{"pod-queues", "17", "from 1 to 16"},
		{"underlay-sockets", "99", "from 1 to 16"},
		{"underlay-source-ports", "0", "from 1 to 1024"},
		{"busy-poll", "1s", "from 0 to 100ms"},
		{"underlay-source-ports", "2000", "from 1 to 1024"},
	} {
		err := Default().Set(tt.key, tt.value)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %s: %v, want a message saying %q", tt.key, tt.value, err, tt.want)
		}
	}
	c := Default()
	if err := c.Set("underlay-source-ports", "1024"); err != nil || c.UnderlaySourcePorts != 1024 {
		t.Errorf("underlay-source-ports 1024: %v, %d", err, c.UnderlaySourcePorts)
	}
}
