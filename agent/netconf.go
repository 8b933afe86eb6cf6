package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
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
	added map[netip.Prefix]*netlink.Route
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
	return h.add(h.route(p, mtu), fmt.Sprintf("route %s dev %s", p, HostDevice))
}

// AddVia installs `p via nodeIP` (native routing's auto-direct-node-routes):
// the kernel sends a remote node's pods straight to that node.
func (h *hostRoutes) AddVia(p netip.Prefix, via netip.Addr) error {
	r := &netlink.Route{
		Dst:      &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Gw:       via.AsSlice(),
		Protocol: netlink.RouteProtocol(routeProtocol),
	}
	return h.add(r, fmt.Sprintf("route %s via %s", p, via))
}

func (h *hostRoutes) add(r *netlink.Route, what string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if h.added == nil {
		h.added = make(map[netip.Prefix]*netlink.Route)
	}
	p, _ := netip.AddrFromSlice(r.Dst.IP)
	bits, _ := r.Dst.Mask.Size()
	h.added[netip.PrefixFrom(p.Unmap(), bits)] = r
	return nil
}

// DelRoute removes the route added for p, and only a route vxdp added.
func (h *hostRoutes) DelRoute(p netip.Prefix) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.added[p]
	if r == nil {
		return nil
	}
	delete(h.added, p)
	err := netlink.RouteDel(r)
	if err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("delete route %s: %w", p, err)
	}
	return nil
}

const ipForward = "/proc/sys/net/ipv4/ip_forward"

// enableForwarding turns on IPv4 forwarding in the node's namespace, as
// Cilium does in native mode, and returns the previous value.
func enableForwarding() (string, error) {
	old, err := os.ReadFile(ipForward)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", ipForward, err)
	}
	if err := os.WriteFile(ipForward, []byte("1"), 0o644); err != nil {
		return "", fmt.Errorf("enable ip forwarding: %w", err)
	}
	return strings.TrimSpace(string(old)), nil
}

// restoreForwarding puts back the ip_forward value enableForwarding found,
// when a start fails after it.
func restoreForwarding(old string) {
	_ = os.WriteFile(ipForward, []byte(old), 0o644)
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

// ensureHostAddr checks an adopted host device still has its address, MTU
// and up state, restoring what is missing.
func ensureHostAddr(d interface{ Index() int }, addr netip.Prefix, mtu int) error {
	link, err := netlink.LinkByIndex(d.Index())
	if err != nil {
		return fmt.Errorf("%s: %w", HostDevice, err)
	}
	ipn := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("%s address %s: %w", HostDevice, addr, err)
	}
	if link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("%s mtu %d: %w", HostDevice, mtu, err)
		}
	}
	return netlink.LinkSetUp(link)
}
