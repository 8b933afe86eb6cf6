package dataplane_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// TOS bytes of the tests: DSCP AF41 (34) or CS1 (8) with each ECN field.
const (
	af41NotECT = 34<<2 | uint8(encap.ECNNotECT)
	af41ECT0   = 34<<2 | uint8(encap.ECNECT0)
	af41ECT1   = 34<<2 | uint8(encap.ECNECT1)
	af41CE     = 34<<2 | uint8(encap.ECNCE)
	cs1ECT0    = 8<<2 | uint8(encap.ECNECT0)
)

// The outer header leaves with the inner packet's DSCP and ECN field
// (RFC 6040 normal mode), for both inner families, on either underlay
// family, towards nodes and towards VTEPs.
func TestECNEncapCopiesTOS(t *testing.T) {
	for _, under := range []struct {
		name       string
		self, peer netip.Addr
	}{{"ipv4 underlay", node1IP, node2IP}, {"ipv6 underlay", node1IP6, node2IP6}} {
		t.Run(under.name, func(t *testing.T) {
			checkGoroutines(t)
			u := fake.NewUnderlay("u", netip.AddrPortFrom(under.self, 8472), 16)
			n := newTestNode(t, u, under.self, "10.1.1.0/24", dualStack(cidr1v6))
			must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: under.peer, PodCIDR: netip.MustParsePrefix("10.1.2.0/24"), PodCIDR6: cidr2v6}))
			must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, IP6: pod1v6, Netns: "/x"}))
			a := n.pod(t, "a")
			for _, tos := range []uint8{0, af41NotECT, af41ECT0, af41ECT1, af41CE, cs1ECT0} {
				a.Inject(pkttest.IPv4{Src: pod1, Dst: pod2, TOS: tos}.UDP(1, 2, []byte("v4")))
				d := waitSentOne(t, u)
				inner := encap.IPv4(d.Payload[innerIP:])
				if d.Meta.TOS != tos || inner.TOS() != tos || !inner.HeaderChecksumValid() {
					t.Fatalf("IPv4 inner TOS %#x: outer %#x, inner now %#x (checksum ok %v)", tos, d.Meta.TOS, inner.TOS(), inner.HeaderChecksumValid())
				}
				a.Inject(pkttest.IPv6{Src: pod1v6, Dst: pod2v6, TrafficClass: tos}.UDP(1, 2, []byte("v6")))
				d = waitSentOne(t, u)
				if tc := encap.IPv6(d.Payload[innerIP:]).TrafficClass(); d.Meta.TOS != tos || tc != tos {
					t.Fatalf("IPv6 inner traffic class %#x: outer %#x, inner now %#x", tos, d.Meta.TOS, tc)
				}
			}
		})
	}
	t.Run("geneve", func(t *testing.T) {
		checkGoroutines(t)
		u := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, encap.GenevePort), 16)
		n := newTestNode(t, u, node1IP, "10.1.1.0/24", func(c *dataplane.Config) { c.Protocol, c.TunnelPort = "geneve", 0 })
		must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
		must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x"}))
		n.pod(t, "a").Inject(pkttest.IPv4{Src: pod1, Dst: pod2, TOS: af41CE}.UDP(1, 2, nil))
		if d := waitSentOne(t, u); d.Meta.TOS != af41CE || encap.Geneve(d.Payload).Validate(nil) != nil {
			t.Fatalf("geneve: outer TOS %#x, want %#x; header %x", d.Meta.TOS, af41CE, d.Payload[:8])
		}
	})
	t.Run("vtep", func(t *testing.T) {
		n, u := vtepNode(t)
		n.pod(t, "a").Inject(pkttest.IPv4{Src: pod1, Dst: vmAddr, TOS: af41ECT1}.UDP(1, 2, nil))
		if d := waitSentOne(t, u); d.Meta.TOS != af41ECT1 {
			t.Fatalf("to the VTEP: outer TOS %#x, want %#x", d.Meta.TOS, af41ECT1)
		}
	})
}

// Across two nodes the marks survive both ways: an underlay that keeps
// them (the fake hub does) delivers the inner packet as it was sent.
func TestECNCrossNode(t *testing.T) {
	n1, n2, _ := dualNodes(t, node1IP, node2IP)
	a, c := n1.pod(t, "a"), n2.pod(t, "c")
	a.Inject(pkttest.IPv4{Src: pod1, Dst: pod2, TOS: af41ECT0}.UDP(1, 2, []byte("x")))
	if got := encap.IPv4(waitOne(t, c)); got.TOS() != af41ECT0 || !got.HeaderChecksumValid() {
		t.Fatalf("delivered TOS %#x, checksum ok %v", got.TOS(), got.HeaderChecksumValid())
	}
	c.Inject(pkttest.IPv6{Src: pod2v6, Dst: pod1v6, TrafficClass: af41ECT1}.UDP(1, 2, []byte("x")))
	if tc := encap.IPv6(waitOne(t, a)).TrafficClass(); tc != af41ECT1 {
		t.Fatalf("delivered traffic class %#x", tc)
	}
	for _, n := range []*testNode{n1, n2} {
		if st := n.eng.Stats(); st.TotalDrops != 0 || st.ECNAnomalies != 0 {
			t.Fatalf("drops %v, ECN anomalies %d", st.Drops, st.ECNAnomalies)
		}
	}
}

