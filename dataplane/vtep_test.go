package dataplane_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

var (
	vmIP   = netip.MustParseAddr("192.0.2.36")
	vmMAC  = encap.MAC{0x82, 0x36, 0x4c, 0x98, 0x2e, 0x56}
	vmCIDR = netip.MustParsePrefix("10.9.1.0/24")
	vmAddr = netip.MustParseAddr("10.9.1.236")
)

func vtepNode(t *testing.T) (*testNode, *fake.Underlay) {
	t.Helper()
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16)
	n := newTestNode(t, under, node1IP, "10.1.1.0/24", nil)
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x", Identity: 1000}))
	must(t, n.eng.SetVTEPs([]dataplane.VTEPSpec{
		{CIDR: vmCIDR, Endpoint: vmIP, MAC: vmMAC},
		{CIDR: netip.MustParsePrefix("10.9.2.0/24"), Endpoint: netip.MustParseAddr("192.0.2.38"), MAC: encap.MAC{0x82, 0x36, 0x4c, 0x98, 0x2e, 0x58}},
	}))
	return n, under
}

// vmFrame wraps an inner Ethernet frame the way a Linux vxlan device
// would, sent from the VM to the VTEP port.
func vmFrame(t *testing.T, vni uint32, frame []byte) fake.Datagram {
	return fake.Datagram{Payload: pkttest.VXLAN(vni, frame), Meta: packetio.Meta{Remote: netip.AddrPortFrom(vmIP, 40000), LocalPort: dataplane.VTEPPort}}
}

// expectNoSend fails if u sends anything soon.
func expectNoSend(t *testing.T, u *fake.Underlay) {
	t.Helper()
	if got := u.WaitSent(1, 50*time.Millisecond); len(got) != 0 {
		t.Fatalf("%s: unexpected payload to %v: %x", u.Name(), got[0].Meta.Remote, got[0].Payload)
	}
}

func arpRequest(sender netip.Addr, mac encap.MAC, target netip.Addr) []byte {
	f := make([]byte, encap.EthernetLen+encap.ARPLen)
	encap.Ethernet(f).Encode(encap.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mac, encap.EtherTypeARP)
	encap.ARP(f[encap.EthernetLen:]).EncodeRequest(mac, sender.As4(), target.As4())
	return f
}

func TestVTEPEgress(t *testing.T) {
	n, under := vtepNode(t)
	n.pod(t, "a").Inject(udpPacket(pod1, vmAddr, 1, 2, 64, false, []byte("to the vm")))
	d := waitSentOne(t, under)
	if d.Meta.Remote != netip.AddrPortFrom(vmIP, 8472) {
		t.Fatalf("sent to %v", d.Meta.Remote)
	}
	vx := encap.VXLAN(d.Payload)
	eth := encap.Ethernet(vx[encap.VXLANLen:])
	if vx.VNI() != 2 || eth.Destination() != vmMAC || eth.Source() != n.eng.TunnelMAC() {
		t.Fatalf("vni %d dst mac %s src mac %s", vx.VNI(), eth.Destination(), eth.Source())
	}
}

func TestVTEPIngress(t *testing.T) {
	n, under := vtepNode(t)
	a := n.pod(t, "a")
	frame := func(src netip.Addr) []byte {
		ip := udpPacket(src, pod1, 1, 2, 64, false, []byte("from the vm"))
		f := make([]byte, encap.EthernetLen+len(ip))
		encap.Ethernet(f).Encode(n.eng.TunnelMAC(), vmMAC, encap.EtherTypeIPv4)
		copy(f[encap.EthernetLen:], ip)
		return f
	}
	n.under.InjectDatagram(vmFrame(t, 2, frame(vmAddr)))
	if got := waitOne(t, a); string(got[28:]) != "from the vm" {
		t.Fatalf("got %x", got)
	}
	n.under.InjectDatagram(vmFrame(t, 3, frame(vmAddr)))
	waitDrop(t, n.eng, dataplane.DropInvalidVNI, 1)
	// A source from the other VTEP's CIDR is a spoof from this one.
	n.under.InjectDatagram(vmFrame(t, 2, frame(netip.MustParseAddr("10.9.2.5"))))
	waitDrop(t, n.eng, dataplane.DropSpoofedInnerSource, 1)
	expectNone(t, a)
	expectNoSend(t, under)
}

