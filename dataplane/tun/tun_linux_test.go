package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/nstest"
	"github.com/vxdp/vxdp/internal/pkttest"
)

const waitFor = 5 * time.Second

// createIn creates a TUN device inside the named namespace, closed at the
// end of the test.
func createIn(t *testing.T, ns *nstest.Netns, name string) *Device {
	t.Helper()
	var d *Device
	ns.MustDo(t, func() error {
		var err error
		d, err = Create(name)
		return err
	})
	t.Cleanup(func() { d.Close() })
	return d
}

func routeHandleT(t *testing.T, ns *nstest.Netns) *netlink.Handle {
	t.Helper()
	h, err := ns.NetlinkHandle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// checkOnlyAddr fails t unless want is the only address of link in the
// family, and returns the link's IPv4 routes.
func checkOnlyAddr(t *testing.T, h *netlink.Handle, link netlink.Link, family int, want string) []netlink.Route {
	t.Helper()
	addrs, err := h.AddrList(link, family)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != want {
		t.Errorf("addresses %v, want only %s", addrs, want)
	}
	routes, err := h.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

// waitLinkGone polls until no link called name exists in h's namespace.
func waitLinkGone(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		_, err := h.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s still there after %v (lookup error: %v)", name, waitFor, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reader copies every packet read from d into a channel until Read fails.
func reader(d *Device) <-chan []byte {
	ch := make(chan []byte, 256)
	go func() {
		defer close(ch)
		bufs := make([][]byte, d.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, 65536)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := d.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				select {
				case ch <- bytes.Clone(bufs[i][:sizes[i]]):
				default:
				}
			}
		}
	}()
	return ch
}

// waitUDP waits for a UDP packet to dst on ch, skipping anything else (the
// kernel may emit IPv6 or other noise on a fresh interface).
func waitUDP(t *testing.T, ch <-chan []byte, dst netip.AddrPort) pkttest.UDPInfo {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				t.Fatalf("reader stopped before a packet to %s arrived", dst)
			}
			if u, ok := pkttest.ParseUDP4(p); ok && u.Dst == dst {
				return u
			}
		case <-timeout:
			t.Fatalf("no packet to %s within %v", dst, waitFor)
		}
	}
}

// disableIPv6Default keeps interfaces that later appear in ns free of IPv6,
// so reads see only the test's traffic.
func disableIPv6Default(t *testing.T, ns *nstest.Netns) {
	t.Helper()
	ns.MustDo(t, func() error {
		err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	})
}

