package dataplane

import (
	"net"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// nopDevice accepts every write and never has anything to read; it lets
// the per-packet path run without any I/O cost or allocation of its own.
type nopDevice struct{ name string }

func (d *nopDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return 0, net.ErrClosed
}
func (d *nopDevice) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (d *nopDevice) BatchSize() int                               { return 32 }
func (d *nopDevice) Name() string                                 { return d.name }
func (d *nopDevice) Close() error                                 { return nil }

// nopUnderlay is nopDevice's underlay: it takes every payload.
type nopUnderlay struct{ nopDevice }

func (u *nopUnderlay) Receive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	return 0, net.ErrClosed
}
func (u *nopUnderlay) Send(bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	return len(bufs), nil
}
func (u *nopUnderlay) SourcePort(flow uint32) uint16     { return encap.SourcePort(flow) }
func (u *nopUnderlay) SourcePorts() packetio.SourcePorts { return packetio.SourcePorts{} }

func newBenchEngine(tb testing.TB) (*Engine, *endpoint) {
	tb.Helper()
	e, err := New(Config{
		NodeIP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.1.1.0/24"),
		PodCIDR6: netip.MustParsePrefix("2001:db8:1:1::/64"), TunnelPort: 8472, UnderlayMTU: 1500,
	}, nil, []packetio.Underlay{&nopUnderlay{nopDevice{"u"}}}, &nopDevice{"h"}, func(EndpointSpec, int) (packetio.Device, error) { return &nopDevice{"p"}, nil }, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.AddNode(NodeSpec{Name: "n2", IP: netip.MustParseAddr("192.0.2.2"), PodCIDR: netip.MustParsePrefix("10.1.2.0/24"),
		PodCIDR6: netip.MustParsePrefix("2001:db8:1:2::/64")}); err != nil {
		tb.Fatal(err)
	}
	for i := 3; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{192, 0, 2 + byte(i>>8), byte(i)})
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2 + byte(i>>8), byte(i), 0}), 24)
		p6 := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 2, byte(i >> 8), byte(i)}), 64)
		if err := e.AddNode(NodeSpec{Name: "n" + ip.String(), IP: ip, PodCIDR: p, PodCIDR6: p6}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := e.AddEndpoint(EndpointSpec{Name: "a", IP: netip.MustParseAddr("10.1.1.10"), IP6: benchPodA6.addr(), Identity: 1000}); err != nil {
		tb.Fatal(err)
	}
	if err := e.AddEndpoint(EndpointSpec{Name: "b", IP: netip.MustParseAddr("10.1.1.11"), IP6: benchPodB6.addr()}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Close() })
	return e, e.endpoints["a"]
}

func fillUDP(b []byte, src, dst [4]byte, size int) {
	encap.IPv4(b).Encode(&encap.IPv4Fields{TotalLen: uint16(size), TTL: 64, Protocol: encap.ProtoUDP, Source: src, Destination: dst})
	encap.UDP(b[20:]).Encode(1000, 2000, uint16(size-20), 0)
}

// addr16 is an IPv6 address as the packet builders of this file take it.
type addr16 [16]byte

func (a addr16) addr() netip.Addr { return netip.AddrFrom16(a) }

// The benchmark engine's IPv6 addresses: its pods a and b, a pod of node
// n2, a hole in its own pod CIDR.
var (
	benchPodA6 = addr16(netip.MustParseAddr("2001:db8:1:1::10").As16())
	benchPodB6 = addr16(netip.MustParseAddr("2001:db8:1:1::11").As16())
	benchPeer6 = addr16(netip.MustParseAddr("2001:db8:1:2::20").As16())
	benchHole6 = addr16(netip.MustParseAddr("2001:db8:1:1::99").As16())
)

