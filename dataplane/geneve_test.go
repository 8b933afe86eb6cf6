package dataplane_test

import (
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

func genevePair(t *testing.T) (*testNode, *testNode) {
	t.Helper()
	checkGoroutines(t)
	hub := fake.NewHub()
	geneve := func(c *dataplane.Config) { c.Protocol, c.TunnelPort = "geneve", 0 }
	n1 := newTestNode(t, hub.Attach(netip.AddrPortFrom(node1IP, encap.GenevePort), "u1", 16), node1IP, "10.1.1.0/24", geneve)
	n2 := newTestNode(t, hub.Attach(netip.AddrPortFrom(node2IP, encap.GenevePort), "u2", 16), node2IP, "10.1.2.0/24", geneve)
	must(t, n1.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
	must(t, n2.eng.AddNode(dataplane.NodeSpec{Name: "node1", IP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24")}))
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x", Identity: 1000}))
	must(t, n2.eng.AddEndpoint(dataplane.EndpointSpec{Name: "c", IP: pod2, Netns: "/x", Identity: 2000}))
	return n1, n2
}

func TestGeneveCrossNode(t *testing.T) {
	n1, n2 := genevePair(t)
	n1.pod(t, "a").Inject(udpPacket(pod1, pod2, 1, 2, 64, false, []byte("over geneve")))
	if got := waitOne(t, n2.pod(t, "c")); string(got[28:]) != "over geneve" {
		t.Fatalf("got %x", got)
	}
	n2.pod(t, "c").Inject(udpPacket(pod2, pod1, 2, 1, 64, false, []byte("back")))
	if got := waitOne(t, n1.pod(t, "a")); string(got[28:]) != "back" {
		t.Fatalf("got %x", got)
	}
	if st := n2.eng.Stats(); st.TotalDrops != 0 {
		t.Fatalf("drops %v", st.Drops)
	}
}

// geneveWire builds a Geneve payload from node1 to node2 on 6081, then
// lets mod break it.
func geneveWire(t *testing.T, vni uint32, opts []encap.GeneveOption, mod func(g []byte)) fake.Datagram {
	inner := udpPacket(pod1, pod2, 1, 2, 64, false, []byte("x"))
	g := pkttest.Geneve(vni, opts, pkttest.Ethernet(encap.TunnelMAC(node2IP), encap.TunnelMAC(node1IP), encap.EtherTypeIPv4, inner))
	if mod != nil {
		mod(g)
	}
	return fake.Datagram{Payload: g, Meta: packetio.Meta{Remote: netip.AddrPortFrom(node1IP, 50000), LocalPort: encap.GenevePort}}
}

func TestGeneveReceiveRules(t *testing.T) {
	_, n2 := genevePair(t)
	c := n2.pod(t, "c")
	n2.under.InjectDatagram(geneveWire(t, 1000, []encap.GeneveOption{{Class: 0xffff, Type: 1, Data: make([]byte, 4)}}, nil))
	waitOne(t, c) // an unknown non-critical option is skipped
	tests := []struct {
		name   string
		pkt    fake.Datagram
		reason dataplane.DropReason
	}{
		{"unknown critical option", geneveWire(t, 1000, []encap.GeneveOption{{Class: 0xffff, Type: 1, Critical: true}}, nil), dataplane.DropCriticalOption},
		{"O bit", geneveWire(t, 1000, nil, func(g []byte) { g[1] |= 0x80 }), dataplane.DropControlPacket},
		{"version 1", geneveWire(t, 1000, nil, func(g []byte) { g[0] |= 0x40 }), dataplane.DropInvalidHeader},
		{"options past the packet", geneveWire(t, 1000, nil, func(g []byte) { g[0] |= 0x3f }), dataplane.DropInvalidHeader},
		{"not ethernet", geneveWire(t, 1000, nil, func(g []byte) { g[2], g[3] = 0x08, 0x00 }), dataplane.DropUnsupportedProtocol},
		{"vni 0", geneveWire(t, 0, nil, nil), dataplane.DropInvalidIdentity},
		{"vxlan on the geneve port", func() fake.Datagram {
			d := wirePacket(t, node1IP, node2IP, 1000, udpPacket(pod1, pod2, 1, 2, 64, false, nil))
			d.Meta.LocalPort = encap.GenevePort
			return d
		}(), dataplane.DropProtocolMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n2.eng.Drops(tt.reason)
			n2.under.InjectDatagram(tt.pkt)
			waitDrop(t, n2.eng, tt.reason, before+1)
			expectNone(t, c)
		})
	}
}

func TestGeneveOptionsTakeMTU(t *testing.T) {
	checkGoroutines(t)
	e, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), UnderlayMTU: 1500,
		Protocol: "geneve", GeneveOptions: []encap.GeneveOption{{Class: 0x0103, Type: 1, Data: make([]byte, 8)}}},
		nil, []packetio.Underlay{fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, encap.GenevePort), 8)}, nil, nil, nil)
	must(t, err)
	defer e.Close()
	if e.RouteMTU() != 1500-50-12 {
		t.Fatalf("route MTU %d, want %d", e.RouteMTU(), 1500-50-12)
	}
}

// VTEPs stay VXLAN on 8472 in a Geneve cluster.
func TestGeneveClusterVTEPSpeaksVXLAN(t *testing.T) {
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, encap.GenevePort), 16)
	n := newTestNode(t, under, node1IP, "10.1.1.0/24", func(c *dataplane.Config) { c.Protocol, c.TunnelPort = "geneve", 0 })
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x"}))
	must(t, n.eng.SetVTEPs([]dataplane.VTEPSpec{{CIDR: vmCIDR, Endpoint: vmIP, MAC: vmMAC}}))
	n.pod(t, "a").Inject(udpPacket(pod1, vmAddr, 1, 2, 64, false, nil))
	d := waitSentOne(t, under)
	if d.Meta.Remote.Port() != 8472 || encap.VXLAN(d.Payload).Validate(0) != nil || encap.VXLAN(d.Payload).VNI() != 2 {
		t.Fatalf("to the VTEP: %v header %x", d.Meta.Remote, d.Payload[:8])
	}
	// The VTEP's ARP request arrives on 8472 as VXLAN and is answered.
	n.under.InjectDatagram(vmFrame(t, 2, arpRequest(vmAddr, vmMAC, pod1)))
	if reply := waitSentOne(t, under); reply.Meta.Remote != netip.AddrPortFrom(vmIP, 8472) {
		t.Fatalf("arp reply to %v", reply.Meta.Remote)
	}
}
