package encap

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// fuzzSeeds6 are real packets for the IPv6 fuzz targets to start from:
// plain transports, chains of every extension header, fragments, ICMPv6
// errors and echoes, and the refused chains.
func fuzzSeeds6(f *testing.F) [][]byte {
	ip := gpIPv6(pod6A, pod6B, ProtoUDP)
	udp := gpUDP6(f, ip, 40000, 5201, []byte("vxdp"))
	tcp := gpTCP6(f, gpIPv6(pod6A, pod6B, ProtoTCP), 40000, 443, []byte("vxdp"))
	withExt := func(first uint8, rest ...[]byte) []byte { return packet6(f, gpIPv6(pod6A, pod6B, first), rest...) }
	errMsg := gpICMPv6(f, gpIPv6(pod6A, pod6B, ProtoICMPv6), ICMPv6DestUnreach, 0, udp6(f, nil))
	return [][]byte{
		udp6(f, []byte("vxdp")),
		tcp6(f, []byte("vxdp")),
		withExt(ProtoHopByHop, optsHdr(ProtoIPv6Opts, 16), optsHdr(ProtoIPv6Route, 8), routingHdr(ProtoIPv6Frag, 1), fragHdr(ProtoAH, 0, false), ahHdr(ProtoUDP, 4), udp),
		withExt(ProtoIPv6Frag, fragHdr(ProtoTCP, 0, true), tcp),
		withExt(ProtoIPv6Frag, fragHdr(ProtoTCP, 1448, false), []byte("tail")),
		withExt(ProtoIPv6Opts, bytes.Repeat(optsHdr(ProtoIPv6Opts, 8), 9)),
		withExt(ProtoIPv6Opts, optsHdr(ProtoESP, 8), make([]byte, 16)),
		withExt(ProtoICMPv6, errMsg),
		icmp6Packet(f, pod6A, pod6B, ICMPv6EchoRequest, 0, []byte{0, 1, 0, 1}),
		withExt(ProtoHopByHop, optsHdr(ProtoIPv6NoNext, 8)),
	}
}

func isExtHeader(p uint8) bool {
	return p == ProtoHopByHop || p == ProtoIPv6Route || p == ProtoIPv6Frag || p == ProtoAH || p == ProtoIPv6Opts
}

// FuzzIPv6Ext holds the extension-header walk to its reference on any
// input and checks what it promises: never a panic, an error or a result
// that lies inside the payload length and names no extension header (but
// the Fragment header that ends a later fragment), the packet untouched.
// A checksum completed on the way (CompletePartialChecksumV6) verifies and
// changed nothing else.
func FuzzIPv6Ext(f *testing.F) {
	for _, p := range fuzzSeeds6(f) {
		f.Add(p)
	}
	f.Add([]byte{0x60})
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		before := bytes.Clone(pkt)
		u, err := IPv6(pkt).UpperLayer()
		if ref, rerr := walkRef(pkt); u != ref || err != rerr {
			t.Fatalf("UpperLayer = %+v, %v; reference %+v, %v", u, err, ref, rerr)
		}
		if !bytes.Equal(pkt, before) {
			t.Fatal("the walk changed the packet")
		}
		if err != nil {
			if e, ok := err.(IPv6ExtError); !ok || e < ErrIPv6ExtTooMany || e > ErrIPv6ExtMalformed || u != (IPv6Upper{}) {
				t.Fatalf("error %v with result %+v", err, u)
			}
			return
		}
		end := IPv6(pkt).TotalLen()
		if u.Offset < IPv6Len || u.Offset > end || end > len(pkt) {
			t.Fatalf("upper layer at %d of %d (%d held)", u.Offset, end, len(pkt))
		}
		later := u.Fragment && !u.FirstFragment()
		if isExtHeader(u.Proto) && !(later && u.Proto == ProtoIPv6Frag) || later && u.Proto != ProtoIPv6Frag {
			t.Fatalf("walk ended on next header %d: %+v", u.Proto, u)
		}
		if u.FragmentOffset%8 != 0 || !u.Fragment && u.FragmentOffset != 0 {
			t.Fatalf("fragment offset %d", u.FragmentOffset)
		}
		_ = FlowHashV6(IPv6(pkt), u)

		c := bytes.Clone(pkt)
		if !CompletePartialChecksumV6(IPv6(c)) {
			if !bytes.Equal(c, pkt) {
				t.Fatal("checksum not completed, packet changed")
			}
			return
		}
		if u.Fragment || u.Proto != ProtoTCP && u.Proto != ProtoUDP {
			t.Fatalf("completed the checksum of %+v", u)
		}
		seg := c[u.Offset:end]
		if checksumRef(append(pseudoBytes6(IPv6(c), u.Proto, len(seg)), seg...), 0) != 0 {
			t.Fatal("completed checksum does not verify")
		}
		field := u.Offset + TCPChecksumOffset
		if u.Proto == ProtoUDP {
			field = u.Offset + UDPChecksumOffset
		}
		if !bytes.Equal(c[:field], pkt[:field]) || !bytes.Equal(c[field+2:], pkt[field+2:]) {
			t.Fatal("completing the checksum changed more than the field")
		}
	})
}

