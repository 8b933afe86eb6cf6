package tun

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

func TestMoveToNetnsAndTraffic(t *testing.T) {
	nsA, nsB := newNetns(t), newNetns(t)
	disableIPv6Default(t, nsB)
	d := createIn(t, nsA, "vxdpt0")
	if d.Name() != "vxdpt0" || d.Index() <= 0 {
		t.Fatalf("after create: name %q index %d", d.Name(), d.Index())
	}

	podIP := netip.MustParsePrefix("192.0.2.10/32")
	if err := d.MoveToNetns(nsB.Path, "eth0", 1400, podIP); err != nil {
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
	addrs, routes := addrsAndRoutes(t, hb, link, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "192.0.2.10/32" {
		t.Errorf("addresses %v, want [192.0.2.10/32]", addrs)
	}
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
	podConn := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	podAddr := podConn.LocalAddr().(*net.UDPAddr).AddrPort()
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := podConn.WriteToUDPAddrPort([]byte("pod to world"), remote); err != nil {
		t.Fatal(err)
	}
	got := waitUDP(t, packets, remote)
	if got.src != podAddr || string(got.payload) != "pod to world" {
		t.Errorf("read %v -> %v %q, want %v -> %v %q", got.src, got.dst, got.payload, podAddr, remote, "pod to world")
	}

	// TUN -> pod: a packet written to the descriptor arrives on the pod's
	// socket. The first one is garbage the kernel must refuse without
	// stopping the batch.
	from := netip.MustParseAddrPort("198.51.100.1:53")
	in := udp4(from, podAddr, []byte("world to pod"))
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

func TestCreateNameInUse(t *testing.T) {
	ns := newNetns(t)
	createIn(t, ns, "vxdpt0")
	ipIn(t, ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	for _, name := range []string{"vxdpt0", "veth0"} {
		inNetns(t, ns, func() error {
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
			ipIn(t, pod, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
		}, "already in use"},
		{"default route exists", func(t *testing.T, pod *nstest.Netns) {
			ipIn(t, pod, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
			ipIn(t, pod, "link", "set", "veth0", "up")
			ipIn(t, pod, "link", "set", "veth1", "up")
			ipIn(t, pod, "route", "add", "default", "dev", "veth0")
		}, "default route"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := newNetns(t), newNetns(t)
			tc.setup(t, nsB)
			d := createIn(t, nsA, "vxdpt1")
			oldIndex := d.Index()
			err := d.MoveToNetns(nsB.Path, "eth0", 1400, netip.MustParsePrefix("192.0.2.10/32"))
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
				if err := d.MoveToNetns(nsB.Path, "eth1", 1400, netip.MustParsePrefix("192.0.2.10/32")); err != nil {
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
	ns := newNetns(t)
	var d *Device
	var disabled []byte
	inNetns(t, ns, func() error {
		var err error
		if d, err = Create("vxdp_host"); err != nil {
			return err
		}
		if err := d.ConfigureHere(1450, netip.MustParsePrefix("10.1.1.1/24")); err != nil {
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
	addrs, routes := addrsAndRoutes(t, h, link, netlink.FAMILY_ALL)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.1.1.1/24" {
		t.Errorf("addresses %v, want only 10.1.1.1/24", addrs)
	}
	connected := false
	for _, r := range routes {
		connected = connected || (r.Dst != nil && r.Dst.String() == "10.1.1.0/24")
	}
	if !connected {
		t.Errorf("no connected route 10.1.1.0/24 in %v", routes)
	}

	// From a thread in another namespace the device is not "here".
	other := newNetns(t)
	inNetns(t, other, func() error {
		err := d.ConfigureHere(1500, netip.MustParsePrefix("10.1.2.1/24"))
		if err == nil || !strings.Contains(err.Error(), "not in the calling thread's network namespace") {
			return fmt.Errorf("ConfigureHere from another netns: %v", err)
		}
		return nil
	})
}

// When the pod's namespace is destroyed, the kernel deletes the interface
// in it while the agent still holds the descriptor. Read and Write must then
// fail for good instead of hanging or silently dropping.
func TestPodNetnsDestroyed(t *testing.T) {
	nsA, nsB := newNetns(t), newNetns(t)
	d := createIn(t, nsA, "vxdpt0")
	if err := d.MoveToNetns(nsB.Path, "eth0", 1400, netip.MustParsePrefix("192.0.2.10/32")); err != nil {
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
	pkt := udp4(netip.MustParseAddrPort("198.51.100.1:53"), netip.MustParseAddrPort("192.0.2.10:9"), nil)
	if n, err := d.Write([][]byte{pkt}, 0); n != 0 || !errors.Is(err, ErrInterfaceGone) {
		t.Errorf("Write = %d, %v; want 0, ErrInterfaceGone", n, err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("Close: %v", err)
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
		conns = append(conns, nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0")))
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
			if u, ok := parseUDP4(bufs[0][:sizes[0]]); n == 1 && ok && u.dst == remote {
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
	pkt := udp4(netip.MustParseAddrPort("198.51.100.1:53"), dst, []byte("back"))
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

func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	d, nsB := podDevice(t, Options{}, "192.0.2.10/32")
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
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
	pkt := udp4(netip.MustParseAddrPort("198.51.100.1:53"), c.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("y"))
	wb := [][]byte{pkt, pkt}
	if a := testing.AllocsPerRun(runs, func() { d.Write(wb, 0) }); a != 0 {
		t.Errorf("Write: %v allocs per call", a)
	}
}

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
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	if _, err := c.WriteToUDPAddrPort([]byte("single"), remote); err != nil {
		t.Fatal(err)
	}
	p := waitUDP(t, reader(d), remote)
	if string(p.payload) != "single" {
		t.Fatalf("read %q", p.payload)
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
	ns := newNetns(t)
	var d *Device
	inNetns(t, ns, func() (err error) {
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

// SetMTU changes the interface's MTU in the namespace it was moved to,
// from a thread that never entered it; once that namespace is gone it
// fails instead of touching an interface of the same name elsewhere.
func TestSetMTUInPodNetns(t *testing.T) {
	nsA, nsB := newNetns(t), newNetns(t)
	d := createIn(t, nsA, "vxdpt0")
	if err := d.MoveToNetns(nsB.Path, "eth0", 1450, netip.MustParsePrefix("192.0.2.10/32")); err != nil {
		t.Fatal(err)
	}
	// A handle of its own, closed before the namespace goes: an open
	// socket in it would keep it alive.
	mtu := func() int {
		t.Helper()
		hb, err := nsB.NetlinkHandle()
		if err != nil {
			t.Fatal(err)
		}
		defer hb.Close()
		link, err := hb.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		return link.Attrs().MTU
	}
	if err := d.SetMTU(1350); err != nil {
		t.Fatal(err)
	}
	if got := mtu(); got != 1350 {
		t.Fatalf("mtu %d after SetMTU(1350)", got)
	}
	if err := d.SetMTU(1350); err != nil {
		t.Fatalf("SetMTU to the MTU it has: %v", err)
	}
	if err := d.SetMTU(0); err == nil {
		t.Fatal("SetMTU(0) accepted")
	}
	if out, err := exec.Command("ip", "netns", "del", nsB.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	deadline := time.Now().Add(waitFor)
	for d.SetMTU(1400) == nil {
		if time.Now().After(deadline) {
			t.Fatal("SetMTU still succeeds after the pod namespace was destroyed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A dual-stack pod device: one address of each family, a default route of
// each, the IPv6 address usable at once (no duplicate address detection)
// and no link-local address of the kernel's making.
func TestMoveToNetnsDualStack(t *testing.T) {
	nsA, nsB := newNetns(t), newNetns(t)
	d := createIn(t, nsA, "vxdpt0")
	if err := d.MoveToNetns(nsB.Path, "eth0", 1400, netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("fd00:1:1::10/128")); err != nil {
		t.Fatal(err)
	}
	hb := routeHandleT(t, nsB)
	link, err := hb.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := hb.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != "fd00:1:1::10/128" || addrs[0].Flags&unix.IFA_F_TENTATIVE != 0 {
		t.Errorf("IPv6 addresses %+v, want fd00:1:1::10/128 alone and not tentative", addrs)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := hb.RouteList(link, fam)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				found = true
			}
		}
		if !found {
			t.Errorf("family %d: no default route through eth0 in %v", fam, routes)
		}
	}
	if err := d.MoveToNetns(nsA.Path, "eth1", 1400, netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("192.0.2.11/32")); err == nil {
		t.Error("two IPv4 addresses accepted")
	}
}

// With a busy-poll budget, a Read that finds the queue empty keeps trying,
// and a packet that comes within the budget is counted as taken that way
// (busy-poll offload); without one the Read parks at once. With and
// without offloads, whose reads take different paths.
func TestBusyPoll(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			d, nsB := podDevice(t, Options{Offload: offload}, "192.0.2.10/32")
			c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
			remote := netip.MustParseAddrPort("198.51.100.1:9")
			timer := time.AfterFunc(waitFor, func() { d.Close() })
			defer timer.Stop()
			if o := offloads(d)["busy-poll"]; o.Active || o.Count != 0 {
				t.Fatalf("busy-poll before a budget: %+v", o)
			}
			bufs, sizes := [][]byte{make([]byte, 1500)}, make([]int, 1)
			late := func(budget time.Duration) {
				t.Helper()
				d.SetBusyPoll(budget)
				send := time.AfterFunc(30*time.Millisecond, func() { c.WriteToUDPAddrPort([]byte("late"), remote) })
				defer send.Stop()
				for {
					n, err := d.Read(bufs, sizes, 0)
					if err != nil {
						t.Fatal(err)
					}
					// Only the datagram counts; the kernel may send
					// others of its own (router solicitations).
					if n == 1 && bytes.HasSuffix(bufs[0][:sizes[0]], []byte("late")) {
						return
					}
				}
			}
			late(5 * time.Second)
			if o := offloads(d)["busy-poll"]; !o.Active || o.Count != 1 {
				t.Errorf("busy-poll after a packet within the budget: %+v, want active, count 1", o)
			}
			late(5 * time.Millisecond)
			late(0)
			if o := offloads(d)["busy-poll"]; o.Active || o.Count != 1 {
				t.Errorf("busy-poll after packets past the budget and without one: %+v, want inactive, count 1", o)
			}
		})
	}
}

// A reader that busy-polls must not hold up the packets of a reader parked
// in the Go runtime's poller: it watches the other busy-polling readers'
// queues and parks as soon as one has a packet, so that its thread takes
// that packet. Each round wakes reader A from the poller and has it spin,
// then sends the parked reader B a packet and, last, A one more, from
// processes outside this one (a packet this process sent would be noticed
// by the thread that sent it). B's delay is from ping's send-time stamp to
// B's Read. A's spin ends for B's packet, and B's, which starts once B
// has read it, for A's last packet: both handed over. Left
// to the runtime, B's packet could wait for the runtime's monitor, which
// polls every 10 ms when no thread waits in the poller, or for the end of
// A's spin.
func TestBusyPollLeavesOtherReaders(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	dA, nsA := podDevice(t, Options{}, "192.0.2.10/32")
	dB, nsB := podDevice(t, Options{}, "192.0.2.20/32")
	timer := time.AfterFunc(time.Minute, func() { dA.Close(); dB.Close() })
	defer timer.Stop()

	// The readers keep what they see without waking any goroutine: a
	// goroutine woken leaves a thread polling when it parks again.
	var (
		mu     sync.Mutex
		delays []time.Duration
		done   sync.WaitGroup
	)
	read := func(d *Device, seen func(pkt []byte)) {
		defer done.Done()
		bufs, sizes := [][]byte{make([]byte, 1500)}, make([]int, 1)
		for {
			n, err := d.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			if n == 1 {
				seen(bufs[0][:sizes[0]])
			}
		}
	}
	done.Add(2)
	go read(dA, func([]byte) {})
	go read(dB, func(pkt []byte) {
		now := time.Now()
		// ping's echo request carries its send time (struct timeval)
		// at the start of its data.
		if len(pkt) < 20+8+16 || pkt[0]>>4 != 4 || pkt[9] != unix.IPPROTO_ICMP {
			return
		}
		icmp := pkt[int(pkt[0]&0xf)*4:]
		if len(icmp) < 8+16 || icmp[0] != 8 {
			return
		}
		sec := int64(binary.LittleEndian.Uint64(icmp[8:]))
		usec := int64(binary.LittleEndian.Uint64(icmp[16:]))
		mu.Lock()
		delays = append(delays, now.Sub(time.Unix(sec, usec*1000)))
		mu.Unlock()
	})
	t.Cleanup(func() { dA.Close(); dB.Close(); done.Wait() })

	const rounds = 7
	ping := func(ns *nstest.Netns) string {
		return "ip netns exec " + ns.Name + " ping -n -q -c 1 -W 0.2 198.51.100.1 >/dev/null &"
	}
	script := ping(nsA) + "\nsleep 0.05\n" + ping(nsB) + "\nsleep 0.05\n" + ping(nsA) + "\nwait\n"
	yields := func(d *Device) uint64 { return d.sum(func(q *Device) uint64 { return q.busy.Yields() }) }
	var handed uint64
	for i := 0; i < rounds; i++ {
		beforeA, beforeB := yields(dA), yields(dB)
		dA.SetBusyPoll(time.Minute)
		dB.SetBusyPoll(time.Minute)
		time.Sleep(20 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := nstest.Command(ctx, "sh", "-c", script).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("round %d: %v: %s", i, err, out)
		}
		// Stop the spins so that both park before the next round.
		dA.SetBusyPoll(0)
		dB.SetBusyPoll(0)
		time.Sleep(20 * time.Millisecond)
		handed += yields(dA) - beforeA + yields(dB) - beforeB
	}
	mu.Lock()
	got := slices.Clone(delays)
	mu.Unlock()
	if len(got) != rounds {
		t.Fatalf("B read %d echo requests, want %d", len(got), rounds)
	}
	slices.Sort(got)
	// Parked behind the spin, B would wait for the runtime's monitor:
	// most delays would come out at several milliseconds. Handed over,
	// B's packet is read in tens of microseconds.
	if median := got[rounds/2]; median > 2*time.Millisecond {
		t.Errorf("B's packets waited %v (sorted) while A spun, median %v: want under 2ms", got, median)
	}
	// A thread of the runtime that waits in the poller may take a packet
	// before the spinning reader sees it (on a busy machine, where the
	// spinner waits for its CPU): a round may hand nothing over, but
	// not every round.
	if handed == 0 {
		t.Errorf("no spin was handed over to the other reader in %d rounds", rounds)
	}
	t.Logf("B's delays while A spun: %v; spins handed over: %d", got, handed)
}

// TestKernelDropped fills the interface's queue without reading it: what
// the ring cannot hold the kernel drops and KernelDropped counts.
func TestKernelDropped(t *testing.T) {
	d, nsB := podDevice(t, Options{}, "192.0.2.10/32")
	c := nsB.ListenUDP(t, netip.MustParseAddrPort("192.0.2.10:0"))
	before, err := d.KernelDropped()
	if err != nil {
		t.Fatal(err)
	}
	const sent = txQueueLen + 1000
	remote := netip.MustParseAddrPort("198.51.100.1:9")
	for i := 0; i < sent; i++ {
		if _, err := c.WriteToUDPAddrPort([]byte("unread"), remote); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	after, err := d.KernelDropped()
	if err != nil {
		t.Fatal(err)
	}
	// The ring holds txQueueLen; the kernel may queue a few packets of its
	// own, so the drops are at least the rest and at most all sent.
	if got := after - before; got < sent-txQueueLen || got > sent {
		t.Errorf("KernelDropped rose by %d after %d datagrams into a ring of %d", got, sent, txQueueLen)
	}
	d.Close()
	if _, err := d.KernelDropped(); err == nil {
		t.Error("KernelDropped of a closed device: no error")
	}
}
