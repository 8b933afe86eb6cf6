package agent

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/internal/nstest"
)

// routeLab is a node namespace with an underlay (eth0, 192.0.2.1/24, its
// peer at .2) and a stand-in for vxdp_host (h0, 10.1.1.1/24), and the
// installer for that device.
func routeLab(t *testing.T) (*nstest.Netns, *hostRoutes) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	lab := nstest.New(t)
	node, peer := lab.Netns("node"), lab.Netns("peer")
	lab.Veth(node, "eth0", "192.0.2.1/24", peer, "eth0", "192.0.2.2/24", 1500)
	node.IP(t, "link", "add", "h0", "type", "veth", "peer", "name", "h1")
	node.IP(t, "addr", "add", "10.1.1.1/24", "dev", "h0")
	node.IP(t, "link", "set", "h0", "up")
	node.IP(t, "link", "set", "h1", "up")
	h := &hostRoutes{src: netip.MustParseAddr("10.1.1.1"), log: zap.NewNop()}
	node.MustDo(t, func() error {
		l, err := netlink.LinkByName("h0")
		if err == nil {
			h.link = l.Attrs().Index
		}
		return err
	})
	return node, h
}

// route is the node's main-table route for dst, as `ip route` prints it,
// or "".
func route(t *testing.T, ns *nstest.Netns, dst string) string {
	t.Helper()
	return strings.TrimSpace(ns.IP(t, "route", "show", "exact", dst))
}

func devRoute(p string, mtu int) dataplane.HostRoute {
	return dataplane.HostRoute{Prefix: netip.MustParsePrefix(p), MTU: mtu}
}

// vxdp refuses a prefix the main table routes for someone else, whatever
// the metric, naming that route, and changes nothing of the list.
func TestHostRoutesRefuseForeign(t *testing.T) {
	ns, h := routeLab(t)
	ns.IP(t, "route", "add", "10.99.0.0/24", "via", "192.0.2.2")
	ns.IP(t, "route", "add", "10.98.0.0/24", "dev", "eth0", "metric", "100", "proto", "static")
	ns.IP(t, "route", "add", "blackhole", "10.97.0.0/24")
	before := ns.IP(t, "route")
	for _, tt := range []struct {
		prefix string
		want   []string
	}{
		{"10.99.0.0/24", []string{"via 192.0.2.2 dev eth0 proto boot"}},
		{"10.98.0.0/24", []string{"dev eth0 proto static metric 100"}},
		{"10.97.0.0/24", []string{"blackhole"}},
	} {
		var err error
		ns.MustDo(t, func() error {
			err = h.AddRoutes([]dataplane.HostRoute{devRoute("10.1.2.0/24", 1450), devRoute(tt.prefix, 1450)})
			return nil
		})
		var re *dataplane.RouteError
		if !errors.Is(err, dataplane.ErrExists) || !errors.As(err, &re) || re.Prefix.String() != tt.prefix {
			t.Fatalf("%s: %v, want a RouteError for it wrapping ErrExists", tt.prefix, err)
		}
		for _, w := range append(tt.want, "route "+tt.prefix+": ", "vxdp did not install it") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tt.prefix, err, w)
			}
		}
	}
	if after := ns.IP(t, "route"); after != before {
		t.Fatalf("refused lists changed the table:\n%s\nwas\n%s", after, before)
	}
}

// vxdp's own routes (of this run or one before) are replaced, which is how
// their MTU changes; a list that fails midway is taken back; removal takes
// exactly vxdp's route and nothing that took its place.
func TestHostRoutesOwn(t *testing.T) {
	ns, h := routeLab(t)
	do := func(f func() error) error {
		var err error
		ns.MustDo(t, func() error { err = f(); return nil })
		return err
	}
	// A route a killed agent left.
	ns.IP(t, "route", "add", "10.1.4.0/24", "dev", "h0", "proto", "208", "mtu", "1400")
	via := dataplane.HostRoute{Prefix: netip.MustParsePrefix("10.1.3.0/24"), Via: netip.MustParseAddr("192.0.2.2")}
	must(t, do(func() error {
		return h.AddRoutes([]dataplane.HostRoute{devRoute("10.1.2.0/24", 1450), via, devRoute("10.1.4.0/24", 1450)})
	}))
	for dst, want := range map[string]string{
		"10.1.2.0/24": "10.1.2.0/24 dev h0 proto 208 scope link src 10.1.1.1 mtu 1450",
		"10.1.3.0/24": "10.1.3.0/24 via 192.0.2.2 dev eth0 proto 208",
		"10.1.4.0/24": "10.1.4.0/24 dev h0 proto 208 scope link src 10.1.1.1 mtu 1450",
	} {
		if got := route(t, ns, dst); got != want {
			t.Errorf("route %s: %q, want %q", dst, got, want)
		}
	}
	must(t, do(func() error { return h.AddRoutes([]dataplane.HostRoute{devRoute("10.1.2.0/24", 1350)}) }))
	if got := route(t, ns, "10.1.2.0/24"); !strings.HasSuffix(got, " mtu 1350") {
		t.Fatalf("after a new MTU: %q", got)
	}

	// The second route's gateway is unreachable: the first is removed again
	// and the replaced one gets its MTU back.
	err := do(func() error {
		return h.AddRoutes([]dataplane.HostRoute{devRoute("10.1.5.0/24", 1450), devRoute("10.1.2.0/24", 1300),
			{Prefix: netip.MustParsePrefix("10.1.6.0/24"), Via: netip.MustParseAddr("203.0.113.1")}})
	})
	var re *dataplane.RouteError
	if !errors.As(err, &re) || re.Prefix.String() != "10.1.6.0/24" {
		t.Fatalf("list with an unreachable gateway: %v", err)
	}
	if got := route(t, ns, "10.1.5.0/24"); got != "" {
		t.Fatalf("a failed list left %q", got)
	}
	if got := route(t, ns, "10.1.2.0/24"); !strings.HasSuffix(got, " mtu 1350") {
		t.Fatalf("a failed list left %q", got)
	}

	// Someone replaced vxdp's via route with his own: it is his now.
	ns.IP(t, "route", "replace", "10.1.3.0/24", "via", "192.0.2.2", "proto", "static")
	ns.IP(t, "route", "add", "10.99.0.0/24", "via", "192.0.2.2")
	for _, p := range []string{"10.1.2.0/24", "10.1.3.0/24", "10.1.4.0/24", "10.99.0.0/24"} {
		must(t, do(func() error { return h.DelRoute(netip.MustParsePrefix(p)) }))
	}
	for dst, want := range map[string]string{
		"10.1.2.0/24":  "",
		"10.1.4.0/24":  "",
		"10.1.3.0/24":  "10.1.3.0/24 via 192.0.2.2 dev eth0 proto static",
		"10.99.0.0/24": "10.99.0.0/24 via 192.0.2.2 dev eth0",
	} {
		if got := route(t, ns, dst); got != want {
			t.Errorf("after DelRoute, route %s: %q, want %q", dst, got, want)
		}
	}
	if got := strings.TrimSpace(ns.IP(t, "route", "show", "proto", "208")); got != "" {
		t.Fatalf("vxdp routes left:\n%s", got)
	}
}

