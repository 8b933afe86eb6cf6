package encap

// Upper-layer checksums over IPv6 (RFC 8200 section 8.1). Every one of
// them is mandatory over IPv6: unlike IPv4, no header checksum protects the
// addresses, so the pseudo-header in the transport checksum is what does.
// The segment passed in is the upper-layer packet alone, from its header
// to the end of its data (ip[u.Offset:ip.TotalLen()] for u from
// UpperLayer); the pseudo-header takes the fixed header's addresses, see
// IPv6.PseudoHeaderSum for a packet with a Routing header.

// SetTCPChecksumV6 computes the checksum of seg, a TCP segment (header and
// data) carried in ip, and stores it.
func SetTCPChecksumV6(ip IPv6, seg TCP) {
	seg.SetChecksum(0)
	seg.SetChecksum(Checksum(seg, ip.PseudoHeaderSum(ProtoTCP, len(seg))))
}

// TCPChecksumValidV6 reports whether seg, a TCP segment carried in ip,
// is long enough for a TCP header and its checksum verifies.
func TCPChecksumValidV6(ip IPv6, seg TCP) bool {
	return len(seg) >= TCPMinLen && Fold(Sum(seg, ip.PseudoHeaderSum(ProtoTCP, len(seg)))) == 0xffff
}

// SetUDPChecksumV6 computes the checksum of the datagram seg (a valid
// view: seg.IsValid(len(seg))) carried in ip over its length field's bytes
// and stores it; a sum of zero is sent as 0xffff, zero meaning none.
func SetUDPChecksumV6(ip IPv6, seg UDP) {
	n := seg.Length()
	seg.SetChecksum(0)
	c := Checksum(seg[:n], ip.PseudoHeaderSum(ProtoUDP, n))
	if c == 0 {
		c = 0xffff
	}
	seg.SetChecksum(c)
}

// UDPChecksumValidV6 reports whether seg is a well-formed UDP datagram
// carried in ip whose checksum verifies. A zero checksum ("none") is
// invalid over IPv6 (RFC 8200 section 8.1) except where RFC 6935 and RFC
// 6936 let a tunnel endpoint accept it for its tunnel port: the caller
// says so with zeroAllowed, and then checks the rest of what RFC 6936
// section 5 asks of such a receiver (a known peer, a valid inner packet).
func UDPChecksumValidV6(ip IPv6, seg UDP, zeroAllowed bool) bool {
	if !seg.IsValid(len(seg)) {
		return false
	}
	if seg.Checksum() == 0 {
		return zeroAllowed
	}
	n := seg.Length()
	return Fold(Sum(seg[:n], ip.PseudoHeaderSum(ProtoUDP, n))) == 0xffff
}
