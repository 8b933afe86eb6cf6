package encap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// arpFuzzMAC turns a fuzzed integer into the MAC a node answers with, so
// that the reply's sender field is checked against a value the fuzzer
// controls rather than a constant that could hide a swapped copy.
func arpFuzzMAC(v uint64) MAC {
	var m MAC
	for i := range m {
		m[i] = byte(v >> (8 * (5 - i)))
	}
	return m
}

// FuzzARP checks the ARP view the VTEP responder uses on frames a remote
// VXLAN device controls: validation must agree with the RFC 826 layout
// for Ethernet/IPv4, and turning a valid request into a reply must swap
// exactly the address fields and touch nothing else.
func FuzzARP(f *testing.F) {
	req := make([]byte, ARPLen)
	ARP(req).EncodeRequest(MAC{0x82, 0x36, 0x4c, 0x98, 0x2e, 0x56}, [4]byte{10, 1, 1, 236}, [4]byte{10, 0, 1, 1})
	f.Add(req, uint64(0x02580aa948e9))
	// Ethernet pads a 28-byte ARP to 46 bytes; the padding must survive.
	f.Add(append(append([]byte(nil), req...), make([]byte, 18)...), uint64(0x02580aa948e9))
	f.Add(req[:ARPLen-1], uint64(1))
	bad := append([]byte(nil), req...)
	bad[5] = 16 // IPv6-sized protocol addresses
	f.Add(bad, uint64(2))
	reply := append([]byte(nil), req...)
	reply[7] = ARPReply
	f.Add(reply, uint64(3))
	f.Add([]byte{}, uint64(0))

	f.Fuzz(func(t *testing.T, b []byte, macBits uint64) {
		a := ARP(b)
		want := len(b) >= ARPLen &&
			b[0] == 0 && b[1] == 1 && // hardware type Ethernet
			b[2] == 0x08 && b[3] == 0x00 && // protocol IPv4
			b[4] == 6 && b[5] == 4
		if got := a.IsValid(); got != want {
			t.Fatalf("IsValid = %v for % x, want %v", got, b, want)
		}
		if !want {
			return
		}
		before := append([]byte(nil), b...)
		oldSHA, oldSPA := a.SenderMAC(), a.SenderIP()
		oldTPA := a.TargetIP()
		mac := arpFuzzMAC(macBits)

		a.TurnIntoReply(mac)

		if !a.IsValid() {
			t.Fatal("reply no longer valid")
		}
		if !bytes.Equal(b[:6], before[:6]) {
			t.Fatalf("fixed header changed: % x -> % x", before[:6], b[:6])
		}
		if a.Operation() != ARPReply {
			t.Fatalf("operation %d, want reply", a.Operation())
		}
		if a.SenderMAC() != mac {
			t.Fatalf("sender MAC %s, want ours %s", a.SenderMAC(), mac)
		}
		if a.SenderIP() != oldTPA {
			t.Fatalf("sender IP %s, want the requested %s", a.SenderIP(), oldTPA)
		}
		if a.TargetMAC() != oldSHA {
			t.Fatalf("target MAC %s, want the requester's %s", a.TargetMAC(), oldSHA)
		}
		if a.TargetIP() != oldSPA {
			t.Fatalf("target IP %s, want the requester's %s", a.TargetIP(), oldSPA)
		}
		// Whatever follows the ARP body (Ethernet padding, or bytes of a
		// larger buffer the view was cut from) is not the reply's to change.
		if !bytes.Equal(b[ARPLen:], before[ARPLen:]) {
			t.Fatal("bytes after the ARP body changed")
		}
	})
}

// icmpFuzzMayAnswer is the policy of RFC 1122 3.2.2 written out
// independently: never about a non-first fragment, never to a source that
// is not a plain unicast host, never about a datagram to a multicast or
// broadcast address, never about an ICMP error (or an ICMP message too
// short to tell).
func icmpFuzzMayAnswer(ip IPv4) bool {
	if ip.FragmentOffset() != 0 {
		return false
	}
	s, d := ip.Source4(), ip.Destination4()
	switch {
	case s[0] == 0, s[0] == 127, s[0] >= 224, d[0] >= 224:
		return false
	}
	if ip.Protocol() != ProtoICMP {
		return true
	}
	p := ip.Payload()
	if len(p) == 0 {
		return false
	}
	switch p[0] {
	case ICMPv4DestUnreach, 4, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return false
	}
	return true
}

