package tun

import (
	"bytes"

	"github.com/vxdp/vxdp/encap"
)

// Writing with offloads lets vxdp do what GRO does in a NIC driver: runs
// of in-order segments of one TCP flow in a batch are merged into one
// super-packet written with a TCPv4 GSO header, so the pod's kernel takes
// 64 KiB per system call and per trip through its stack. Only plain data
// segments merge (ACK, PSH on the last), with identical headers but for
// length, ID, sequence and checksum, and only after their checksums
// verify: a corrupted segment must not be hidden inside a super-packet
// whose checksum the kernel is told to trust. Datagrams of one UDP flow
// merge the same way into a UDP GSO super-packet, which the pod's kernel
// cuts back into the datagrams that were sent.
//
// Every IPv4 packet that merges has a 20-byte header (no options) and
// every IPv6 packet a bare 40-byte one (no extension headers), so the
// transport header of a run member starts at the same offset as the
// first's: mergeSeg.l4. IPv6 segments merge under the same conditions as
// IPv4 ones, with a TCPv6 GSO header; their super-packet has no header
// checksum to fix, only the payload length.

const (
	groMaxSegs = 64
	groMaxLen  = 65535
)

// mergeSeg describes a packet that may take part in a merge: a TCP data
// segment or, with udp set, a UDP datagram, over IPv4 or, with v6 set,
// IPv6.
type mergeSeg struct {
	hdrLen  int    // IP and transport headers
	l4      int    // where the transport header starts: the IP header's length
	payload int    // bytes after them
	seq     uint32 // TCP: the sequence number
	psh     bool   // TCP: PSH is set, so the segment ends a run
	udp     bool
	v6      bool
}

// plainIPv4 reports whether pkt is a whole, valid IPv4 packet of protocol
// proto with a 20-byte header: the only kind that merges.
func plainIPv4(ip encap.IPv4, proto uint8) bool {
	return ip.IsValid(len(ip)) && ip.Protocol() == proto && !ip.IsFragment() && ip.HeaderLen() == encap.IPv4MinLen
}

// plainIPv6 is plainIPv4 for IPv6: the transport header of protocol proto
// right after the fixed header, no extension header at all.
func plainIPv6(ip encap.IPv6, proto uint8) bool {
	return ip.IsValid(len(ip)) && ip.NextHeader() == proto
}

// plainIP reports whether pkt is a plain IPv4 or IPv6 packet of protocol
// proto (plainIPv4, plainIPv6) and returns its transport header, its
// pseudo-header sum and the IP header's length.
func plainIP(pkt []byte, proto uint8) (l4 []byte, pseudo uint32, ipLen int, v6, ok bool) {
	switch encap.IPVersion(pkt) {
	case encap.IPv4Version:
		ip := encap.IPv4(pkt)
		if !plainIPv4(ip, proto) {
			return nil, 0, 0, false, false
		}
		l4 = ip.Payload()
		return l4, ip.PseudoHeaderSum(proto, len(l4)), encap.IPv4MinLen, false, true
	case encap.IPv6Version:
		ip := encap.IPv6(pkt)
		if !plainIPv6(ip, proto) {
			return nil, 0, 0, false, false
		}
		l4 = ip.Payload()
		return l4, ip.PseudoHeaderSum(proto, len(l4)), encap.IPv6Len, true, true
	}
	return nil, 0, 0, false, false
}

// groCandidate reports whether pkt is a plain IPv4 or IPv6 TCP data
// segment with a valid checksum, and its layout. checked says the checksum
// is known to be right already (packetio.CheckedWriter), which spares the
// pass over the segment.
func groCandidate(pkt []byte, checked bool) (mergeSeg, bool) {
	seg, pseudo, ipLen, v6, ok := plainIP(pkt, encap.ProtoTCP)
	if !ok {
		return mergeSeg{}, false
	}
	tcp := encap.TCP(seg)
	if !tcp.IsValid(len(tcp)) || tcp.Flags()&^encap.TCPFlagPSH != encap.TCPFlagACK {
		return mergeSeg{}, false // not ACK, maybe PSH, and nothing else
	}
	s := mergeSeg{hdrLen: ipLen + tcp.HeaderLen(), l4: ipLen, payload: len(tcp.Payload()),
		seq: tcp.SequenceNumber(), psh: tcp.Flags()&encap.TCPFlagPSH != 0, v6: v6}
	if s.payload == 0 || !checked && encap.Checksum(tcp, pseudo) != 0 {
		return mergeSeg{}, false
	}
	return s, true
}

