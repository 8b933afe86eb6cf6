package encap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// The checksums gopacket computes over IPv6 verify here, and recomputing
// them here gives gopacket's bytes back.
func TestTransportChecksumsV6(t *testing.T) {
	for _, n := range []int{0, 1, 4, 5, 100, 1231} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i*7 + n)
		}
		for _, c := range []struct {
			name  string
			pkt   []byte
			valid func(IPv6, []byte) bool
			set   func(IPv6, []byte)
			field int
		}{
			{"tcp", tcp6(t, payload), func(ip IPv6, s []byte) bool { return TCPChecksumValidV6(ip, s) },
				func(ip IPv6, s []byte) { SetTCPChecksumV6(ip, s) }, TCPChecksumOffset},
			{"udp", udp6(t, payload), func(ip IPv6, s []byte) bool { return UDPChecksumValidV6(ip, s, false) },
				func(ip IPv6, s []byte) { SetUDPChecksumV6(ip, s) }, UDPChecksumOffset},
		} {
			ip := IPv6(c.pkt)
			seg := c.pkt[IPv6Len:]
			if !c.valid(ip, seg) {
				t.Fatalf("%s %d: gopacket's checksum does not verify", c.name, n)
			}
			want := bytes.Clone(c.pkt)
			binary.BigEndian.PutUint16(seg[c.field:], 0x5a5a)
			c.set(ip, seg)
			if !bytes.Equal(c.pkt, want) {
				t.Fatalf("%s %d: computed %#04x, gopacket %#04x", c.name, n,
					binary.BigEndian.Uint16(seg[c.field:]), binary.BigEndian.Uint16(want[IPv6Len+c.field:]))
			}
			// Any change to what the checksum covers is caught: the
			// segment, and the addresses through the pseudo-header.
			for _, at := range []int{IPv6Len + len(seg) - 1, IPv6SourceAddrOffset + 3, IPv6DestinationAddrOffset + 15} {
				c.pkt[at] ^= 0x10
				if c.valid(ip, seg) {
					t.Fatalf("%s %d: byte %d changed, checksum still verifies", c.name, n, at)
				}
				c.pkt[at] ^= 0x10
			}
		}
	}
}

func TestUDPChecksumV6Zero(t *testing.T) {
	pkt := udp6(t, []byte("vxdp"))
	ip, u := IPv6(pkt), UDP(pkt[IPv6Len:])
	u.SetChecksum(0)
	if UDPChecksumValidV6(ip, u, false) {
		t.Fatal("zero checksum accepted over IPv6 without the tunnel exception")
	}
	if !UDPChecksumValidV6(ip, u, true) {
		t.Fatal("zero checksum refused where the caller allows it")
	}
	// A datagram whose sum is zero is sent as 0xffff, and that verifies.
	// Choose the last two payload bytes so that the sum comes out zero.
	pkt = udp6(t, []byte("vxdp!!"))
	ip, u = IPv6(pkt), UDP(pkt[IPv6Len:])
	binary.BigEndian.PutUint16(u[len(u)-2:], 0)
	u.SetChecksum(0)
	s := Fold(Sum(u, ip.PseudoHeaderSum(ProtoUDP, len(u))))
	binary.BigEndian.PutUint16(u[len(u)-2:], 0xffff-s)
	SetUDPChecksumV6(ip, u)
	if u.Checksum() != 0xffff || !UDPChecksumValidV6(ip, u, false) {
		t.Fatalf("zero sum stored as %#04x", u.Checksum())
	}
	if checksumRef(append(pseudoBytes6(ip, ProtoUDP, len(u)), u...), 0) != 0 {
		t.Fatal("0xffff does not verify by the reference")
	}
	// Lengths that lie are not verified.
	u.SetLength(uint16(len(u) + 1))
	if UDPChecksumValidV6(ip, u, true) {
		t.Fatal("UDP length past the datagram accepted")
	}
	if TCPChecksumValidV6(ip, make([]byte, TCPMinLen-1)) {
		t.Fatal("19-byte TCP segment accepted")
	}
}

// pseudoBytes6 is the pseudo-header of ip for an upper layer of proto and
// length, as bytes.
func pseudoBytes6(ip IPv6, proto uint8, length int) []byte {
	b := make([]byte, 40)
	copy(b, ip[IPv6SourceAddrOffset:IPv6Len])
	binary.BigEndian.PutUint32(b[32:], uint32(length))
	b[39] = proto
	return b
}

