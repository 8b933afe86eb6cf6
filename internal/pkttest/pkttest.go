// Package pkttest builds the packets and frames tests feed to the dataplane,
// its drivers and the running agent: IPv4 with UDP, TCP or ICMP, IPv6 with
// extension headers and UDP, TCP or ICMPv6, Ethernet,
// VXLAN and Geneve, with valid checksums unless a test asks otherwise.
//
// The builders write headers with the encap package's encoders, whose own
// tests check them against fixtures serialised by gopacket; a test that
// needs a header encap cannot write (a reserved bit set, a wrong checksum)
// builds the valid one here and changes bytes afterwards. Every function
// returns a fresh slice the caller owns.
package pkttest

import (
	"encoding/binary"
	"net/netip"

	"github.com/vxdp/vxdp/encap"
)

// IPv4 describes the IPv4 header of a packet to build. Src and Dst must be
// IPv4 addresses; TTL 0 means 64.
type IPv4 struct {
	Src, Dst netip.Addr
	TTL      uint8
	ID       uint16
	DF       bool
	TOS      uint8
}

// Packet returns the header followed by payload, its checksum valid.
func (h IPv4) Packet(proto uint8, payload []byte) []byte {
	p := make([]byte, encap.IPv4MinLen+len(payload))
	ttl := h.TTL
	if ttl == 0 {
		ttl = 64
	}
	encap.IPv4(p).Encode(&encap.IPv4Fields{TOS: h.TOS, TotalLen: uint16(len(p)), ID: h.ID, DontFrag: h.DF,
		TTL: ttl, Protocol: proto, Source: h.Src.As4(), Destination: h.Dst.As4()})
	copy(p[encap.IPv4MinLen:], payload)
	return p
}

// pseudo is the checksum of the pseudo-header for an L4 segment of n bytes.
func (h IPv4) pseudo(proto uint8, n int) uint32 {
	return encap.PseudoHeaderSumV4(h.Src.As4(), h.Dst.As4(), proto, uint16(n))
}

// UDP returns an IPv4/UDP packet with valid IP and UDP checksums.
func (h IPv4) UDP(srcPort, dstPort uint16, payload []byte) []byte {
	seg := make([]byte, encap.UDPLen+len(payload))
	encap.UDP(seg).Encode(srcPort, dstPort, uint16(len(seg)), 0)
	copy(seg[encap.UDPLen:], payload)
	c := encap.Checksum(seg, h.pseudo(encap.ProtoUDP, len(seg)))
	if c == 0 {
		c = 0xffff // 0 would mean "no checksum" (RFC 768)
	}
	binary.BigEndian.PutUint16(seg[udpChecksum:], c)
	return h.Packet(encap.ProtoUDP, seg)
}

// UDP4 returns an IPv4/UDP packet from src to dst, TTL 64, with valid
// checksums.
func UDP4(src, dst netip.AddrPort, payload []byte) []byte {
	return IPv4{Src: src.Addr(), Dst: dst.Addr()}.UDP(src.Port(), dst.Port(), payload)
}

// NoUDPChecksum clears the UDP checksum of an IPv4/UDP packet built here
// ("none", which IPv4 allows and VXLAN senders use) and returns it.
func NoUDPChecksum(pkt []byte) []byte {
	binary.BigEndian.PutUint16(pkt[encap.IPv4MinLen+udpChecksum:], 0)
	return pkt
}

// Offsets in a UDP and a TCP header, and the TCP header length without
// options.
const (
	udpChecksum = 6
	tcpSeq      = 4
	tcpAck      = 8
	tcpDataOff  = 12
	tcpFlags    = 13
	tcpWindow   = 14
	tcpChecksum = 16
	TCPLen      = 20
)

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
	CWR = 0x80
)

// TCP describes a TCP header without options.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	// Partial leaves the pseudo-header sum, not inverted, in the checksum
	// field: what a Linux sender hands to a device that offloads the
	// checksum (CHECKSUM_PARTIAL).
	Partial bool
}

// TCP returns an IPv4/TCP packet with a valid IP checksum and a valid (or,
// with s.Partial, partial) TCP checksum.
func (h IPv4) TCP(s TCP, payload []byte) []byte {
	seg := tcpSegment(s, payload)
	sum := h.pseudo(encap.ProtoTCP, len(seg))
	if s.Partial {
		binary.BigEndian.PutUint16(seg[tcpChecksum:], encap.Fold(sum))
	} else {
		binary.BigEndian.PutUint16(seg[tcpChecksum:], encap.Checksum(seg, sum))
	}
	return h.Packet(encap.ProtoTCP, seg)
}

