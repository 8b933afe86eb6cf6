package encap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// hostIP6 is the node's address in its pod CIDR, the source of its errors.
var hostIP6 = netip.MustParseAddr("2001:db8:1:1::1")

// gpICMPv6 is an ICMPv6 message of type typ and code whose bytes after the
// checksum are rest, its checksum computed by gopacket for ip.
func gpICMPv6(t testing.TB, ip *layers.IPv6, typ, code uint8, rest []byte) []byte {
	t.Helper()
	m := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := m.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return gpSerialize(t, m, gopacket.Payload(rest))
}

// icmp6Packet is a whole ICMPv6/IPv6 packet from src to dst.
func icmp6Packet(t testing.TB, src, dst netip.Addr, typ, code uint8, rest []byte) []byte {
	ip := gpIPv6(src, dst, ProtoICMPv6)
	return packet6(t, ip, gpICMPv6(t, ip, typ, code, rest))
}

// checkICMPv6Error answers orig as the dataplane would and checks the
// answer against gopacket's reading of it: a valid IPv6 packet from the
// host to orig's source, no larger than the minimum MTU, the type, code and
// parameter asked for, a checksum gopacket computes alike, the start of
// orig quoted, and never itself answerable.
func checkICMPv6Error(t *testing.T, orig IPv6, typ, code uint8, param uint32) []byte {
	t.Helper()
	dst := bytes.Repeat([]byte{0xa5}, ICMPv6ErrorMaxLen+16)
	n := BuildICMPv6Error(dst[:ICMPv6ErrorMaxLen], orig, hostIP6.As16(), typ, code, param)
	if n < IPv6Len+ICMPv6Len || n > ICMPv6ErrorMaxLen {
		t.Fatalf("error of %d bytes", n)
	}
	if dst[n] != 0xa5 {
		t.Fatal("builder wrote past the length it returned")
	}
	pkt := dst[:n]
	quoteLen := min(orig.TotalLen(), IPv6MinMTU-IPv6Len-ICMPv6Len)
	if n != IPv6Len+ICMPv6Len+quoteLen {
		t.Fatalf("error of %d bytes quotes %d of a %d-byte packet", n, n-IPv6Len-ICMPv6Len, orig.TotalLen())
	}
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	ic, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	if ip == nil || ic == nil {
		t.Fatalf("gopacket cannot decode: %v", p)
	}
	if ip.SrcIP.String() != hostIP6.String() || ip.DstIP.String() != orig.SourceAddr().String() ||
		ip.NextHeader != layers.IPProtocolICMPv6 || ip.HopLimit != 64 || int(ip.Length) != n-IPv6Len || ip.TrafficClass != 0xc0 {
		t.Fatalf("ip %+v", ip)
	}
	if ic.TypeCode != layers.CreateICMPv6TypeCode(typ, code) {
		t.Fatalf("icmpv6 %v", ic.TypeCode)
	}
	if binary.BigEndian.Uint32(ic.Payload) != param || !bytes.Equal(ic.Payload[4:], orig[:quoteLen]) {
		t.Fatal("parameter or quote differs")
	}
	// gopacket's checksum of the same message.
	want := ic.Checksum
	re := &layers.ICMPv6{TypeCode: ic.TypeCode}
	if err := re.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	gpSerialize(t, re, gopacket.Payload(ic.Payload))
	if re.Checksum != want {
		t.Fatalf("checksum %#04x, gopacket computes %#04x", want, re.Checksum)
	}
	v := ICMPv6(pkt[IPv6Len:])
	if !ICMPv6ChecksumValid(IPv6(pkt), v) || v.Type() != typ || v.Code() != code || v.MTU() != param || v.Pointer() != param ||
		!bytes.Equal(v.InvokingPacket(), orig[:quoteLen]) {
		t.Fatal("the view reads the error wrong")
	}
	if MayAnswerWithICMPv6(IPv6(pkt)) {
		t.Fatal("an error about the error would be sent")
	}
	return pkt
}

func TestICMPv6Errors(t *testing.T) {
	small := IPv6(udp6(t, []byte("vxdp")))
	big := IPv6(udp6(t, make([]byte, 1400)))
	just := IPv6(udp6(t, make([]byte, 1232-48))) // quoted whole, and the error is 1280 bytes
	for _, c := range []struct {
		name       string
		orig       IPv6
		typ, code  uint8
		param      uint32
		wantLength int
	}{
		{"no route", small, ICMPv6DestUnreach, ICMPv6NoRoute, 0, 48 + len(small)},
		{"admin prohibited", small, ICMPv6DestUnreach, ICMPv6AdminProhibited, 0, 48 + len(small)},
		{"address unreachable", small, ICMPv6DestUnreach, ICMPv6AddressUnreach, 0, 48 + len(small)},
		{"port unreachable", small, ICMPv6DestUnreach, ICMPv6PortUnreach, 0, 48 + len(small)},
		{"hop limit", small, ICMPv6TimeExceeded, ICMPv6HopLimitExceeded, 0, 48 + len(small)},
		{"packet too big", big, ICMPv6PacketTooBig, 0, 1430, IPv6MinMTU},
		{"packet too big, quote fits exactly", just, ICMPv6PacketTooBig, 0, 1280, IPv6MinMTU},
		{"parameter problem", small, ICMPv6ParamProblem, ICMPv6UnrecognizedNextHeader, 6, 48 + len(small)},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !MayAnswerWithICMPv6(c.orig) {
				t.Fatal("would not answer a UDP packet")
			}
			if got := checkICMPv6Error(t, c.orig, c.typ, c.code, c.param); len(got) != c.wantLength {
				t.Fatalf("error of %d bytes, want %d", len(got), c.wantLength)
			}
		})
	}
	// The quote ends at the payload length: bytes after it are not the
	// packet's.
	padded := IPv6(append(bytes.Clone(small), 0xee, 0xee))
	if pkt := checkICMPv6Error(t, padded, ICMPv6DestUnreach, ICMPv6NoRoute, 0); len(pkt) != 48+len(small) {
		t.Fatalf("padding quoted: %d bytes", len(pkt))
	}
}