// ecnCases is RFC 6040's decapsulation table (section 4.2, table 3), row
// by row: what the inner packet leaves with (drop: ecn_ce_not_ect), and
// whether the combination is one the RFC calls currently unused.
var ecnCases = []struct {
	outer, inner encap.ECN
	want         encap.ECN
	drop         bool
	anomaly      bool
}{
	{encap.ECNNotECT, encap.ECNNotECT, encap.ECNNotECT, false, false},
	{encap.ECNECT0, encap.ECNNotECT, encap.ECNNotECT, false, true},
	{encap.ECNECT1, encap.ECNNotECT, encap.ECNNotECT, false, true},
	{encap.ECNCE, encap.ECNNotECT, 0, true, true},

	{encap.ECNNotECT, encap.ECNECT0, encap.ECNECT0, false, false},
	{encap.ECNECT0, encap.ECNECT0, encap.ECNECT0, false, false},
	{encap.ECNECT1, encap.ECNECT0, encap.ECNECT1, false, false},
	{encap.ECNCE, encap.ECNECT0, encap.ECNCE, false, false},

	{encap.ECNNotECT, encap.ECNECT1, encap.ECNECT1, false, false},
	{encap.ECNECT0, encap.ECNECT1, encap.ECNECT1, false, false},
	{encap.ECNECT1, encap.ECNECT1, encap.ECNECT1, false, false},
	{encap.ECNCE, encap.ECNECT1, encap.ECNCE, false, false},

	{encap.ECNNotECT, encap.ECNCE, encap.ECNCE, false, false},
	{encap.ECNECT0, encap.ECNCE, encap.ECNCE, false, false},
	{encap.ECNECT1, encap.ECNCE, encap.ECNCE, false, true},
	{encap.ECNCE, encap.ECNCE, encap.ECNCE, false, false},
}

// The engine applies the table to tunnel packets from a node, for both
// inner families and over either underlay family: the inner ECN field as
// the table says, the DSCP untouched, the IPv4 header checksum still
// valid; an outer CE over a Not-ECT inner packet dropped as
// ecn_ce_not_ect, the unused combinations counted.
func TestECNDecap(t *testing.T) {
	for _, under := range []struct {
		name     string
		from, to netip.Addr
	}{{"ipv4 underlay", node1IP, node2IP}, {"ipv6 underlay", node1IP6, node2IP6}} {
		t.Run(under.name, func(t *testing.T) {
			_, n2, _ := dualNodes(t, under.from, under.to)
			c := n2.pod(t, "c")
			var drops, anomalies uint64
			for _, tc := range ecnCases {
				for _, v6 := range []bool{false, true} {
					dscp := uint8(46 << 2)
					var d fake.Datagram
					if v6 {
						d = wirePacket6(under.from, under.to, 1000, pkttest.IPv6{Src: pod1v6, Dst: pod2v6, TrafficClass: dscp | uint8(tc.inner)}.UDP(1, 2, []byte("x")))
					} else {
						d = wirePacket(t, under.from, under.to, 1000, pkttest.IPv4{Src: pod1, Dst: pod2, TOS: dscp | uint8(tc.inner)}.UDP(1, 2, []byte("x")))
					}
					d.Meta.TOS = 8<<2 | uint8(tc.outer) // the outer DSCP is the underlay's, never copied in
					n2.under.InjectDatagram(d)
					if tc.anomaly {
						anomalies++
					}
					if tc.drop {
						drops++
						waitDrop(t, n2.eng, dataplane.DropECNCENotECT, drops)
						expectNone(t, c)
						continue
					}
					got := waitOne(t, c)
					var tos uint8
					if v6 {
						tos = encap.IPv6(got).TrafficClass()
					} else {
						ip := encap.IPv4(got)
						if !ip.HeaderChecksumValid() {
							t.Fatalf("outer %v inner %v: IPv4 header checksum broken: %x", tc.outer, tc.inner, got[:20])
						}
						tos = ip.TOS()
					}
					if want := dscp | uint8(tc.want); tos != want {
						t.Fatalf("outer %v inner %v (ipv6 %v): delivered with TOS %#x, want %#x", tc.outer, tc.inner, v6, tos, want)
					}
				}
			}
			st := n2.eng.Stats()
			if st.ECNAnomalies != anomalies || st.Drops["ecn_ce_not_ect"] != drops || st.TotalDrops != drops {
				t.Fatalf("ECN anomalies %d, want %d; drops %v, want %d ecn_ce_not_ect", st.ECNAnomalies, anomalies, st.Drops, drops)
			}
		})
	}
}

