package agent

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/api"
)

// checkPodInterface looks into a container's namespace for what an ADD
// made there: the interface up with its MTU, each address, and each
// route through it (CNI CHECK).
func checkPodInterface(nsPath, ifname string, want api.CNIResult) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", nsPath, err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("interface %s: %w", ifname, err)
	}
	attrs := link.Attrs()
	if attrs.Flags&unix.IFF_UP == 0 {
		return fmt.Errorf("interface %s is down", ifname)
	}
	if attrs.MTU != want.MTU {
		return fmt.Errorf("interface %s has MTU %d, want %d", ifname, attrs.MTU, want.MTU)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("interface %s: addresses: %w", ifname, err)
	}
	for _, w := range want.IPs {
		found := false
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			ones, _ := a.Mask.Size()
			if ok && netip.PrefixFrom(ip.Unmap(), ones) == w.Address {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("interface %s lacks address %s", ifname, w.Address)
		}
	}
	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("interface %s: routes: %w", ifname, err)
	}
	for _, w := range want.Routes {
		found := false
		for _, r := range routes {
			dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if r.Family == unix.AF_INET6 {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			if r.Dst != nil {
				ip, _ := netip.AddrFromSlice(r.Dst.IP)
				ones, _ := r.Dst.Mask.Size()
				dst = netip.PrefixFrom(ip.Unmap(), ones)
			}
			if dst == w.Dst {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("interface %s lacks the route to %s", ifname, w.Dst)
		}
	}
	return nil
}
