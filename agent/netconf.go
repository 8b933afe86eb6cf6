package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/config"
	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/tun"
)

// hostRoutes installs the routes the engine asks for in the node's main
// table: `prefix dev vxdp_host src <host ip> mtu <route mtu>` (the node
// reaches remote pods and VTEPs through the overlay) or `prefix via
// <node>` (native routing's auto-direct-node-routes; an IPv4 prefix via
// a node on an IPv6 underlay is `prefix via inet6 <node>`, RTA_VIA, which
// the kernel has for IPv4 routes since 5.2). Every route carries
// protocol 208 (routeProtocol), which is how vxdp knows its own: it never
// replaces a route for the same prefix that lacks it, and removes exactly
// the routes it added.
type hostRoutes struct {
	link int
	src  netip.Addr // the host device's IPv4 address, source of IPv4 routes
	src6 netip.Addr // its IPv6 address, source of IPv6 routes
	log  *zap.Logger

	mu    sync.Mutex // serialises changes to vxdp's routes; protects added
	added map[netip.Prefix]*netlink.Route
}

var _ dataplane.HostRoutes = (*hostRoutes)(nil)

// routeProtocol marks vxdp's routes in `ip route` output (proto 0xd0 is
// unassigned in /etc/iproute2/rt_protos).
const routeProtocol = 208

func (h *hostRoutes) route(r dataplane.HostRoute) *netlink.Route {
	p := r.Prefix
	nr := &netlink.Route{
		Dst:      &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Table:    unix.RT_TABLE_MAIN,
		Protocol: netlink.RouteProtocol(routeProtocol),
	}
	if r.Via.IsValid() {
		if r.Via.Is6() && p.Addr().Is4() {
			// The kernel routes IPv4 through an IPv6 next hop
			// (RTA_VIA) but not the other way round; the
			// configuration refuses IPv6 pods over an IPv4 underlay
			// with direct routes.
			nr.Via = &netlink.Via{AddrFamily: netlink.FAMILY_V6, Addr: r.Via.AsSlice()}
			return nr
		}
		nr.Gw = r.Via.AsSlice()
		return nr
	}
	src := h.src
	if p.Addr().Is6() {
		src = h.src6
	}
	nr.LinkIndex, nr.Scope, nr.MTU = h.link, netlink.SCOPE_LINK, r.MTU
	if src.IsValid() {
		nr.Src = src.AsSlice()
	}
	return nr
}

// AddRoutes installs rs in the main table, all or none
// (dataplane.HostRoutes). It reads the table once: a prefix with a route
// that is not vxdp's is refused, naming that route, before anything
// changes. A prefix with a route of vxdp's (installed by this agent, or by
// one that died before it: hitless restarts adopt them) has it replaced;
// the others are created, and a route someone else adds in between makes
// the creation fail rather than be replaced.
func (h *hostRoutes) AddRoutes(rs []dataplane.HostRoute) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	wanted := make(map[netip.Prefix]bool, len(rs))
	for _, r := range rs {
		wanted[r.Prefix] = true
	}
	table, err := mainTable(wanted)
	if err != nil {
		return fmt.Errorf("read the main routing table: %w", err)
	}
	for _, r := range rs {
		if f := foreignRoute(table[r.Prefix]); f != nil {
			return &dataplane.RouteError{Prefix: r.Prefix, Err: takenError(f)}
		}
	}
	if h.added == nil {
		h.added = make(map[netip.Prefix]*netlink.Route)
	}
	done := make([]routeChange, 0, len(rs))
	for _, r := range rs {
		c := routeChange{prefix: r.Prefix, prev: h.added[r.Prefix], created: len(table[r.Prefix]) == 0}
		nr := h.route(r)
		if c.created {
			err = netlink.RouteAdd(nr)
		} else {
			err = netlink.RouteReplace(nr)
		}
		if err != nil {
			h.undo(done)
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("%w in the main table: someone else installed it just now; vxdp did not replace it", dataplane.ErrExists)
			}
			return &dataplane.RouteError{Prefix: r.Prefix, Err: err}
		}
		if !c.created && c.prev == nil {
			h.log.Debug("host route of a previous run adopted", zap.Stringer("prefix", r.Prefix))
		}
		h.added[r.Prefix] = nr
		done = append(done, c)
	}
	return nil
}

// routeChange is what AddRoutes did to one prefix, for undo.
type routeChange struct {
	prefix  netip.Prefix
	prev    *netlink.Route // the route this agent had there, if any
	created bool           // the table had no route for the prefix
}

