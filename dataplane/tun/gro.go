package tun

import (
	"bytes"
	"encoding/binary"

	"github.com/vxdp/vxdp/encap"
)

// Writing with offloads lets vxdp do what GRO does in a NIC driver: runs
// of in-order segments of one TCP flow in a batch are merged into one
// super-packet written with a TCPv4 GSO header, so the pod's kernel takes
// 64 KiB per system call and per trip through its stack. Only plain data
// segments merge (ACK, PSH on the last), with identical headers but for
// length, ID, sequence and checksum, and only after their checksums
// verify: a corrupted segment must not be hidden inside a super-packet
// whose checksum the kernel is told to trust.

const (
	groMaxSegs = 64
	groMaxLen  = 65535
)

// tcpSeg describes a packet that may take part in a merge: a TCP segment
// or, with udp set, a UDP datagram.
type tcpSeg struct {
	ihl, hdrLen, payload int
	seq                  uint32
	udp                  bool
}

// groCandidate reports whether pkt is a plain IPv4 TCP data segment with
// a valid checksum, and its layout.
func groCandidate(pkt []byte) (tcpSeg, bool) {
	ip := encap.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || ip.Protocol() != encap.ProtoTCP || ip.IsFragment() || ip.HeaderLen() != 20 {
		return tcpSeg{}, false
	}
	tl := ip.TotalLen()
	if tl < 40 {
		return tcpSeg{}, false
	}
	t := pkt[20:tl]
	thl := int(t[12]>>4) * 4
	if thl < 20 || thl > len(t) || t[13]&^0x08 != 0x10 { // ACK, maybe PSH, nothing else
		return tcpSeg{}, false
	}
	s := tcpSeg{ihl: 20, hdrLen: 20 + thl, payload: tl - 20 - thl, seq: binary.BigEndian.Uint32(t[4:])}
	if s.payload == 0 {
		return tcpSeg{}, false
	}
	sum := encap.PseudoHeaderSumV4(ip.Source4(), ip.Destination4(), encap.ProtoTCP, uint16(len(t)))
	if encap.Checksum(t, sum) != 0 {
		return tcpSeg{}, false
	}
	return s, true
}

// udpCandidate reports whether pkt is an IPv4 UDP datagram that may be
// merged with others of its flow into one UDP GSO super-packet, which the
// pod's kernel cuts back into the same datagrams: no IP options, not a
// fragment, a UDP length that matches, a checksum that verifies (or none).
func udpCandidate(pkt []byte) (tcpSeg, bool) {
	ip := encap.IPv4(pkt)
	if !ip.IsValid(len(pkt)) || ip.Protocol() != encap.ProtoUDP || ip.IsFragment() || ip.HeaderLen() != 20 {
		return tcpSeg{}, false
	}
	tl := ip.TotalLen()
	if tl <= 28 || int(binary.BigEndian.Uint16(pkt[24:])) != tl-20 {
		return tcpSeg{}, false
	}
	if pkt[26]|pkt[27] != 0 {
		sum := encap.PseudoHeaderSumV4(ip.Source4(), ip.Destination4(), encap.ProtoUDP, uint16(tl-20))
		if encap.Checksum(pkt[20:tl], sum) != 0 {
			return tcpSeg{}, false
		}
	}
	return tcpSeg{ihl: 20, hdrLen: 28, payload: tl - 28, udp: true}, true
}

// udpFollows reports whether the datagram b belongs to the flow of first:
// same addresses, ports, protocol, TOS, TTL and DF.
func udpFollows(first, b []byte) bool {
	return first[1] == b[1] && first[6]&0x40 == b[6]&0x40 && first[8] == b[8] &&
		bytes.Equal(first[12:24], b[12:24])
}

// groFollows reports whether b (layout s) continues a run that began with
// first (layout f), last ending at seq end, with segment size gso.
func groFollows(first []byte, f tcpSeg, b []byte, s tcpSeg, end uint32) bool {
	if s.hdrLen != f.hdrLen || s.seq != end {
		return false
	}
	// Same addresses, protocol, TOS, TTL, DF: bytes 1, 6 (flags), 8, 9,
	// 12..19 of the IP header.
	if first[1] != b[1] || first[6]&0x40 != b[6]&0x40 || first[8] != b[8] || !bytes.Equal(first[12:20], b[12:20]) {
		return false
	}
	// Same ports, ack, window and options; flags compared by the caller.
	ft, bt := first[20:f.hdrLen], b[20:s.hdrLen]
	return bytes.Equal(ft[0:4], bt[0:4]) && bytes.Equal(ft[8:12], bt[8:12]) &&
		bytes.Equal(ft[14:16], bt[14:16]) && bytes.Equal(ft[20:], bt[20:])
}

// groMerge builds in dst the super-packet of pkts (a run groFollows
// accepted) behind a virtio_net_hdr, and returns its length.
func groMerge(dst []byte, pkts [][]byte, f tcpSeg) int {
	n := groHeader(dst, pkts, f)
	for _, p := range pkts {
		n += copy(dst[n:], groPayload(p, f))
	}
	return n
}

// groPayload is the TCP payload of p, a member of a run with layout f.
func groPayload(p []byte, f tcpSeg) []byte {
	return p[f.hdrLen:binary.BigEndian.Uint16(p[2:])]
}

// groHeader writes the virtio_net_hdr and the IPv4 and TCP headers of the
// super-packet of pkts into dst and returns their length; the payloads of
// pkts, in order, complete the packet.
func groHeader(dst []byte, pkts [][]byte, f tcpSeg) int {
	first := pkts[0]
	n := vnetHdrLen + copy(dst[vnetHdrLen:], first[:f.hdrLen])
	total := f.hdrLen
	var psh byte
	for _, p := range pkts {
		total += len(groPayload(p, f))
		if !f.udp {
			psh |= p[33] & 0x08
		}
	}
	pkt := dst[vnetHdrLen:n]
	binary.BigEndian.PutUint16(pkt[2:], uint16(total))
	encap.IPv4(pkt).SetHeaderChecksum()
	h := dst[:vnetHdrLen]
	clear(h)
	h[0] = vnetFlagNeedsCsum
	binary.LittleEndian.PutUint16(h[2:], uint16(f.hdrLen))
	binary.LittleEndian.PutUint16(h[4:], uint16(f.payload))
	binary.LittleEndian.PutUint16(h[6:], 20)
	if f.udp {
		// UDP length and a partial checksum over the whole; the
		// kernel fixes both per datagram when it cuts (UDP_L4 GSO).
		binary.BigEndian.PutUint16(pkt[24:], uint16(total-20))
		sum := encap.PseudoHeaderSumV4([4]byte(pkt[12:16]), [4]byte(pkt[16:20]), encap.ProtoUDP, uint16(total-20))
		binary.BigEndian.PutUint16(pkt[26:], encap.Fold(sum))
		h[1] = vnetGSOUDPL4
		binary.LittleEndian.PutUint16(h[8:], 6)
		return n
	}
	pkt[33] = 0x10 | psh
	// The TCP checksum is left partial, as a segmentation-offloading
	// sender leaves it: the pseudo-header sum, finished by the kernel.
	sum := encap.PseudoHeaderSumV4([4]byte(pkt[12:16]), [4]byte(pkt[16:20]), encap.ProtoTCP, uint16(total-20))
	binary.BigEndian.PutUint16(pkt[36:], encap.Fold(sum))
	h[1] = vnetGSOTCPv4
	binary.LittleEndian.PutUint16(h[8:], 16)
	return n
}
