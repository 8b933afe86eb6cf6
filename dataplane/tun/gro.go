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
// Every packet that merges has a 20-byte IPv4 header (no options), so the
// transport header of a run member starts at encap.IPv4MinLen.

const (
	groMaxSegs = 64
	groMaxLen  = 65535
)

// mergeSeg describes a packet that may take part in a merge: a TCP data
// segment or, with udp set, a UDP datagram.
type mergeSeg struct {
	hdrLen  int    // IPv4 and transport headers
	payload int    // bytes after them
	seq     uint32 // TCP: the sequence number
	psh     bool   // TCP: PSH is set, so the segment ends a run
	udp     bool
}

// plainIPv4 reports whether pkt is a whole, valid IPv4 packet of protocol
// proto with a 20-byte header: the only kind that merges.
func plainIPv4(ip encap.IPv4, proto uint8) bool {
	return ip.IsValid(len(ip)) && ip.Protocol() == proto && !ip.IsFragment() && ip.HeaderLen() == encap.IPv4MinLen
}

// groCandidate reports whether pkt is a plain IPv4 TCP data segment with
// a valid checksum, and its layout.
func groCandidate(pkt []byte) (mergeSeg, bool) {
	ip := encap.IPv4(pkt)
	if !plainIPv4(ip, encap.ProtoTCP) {
		return mergeSeg{}, false
	}
	tcp := encap.TCP(ip.Payload())
	if !tcp.IsValid(len(tcp)) || tcp.Flags()&^encap.TCPFlagPSH != encap.TCPFlagACK {
		return mergeSeg{}, false // not ACK, maybe PSH, and nothing else
	}
	s := mergeSeg{hdrLen: encap.IPv4MinLen + tcp.HeaderLen(), payload: len(tcp.Payload()),
		seq: tcp.SequenceNumber(), psh: tcp.Flags()&encap.TCPFlagPSH != 0}
	if s.payload == 0 || encap.Checksum(tcp, ip.PseudoHeaderSum(encap.ProtoTCP, len(tcp))) != 0 {
		return mergeSeg{}, false
	}
	return s, true
}

// udpCandidate reports whether pkt is an IPv4 UDP datagram that may be
// merged with others of its flow into one UDP GSO super-packet: no IP
// options, not a fragment, a payload, a UDP length that matches, a
// checksum that verifies (or none).
func udpCandidate(pkt []byte) (mergeSeg, bool) {
	ip := encap.IPv4(pkt)
	if !plainIPv4(ip, encap.ProtoUDP) {
		return mergeSeg{}, false
	}
	u := encap.UDP(ip.Payload())
	if len(u) <= encap.UDPLen || u.Length() != len(u) {
		return mergeSeg{}, false
	}
	if u.Checksum() != 0 && encap.Checksum(u, ip.PseudoHeaderSum(encap.ProtoUDP, len(u))) != 0 {
		return mergeSeg{}, false
	}
	return mergeSeg{hdrLen: encap.IPv4MinLen + encap.UDPLen, payload: len(u.Payload()), udp: true}, true
}

// sameIPv4Flow reports whether a and b agree in everything of their IPv4
// headers a super-packet keeps from its first member: addresses, TOS, TTL
// and DF. (The protocol is the candidates' to check.)
func sameIPv4Flow(a, b encap.IPv4) bool {
	a, b = a[:encap.IPv4MinLen], b[:encap.IPv4MinLen] // one bounds check each, not one per field
	return a.Source4() == b.Source4() && a.Destination4() == b.Destination4() &&
		a.TOS() == b.TOS() && a.TTL() == b.TTL() && a.DontFragment() == b.DontFragment()
}

// udpFollows reports whether the datagram b belongs to the flow of first:
// the same IPv4 flow and ports.
func udpFollows(first, b []byte) bool {
	const hdrs = encap.IPv4MinLen + encap.UDPLen
	fu, bu := encap.UDP(first[encap.IPv4MinLen:hdrs]), encap.UDP(b[encap.IPv4MinLen:hdrs])
	return sameIPv4Flow(first, b) && fu.SourcePort() == bu.SourcePort() && fu.DestinationPort() == bu.DestinationPort()
}