func TestCompletePartialChecksumV6(t *testing.T) {
	ipHdr := gpIPv6(pod6A, pod6B, ProtoTCP)
	tcp := gpTCP6(t, ipHdr, 40000, 5201, []byte("vxdp!"))
	udp := gpUDP6(t, ipHdr, 40000, 5201, []byte("vxdp"))
	// partial leaves in the segment what a checksum-offloading Linux
	// sender leaves: the folded pseudo-header sum.
	partial := func(pkt []byte, off int, proto uint8) []byte {
		seg := pkt[off:]
		field := TCPChecksumOffset
		if proto == ProtoUDP {
			field = UDPChecksumOffset
		}
		binary.BigEndian.PutUint16(seg[field:], Fold(IPv6(pkt).PseudoHeaderSum(proto, len(seg))))
		return pkt
	}
	for _, c := range []struct {
		name  string
		pkt   []byte
		off   int // of the transport header
		proto uint8
		want  bool // the checksum is to be completed
	}{
		{"tcp", packet6(t, gpIPv6(pod6A, pod6B, ProtoTCP), tcp), 40, ProtoTCP, true},
		{"udp", packet6(t, gpIPv6(pod6A, pod6B, ProtoUDP), udp), 40, ProtoUDP, true},
		{"tcp behind options", packet6(t, gpIPv6(pod6A, pod6B, ProtoHopByHop), optsHdr(ProtoIPv6Opts, 8), optsHdr(ProtoTCP, 16), tcp),
			64, ProtoTCP, true},
		{"first fragment", packet6(t, gpIPv6(pod6A, pod6B, ProtoIPv6Frag), fragHdr(ProtoTCP, 0, true), tcp), 48, ProtoTCP, false},
		{"atomic fragment", packet6(t, gpIPv6(pod6A, pod6B, ProtoIPv6Frag), fragHdr(ProtoTCP, 0, false), tcp), 48, ProtoTCP, true},
	} {
		pkt := partial(c.pkt, c.off, c.proto)
		before := bytes.Clone(pkt)
		if got := CompletePartialChecksumV6(IPv6(pkt)); got != c.want {
			t.Fatalf("%s: completed %v, want %v", c.name, got, c.want)
		}
		if !c.want {
			if !bytes.Equal(pkt, before) {
				t.Fatalf("%s: packet changed", c.name)
			}
			continue
		}
		ip, seg := IPv6(pkt), pkt[c.off:]
		if c.proto == ProtoTCP && !TCPChecksumValidV6(ip, seg) || c.proto == ProtoUDP && !UDPChecksumValidV6(ip, seg, false) {
			t.Fatalf("%s: completed checksum does not verify", c.name)
		}
		if checksumRef(append(pseudoBytes6(ip, c.proto, len(seg)), seg...), 0) != 0 {
			t.Fatalf("%s: completed checksum does not verify by the reference", c.name)
		}
		// Once complete, it is left alone.
		done := bytes.Clone(pkt)
		if CompletePartialChecksumV6(IPv6(pkt)) || !bytes.Equal(pkt, done) {
			t.Fatalf("%s: a complete checksum was taken for partial", c.name)
		}
	}
	// A UDP datagram without checksum is left alone; so are an ICMPv6
	// message and a packet whose extension headers are refused.
	pkt := packet6(t, gpIPv6(pod6A, pod6B, ProtoUDP), udp)
	binary.BigEndian.PutUint16(pkt[IPv6Len+UDPChecksumOffset:], 0)
	if CompletePartialChecksumV6(IPv6(pkt)) {
		t.Fatal("UDP checksum 0 touched")
	}
	if CompletePartialChecksumV6(IPv6(packet6(t, gpIPv6(pod6A, pod6B, ProtoICMPv6), []byte{128, 0, 0, 0, 0, 0, 0, 0}))) {
		t.Fatal("ICMPv6 touched")
	}
	bad := packet6(t, gpIPv6(pod6A, pod6B, ProtoIPv6Opts), optsHdr(ProtoHopByHop, 8), optsHdr(ProtoTCP, 8), tcp)
	if CompletePartialChecksumV6(IPv6(partial(bad, 56, ProtoTCP))) {
		t.Fatal("packet with a refused chain touched")
	}
}
