package encap

import "math/bits"

// Checksum-complete: a receiver that verified an outer UDP checksum has
// summed every byte of the tunnel payload on the way, the inner packet's
// transport segment among them. The inner TCP or UDP checksum then
// follows from that sum by subtracting the few bytes in front of the
// segment (tunnel header, inner Ethernet and IP headers) and behind it
// (padding), and adding the inner pseudo-header: no second pass over the
// data. The Linux kernel does the same with a CHECKSUM_COMPLETE skb (see
// Documentation/networking/checksum-offloads.rst). On the sending side the
// converse holds: a segment whose checksum is right sums to the complement
// of its pseudo-header, so the outer checksum needs only the headers
// (local checksum offload, same document).

// SumSub returns the running sum a minus the running sum b, in one's
// complement arithmetic: a plus the complement of b.
func SumSub(a, b uint32) uint32 {
	return uint32(Fold(a)) + uint32(^Fold(b))
}

// sumAt is the contribution of b, found at offset off of a larger buffer,
// to that buffer's running sum: a range that starts at an odd offset has
// its bytes in the other halves of the 16-bit words.
func sumAt(b []byte, off int) uint32 {
	s := Sum(b, 0)
	if off&1 != 0 {
		s = uint32(bits.ReverseBytes16(uint16(s)))
	}
	return s
}

// TransportSumOK reports whether the inner IPv4 or IPv6 packet at
// payload[ip:] carries a TCP or UDP segment whose checksum verifies, given
// sum, the running sum (Sum) of every byte of payload. It looks only at the
// bytes outside the segment. Only what the tunnel receive path would hand
// on as it is qualifies: an IPv4 packet that is not a fragment, an IPv6
// one whose segment follows the fixed header directly (no extension
// headers), a UDP datagram as long as its IP payload and with a checksum
// (zero means none, so nothing verifies). Anything else reports false, which means "not known", not
// "bad": the caller checks it the long way if it needs to.
func TransportSumOK(payload []byte, ip int, sum uint32) bool {
	l4, end, pseudo, ok := transportLayout(payload, ip)
	if !ok {
		return false
	}
	// The segment's own sum: the payload's, less what lies in front of
	// and behind it.
	seg := SumSub(sum, sumAt(payload[:ip+l4], 0))
	if tail := payload[ip+end:]; len(tail) > 0 {
		seg = SumSub(seg, sumAt(tail, ip+end))
	}
	if (ip+l4)&1 != 0 {
		seg = uint32(bits.ReverseBytes16(Fold(seg)))
	}
	// pseudo is never zero (the protocol is in it), so a right segment
	// folds to 0xffff, never to 0.
	return Fold(seg+pseudo) == 0xffff
}

// PayloadSum returns the running sum (Sum) of payload, which carries at
// payload[ip:] an IPv4 or IPv6 packet whose TCP or UDP checksum is known
// to be right, by summing only the bytes outside the segment: the segment
// sums to the complement of its pseudo-header. It qualifies the packet as
// TransportSumOK does, and reports false for one that does not: the
// caller then sums the payload the long way.
func PayloadSum(payload []byte, ip int) (uint32, bool) {
	l4, end, pseudo, ok := transportLayout(payload, ip)
	if !ok {
		return 0, false
	}
	seg := TransportSegmentSum(pseudo)
	if (ip+l4)&1 != 0 {
		seg = uint32(bits.ReverseBytes16(uint16(seg)))
	}
	s := Sum(payload[:ip+l4], seg)
	if tail := payload[ip+end:]; len(tail) > 0 {
		s += sumAt(tail, ip+end)
	}
	return uint32(Fold(s)), true
}

// transportLayout finds the TCP or UDP segment of the IPv4 or IPv6 packet
// at payload[ip:], as TransportSumOK qualifies it: where it starts and
// ends (relative to the packet) and its pseudo-header sum.
func transportLayout(payload []byte, ip int) (l4, end int, pseudo uint32, ok bool) {
	if ip < 0 || ip >= len(payload) {
		return 0, 0, 0, false
	}
	pkt := payload[ip:]
	var proto uint8
	switch IPVersion(pkt) {
	case IPv4Version:
		h := IPv4(pkt)
		if !h.IsValid(len(pkt)) || h.IsFragment() {
			return 0, 0, 0, false
		}
		l4, end, proto = h.HeaderLen(), h.TotalLen(), h.Protocol()
		pseudo = h.PseudoHeaderSum(proto, end-l4)
	case IPv6Version:
		h := IPv6(pkt)
		if !h.IsValid(len(pkt)) {
			return 0, 0, 0, false
		}
		l4, end, proto = IPv6Len, h.TotalLen(), h.NextHeader()
		pseudo = h.PseudoHeaderSum(proto, end-l4)
	default:
		return 0, 0, 0, false
	}
	switch proto {
	case ProtoTCP:
		if end-l4 < TCPMinLen {
			return 0, 0, 0, false
		}
	case ProtoUDP:
		// The checksum covers the UDP length's bytes; a datagram
		// shorter than its IP payload is left to the long way.
		if u := UDP(pkt[l4:end]); len(u) < UDPLen || u.Length() != len(u) || u.Checksum() == 0 {
			return 0, 0, 0, false
		}
	default:
		return 0, 0, 0, false
	}
	return l4, end, pseudo, true
}

// TransportSegmentSum returns the running sum of the bytes of a TCP or UDP
// segment whose checksum is known to be right, from its pseudo-header sum
// alone: a right segment plus its pseudo-header sums to 0xffff, so the
// segment sums to the complement of the pseudo-header.
func TransportSegmentSum(pseudo uint32) uint32 {
	return uint32(^Fold(pseudo))
}
