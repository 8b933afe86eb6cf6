package encap

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// tunnelV6 is what a whole outer packet over an IPv6 underlay needs to know
// about a peer.
type tunnelV6 struct {
	Src, Dst netip.Addr // outer addresses
	DstPort  uint16
	SrcMAC   MAC
	DstMAC   MAC
}

var testTunnelV6 = tunnelV6{
	Src:     node6A,
	Dst:     node6B,
	DstPort: VXLANPort,
	SrcMAC:  TunnelMAC(node6A),
	DstMAC:  TunnelMAC(node6B),
}

// encapVXLANv6 does what the engine and an AF_XDP underlay do together for
// the inner packet buf[start:start+n]: the tunnel header and inner Ethernet
// (EncapVXLAN), then the outer IPv6 and UDP (EncodeOuterV6) with the inner
// packet's traffic class or TOS and the flow's label and source port.
func encapVXLANv6(buf []byte, start, n int, t *tunnelV6, vni uint32, srcPort uint16, flowLabel uint32) (int, error) {
	if start < OuterV6Len+VXLANLen+EthernetLen {
		return 0, ErrHeaderRoom
	}
	var tos uint8
	switch IPVersion(buf[start:]) {
	case IPv4Version:
		tos = IPv4(buf[start:]).TOS()
	case IPv6Version:
		tos = IPv6(buf[start:]).TrafficClass()
	}
	o, err := EncapVXLAN(buf, start, n, vni, t.DstMAC, t.SrcMAC)
	if err != nil {
		return 0, err
	}
	src := netip.AddrPortFrom(t.Src, srcPort)
	dst := netip.AddrPortFrom(t.Dst, t.DstPort)
	if err := EncodeOuterV6(buf[o-OuterV6Len:], src, dst, start+n-o, EncapTOS(tos), flowLabel); err != nil {
		return 0, err
	}
	return o - OuterV6Len, nil
}

// gpOuterVXLANv6 is what encapVXLANv6 must write, serialised by gopacket.
func gpOuterVXLANv6(t *testing.T, inner []byte, tc uint8, flowLabel uint32, srcPort uint16, vni uint32) []byte {
	ip := &layers.IPv6{Version: 6, TrafficClass: tc, FlowLabel: flowLabel, NextHeader: layers.IPProtocolUDP, HopLimit: 64,
		SrcIP: net.IP(node6A.AsSlice()), DstIP: net.IP(node6B.AsSlice())}
	u := &layers.UDP{SrcPort: layers.UDPPort(srcPort), DstPort: VXLANPort}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	et := layers.EthernetTypeIPv4
	if IPVersion(inner) == 6 {
		et = layers.EthernetTypeIPv6
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(testTunnelV6.SrcMAC[:]), DstMAC: net.HardwareAddr(testTunnelV6.DstMAC[:]), EthernetType: et}
	// The frame apart, its padding to Ethernet's minimum cut off: gopacket
	// always adds it, a tunnel never.
	frame := gpSerialize(t, eth, gopacket.Payload(inner))[:EthernetLen+len(inner)]
	return gpSerialize(t, ip, u, &layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(frame))
}

func TestEncapVXLANv6AgainstGopacket(t *testing.T) {
	inner6 := udp6(t, []byte("vxdp"))
	IPv6(inner6).SetTrafficClass(0xb9) // EF, ECT(1)
	inner4 := mustHex(t, innerUDP)
	IPv4(inner4).SetTOS(0x2a) // AF11, ECT(0)
	for _, c := range []struct {
		name  string
		inner []byte
		tc    uint8
		label uint32
	}{
		{"ipv6 in ipv6", inner6, 0xb9, FlowLabel(0xdeadbeef)},
		{"ipv4 in ipv6", inner4, 0x2a, 0},
		{"ipv6 in ipv6, long", udp6(t, make([]byte, 1400)), 0x28, IPv6MaxFlowLabel},
	} {
		t.Run(c.name, func(t *testing.T) {
			buf := make([]byte, Headroom+len(c.inner))
			copy(buf[Headroom:], c.inner)
			o, err := encapVXLANv6(buf, Headroom, len(c.inner), &testTunnelV6, 1000, 51234, c.label)
			if err != nil {
				t.Fatal(err)
			}
			if o != Headroom-VXLANOverheadV6 {
				t.Fatalf("outer starts at %d, want %d", o, Headroom-VXLANOverheadV6)
			}
			want := gpOuterVXLANv6(t, c.inner, c.tc, c.label, 51234, 1000)
			if got := buf[o:]; !bytes.Equal(got, want) {
				t.Fatalf("encap mismatch\n got %x\nwant %x", got, want)
			}
			// And back: the parse finds what was written.
			out, err := ParseOuterV6(buf[o:], false)
			if err != nil {
				t.Fatal(err)
			}
			want6 := OuterV6{Src: node6A, Dst: node6B, SrcPort: 51234, DstPort: VXLANPort, Payload: OuterV6Len,
				PayloadLen: VXLANLen + EthernetLen + len(c.inner), TrafficClass: c.tc, FlowLabel: c.label,
				PayloadSum: Sum(buf[o+OuterV6Len:], 0), SumValid: true}
			if out != want6 {
				t.Fatalf("parsed %+v\nwant   %+v", out, want6)
			}
			vx := VXLAN(buf[o+out.Payload : o+out.Payload+out.PayloadLen])
			if vx.Validate(0) != nil || vx.VNI() != 1000 || !bytes.Equal(vx[VXLANLen+EthernetLen:], c.inner) {
				t.Fatal("tunnel payload differs")
			}
		})
	}
}

