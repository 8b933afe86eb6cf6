package dataplane_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// The IPv6 side of the test topology: node1 has 2001:db8:1:1::/64 besides
// 10.1.1.0/24, node2 2001:db8:1:2::/64 besides 10.1.2.0/24, in the cluster
// 2001:db8:1::/48. On an IPv6 underlay the nodes are 2001:db8:ff::1 and ::2.
var (
	cidr1v6  = netip.MustParsePrefix("2001:db8:1:1::/64")
	cidr2v6  = netip.MustParsePrefix("2001:db8:1:2::/64")
	cluster6 = netip.MustParsePrefix("2001:db8:1::/48")
	host1v6  = netip.MustParseAddr("2001:db8:1:1::1")
	host2v6  = netip.MustParseAddr("2001:db8:1:2::1")
	pod1v6   = netip.MustParseAddr("2001:db8:1:1::10")
	pod1bv6  = netip.MustParseAddr("2001:db8:1:1::11")
	pod2v6   = netip.MustParseAddr("2001:db8:1:2::20")
	world6   = netip.MustParseAddr("2001:db8:ee::7")
	node1IP6 = netip.MustParseAddr("2001:db8:ff::1")
	node2IP6 = netip.MustParseAddr("2001:db8:ff::2")
)

// dualStack gives a node an IPv6 pod CIDR and the cluster's IPv6 CIDR.
func dualStack(cidr6 netip.Prefix) func(*dataplane.Config) {
	return func(c *dataplane.Config) { c.PodCIDR6, c.ClusterCIDR6 = cidr6, cluster6 }
}

// dualNodes builds node1 (pods a: 10.1.1.10 and 2001:db8:1:1::10, identity
// 1000; b: 2001:db8:1:1::11 only) and node2 (pod c: 10.1.2.20 and
// 2001:db8:1:2::20, identity 2000) on an underlay of ip1's and ip2's
// family.
func dualNodes(t *testing.T, ip1, ip2 netip.Addr) (*testNode, *testNode, *fake.Hub) {
	t.Helper()
	checkGoroutines(t)
	hub := fake.NewHub()
	n1 := newTestNode(t, hub.Attach(netip.AddrPortFrom(ip1, 8472), "u1", 16), ip1, "10.1.1.0/24", dualStack(cidr1v6))
	n2 := newTestNode(t, hub.Attach(netip.AddrPortFrom(ip2, 8472), "u2", 16), ip2, "10.1.2.0/24", dualStack(cidr2v6))
	must(t, n1.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: ip2, PodCIDR: netip.MustParsePrefix("10.1.2.0/24"), PodCIDR6: cidr2v6}))
	must(t, n2.eng.AddNode(dataplane.NodeSpec{Name: "node1", IP: ip1, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), PodCIDR6: cidr1v6}))
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, IP6: pod1v6, Netns: "/x", Identity: 1000}))
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP6: pod1bv6, Netns: "/x"}))
	must(t, n2.eng.AddEndpoint(dataplane.EndpointSpec{Name: "c", IP: pod2, IP6: pod2v6, Netns: "/x", Identity: 2000}))
	return n1, n2, hub
}

// udp6 builds an IPv6/UDP packet with a valid checksum.
func udp6(src, dst netip.Addr, sport, dport uint16, hopLimit uint8, payload []byte) []byte {
	return pkttest.IPv6{Src: src, Dst: dst, HopLimit: hopLimit}.UDP(sport, dport, payload)
}

const udp6Payload = encap.IPv6Len + encap.UDPLen

// checkUDP6 checks that got is a valid IPv6/UDP packet from src to dst
// with hop limit hl, a UDP checksum that verifies, and payload.
func checkUDP6(t *testing.T, got []byte, src, dst netip.Addr, hl uint8, payload string) {
	t.Helper()
	ip := encap.IPv6(got)
	if !ip.IsValid(len(got)) || ip.TotalLen() != len(got) || ip.SourceAddr() != src || ip.DestinationAddr() != dst {
		t.Fatalf("got %x, want IPv6 from %s to %s", got, src, dst)
	}
	if ip.HopLimit() != hl || ip.NextHeader() != encap.ProtoUDP {
		t.Fatalf("hop limit %d next header %d, want %d and UDP", ip.HopLimit(), ip.NextHeader(), hl)
	}
	if !encap.UDPChecksumValidV6(ip, encap.UDP(got[encap.IPv6Len:]), false) || string(got[udp6Payload:]) != payload {
		t.Fatalf("udp payload %q, checksum ok %v", got[udp6Payload:], encap.UDPChecksumValidV6(ip, encap.UDP(got[encap.IPv6Len:]), false))
	}
}

// icmp6Of checks that pkt is an ICMPv6 error with a valid checksum and
// returns its type, code, parameter (MTU of Packet Too Big), source and
// the invoking packet it quotes.
func icmp6Of(t *testing.T, pkt []byte) (typ, code uint8, param uint32, src netip.Addr, quote encap.IPv6) {
	t.Helper()
	ip := encap.IPv6(pkt)
	if !ip.IsValid(len(pkt)) || ip.NextHeader() != encap.ProtoICMPv6 || len(pkt) < encap.IPv6Len+encap.ICMPv6Len {
		t.Fatalf("not ICMPv6: %x", pkt)
	}
	ic := encap.ICMPv6(ip.Payload())
	if !encap.ICMPv6ChecksumValid(ip, ic) {
		t.Fatal("bad ICMPv6 checksum")
	}
	if !encap.IsICMPv6Error(ic.Type()) || len(pkt) > encap.IPv6MinMTU {
		t.Fatalf("ICMPv6 type %d of %d bytes", ic.Type(), len(pkt))
	}
	return ic.Type(), ic.Code(), ic.MTU(), ip.SourceAddr(), encap.IPv6(ic.InvokingPacket())
}

// wirePacket6 is wirePacket for an inner IPv6 packet.
func wirePacket6(from, to netip.Addr, vni uint32, inner []byte) fake.Datagram {
	frame := pkttest.Ethernet(encap.TunnelMAC(to), encap.TunnelMAC(from), encap.EtherTypeIPv6, inner)
	return fake.Datagram{Payload: pkttest.VXLAN(vni, frame), Meta: packetio.Meta{Remote: netip.AddrPortFrom(from, 50000), LocalPort: 8472}}
}

// A dual-stack pod talks to a dual-stack pod on another node in both
// families over its one device, and back.
func TestIPv6CrossNode(t *testing.T) {
	n1, n2, hub := dualNodes(t, node1IP, node2IP)
	a, c := n1.pod(t, "a"), n2.pod(t, "c")
	a.Inject(udp6(pod1v6, pod2v6, 1234, 5678, 64, []byte("hello six")))
	// Routed twice: out of node1 and into node2.
	checkUDP6(t, waitOne(t, c), pod1v6, pod2v6, 62, "hello six")
	c.Inject(udp6(pod2v6, pod1v6, 5678, 1234, 64, []byte("back six")))
	checkUDP6(t, waitOne(t, a), pod2v6, pod1v6, 62, "back six")
	// The same devices carry IPv4.
	a.Inject(udpPacket(pod1, pod2, 1, 2, 64, false, []byte("four")))
	if got := waitOne(t, c); encap.IPVersion(got) != 4 || string(got[28:]) != "four" {
		t.Fatalf("IPv4 delivered %x", got)
	}
	c.Inject(udpPacket(pod2, pod1, 2, 1, 64, false, []byte("four back")))
	if got := waitOne(t, a); string(got[28:]) != "four back" {
		t.Fatalf("IPv4 reply %x", got)
	}
	if l := hub.Lost(); len(l) != 0 {
		t.Fatalf("%d packets lost on the underlay", len(l))
	}
	for _, n := range []*testNode{n1, n2} {
		if st := n.eng.Stats(); st.TotalDrops != 0 {
			t.Fatalf("drops: %v", st.Drops)
		}
	}
}

