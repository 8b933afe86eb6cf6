package encap

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Documentation addresses (RFC 3849) for the IPv6 tests.
var (
	pod6A  = netip.MustParseAddr("2001:db8:1:1::9a")
	pod6B  = netip.MustParseAddr("2001:db8:1:2::9a")
	node6A = netip.MustParseAddr("2001:db8:ff::e9")
	node6B = netip.MustParseAddr("2001:db8:ff::ee")
)

// gpSerialize serialises layers with gopacket, lengths fixed and checksums
// computed: the reference the IPv6 tests compare against.
func gpSerialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// gpIPv6 is a gopacket IPv6 header from src to dst with next header nh.
func gpIPv6(src, dst netip.Addr, nh uint8) *layers.IPv6 {
	return &layers.IPv6{Version: 6, TrafficClass: 0x28, FlowLabel: 0x12345, NextHeader: layers.IPProtocol(nh),
		HopLimit: 63, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
}

// gpUDP6 is a UDP datagram from sport to dport carrying payload, its
// checksum computed by gopacket over the pseudo-header of ip.
func gpUDP6(t testing.TB, ip *layers.IPv6, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return gpSerialize(t, u, gopacket.Payload(payload))
}

// gpTCP6 is a TCP segment (ACK|PSH) carrying payload, its checksum computed
// by gopacket over the pseudo-header of ip.
func gpTCP6(t testing.TB, ip *layers.IPv6, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	s := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 0x01020304,
		Ack: 0xa0b0c0d0, ACK: true, PSH: true, Window: 64240}
	if err := s.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return gpSerialize(t, s, gopacket.Payload(payload))
}

// packet6 is the IPv6 packet ip (its NextHeader naming the first of rest)
// followed by the byte strings of rest: extension headers and the
// upper-layer segment.
func packet6(t testing.TB, ip *layers.IPv6, rest ...[]byte) []byte {
	t.Helper()
	return gpSerialize(t, ip, gopacket.Payload(bytes.Join(rest, nil)))
}

// udp6 is a whole UDP/IPv6 packet from pod6A:40000 to pod6B:5201.
func udp6(t testing.TB, payload []byte) []byte {
	ip := gpIPv6(pod6A, pod6B, ProtoUDP)
	return packet6(t, ip, gpUDP6(t, ip, 40000, 5201, payload))
}

// tcp6 is a whole TCP/IPv6 packet from pod6A:40000 to pod6B:443.
func tcp6(t testing.TB, payload []byte) []byte {
	ip := gpIPv6(pod6A, pod6B, ProtoTCP)
	return packet6(t, ip, gpTCP6(t, ip, 40000, 443, payload))
}

func TestIPv6EncodeAgainstGopacket(t *testing.T) {
	f := IPv6Fields{TrafficClass: 0xb9, FlowLabel: 0xabcde, PayloadLen: 1234, NextHeader: ProtoTCP,
		HopLimit: 17, Source: pod6A.As16(), Destination: pod6B.As16()}
	got := make([]byte, IPv6Len)
	if err := IPv6(got).Encode(&f); err != nil {
		t.Fatal(err)
	}
	want := gpSerialize(t, &layers.IPv6{Version: 6, TrafficClass: 0xb9, FlowLabel: 0xabcde, Length: 1234,
		NextHeader: layers.IPProtocolTCP, HopLimit: 17, SrcIP: net.IP(pod6A.AsSlice()), DstIP: net.IP(pod6B.AsSlice())})
	// gopacket fixes the length to the (empty) payload: restore ours.
	binary.BigEndian.PutUint16(want[IPv6PayloadLenOffset:], 1234)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded %x\nwant    %x", got, want)
	}
	ip := IPv6(got)
	if ip.TrafficClass() != 0xb9 || ip.FlowLabel() != 0xabcde || ip.PayloadLen() != 1234 || ip.NextHeader() != ProtoTCP ||
		ip.HopLimit() != 17 || ip.SourceAddr() != pod6A || ip.DestinationAddr() != pod6B {
		t.Fatalf("accessors disagree with the fields: tc %#x fl %#x", ip.TrafficClass(), ip.FlowLabel())
	}
}

func TestIPv6EncodeRefuses(t *testing.T) {
	short := bytes.Repeat([]byte{0xa5}, IPv6Len-1)
	if err := IPv6(short).Encode(&IPv6Fields{}); err != ErrHeaderRoom {
		t.Fatalf("short buffer: %v", err)
	}
	b := bytes.Repeat([]byte{0xa5}, IPv6Len)
	if err := IPv6(b).Encode(&IPv6Fields{FlowLabel: IPv6MaxFlowLabel + 1}); err != ErrFlowLabelRange {
		t.Fatalf("21-bit flow label: %v", err)
	}
	if !bytes.Equal(b, bytes.Repeat([]byte{0xa5}, IPv6Len)) || !bytes.Equal(short, bytes.Repeat([]byte{0xa5}, IPv6Len-1)) {
		t.Fatal("a refused Encode wrote")
	}
}