// undo takes back the changes of an AddRoutes that failed midway, last
// first: created routes go, replaced ones of this agent come back as they
// were. A route of a previous run that was replaced stays, vxdp's anyway.
// Callers hold h.mu.
func (h *hostRoutes) undo(done []routeChange) {
	for i := len(done) - 1; i >= 0; i-- {
		c := done[i]
		var err error
		switch {
		case c.created:
			err = delExact(h.added[c.prefix])
		case c.prev != nil:
			err = netlink.RouteReplace(c.prev)
		}
		if err != nil {
			h.log.Warn("undo host route", zap.Stringer("prefix", c.prefix), zap.Error(err))
		}
		if c.prev != nil {
			h.added[c.prefix] = c.prev
		} else {
			delete(h.added, c.prefix)
		}
	}
}

// DelRoute removes the route vxdp added for p, and only that route: same
// destination, same protocol, same next hop (dataplane.HostRoutes). A
// prefix vxdp has no route for is left alone.
func (h *hostRoutes) DelRoute(p netip.Prefix) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.added[p]
	if r == nil {
		return nil
	}
	delete(h.added, p)
	if err := delExact(r); err != nil {
		return fmt.Errorf("delete route %s: %w", p, err)
	}
	return nil
}

// delExact deletes r from the main table, matching its destination,
// protocol, scope and next hop but not its metrics: an MTU changed by hand
// does not make it someone else's. A route already gone (with its device)
// is no error.
func delExact(r *netlink.Route) error {
	d := &netlink.Route{Dst: r.Dst, Table: unix.RT_TABLE_MAIN, Protocol: r.Protocol, Scope: r.Scope, LinkIndex: r.LinkIndex, Gw: r.Gw, Via: r.Via}
	err := netlink.RouteDel(d)
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENODEV) {
		return err
	}
	return nil
}

// mainTable reads the routes of the main table to the wanted
// destinations, by destination. The others are not kept: with a route per
// remote node the table holds thousands, and adding one node would keep a
// copy of them all.
func mainTable(wanted map[netip.Prefix]bool) (map[netip.Prefix][]netlink.Route, error) {
	for try := 0; ; try++ {
		m := map[netip.Prefix][]netlink.Route{}
		err := netlink.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE,
			func(r netlink.Route) bool {
				if p := routePrefix(r.Family, r.Dst); wanted[p] {
					m[p] = append(m[p], r)
				}
				return true
			})
		// A dump the kernel interrupted (the table changed meanwhile)
		// may miss routes: read it again.
		if errors.Is(err, netlink.ErrDumpInterrupted) && try < 3 {
			continue
		}
		return m, err
	}
}

