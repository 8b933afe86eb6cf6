package tun

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"

	"github.com/vishvananda/netlink"
	"github.com/vxdp/vxdp/dataplane/packetio"
)

const waitFor = 5 * time.Second

// createIn creates a TUN device inside the named namespace, closed at the
// end of the test.
func createIn(t *testing.T, ns *nstest.Netns, name string) *Device {
	t.Helper()
	var d *Device
	inNetns(t, ns, func() error {
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
func waitUDP(t *testing.T, ch <-chan []byte, dst netip.AddrPort) udpPacket {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				t.Fatalf("reader stopped before a packet to %s arrived", dst)
			}
			if u, ok := parseUDP4(p); ok && u.dst == dst {
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
	inNetns(t, ns, func() error {
		err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	})
}

// podDevice creates a TUN device with o in a fresh namespace and moves it
// into another one, the pod's, as eth0 with addr and MTU 1500, as the
// agent does; the pod's namespace gets no IPv6 noise.
func podDevice(t *testing.T, o Options, addr string) (*Device, *nstest.Netns) {
	t.Helper()
	nsA, nsB := newNetns(t), newNetns(t)
	disableIPv6Default(t, nsB)
	var d *Device
	inNetns(t, nsA, func() (err error) {
		d, err = CreateWith("vxdpt0", o)
		return err
	})
	t.Cleanup(func() { d.Close() })
	if err := d.MoveToNetns(nsB.Path, "eth0", 1500, netip.MustParsePrefix(addr)); err != nil {
		t.Fatal(err)
	}
	return d, nsB
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// addrsAndRoutes lists link's addresses of family fam and its IPv4 routes.
func addrsAndRoutes(t *testing.T, h *netlink.Handle, link netlink.Link, fam int) ([]netlink.Addr, []netlink.Route) {
	t.Helper()
	addrs, err := h.AddrList(link, fam)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := h.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	return addrs, routes
}

// offloads is d.Offloads() by name.
func offloads(d *Device) map[string]packetio.Offload {
	m := map[string]packetio.Offload{}
	for _, o := range d.Offloads() {
		m[o.Name] = o
	}
	return m
}