// icmpFuzzPacket builds an IPv4 packet carrying an ICMP message of type
// typ and code whose remaining bytes are body (for an error, the quote of
// some other packet), with the flags/fragment word frag.
func icmpFuzzPacket(src [4]byte, frag uint16, typ, code uint8, body []byte) []byte {
	n := IPv4MinLen + ICMPv4Len + len(body)
	if n > 0xffff {
		n = 0xffff
		body = body[:n-IPv4MinLen-ICMPv4Len]
	}
	b := make([]byte, n)
	IPv4(b).Encode(&IPv4Fields{TotalLen: uint16(n), TTL: 64, Protocol: ProtoICMP,
		Source: src, Destination: [4]byte{10, 1, 1, 10}})
	binary.BigEndian.PutUint16(b[6:], frag)
	IPv4(b).SetHeaderChecksum()
	ic := b[IPv4MinLen:]
	ic[0], ic[1] = typ, code
	copy(ic[ICMPv4Len:], body)
	binary.BigEndian.PutUint16(ic[2:], Checksum(ic, 0))
	return b
}

// checkICMPv4Error answers orig the way the dataplane would and checks the
// answer: a well-formed IPv4 packet with correct header and ICMP
// checksums, addressed back to orig's source, quoting the start of orig,
// and itself never answerable (so two nodes can never ping-pong errors).
func checkICMPv4Error(t *testing.T, orig IPv4, typ, code uint8, mtu uint16) {
	t.Helper()
	dst := make([]byte, ICMPv4ErrorMaxLen+16)
	for i := range dst {
		dst[i] = 0xa5 // anything the builder leaves unwritten stands out
	}
	from := [4]byte{10, 1, 1, 1}
	n := BuildICMPv4Error(dst[:ICMPv4ErrorMaxLen], orig, from, typ, code, mtu)
	if n < IPv4MinLen+ICMPv4Len || n > ICMPv4ErrorMaxLen {
		t.Fatalf("error of %d bytes", n)
	}
	if dst[n] != 0xa5 {
		t.Fatal("builder wrote past the length it returned")
	}
	e := IPv4(dst[:n])
	if !e.IsValid(n) || e.TotalLen() != n || e.HeaderLen() != IPv4MinLen {
		t.Fatalf("built packet is not valid IPv4: % x", dst[:min(n, 40)])
	}
	if !e.HeaderChecksumValid() {
		t.Fatal("IPv4 header checksum wrong")
	}
	if e.Protocol() != ProtoICMP || e.Source4() != from || e.Destination4() != orig.Source4() || e.IsFragment() || e.TTL() == 0 {
		t.Fatalf("header: proto %d %v -> %v fragment %v ttl %d", e.Protocol(), e.SourceAddr(), e.DestinationAddr(), e.IsFragment(), e.TTL())
	}
	ic := ICMPv4(e.Payload())
	if ic.Type() != typ || ic.Code() != code || ic.MTU() != mtu {
		t.Fatalf("icmp type %d code %d mtu %d", ic.Type(), ic.Code(), ic.MTU())
	}
	if Checksum(ic, 0) != 0 {
		t.Fatal("ICMP checksum wrong")
	}
	quote := ic[ICMPv4Len:]
	want := orig[:orig.TotalLen()]
	if len(want) > icmpv4QuoteMax {
		want = want[:icmpv4QuoteMax]
	}
	if !bytes.Equal(quote, want) {
		t.Fatalf("quote of %d bytes differs from the first %d bytes of the original", len(quote), len(want))
	}
	if MayAnswerWithICMPv4(e) {
		t.Fatal("an ICMP error the node built would itself be answered")
	}
}

