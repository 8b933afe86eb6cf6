package config

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; it returns a Config or an error: an *Error
// whose message is one line, or Errors, two or more of them, one line each. A Config that also passes Validate satisfies the
// invariants the dataplane relies on, and survives a Get/Set round trip.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(base))
	f.Add([]byte(base + guideVTEP))
	f.Add([]byte(guideNode + guideVTEP))
	f.Add([]byte(guideNode6 + strings.ReplaceAll(guideVTEP, "10.169.72.", "fd69:72::")))
	f.Add([]byte(base + "tunnel: disabled\nauto-direct-node-routes: true\nmtu: \"9000\"\n"))
	f.Add([]byte("node-ip: 2001:db8::1\npod-cidr: fd00:1::/64\nendpoints: [{name: a, ip: 'fd00:1::9', netns: /n, allow-from: 'world 300'}]\n"))
	f.Add([]byte("nodes: &n [{name: a}]\nendpoints: *n\n"))
	f.Add([]byte("vtep-cidr: [10.1.1.0, 10.1.2.0/25]\nvtep-mask: 255.255.255.0\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("debug: true\nbpf-lb-map-max: 65536\nfoo: 1\nmtu: 1\nmtu: 2\n"))
	f.Add([]byte(base + "debug: true\ncluster-name: default\n"))
	f.Add([]byte(""))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			checkError(t, err)
			if c != nil {
				t.Fatal("Parse returned a Config and an error")
			}
			return
		}
		if err := c.Validate(); err != nil {
			checkError(t, err)
			return
		}
		checkInvariants(t, c)
		checkRoundTrip(t, c)
	})
}

func checkError(t *testing.T, err error) {
	t.Helper()
	switch e := err.(type) {
	case *Error:
		checkMessage(t, e)
	case Errors:
		if len(e) < 2 {
			t.Fatalf("Errors with %d problems", len(e))
		}
		for _, p := range e {
			checkMessage(t, p)
		}
		if n := strings.Count(e.Error(), "\n") + 1; n != len(e) {
			t.Fatalf("%d lines for %d problems: %q", n, len(e), e.Error())
		}
		var first *Error
		if !errors.As(err, &first) || first != e[0] {
			t.Fatal("errors.As does not find the first problem")
		}
	default:
		t.Fatalf("error %v is %T, not *Error or Errors", err, err)
	}
}

func checkMessage(t *testing.T, e *Error) {
	t.Helper()
	if e == nil {
		t.Fatal("nil *Error")
	}
	if msg := e.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "config: ") {
		t.Fatalf("bad message %q", msg)
	}
}

func checkInvariants(t *testing.T, c *Config) {
	t.Helper()
	if !c.NodeIP.IsValid() || c.NodeIP.IsLoopback() || c.NodeIP.IsMulticast() || c.NodeIP.IsUnspecified() {
		t.Fatalf("NodeIP %v", c.NodeIP)
	}
	if !c.PodCIDR.IsValid() && !c.PodCIDR6.IsValid() {
		t.Fatal("no pod CIDR")
	}
	for _, p := range []netip.Prefix{c.PodCIDR, c.PodCIDR6} {
		if p.IsValid() && (p != p.Masked() || (p.Addr().Is4() && p.Bits() > 30) || p.Bits() > 126) {
			t.Fatalf("pod CIDR %v", p)
		}
	}
	if c.PodCIDR.IsValid() && !c.PodCIDR.Addr().Is4() || c.PodCIDR6.IsValid() && !c.PodCIDR6.Addr().Is6() {
		t.Fatalf("pod CIDRs %v %v", c.PodCIDR, c.PodCIDR6)
	}
	if c.EnableIPv4 != c.PodCIDR.IsValid() || c.EnableIPv6 != c.PodCIDR6.IsValid() {
		t.Fatalf("families %v %v for %v %v", c.EnableIPv4, c.EnableIPv6, c.PodCIDR, c.PodCIDR6)
	}
	if c.TunnelPort == 0 || !isOneOf(c.RoutingMode, RoutingTunnel, RoutingNative) ||
		!isOneOf(c.TunnelProtocol, ProtocolVXLAN, ProtocolGeneve) ||
		!isOneOf(c.Underlay, UnderlayUDP, UnderlayAFXDP, UnderlayAuto) ||
		!isOneOf(c.LogLevel, LogDebug, LogInfo, LogWarn, LogError) {
		t.Fatalf("enums: %+v", c)
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		t.Fatalf("MTU %d", c.MTU)
	}
	if c.AutoDirectNodeRoutes && c.RoutingMode != RoutingNative {
		t.Fatal("auto-direct-node-routes in tunnel mode")
	}
	if c.VXLANReservedMask&vxlanFlagI != 0 {
		t.Fatal("I flag tolerated")
	}
	for _, n := range c.Nodes {
		if n.Name == "" || !n.IP.IsValid() || n.IP == c.NodeIP || !n.PodCIDR.IsValid() && !n.PodCIDR6.IsValid() ||
			n.PodCIDR.IsValid() && c.PodCIDR.IsValid() && n.PodCIDR.Overlaps(c.PodCIDR) ||
			n.PodCIDR6.IsValid() && c.PodCIDR6.IsValid() && n.PodCIDR6.Overlaps(c.PodCIDR6) {
			t.Fatalf("node %+v", n)
		}
		if c.ClusterCIDR.IsValid() && n.PodCIDR.IsValid() && !covers(c.ClusterCIDR, n.PodCIDR) {
			t.Fatalf("node %+v outside %v", n, c.ClusterCIDR)
		}
	}
	for _, ep := range c.Endpoints {
		bad := func(a netip.Addr, p netip.Prefix) bool {
			return a.IsValid() && (!p.Contains(a) || a == p.Addr() || a == p.Addr().Next())
		}
		if !ep.IP.IsValid() && !ep.IP6.IsValid() || bad(ep.IP, c.PodCIDR) || bad(ep.IP6, c.PodCIDR6) || ep.Netns == "" || ep.Ifname == "" ||
			(ep.Identity != 0 && (ep.Identity < MinWorkloadIdentity || ep.Identity > MaxIdentity)) {
			t.Fatalf("endpoint %+v", ep)
		}
		if checkEndpointName(ep.Name) != nil {
			t.Fatalf("endpoint name %q", ep.Name)
		}
	}
	if c.EnableVTEP {
		if len(c.VTEPs) == 0 || c.EnableIPsec {
			t.Fatalf("VTEPs %+v ipsec %v", c.VTEPs, c.EnableIPsec)
		}
		for _, v := range c.VTEPs {
			if v.Endpoint.Is4() != c.NodeIP.Is4() || !v.CIDR.Addr().Is4() || c.PodCIDR.IsValid() && v.CIDR.Overlaps(c.PodCIDR) || len(v.MAC) != 6 || v.MAC[0]&1 != 0 {
				t.Fatalf("VTEP %+v", v)
			}
		}
	}
}