// The inner Ethernet header says which IP version it carries, Geneve's as
// VXLAN's.
func TestEncapGeneveInnerIPv6(t *testing.T) {
	inner := udp6(t, []byte("vxdp"))
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	o, err := EncapGeneve(buf, Headroom, len(inner), 1000, geneveTwoOptsList, testTunnelV6.DstMAC, testTunnelV6.SrcMAC)
	if err != nil {
		t.Fatal(err)
	}
	g := Geneve(buf[o:])
	if err := g.Validate(geneveKnown); err != nil {
		t.Fatal(err)
	}
	eth := Ethernet(buf[o+g.HeaderLen():])
	if eth.EtherType() != EtherTypeIPv6 || !bytes.Equal(eth[EthernetLen:], inner) {
		t.Fatalf("inner ethernet type %#x", eth.EtherType())
	}
	p := gopacket.NewPacket(eth, layers.LayerTypeEthernet, gopacket.Default)
	if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); !ok || u.DstPort != 5201 {
		t.Fatalf("gopacket reads %v", p)
	}
}

func TestParseOuterV6Rejects(t *testing.T) {
	inner := udp6(t, []byte("vxdp"))
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	o, err := encapVXLANv6(buf, Headroom, len(inner), &testTunnelV6, 1000, 51234, 0)
	if err != nil {
		t.Fatal(err)
	}
	good := buf[o:]
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	zero := mut(func(b []byte) { UDP(b[IPv6Len:]).SetChecksum(0) })
	tests := []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrBadLength},
		{"short", good[:IPv6Len-1], ErrBadLength},
		{"version 4", mut(func(b []byte) { b[0] = 0x45 }), ErrBadLength},
		{"payload length beyond packet", mut(func(b []byte) { IPv6(b).SetPayloadLen(uint16(len(b))) }), ErrBadLength},
		{"not udp", mut(func(b []byte) { IPv6(b).SetNextHeader(ProtoTCP) }), ErrUnsupported},
		{"extension header", mut(func(b []byte) { IPv6(b).SetNextHeader(ProtoIPv6Opts) }), ErrUnsupported},
		{"fragment", mut(func(b []byte) { IPv6(b).SetNextHeader(ProtoIPv6Frag) }), ErrUnsupported},
		{"only the ipv6 header", mut(func(b []byte) { IPv6(b).SetPayloadLen(0) })[:IPv6Len], ErrBadLength},
		{"udp length beyond ip", mut(func(b []byte) { UDP(b[IPv6Len:]).SetLength(uint16(len(b))) }), ErrBadLength},
		{"udp length below header", mut(func(b []byte) { UDP(b[IPv6Len:]).SetLength(7) }), ErrBadLength},
		{"payload changed", mut(func(b []byte) { b[len(b)-1] ^= 1 }), ErrBadChecksum},
		{"source changed", mut(func(b []byte) { b[IPv6SourceAddrOffset+15] ^= 1 }), ErrBadChecksum},
		{"destination changed", mut(func(b []byte) { b[IPv6DestinationAddrOffset] ^= 0x80 }), ErrBadChecksum},
		{"zero checksum", zero, ErrZeroChecksum},
		{"ipv4-mapped source", mut(func(b []byte) { copy(b[IPv6SourceAddrOffset:], []byte{10: 0xff, 11: 0xff}) }), ErrUnsupported},
		{"ipv4-mapped destination", mut(func(b []byte) { copy(b[IPv6DestinationAddrOffset:], []byte{10: 0xff, 11: 0xff}) }), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseOuterV6(tt.pkt, false); err != tt.want {
				t.Fatalf("ParseOuterV6 = %v, want %v", err, tt.want)
			}
		})
	}
	// The tunnel exception: zero accepted where the caller allows it, a
	// wrong checksum never.
	if out, err := ParseOuterV6(zero, true); err != nil || out.PayloadLen != VXLANLen+EthernetLen+len(inner) {
		t.Fatalf("zero checksum allowed: %+v, %v", out, err)
	}
	if _, err := ParseOuterV6(mut(func(b []byte) { b[len(b)-1] ^= 1 }), true); err != ErrBadChecksum {
		t.Fatalf("bad checksum with zero allowed: %v", err)
	}
	// Padding after the datagram (a short Ethernet frame) is not payload.
	padded := append(bytes.Clone(good), 0, 0, 0)
	if out, err := ParseOuterV6(padded, false); err != nil || out.Payload+out.PayloadLen != len(good) {
		t.Fatalf("padded: %+v, %v", out, err)
	}
}