func listenUDPIn(t *testing.T, ns *nstest.Netns, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	ns.MustDo(t, func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestMoveToNetnsAndTraffic(t *testing.T) {
	nsA, nsB := nstest.NewNetns(t, "tun"), nstest.NewNetns(t, "tun")
	disableIPv6Default(t, nsB)
	d := createIn(t, nsA, "vxdpt0")
	if d.Name() != "vxdpt0" || d.Index() <= 0 {
		t.Fatalf("after create: name %q index %d", d.Name(), d.Index())
	}

	podIP := netip.MustParsePrefix("192.0.2.10/32")
	if err := d.MoveToNetns(nsB.Path, "eth0", podIP, 1400); err != nil {
		t.Fatal(err)
	}
	if d.Name() != "eth0" {
		t.Errorf("Name() = %q after move, want eth0", d.Name())
	}

	ha, hb := routeHandleT(t, nsA), routeHandleT(t, nsB)
	waitLinkGone(t, ha, "vxdpt0")
	link, err := hb.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 in pod netns: %v", err)
	}
	attrs := link.Attrs()
	if attrs.Index != d.Index() {
		t.Errorf("ifindex %d, Index() %d", attrs.Index, d.Index())
	}
	if attrs.MTU != 1400 {
		t.Errorf("mtu %d, want 1400", attrs.MTU)
	}
	if attrs.Flags&net.FlagUp == 0 {
		t.Errorf("eth0 is not up: %v", attrs.Flags)
	}
	routes := checkOnlyAddr(t, hb, link, netlink.FAMILY_V4, "192.0.2.10/32")
	foundDefault := false
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			foundDefault = r.Scope == netlink.SCOPE_LINK && r.Gw == nil
		}
	}
	if !foundDefault {
		t.Errorf("no link-scope default route via eth0 in %v", routes)
	}

	// Pod -> TUN: the kernel routes it out of eth0 into our descriptor.
	packets := reader(d)
	podConn := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	podAddr := podConn.LocalAddr().(*net.UDPAddr).AddrPort()
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := podConn.WriteToUDPAddrPort([]byte("pod to world"), remote); err != nil {
		t.Fatal(err)
	}
	got := waitUDP(t, packets, remote)
	if got.Src != podAddr || string(got.Payload) != "pod to world" {
		t.Errorf("read %v -> %v %q, want %v -> %v %q", got.Src, got.Dst, got.Payload, podAddr, remote, "pod to world")
	}

	// TUN -> pod: a packet written to the descriptor arrives on the pod's
	// socket. The first one is garbage the kernel must refuse without
	// stopping the batch.
	from := netip.MustParseAddrPort("198.51.100.1:53")
	in := pkttest.UDP4(from, podAddr, []byte("world to pod"))
	n, err := d.Write([][]byte{{0x00, 0x01, 0x02}, append(make([]byte, 8), in...)}, 8)
	if err != nil || n != 1 {
		t.Fatalf("Write = %d, %v; want 1, nil", n, err)
	}
	if d.TXErrors() != 1 {
		t.Errorf("TXErrors = %d, want 1", d.TXErrors())
	}
	podConn.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 2048)
	m, src, err := podConn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("pod socket: %v", err)
	}
	if src != from || string(buf[:m]) != "world to pod" {
		t.Errorf("pod received %q from %v", buf[:m], src)
	}

	// Closing the descriptor deletes the interface in the pod namespace too.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	waitLinkGone(t, hb, "eth0")
	if _, ok := <-packets; ok {
		for range packets {
		}
	}
}

func TestReadBatch(t *testing.T) {
	d, nsB := podDevice(t, Options{}, "192.0.2.10/32")
	c := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	const count = 20
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	for i := 0; i < count; i++ {
		if _, err := c.WriteToUDPAddrPort([]byte{byte(i)}, remote); err != nil {
			t.Fatal(err)
		}
	}

	bufs := make([][]byte, d.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 16+1500)
	}
	sizes := make([]int, len(bufs))
	// All packets are queued before the first Read, so one call must drain
	// them all; a stray packet of another kind would only add to the count.
	timer := time.AfterFunc(waitFor, func() { d.Close() })
	defer timer.Stop()
	n, err := d.Read(bufs, sizes, 16)
	if err != nil {
		t.Fatal(err)
	}
	var seen []byte
	for i := 0; i < n; i++ {
		if u, ok := pkttest.ParseUDP4(bufs[i][16 : 16+sizes[i]]); ok && u.Dst == remote {
			seen = append(seen, u.Payload...)
		}
	}
	if len(seen) != count {
		t.Fatalf("one Read returned %d packets with %d of ours (%v), want all %d", n, len(seen), seen, count)
	}
	for i, b := range seen {
		if int(b) != i {
			t.Fatalf("order: %v", seen)
		}
	}
}

func TestReadDropsOversizedPacket(t *testing.T) {
	d, nsB := podDevice(t, Options{}, "192.0.2.10/32")
	c := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := c.WriteToUDPAddrPort(make([]byte, 1000), remote); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort([]byte("small"), remote); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(waitFor, func() { d.Close() })
	defer timer.Stop()
	bufs := [][]byte{make([]byte, 200)}
	sizes := make([]int, 1)
	n, err := d.Read(bufs, sizes, 0)
	if err != nil || n != 1 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	u, ok := pkttest.ParseUDP4(bufs[0][:sizes[0]])
	if !ok || string(u.Payload) != "small" {
		t.Fatalf("read %d bytes %x, want the small packet", sizes[0], bufs[0][:sizes[0]])
	}
	if d.RXDropped() != 1 {
		t.Errorf("RXDropped = %d, want 1", d.RXDropped())
	}
}

