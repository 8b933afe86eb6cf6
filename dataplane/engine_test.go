package dataplane_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// testNode is one engine on a fake underlay, with fake pod devices.
type testNode struct {
	eng   *dataplane.Engine
	under *fake.Underlay
	host  *fake.Device

	mu   sync.Mutex
	pods map[string]*fake.Device
}

func (n *testNode) pod(t *testing.T, name string) *fake.Device {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.pods[name]
	if d == nil {
		t.Fatalf("no pod device %s", name)
	}
	return d
}

var (
	node1IP = netip.MustParseAddr("192.0.2.1")
	node2IP = netip.MustParseAddr("192.0.2.2")
	pod1    = netip.MustParseAddr("10.1.1.10")
	pod1b   = netip.MustParseAddr("10.1.1.11")
	pod2    = netip.MustParseAddr("10.1.2.20")
	cluster = netip.MustParsePrefix("10.1.0.0/16")
)

func newTestNode(t *testing.T, under *fake.Underlay, ip netip.Addr, podCIDR string, cfgMod func(*dataplane.Config)) *testNode {
	t.Helper()
	n := &testNode{under: under, host: fake.New("vxdp_host", 16), pods: map[string]*fake.Device{}}
	cfg := dataplane.Config{
		NodeIP:      ip,
		PodCIDR:     netip.MustParsePrefix(podCIDR),
		ClusterCIDR: cluster,
		TunnelPort:  8472,
		UnderlayMTU: 1500,
	}
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	wantMTU := 1500 - encap.VXLANOverheadV4
	if cfg.NodeIP.Is6() {
		wantMTU = 1500 - encap.VXLANOverheadV6
	}
	factory := func(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
		if mtu != wantMTU {
			t.Errorf("endpoint %s created with mtu %d, want %d", s.Name, mtu, wantMTU)
		}
		d := fake.New(s.Name, 8)
		n.mu.Lock()
		n.pods[s.Name] = d
		n.mu.Unlock()
		return d, nil
	}
	eng, err := dataplane.New(cfg, nil, []packetio.Underlay{under}, n.host, factory, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.eng = eng
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	return n
}

// twoNodes builds node1 (10.1.1.0/24, pods 10.1.1.10 and .11) and node2
// (10.1.2.0/24, pod 10.1.2.20) on one fake underlay.
func twoNodes(t *testing.T) (*testNode, *testNode, *fake.Hub) {
	t.Helper()
	return twoNodesWith(t, nil)
}

// twoNodesWith is twoNodes with cfgMod applied to both nodes'
// configuration.
func twoNodesWith(t *testing.T, cfgMod func(*dataplane.Config)) (*testNode, *testNode, *fake.Hub) {
	t.Helper()
	checkGoroutines(t)
	hub := fake.NewHub()
	n1 := newTestNode(t, hub.Attach(netip.AddrPortFrom(node1IP, 8472), "u1", 16), node1IP, "10.1.1.0/24", cfgMod)
	n2 := newTestNode(t, hub.Attach(netip.AddrPortFrom(node2IP, 8472), "u2", 16), node2IP, "10.1.2.0/24", cfgMod)
	must(t, n1.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
	must(t, n2.eng.AddNode(dataplane.NodeSpec{Name: "node1", IP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24")}))
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x", Identity: 1000}))
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP: pod1b, Netns: "/x"}))
	must(t, n2.eng.AddEndpoint(dataplane.EndpointSpec{Name: "c", IP: pod2, Netns: "/x", Identity: 2000}))
	return n1, n2, hub
}

// checkGoroutines fails the test if goroutines started during it are
// still running after its cleanups (registered first, so it runs last).
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(2 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Errorf("goroutine leak: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// udpPacket builds an IPv4/UDP packet with valid checksums.
func udpPacket(src, dst netip.Addr, sport, dport uint16, ttl uint8, df bool, payload []byte) []byte {
	return pkttest.IPv4{Src: src, Dst: dst, TTL: ttl, DF: df, ID: 7}.UDP(sport, dport, payload)
}

func waitOne(t *testing.T, d *fake.Device) []byte {
	t.Helper()
	got := d.WaitSent(1, 2*time.Second)
	if len(got) != 1 {
		t.Fatalf("%s: got %d packets, want 1", d.Name(), len(got))
	}
	return got[0]
}

func expectNone(t *testing.T, d *fake.Device) {
	t.Helper()
	if got := d.WaitSent(1, 50*time.Millisecond); len(got) != 0 {
		t.Fatalf("%s: unexpected packet %x", d.Name(), got[0])
	}
}

func waitDrop(t *testing.T, e *dataplane.Engine, r dataplane.DropReason, want uint64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for e.Drops(r) < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := e.Drops(r); got != want {
		t.Fatalf("drops %s = %d, want %d", r, got, want)
	}
}

func TestCrossNode(t *testing.T) {
	n1, n2, hub := twoNodes(t)
	p := udpPacket(pod1, pod2, 1234, 5678, 64, true, []byte("hello"))
	n1.pod(t, "a").Inject(p)
	got := waitOne(t, n2.pod(t, "c"))
	ip := encap.IPv4(got)
	if !ip.IsValid(len(got)) || ip.SourceAddr() != pod1 || ip.DestinationAddr() != pod2 {
		t.Fatalf("delivered %x", got)
	}
	// Routed twice: out of node1 and into node2.
	if ip.TTL() != 62 || !ip.HeaderChecksumValid() {
		t.Fatalf("ttl %d checksum ok %v", ip.TTL(), ip.HeaderChecksumValid())
	}
	if string(got[28:]) != "hello" {
		t.Fatalf("payload %q", got[28:])
	}
	// And back.
	n2.pod(t, "c").Inject(udpPacket(pod2, pod1, 5678, 1234, 64, false, []byte("world")))
	if got := waitOne(t, n1.pod(t, "a")); string(got[28:]) != "world" {
		t.Fatalf("reply %x", got)
	}
	if l := hub.Lost(); len(l) != 0 {
		t.Fatalf("%d packets lost on the underlay", len(l))
	}
	st := n1.eng.Stats()
	if st.TotalDrops != 0 {
		t.Fatalf("drops: %v", st.Drops)
	}
	// The kernel's drops on the way to a device show beside its counters.
	n1.pod(t, "a").SetKernelDropped(9)
	found := false
	for _, d := range n1.eng.Stats().Devices {
		if d.Device == "a" {
			found = true
			if d.KernelDropped != 9 || d.KernelDropErr != "" {
				t.Errorf("endpoint a: kernel dropped %d (%q), want 9", d.KernelDropped, d.KernelDropErr)
			}
		}
	}
	if !found {
		t.Error("no endpoint a in the stats")
	}
}

func TestEncapOnTheWire(t *testing.T) {
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16) // not on a hub: keeps what is sent
	n := newTestNode(t, under, node1IP, "10.1.1.0/24", nil)
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x", Identity: 4242}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP: pod1b, Netns: "/x"}))

	n.pod(t, "a").Inject(udpPacket(pod1, pod2, 1, 2, 64, true, []byte("x")))
	d := waitSentOne(t, under)
	if d.Meta.Remote != netip.AddrPortFrom(node2IP, 8472) {
		t.Fatalf("sent to %v, want node2's tunnel port", d.Meta.Remote)
	}
	vx := encap.VXLAN(d.Payload)
	if vx.Validate(0) != nil || vx.VNI() != 4242 {
		t.Fatalf("vxlan header %x, want vni = the endpoint identity 4242", d.Payload[:8])
	}
	eth := encap.Ethernet(d.Payload[encap.VXLANLen:])
	if eth.Source() != n.eng.TunnelMAC() || eth.Destination() != encap.TunnelMAC(node2IP) || eth.EtherType() != encap.EtherTypeIPv4 {
		t.Fatalf("inner ethernet %x", d.Payload[8:22])
	}
	if inner := encap.IPv4(d.Payload[22:]); inner.DestinationAddr() != pod2 || inner.TTL() != 63 {
		t.Fatalf("inner packet %x", d.Payload[22:])
	}
	// The flow hash travels with the payload: the underlay picks the
	// source port from it, one per flow.
	n.pod(t, "a").Inject(udpPacket(pod1, pod2, 1, 2, 64, true, []byte("y")))
	if again := waitSentOne(t, under); again.Meta.Flow != d.Meta.Flow {
		t.Fatalf("one flow, two hashes: %d and %d", d.Meta.Flow, again.Meta.Flow)
	}
	n.pod(t, "a").Inject(udpPacket(pod1, pod2, 3, 2, 64, true, []byte("z")))
	if other := waitSentOne(t, under); other.Meta.Flow == d.Meta.Flow {
		t.Fatalf("another flow hashes alike: %d", other.Meta.Flow)
	}
	// An endpoint without identity sends the default workload identity.
	n.pod(t, "b").Inject(udpPacket(pod1b, pod2, 1, 2, 64, true, []byte("x")))
	if vni := encap.VXLAN(waitSentOne(t, under).Payload).VNI(); vni != uint32(identity.DefaultWorkload) {
		t.Fatalf("default identity vni %d", vni)
	}
	// The node itself sends as remote-node.
	n.host.Inject(udpPacket(netip.MustParseAddr("10.1.1.1"), pod2, 1, 2, 64, true, []byte("x")))
	if vni := encap.VXLAN(waitSentOne(t, under).Payload).VNI(); vni != uint32(identity.RemoteNode) {
		t.Fatalf("host traffic vni %d, want 6", vni)
	}
}

func TestLocalDelivery(t *testing.T) {
	n1, _, hub := twoNodes(t)
	n1.pod(t, "a").Inject(udpPacket(pod1, pod1b, 1, 2, 64, true, []byte("local")))
	got := waitOne(t, n1.pod(t, "b"))
	if encap.IPv4(got).TTL() != 63 || string(got[28:]) != "local" {
		t.Fatalf("got %x", got)
	}
	if l := hub.Lost(); len(l) != 0 {
		t.Fatal("local traffic touched the underlay")
	}
	if st := n1.eng.Stats(); st.Devices[0].TxPackets != 0 {
		t.Fatalf("underlay tx %d for local traffic", st.Devices[0].TxPackets)
	}
}

func icmpOf(t *testing.T, pkt []byte) (typ, code uint8, mtu uint16, src netip.Addr) {
	t.Helper()
	ip := encap.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || ip.Protocol() != encap.ProtoICMP {
		t.Fatalf("not ICMP: %x", pkt)
	}
	ic := encap.ICMPv4(ip.Payload())
	if encap.Checksum(ip.Payload(), 0) != 0 {
		t.Fatal("bad ICMP checksum")
	}
	return ic.Type(), ic.Code(), ic.MTU(), ip.SourceAddr()
}

func TestICMPErrors(t *testing.T) {
	n1, n2, _ := twoNodes(t)
	a := n1.pod(t, "a")
	hostIP := netip.MustParseAddr("10.1.1.1")

	t.Run("frag needed", func(t *testing.T) {
		big := udpPacket(pod1, pod2, 1, 2, 64, true, make([]byte, 1472)) // 1500 bytes
		a.Inject(big)
		typ, code, mtu, src := icmpOf(t, waitOne(t, a))
		if typ != 3 || code != 4 || mtu != 1450 || src != hostIP {
			t.Fatalf("got type %d code %d mtu %d from %s", typ, code, mtu, src)
		}
		waitDrop(t, n1.eng, dataplane.DropFragNeeded, 1)
		// Exactly the route MTU passes.
		a.Inject(udpPacket(pod1, pod2, 1, 2, 64, true, make([]byte, 1450-28)))
		if got := waitOne(t, n2.pod(t, "c")); len(got) != 1450 {
			t.Fatalf("delivered %d bytes", len(got))
		}
	})
	t.Run("ttl", func(t *testing.T) {
		a.Inject(udpPacket(pod1, pod2, 1, 2, 1, false, nil))
		typ, code, _, _ := icmpOf(t, waitOne(t, a))
		if typ != 11 || code != 0 {
			t.Fatalf("type %d code %d", typ, code)
		}
		waitDrop(t, n1.eng, dataplane.DropTTLExceeded, 1)
	})
	t.Run("ttl expiring on the receiving node", func(t *testing.T) {
		// TTL 2 survives node1 and dies on node2, whose error comes back
		// through the tunnel from node2's host address.
		a.Inject(udpPacket(pod1, pod2, 1, 2, 2, false, nil))
		typ, _, _, src := icmpOf(t, waitOne(t, a))
		if typ != 11 || src != netip.MustParseAddr("10.1.2.1") {
			t.Fatalf("type %d from %s", typ, src)
		}
		waitDrop(t, n2.eng, dataplane.DropTTLExceeded, 1)
	})
	t.Run("no route inside the cluster", func(t *testing.T) {
		a.Inject(udpPacket(pod1, netip.MustParseAddr("10.1.9.9"), 1, 2, 64, false, nil))
		typ, code, _, _ := icmpOf(t, waitOne(t, a))
		if typ != 3 || code != 1 {
			t.Fatalf("type %d code %d", typ, code)
		}
		waitDrop(t, n1.eng, dataplane.DropNoRoute, 1)
	})
	t.Run("no answer to an ICMP error", func(t *testing.T) {
		errPkt := make([]byte, encap.ICMPv4ErrorMaxLen)
		orig := udpPacket(pod2, pod1, 1, 2, 64, false, nil)
		n := encap.BuildICMPv4Error(errPkt, encap.IPv4(orig), pod1.As4(), 3, 3, 0)
		encap.IPv4(errPkt).Encode(&encap.IPv4Fields{TotalLen: uint16(n), TTL: 64, Protocol: 1,
			Source: pod1.As4(), Destination: netip.MustParseAddr("10.1.9.9").As4()})
		a.Inject(errPkt[:n])
		waitDrop(t, n1.eng, dataplane.DropNoRoute, 2)
		expectNone(t, a)
	})
}

func TestPodSourceChecks(t *testing.T) {
	n1, n2, _ := twoNodes(t)
	a := n1.pod(t, "a")
	a.Inject(udpPacket(pod1b, pod2, 1, 2, 64, false, nil)) // b's address from a
	waitDrop(t, n1.eng, dataplane.DropInvalidSource, 1)
	a.Inject(udpPacket(pod1, node2IP, 1, 8472, 64, false, make([]byte, 60)))
	waitDrop(t, n1.eng, dataplane.DropEncapProhibited, 1)
	a.Inject(udpPacket(pod1, node1IP, 1, 8472, 64, false, make([]byte, 60)))
	waitDrop(t, n1.eng, dataplane.DropEncapProhibited, 2)
	a.Inject([]byte{0x45, 0, 0, 10})
	waitDrop(t, n1.eng, dataplane.DropInvalidHeader, 1)
	// A bare IPv6 header says a Hop-by-Hop Options header follows (next
	// header 0), and none does.
	v6 := make([]byte, 40)
	v6[0] = 0x60
	a.Inject(v6)
	waitDrop(t, n1.eng, dataplane.DropInvalidExtHeaders, 1)
	expectNone(t, n2.pod(t, "c"))
	// Other UDP to a node goes to the kernel.
	a.Inject(udpPacket(pod1, node2IP, 1, 53, 64, false, nil))
	waitOne(t, n1.host)
}

// waitSentOne waits for one payload sent through u.
func waitSentOne(t *testing.T, u *fake.Underlay) fake.Datagram {
	t.Helper()
	got := u.WaitSent(1, 2*time.Second)
	if len(got) != 1 {
		t.Fatalf("%s: sent %d payloads, want 1", u.Name(), len(got))
	}
	return got[0]
}

// Offsets in a VXLAN payload: the VXLAN header, the inner Ethernet header
// and the inner IPv4 packet.
const (
	vxOff    = 0
	innerEth = encap.VXLANLen
	innerIP  = encap.VXLANLen + encap.EthernetLen
)

// wirePacket builds the tunnel payload node from would send to node to,
// and where it comes from.
func wirePacket(t *testing.T, from netip.Addr, to netip.Addr, vni uint32, inner []byte) fake.Datagram {
	frame := pkttest.Ethernet(encap.TunnelMAC(to), encap.TunnelMAC(from), encap.EtherTypeIPv4, inner)
	return fake.Datagram{Payload: pkttest.VXLAN(vni, frame), Meta: packetio.Meta{Remote: netip.AddrPortFrom(from, 50000), LocalPort: 8472}}
}

func TestIngressValidation(t *testing.T) {
	_, n2, _ := twoNodes(t)
	c := n2.pod(t, "c")
	good := func() fake.Datagram {
		return wirePacket(t, node1IP, node2IP, 1000, udpPacket(pod1, pod2, 1, 2, 64, false, []byte("ok")))
	}
	// mod changes a good payload.
	mod := func(f func(p []byte)) func() fake.Datagram {
		return func() fake.Datagram { d := good(); f(d.Payload); return d }
	}
	// A good one first, to show the rest fail for their own reason.
	n2.under.InjectDatagram(good())
	waitOne(t, c)

	tests := []struct {
		name   string
		pkt    func() fake.Datagram
		reason dataplane.DropReason
	}{
		{"unknown tunnel source", func() fake.Datagram {
			return wirePacket(t, netip.MustParseAddr("192.0.2.66"), node2IP, 1000, udpPacket(pod1, pod2, 1, 2, 64, false, nil))
		}, dataplane.DropUnknownTunnelSource},
		{"vni 0", func() fake.Datagram {
			return wirePacket(t, node1IP, node2IP, 0, udpPacket(pod1, pod2, 1, 2, 64, false, nil))
		}, dataplane.DropInvalidIdentity},
		{"vni 1", func() fake.Datagram {
			return wirePacket(t, node1IP, node2IP, 1, udpPacket(pod1, pod2, 1, 2, 64, false, nil))
		}, dataplane.DropInvalidIdentity},
		{"I flag clear", mod(func(p []byte) { p[vxOff] = 0 }), dataplane.DropInvalidHeader},
		{"reserved bits", mod(func(p []byte) { p[vxOff+1] = 1 }), dataplane.DropInvalidHeader},
		{"truncated vxlan", func() fake.Datagram { d := good(); d.Payload = d.Payload[:6]; return d }, dataplane.DropInvalidHeader},
		{"inner source MAC is ours", mod(func(p []byte) {
			m := encap.TunnelMAC(node2IP)
			copy(p[innerEth+6:], m[:])
		}), dataplane.DropInvalidMAC},
		{"inner source MAC multicast", mod(func(p []byte) { p[innerEth+6] = 1 }), dataplane.DropInvalidMAC},
		{"inner ARP", mod(func(p []byte) { binary.BigEndian.PutUint16(p[innerEth+12:], encap.EtherTypeARP) }), dataplane.DropUnsupportedProtocol},
		{"inner VLAN", mod(func(p []byte) { binary.BigEndian.PutUint16(p[innerEth+12:], 0x8100) }), dataplane.DropUnsupportedProtocol},
		{"inner ihl 4", mod(func(p []byte) { p[innerIP] = 0x44 }), dataplane.DropInvalidHeader},
		{"inner length lies", mod(func(p []byte) { p[innerIP+2] = 0x7f }), dataplane.DropInvalidHeader},
		{"unknown local port", func() fake.Datagram { d := good(); d.Meta.LocalPort = 9999; return d }, dataplane.DropUnsupportedProtocol},
		{"spoofed inner source", func() fake.Datagram {
			return wirePacket(t, node1IP, node2IP, 1000, udpPacket(netip.MustParseAddr("10.1.3.3"), pod2, 1, 2, 64, false, nil))
		}, dataplane.DropSpoofedInnerSource},
		{"no endpoint", func() fake.Datagram {
			return wirePacket(t, node1IP, node2IP, 1000, udpPacket(pod1, netip.MustParseAddr("10.1.2.99"), 1, 2, 64, false, nil))
		}, dataplane.DropNoEndpoint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n2.eng.Drops(tt.reason)
			n2.under.InjectDatagram(tt.pkt())
			waitDrop(t, n2.eng, tt.reason, before+1)
			expectNone(t, c)
		})
	}
	// Garbage of every length never reaches a pod nor panics.
	g := good()
	for i := 0; i < len(g.Payload); i++ {
		n2.under.InjectDatagram(fake.Datagram{Payload: g.Payload[:i], Meta: g.Meta})
	}
	expectNone(t, c)
}

func TestDeleteNode(t *testing.T) {
	n1, n2, _ := twoNodes(t)
	a := n1.pod(t, "a")
	must(t, n1.eng.DelNode("node2"))
	if err := n1.eng.DelNode("node2"); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	a.Inject(udpPacket(pod1, pod2, 1, 2, 64, false, nil))
	typ, code, _, _ := icmpOf(t, waitOne(t, a))
	if typ != 3 || code != 1 {
		t.Fatalf("type %d code %d, want host unreachable", typ, code)
	}
	waitDrop(t, n1.eng, dataplane.DropNoRoute, 1)
	expectNone(t, n2.pod(t, "c"))
	// node2's traffic is now from an unknown source.
	n2.pod(t, "c").Inject(udpPacket(pod2, pod1, 1, 2, 64, false, nil))
	waitDrop(t, n1.eng, dataplane.DropUnknownTunnelSource, 1)
}

func TestControlValidation(t *testing.T) {
	n1, _, _ := twoNodes(t)
	bad := []dataplane.EndpointSpec{
		{Name: "", IP: netip.MustParseAddr("10.1.1.50")},
		{Name: "x", IP: netip.MustParseAddr("10.1.2.50")},                    // outside pod CIDR
		{Name: "x", IP: netip.MustParseAddr("10.1.1.1")},                     // host address
		{Name: "x", IP: netip.MustParseAddr("10.1.1.0")},                     // network
		{Name: "x", IP: netip.MustParseAddr("10.1.1.255")},                   // broadcast
		{Name: "x", IP: netip.MustParseAddr("10.1.1.50"), Identity: 6},       // reserved identity
		{Name: "x", IP: netip.MustParseAddr("10.1.1.50"), Identity: 1 << 24}, // too large
	}
	for _, s := range bad {
		if err := n1.eng.AddEndpoint(s); !errors.Is(err, dataplane.ErrInvalid) {
			t.Errorf("AddEndpoint(%+v) = %v", s, err)
		}
	}
	if err := n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: netip.MustParseAddr("10.1.1.50")}); !errors.Is(err, dataplane.ErrExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if err := n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "z", IP: pod1}); !errors.Is(err, dataplane.ErrExists) {
		t.Errorf("duplicate ip: %v", err)
	}
	if err := n1.eng.AddNode(dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR: netip.MustParsePrefix("10.1.2.128/25")}); !errors.Is(err, dataplane.ErrExists) {
		t.Errorf("overlapping node: %v", err)
	}
	if err := n1.eng.AddNode(dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR: netip.MustParsePrefix("10.1.1.0/25")}); !errors.Is(err, dataplane.ErrInvalid) {
		t.Errorf("node overlapping our pod cidr: %v", err)
	}
	must(t, n1.eng.DelEndpoint("b"))
	if !n1.pod(t, "b").Closed() {
		t.Fatal("endpoint device not closed on delete")
	}
	if eps := n1.eng.Endpoints(); len(eps) != 1 || eps[0].Name != "a" {
		t.Fatalf("endpoints %+v", eps)
	}
}