func TestIPv6EncapOnTheWire(t *testing.T) {
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16)
	n := newTestNode(t, under, node1IP, "10.1.1.0/24", dualStack(cidr1v6))
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24"), PodCIDR6: cidr2v6}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP6: pod1v6, Netns: "/x", Identity: 4242}))

	p := udp6(pod1v6, pod2v6, 1, 2, 64, []byte("x"))
	n.pod(t, "a").Inject(p)
	d := waitSentOne(t, under)
	if d.Meta.Remote != netip.AddrPortFrom(node2IP, 8472) {
		t.Fatalf("sent to %v, want node2's tunnel port", d.Meta.Remote)
	}
	if vx := encap.VXLAN(d.Payload); vx.Validate(0) != nil || vx.VNI() != 4242 {
		t.Fatalf("vxlan header %x", d.Payload[:8])
	}
	eth := encap.Ethernet(d.Payload[innerEth:])
	if eth.Source() != n.eng.TunnelMAC() || eth.Destination() != encap.TunnelMAC(node2IP) || eth.EtherType() != encap.EtherTypeIPv6 {
		t.Fatalf("inner ethernet %x", d.Payload[innerEth:innerIP])
	}
	checkUDP6(t, d.Payload[innerIP:], pod1v6, pod2v6, 63, "x")
	u, _ := encap.IPv6(p).UpperLayer()
	if d.Meta.Flow != encap.FlowHashV6(encap.IPv6(p), u) {
		t.Fatalf("flow %d, want FlowHashV6 %d", d.Meta.Flow, encap.FlowHashV6(encap.IPv6(p), u))
	}
	n.pod(t, "a").Inject(udp6(pod1v6, pod2v6, 1, 2, 64, []byte("y")))
	if again := waitSentOne(t, under); again.Meta.Flow != d.Meta.Flow {
		t.Fatalf("one flow, two hashes: %d and %d", d.Meta.Flow, again.Meta.Flow)
	}
	n.pod(t, "a").Inject(udp6(pod1v6, pod2v6, 3, 2, 64, []byte("z")))
	if other := waitSentOne(t, under); other.Meta.Flow == d.Meta.Flow {
		t.Fatalf("another flow hashes alike: %d", other.Meta.Flow)
	}
	// The host: from its IPv6 address it is the node (remote-node on the
	// wire); from another address, the world the kernel forwards for.
	for _, tt := range []struct {
		src netip.Addr
		vni identity.ID
	}{{host1v6, identity.RemoteNode}, {world6, identity.World}} {
		n.host.Inject(udp6(tt.src, pod2v6, 1, 2, 64, nil))
		if vni := encap.VXLAN(waitSentOne(t, under).Payload).VNI(); vni != uint32(tt.vni) {
			t.Fatalf("host traffic from %s: vni %d, want %d", tt.src, vni, tt.vni)
		}
	}
}

func TestIPv6LocalDelivery(t *testing.T) {
	n1, _, hub := dualNodes(t, node1IP, node2IP)
	n1.pod(t, "a").Inject(udp6(pod1v6, pod1bv6, 1, 2, 64, []byte("local")))
	checkUDP6(t, waitOne(t, n1.pod(t, "b")), pod1v6, pod1bv6, 63, "local")
	// To the host device's address: the kernel gets it as sent.
	n1.pod(t, "a").Inject(udp6(pod1v6, host1v6, 1, 53, 64, []byte("dns")))
	checkUDP6(t, waitOne(t, n1.host), pod1v6, host1v6, 64, "dns")
	if l := hub.Lost(); len(l) != 0 {
		t.Fatal("local traffic touched the underlay")
	}
	if st := n1.eng.Stats(); st.Devices[0].TxPackets != 0 || st.TotalDrops != 0 {
		t.Fatalf("underlay tx %d, drops %v", st.Devices[0].TxPackets, st.Drops)
	}
}

// An IPv6-only endpoint has no IPv4: what it sends over IPv4 is spoofed.
// An IPv4-only endpoint likewise for IPv6.
func TestSingleFamilyEndpoints(t *testing.T) {
	n1, n2, _ := dualNodes(t, node1IP, node2IP)
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "v4", IP: pod1b, Netns: "/x"}))
	b, v4 := n1.pod(t, "b"), n1.pod(t, "v4")
	b.Inject(udpPacket(netip.MustParseAddr("0.0.0.0"), pod2, 1, 2, 64, false, nil))
	waitDrop(t, n1.eng, dataplane.DropInvalidSource, 1)
	v4.Inject(udp6(netip.IPv6Unspecified(), pod2v6, 1, 2, 64, nil))
	waitDrop(t, n1.eng, dataplane.DropInvalidSource, 2)
	v4.Inject(udp6(pod1bv6, pod2v6, 1, 2, 64, nil))
	waitDrop(t, n1.eng, dataplane.DropInvalidSource, 3)
	expectNone(t, n2.pod(t, "c"))
	// And each works in its own family.
	b.Inject(udp6(pod1bv6, pod2v6, 1, 2, 64, []byte("b")))
	checkUDP6(t, waitOne(t, n2.pod(t, "c")), pod1bv6, pod2v6, 62, "b")
	v4.Inject(udpPacket(pod1b, pod2, 1, 2, 64, false, []byte("v4")))
	if got := waitOne(t, n2.pod(t, "c")); string(got[28:]) != "v4" {
		t.Fatalf("got %x", got)
	}
}

// A node with an IPv6 pod CIDR only.
func TestIPv6OnlyNode(t *testing.T) {
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16)
	n := newTestNode(t, under, node1IP, "10.1.1.0/24", func(c *dataplane.Config) {
		c.PodCIDR, c.ClusterCIDR = netip.Prefix{}, netip.Prefix{}
		dualStack(cidr1v6)(c)
	})
	if n.eng.HostIP().IsValid() || n.eng.HostIP6() != host1v6 {
		t.Fatalf("host addresses %s and %s", n.eng.HostIP(), n.eng.HostIP6())
	}
	if err := n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "x", IP: pod1, IP6: pod1v6}); !errors.Is(err, dataplane.ErrInvalid) {
		t.Fatalf("IPv4 address without an IPv4 pod cidr: %v", err)
	}
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP6: pod1v6, Netns: "/x"}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP6: pod1bv6, Netns: "/x"}))
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR6: cidr2v6}))
	a := n.pod(t, "a")
	a.Inject(udp6(pod1v6, pod1bv6, 1, 2, 64, []byte("only six")))
	checkUDP6(t, waitOne(t, n.pod(t, "b")), pod1v6, pod1bv6, 63, "only six")
	a.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, []byte("across")))
	checkUDP6(t, waitSentOne(t, under).Payload[innerIP:], pod1v6, pod2v6, 63, "across")
	// IPv4 from the pod is spoofed; IPv4 from the host device that the
	// node cannot route gets no ICMP error: there is no IPv4 address to
	// send it from.
	a.Inject(udpPacket(pod1, pod2, 1, 2, 64, false, nil))
	waitDrop(t, n.eng, dataplane.DropInvalidSource, 1)
	n.host.Inject(udpPacket(netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), 1, 2, 64, false, nil))
	waitDrop(t, n.eng, dataplane.DropNoRoute, 1)
	expectNone(t, n.host)
	if st := n.eng.Stats(); st.ICMPErrors != 0 {
		t.Fatalf("%d ICMP errors", st.ICMPErrors)
	}
	// The FIB has the endpoints' /128s and no IPv4 of the node's own.
	kinds := map[string]string{}
	for _, f := range n.eng.FIB() {
		kinds[f.Prefix.String()] = f.Kind.String()
	}
	if kinds["2001:db8:1:1::10/128"] != "local" || kinds["2001:db8:1:1::1/128"] != "host" || kinds["::/0"] != "host" ||
		kinds["2001:db8:1:2::/64"] != "tunnel" || kinds["2001:db8:1::/48"] != "unreachable" || kinds["10.1.1.1/32"] != "" {
		t.Fatalf("fib %v", kinds)
	}
	if eps := n.eng.Endpoints(); len(eps) != 2 || eps[0].IP6 != pod1v6 || eps[0].IP.IsValid() {
		t.Fatalf("endpoints %+v", eps)
	}
}

