package dataplane_test

import (
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// A tunnel payload whose driver verified the outer checksum comes with the
// payload's sum; the engine tells from it, by the headers alone, whether
// the inner TCP or UDP checksum is right, and says so to the device it
// delivers to. Only a right checksum is vouched for: none without a sum, a
// wrong sum, a corrupted segment, nor a packet without one (ICMPv6).
func TestChecksumComplete(t *testing.T) {
	checkGoroutines(t)
	u := fake.NewUnderlay("u", netip.AddrPortFrom(node1IP6, 8472), 16)
	n := newTestNode(t, u, node1IP6, "10.1.1.0/24", dualStack(cidr1v6))
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP6, PodCIDR: netip.MustParsePrefix("10.1.2.0/24"), PodCIDR6: cidr2v6}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, IP6: pod1v6, Netns: "/x"}))
	a := n.pod(t, "a")

	seg := pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Ack: 1, Flags: pkttest.ACK, Window: 512}
	tcp6 := func() []byte { return pkttest.IPv6{Src: pod2v6, Dst: pod1v6}.TCP(seg, []byte("some stream data")) }
	summed := func(d fake.Datagram) fake.Datagram {
		d.Meta.Sum, d.Meta.HasSum = encap.Sum(d.Payload, 0), true
		return d
	}
	for _, c := range []struct {
		name    string
		d       fake.Datagram
		checked bool
	}{
		{"tcp over ipv6", summed(wirePacket6(node2IP6, node1IP6, 2000, tcp6())), true},
		{"udp over ipv6", summed(wirePacket6(node2IP6, node1IP6, 2000, udp6(pod2v6, pod1v6, 1, 2, 64, []byte("datagram")))), true},
		{"tcp over ipv4", summed(wirePacket(t, node2IP6, node1IP6, 2000, pkttest.IPv4{Src: pod2, Dst: pod1}.TCP(seg, []byte("four")))), true},
		{"no sum from the driver", wirePacket6(node2IP6, node1IP6, 2000, tcp6()), false},
		{"a sum that is not the payload's", func() fake.Datagram {
			d := summed(wirePacket6(node2IP6, node1IP6, 2000, tcp6()))
			d.Meta.Sum++
			return d
		}(), false},
		{"a segment changed before the sum", func() fake.Datagram {
			p := tcp6()
			p[len(p)-1] ^= 1
			return summed(wirePacket6(node2IP6, node1IP6, 2000, p))
		}(), false},
		{"icmp", summed(wirePacket6(node2IP6, node1IP6, 2000, pkttest.IPv6{Src: pod2v6, Dst: pod1v6}.ICMPv6(128, 0, []byte("ping")))), false},
	} {
		before := a.Checked()
		n.under.InjectDatagram(c.d)
		waitOne(t, a) // delivered either way: the pod's kernel judges
		if got := a.Checked() - before; got != map[bool]int64{true: 1, false: 0}[c.checked] {
			t.Errorf("%s: %d packets vouched for, want checked %v", c.name, got, c.checked)
		}
	}
}

// A packet whose checksum the pod's device computed (a TSO segment, say)
// leaves in a tunnel payload whose sum the engine gives the underlay from
// the headers alone, for an outer checksum without a pass over the
// payload; the receiving engine, handed the sum back, vouches for the
// inner checksum to its pod's device. Packets without such a checksum get
// no sum.
func TestChecksumFromHeaders(t *testing.T) {
	n1, n2, hub := dualNodes(t, node1IP6, node2IP6)
	a, c := n1.pod(t, "a"), n2.pod(t, "c")
	seg := pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Ack: 1, Flags: pkttest.ACK, Window: 512}
	for _, p := range []struct {
		name    string
		pkt     []byte
		checked bool // what the device says; the sum follows only for TCP and UDP
		sum     bool
	}{
		{"tcp over ipv6", pkttest.IPv6{Src: pod1v6, Dst: pod2v6}.TCP(seg, []byte("a segment the device cut")), true, true},
		{"tcp over ipv4", pkttest.IPv4{Src: pod1, Dst: pod2}.TCP(seg, []byte("odd")), true, true},
		{"udp over ipv6", udp6(pod1v6, pod2v6, 1, 2, 64, []byte("datagram")), true, true},
		{"not from the driver", pkttest.IPv6{Src: pod1v6, Dst: pod2v6}.TCP(seg, []byte("the pod's own")), false, false},
		{"icmpv6", pkttest.IPv6{Src: pod1v6, Dst: pod2v6}.ICMPv6(128, 0, []byte("ping")), true, false},
	} {
		before := c.Checked()
		if p.checked {
			a.InjectChecked(p.pkt)
		} else {
			a.Inject(p.pkt)
		}
		waitOne(t, c)
		if got := c.Checked() - before; got != map[bool]int64{true: 1, false: 0}[p.sum] {
			t.Errorf("%s: %d packets vouched for at the far pod, want the sum carried %v", p.name, got, p.sum)
		}
	}
	if lost := hub.Lost(); len(lost) != 0 {
		t.Fatalf("%d payloads lost, their sums not what was sent", len(lost))
	}
	// Within a node the word passes straight from one device to the
	// other.
	b := n1.pod(t, "b")
	a.InjectChecked(pkttest.IPv6{Src: pod1v6, Dst: pod1bv6}.TCP(seg, []byte("local")))
	waitOne(t, b)
	if b.Checked() != 1 {
		t.Errorf("pod to pod within a node: %d vouched for, want 1", b.Checked())
	}
}

// A TCP super-packet from a Linux sender on a virtual link arrives whole,
// its checksum partial. The engine leaves it so for a device whose kernel
// finishes it (packetio.SuperWriter), and finishes it itself for any
// other; a packet within the MTU is finished either way.
func TestPartialSuperPacketDelivered(t *testing.T) {
	checkGoroutines(t)
	for _, c := range []struct {
		name     string
		takes    bool
		payload  int
		finished bool
	}{
		{"super-packet, device takes it partial", true, 20000, false},
		{"super-packet, device does not", false, 20000, true},
		{"within the MTU, device takes partial super-packets", true, 1000, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, n2, _ := twoNodes(t)
			dev := n2.pod(t, "c")
			dev.SetTakesPartialSuper(c.takes)
			seg := pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Ack: 1, Flags: pkttest.ACK, Window: 512, Partial: true}
			inner := pkttest.IPv4{Src: pod1, Dst: pod2}.TCP(seg, make([]byte, c.payload))
			field := inner[36:38]
			partial := [2]byte(field)
			n2.under.InjectDatagram(wirePacket(t, node1IP, node2IP, 1000, inner))
			got := encap.IPv4(waitOne(t, dev))
			if len(got) != len(inner) {
				t.Fatalf("delivered %d bytes, want %d", len(got), len(inner))
			}
			done := encap.Checksum(got.Payload(), got.PseudoHeaderSum(encap.ProtoTCP, len(got.Payload()))) == 0
			if done != c.finished {
				t.Fatalf("checksum finished %v, want %v", done, c.finished)
			}
			if !c.finished && [2]byte(got[36:38]) != partial {
				t.Fatal("a partial checksum left for the device was changed")
			}
		})
	}
}