// Every setter changes its field and nothing else, as gopacket reads it.
func TestIPv6Setters(t *testing.T) {
	pkt := udp6(t, []byte("vxdp"))
	decode := func(b []byte) layers.IPv6 {
		t.Helper()
		p := gopacket.NewPacket(b, layers.LayerTypeIPv6, gopacket.Default)
		ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !ok {
			t.Fatalf("gopacket finds no IPv6 layer in %x", b)
		}
		return *ip
	}
	base := decode(pkt)
	for _, c := range []struct {
		name string
		set  func(IPv6) error
		want func(*layers.IPv6)
	}{
		{"traffic class", func(ip IPv6) error { ip.SetTrafficClass(0xfd); return nil }, func(w *layers.IPv6) { w.TrafficClass = 0xfd }},
		{"traffic class 0", func(ip IPv6) error { ip.SetTrafficClass(0); return nil }, func(w *layers.IPv6) { w.TrafficClass = 0 }},
		{"flow label", func(ip IPv6) error { return ip.SetFlowLabel(0xfedcb) }, func(w *layers.IPv6) { w.FlowLabel = 0xfedcb }},
		{"flow label 0", func(ip IPv6) error { return ip.SetFlowLabel(0) }, func(w *layers.IPv6) { w.FlowLabel = 0 }},
		{"hop limit", func(ip IPv6) error { ip.SetHopLimit(255); return nil }, func(w *layers.IPv6) { w.HopLimit = 255 }},
		{"decrement", func(ip IPv6) error { ip.DecrementHopLimit(); return nil }, func(w *layers.IPv6) { w.HopLimit-- }},
		{"next header", func(ip IPv6) error { ip.SetNextHeader(ProtoIPv6NoNext); return nil }, func(w *layers.IPv6) { w.NextHeader = ProtoIPv6NoNext }},
	} {
		b := bytes.Clone(pkt)
		if err := c.set(IPv6(b)); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := base
		c.want(&want)
		got := decode(b)
		if got.Version != 6 || got.TrafficClass != want.TrafficClass || got.FlowLabel != want.FlowLabel ||
			got.Length != want.Length || got.NextHeader != want.NextHeader || got.HopLimit != want.HopLimit ||
			!got.SrcIP.Equal(want.SrcIP) || !got.DstIP.Equal(want.DstIP) {
			t.Errorf("%s: gopacket reads %+v", c.name, got)
		}
		if !bytes.Equal(b[IPv6Len:], pkt[IPv6Len:]) {
			t.Errorf("%s: payload changed", c.name)
		}
	}
	b := bytes.Clone(pkt)
	IPv6(b).SetPayloadLen(3)
	if IPv6(b).PayloadLen() != 3 || !bytes.Equal(b[:4], pkt[:4]) || !bytes.Equal(b[6:], pkt[6:]) {
		t.Error("SetPayloadLen")
	}
	if err := IPv6(b).SetFlowLabel(1 << 20); err != ErrFlowLabelRange || IPv6(b).FlowLabel() != 0x12345 {
		t.Errorf("21-bit flow label: %v, label now %#x", err, IPv6(b).FlowLabel())
	}
}

// pseudoRef6 writes the IPv6 pseudo-header of RFC 8200 section 8.1 out as
// bytes and sums them the slow way.
func pseudoRef6(src, dst [16]byte, proto uint8, length uint32, seg []byte) uint16 {
	var ph [40]byte
	copy(ph[0:], src[:])
	copy(ph[16:], dst[:])
	binary.BigEndian.PutUint32(ph[32:], length)
	ph[39] = proto
	return checksumRef(append(ph[:], seg...), 0)
}

func TestPseudoHeaderSumV6(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	hdr := make([]byte, IPv6Len)
	seg := make([]byte, 100)
	for i := 0; i < 20000; i++ {
		for j := range hdr {
			hdr[j] = byte(r.Uint32())
		}
		if i%5 == 0 { // all ones stresses the carries
			for j := IPv6SourceAddrOffset; j < IPv6Len; j++ {
				hdr[j] = 0xff
			}
		}
		for j := range seg {
			seg[j] = byte(r.Uint32())
		}
		proto, length := uint8(r.Uint32()), r.Uint32()
		if i%3 == 0 {
			length = uint32(len(seg))
		}
		ip := IPv6(hdr)
		want := pseudoRef6(ip.Source16(), ip.Destination16(), proto, length, seg)
		if got := Checksum(seg, PseudoHeaderSumV6(ip.Source16(), ip.Destination16(), proto, length)); got != want {
			t.Fatalf("PseudoHeaderSumV6: %#04x, want %#04x", got, want)
		}
		if length <= 0xffff {
			if got := Checksum(seg, ip.PseudoHeaderSum(proto, int(length))); got != want {
				t.Fatalf("IPv6.PseudoHeaderSum: %#04x, want %#04x", got, want)
			}
		}
	}
}