// Nodes on an IPv6 underlay carry IPv4 and IPv6 pods alike.
func TestIPv6Underlay(t *testing.T) {
	n1, n2, hub := dualNodes(t, node1IP6, node2IP6)
	if n1.eng.RouteMTU() != 1500-70 {
		t.Fatalf("route mtu %d over IPv6, want 1430", n1.eng.RouteMTU())
	}
	if mac := n1.eng.TunnelMAC(); mac != encap.TunnelMAC(node1IP6) || !mac.IsUnicast() || mac == n2.eng.TunnelMAC() {
		t.Fatalf("tunnel mac %s", mac)
	}
	a, c := n1.pod(t, "a"), n2.pod(t, "c")
	a.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, []byte("6 over 6")))
	checkUDP6(t, waitOne(t, c), pod1v6, pod2v6, 62, "6 over 6")
	a.Inject(udpPacket(pod1, pod2, 1, 2, 64, true, []byte("4 over 6")))
	if got := waitOne(t, c); string(got[28:]) != "4 over 6" || encap.IPv4(got).TTL() != 62 {
		t.Fatalf("got %x", got)
	}
	c.Inject(udp6(pod2v6, pod1v6, 2, 1, 64, []byte("back")))
	checkUDP6(t, waitOne(t, a), pod2v6, pod1v6, 62, "back")
	c.Inject(udpPacket(pod2, pod1, 2, 1, 64, false, []byte("back4")))
	if got := waitOne(t, a); string(got[28:]) != "back4" {
		t.Fatalf("got %x", got)
	}
	// The route MTU is the largest packet that passes; one byte more is
	// too big, for IPv6 (Packet Too Big) and IPv4 with DF alike.
	a.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, make([]byte, 1430-udp6Payload)))
	if got := waitOne(t, c); len(got) != 1430 {
		t.Fatalf("delivered %d bytes", len(got))
	}
	a.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, make([]byte, 1431-udp6Payload)))
	if typ, _, mtu, _, _ := icmp6Of(t, waitOne(t, a)); typ != encap.ICMPv6PacketTooBig || mtu != 1430 {
		t.Fatalf("type %d mtu %d", typ, mtu)
	}
	// A pod may not send to a node's tunnel port, ours or a peer's, over
	// IPv6; other UDP to a node goes to the kernel.
	a.Inject(udp6(pod1v6, node2IP6, 1, 8472, 64, make([]byte, 60)))
	waitDrop(t, n1.eng, dataplane.DropEncapProhibited, 1)
	a.Inject(udp6(pod1v6, node1IP6, 1, 8472, 64, make([]byte, 60)))
	waitDrop(t, n1.eng, dataplane.DropEncapProhibited, 2)
	a.Inject(udp6(pod1v6, node2IP6, 1, 53, 64, nil))
	checkUDP6(t, waitOne(t, n1.host), pod1v6, node2IP6, 64, "")
	if l := hub.Lost(); len(l) != 0 {
		t.Fatalf("%d packets lost", len(l))
	}
	if got := n1.eng.Drops(dataplane.DropFragNeeded); got != 1 {
		t.Fatalf("frag_needed %d", got)
	}
}

// What leaves an IPv6 underlay goes to the peer's IPv6 address; what
// arrives from it is accepted from the peer's IPv6 address only.
func TestIPv6UnderlayAddresses(t *testing.T) {
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP6, 8472), 16)
	n := newTestNode(t, under, node1IP6, "10.1.1.0/24", dualStack(cidr1v6))
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP6, PodCIDR: netip.MustParsePrefix("10.1.2.0/24"), PodCIDR6: cidr2v6}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, IP6: pod1v6, Netns: "/x"}))
	n.pod(t, "a").Inject(udpPacket(pod1, pod2, 1, 2, 64, false, nil))
	d := waitSentOne(t, under)
	if d.Meta.Remote != netip.AddrPortFrom(node2IP6, 8472) || encap.Ethernet(d.Payload[innerEth:]).Destination() != encap.TunnelMAC(node2IP6) {
		t.Fatalf("sent to %v, mac %s", d.Meta.Remote, encap.Ethernet(d.Payload[innerEth:]).Destination())
	}
	// The node itself, from its IPv6 node address, is remote-node. (A
	// peer accepts only sources in the node's pod CIDR: the kernel's
	// routes through the host device choose the host's address.)
	n.host.Inject(udp6(node1IP6, pod2v6, 1, 2, 64, nil))
	if vni := encap.VXLAN(waitSentOne(t, under).Payload).VNI(); vni != uint32(identity.RemoteNode) {
		t.Fatalf("from the node address: vni %d", vni)
	}
	n.under.InjectDatagram(wirePacket6(node2IP6, node1IP6, 2000, udp6(pod2v6, pod1v6, 1, 2, 64, []byte("in"))))
	checkUDP6(t, waitOne(t, n.pod(t, "a")), pod2v6, pod1v6, 63, "in")
	n.under.InjectDatagram(wirePacket(t, node2IP6, node1IP6, 2000, udpPacket(pod2, pod1, 1, 2, 64, false, []byte("in4"))))
	if got := waitOne(t, n.pod(t, "a")); string(got[28:]) != "in4" {
		t.Fatalf("got %x", got)
	}
	// The IPv4 address of the same host is somebody else.
	n.under.InjectDatagram(wirePacket6(node2IP, node1IP6, 2000, udp6(pod2v6, pod1v6, 1, 2, 64, nil)))
	waitDrop(t, n.eng, dataplane.DropUnknownTunnelSource, 1)
	expectNone(t, n.pod(t, "a"))
}

