package pkttest

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/vxdp/vxdp/encap"
)

var (
	src6 = netip.MustParseAddr("2001:db8:1::10")
	dst6 = netip.MustParseAddr("2001:db8:2::20")
)

// refPseudo6 is the IPv6 pseudo-header sum of an upper-layer packet of n
// bytes and protocol proto, written the plain way.
func refPseudo6(p []byte, proto uint8, n int) uint32 {
	var s uint32
	for i := 8; i < 40; i += 2 {
		s += uint32(p[i])<<8 | uint32(p[i+1])
	}
	return s + uint32(proto) + uint32(n)
}

func TestUDP6(t *testing.T) {
	for _, payload := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xab}, 1400)} {
		p := UDP6(netip.AddrPortFrom(src6, 40000), netip.AddrPortFrom(dst6, 53), payload)
		if refSum(p[40:], refPseudo6(p, encap.ProtoUDP, len(p)-40)) != 0 {
			t.Fatalf("%d bytes: bad UDP checksum", len(payload))
		}
		pkt := gopacket.NewPacket(p, layers.LayerTypeIPv6, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		u, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || u == nil || ip.HopLimit != 64 || int(ip.Length) != len(p)-40 || ip.SrcIP.String() != src6.String() ||
			ip.DstIP.String() != dst6.String() || u.SrcPort != 40000 || u.DstPort != 53 || !bytes.Equal(u.Payload, payload) {
			t.Fatalf("%d bytes: decoded %v", len(payload), pkt)
		}
	}
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	h := IPv6{Src: src6, Dst: dst6, HopLimit: 3, TrafficClass: 0xb8, FlowLabel: 0x12345,
		Ext: []Ext{HopByHop(1), DestOpts(2), Fragment(0, true, 0xdeadbeef)}}
	p := h.TCP(TCP{SrcPort: 1, DstPort: 2, Flags: SYN}, []byte("syn"))
	off := 40 + 8 + 16 + 8
	if refSum(p[off:], refPseudo6(p, encap.ProtoTCP, len(p)-off)) != 0 {
		t.Fatal("bad TCP checksum behind extension headers")
	}
	pkt := gopacket.NewPacket(p, layers.LayerTypeIPv6, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	hbh, _ := pkt.Layer(layers.LayerTypeIPv6HopByHop).(*layers.IPv6HopByHop)
	dopt, _ := pkt.Layer(layers.LayerTypeIPv6Destination).(*layers.IPv6Destination)
	frag, _ := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
	if ip == nil || hbh == nil || dopt == nil || frag == nil || ip.HopLimit != 3 || ip.TrafficClass != 0xb8 || ip.FlowLabel != 0x12345 ||
		ip.NextHeader != layers.IPProtocolIPv6HopByHop || hbh.NextHeader != layers.IPProtocolIPv6Destination ||
		dopt.NextHeader != layers.IPProtocolIPv6Fragment || frag.NextHeader != layers.IPProtocolTCP || !frag.MoreFragments ||
		frag.FragmentOffset != 0 || frag.Identification != 0xdeadbeef {
		t.Fatalf("decoded %v", pkt)
	}
	u, err := encap.IPv6(p).UpperLayer()
	if err != nil || u.Proto != encap.ProtoTCP || u.Offset != off || !u.FirstFragment() {
		t.Fatalf("UpperLayer = %+v, %v", u, err)
	}
	// A later fragment.
	later := IPv6{Src: src6, Dst: dst6, Ext: []Ext{Fragment(1232, false, 7)}}.Packet(encap.ProtoUDP, []byte("rest"))
	if fo := binary.BigEndian.Uint16(later[42:]); fo != 1232 || later[40] != encap.ProtoUDP || later[6] != encap.ProtoIPv6Frag {
		t.Fatalf("fragment header % x", later[40:48])
	}
}

func TestICMPv6Builder(t *testing.T) {
	h := IPv6{Src: src6, Dst: dst6}
	echo := h.ICMPv6(encap.ICMPv6EchoRequest, 0, []byte{0, 1, 0, 2, 'h', 'i'})
	if echo[6] != encap.ProtoICMPv6 || !encap.ICMPv6ChecksumValid(encap.IPv6(echo), encap.ICMPv6(echo[40:])) ||
		refSum(echo[40:], refPseudo6(echo, encap.ProtoICMPv6, len(echo)-40)) != 0 {
		t.Fatal("bad ICMPv6 packet")
	}
}