func TestReadUnblocksOnClose(t *testing.T) {
	ns := nstest.NewNetns(t, "tun")
	d := createIn(t, ns, "vxdpt0")
	errc := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 1500)}
		_, err := d.Read(bufs, make([]int, 1), 0)
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Read returned %v, want ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := d.Read([][]byte{make([]byte, 100)}, make([]int, 1), 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if _, err := d.Write([][]byte{make([]byte, 100)}, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	waitLinkGone(t, routeHandleT(t, ns), "vxdpt0")
}

func TestCreateNameInUse(t *testing.T) {
	ns := nstest.NewNetns(t, "tun")
	createIn(t, ns, "vxdpt0")
	ns.IP(t, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	for _, name := range []string{"vxdpt0", "veth0"} {
		ns.MustDo(t, func() error {
			d, err := Create(name)
			if err == nil {
				d.Close()
				return fmt.Errorf("Create(%q) succeeded on a taken name", name)
			}
			if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "already in use") {
				return fmt.Errorf("Create(%q): unclear error %v", name, err)
			}
			return nil
		})
	}
}

func TestMoveToNetnsRollsBack(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, pod *nstest.Netns)
		want  string
	}{
		{"name taken", func(t *testing.T, pod *nstest.Netns) {
			pod.IP(t, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
		}, "already in use"},
		{"default route exists", func(t *testing.T, pod *nstest.Netns) {
			pod.IP(t, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
			pod.IP(t, "link", "set", "veth0", "up")
			pod.IP(t, "link", "set", "veth1", "up")
			pod.IP(t, "route", "add", "default", "dev", "veth0")
		}, "default route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := nstest.NewNetns(t, "tun"), nstest.NewNetns(t, "tun")
			tc.setup(t, nsB)
			d := createIn(t, nsA, "vxdpt1")
			oldIndex := d.Index()
			err := d.MoveToNetns(nsB.Path, "eth0", netip.MustParsePrefix("192.0.2.10/32"), 1400)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("MoveToNetns error %v, want one mentioning %q", err, tc.want)
			}
			ha, hb := routeHandleT(t, nsA), routeHandleT(t, nsB)
			link, err := ha.LinkByName("vxdpt1")
			if err != nil {
				t.Fatalf("device not back home: %v", err)
			}
			// The pod's veth holds ifindex 2, so the round trip can
			// change the device's index; Index must follow.
			if d.Name() != "vxdpt1" || d.Index() != link.Attrs().Index {
				t.Errorf("after failed move: name %q index %d, want vxdpt1 %d (was %d)", d.Name(), d.Index(), link.Attrs().Index, oldIndex)
			}
			if link.Attrs().Flags&net.FlagUp != 0 || link.Attrs().MTU == 1400 {
				t.Errorf("device back home but configured: flags %v mtu %d", link.Attrs().Flags, link.Attrs().MTU)
			}
			if addrs, _ := ha.AddrList(link, netlink.FAMILY_ALL); len(addrs) != 0 {
				t.Errorf("device back home with addresses %v", addrs)
			}
			links, err := hb.LinkList()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range links {
				if l.Type() == "tuntap" {
					t.Errorf("TUN %s left in the pod", l.Attrs().Name)
				}
			}
			// A second attempt with a free name works after the rollback.
			if tc.name == "name taken" {
				if err := d.MoveToNetns(nsB.Path, "eth1", netip.MustParsePrefix("192.0.2.10/32"), 1400); err != nil {
					t.Fatalf("retry: %v", err)
				}
			}
			d.Close()
			waitLinkGone(t, ha, "vxdpt1")
			waitLinkGone(t, hb, "eth1")
		})
	}
}

