package encap

import "encoding/binary"

// CompletePartialChecksumV4 finishes the TCP or UDP checksum of ip if the
// sender left it partial, and reports whether it did.
//
// A Linux sender that offloads checksums stores only the folded
// pseudo-header sum in the field and expects the device to finish it.
// Real NICs do; a veth does not, and the kernel trusts the skb's
// "partial" flag instead — a flag that is lost when the packet reaches a
// UDP socket in userspace. So tunnel packets from a Linux vxlan device on
// the same host carry inner segments whose checksum field holds exactly
// the pseudo-header sum. Recomputing is harmless for a packet whose
// checksum was complete (the result is the value it already had), so the
// test only decides whether the full sum is worth computing.
func CompletePartialChecksumV4(ip IPv4) bool {
	if ip.IsFragment() {
		return false
	}
	proto := ip.Protocol()
	seg := ip.Payload()
	return completePartial(seg, proto, ip.PseudoHeaderSum(proto, len(seg)))
}

// CompletePartialChecksumV6 is CompletePartialChecksumV4 for an IPv6
// packet ip (a valid view): the TCP or UDP header is found past the
// extension headers (UpperLayer), fragments are left alone, and the
// pseudo-header is IPv6's. A packet whose extension headers UpperLayer
// refuses is left alone too; so, in effect, is one with a Routing header
// that has segments left, whose sender summed another destination.
func CompletePartialChecksumV6(ip IPv6) bool {
	u, err := ip.UpperLayer()
	if err != nil || u.Fragment {
		return false
	}
	seg := ip[u.Offset:ip.TotalLen()]
	return completePartial(seg, u.Proto, ip.PseudoHeaderSum(u.Proto, len(seg)))
}

// completePartial finishes the checksum of the TCP or UDP segment seg of
// protocol proto if its field holds exactly the folded pseudo-header sum
// pseudo, and reports whether it did.
func completePartial(seg []byte, proto uint8, pseudo uint32) bool {
	var off int
	switch proto {
	case ProtoTCP:
		off = TCPChecksumOffset
	case ProtoUDP:
		off = UDPChecksumOffset
	default:
		return false
	}
	if len(seg) < off+2 {
		return false
	}
	field := binary.BigEndian.Uint16(seg[off:])
	if proto == ProtoUDP && field == 0 {
		return false // no checksum at all
	}
	if field != Fold(pseudo) {
		return false
	}
	binary.BigEndian.PutUint16(seg[off:], 0)
	c := Checksum(seg, pseudo)
	if proto == ProtoUDP && c == 0 {
		c = 0xffff // zero means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(seg[off:], c)
	return true
}