// A VTEP's packets follow the same table.
func TestECNDecapFromVTEP(t *testing.T) {
	n, _ := vtepNode(t)
	a := n.pod(t, "a")
	frame := func(tos uint8) fake.Datagram {
		ip := pkttest.IPv4{Src: vmAddr, Dst: pod1, TOS: tos}.UDP(1, 2, []byte("from the vm"))
		d := vmFrame(t, 2, pkttest.Ethernet(n.eng.TunnelMAC(), vmMAC, encap.EtherTypeIPv4, ip))
		d.Meta.TOS = uint8(encap.ECNCE)
		return d
	}
	n.under.InjectDatagram(frame(af41ECT0))
	if got := encap.IPv4(waitOne(t, a)); got.TOS() != af41CE || !got.HeaderChecksumValid() {
		t.Fatalf("delivered TOS %#x, want %#x; checksum ok %v", got.TOS(), af41CE, got.HeaderChecksumValid())
	}
	n.under.InjectDatagram(frame(af41NotECT))
	waitDrop(t, n.eng, dataplane.DropECNCENotECT, 1)
	expectNone(t, a)
}

func TestECNDropReasonName(t *testing.T) {
	if s := dataplane.DropECNCENotECT.String(); s != "ecn_ce_not_ect" {
		t.Fatalf("name %q", s)
	}
	found := false
	for _, r := range dataplane.DropReasons() {
		found = found || r == dataplane.DropECNCENotECT
	}
	if !found {
		t.Fatal("ecn_ce_not_ect missing from DropReasons")
	}
}

// An underlay capture shows the outer TOS or traffic class each payload
// left with or arrived with, as a capture on the NIC would.
func TestECNCapture(t *testing.T) {
	for _, under := range []struct {
		name     string
		from, to netip.Addr
	}{{"ipv4 underlay", node1IP, node2IP}, {"ipv6 underlay", node1IP6, node2IP6}} {
		t.Run(under.name, func(t *testing.T) {
			_, n2, _ := dualNodes(t, under.from, under.to)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pkts, err := n2.eng.Capture(ctx, dataplane.CapturePoint{Kind: dataplane.CaptureUnderlay})
			must(t, err)
			outerTOS := func(b []byte) uint8 {
				if under.to.Is6() {
					return encap.IPv6(b).TrafficClass()
				}
				ip := encap.IPv4(b)
				if !ip.HeaderChecksumValid() {
					t.Fatalf("captured outer IPv4 header with a bad checksum: %x", b[:20])
				}
				return ip.TOS()
			}
			next := func() dataplane.CapturedPacket {
				select {
				case p := <-pkts:
					return p
				case <-time.After(2 * time.Second):
					t.Fatal("nothing captured")
				}
				return dataplane.CapturedPacket{}
			}
			n2.pod(t, "c").Inject(pkttest.IPv4{Src: pod2, Dst: pod1, TOS: af41ECT1}.UDP(1, 2, nil))
			if p := next(); !p.Out || outerTOS(p.Data) != af41ECT1 {
				t.Fatalf("sent: out %v, outer TOS %#x, want %#x", p.Out, outerTOS(p.Data), af41ECT1)
			}
			d := wirePacket(t, under.from, under.to, 1000, pkttest.IPv4{Src: pod1, Dst: pod2, TOS: af41ECT0}.UDP(1, 2, nil))
			d.Meta.TOS = cs1ECT0 | uint8(encap.ECNCE)
			n2.under.InjectDatagram(d)
			if p := next(); p.Out || outerTOS(p.Data) != d.Meta.TOS {
				t.Fatalf("received: out %v, outer TOS %#x, want %#x", p.Out, outerTOS(p.Data), d.Meta.TOS)
			}
		})
	}
}

// Geneve packets follow the same table as VXLAN ones.
func TestECNDecapGeneve(t *testing.T) {
	_, n2 := genevePair(t)
	d := geneveWire(t, 1000, nil, nil) // a Not-ECT inner packet
	d.Meta.TOS = uint8(encap.ECNCE)
	n2.under.InjectDatagram(d)
	waitDrop(t, n2.eng, dataplane.DropECNCENotECT, 1)
	expectNone(t, n2.pod(t, "c"))
	d = geneveWire(t, 1000, nil, func(g []byte) {
		off := encap.GeneveLen + encap.EthernetLen
		encap.IPv4(g[off:]).SetECN(encap.ECNECT1)
	})
	d.Meta.TOS = uint8(encap.ECNCE)
	n2.under.InjectDatagram(d)
	if got := encap.IPv4(waitOne(t, n2.pod(t, "c"))); got.ECN() != encap.ECNCE || !got.HeaderChecksumValid() {
		t.Fatalf("delivered ECN %v, checksum ok %v", got.ECN(), got.HeaderChecksumValid())
	}
}
