package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linkNetns returns a handle on the namespace the interface is in right now.
// The kernel tracks that for us (TUNGETDEVNETNS, Linux 5.2+), so the device
// needs no namespace handle of its own, and it stays right even if someone
// else moves the interface.
func (d *Device) linkNetns() (netns.NsHandle, error) {
	var ns netns.NsHandle = -1
	err := d.control(func(fd int) error {
		nsfd, err := unix.IoctlRetInt(fd, unix.TUNGETDEVNETNS)
		if err != nil {
			return fmt.Errorf("TUNGETDEVNETNS: %w", err)
		}
		ns = netns.NsHandle(nsfd)
		return nil
	})
	return ns, err
}

// routeHandle opens an rtnetlink socket in ns. Only NETLINK_ROUTE: the
// default set also opens xfrm and netfilter sockets we never use.
func routeHandle(ns netns.NsHandle) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	return h, nil
}

// refresh reloads the cached name and ifindex from the kernel.
func (d *Device) refresh() error {
	name, err := d.kernelName()
	if err != nil {
		return err
	}
	ns, err := d.linkNetns()
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := routeHandle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up %s: %w", name, err)
	}
	d.name.Store(&name)
	d.index.Store(int64(link.Attrs().Index))
	return nil
}

// MoveToNetns moves the interface into the network namespace at nsPath (for
// example /run/netns/pod1 or /proc/PID/ns/net), renames it to ifname, sets
// its MTU (mtu <= 0 keeps the current one), adds addr, brings it up and adds
// a default route through it. The route has link scope and no gateway: a
// TUN interface is point-to-point, every destination is on-link.
//
// The calling thread never changes namespace. If a step after the move
// fails, the interface is taken down, renamed back and returned to the
// namespace it came from, so a failed call leaves nothing in the pod.
func (d *Device) MoveToNetns(nsPath, ifname string, mtu int, addrs ...netip.Prefix) (err error) {
	d.cmu.Lock()
	defer d.cmu.Unlock()

	oldName := d.Name()
	fail := func(err error) error {
		return fmt.Errorf("move %s to netns %s: %w", oldName, nsPath, err)
	}
	if ifname == "" || len(ifname) >= unix.IFNAMSIZ {
		return fail(fmt.Errorf("invalid interface name %q", ifname))
	}
	if err := checkAddrs(addrs); err != nil {
		return fail(err)
	}

	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fail(fmt.Errorf("open netns: %w", err))
	}
	defer target.Close()
	source, err := d.linkNetns()
	if err != nil {
		return fail(err)
	}
	defer source.Close()

	src, err := routeHandle(source)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	dst, err := routeHandle(target)
	if err != nil {
		return fail(err)
	}
	defer dst.Close()

	// By the kernel's current name rather than the cached index: it stays
	// right even if the link was renamed or moved behind our back.
	oldName, err = d.kernelName()
	if err != nil {
		return fail(err)
	}
	link, err := src.LinkByName(oldName)
	if err != nil {
		return fail(fmt.Errorf("look up link: %w", err))
	}
	oldMTU := link.Attrs().MTU
	if err := src.LinkSetNsFd(link, int(target)); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fail(fmt.Errorf("an interface named %s already exists there: %w", oldName, err))
		}
		return fail(err)
	}

	// The ifindex survives the move unless it is taken in the target, so
	// look the link up by the name it still has.
	link, err = dst.LinkByName(oldName)
	if err != nil {
		// Without the link there is nothing to roll back with; closing
		// the device still deletes it, wherever it is.
		err = fmt.Errorf("look up link after move: %w", err)
		if rerr := d.refresh(); rerr != nil {
			err = fmt.Errorf("%w (refresh: %v)", err, rerr)
		}
		return fail(err)
	}
	renamed := false
	defer func() {
		if err == nil {
			return
		}
		if rerr := rollbackMove(dst, link, renamed, oldName, oldMTU, source); rerr != nil {
			err = fmt.Errorf("%w (rollback failed: %v; the interface stays there until Close)", err, rerr)
		}
		if rerr := d.refresh(); rerr != nil {
			err = fmt.Errorf("%w (refresh: %v)", err, rerr)
		}
	}()

	if ifname != oldName {
		if err := dst.LinkSetName(link, ifname); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fail(fmt.Errorf("rename to %s: name already in use in the target namespace: %w", ifname, err))
			}
			return fail(fmt.Errorf("rename to %s: %w", ifname, err))
		}
		renamed = true
	}
	if err := configure(dst, link, ifname, addrs, mtu); err != nil {
		return fail(err)
	}
	d.noteMTU(mtu)
	for _, addr := range addrs {
		if err := dst.RouteAdd(defaultRoute(link.Attrs().Index, addr)); err != nil {
			return fail(fmt.Errorf("add default route via %s: %w", ifname, err))
		}
	}

	d.name.Store(&ifname)
	d.index.Store(int64(link.Attrs().Index))
	return nil
}