func TestICMPv6Errors(t *testing.T) {
	n1, n2, _ := dualNodes(t, node1IP, node2IP)
	a := n1.pod(t, "a")

	t.Run("packet too big", func(t *testing.T) {
		a.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, make([]byte, 1500-udp6Payload)))
		typ, code, mtu, src, quote := icmp6Of(t, waitOne(t, a))
		if typ != encap.ICMPv6PacketTooBig || code != 0 || mtu != 1450 || src != host1v6 {
			t.Fatalf("type %d code %d mtu %d from %s", typ, code, mtu, src)
		}
		if quote.SourceAddr() != pod1v6 || quote.DestinationAddr() != pod2v6 || len(quote) != 1280-48 {
			t.Fatalf("quote of %d bytes from %s to %s", len(quote), quote.SourceAddr(), quote.DestinationAddr())
		}
		waitDrop(t, n1.eng, dataplane.DropFragNeeded, 1)
		a.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, make([]byte, 1450-udp6Payload)))
		if got := waitOne(t, n2.pod(t, "c")); len(got) != 1450 {
			t.Fatalf("delivered %d bytes", len(got))
		}
	})
	t.Run("hop limit", func(t *testing.T) {
		a.Inject(udp6(pod1v6, pod2v6, 1, 2, 1, nil))
		typ, code, _, src, _ := icmp6Of(t, waitOne(t, a))
		if typ != encap.ICMPv6TimeExceeded || code != encap.ICMPv6HopLimitExceeded || src != host1v6 {
			t.Fatalf("type %d code %d from %s", typ, code, src)
		}
		waitDrop(t, n1.eng, dataplane.DropTTLExceeded, 1)
		// Within the node too.
		a.Inject(udp6(pod1v6, pod1bv6, 1, 2, 1, nil))
		if typ, _, _, _, _ := icmp6Of(t, waitOne(t, a)); typ != encap.ICMPv6TimeExceeded {
			t.Fatalf("type %d", typ)
		}
		expectNone(t, n1.pod(t, "b"))
	})
	t.Run("hop limit expiring on the receiving node", func(t *testing.T) {
		a.Inject(udp6(pod1v6, pod2v6, 1, 2, 2, nil))
		typ, _, _, src, _ := icmp6Of(t, waitOne(t, a))
		if typ != encap.ICMPv6TimeExceeded || src != host2v6 {
			t.Fatalf("type %d from %s", typ, src)
		}
		waitDrop(t, n2.eng, dataplane.DropTTLExceeded, 1)
	})
	t.Run("address unreachable in the cluster", func(t *testing.T) {
		for i, dst := range []string{"2001:db8:1:9::9", "2001:db8:1:1::99"} {
			a.Inject(udp6(pod1v6, netip.MustParseAddr(dst), 1, 2, 64, nil))
			typ, code, _, _, _ := icmp6Of(t, waitOne(t, a))
			if typ != encap.ICMPv6DestUnreach || code != encap.ICMPv6AddressUnreach {
				t.Fatalf("%s: type %d code %d", dst, typ, code)
			}
			waitDrop(t, n1.eng, dataplane.DropNoRoute, uint64(i+1))
		}
	})
	t.Run("no route from the host", func(t *testing.T) {
		// The kernel routed it to us and we would route it back.
		n1.host.Inject(udp6(host1v6, world6, 1, 2, 64, nil))
		typ, code, _, _, _ := icmp6Of(t, waitOne(t, n1.host))
		if typ != encap.ICMPv6DestUnreach || code != encap.ICMPv6NoRoute {
			t.Fatalf("type %d code %d", typ, code)
		}
		waitDrop(t, n1.eng, dataplane.DropNoRoute, 3)
	})
	t.Run("no answer to an ICMPv6 error", func(t *testing.T) {
		orig := udp6(pod2v6, pod1v6, 1, 2, 64, nil)
		errPkt := make([]byte, encap.ICMPv6ErrorMaxLen)
		n := encap.BuildICMPv6Error(errPkt, encap.IPv6(orig), pod1v6.As16(), encap.ICMPv6DestUnreach, encap.ICMPv6PortUnreach, 0)
		bad := errPkt[:n]
		dst := netip.MustParseAddr("2001:db8:1:9::9").As16()
		copy(bad[24:40], dst[:]) // to a hole; the checksum no longer matters
		a.Inject(bad)
		waitDrop(t, n1.eng, dataplane.DropNoRoute, 4)
		// Nor to an error behind extension headers, nor to a fragment
		// other than the first, whose hop limit runs out.
		ext := pkttest.IPv6{Src: pod1v6, Dst: netip.MustParseAddr("2001:db8:1:9::9"), Ext: []pkttest.Ext{pkttest.DestOpts(1)}}.
			ICMPv6(encap.ICMPv6TimeExceeded, 0, make([]byte, 44))
		a.Inject(ext)
		waitDrop(t, n1.eng, dataplane.DropNoRoute, 5)
		frag := pkttest.IPv6{Src: pod1v6, Dst: pod2v6, HopLimit: 1, Ext: []pkttest.Ext{pkttest.Fragment(1232, false, 9)}}.
			Packet(encap.ProtoUDP, make([]byte, 100))
		a.Inject(frag)
		waitDrop(t, n1.eng, dataplane.DropTTLExceeded, 3)
		expectNone(t, a)
	})
	t.Run("no error without an IPv6 address", func(t *testing.T) {
		// An IPv4-only node on an IPv6 underlay routes IPv6 (to its
		// peers, to the kernel) but cannot answer it: no HostIP6.
		checkGoroutines(t)
		n := newTestNode(t, fake.NewUnderlay("u", netip.AddrPortFrom(node1IP6, 8472), 8), node1IP6, "10.1.1.0/24", nil)
		if n.eng.HostIP6().IsValid() {
			t.Fatalf("HostIP6 %s without PodCIDR6", n.eng.HostIP6())
		}
		n.host.Inject(udp6(world6, netip.MustParseAddr("2001:db8:ee::8"), 1, 2, 64, nil))
		waitDrop(t, n.eng, dataplane.DropNoRoute, 1)
		expectNone(t, n.host)
	})
}

func TestIPv6PodSourceChecks(t *testing.T) {
	n1, n2, _ := dualNodes(t, node1IP, node2IP)
	a := n1.pod(t, "a")
	linkLocal := netip.MustParseAddr("fe80::10")
	chain := func(n int) []pkttest.Ext {
		var e []pkttest.Ext
		for range n {
			e = append(e, pkttest.DestOpts(1))
		}
		return e
	}
	tests := []struct {
		name   string
		pkt    []byte
		reason dataplane.DropReason
	}{
		{"another pod's address", udp6(pod1bv6, pod2v6, 1, 2, 64, nil), dataplane.DropInvalidSource},
		{"unspecified source", udp6(netip.IPv6Unspecified(), pod2v6, 1, 2, 64, nil), dataplane.DropInvalidSource},
		{"link-local source", udp6(linkLocal, pod2v6, 1, 2, 64, nil), dataplane.DropLinkLocal},
		{"link-local destination", udp6(pod1v6, netip.MustParseAddr("fe80::1"), 1, 2, 64, nil), dataplane.DropLinkLocal},
		{"router solicitation", pkttest.IPv6{Src: linkLocal, Dst: netip.MustParseAddr("ff02::2"), HopLimit: 255}.ICMPv6(133, 0, make([]byte, 4)), dataplane.DropMulticast},
		{"MLD report from ::", pkttest.IPv6{Src: netip.IPv6Unspecified(), Dst: netip.MustParseAddr("ff02::16"), HopLimit: 1,
			Ext: []pkttest.Ext{pkttest.HopByHop(1)}}.ICMPv6(143, 0, make([]byte, 4)), dataplane.DropMulticast},
		{"multicast source", udp6(netip.MustParseAddr("ff05::1"), pod2v6, 1, 2, 64, nil), dataplane.DropMulticast},
		{"global multicast", udp6(pod1v6, netip.MustParseAddr("ff0e::1"), 1, 2, 64, nil), dataplane.DropMulticast},
		{"nine extension headers", pkttest.IPv6{Src: pod1v6, Dst: pod2v6, Ext: chain(9)}.UDP(1, 2, nil), dataplane.DropInvalidExtHeaders},
		{"extension header past the end", func() []byte {
			p := pkttest.IPv6{Src: pod1v6, Dst: pod2v6, Ext: chain(1)}.UDP(1, 2, nil)
			p[41] = 9 // 80 bytes long
			return p
		}(), dataplane.DropInvalidExtHeaders},
		{"payload length past the end", func() []byte {
			p := udp6(pod1v6, pod2v6, 1, 2, 64, nil)
			binary.BigEndian.PutUint16(p[4:], 100)
			return p
		}(), dataplane.DropInvalidHeader},
		{"truncated header", udp6(pod1v6, pod2v6, 1, 2, 64, nil)[:39], dataplane.DropInvalidHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n1.eng.Drops(tt.reason)
			a.Inject(tt.pkt)
			waitDrop(t, n1.eng, tt.reason, before+1)
			expectNone(t, a)
		})
	}
	expectNone(t, n2.pod(t, "c"))
	expectNone(t, n1.host)
	if st := n1.eng.Stats(); st.ICMPErrors != 0 {
		t.Fatalf("%d ICMP errors for packets never answered", st.ICMPErrors)
	}
}