// udpCandidate reports whether pkt is an IPv4 or IPv6 UDP datagram that
// may be merged with others of its flow into one UDP GSO super-packet: no
// IP options or extension headers, not a fragment, a payload, a UDP length
// that matches, a checksum that verifies (or, over IPv4 only, none);
// checked as for groCandidate.
func udpCandidate(pkt []byte, checked bool) (mergeSeg, bool) {
	seg, pseudo, ipLen, v6, ok := plainIP(pkt, encap.ProtoUDP)
	if !ok {
		return mergeSeg{}, false
	}
	u := encap.UDP(seg)
	if len(u) <= encap.UDPLen || u.Length() != len(u) {
		return mergeSeg{}, false
	}
	switch {
	case u.Checksum() == 0:
		if v6 {
			return mergeSeg{}, false // invalid over IPv6 (RFC 8200 8.1)
		}
	case !checked && encap.Checksum(u, pseudo) != 0:
		return mergeSeg{}, false
	}
	return mergeSeg{hdrLen: ipLen + encap.UDPLen, l4: ipLen, payload: len(u.Payload()), udp: true, v6: v6}, true
}

// sameIPv4Flow reports whether a and b agree in everything of their IPv4
// headers a super-packet keeps from its first member: addresses, TOS, TTL
// and DF. (The protocol is the candidates' to check.)
func sameIPv4Flow(a, b encap.IPv4) bool {
	a, b = a[:encap.IPv4MinLen], b[:encap.IPv4MinLen] // one bounds check each, not one per field
	return a.Source4() == b.Source4() && a.Destination4() == b.Destination4() &&
		a.TOS() == b.TOS() && a.TTL() == b.TTL() && a.DontFragment() == b.DontFragment()
}

// sameIPv6Flow is sameIPv4Flow for IPv6: the first word (traffic class
// and flow label), the hop limit and the addresses, everything but the
// payload length.
func sameIPv6Flow(a, b encap.IPv6) bool {
	a, b = a[:encap.IPv6Len], b[:encap.IPv6Len]
	return bytes.Equal(a[:encap.IPv6PayloadLenOffset], b[:encap.IPv6PayloadLenOffset]) &&
		bytes.Equal(a[encap.IPv6HopLimitOffset:], b[encap.IPv6HopLimitOffset:])
}

// sameIPFlow is sameIPv4Flow or sameIPv6Flow, as f says.
func sameIPFlow(first []byte, f mergeSeg, b []byte) bool {
	if f.v6 {
		return sameIPv6Flow(first, b)
	}
	return sameIPv4Flow(first, b)
}

// udpFollows reports whether the datagram b (layout s) belongs to the
// flow of first (layout f): the same IP flow and ports.
func udpFollows(first []byte, f mergeSeg, b []byte, s mergeSeg) bool {
	if s.v6 != f.v6 {
		return false
	}
	fu, bu := encap.UDP(first[f.l4:f.hdrLen]), encap.UDP(b[f.l4:f.hdrLen])
	return sameIPFlow(first, f, b) && fu.SourcePort() == bu.SourcePort() && fu.DestinationPort() == bu.DestinationPort()
}