func TestVTEPARPResponder(t *testing.T) {
	n, under := vtepNode(t)
	n.under.InjectDatagram(vmFrame(t, 2, arpRequest(vmAddr, vmMAC, pod1)))
	d := waitSentOne(t, under)
	vx := encap.VXLAN(d.Payload)
	if d.Meta.Remote != netip.AddrPortFrom(vmIP, 8472) || vx.VNI() != 2 || vx.Validate(0) != nil {
		t.Fatalf("reply to %v vni %d", d.Meta.Remote, vx.VNI())
	}
	eth := encap.Ethernet(vx[encap.VXLANLen:])
	arp := encap.ARP(eth[encap.EthernetLen:])
	if eth.Destination() != vmMAC || eth.Source() != n.eng.TunnelMAC() || eth.EtherType() != encap.EtherTypeARP {
		t.Fatalf("reply ethernet %s -> %s %#x", eth.Source(), eth.Destination(), eth.EtherType())
	}
	if !arp.IsValid() || arp.Operation() != encap.ARPReply || arp.SenderIP() != pod1 || arp.SenderMAC() != n.eng.TunnelMAC() ||
		arp.TargetIP() != vmAddr || arp.TargetMAC() != vmMAC {
		t.Fatalf("reply %x", []byte(arp))
	}
	if st := n.eng.Stats(); st.ARPReplies != 1 {
		t.Fatalf("arp replies %d", st.ARPReplies)
	}

	t.Run("not a local endpoint", func(t *testing.T) {
		for _, target := range []string{"10.1.1.99", "10.1.1.1", "10.9.1.1", "8.8.8.8"} {
			n.under.InjectDatagram(vmFrame(t, 2, arpRequest(vmAddr, vmMAC, netip.MustParseAddr(target))))
		}
		waitDrop(t, n.eng, dataplane.DropARPUnanswered, 4)
		expectNoSend(t, under)
	})
	t.Run("sender outside the vtep cidr", func(t *testing.T) {
		n.under.InjectDatagram(vmFrame(t, 2, arpRequest(netip.MustParseAddr("10.1.1.200"), vmMAC, pod1)))
		waitDrop(t, n.eng, dataplane.DropSpoofedInnerSource, 1)
		expectNoSend(t, under)
	})
	t.Run("wrong vni", func(t *testing.T) {
		n.under.InjectDatagram(vmFrame(t, 3, arpRequest(vmAddr, vmMAC, pod1)))
		waitDrop(t, n.eng, dataplane.DropInvalidVNI, 1)
		expectNoSend(t, under)
	})
	t.Run("a reply is not answered", func(t *testing.T) {
		f := arpRequest(vmAddr, vmMAC, pod1)
		encap.ARP(f[encap.EthernetLen:]).TurnIntoReply(vmMAC)
		n.under.InjectDatagram(vmFrame(t, 2, f))
		waitDrop(t, n.eng, dataplane.DropARPUnanswered, 5)
		expectNoSend(t, under)
	})
}

func TestVTEPTableRules(t *testing.T) {
	n, _ := vtepNode(t)
	bad := [][]dataplane.VTEPSpec{
		{{CIDR: netip.MustParsePrefix("10.1.1.0/25"), Endpoint: vmIP, MAC: vmMAC}},                                               // our pod cidr
		{{CIDR: vmCIDR, Endpoint: node1IP, MAC: vmMAC}},                                                                          // our own address
		{{CIDR: vmCIDR, Endpoint: vmIP, MAC: encap.MAC{1, 2, 3, 4, 5, 6}}},                                                       // multicast mac
		{{CIDR: vmCIDR, Endpoint: vmIP, MAC: vmMAC}, {CIDR: netip.MustParsePrefix("10.9.1.128/25"), Endpoint: vmIP, MAC: vmMAC}}, // overlap
	}
	for i, vs := range bad {
		if err := n.eng.SetVTEPs(vs); !errors.Is(err, dataplane.ErrInvalid) {
			t.Errorf("case %d accepted: %v", i, err)
		}
	}
	if got := n.eng.VTEPs(); len(got) != 2 {
		t.Fatalf("a refused table replaced the old one: %v", got)
	}
	if err := n.eng.AddNode(dataplane.NodeSpec{Name: "x", IP: netip.MustParseAddr("192.0.2.9"), PodCIDR: netip.MustParsePrefix("10.9.0.0/16")}); !errors.Is(err, dataplane.ErrInvalid) {
		t.Errorf("node over a vtep cidr: %v", err)
	}
	must(t, n.eng.DelVTEP(vmCIDR))
	if err := n.eng.DelVTEP(vmCIDR); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// Many VTEPs: no fixed limit of 8.
	var many []dataplane.VTEPSpec
	for i := 0; i < 100; i++ {
		many = append(many, dataplane.VTEPSpec{CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 20, byte(i), 0}), 24),
			Endpoint: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i%50)}), MAC: vmMAC})
	}
	must(t, n.eng.SetVTEPs(many))
	if len(n.eng.VTEPs()) != 100 {
		t.Fatal("100 vteps not kept")
	}
}