// Fragments: a fragment other than the first has no ports and is routed
// on its addresses; a first fragment to a tunnel port too short to show
// its ports is refused like a whole datagram to it.
func TestIPv6Fragments(t *testing.T) {
	n1, n2, _ := dualNodes(t, node1IP6, node2IP6)
	a, c := n1.pod(t, "a"), n2.pod(t, "c")
	later := pkttest.IPv6{Src: pod1v6, Dst: pod2v6, Ext: []pkttest.Ext{pkttest.Fragment(1232, false, 9)}}.
		Packet(encap.ProtoUDP, []byte("tail of a datagram"))
	a.Inject(later)
	got := waitOne(t, c)
	if len(got) != len(later) || encap.IPv6(got).HopLimit() != 62 || string(got[48:]) != "tail of a datagram" {
		t.Fatalf("fragment delivered as %x", got)
	}
	first := pkttest.IPv6{Src: pod1v6, Dst: pod2v6, Ext: []pkttest.Ext{pkttest.Fragment(0, true, 9)}}.UDP(1, 2, []byte("head"))
	a.Inject(first)
	if got := waitOne(t, c); len(got) != len(first) {
		t.Fatalf("first fragment delivered as %x", got)
	}
	// Later fragments to the tunnel port cannot be told apart from any
	// other: the kernel gets them, and drops them without their head.
	toPort := pkttest.IPv6{Src: pod1v6, Dst: node2IP6, Ext: []pkttest.Ext{pkttest.Fragment(0, true, 10)}}
	a.Inject(toPort.Packet(encap.ProtoUDP, []byte{0x12}))
	waitDrop(t, n1.eng, dataplane.DropEncapProhibited, 1)
	a.Inject(toPort.UDP(1, 8472, make([]byte, 32)))
	waitDrop(t, n1.eng, dataplane.DropEncapProhibited, 2)
	toPort.Ext = []pkttest.Ext{pkttest.Fragment(8, false, 10)}
	a.Inject(toPort.Packet(encap.ProtoUDP, make([]byte, 8)))
	waitOne(t, n1.host)
	expectNone(t, c)
}