// Direct routes over an IPv6 underlay: an IPv6 pod CIDR via the node's
// IPv6 address, an IPv4 one via the same address with RTA_VIA (`via inet6`),
// each removed exactly; someone else's `via inet6` route is refused and
// named as ip route prints it.
func TestHostRoutesIPv6(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	lab := nstest.New(t)
	ns, peer := lab.Netns("node"), lab.Netns("peer")
	lab.Veth(ns, "eth0", "fd69:72::1/64", peer, "eth0", "fd69:72::2/64", 1500)
	ns.IP(t, "link", "add", "h0", "type", "veth", "peer", "name", "h1")
	ns.IP(t, "addr", "add", "10.1.1.1/24", "dev", "h0")
	ns.IP(t, "addr", "add", "fd00:1:1::1/64", "dev", "h0", "nodad")
	ns.IP(t, "link", "set", "h0", "up")
	ns.IP(t, "link", "set", "h1", "up")
	h := &hostRoutes{src: netip.MustParseAddr("10.1.1.1"), src6: netip.MustParseAddr("fd00:1:1::1"), log: zap.NewNop()}
	do := func(f func() error) error {
		var err error
		ns.MustDo(t, func() error { err = f(); return nil })
		return err
	}
	must(t, do(func() error {
		l, err := netlink.LinkByName("h0")
		if err == nil {
			h.link = l.Attrs().Index
		}
		return err
	}))
	node2 := netip.MustParseAddr("fd69:72::2")
	must(t, do(func() error {
		return h.AddRoutes([]dataplane.HostRoute{
			{Prefix: netip.MustParsePrefix("fd00:1:2::/64"), Via: node2},
			{Prefix: netip.MustParsePrefix("10.1.2.0/24"), Via: node2},
			devRoute("fd00:1:3::/64", 1430),
		})
	}))
	route6 := func(dst string) string {
		return strings.TrimSpace(ns.IP(t, "-6", "route", "show", "exact", dst))
	}
	if got := route(t, ns, "10.1.2.0/24"); got != "10.1.2.0/24 via inet6 fd69:72::2 dev eth0 proto 208" {
		t.Errorf("IPv4 pods via an IPv6 node: %q", got)
	}
	if got := route6("fd00:1:2::/64"); !strings.HasPrefix(got, "fd00:1:2::/64 via fd69:72::2 dev eth0 proto 208 ") {
		t.Errorf("IPv6 pods via the node: %q", got)
	}
	if got := route6("fd00:1:3::/64"); !strings.HasPrefix(got, "fd00:1:3::/64 dev h0 proto 208 src fd00:1:1::1 ") || !strings.Contains(got, "mtu 1430") {
		t.Errorf("IPv6 pods through the host device: %q", got)
	}

	ns.IP(t, "route", "add", "10.1.9.0/24", "via", "inet6", "fd69:72::2")
	err := do(func() error {
		return h.AddRoutes([]dataplane.HostRoute{{Prefix: netip.MustParsePrefix("10.1.9.0/24"), Via: node2}})
	})
	if !errors.Is(err, dataplane.ErrExists) || !strings.Contains(err.Error(), "via inet6 fd69:72::2 dev eth0") {
		t.Errorf("someone else's via inet6 route: %v", err)
	}

	for _, p := range []string{"fd00:1:2::/64", "10.1.2.0/24", "fd00:1:3::/64", "10.1.9.0/24"} {
		must(t, do(func() error { return h.DelRoute(netip.MustParsePrefix(p)) }))
	}
	if got := strings.TrimSpace(ns.IP(t, "route", "show", "proto", "208") + ns.IP(t, "-6", "route", "show", "proto", "208")); got != "" {
		t.Fatalf("vxdp routes left:\n%s", got)
	}
	if got := route(t, ns, "10.1.9.0/24"); got != "10.1.9.0/24 via inet6 fd69:72::2 dev eth0" {
		t.Fatalf("someone else's route after DelRoute: %q", got)
	}
}