// icmp6FuzzMayAnswer is RFC 4443 2.4(e) as MayAnswerWithICMPv6 documents
// it, written out on the reference walk.
func icmp6FuzzMayAnswer(ip IPv6) bool {
	s, d := ip[IPv6SourceAddrOffset:IPv6SourceAddrOffset+16], ip[IPv6DestinationAddrOffset:IPv6DestinationAddrOffset+16]
	if d[0] == 0xff || s[0] == 0xff {
		return false // multicast
	}
	if bytes.Equal(s[:15], make([]byte, 15)) && s[15] <= 1 {
		return false // :: and ::1
	}
	if bytes.Equal(s[:12], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}) {
		return false // ::ffff:a.b.c.d
	}
	u, err := walkRef(ip)
	if err != nil || u.FragmentOffset != 0 {
		return false
	}
	if u.Proto != ProtoICMPv6 {
		return true
	}
	if u.Offset >= ip.TotalLen() {
		return false
	}
	t := ip[u.Offset]
	return t >= 128 && t != 137
}

// FuzzICMPv6 builds an error about any valid IPv6 packet: never a panic,
// never more than the minimum MTU, always a valid IPv6 packet with a
// verifying checksum, quoting the start of the packet, to its source, and
// never itself answerable; and the decision to answer follows the rules.
func FuzzICMPv6(f *testing.F) {
	for _, p := range fuzzSeeds6(f) {
		f.Add(p, uint8(ICMPv6DestUnreach), uint8(0), uint32(0))
	}
	f.Add(udp6(f, make([]byte, 1400)), uint8(ICMPv6PacketTooBig), uint8(0), uint32(1430))
	f.Add(icmp6Packet(f, pod6A, pod6B, ICMPv6PacketTooBig, 0, udp6(f, nil)), uint8(ICMPv6TimeExceeded), uint8(0), uint32(0))
	f.Fuzz(func(t *testing.T, pkt []byte, typ, code uint8, param uint32) {
		ip := IPv6(pkt)
		if !ip.IsValid(len(pkt)) {
			return
		}
		if got, want := MayAnswerWithICMPv6(ip), icmp6FuzzMayAnswer(ip); got != want {
			t.Fatalf("MayAnswerWithICMPv6 = %v, rules say %v", got, want)
		}
		typ &= 0x7f // an error message
		dst := bytes.Repeat([]byte{0xa5}, ICMPv6ErrorMaxLen+8)
		n := BuildICMPv6Error(dst[:ICMPv6ErrorMaxLen], ip, hostIP6.As16(), typ, code, param)
		if n < IPv6Len+ICMPv6Len || n > ICMPv6ErrorMaxLen || dst[ICMPv6ErrorMaxLen] != 0xa5 {
			t.Fatalf("error of %d bytes", n)
		}
		e := IPv6(dst[:n])
		if !e.IsValid(n) || e.TotalLen() != n || e.NextHeader() != ProtoICMPv6 || e.SourceAddr() != hostIP6 || e.DestinationAddr() != ip.SourceAddr() {
			t.Fatalf("built packet: % x", dst[:IPv6Len])
		}
		m := ICMPv6(e.Payload())
		quote := min(ip.TotalLen(), IPv6MinMTU-IPv6Len-ICMPv6Len)
		if !ICMPv6ChecksumValid(e, m) || m.Type() != typ || m.Code() != code || m.MTU() != param || !bytes.Equal(m.InvokingPacket(), pkt[:quote]) {
			t.Fatal("built message wrong")
		}
		if MayAnswerWithICMPv6(e) {
			t.Fatal("an error about the error would be sent")
		}
	})
}