func TestIPv6IngressValidation(t *testing.T) {
	_, n2, _ := dualNodes(t, node1IP, node2IP)
	c := n2.pod(t, "c")
	good := func() fake.Datagram {
		return wirePacket6(node1IP, node2IP, 1000, udp6(pod1v6, pod2v6, 1, 2, 64, []byte("ok")))
	}
	n2.under.InjectDatagram(good())
	checkUDP6(t, waitOne(t, c), pod1v6, pod2v6, 63, "ok")
	const ip6 = innerIP
	mod := func(f func(p []byte)) fake.Datagram { d := good(); f(d.Payload); return d }
	tests := []struct {
		name   string
		pkt    fake.Datagram
		reason dataplane.DropReason
	}{
		{"spoofed inner source", wirePacket6(node1IP, node2IP, 1000, udp6(netip.MustParseAddr("2001:db8:1:3::3"), pod2v6, 1, 2, 64, nil)), dataplane.DropSpoofedInnerSource},
		{"the sender's IPv4 pods' prefix is not its IPv6 one", wirePacket6(node1IP, node2IP, 1000, udp6(netip.MustParseAddr("::ffff:10.1.1.10"), pod2v6, 1, 2, 64, nil)), dataplane.DropSpoofedInnerSource},
		{"no endpoint", wirePacket6(node1IP, node2IP, 1000, udp6(pod1v6, netip.MustParseAddr("2001:db8:1:2::99"), 1, 2, 64, nil)), dataplane.DropNoEndpoint},
		{"multicast destination", wirePacket6(node1IP, node2IP, 1000, udp6(pod1v6, netip.MustParseAddr("ff02::1"), 1, 2, 64, nil)), dataplane.DropNoEndpoint},
		{"payload length lies", mod(func(p []byte) { p[ip6+4] = 0x7f }), dataplane.DropInvalidHeader},
		{"version 4 in an IPv6 frame", mod(func(p []byte) { p[ip6] = 0x45 }), dataplane.DropInvalidHeader},
		{"extension header chain too long", wirePacket6(node1IP, node2IP, 1000, pkttest.IPv6{Src: pod1v6, Dst: pod2v6,
			Ext: []pkttest.Ext{pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1),
				pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1), pkttest.DestOpts(1)}}.UDP(1, 2, nil)), dataplane.DropInvalidExtHeaders},
		{"hop-by-hop not first", wirePacket6(node1IP, node2IP, 1000, pkttest.IPv6{Src: pod1v6, Dst: pod2v6,
			Ext: []pkttest.Ext{pkttest.DestOpts(1), pkttest.HopByHop(1)}}.UDP(1, 2, nil)), dataplane.DropInvalidExtHeaders},
		{"from a VTEP-less stranger", wirePacket6(netip.MustParseAddr("192.0.2.66"), node2IP, 1000, udp6(pod1v6, pod2v6, 1, 2, 64, nil)), dataplane.DropUnknownTunnelSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := n2.eng.Drops(tt.reason)
			n2.under.InjectDatagram(tt.pkt)
			waitDrop(t, n2.eng, tt.reason, before+1)
			expectNone(t, c)
		})
	}
	// To the host's IPv6 address: the kernel gets it.
	n2.under.InjectDatagram(wirePacket6(node1IP, node2IP, 6, udp6(host1v6, host2v6, 1, 2, 64, []byte("node"))))
	checkUDP6(t, waitOne(t, n2.host), host1v6, host2v6, 64, "node")
	// A Linux sender's partial TCP checksum is finished before delivery.
	h := pkttest.IPv6{Src: pod1v6, Dst: pod2v6}
	full := h.TCP(pkttest.TCP{SrcPort: 1, DstPort: 2, Flags: pkttest.ACK}, []byte("data"))
	n2.under.InjectDatagram(wirePacket6(node1IP, node2IP, 1000, h.TCP(pkttest.TCP{SrcPort: 1, DstPort: 2, Flags: pkttest.ACK, Partial: true}, []byte("data"))))
	got := waitOne(t, c)
	if !encap.TCPChecksumValidV6(encap.IPv6(got), encap.TCP(got[encap.IPv6Len:])) || string(got[encap.IPv6Len:]) != string(full[encap.IPv6Len:]) {
		t.Fatalf("delivered %x, want %x", got[encap.IPv6Len:], full[encap.IPv6Len:])
	}
	// A node without an IPv6 pod CIDR sends no IPv6 pods' traffic.
	must(t, n2.eng.DelNode("node1"))
	must(t, n2.eng.AddNode(dataplane.NodeSpec{Name: "node1", IP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24")}))
	before := n2.eng.Drops(dataplane.DropSpoofedInnerSource)
	n2.under.InjectDatagram(good())
	waitDrop(t, n2.eng, dataplane.DropSpoofedInnerSource, before+1)
	expectNone(t, c)
}

func TestIPv6Policy(t *testing.T) {
	n1, n2, _ := dualNodes(t, node1IP, node2IP)
	must(t, n1.eng.SetPolicy("b", []identity.ID{1000}))
	c := n2.pod(t, "c")
	c.Inject(udp6(pod2v6, pod1bv6, 1, 2, 64, []byte("denied")))
	waitDrop(t, n1.eng, dataplane.DropPolicyDenied, 1)
	expectNone(t, n1.pod(t, "b"))
	n1.pod(t, "a").Inject(udp6(pod1v6, pod1bv6, 1, 2, 64, []byte("allowed")))
	checkUDP6(t, waitOne(t, n1.pod(t, "b")), pod1v6, pod1bv6, 63, "allowed")
	// Denied locally too, by identity, whatever the family.
	must(t, n1.eng.SetPolicy("a", []identity.ID{2000}))
	n1.pod(t, "b").Inject(udp6(pod1bv6, pod1v6, 1, 2, 64, nil))
	waitDrop(t, n1.eng, dataplane.DropPolicyDenied, 2)
	c.Inject(udp6(pod2v6, pod1v6, 1, 2, 64, []byte("from c")))
	checkUDP6(t, waitOne(t, n1.pod(t, "a")), pod2v6, pod1v6, 62, "from c")
}

// IPv4 and IPv6 errors come out of one bucket per worker.
func TestICMPv6RateLimitShared(t *testing.T) {
	n1, _, _ := dualNodes(t, node1IP, node2IP)
	a := n1.pod(t, "a")
	const flood = 2000
	start := time.Now()
	for i := range flood {
		if i%2 == 0 {
			a.Inject(udp6(pod1v6, netip.MustParseAddr("2001:db8:1:9::9"), uint16(1000+i), 2, 64, nil))
		} else {
			a.Inject(udpPacket(pod1, netip.MustParseAddr("10.1.9.9"), uint16(1000+i), 2, 64, false, nil))
		}
	}
	waitDrop(t, n1.eng, dataplane.DropNoRoute, flood)
	elapsed := time.Since(start)
	st := n1.eng.Stats()
	most := 50 + uint64(elapsed.Seconds()*1000) + 10
	if st.ICMPErrors < 50 || st.ICMPErrors > most || st.ICMPErrors+st.ICMPErrorsLimited != flood {
		t.Fatalf("%d ICMP errors sent (at most %d in %v), %d held back, for %d packets", st.ICMPErrors, most, elapsed, st.ICMPErrorsLimited, flood)
	}
	got := a.WaitSent(flood, 200*time.Millisecond)
	var v4, v6 int
	for _, p := range got {
		switch encap.IPVersion(p) {
		case 4:
			v4++
		case 6:
			v6++
		}
	}
	if uint64(len(got)) != st.ICMPErrors || v4 == 0 || v6 == 0 {
		t.Fatalf("the pod got %d errors (%d ICMP, %d ICMPv6), %d counted as sent", len(got), v4, v6, st.ICMPErrors)
	}
}

func TestIPv6MonitorAndCapture(t *testing.T) {
	_, n2, _ := dualNodes(t, node1IP6, node2IP6)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := n2.eng.Subscribe(ctx)
	n2.under.InjectDatagram(wirePacket6(node1IP6, node2IP6, 1000, pkttest.IPv6{Src: netip.MustParseAddr("2001:db8:1:3::3"), Dst: pod2v6,
		Ext: []pkttest.Ext{pkttest.DestOpts(1)}}.UDP(4444, 80, nil)))
	select {
	case ev := <-events:
		if ev.Reason != "spoofed_inner_source" || ev.Source != "underlay" || ev.Protocol != "udp" ||
			ev.Src != "[2001:db8:1:3::3]:4444" || ev.Dst != "[2001:db8:1:2::20]:80" || ev.Identity != 1000 ||
			ev.OuterSrc != "[2001:db8:ff::1]:50000" || ev.OuterDst != "[2001:db8:ff::2]:8472" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
	}
	// A pod's ICMPv6 to a hole.
	n2.pod(t, "c").Inject(pkttest.IPv6{Src: pod2v6, Dst: netip.MustParseAddr("2001:db8:1:2::99")}.ICMPv6(encap.ICMPv6EchoRequest, 0, make([]byte, 4)))
	select {
	case ev := <-events:
		if ev.Reason != "no_route" || ev.Source != "pod" || ev.Protocol != "icmpv6" || ev.Src != pod2v6.String() || ev.Dst != "2001:db8:1:2::99" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
	}

	// The underlay capture shows outer IPv6 with a valid UDP checksum.
	pkts, err := n2.eng.Capture(ctx, dataplane.CapturePoint{Kind: dataplane.CaptureUnderlay})
	must(t, err)
	n2.pod(t, "c").Inject(udp6(pod2v6, pod1v6, 1, 2, 64, []byte("captured")))
	select {
	case p := <-pkts:
		o, err := encap.ParseOuterV6(p.Data, false)
		if err != nil || !p.Out || o.Src != node2IP6 || o.Dst != node1IP6 || o.DstPort != 8472 || o.FlowLabel == 0 {
			t.Fatalf("captured %+v, %v", o, err)
		}
		if inner := p.Data[o.Payload+innerIP:]; encap.IPv6(inner).DestinationAddr() != pod1v6 {
			t.Fatalf("inner %x", inner)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("nothing captured")
	}
}

func TestDualStackControl(t *testing.T) {
	n1, _, _ := dualNodes(t, node1IP, node2IP)
	badEPs := []dataplane.EndpointSpec{
		{Name: "x"}, // no address
		{Name: "x", IP6: netip.MustParseAddr("2001:db8:1:2::50")}, // outside pod cidr6
		{Name: "x", IP6: host1v6},                                 // the host's
		{Name: "x", IP6: netip.MustParseAddr("2001:db8:1:1::")},   // network address
		{Name: "x", IP6: netip.MustParseAddr("::ffff:10.1.1.50")},
		{Name: "x", IP6: pod1},  // IPv4 as IP6
		{Name: "x", IP: pod1v6}, // IPv6 as IP
	}
	for _, s := range badEPs {
		if err := n1.eng.AddEndpoint(s); !errors.Is(err, dataplane.ErrInvalid) {
			t.Errorf("AddEndpoint(%+v) = %v", s, err)
		}
	}
	if err := n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "z", IP: netip.MustParseAddr("10.1.1.50"), IP6: pod1bv6}); !errors.Is(err, dataplane.ErrExists) {
		t.Errorf("duplicate ip6: %v", err)
	}
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "z", IP: netip.MustParseAddr("10.1.1.50"), IP6: netip.MustParseAddr("2001:db8:1:1:ffff:ffff:ffff:ffff")}))

	badNodes := []struct {
		n    dataplane.NodeSpec
		want error
	}{
		{dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("2001:db8:ff::3"), PodCIDR6: netip.MustParsePrefix("2001:db8:1:3::/64")}, dataplane.ErrInvalid}, // underlay family
		{dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3")}, dataplane.ErrInvalid},                                                            // no pod cidr
		{dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR6: netip.MustParsePrefix("2001:db8:1:1::/80")}, dataplane.ErrInvalid},      // inside ours
		{dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR6: netip.MustParsePrefix("2001:db8:1:3::1/64")}, dataplane.ErrInvalid},     // not masked
		{dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR6: netip.MustParsePrefix("10.1.3.0/24")}, dataplane.ErrInvalid},            // IPv4 as PodCIDR6
		{dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR6: netip.MustParsePrefix("2001:db8:1:2:8000::/65")}, dataplane.ErrExists},  // inside node2's
		{dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR6: netip.MustParsePrefix("2001:db8:1:2::/63")}, dataplane.ErrExists},       // around node2's
	}
	for _, b := range badNodes {
		if err := n1.eng.AddNode(b.n); !errors.Is(err, b.want) {
			t.Errorf("AddNode(%+v) = %v, want %v", b.n, err, b.want)
		}
	}
	// An IPv6-only node in a dual-stack cluster is fine.
	must(t, n1.eng.AddNode(dataplane.NodeSpec{Name: "n3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR6: netip.MustParsePrefix("2001:db8:1:3::/64")}))
	// VTEPs: IPv4 CIDRs, endpoints of the underlay's family.
	if err := n1.eng.SetVTEPs([]dataplane.VTEPSpec{{CIDR: vmCIDR, Endpoint: netip.MustParseAddr("2001:db8:ff::36"), MAC: vmMAC}}); !errors.Is(err, dataplane.ErrInvalid) {
		t.Errorf("IPv6 VTEP endpoint on an IPv4 underlay: %v", err)
	}
	if err := n1.eng.SetVTEPs([]dataplane.VTEPSpec{{CIDR: netip.MustParsePrefix("2001:db8:9::/64"), Endpoint: vmIP, MAC: vmMAC}}); !errors.Is(err, dataplane.ErrInvalid) {
		t.Errorf("IPv6 VTEP cidr: %v", err)
	}
}

func TestDualStackConfig(t *testing.T) {
	under := func() []packetio.Underlay {
		return []packetio.Underlay{fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 8)}
	}
	base := dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), PodCIDR6: cidr1v6, UnderlayMTU: 1500}
	bad := map[string]func(c *dataplane.Config){
		"no pod cidr":            func(c *dataplane.Config) { c.PodCIDR, c.PodCIDR6 = netip.Prefix{}, netip.Prefix{} },
		"pod cidr6 /127":         func(c *dataplane.Config) { c.PodCIDR6 = netip.MustParsePrefix("2001:db8:1:1::/127") },
		"pod cidr6 IPv4":         func(c *dataplane.Config) { c.PodCIDR6 = netip.MustParsePrefix("10.2.0.0/16") },
		"pod cidr6 mapped":       func(c *dataplane.Config) { c.PodCIDR6 = netip.MustParsePrefix("::ffff:10.2.0.0/112") },
		"cluster cidr6 IPv4":     func(c *dataplane.Config) { c.ClusterCIDR6 = netip.MustParsePrefix("10.0.0.0/8") },
		"pod cidr IPv6":          func(c *dataplane.Config) { c.PodCIDR = cidr2v6 },
		"node ip mapped":         func(c *dataplane.Config) { c.NodeIP = netip.MustParseAddr("::ffff:192.0.2.1") },
		"node ip missing":        func(c *dataplane.Config) { c.NodeIP = netip.Addr{} },
		"ipv6 underlay mtu 1279": func(c *dataplane.Config) { c.NodeIP, c.PodCIDR6, c.UnderlayMTU = node1IP6, netip.Prefix{}, 1279 },
		// IPv6 pods need 1280 after the encapsulation.
		"ipv6 pods on mtu 1329": func(c *dataplane.Config) { c.UnderlayMTU = 1329 },
		"ipv6 pods, geneve options too long": func(c *dataplane.Config) {
			c.Protocol, c.NodeIP = "geneve", node1IP6
			c.GeneveOptions = []encap.GeneveOption{{Class: 0x0103, Type: 1, Data: make([]byte, 120)}, {Class: 0x0103, Type: 2, Data: make([]byte, 120)}}
		},
	}
	for name, mod := range bad {
		c := base
		mod(&c)
		if e, err := dataplane.New(c, nil, under(), nil, nil, nil); !errors.Is(err, dataplane.ErrInvalid) {
			if e != nil {
				e.Close()
			}
			t.Errorf("%s: New = %v", name, err)
		}
	}
	good := map[string]func(c *dataplane.Config){
		"dual stack":             nil,
		"ipv6 only":              func(c *dataplane.Config) { c.PodCIDR = netip.Prefix{} },
		"ipv6 pods on mtu 1330":  func(c *dataplane.Config) { c.UnderlayMTU = 1330 },
		"ipv4 pods on ipv6 1280": func(c *dataplane.Config) { c.NodeIP, c.PodCIDR6, c.UnderlayMTU = node1IP6, netip.Prefix{}, 1280 },
		"native ipv6 on 1280":    func(c *dataplane.Config) { c.Native, c.UnderlayMTU = true, 1280 },
	}
	for name, mod := range good {
		c := base
		if mod != nil {
			mod(&c)
		}
		e, err := dataplane.New(c, nil, under(), nil, nil, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == "dual stack" {
			if e.HostIP() != netip.MustParseAddr("10.1.1.1") || e.HostIP6() != host1v6 {
				t.Errorf("host addresses %s, %s", e.HostIP(), e.HostIP6())
			}
			// The MTU may not fall below what IPv6 pods need.
			if err := e.SetUnderlayMTU(1300); !errors.Is(err, dataplane.ErrInvalid) || e.UnderlayMTU() != 1500 {
				t.Errorf("SetUnderlayMTU(1300) = %v, mtu now %d", err, e.UnderlayMTU())
			}
			must(t, e.SetUnderlayMTU(1330))
		}
		e.Close()
	}
}

