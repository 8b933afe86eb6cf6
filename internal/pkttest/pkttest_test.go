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

// refSum is RFC 1071's checksum written the plain way, so that the
// builders are checked against something other than encap.
func refSum(b []byte, initial uint32) uint16 {
	s := initial
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func refPseudo(p []byte) uint32 {
	var s uint32
	for i := 12; i < 20; i += 2 {
		s += uint32(p[i])<<8 | uint32(p[i+1])
	}
	return s + uint32(p[9]) + uint32(len(p)-20)
}

var (
	src = netip.MustParseAddrPort("192.0.2.1:40000")
	dst = netip.MustParseAddrPort("198.51.100.7:53")
)

func TestUDP4(t *testing.T) {
	for _, payload := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xab}, 1400)} {
		p := UDP4(src, dst, payload)
		if refSum(p[:20], 0) != 0 || refSum(p[20:], refPseudo(p)) != 0 {
			t.Fatalf("%d bytes: bad checksums", len(payload))
		}
		pkt := gopacket.NewPacket(p, layers.LayerTypeIPv4, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		u, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if ip == nil || u == nil || ip.TTL != 64 || int(ip.Length) != len(p) || ip.SrcIP.String() != "192.0.2.1" ||
			ip.DstIP.String() != "198.51.100.7" || u.SrcPort != 40000 || u.DstPort != 53 || !bytes.Equal(u.Payload, payload) {
			t.Fatalf("%d bytes: decoded %v", len(payload), pkt)
		}
		got, ok := ParseUDP4(p)
		if !ok || got.Src != src || got.Dst != dst || !bytes.Equal(got.Payload, payload) {
			t.Fatalf("ParseUDP4 = %+v, %v", got, ok)
		}
	}
	if p := NoUDPChecksum(UDP4(src, dst, []byte("v"))); binary.BigEndian.Uint16(p[26:]) != 0 {
		t.Fatal("NoUDPChecksum left a checksum")
	}
}

func TestParseUDP4Rejects(t *testing.T) {
	good := UDP4(src, dst, []byte("payload"))
	for name, p := range map[string][]byte{
		"short":           good[:27],
		"tcp":             IPv4{Src: src.Addr(), Dst: dst.Addr()}.TCP(TCP{SrcPort: 1, DstPort: 2}, nil),
		"total past end":  good[:len(good)-1],
		"udp length long": func() []byte { b := bytes.Clone(good); b[25] += 10; return b }(),
		"fragment":        func() []byte { b := bytes.Clone(good); b[6] |= 0x20; return b }(),
	} {
		if _, ok := ParseUDP4(p); ok {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestTCPAndICMP(t *testing.T) {
	h := IPv4{Src: src.Addr(), Dst: dst.Addr(), TTL: 9, ID: 0x1234, DF: true}
	s := TCP{SrcPort: 40000, DstPort: 5201, Seq: 0xfffff000, Ack: 77, Flags: ACK | PSH, Window: 512}
	p := h.TCP(s, []byte("data"))
	if refSum(p[:20], 0) != 0 || refSum(p[20:], refPseudo(p)) != 0 {
		t.Fatal("bad TCP checksums")
	}
	pkt := gopacket.NewPacket(p, layers.LayerTypeIPv4, gopacket.Default)
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil || ip.TTL != 9 || ip.Id != 0x1234 || ip.Flags != layers.IPv4DontFragment ||
		tcp.Seq != s.Seq || tcp.Ack != 77 || !tcp.ACK || !tcp.PSH || tcp.SYN || tcp.Window != 512 || string(tcp.Payload) != "data" {
		t.Fatalf("decoded %v", pkt)
	}
	s.Partial = true
	partial := h.TCP(s, []byte("data"))
	if got := binary.BigEndian.Uint16(partial[36:]); got != ^refSum(nil, refPseudo(partial)) {
		t.Fatalf("partial checksum %#x", got)
	}

	echo := h.ICMP(8, 0, []byte{0, 1, 0, 2, 'h', 'i'})
	if refSum(echo[20:], 0) != 0 || echo[9] != encap.ProtoICMP {
		t.Fatal("bad ICMP packet")
	}
}

func TestTunnelHeaders(t *testing.T) {
	inner := UDP4(src, dst, []byte("inner"))
	a, b := encap.MAC{2, 0, 0, 0, 0, 1}, encap.MAC{2, 0, 0, 0, 0, 2}
	frame := Ethernet(a, b, encap.EtherTypeIPv4, inner)

	v := UDP4(src, netip.AddrPortFrom(dst.Addr(), 4789), VXLAN(1000, frame))
	pkt := gopacket.NewPacket(v, layers.LayerTypeIPv4, gopacket.Default)
	vx, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
	eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if vx == nil || vx.VNI != 1000 || !vx.ValidIDFlag || eth == nil || eth.DstMAC.String() != a.String() ||
		eth.SrcMAC.String() != b.String() || !bytes.Equal(eth.Payload, inner) {
		t.Fatalf("VXLAN decoded %v", pkt)
	}
	if !bytes.Equal(VXLANWords(encap.VXLANFlagI, 1000<<8, frame), VXLAN(1000, frame)) {
		t.Fatal("VXLANWords differs from VXLAN")
	}

	g := UDP4(src, netip.AddrPortFrom(dst.Addr(), 6081), Geneve(2000, []encap.GeneveOption{{Class: 0x0102, Type: 3, Data: []byte{1, 2, 3, 4}}}, frame))
	pkt = gopacket.NewPacket(g, layers.LayerTypeIPv4, gopacket.Default)
	gv, _ := pkt.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
	if gv == nil || gv.VNI != 2000 || len(gv.Options) != 1 || gv.Options[0].Class != 0x0102 || gv.Protocol != layers.EthernetTypeTransparentEthernetBridging {
		t.Fatalf("Geneve decoded %v", pkt)
	}
}
