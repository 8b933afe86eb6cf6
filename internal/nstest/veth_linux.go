//go:build linux

package nstest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddVeth creates a veth pair joining a and b: aName is created inside a and
// its peer bName is created directly in b, so neither end ever exists in the
// root namespace. aAddr and bAddr are prefixes like "10.169.72.233/24"
// (several may be given separated by commas, "" means none); IPv6 addresses
// skip duplicate address detection so they are usable at once. A positive
// mtu is set on both ends. Both ends are brought up.
//
// The links die with their namespaces, so they need no teardown of their own.
func (l *Lab) AddVeth(a *Netns, aName, aAddr string, b *Netns, bName, bAddr string, mtu int) error {
	if err := l.veth(a, aName, aAddr, b, bName, bAddr, mtu); err != nil {
		return fmt.Errorf("nstest: veth %s <-> %s: %w", aName, bName, err)
	}
	return nil
}

func (l *Lab) veth(a *Netns, aName, aAddr string, b *Netns, bName, bAddr string, mtu int) error {
	if a == nil || b == nil {
		return fmt.Errorf("nil namespace")
	}
	if a.lab != l || b.lab != l {
		return fmt.Errorf("namespaces must belong to this lab")
	}
	for _, n := range []string{aName, bName} {
		if err := checkLinkName(n); err != nil {
			return err
		}
	}
	if a == b && aName == bName {
		return fmt.Errorf("both ends named %q in the same namespace", aName)
	}
	if mtu < 0 {
		return fmt.Errorf("negative mtu %d", mtu)
	}
	aAddrs, err := parseAddrs(aAddr)
	if err != nil {
		return err
	}
	bAddrs, err := parseAddrs(bAddr)
	if err != nil {
		return err
	}

	ha, err := a.NetlinkHandle()
	if err != nil {
		return err
	}
	defer ha.Close()
	hb, err := b.NetlinkHandle()
	if err != nil {
		return err
	}
	defer hb.Close()
	bns, err := b.handle()
	if err != nil {
		return err
	}
	defer bns.Close()

	attrs := netlink.NewLinkAttrs() // TxQLen -1: keep the kernel default
	attrs.Name = aName
	attrs.MTU = mtu
	v := &netlink.Veth{
		LinkAttrs:     attrs,
		PeerName:      bName,
		PeerTxQLen:    -1,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(bns),
	}
	if err := ha.LinkAdd(v); err != nil {
		return fmt.Errorf("create in %s: %w", a.Name, err)
	}
	la, err := ha.LinkByName(aName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", aName, a.Name, err)
	}
	lb, err := hb.LinkByName(bName)
	if err != nil {
		return fmt.Errorf("find peer %s in %s: %w", bName, b.Name, err)
	}
	if err := ha.LinkSetUp(la); err != nil {
		return fmt.Errorf("set %s up: %w", aName, err)
	}
	if err := hb.LinkSetUp(lb); err != nil {
		return fmt.Errorf("set %s up: %w", bName, err)
	}
	// Addresses are added only once both ends are up: IPv6 addresses added
	// to a down link take seconds to become reachable (neighbour discovery
	// stalls), while on an up link they work at once with NODAD.
	if err := waitOperUp(ha, aName, hb, bName); err != nil {
		return err
	}
	if err := addAddrs(ha, la, aAddrs); err != nil {
		return fmt.Errorf("%s in %s: %w", aName, a.Name, err)
	}
	if err := addAddrs(hb, lb, bAddrs); err != nil {
		return fmt.Errorf("%s in %s: %w", bName, b.Name, err)
	}
	return nil
}

// checkLinkName enforces the kernel's interface name rules (IFNAMSIZ 16,
// including the terminating NUL) before anything is created.
func checkLinkName(n string) error {
	if n == "" || len(n) > unix.IFNAMSIZ-1 || n == "." || n == ".." || strings.ContainsAny(n, "/: \t\n") {
		return fmt.Errorf("bad link name %q (1-15 chars, no '/', ':' or spaces)", n)
	}
	return nil
}

func parseAddrs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("address %q: %w", part, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func addAddrs(h *netlink.Handle, link netlink.Link, addrs []netip.Prefix) error {
	for _, p := range addrs {
		a := p.Addr().Unmap()
		bits := 32
		if a.Is6() {
			bits = 128
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add address %s: %w", p, err)
		}
	}
	return nil
}

// vethUpTimeout bounds the wait for a fresh veth pair to report carrier.
const vethUpTimeout = 5 * time.Second

// waitOperUp waits until both ends report operational state up, so callers
// get a link that carries traffic right away.
func waitOperUp(ha *netlink.Handle, aName string, hb *netlink.Handle, bName string) error {
	deadline := time.Now().Add(vethUpTimeout)
	for {
		la, errA := ha.LinkByName(aName)
		lb, errB := hb.LinkByName(bName)
		if errA != nil || errB != nil {
			return fmt.Errorf("waiting for carrier: %v %v", errA, errB)
		}
		sa, sb := la.Attrs().OperState, lb.Attrs().OperState
		if sa == netlink.OperUp && sb == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no carrier after %v: %s is %v, %s is %v", vethUpTimeout, aName, sa, bName, sb)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