// FuzzOuterV6 feeds arbitrary outer packets to ParseOuterV6: never a panic;
// what it accepts lies inside the packet, has a checksum that verifies (or
// is zero where allowed), and encodes back to the same headers.
func FuzzOuterV6(f *testing.F) {
	inner := udp6(f, []byte("vxdp"))
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	o, err := encapVXLANv6(buf, Headroom, len(inner), &testTunnelV6, 1000, 51234, 0x12345)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(buf[o:], false)
	zero := bytes.Clone(buf[o:])
	UDP(zero[IPv6Len:]).SetChecksum(0)
	f.Add(zero, true)
	f.Add(zero, false)
	f.Add(mustHex(f, outerVXLAN), false)
	f.Add(make([]byte, OuterV6Len), true)
	f.Fuzz(func(t *testing.T, pkt []byte, zeroOK bool) {
		o, err := ParseOuterV6(pkt, zeroOK)
		if err != nil {
			if o != (OuterV6{}) {
				t.Fatalf("error %v with %+v", err, o)
			}
			return
		}
		if o.Payload != OuterV6Len || o.PayloadLen < 0 || o.Payload+o.PayloadLen > IPv6(pkt).TotalLen() {
			t.Fatalf("payload %d+%d of %d", o.Payload, o.PayloadLen, len(pkt))
		}
		u := UDP(pkt[IPv6Len : OuterV6Len+o.PayloadLen])
		if u.Checksum() == 0 && !zeroOK {
			t.Fatal("zero checksum accepted")
		}
		if u.Checksum() != 0 && checksumRef(append(pseudoBytes6(IPv6(pkt), ProtoUDP, len(u)), u...), 0) != 0 {
			t.Fatal("wrong checksum accepted")
		}
		if o.Src.Is4In6() || o.Dst.Is4In6() {
			t.Fatalf("IPv4-mapped address accepted: %v -> %v", o.Src, o.Dst)
		}
		re := make([]byte, OuterV6Len+o.PayloadLen)
		copy(re[OuterV6Len:], pkt[OuterV6Len:])
		src, dst := netip.AddrPortFrom(o.Src, o.SrcPort), netip.AddrPortFrom(o.Dst, o.DstPort)
		if err := EncodeOuterV6(re, src, dst, o.PayloadLen, o.TrafficClass, o.FlowLabel); err != nil {
			t.Fatal(err)
		}
		// The same but for the hop limit, a payload length that counted
		// bytes past the datagram, and a checksum the sender left out.
		if !bytes.Equal(re[:IPv6PayloadLenOffset], pkt[:IPv6PayloadLenOffset]) || re[IPv6NextHeaderOffset] != pkt[IPv6NextHeaderOffset] ||
			!bytes.Equal(re[IPv6SourceAddrOffset:IPv6Len+UDPChecksumOffset], pkt[IPv6SourceAddrOffset:IPv6Len+UDPChecksumOffset]) ||
			u.Checksum() != 0 && binary.BigEndian.Uint16(re[IPv6Len+UDPChecksumOffset:]) != u.Checksum() {
			t.Fatalf("re-encoded\n% x\n% x", re[:OuterV6Len], pkt[:OuterV6Len])
		}
		back, err := ParseOuterV6(re, false)
		if err != nil || !back.SumValid || Fold(back.PayloadSum) != Fold(Sum(re[OuterV6Len:], 0)) {
			t.Fatalf("re-encoded parses as %+v, %v", back, err)
		}
		// What was parsed without a checksum has no sum to compare.
		back.PayloadSum, back.SumValid = o.PayloadSum, o.SumValid
		if back != o {
			t.Fatalf("re-encoded parses as %+v, was %+v", back, o)
		}
	})
}