// fillUDP6 writes an IPv6/UDP packet of size bytes into b; with ext, a
// Destination Options header of 8 bytes sits in front of the UDP header.
func fillUDP6(b []byte, src, dst addr16, size int, ext bool) {
	next, off := uint8(encap.ProtoUDP), encap.IPv6Len
	if ext {
		next, off = encap.ProtoIPv6Opts, encap.IPv6Len+8
		copy(b[encap.IPv6Len:], []byte{encap.ProtoUDP, 0, 1, 4, 0, 0, 0, 0})
	}
	_ = encap.IPv6(b).Encode(&encap.IPv6Fields{PayloadLen: uint16(size - encap.IPv6Len), NextHeader: next, HopLimit: 64, Source: src, Destination: dst})
	encap.UDP(b[off:]).Encode(1000, 2000, uint16(size-off), 0)
}

// A batch of pod packets to a remote node, a batch to a local pod, a batch
// of tunnel packets to a pod: none may allocate.
func TestPacketPathZeroAllocs(t *testing.T) {
	e, ep := newBenchEngine(t)
	cases := []struct {
		name string
		kind sourceKind
		ep   *endpoint
		fill func(b []byte) int
		tos  uint8 // the outer TOS of ingress payloads
	}{
		{"egress tunnel", sourcePod, ep, func(b []byte) int {
			fillUDP(b[encap.Headroom:], [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, 1000)
			return 1000
		}, 0},
		{"egress local", sourcePod, ep, func(b []byte) int {
			fillUDP(b[encap.Headroom:], [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 1, 11}, 1000)
			return 1000
		}, 0},
		{"ingress", sourceUnderlay, nil, func(b []byte) int {
			const start = encap.Headroom + encap.VXLANLen + encap.EthernetLen
			fillUDP(b[start:], [4]byte{10, 1, 2, 20}, [4]byte{10, 1, 1, 10}, 1000)
			peer := netip.MustParseAddr("192.0.2.2")
			if _, err := encap.EncapVXLAN(b, start, 1000, 2000, e.mac, encap.TunnelMAC(peer)); err != nil {
				t.Fatal(err)
			}
			return start + 1000 - encap.Headroom
		}, 0},
		{"ingress ce over ect(0)", sourceUnderlay, nil, func(b []byte) int {
			const start = encap.Headroom + encap.VXLANLen + encap.EthernetLen
			fillUDP(b[start:], [4]byte{10, 1, 2, 20}, [4]byte{10, 1, 1, 10}, 1000)
			encap.IPv4(b[start:]).SetTOS(uint8(encap.ECNECT0))
			peer := netip.MustParseAddr("192.0.2.2")
			if _, err := encap.EncapVXLAN(b, start, 1000, 2000, e.mac, encap.TunnelMAC(peer)); err != nil {
				t.Fatal(err)
			}
			return start + 1000 - encap.Headroom
		}, uint8(encap.ECNCE)},
		{"egress icmp error", sourcePod, ep, func(b []byte) int {
			fillUDP(b[encap.Headroom:], [4]byte{10, 1, 1, 10}, [4]byte{10, 1, 1, 99}, 100)
			return 100
		}, 0},
		{"egress tunnel ipv6", sourcePod, ep, func(b []byte) int {
			fillUDP6(b[encap.Headroom:], benchPodA6, benchPeer6, 1000, false)
			return 1000
		}, 0},
		{"egress tunnel ipv6 extension header", sourcePod, ep, func(b []byte) int {
			fillUDP6(b[encap.Headroom:], benchPodA6, benchPeer6, 1000, true)
			return 1000
		}, 0},
		{"egress local ipv6", sourcePod, ep, func(b []byte) int {
			fillUDP6(b[encap.Headroom:], benchPodA6, benchPodB6, 1000, false)
			return 1000
		}, 0},
		{"ingress ipv6", sourceUnderlay, nil, func(b []byte) int {
			const start = encap.Headroom + encap.VXLANLen + encap.EthernetLen
			fillUDP6(b[start:], benchPeer6, benchPodA6, 1000, false)
			peer := netip.MustParseAddr("192.0.2.2")
			if _, err := encap.EncapVXLAN(b, start, 1000, 2000, e.mac, encap.TunnelMAC(peer)); err != nil {
				t.Fatal(err)
			}
			return start + 1000 - encap.Headroom
		}, 0},
		{"ingress ipv6 ce over ect(1)", sourceUnderlay, nil, func(b []byte) int {
			const start = encap.Headroom + encap.VXLANLen + encap.EthernetLen
			fillUDP6(b[start:], benchPeer6, benchPodA6, 1000, false)
			encap.IPv6(b[start:]).SetECN(encap.ECNECT1)
			peer := netip.MustParseAddr("192.0.2.2")
			if _, err := encap.EncapVXLAN(b, start, 1000, 2000, e.mac, encap.TunnelMAC(peer)); err != nil {
				t.Fatal(err)
			}
			return start + 1000 - encap.Headroom
		}, uint8(encap.ECNCE)},
		{"egress icmpv6 error", sourcePod, ep, func(b []byte) int {
			fillUDP6(b[encap.Headroom:], benchPodA6, benchHole6, 100, false)
			return 100
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st DeviceStats
			var w *worker
			if c.kind == sourceUnderlay {
				w = newWorker(e, nil, &nopUnderlay{}, &st, c.kind, nil)
				w.growTo(w.batch)
				for i := range w.meta {
					w.meta[i] = packetio.Meta{Remote: netip.MustParseAddrPort("192.0.2.2:50000"), LocalPort: 8472, TOS: c.tos}
				}
			} else {
				w = newWorker(e, &nopDevice{}, nil, &st, c.kind, c.ep)
				w.growTo(w.batch)
			}
			n := len(w.bufs)
			allocs := testing.AllocsPerRun(200, func() {
				for i := 0; i < n; i++ {
					w.sizes[i] = c.fill(w.bufs[i])
				}
				w.process(n)
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per batch", allocs)
			}
			if st.RxPackets.Load() == 0 {
				t.Fatal("nothing processed")
			}
			var drops uint64
			for i := range e.drops {
				if DropReason(i) != DropNoRoute {
					drops += e.drops[i].Load()
				}
			}
			if drops != 0 {
				t.Fatalf("unexpected drops %d", drops)
			}
		})
	}
}

func BenchmarkEgressTunnel(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(encapSizeName(size), func(b *testing.B) {
			e, ep := newBenchEngine(b)
			var st DeviceStats
			w := newWorker(e, &nopDevice{}, nil, &st, sourcePod, ep)
			w.growTo(w.batch) // a worker under load
			n := len(w.bufs)
			b.ReportAllocs()
			b.SetBytes(int64(size * n))
			for b.Loop() {
				for i := 0; i < n; i++ {
					fillUDP(w.bufs[i][encap.Headroom:], [4]byte{10, 1, 1, 10}, [4]byte{10, 2, byte(i), 20}, size)
					w.sizes[i] = size
				}
				w.process(n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/packet")
		})
	}
}

// BenchmarkEgressTunnelV6 is BenchmarkEgressTunnel for IPv6 pods: a
// batch to pods of many nodes, each packet through the extension header
// walk, the IPv6 FIB and the IPv6 flow hash.
func BenchmarkEgressTunnelV6(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(encapSizeName(size), func(b *testing.B) {
			e, ep := newBenchEngine(b)
			var st DeviceStats
			w := newWorker(e, &nopDevice{}, nil, &st, sourcePod, ep)
			w.growTo(w.batch) // a worker under load
			n := len(w.bufs)
			b.ReportAllocs()
			b.SetBytes(int64(size * n))
			for b.Loop() {
				for i := 0; i < n; i++ {
					// A pod of node i+3 (2001:db8:2:<i+3>::/64).
					dst := addr16{0x20, 0x01, 0x0d, 0xb8, 2, 0, byte(3 + i), 15: 0x20}
					fillUDP6(w.bufs[i][encap.Headroom:], benchPodA6, dst, size, false)
					w.sizes[i] = size
				}
				w.process(n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/packet")
			if d := e.Drops(DropNoRoute) + e.Drops(DropInvalidHeader); d != 0 || e.underlays[0].stats.TxPackets.Load() == 0 {
				b.Fatalf("%d packets dropped, %d tunnelled", d, e.underlays[0].stats.TxPackets.Load())
			}
		})
	}
}

func encapSizeName(n int) string {
	if n == 64 {
		return "64B"
	}
	return "1400B"
}