func TestConfigureHere(t *testing.T) {
	ns := nstest.NewNetns(t, "tun")
	var d *Device
	var disabled []byte
	ns.MustDo(t, func() error {
		var err error
		if d, err = Create("vxdp_host"); err != nil {
			return err
		}
		if err := d.ConfigureHere(netip.MustParsePrefix("10.1.1.1/24"), 1450); err != nil {
			return err
		}
		disabled, err = os.ReadFile("/proc/sys/net/ipv6/conf/vxdp_host/disable_ipv6")
		if errors.Is(err, os.ErrNotExist) {
			disabled, err = []byte("1\n"), nil
		}
		return err
	})
	t.Cleanup(func() { d.Close() })
	if strings.TrimSpace(string(disabled)) != "1" {
		t.Errorf("disable_ipv6 = %q, want 1", disabled)
	}
	h := routeHandleT(t, ns)
	link, err := h.LinkByName("vxdp_host")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1450 || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("mtu %d flags %v", link.Attrs().MTU, link.Attrs().Flags)
	}
	routes := checkOnlyAddr(t, h, link, netlink.FAMILY_ALL, "10.1.1.1/24")
	connected := false
	for _, r := range routes {
		connected = connected || (r.Dst != nil && r.Dst.String() == "10.1.1.0/24")
	}
	if !connected {
		t.Errorf("no connected route 10.1.1.0/24 in %v", routes)
	}

	// From a thread in another namespace the device is not "here".
	other := nstest.NewNetns(t, "tun")
	other.MustDo(t, func() error {
		err := d.ConfigureHere(netip.MustParsePrefix("10.1.2.1/24"), 1500)
		if err == nil || !strings.Contains(err.Error(), "not in the calling thread's network namespace") {
			return fmt.Errorf("ConfigureHere from another netns: %v", err)
		}
		return nil
	})
}

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	d, nsB := podDevice(t, Options{}, "192.0.2.10/32")
	c := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	const runs = 50
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	for i := 0; i < 2*(runs+1); i++ {
		if _, err := c.WriteToUDPAddrPort([]byte("x"), remote); err != nil {
			t.Fatal(err)
		}
	}
	timer := time.AfterFunc(waitFor, func() { d.Close() })
	defer timer.Stop()
	bufs := [][]byte{make([]byte, 1500), make([]byte, 1500)}
	sizes := make([]int, 2)
	if a := testing.AllocsPerRun(runs, func() { d.Read(bufs, sizes, 0) }); a != 0 {
		t.Errorf("Read: %v allocs per call", a)
	}
	pkt := pkttest.UDP4(netip.MustParseAddrPort("198.51.100.1:53"), c.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("y"))
	wb := [][]byte{pkt, pkt}
	if a := testing.AllocsPerRun(runs, func() { d.Write(wb, 0) }); a != 0 {
		t.Errorf("Write: %v allocs per call", a)
	}
}