// FuzzICMPv4 feeds ICMP messages (errors quoting other packets, echoes,
// garbage) to the "may I send an error about this?" check and the error
// builder. An ICMP error must never be answered with another one, and
// every error built must be a correct packet.
func FuzzICMPv4(f *testing.F) {
	udp := mustHex(f, innerUDP)
	// A time-exceeded error quoting a UDP packet, as a router sends it.
	te := icmpFuzzPacket([4]byte{10, 1, 2, 20}, 0, ICMPv4TimeExceeded, ICMPv4TTLExceeded, udp)
	f.Add(te, []byte(nil), uint8(0), uint8(0), uint16(0), uint32(0))
	f.Add([]byte(nil), udp, uint8(ICMPv4DestUnreach), uint8(ICMPv4FragNeeded), uint16(0), uint32(0x0a010214))
	f.Add([]byte(nil), udp, uint8(ICMPv4Redirect), uint8(1), uint16(0x4000), uint32(0x0a010214))
	f.Add([]byte(nil), udp, uint8(ICMPv4ParamProblem), uint8(0), uint16(0), uint32(0x0a010214))
	f.Add([]byte(nil), udp, uint8(4), uint8(0), uint16(0), uint32(0x0a010214)) // source quench
	f.Add([]byte(nil), []byte("ping"), uint8(ICMPv4Echo), uint8(0), uint16(0), uint32(0x0a010214))
	f.Add([]byte(nil), []byte("pong"), uint8(ICMPv4EchoReply), uint8(0), uint16(0x2000), uint32(0x0a010214))
	// A non-first fragment and odd sources are never answered.
	f.Add([]byte(nil), []byte("tail"), uint8(ICMPv4Echo), uint8(0), uint16(0x0010), uint32(0x0a010214))
	f.Add([]byte(nil), []byte("x"), uint8(ICMPv4Echo), uint8(0), uint16(0), uint32(0x7f000001))
	f.Add([]byte(nil), []byte("x"), uint8(ICMPv4Echo), uint8(0), uint16(0), uint32(0xe0000001))
	f.Add([]byte(nil), []byte("x"), uint8(ICMPv4Echo), uint8(0), uint16(0), uint32(0))
	// An error quoting an error: the chain must stop at the first.
	f.Add([]byte(nil), te, uint8(ICMPv4DestUnreach), uint8(ICMPv4HostUnreach), uint16(0), uint32(0x0a010214))
	// A quote longer than the 576-byte limit.
	f.Add([]byte(nil), bytes.Repeat([]byte("q"), 1400), uint8(ICMPv4Echo), uint8(0), uint16(0), uint32(0x0a010214))
	// Raw inputs: an ICMP header cut short, header options, an IHL that lies.
	f.Add(te[:IPv4MinLen], []byte(nil), uint8(0), uint8(0), uint16(0), uint32(0))
	f.Add([]byte{0x46, 0, 0, 32, 0, 0, 0, 0, 64, 1, 0, 0, 10, 1, 2, 20, 10, 1, 1, 10, 1, 1, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0},
		[]byte(nil), uint8(0), uint8(0), uint16(0), uint32(0))
	f.Add([]byte{0x4f, 0, 0, 20}, []byte(nil), uint8(0), uint8(0), uint16(0), uint32(0))

	f.Fuzz(func(t *testing.T, raw, body []byte, typ, code uint8, frag uint16, src uint32) {
		// The raw input is taken as a whole packet (the bytes a pod or a
		// decapsulated tunnel packet hand to the engine)...
		if ip := IPv4(raw); ip.IsValid(len(raw)) {
			checkAnswerPolicy(t, ip)
		}
		// ... and the other arguments build a well-formed ICMP message, so
		// the fuzzer reaches every type, code and quote without first
		// having to find a valid header.
		var s [4]byte
		binary.BigEndian.PutUint32(s[:], src)
		pkt := icmpFuzzPacket(s, frag, typ, code, body)
		checkAnswerPolicy(t, IPv4(pkt))
	})
}

// checkAnswerPolicy compares MayAnswerWithICMPv4 with the independent
// policy and, where an answer is allowed, checks each error the dataplane
// sends.
func checkAnswerPolicy(t *testing.T, ip IPv4) {
	t.Helper()
	got, want := MayAnswerWithICMPv4(ip), icmpFuzzMayAnswer(ip)
	if got != want {
		t.Fatalf("MayAnswerWithICMPv4 = %v, want %v for proto %d payload % x",
			got, want, ip.Protocol(), ip.Payload()[:min(len(ip.Payload()), 8)])
	}
	if ip.Protocol() == ProtoICMP && len(ip.Payload()) > 0 && IsICMPv4Error(ip.Payload()[0]) && got {
		t.Fatalf("ICMP error type %d would be answered", ip.Payload()[0])
	}
	if !got {
		return
	}
	checkICMPv4Error(t, ip, ICMPv4DestUnreach, ICMPv4NetUnreach, 0)
	checkICMPv4Error(t, ip, ICMPv4DestUnreach, ICMPv4FragNeeded, 1450)
	checkICMPv4Error(t, ip, ICMPv4TimeExceeded, ICMPv4TTLExceeded, 0)
}