// routePrefix is the destination of a route as a prefix; the default
// route has none.
func routePrefix(family int, dst *net.IPNet) netip.Prefix {
	if dst == nil {
		if family == netlink.FAMILY_V6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(dst.IP)
	bits, _ := dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked()
}

// foreignRoute returns the first of rs (routes for one prefix) that vxdp
// did not install, or nil.
func foreignRoute(rs []netlink.Route) *netlink.Route {
	for i := range rs {
		if rs[i].Protocol != routeProtocol {
			return &rs[i]
		}
	}
	return nil
}

// takenError is the refusal to touch the route r of someone else.
func takenError(r *netlink.Route) error {
	return fmt.Errorf("%w in the main table (%s) and vxdp did not install it; vxdp does not replace it",
		dataplane.ErrExists, describeRoute(r))
}

// describeRoute says what a route does, in the words of `ip route`.
func describeRoute(r *netlink.Route) string {
	var parts []string
	switch r.Type {
	case unix.RTN_BLACKHOLE:
		parts = append(parts, "blackhole")
	case unix.RTN_UNREACHABLE:
		parts = append(parts, "unreachable")
	case unix.RTN_PROHIBIT:
		parts = append(parts, "prohibit")
	}
	if r.Gw != nil {
		parts = append(parts, "via "+r.Gw.String())
	}
	if v, ok := r.Via.(*netlink.Via); ok {
		family := "inet"
		if v.AddrFamily == netlink.FAMILY_V6 {
			family = "inet6"
		}
		parts = append(parts, "via "+family+" "+v.Addr.String())
	}
	if r.LinkIndex > 0 {
		parts = append(parts, "dev "+linkName(r.LinkIndex))
	}
	for _, nh := range r.MultiPath {
		hop := "nexthop"
		if nh.Gw != nil {
			hop += " via " + nh.Gw.String()
		}
		if nh.LinkIndex > 0 {
			hop += " dev " + linkName(nh.LinkIndex)
		}
		parts = append(parts, hop)
	}
	parts = append(parts, "proto "+r.Protocol.String())
	if r.Priority != 0 {
		parts = append(parts, fmt.Sprintf("metric %d", r.Priority))
	}
	return strings.Join(parts, " ")
}

// linkName is the name of the link with index i, or its index when it
// cannot be looked up.
func linkName(i int) string {
	l, err := netlink.LinkByIndex(i)
	if err != nil {
		return fmt.Sprintf("#%d", i)
	}
	return l.Attrs().Name
}

// The forwarding switches native routing turns on: IPv4's, and IPv6's
// for every interface (conf/all, which the kernel copies to each one).
const (
	ipForward   = "net/ipv4/ip_forward"
	ip6Forward  = "net/ipv6/conf/all/forwarding"
	forwardedOn = "1"
)

// resolveProcFS is where the agent writes its sysctls (tun.SysctlPath):
// the procfs key, or /proc, with a warning, when the key names a
// directory without sys/ in it: Cilium's ConfigMaps say /host/proc, where
// its DaemonSet mounts the host's, and the same file used on a host would
// otherwise send every sysctl nowhere. The configuration keeps the key
// as written, so that a reload of the same file is no change.
func resolveProcFS(cfg *config.Config, log *zap.Logger) string {
	p := cfg.ProcFS
	if p == "" || p == config.DefaultProcFS {
		return config.DefaultProcFS
	}
	if fi, err := os.Stat(filepath.Join(p, "sys")); err != nil || !fi.IsDir() {
		log.Warn("procfs has no sys directory; using /proc", zap.String("procfs", p))
		return config.DefaultProcFS
	}
	return p
}

// enableForwarding turns on the forwarding switch at path in the node's
// namespace, as Cilium does in native mode, and returns the previous
// value.
func enableForwarding(path string) (string, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(forwardedOn), 0o644); err != nil {
		return "", fmt.Errorf("enable forwarding (%s): %w", path, err)
	}
	return strings.TrimSpace(string(old)), nil
}

// restoreForwarding puts back the value enableForwarding found at path,
// when a start fails after it.
func restoreForwarding(path, old string) {
	_ = os.WriteFile(path, []byte(old), 0o644)
}

// hostSysctls lets the host device take packets whose source is one of
// the node's own addresses (ICMP errors the dataplane sends from the host
// address) and turns off reverse-path filtering on it: the dataplane has
// already checked every source it forwards.
func hostSysctls(log *zap.Logger) {
	for _, s := range []struct{ key, val string }{
		{"net/ipv4/conf/" + HostDevice + "/accept_local", "1"},
		{"net/ipv4/conf/" + HostDevice + "/rp_filter", "0"},
	} {
		if err := os.WriteFile(tun.SysctlPath(s.key), []byte(s.val), 0o644); err != nil {
			log.Warn("sysctl", zap.String("key", s.key), zap.Error(err))
		}
	}
}

// ensureHostAddr checks an adopted host device still has its address, MTU
// and up state, restoring what is missing.
func ensureHostAddr(d interface{ Index() int }, mtu int, addrs ...netip.Prefix) error {
	link, err := netlink.LinkByIndex(d.Index())
	if err != nil {
		return fmt.Errorf("%s: %w", HostDevice, err)
	}
	for _, addr := range addrs {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
		if addr.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("%s address %s: %w", HostDevice, addr, err)
		}
	}
	if link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("%s mtu %d: %w", HostDevice, mtu, err)
		}
	}
	return netlink.LinkSetUp(link)
}

// clusterRoutes are the routes of the cluster's pod space to vxdp_host in
// tunnel mode, one per family that has a cluster CIDR: the node reaches
// the whole space through the overlay, and what no node holds is answered
// unreachable by the dataplane. In native mode the network routes the pod
// space, and a route to vxdp_host would shadow the kernel's own.
func clusterRoutes(cfg *config.Config, mtu int) []dataplane.HostRoute {
	if cfg.RoutingMode == config.RoutingNative {
		return nil
	}
	var out []dataplane.HostRoute
	for _, p := range []netip.Prefix{cfg.ClusterCIDR, cfg.ClusterCIDR6} {
		if p.IsValid() {
			out = append(out, dataplane.HostRoute{Prefix: p, MTU: mtu})
		}
	}
	return out
}