// groFollows reports whether b (layout s) continues a run that began with
// first (layout f), last ending at seq end: the same IP flow, ports,
// ack, window and options. The flags are groCandidate's to check.
func groFollows(first []byte, f mergeSeg, b []byte, s mergeSeg, end uint32) bool {
	if s.hdrLen != f.hdrLen || s.v6 != f.v6 || s.seq != end || !sameIPFlow(first, f, b) {
		return false
	}
	ft, bt := encap.TCP(first[f.l4:f.hdrLen]), encap.TCP(b[s.l4:s.hdrLen])
	_, _ = ft[encap.TCPMinLen-1], bt[encap.TCPMinLen-1] // one bounds check each, not one per field
	return ft.SourcePort() == bt.SourcePort() && ft.DestinationPort() == bt.DestinationPort() &&
		ft.AckNumber() == bt.AckNumber() && ft.Window() == bt.Window() &&
		bytes.Equal(ft.Options(), bt.Options())
}

// mergeNext reports whether p continues the run that began with first
// (layout f), whose TCP payload so far ends at sequence number end, and
// returns p's layout; checked as for groCandidate.
func mergeNext(first []byte, f mergeSeg, p []byte, end uint32, checked bool) (mergeSeg, bool) {
	if f.udp {
		s, ok := udpCandidate(p, checked)
		return s, ok && udpFollows(first, f, p, s)
	}
	s, ok := groCandidate(p, checked)
	return s, ok && groFollows(first, f, p, s, end)
}

// groPayload is the transport payload of p, a member of a run with layout
// f.
func groPayload(p []byte, f mergeSeg) []byte {
	if f.v6 {
		return p[f.hdrLen:encap.IPv6(p).TotalLen()]
	}
	return p[f.hdrLen:encap.IPv4(p).TotalLen()]
}

// groHeader writes the virtio_net_hdr and the IP and transport headers of
// the super-packet of pkts into dst and returns their length; the
// payloads of pkts, in order, complete the packet.
func groHeader(dst []byte, pkts [][]byte, f mergeSeg) int {
	n := vnetHdrLen + copy(dst[vnetHdrLen:], pkts[0][:f.hdrLen])
	total := f.hdrLen
	var psh encap.TCPFlags
	for _, p := range pkts {
		total += len(groPayload(p, f))
		if !f.udp {
			psh |= encap.TCP(p[f.l4:]).Flags() & encap.TCPFlagPSH
		}
	}
	// The headers alone: the IP length describes bytes that the payloads
	// will bring.
	hdrs := dst[vnetHdrLen:n]
	seg := total - f.l4
	proto, gsoType, csumOffset := uint8(encap.ProtoTCP), uint8(vnetGSOTCPv4), encap.TCPChecksumOffset
	if f.udp {
		proto, gsoType, csumOffset = encap.ProtoUDP, vnetGSOUDPL4, encap.UDPChecksumOffset
	}
	var pseudo uint32
	if f.v6 {
		ip := encap.IPv6(hdrs)
		ip.SetPayloadLen(uint16(seg))
		pseudo = ip.PseudoHeaderSum(proto, seg)
		if !f.udp {
			gsoType = vnetGSOTCPv6
		}
	} else {
		ip := encap.IPv4(hdrs)
		ip.SetTotalLen(uint16(total))
		ip.SetHeaderChecksum()
		pseudo = ip.PseudoHeaderSum(proto, seg)
	}
	// The transport checksum is left partial, as a segmentation-offloading
	// sender leaves it: the pseudo-header sum, finished by the kernel for
	// each segment or datagram it cuts (for UDP with the length too).
	if f.udp {
		u := encap.UDP(hdrs[f.l4:])
		u.SetLength(uint16(seg))
		u.SetChecksum(encap.Fold(pseudo))
	} else {
		tcp := encap.TCP(hdrs[f.l4:])
		tcp.SetFlags(encap.TCPFlagACK | psh)
		tcp.SetChecksum(encap.Fold(pseudo))
	}
	h := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: gsoType, hdrLen: uint16(f.hdrLen), gsoSize: uint16(f.payload),
		csumStart: uint16(f.l4), csumOffset: uint16(csumOffset)}
	h.encode(dst)
	return n
}