func TestCloseClosesEverything(t *testing.T) {
	checkGoroutines(t)
	hub := fake.NewHub()
	n := newTestNode(t, hub.Attach(netip.AddrPortFrom(node1IP, 8472), "u1", 16), node1IP, "10.1.1.0/24", nil)
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x"}))
	must(t, n.eng.Close())
	if !n.pod(t, "a").Closed() || !n.under.Closed() || !n.host.Closed() {
		t.Fatal("a device survived Close")
	}
	if err := n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP: pod1b, Netns: "/x"}); !errors.Is(err, dataplane.ErrStopped) {
		t.Fatalf("AddEndpoint after Close: %v", err)
	}
}

func TestHealth(t *testing.T) {
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16)
	n := newTestNode(t, under, node1IP, "10.1.1.0/24", nil)
	if p := n.eng.Problems(); len(p) != 0 {
		t.Fatalf("fresh engine unhealthy: %v", p)
	}
	// The underlay failing under the engine is a problem status reports.
	under.Close()
	deadline := time.Now().Add(2 * time.Second)
	for len(n.eng.Problems()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if p := n.eng.Problems(); len(p) != 1 || p[0] != "1 of 1 underlay workers stopped" {
		t.Fatalf("problems %v", p)
	}
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestStuckWorker(t *testing.T) {
	n1, _, _ := twoNodes(t)
	if s := n1.eng.Stuck(100 * time.Millisecond); len(s) != 0 {
		t.Fatalf("idle engine has stuck workers %v", s)
	}
	// Pod a's packet for the world goes to the host device, which does not
	// take it: a's worker is stuck in that write.
	n1.host.Stall()
	n1.pod(t, "a").Inject(udpPacket(pod1, netip.MustParseAddr("198.51.100.1"), 1, 2, 64, false, nil))
	deadline := time.Now().Add(2 * time.Second)
	for len(n1.eng.Stuck(100*time.Millisecond)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := n1.eng.Stuck(100 * time.Millisecond); len(s) != 1 || s[0] != "a" {
		t.Fatalf("stuck %v", s)
	}
	n1.host.Resume()
	if got := n1.host.WaitSent(1, 2*time.Second); len(got) != 1 {
		t.Fatalf("host got %d packets after Resume", len(got))
	}
	if s := n1.eng.Stuck(100 * time.Millisecond); len(s) != 0 {
		t.Fatalf("still stuck after Resume: %v", s)
	}
}

// A flood of undeliverable packets is answered with at most a burst and a
// rate of ICMP errors; every packet is still counted as dropped.
func TestICMPErrorRateLimit(t *testing.T) {
	n1, _, _ := twoNodes(t)
	a := n1.pod(t, "a")
	const flood = 2000
	start := time.Now()
	for i := range flood {
		a.Inject(udpPacket(pod1, netip.MustParseAddr("10.1.9.9"), uint16(1000+i), 2, 64, false, nil))
	}
	waitDrop(t, n1.eng, dataplane.DropNoRoute, flood)
	elapsed := time.Since(start)
	st := n1.eng.Stats()
	// At most the burst of 50 plus what the rate of 1000/s added while
	// the flood lasted (and a little slack for the clock).
	most := 50 + uint64(elapsed.Seconds()*1000) + 10
	if st.ICMPErrors < 50 || st.ICMPErrors > most || st.ICMPErrors+st.ICMPErrorsLimited != flood {
		t.Fatalf("%d ICMP errors sent (at most %d in %v), %d held back, for %d packets", st.ICMPErrors, most, elapsed, st.ICMPErrorsLimited, flood)
	}
	if got := len(a.WaitSent(flood, 200*time.Millisecond)); uint64(got) != st.ICMPErrors {
		t.Fatalf("the pod got %d errors, %d counted as sent", got, st.ICMPErrors)
	}
}