// groFollows reports whether b (layout s) continues a run that began with
// first (layout f), last ending at seq end: the same IPv4 flow, ports,
// ack, window and options. The flags are groCandidate's to check.
func groFollows(first []byte, f mergeSeg, b []byte, s mergeSeg, end uint32) bool {
	if s.hdrLen != f.hdrLen || s.seq != end || !sameIPv4Flow(first, b) {
		return false
	}
	ft, bt := encap.TCP(first[encap.IPv4MinLen:f.hdrLen]), encap.TCP(b[encap.IPv4MinLen:s.hdrLen])
	_, _ = ft[encap.TCPMinLen-1], bt[encap.TCPMinLen-1] // one bounds check each, not one per field
	return ft.SourcePort() == bt.SourcePort() && ft.DestinationPort() == bt.DestinationPort() &&
		ft.AckNumber() == bt.AckNumber() && ft.Window() == bt.Window() &&
		bytes.Equal(ft.Options(), bt.Options())
}

// mergeNext reports whether p continues the run that began with first
// (layout f), whose TCP payload so far ends at sequence number end, and
// returns p's layout.
func mergeNext(first []byte, f mergeSeg, p []byte, end uint32) (mergeSeg, bool) {
	if f.udp {
		s, ok := udpCandidate(p)
		return s, ok && udpFollows(first, p)
	}
	s, ok := groCandidate(p)
	return s, ok && groFollows(first, f, p, s, end)
}

// groPayload is the transport payload of p, a member of a run with layout
// f.
func groPayload(p []byte, f mergeSeg) []byte {
	return p[f.hdrLen:encap.IPv4(p).TotalLen()]
}

// groHeader writes the virtio_net_hdr and the IPv4 and transport headers
// of the super-packet of pkts into dst and returns their length; the
// payloads of pkts, in order, complete the packet.
func groHeader(dst []byte, pkts [][]byte, f mergeSeg) int {
	n := vnetHdrLen + copy(dst[vnetHdrLen:], pkts[0][:f.hdrLen])
	total := f.hdrLen
	var psh encap.TCPFlags
	for _, p := range pkts {
		total += len(groPayload(p, f))
		if !f.udp {
			psh |= encap.TCP(p[encap.IPv4MinLen:]).Flags() & encap.TCPFlagPSH
		}
	}
	// The headers alone: ip's total length describes bytes that the
	// payloads will bring.
	ip := encap.IPv4(dst[vnetHdrLen:n])
	ip.SetTotalLen(uint16(total))
	ip.SetHeaderChecksum()
	seg := total - encap.IPv4MinLen
	h := vnetHdr{flags: vnetFlagNeedsCsum, hdrLen: uint16(f.hdrLen), gsoSize: uint16(f.payload), csumStart: encap.IPv4MinLen}
	// The transport checksum is left partial, as a segmentation-offloading
	// sender leaves it: the pseudo-header sum, finished by the kernel for
	// each segment or datagram it cuts (for UDP with the length too).
	if f.udp {
		u := encap.UDP(ip[encap.IPv4MinLen:])
		u.SetLength(uint16(seg))
		u.SetChecksum(encap.Fold(ip.PseudoHeaderSum(encap.ProtoUDP, seg)))
		h.gsoType, h.csumOffset = vnetGSOUDPL4, encap.UDPChecksumOffset
	} else {
		tcp := encap.TCP(ip[encap.IPv4MinLen:])
		tcp.SetFlags(encap.TCPFlagACK | psh)
		tcp.SetChecksum(encap.Fold(ip.PseudoHeaderSum(encap.ProtoTCP, seg)))
		h.gsoType, h.csumOffset = vnetGSOTCPv4, encap.TCPChecksumOffset
	}
	h.encode(dst)
	return n
}