// tcpSegment returns the TCP header of s followed by payload, its
// checksum field zero.
func tcpSegment(s TCP, payload []byte) []byte {
	seg := make([]byte, TCPLen+len(payload))
	binary.BigEndian.PutUint16(seg[0:], s.SrcPort)
	binary.BigEndian.PutUint16(seg[2:], s.DstPort)
	binary.BigEndian.PutUint32(seg[tcpSeq:], s.Seq)
	binary.BigEndian.PutUint32(seg[tcpAck:], s.Ack)
	seg[tcpDataOff] = TCPLen / 4 << 4
	seg[tcpFlags] = s.Flags
	binary.BigEndian.PutUint16(seg[tcpWindow:], s.Window)
	copy(seg[TCPLen:], payload)
	return seg
}

// ICMP returns an IPv4/ICMP packet of type typ and code whose bytes after
// the checksum are rest (the identifier and sequence of an echo, the unused
// word and the quote of an error), with a valid ICMP checksum.
func (h IPv4) ICMP(typ, code uint8, rest []byte) []byte {
	m := make([]byte, 4+len(rest))
	m[0], m[1] = typ, code
	copy(m[4:], rest)
	binary.BigEndian.PutUint16(m[2:], encap.Checksum(m, 0))
	return h.Packet(encap.ProtoICMP, m)
}

// Ethernet returns a frame from src to dst carrying payload.
func Ethernet(dst, src encap.MAC, etherType uint16, payload []byte) []byte {
	f := make([]byte, encap.EthernetLen+len(payload))
	encap.Ethernet(f).Encode(dst, src, etherType)
	copy(f[encap.EthernetLen:], payload)
	return f
}

// VXLAN returns a VXLAN header (I flag, vni) followed by frame. A VNI over
// 24 bits panics: it is a mistake in the test.
func VXLAN(vni uint32, frame []byte) []byte {
	b := make([]byte, encap.VXLANLen+len(frame))
	if err := encap.VXLAN(b).Encode(vni); err != nil {
		panic("pkttest: " + err.Error())
	}
	copy(b[encap.VXLANLen:], frame)
	return b
}

// VXLANWords returns a VXLAN header made of two raw 32-bit words, flags and
// reserved bits included, followed by frame: for headers encap refuses to
// write.
func VXLANWords(word0, word1 uint32, frame []byte) []byte {
	b := make([]byte, encap.VXLANLen+len(frame))
	binary.BigEndian.PutUint32(b[0:], word0)
	binary.BigEndian.PutUint32(b[4:], word1)
	copy(b[encap.VXLANLen:], frame)
	return b
}

// Geneve returns a Geneve header with vni and opts (protocol transparent
// Ethernet) followed by frame. Options encap refuses panic.
func Geneve(vni uint32, opts []encap.GeneveOption, frame []byte) []byte {
	f := encap.GeneveFields{VNI: vni, Options: opts}
	ol, err := encap.GeneveOptionsLen(opts)
	if err != nil {
		panic("pkttest: " + err.Error())
	}
	b := make([]byte, encap.GeneveLen+ol+len(frame))
	n, err := encap.Geneve(b).Encode(&f)
	if err != nil {
		panic("pkttest: " + err.Error())
	}
	copy(b[n:], frame)
	return b
}

// UDPInfo is what ParseUDP4 reads from a packet.
type UDPInfo struct {
	Src, Dst netip.AddrPort
	Payload  []byte // aliases the packet
}

// ParseUDP4 reads an IPv4/UDP packet, options allowed, enough for tests'
// checks. ok is false for anything else and for inconsistent lengths; the
// checksums are not verified.
func ParseUDP4(p []byte) (UDPInfo, bool) {
	ip := encap.IPv4(p)
	if len(p) < encap.IPv4MinLen || !ip.IsValid(len(p)) || ip.Protocol() != encap.ProtoUDP || ip.IsFragment() {
		return UDPInfo{}, false
	}
	u := encap.UDP(ip.Payload())
	if !u.IsValid(len(u)) {
		return UDPInfo{}, false
	}
	return UDPInfo{
		Src:     netip.AddrPortFrom(ip.SourceAddr(), u.SourcePort()),
		Dst:     netip.AddrPortFrom(ip.DestinationAddr(), u.DestinationPort()),
		Payload: u[encap.UDPLen:u.Length()],
	}, true
}
