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
	var off int
	switch proto {
	case ProtoTCP:
		off = TCPChecksumOffset
	case ProtoUDP:
		off = UDPChecksumOffset
	default:
		return false
	}
	seg := ip.Payload()
	if len(seg) < off+2 {
		return false
	}
	field := binary.BigEndian.Uint16(seg[off:])
	if proto == ProtoUDP && field == 0 {
		return false // no checksum at all
	}
	pseudo := ip.PseudoHeaderSum(proto, len(seg))
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