// The host routes of a node cover both of its pod CIDRs.
func TestDualStackHostRoutes(t *testing.T) {
	checkGoroutines(t)
	k := newKernelTable()
	e, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), PodCIDR6: cidr1v6, UnderlayMTU: 1500},
		nil, []packetio.Underlay{fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 8)}, nil, nil, k)
	must(t, err)
	defer e.Close()
	must(t, e.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: node2CIDR, PodCIDR6: cidr2v6}))
	k.mu.Lock()
	if k.mtu[node2CIDR] != 1450 || k.mtu[cidr2v6] != 1450 {
		t.Errorf("routes %v", k.mtu)
	}
	k.mu.Unlock()
	must(t, e.SetUnderlayMTU(1400))
	k.mu.Lock()
	if k.mtu[cidr2v6] != 1350 {
		t.Errorf("after the mtu change: %v", k.mtu)
	}
	k.mu.Unlock()
	must(t, e.DelNode("node2"))
	k.mu.Lock()
	if len(k.mtu) != 0 {
		t.Errorf("left %v", k.mtu)
	}
	k.mu.Unlock()
	// A prefix someone else routes is refused, naming the node.
	k2 := newKernelTable(cidr2v6.String())
	e2, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR6: cidr1v6, UnderlayMTU: 1500},
		nil, []packetio.Underlay{fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 8)}, nil, nil, k2)
	must(t, err)
	defer e2.Close()
	if err := e2.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR6: cidr2v6}); !errors.Is(err, dataplane.ErrExists) || len(e2.Nodes()) != 0 {
		t.Errorf("taken prefix: %v, nodes %v", err, e2.Nodes())
	}
}

