package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
)

// hostRoutes installs `prefix dev vxdp_host src <host ip> mtu <route mtu>`
// in the node's namespace, so the node reaches remote pods through the
// overlay with the right MTU. It removes exactly the routes it added.
type hostRoutes struct {
	link int
	src  netip.Addr
	log  *zap.Logger

	mu    sync.Mutex // protects added
	added map[netip.Prefix]bool
}

func (h *hostRoutes) route(p netip.Prefix, mtu int) *netlink.Route {
	return &netlink.Route{
		LinkIndex: h.link,
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Src:       h.src.AsSlice(),
		Scope:     netlink.SCOPE_LINK,
		MTU:       mtu,
		Protocol:  netlink.RouteProtocol(routeProtocol),
	}
}

// routeProtocol marks vxdp's routes in `ip route` output (proto 0xd0 is
// unassigned in /etc/iproute2/rt_protos).
const routeProtocol = 208

func (h *hostRoutes) AddRoute(p netip.Prefix, mtu int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := netlink.RouteReplace(h.route(p, mtu)); err != nil {
		return fmt.Errorf("route %s dev vxdp_host: %w", p, err)
	}
	if h.added == nil {
		h.added = make(map[netip.Prefix]bool)
	}
	h.added[p] = true
	return nil
}

func (h *hostRoutes) DelRoute(p netip.Prefix) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.added[p] {
		return nil
	}
	delete(h.added, p)
	err := netlink.RouteDel(h.route(p, 0))
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("delete route %s: %w", p, err)
	}
	return nil
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
		if err := os.WriteFile("/proc/sys/"+s.key, []byte(s.val), 0o644); err != nil {
			log.Warn("sysctl", zap.String("key", s.key), zap.Error(err))
		}
	}
}