func TestMayAnswerWithICMPv6(t *testing.T) {
	ll := netip.MustParseAddr("fe80::1")
	pkt := func(src, dst netip.Addr) []byte {
		ip := gpIPv6(src, dst, ProtoUDP)
		return packet6(t, ip, gpUDP6(t, ip, 1, 2, nil))
	}
	icmp := func(typ uint8) []byte { return icmp6Packet(t, pod6A, pod6B, typ, 0, make([]byte, 4)) }
	withExt := func(first uint8, rest ...[]byte) []byte { return packet6(t, gpIPv6(pod6A, pod6B, first), rest...) }
	errMsg := gpICMPv6(t, gpIPv6(pod6A, pod6B, ProtoICMPv6), ICMPv6DestUnreach, 0, make([]byte, 4))
	echo := gpICMPv6(t, gpIPv6(pod6A, pod6B, ProtoICMPv6), ICMPv6EchoRequest, 0, make([]byte, 4))
	nine := bytes.Repeat(optsHdr(ProtoIPv6Opts, 8), 9)
	for _, c := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"udp", pkt(pod6A, pod6B), true},
		{"tcp", tcp6(t, nil), true},
		{"echo request", icmp(ICMPv6EchoRequest), true},
		{"echo reply", icmp(ICMPv6EchoReply), true},
		{"unknown informational type", icmp(200), true},
		{"link-local source", pkt(ll, pod6B), true},
		{"esp", withExt(ProtoESP, make([]byte, 16)), true},
		{"no next header", withExt(ProtoIPv6NoNext), true},
		{"first fragment of udp", withExt(ProtoIPv6Frag, fragHdr(ProtoUDP, 0, true), make([]byte, 8)), true},
		{"echo behind options", withExt(ProtoIPv6Opts, optsHdr(ProtoICMPv6, 8), echo), true},

		{"destination unreachable", icmp(ICMPv6DestUnreach), false},
		{"packet too big", icmp(ICMPv6PacketTooBig), false},
		{"time exceeded", icmp(ICMPv6TimeExceeded), false},
		{"parameter problem", icmp(ICMPv6ParamProblem), false},
		{"type 0", icmp(0), false},
		{"type 127", icmp(127), false},
		{"redirect", icmp(ICMPv6Redirect), false},
		{"error behind options", withExt(ProtoHopByHop, optsHdr(ProtoIPv6Opts, 8), optsHdr(ProtoICMPv6, 16), errMsg), false},
		{"error in a first fragment", withExt(ProtoIPv6Frag, fragHdr(ProtoICMPv6, 0, true), errMsg), false},
		{"icmpv6 without a byte", withExt(ProtoICMPv6), false},
		{"icmpv6 without a byte behind options", withExt(ProtoIPv6Opts, optsHdr(ProtoICMPv6, 8)), false},
		{"later fragment", withExt(ProtoIPv6Frag, fragHdr(ProtoUDP, 1448, false), make([]byte, 8)), false},
		{"chain too long", withExt(ProtoIPv6Opts, nine, make([]byte, 8)), false},
		{"chain truncated", withExt(ProtoIPv6Opts, optsHdr(ProtoUDP, 16)[:8]), false},
		{"chain malformed", withExt(ProtoIPv6Opts, optsHdr(ProtoHopByHop, 8), optsHdr(ProtoUDP, 8), make([]byte, 8)), false},
		{"multicast destination", pkt(pod6A, netip.MustParseAddr("ff02::1")), false},
		{"global multicast destination", pkt(pod6A, netip.MustParseAddr("ff0e::1:3")), false},
		{"unspecified source", pkt(netip.IPv6Unspecified(), pod6B), false},
		{"multicast source", pkt(netip.MustParseAddr("ff02::2"), pod6B), false},
		{"loopback source", pkt(netip.IPv6Loopback(), pod6B), false},
		{"ipv4-mapped source", pkt(netip.MustParseAddr("::ffff:10.1.1.154"), pod6B), false},
		{"ipv4-compatible-looking source", pkt(netip.MustParseAddr("::10.1.1.154"), pod6B), true},
	} {
		if !IPv6(c.pkt).IsValid(len(c.pkt)) {
			t.Fatalf("%s: fixture is not valid IPv6", c.name)
		}
		if got := MayAnswerWithICMPv6(IPv6(c.pkt)); got != c.want {
			t.Errorf("%s: MayAnswerWithICMPv6 = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestIsICMPv6Error(t *testing.T) {
	for typ := 0; typ < 256; typ++ {
		if IsICMPv6Error(uint8(typ)) != (typ < 128) {
			t.Fatalf("type %d", typ)
		}
	}
}