// When the pod's namespace is destroyed, the kernel deletes the interface
// in it while the agent still holds the descriptor. Read and Write must then
// fail for good instead of hanging or silently dropping.
func TestPodNetnsDestroyed(t *testing.T) {
	nsA, nsB := nstest.NewNetns(t, "tun"), nstest.NewNetns(t, "tun")
	d := createIn(t, nsA, "vxdpt0")
	if err := d.MoveToNetns(nsB.Path, "eth0", netip.MustParsePrefix("192.0.2.10/32"), 1400); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 2048)}
		for {
			if _, err := d.Read(bufs, make([]int, 1), 0); err != nil {
				errc <- err
				return
			}
		}
	}()
	if out, err := exec.Command("ip", "netns", "del", nsB.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrInterfaceGone) {
			t.Fatalf("Read returned %v, want ErrInterfaceGone", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Read still blocked after the pod namespace was destroyed")
	}
	pkt := pkttest.UDP4(netip.MustParseAddrPort("198.51.100.1:53"), netip.MustParseAddrPort("192.0.2.10:9"), nil)
	if n, err := d.Write([][]byte{pkt}, 0); n != 0 || !errors.Is(err, ErrInterfaceGone) {
		t.Errorf("Write = %d, %v; want 0, ErrInterfaceGone", n, err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A run of TCP segments written to an offloading device reaches the pod's
// stack as one super-packet carrying every payload byte in order: what
// the merge's writev assembles is checked on the receiving interface.
func TestWriteMergedSuperPacket(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true}, "10.1.2.20/32")
	var fd int
	nsB.MustDo(t, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(htons(unix.ETH_P_IP)))
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(waitFor))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}

	payload := make([]byte, 5*1398+700)
	for i := range payload {
		payload[i] = byte(i*13 + i>>8)
	}
	super := superPacket(payload, 0x18)
	hdrLen, segs, err := tcp4Layout(super, 1398)
	if err != nil {
		t.Fatal(err)
	}
	const off = 64
	var bufs [][]byte
	for i := 0; i < segs; i++ {
		b := make([]byte, off+1500)
		n := tcp4Segment(b[off:], super, hdrLen, 1398, i, segs)
		bufs = append(bufs, b[:off+n])
	}
	if n, err := d.Write(bufs, off); err != nil || n != segs {
		t.Fatalf("Write: %d of %d, %v", n, segs, err)
	}
	if got := d.merged.Load(); got != uint64(segs) {
		t.Fatalf("%d segments merged, want %d", got, segs)
	}
	if !raceEnabled {
		if a := testing.AllocsPerRun(20, func() { d.Write(bufs, off) }); a != 0 {
			t.Errorf("merged Write: %v allocs per call", a)
		}
	}
	buf := make([]byte, 70000)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("no super-packet seen on eth0: %v", err)
		}
		p := buf[:n]
		if n < 40 || p[9] != unix.IPPROTO_TCP || [4]byte(p[16:20]) != [4]byte{10, 1, 2, 20} {
			continue // something else the kernel sent or received
		}
		if n != 40+len(payload) || !bytes.Equal(p[40:], payload) {
			t.Fatalf("received %d bytes, want one packet of %d with the payload in order", n, 40+len(payload))
		}
		if p[33] != 0x18 || binary.BigEndian.Uint32(p[24:]) != 0xfffff000 {
			t.Fatalf("flags %#x seq %#x", p[33], binary.BigEndian.Uint32(p[24:]))
		}
		return
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// A kernel that refuses TUNSETOFFLOAD (played by failing the ioctl) leaves
// a working device: packets are read singly, merged writes still go out,
// and Offloads says why TSO is off.
func TestOffloadRefused(t *testing.T) {
	orig := setOffload
	setOffload = func(fd, flags int) error { return unix.EINVAL }
	t.Cleanup(func() { setOffload = orig })

	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	offs := offloads(d)
	if o := offs["tun-tso"]; o.Active || !strings.Contains(o.Reason, "TUNSETOFFLOAD refused") {
		t.Fatalf("tun-tso: %+v", o)
	}
	if o := offs["tun-gro"]; !o.Active {
		t.Fatalf("tun-gro: %+v", o)
	}
	c := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := c.WriteToUDPAddrPort([]byte("single"), remote); err != nil {
		t.Fatal(err)
	}
	p := waitUDP(t, reader(d), remote)
	if string(p.Payload) != "single" {
		t.Fatalf("read %q", p.Payload)
	}
}

// Datagrams of one UDP flow written in a batch leave as one UDP GSO
// super-packet, and the pod's socket still receives each datagram as sent;
// a datagram of another flow ends the run and arrives too.
func TestWriteMergedUDP(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	c := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	c.SetReadBuffer(4 << 20)
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	flowA := netip.MustParseAddrPort("198.51.100.1:4000")
	flowB := netip.MustParseAddrPort("198.51.100.2:4000")

	const off = 64
	var bufs [][]byte
	var want []string
	add := func(src netip.AddrPort, payload string) {
		p := pkttest.UDP4(src, dst, []byte(payload))
		bufs = append(bufs, append(make([]byte, off), p...))
		want = append(want, payload)
	}
	for i := 0; i < 30; i++ {
		add(flowA, fmt.Sprintf("flow A datagram %03d ........", i)) // all the same size
	}
	add(flowA, "A short last")
	add(flowB, "flow B alone")
	if n, err := d.Write(bufs, off); err != nil || n != len(bufs) {
		t.Fatalf("Write: %d of %d, %v", n, len(bufs), err)
	}
	var o packetio.Offload
	for _, x := range d.Offloads() {
		if x.Name == "tun-udp-gro" {
			o = x
		}
	}
	if !o.Active || o.Count != 31 {
		t.Fatalf("tun-udp-gro: %+v, want 31 datagrams merged", o)
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 2048)
	for i, w := range want {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if string(buf[:n]) != w {
			t.Fatalf("datagram %d from %v: %q, want %q", i, src, buf[:n], w)
		}
	}
	if !raceEnabled {
		if a := testing.AllocsPerRun(20, func() { d.Write(bufs, off) }); a != 0 {
			t.Errorf("merged UDP Write: %v allocs per call", a)
		}
	}
}