// rollbackMove undoes a partial MoveToNetns. Leaving a namespace flushes the
// interface's addresses and routes, so down, old name and old MTU are all
// that needs restoring.
func rollbackMove(h *netlink.Handle, link netlink.Link, renamed bool, oldName string, oldMTU int, home netns.NsHandle) error {
	if err := h.LinkSetDown(link); err != nil {
		return fmt.Errorf("set down: %w", err)
	}
	if renamed {
		if err := h.LinkSetName(link, oldName); err != nil {
			return fmt.Errorf("rename back to %s: %w", oldName, err)
		}
	}
	if err := h.LinkSetMTU(link, oldMTU); err != nil {
		return fmt.Errorf("restore mtu: %w", err)
	}
	if err := h.LinkSetNsFd(link, int(home)); err != nil {
		return fmt.Errorf("move back: %w", err)
	}
	return nil
}

// ConfigureHere configures the interface where it is, which must be the
// calling thread's network namespace: MTU (mtu <= 0 keeps it), IPv6 off
// (unless addr is IPv6), address addr (whose prefix gives the kernel's
// connected route, e.g. 10.1.1.1/24), up. This is the setup of the node's
// host device.
func (d *Device) ConfigureHere(mtu int, addrs ...netip.Prefix) error {
	d.cmu.Lock()
	defer d.cmu.Unlock()

	name := d.Name()
	fail := func(err error) error {
		return fmt.Errorf("configure %s: %w", name, err)
	}
	if err := checkAddrs(addrs); err != nil {
		return fail(err)
	}
	// The sysctl below resolves /proc/sys/net against the calling thread's
	// namespace; pin the thread so the check and the write see the same one.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	here, err := netns.Get()
	if err != nil {
		return fail(fmt.Errorf("current netns: %w", err))
	}
	defer here.Close()
	ns, err := d.linkNetns()
	if err != nil {
		return fail(err)
	}
	defer ns.Close()
	if !ns.Equal(here) {
		return fail(errors.New("the interface is not in the calling thread's network namespace"))
	}
	h, err := routeHandle(ns)
	if err != nil {
		return fail(err)
	}
	defer h.Close()
	name, err = d.kernelName()
	if err != nil {
		return fail(err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fail(fmt.Errorf("look up link: %w", err))
	}
	if !hasIPv6(addrs) {
		// Before the interface comes up, so the kernel never assigns a
		// link-local address or sends router solicitations on it.
		if err := disableIPv6(name); err != nil {
			return fail(err)
		}
	}
	if err := configure(h, link, name, addrs, mtu); err != nil {
		return fail(err)
	}
	d.noteMTU(mtu)
	return nil
}

// noteMTU records an MTU set on the interface (mtu <= 0: none was).
func (d *Device) noteMTU(mtu int) {
	if mtu > 0 {
		d.mtu.Store(int64(mtu))
	}
}

// SetMTU sets the interface's MTU wherever it is now, in the node's
// namespace or a pod's (packetio.MTUSetter): the underlay's MTU changed
// under a running agent. Setting the MTU it already has does nothing.
func (d *Device) SetMTU(mtu int) error {
	d.cmu.Lock()
	defer d.cmu.Unlock()
	name := d.Name()
	fail := func(err error) error {
		return fmt.Errorf("set mtu %d on %s: %w", mtu, name, err)
	}
	if mtu <= 0 {
		return fail(errors.New("not a positive MTU"))
	}
	ns, err := d.linkNetns()
	if err != nil {
		return fail(err)
	}
	defer ns.Close()
	h, err := routeHandle(ns)
	if err != nil {
		return fail(err)
	}
	defer h.Close()
	if name, err = d.kernelName(); err != nil {
		return fail(err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fail(fmt.Errorf("look up link: %w", err))
	}
	if link.Attrs().MTU == mtu {
		d.noteMTU(mtu)
		return nil
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fail(err)
	}
	d.noteMTU(mtu)
	return nil
}

// configure sets MTU, adds addrs and brings the link up, in that order:
// the addresses must exist before the link is up so the first packets
// already have their source. An IPv6 address skips duplicate address
// detection (nobody else is on a TUN link, and a tentative address could
// not be used for a second), and a link with one gets no link-local
// address of its own: no router solicitations or MLD reports leave it.
func configure(h *netlink.Handle, link netlink.Link, name string, addrs []netip.Prefix, mtu int) error {
	if mtu > 0 {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("set mtu %d: %w", mtu, err)
		}
	}
	// A TUN queue holds 500 packets by default; a pod sending in a burst
	// fills that before the agent's next read and sees loss that is no
	// congestion at all, most of all when the pod and the agent share a
	// busy CPU and the agent waits for it. Each queue's ring costs the
	// kernel 8 bytes a slot, whether used or not.
	if err := h.LinkSetTxQLen(link, txQueueLen); err != nil {
		return fmt.Errorf("set txqueuelen %d: %w", txQueueLen, err)
	}
	// Without IPv6 support in the kernel the call fails, which only
	// matters when the link is to carry IPv6.
	if err := h.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil && hasIPv6(addrs) {
		return fmt.Errorf("ipv6 addr_gen_mode none: %w", err)
	}
	for _, addr := range addrs {
		a := &netlink.Addr{IPNet: ipNet(addr)}
		if addr.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add address %s: already assigned: %w", addr, err)
			}
			return fmt.Errorf("add address %s: %w", addr, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE: no automatic IPv6 addresses.
const addrGenModeNone = 1

// checkAddrs wants one address or one of each family.
func checkAddrs(addrs []netip.Prefix) error {
	var n4, n6 int
	for _, a := range addrs {
		if !a.IsValid() || a.Addr().Is4In6() || a.Addr().Zone() != "" {
			return fmt.Errorf("invalid address %s", a)
		}
		if a.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	if n4+n6 == 0 || n4 > 1 || n6 > 1 {
		return fmt.Errorf("want one address or one of each family, not %v", addrs)
	}
	return nil
}

func hasIPv6(addrs []netip.Prefix) bool {
	for _, a := range addrs {
		if a.Addr().Is6() {
			return true
		}
	}
	return false
}

// procFS is where the process finds the proc file system; see SetProcFS.
var procFS atomic.Pointer[string]

// SetProcFS tells the package where the proc file system is mounted, for
// the sysctls it writes: /proc unless a container mounts the host's
// writable elsewhere (its own /proc/sys is read-only). The sysctls under
// net/ still resolve against the calling thread's network namespace.
func SetProcFS(dir string) { procFS.Store(&dir) }

// SysctlPath is the file of a sysctl key ("net/ipv4/ip_forward") under
// the proc file system SetProcFS named.
func SysctlPath(key string) string {
	dir := "/proc"
	if p := procFS.Load(); p != nil {
		dir = *p
	}
	return filepath.Join(dir, "sys", key)
}

// disableIPv6 turns IPv6 off on one interface. Missing IPv6 support (no
// such sysctl) is fine: there is nothing to turn off.
func disableIPv6(name string) error {
	p := SysctlPath(filepath.Join("net/ipv6/conf", name, "disable_ipv6"))
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("disable ipv6: %w", err)
	}
	_, werr := f.WriteString("1")
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("disable ipv6: %w", werr)
	}
	if cerr != nil {
		return fmt.Errorf("disable ipv6: %w", cerr)
	}
	return nil
}

// txQueueLen is the transmit queue given to every TUN the agent makes:
// packets a queue holds for its worker. In the harness's 64-byte test,
// 2048 (16 KiB of ring a queue) lost 9-14 % of a pod's datagrams in its
// TUN queue against 22 % with 1000, and delivered 8 % more; 4096 lost 2 %
// but delivered no more than 2048, for twice the kernel memory
// (docs/PERFORMANCE.md).
const txQueueLen = 2048

func defaultRoute(ifindex int, addr netip.Prefix) *netlink.Route {
	bits := 32
	if addr.Addr().Is6() {
		bits = 128
	}
	zero := make(net.IP, bits/8)
	return &netlink.Route{
		LinkIndex: ifindex,
		Scope:     netlink.SCOPE_LINK,
		Dst:       &net.IPNet{IP: zero, Mask: net.CIDRMask(0, bits)},
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}