func TestEncodeOuterV6Refuses(t *testing.T) {
	src, dst := netip.AddrPortFrom(node6A, 50000), netip.AddrPortFrom(node6B, VXLANPort)
	v4 := netip.MustParseAddrPort("10.169.72.238:8472")
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4.Addr().As16()), 8472)
	for _, c := range []struct {
		name       string
		b          []byte
		src, dst   netip.AddrPort
		payloadLen int
		label      uint32
		want       error
	}{
		{"header does not fit", make([]byte, OuterV6Len-1), src, dst, 0, 0, ErrHeaderRoom},
		{"payload past the buffer", make([]byte, OuterV6Len+10), src, dst, 11, 0, ErrBadLength},
		{"negative payload", make([]byte, OuterV6Len+10), src, dst, -1, 0, ErrBadLength},
		{"udp length over 16 bits", make([]byte, OuterV6Len+0x10000), src, dst, 0xffff - UDPLen + 1, 0, ErrBadLength},
		{"ipv4 destination", make([]byte, OuterV6Len), src, v4, 0, 0, ErrUnsupported},
		{"ipv4-mapped destination", make([]byte, OuterV6Len), src, mapped, 0, 0, ErrUnsupported},
		{"ipv4 source", make([]byte, OuterV6Len), v4, dst, 0, 0, ErrUnsupported},
		{"flow label over 20 bits", make([]byte, OuterV6Len), src, dst, 0, 1 << 20, ErrFlowLabelRange},
	} {
		for i := range c.b {
			c.b[i] = 0xa5
		}
		if err := EncodeOuterV6(c.b, c.src, c.dst, c.payloadLen, 0, c.label); err != c.want {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if !bytes.Equal(c.b, bytes.Repeat([]byte{0xa5}, len(c.b))) {
			t.Errorf("%s: buffer written", c.name)
		}
	}
	// The largest payload fits.
	b := make([]byte, OuterV6Len+0xffff-UDPLen)
	if err := EncodeOuterV6(b, src, dst, 0xffff-UDPLen, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseOuterV6(b, false); err != nil {
		t.Fatalf("largest datagram does not parse back: %v", err)
	}
}

func TestFlowLabel(t *testing.T) {
	for _, h := range []uint32{0, 1, 0xfff, 0x1000, 0xffffffff, 0x80000000, 0x12345678} {
		if l := FlowLabel(h); l == 0 || l > IPv6MaxFlowLabel {
			t.Fatalf("hash %#x: label %#x", h, l)
		}
	}
	// The label takes other bits of the hash than the source port:
	// hashes that differ only where SourcePort looks get one label, and
	// any difference in the other 20 bits gives another.
	if FlowLabel(0x12345000) != FlowLabel(0x12345fff) {
		t.Fatal("label taken from the port's bits")
	}
	for bit := 12; bit < 32; bit++ {
		if FlowLabel(0x12345678) == FlowLabel(0x12345678^1<<bit) {
			t.Fatalf("hash bit %d does not change the label", bit)
		}
	}
}

func TestFlowHashV6(t *testing.T) {
	hash := func(pkt []byte) uint32 {
		t.Helper()
		u, err := IPv6(pkt).UpperLayer()
		if err != nil {
			t.Fatal(err)
		}
		return FlowHashV6(IPv6(pkt), u)
	}
	ip := gpIPv6(pod6A, pod6B, ProtoUDP)
	base := hash(udp6(t, []byte("vxdp")))
	// What is not the flow does not move it.
	other := udp6(t, []byte("another payload"))
	IPv6(other).DecrementHopLimit()
	IPv6(other).SetTrafficClass(0xff)
	if err := IPv6(other).SetFlowLabel(7); err != nil {
		t.Fatal(err)
	}
	if hash(other) != base {
		t.Fatal("packets of one flow hash differently")
	}
	// Each part of the flow does.
	for name, pkt := range map[string][]byte{
		"source port":      packet6(t, ip, gpUDP6(t, ip, 40001, 5201, nil)),
		"destination port": packet6(t, ip, gpUDP6(t, ip, 40000, 5202, nil)),
		"protocol":         tcp6(t, nil),
		"source":           packet6(t, gpIPv6(pod6B, pod6B, ProtoUDP), gpUDP6(t, ip, 40000, 5201, nil)),
		"destination":      packet6(t, gpIPv6(pod6A, pod6A, ProtoUDP), gpUDP6(t, ip, 40000, 5201, nil)),
	} {
		if hash(pkt) == base {
			t.Errorf("%s does not change the hash", name)
		}
	}
	// Behind options, the ports are still found.
	if h := hash(packet6(t, gpIPv6(pod6A, pod6B, ProtoHopByHop), optsHdr(ProtoUDP, 8), gpUDP6(t, ip, 40000, 5201, []byte("vxdp")))); h != base {
		t.Error("options move the flow")
	}
	// Every fragment of a datagram hashes alike, whatever its header says.
	first := hash(packet6(t, gpIPv6(pod6A, pod6B, ProtoIPv6Frag), fragHdr(ProtoUDP, 0, true), gpUDP6(t, ip, 40000, 5201, make([]byte, 16))))
	last := hash(packet6(t, gpIPv6(pod6A, pod6B, ProtoIPv6Frag), fragHdr(ProtoUDP, 24, false), make([]byte, 16)))
	if first != last {
		t.Error("fragments of one datagram hash differently")
	}
	// Source ports spread.
	seen := map[uint16]bool{}
	for i := range 4096 {
		p := packet6(t, ip, gpUDP6(t, ip, uint16(i), 5201, nil))
		seen[SourcePort(hash(p))] = true
	}
	if len(seen) < 3500 {
		t.Fatalf("4096 flows used only %d source ports", len(seen))
	}
}

func TestZeroAllocsV6(t *testing.T) {
	tcp := tcp6(t, []byte("vxdp"))
	chain := packet6(t, gpIPv6(pod6A, pod6B, ProtoHopByHop), optsHdr(ProtoIPv6Opts, 8), optsHdr(ProtoTCP, 8), gpTCP6(t, gpIPv6(pod6A, pod6B, 6), 1, 2, nil))
	bad := packet6(t, gpIPv6(pod6A, pod6B, ProtoIPv6Opts), bytes.Repeat(optsHdr(ProtoIPv6Opts, 8), 9))
	inner := udp6(t, make([]byte, 1400))
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	o, err := encapVXLANv6(buf, Headroom, len(inner), &testTunnelV6, 1000, 51234, 5)
	if err != nil {
		t.Fatal(err)
	}
	outer := bytes.Clone(buf[o:])
	icmp := make([]byte, ICMPv6ErrorMaxLen)
	for name, fn := range map[string]func(){
		"walk":         func() { _, _ = IPv6(tcp).UpperLayer(); _, _ = IPv6(chain).UpperLayer() },
		"walk refused": func() { _, _ = IPv6(bad).UpperLayer() },
		"encap": func() {
			u, _ := IPv6(buf[Headroom:]).UpperLayer()
			_, _ = encapVXLANv6(buf, Headroom, len(inner), &testTunnelV6, 1000, SourcePort(FlowHashV6(IPv6(buf[Headroom:]), u)), 5)
		},
		"decap": func() {
			out, err := ParseOuterV6(outer, false)
			if err != nil {
				panic(err)
			}
			_, _ = DecapECNV6(ECNOf(out.TrafficClass), IPv6(outer[out.Payload+VXLANLen+EthernetLen:]))
			_ = CompletePartialChecksumV6(IPv6(outer[out.Payload+VXLANLen+EthernetLen:]))
		},
		"icmp": func() {
			if MayAnswerWithICMPv6(IPv6(inner)) {
				BuildICMPv6Error(icmp, IPv6(inner), hostIP6.As16(), ICMPv6PacketTooBig, 0, 1430)
			}
		},
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s allocates %v times", name, n)
		}
	}
}