// A kernel that refuses UDP GSO writes (played at the system call with
// EINVAL) costs nothing: that run goes out datagram by datagram, later
// ones are not merged at all, and Offloads says why.
func TestWriteMergedUDPRefused(t *testing.T) {
	orig := writev
	var refused int
	writev = func(fd uintptr, iovs []unix.Iovec) unix.Errno {
		if hdr := unsafe.Slice(iovs[0].Base, vnetHdrLen); hdr[1] == vnetGSOUDPL4 {
			refused++
			return unix.EINVAL
		}
		return orig(fd, iovs)
	}
	t.Cleanup(func() { writev = orig })

	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	c := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	const off = 64
	var bufs [][]byte
	for i := 0; i < 10; i++ {
		p := pkttest.UDP4(netip.MustParseAddrPort("198.51.100.1:4000"), dst, fmt.Appendf(nil, "datagram %02d", i))
		bufs = append(bufs, append(make([]byte, off), p...))
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 2048)
	for round := 0; round < 2; round++ {
		if n, err := d.Write(bufs, off); err != nil || n != len(bufs) {
			t.Fatalf("round %d: Write %d of %d, %v (tx errors %d)", round, n, len(bufs), err, d.TXErrors())
		}
		for i := range bufs {
			n, err := c.Read(buf)
			if want := fmt.Sprintf("datagram %02d", i); err != nil || string(buf[:n]) != want {
				t.Fatalf("round %d: got %q, %v; want %q", round, buf[:n], err, want)
			}
		}
	}
	if refused != 1 || d.TXErrors() != 0 {
		t.Fatalf("%d UDP GSO writes tried (want 1), %d tx errors", refused, d.TXErrors())
	}
	if o := offloads(d)["tun-udp-gro"]; o.Active || !strings.Contains(o.Reason, "invalid argument") {
		t.Fatalf("tun-udp-gro after refusal: %+v", o)
	}
}

// A pod that sends with UDP_SEGMENT hands the TUN one UDP super-packet
// (USO); Read cuts it into the datagrams the application meant, each with
// its own valid headers and checksum.
func TestReadUSO(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true}, "192.0.2.10/32")
	if o := offloads(d)["tun-uso"]; !o.Active {
		t.Skipf("kernel without USO on TUN: %s", o.Reason) // before Linux 6.2
	}
	c := listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0"))
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 100) })
	if serr != nil {
		t.Fatalf("UDP_SEGMENT: %v", serr)
	}
	payload := make([]byte, 950)
	for i := range payload {
		payload[i] = byte(i / 100)
	}
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := c.WriteToUDPAddrPort(payload, remote); err != nil {
		t.Fatal(err)
	}
	ch := reader(d)
	for i := 0; i < 10; i++ {
		var p []byte
		select {
		case p = <-ch:
		case <-time.After(waitFor):
			t.Fatalf("datagram %d missing", i)
		}
		u, ok := pkttest.ParseUDP4(p)
		if !ok || u.Dst != remote {
			i--
			continue // kernel noise
		}
		want := payload[i*100 : min(i*100+100, len(payload))]
		if !bytes.Equal(u.Payload, want) {
			t.Fatalf("datagram %d: %d bytes %x, want %d bytes", i, len(u.Payload), u.Payload[:min(4, len(u.Payload))], len(want))
		}
		ihl := int(p[0]&0xf) * 4
		if encap.Checksum(p[:ihl], 0) != 0 {
			t.Fatalf("datagram %d: bad IPv4 checksum", i)
		}
		if encap.Checksum(p[ihl:], encap.PseudoHeaderSumV4([4]byte(p[12:16]), [4]byte(p[16:20]), encap.ProtoUDP, uint16(len(p)-ihl))) != 0 {
			t.Fatalf("datagram %d: bad UDP checksum", i)
		}
	}
	if o := offloads(d)["tun-uso"]; o.Count != 1 || o.Largest != 20+8+950 {
		t.Fatalf("tun-uso: %+v, want one super-packet of 978 bytes", o)
	}
}