// ecnRules is RFC 6040 section 4.2 in the words of its text rather than
// its table.
func ecnRules(outer, inner ECN) (out ECN, drop, anomaly bool) {
	anomaly = inner == ECNNotECT && outer != ECNNotECT || inner == ECNCE && outer == ECNECT1
	switch {
	case inner == ECNNotECT:
		return ECNNotECT, outer == ECNCE, anomaly
	case outer == ECNCE:
		return ECNCE, false, anomaly
	case outer == ECNECT1 && inner == ECNECT0:
		return ECNECT1, false, anomaly
	}
	return inner, false, anomaly
}

// FuzzECN decapsulates arbitrary inner headers under every outer ECN: the
// result follows RFC 6040, the IPv4 checksum stays valid, a dropped packet
// is untouched and nothing but the ECN bits ever changes.
func FuzzECN(f *testing.F) {
	f.Add(mustHex(f, innerUDP), uint8(ECNCE))
	f.Add(udp6(f, nil)[:IPv6Len], uint8(ECNECT1))
	f.Fuzz(func(t *testing.T, hdr []byte, outerBits uint8) {
		outer := ECN(outerBits & 3)
		v4 := make([]byte, IPv4MinLen)
		copy(v4, hdr)
		v4[0] = 0x45
		IPv4(v4).SetHeaderChecksum()
		v6 := make([]byte, IPv6Len)
		copy(v6, hdr)
		v6[0] = 0x60 | v6[0]&0x0f
		for _, c := range []struct {
			name  string
			b     []byte
			inner ECN
			decap func() (bool, bool)
			after func() ECN
		}{
			{"v4", v4, IPv4(v4).ECN(), func() (bool, bool) { return DecapECNV4(outer, IPv4(v4)) }, func() ECN { return IPv4(v4).ECN() }},
			{"v6", v6, IPv6(v6).ECN(), func() (bool, bool) { return DecapECNV6(outer, IPv6(v6)) }, func() ECN { return IPv6(v6).ECN() }},
		} {
			before := bytes.Clone(c.b)
			want, wantDrop, wantAnomaly := ecnRules(outer, c.inner)
			drop, anomaly := c.decap()
			if drop != wantDrop || anomaly != wantAnomaly {
				t.Fatalf("%s outer %v inner %v: drop %v anomaly %v", c.name, outer, c.inner, drop, anomaly)
			}
			if drop {
				if !bytes.Equal(c.b, before) {
					t.Fatalf("%s: dropped packet changed", c.name)
				}
				continue
			}
			if c.after() != want {
				t.Fatalf("%s outer %v inner %v: %v, want %v", c.name, outer, c.inner, c.after(), want)
			}
			// Only the ECN bits differ, and in IPv4 the checksum.
			for i := range c.b {
				diff := c.b[i] ^ before[i]
				switch {
				case c.name == "v4" && i == IPv4TOSOffset, c.name == "v6" && i == 1:
					diff &^= 0x03 << (4 * boolInt(c.name == "v6"))
				case c.name == "v4" && (i == IPv4ChecksumOffset || i == IPv4ChecksumOffset+1):
					diff = 0
				}
				if diff != 0 {
					t.Fatalf("%s: byte %d changed: % x -> % x", c.name, i, before, c.b)
				}
			}
		}
		if !IPv4(v4).HeaderChecksumValid() {
			t.Fatal("IPv4 checksum broken")
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