// Native routing over an IPv6 underlay: direct routes via the node's
// IPv6 address for its pods of both families (IPv4 ones through RTA_VIA
// in the kernel).
func TestNativeRoutingIPv6(t *testing.T) {
	checkGoroutines(t)
	host := fake.New("vxdp_host", 16)
	pod := fake.New("a", 8)
	routes := &routeLog{}
	e, err := dataplane.New(dataplane.Config{
		NodeIP: node1IP6, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), PodCIDR6: cidr1v6, ClusterCIDR6: cluster6,
		UnderlayMTU: 1500, Native: true, AutoDirectNodeRoutes: true,
	}, nil, nil, host, func(dataplane.EndpointSpec, int) (packetio.Device, error) { return pod, nil }, routes)
	must(t, err)
	e.Start()
	defer e.Close()
	must(t, e.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP6: pod1v6, Netns: "/x"}))
	must(t, e.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP6, PodCIDR: node2CIDR, PodCIDR6: cidr2v6}))
	if len(routes.vias) != 2 || routes.vias[0] != node2CIDR || routes.vias[1] != cidr2v6 || len(routes.added) != 0 {
		t.Fatalf("routes: via %v, dev %v", routes.vias, routes.added)
	}
	pod.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, make([]byte, 1500-udp6Payload)))
	if got := waitOne(t, host); len(got) != 1500 || encap.IPv6(got).HopLimit() != 64 {
		t.Fatalf("host got %d bytes", len(got))
	}
	host.Inject(udp6(pod2v6, pod1v6, 2, 1, 63, []byte("in")))
	checkUDP6(t, waitOne(t, pod), pod2v6, pod1v6, 62, "in")
	must(t, e.DelNode("node2"))
	if len(routes.deleted) != 2 {
		t.Fatalf("deleted %v", routes.deleted)
	}
}

// Native routing of dual-stack pods over an IPv4 underlay: the kernel has
// no IPv6 route through an IPv4 next hop, so only the IPv4 pod CIDR gets a
// direct route (the configuration refuses auto-direct-node-routes here;
// an embedding program gets the IPv4 half); IPv6 pods still go to the
// kernel, for the network to route.
func TestNativeRoutingIPv6OverIPv4(t *testing.T) {
	checkGoroutines(t)
	host := fake.New("vxdp_host", 16)
	pod := fake.New("a", 8)
	routes := &routeLog{}
	e, err := dataplane.New(dataplane.Config{
		NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), PodCIDR6: cidr1v6,
		UnderlayMTU: 1500, Native: true, AutoDirectNodeRoutes: true,
	}, nil, nil, host, func(dataplane.EndpointSpec, int) (packetio.Device, error) { return pod, nil }, routes)
	must(t, err)
	e.Start()
	defer e.Close()
	must(t, e.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP6: pod1v6, Netns: "/x"}))
	must(t, e.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: node2CIDR, PodCIDR6: cidr2v6}))
	if len(routes.vias) != 1 || routes.vias[0] != node2CIDR || len(routes.added) != 0 {
		t.Fatalf("routes: via %v, dev %v", routes.vias, routes.added)
	}
	pod.Inject(udp6(pod1v6, pod2v6, 1, 2, 64, []byte("out")))
	if got := waitOne(t, host); encap.IPv6(got).DestinationAddr() != pod2v6 {
		t.Fatalf("host got %x", got)
	}
}

// An IPv6 destination never routes to a VTEP: VTEP CIDRs are IPv4. On an
// IPv6 underlay the VTEP itself has an IPv6 address.
func TestVTEPOnIPv6Underlay(t *testing.T) {
	checkGoroutines(t)
	under := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP6, 8472), 16)
	n := newTestNode(t, under, node1IP6, "10.1.1.0/24", dualStack(cidr1v6))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, IP6: pod1v6, Netns: "/x"}))
	vm6 := netip.MustParseAddr("2001:db8:ff::36")
	if err := n.eng.SetVTEPs([]dataplane.VTEPSpec{{CIDR: vmCIDR, Endpoint: vmIP, MAC: vmMAC}}); !errors.Is(err, dataplane.ErrInvalid) {
		t.Fatalf("IPv4 VTEP endpoint on an IPv6 underlay: %v", err)
	}
	must(t, n.eng.SetVTEPs([]dataplane.VTEPSpec{{CIDR: vmCIDR, Endpoint: vm6, MAC: vmMAC}}))
	n.pod(t, "a").Inject(udpPacket(pod1, vmAddr, 1, 2, 64, false, nil))
	if d := waitSentOne(t, under); d.Meta.Remote != netip.AddrPortFrom(vm6, 8472) || encap.VXLAN(d.Payload).VNI() != 2 {
		t.Fatalf("to the VTEP: %v vni %d", d.Meta.Remote, encap.VXLAN(d.Payload).VNI())
	}
	// Its ARP request arrives from its IPv6 address and is answered there.
	d := vmFrame(t, 2, arpRequest(vmAddr, vmMAC, pod1))
	d.Meta.Remote = netip.AddrPortFrom(vm6, 8472)
	n.under.InjectDatagram(d)
	if reply := waitSentOne(t, under); reply.Meta.Remote != netip.AddrPortFrom(vm6, 8472) {
		t.Fatalf("arp reply to %v", reply.Meta.Remote)
	}
	// IPv6 from the VTEP is not carried.
	frame := pkttest.Ethernet(n.eng.TunnelMAC(), vmMAC, encap.EtherTypeIPv6, udp6(netip.MustParseAddr("2001:db8:9::1"), pod1v6, 1, 2, 64, nil))
	n.under.InjectDatagram(fake.Datagram{Payload: pkttest.VXLAN(2, frame), Meta: packetio.Meta{Remote: netip.AddrPortFrom(vm6, 8472), LocalPort: 8472}})
	waitDrop(t, n.eng, dataplane.DropUnsupportedProtocol, 1)
	expectNone(t, n.pod(t, "a"))
}

// With tunnel-source-check off a stranger's packets are taken, but an
// inner source that no pod anywhere can have is not: multicast,
// link-local, unspecified, loopback, an IPv4-mapped address; for IPv4
// multicast, broadcast, loopback and 0.0.0.0/8.
func TestTunnelSourceCheckOff(t *testing.T) {
	checkGoroutines(t)
	n := newTestNode(t, fake.NewUnderlay("u", netip.AddrPortFrom(node2IP, 8472), 16), node2IP, "10.1.2.0/24", func(c *dataplane.Config) {
		dualStack(cidr2v6)(c)
		c.DisableSourceCheck = true
	})
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "c", IP: pod2, IP6: pod2v6, Netns: "/x", Identity: 2000}))
	c := n.pod(t, "c")
	stranger := netip.MustParseAddr("192.0.2.66")
	n.under.InjectDatagram(wirePacket6(stranger, node2IP, 1000, udp6(pod1v6, pod2v6, 1, 2, 64, []byte("taken"))))
	checkUDP6(t, waitOne(t, c), pod1v6, pod2v6, 63, "taken")
	n.under.InjectDatagram(wirePacket(t, stranger, node2IP, 1000, udpPacket(pod1, pod2, 1, 2, 64, false, []byte("taken"))))
	waitOne(t, c)
	for _, src := range []string{"ff02::1", "ff0e::5", "fe80::1", "::", "::1", "::ffff:10.1.1.10",
		"224.0.0.1", "239.1.1.1", "255.255.255.255", "127.0.0.1", "0.0.0.0", "0.1.2.3"} {
		t.Run(src, func(t *testing.T) {
			a := netip.MustParseAddr(src)
			d := wirePacket6(stranger, node2IP, 1000, udp6(a, pod2v6, 1, 2, 64, nil))
			if a.Is4() {
				d = wirePacket(t, stranger, node2IP, 1000, udpPacket(a, pod2, 1, 2, 64, false, nil))
			}
			before := n.eng.Drops(dataplane.DropSpoofedInnerSource)
			n.under.InjectDatagram(d)
			waitDrop(t, n.eng, dataplane.DropSpoofedInnerSource, before+1)
			expectNone(t, c)
		})
	}
	if st := n.eng.Stats(); st.ICMPErrors != 0 {
		t.Fatalf("%d ICMP errors for impossible sources", st.ICMPErrors)
	}
}