// A kernel that knows TSO but not USO (before Linux 6.2, played by
// refusing the USO flags) keeps TSO.
func TestOffloadWithoutUSO(t *testing.T) {
	orig := setOffload
	setOffload = func(fd, flags int) error {
		if flags&(unix.TUN_F_USO4|unix.TUN_F_USO6) != 0 {
			return unix.EINVAL
		}
		return orig(fd, flags)
	}
	t.Cleanup(func() { setOffload = orig })
	ns := nstest.NewNetns(t, "tun")
	var d *Device
	ns.MustDo(t, func() (err error) {
		d, err = CreateWith("vxdpt0", Options{Offload: true})
		return err
	})
	t.Cleanup(func() { d.Close() })
	got := offloads(d)
	if o := got["tun-uso"]; o.Active || !strings.Contains(o.Reason, "USO refused") {
		t.Errorf("tun-uso: %+v", o)
	}
	if o := got["tun-tso"]; !o.Active {
		t.Errorf("tun-tso: %+v", o)
	}
}

// A multi-queue device spreads a pod's flows over its queues, each
// readable on its own, and goes away with all its queues on Close.
func TestMultiQueue(t *testing.T) {
	d, nsB := podDevice(t, Options{Offload: true, Queues: 2}, "192.0.2.10/32")
	qs := d.Queues()
	if len(qs) != 2 || qs[0] != packetio.Device(d) || qs[1].Name() != "eth0" {
		t.Fatalf("queues %v", qs)
	}
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	var conns []*net.UDPConn
	for range 32 {
		conns = append(conns, listenUDPIn(t, nsB, netip.MustParseAddrPort("192.0.2.10:0")))
	}
	for _, c := range conns {
		if _, err := c.WriteToUDPAddrPort([]byte("flow"), remote); err != nil {
			t.Fatal(err)
		}
	}
	seen := [2]int{}
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	for qi, q := range qs {
		timer := time.AfterFunc(time.Second, func() { d.Close() })
		for seen[qi] == 0 {
			n, err := q.Read(bufs, sizes, 0)
			if err != nil {
				break
			}
			if u, ok := pkttest.ParseUDP4(bufs[0][:sizes[0]]); n == 1 && ok && u.Dst == remote {
				seen[qi]++
			}
		}
		timer.Stop()
	}
	if seen[0] == 0 || seen[1] == 0 {
		t.Fatalf("packets per queue %v: want flows on both", seen)
	}
	// Writes go out whichever queue is free and reach the pod.
	c := conns[0]
	dst := c.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt := pkttest.UDP4(netip.MustParseAddrPort("198.51.100.1:53"), dst, []byte("back"))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if n, err := d.Write([][]byte{pkt, pkt}, 0); n != 2 || err != nil {
				t.Errorf("Write = %d, %v", n, err)
			}
		})
	}
	wg.Wait()
	c.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 64)
	for i := 0; i < 8; i++ {
		if n, err := c.Read(buf); err != nil || string(buf[:n]) != "back" {
			t.Fatalf("reply %d: %q, %v", i, buf[:n], err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	waitLinkGone(t, routeHandleT(t, nsB), "eth0")
}

// offloads returns d's offloads by name.
func offloads(d *Device) map[string]packetio.Offload {
	m := map[string]packetio.Offload{}
	for _, o := range d.Offloads() {
		m[o.Name] = o
	}
	return m
}

// podDevice creates a TUN device with o in a fresh namespace and moves it
// into another one, the pod's, as eth0 with addr and MTU 1500, as the
// agent does; the pod's namespace gets no IPv6 noise.
func podDevice(t *testing.T, o Options, addr string) (*Device, *nstest.Netns) {
	t.Helper()
	nsA, nsB := nstest.NewNetns(t, "tun"), nstest.NewNetns(t, "tun")
	disableIPv6Default(t, nsB)
	var d *Device
	nsA.MustDo(t, func() (err error) {
		d, err = CreateWith("vxdpt0", o)
		return err
	})
	t.Cleanup(func() { d.Close() })
	if err := d.MoveToNetns(nsB.Path, "eth0", netip.MustParsePrefix(addr), 1500); err != nil {
		t.Fatal(err)
	}
	return d, nsB
}
