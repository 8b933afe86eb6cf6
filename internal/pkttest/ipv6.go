package pkttest

import (
	"encoding/binary"
	"net/netip"

	"github.com/vxdp/vxdp/encap"
)

// IPv6 describes the IPv6 header of a packet to build, and the extension
// headers between it and the upper layer. Src and Dst must be IPv6
// addresses; HopLimit 0 means 64.
type IPv6 struct {
	Src, Dst     netip.Addr
	HopLimit     uint8
	TrafficClass uint8
	FlowLabel    uint32
	// Ext are the extension headers, in order (DestOpts, HopByHop,
	// Fragment); Packet chains their next header fields.
	Ext []Ext
}

// Ext is one extension header: its protocol number and its bytes, whose
// first (the next header) Packet fills in.
type Ext struct {
	Proto uint8
	Body  []byte
}

// DestOpts returns a Destination Options header of 8*n bytes (n >= 1)
// holding padding only.
func DestOpts(n int) Ext { return options(encap.ProtoIPv6Opts, n) }

// HopByHop returns a Hop-by-Hop Options header of 8*n bytes (n >= 1)
// holding padding only.
func HopByHop(n int) Ext { return options(encap.ProtoHopByHop, n) }

func options(proto uint8, n int) Ext {
	b := make([]byte, 8*n)
	b[1] = byte(n - 1)
	// One PadN option over the rest: type 1, the length of its data.
	b[2], b[3] = 1, byte(len(b)-4)
	return Ext{Proto: proto, Body: b}
}

// Fragment returns a Fragment header for a fragment at offset bytes (a
// multiple of 8) of datagram id, more fragments following when more.
func Fragment(offset int, more bool, id uint32) Ext {
	b := make([]byte, 8)
	fo := uint16(offset) &^ 7
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], id)
	return Ext{Proto: encap.ProtoIPv6Frag, Body: b}
}

// Packet returns the fixed header, the extension headers and the
// upper-layer bytes payload of protocol proto.
func (h IPv6) Packet(proto uint8, payload []byte) []byte {
	ext := 0
	for _, e := range h.Ext {
		ext += len(e.Body)
	}
	p := make([]byte, encap.IPv6Len+ext+len(payload))
	hl := h.HopLimit
	if hl == 0 {
		hl = 64
	}
	first := proto
	if len(h.Ext) > 0 {
		first = h.Ext[0].Proto
	}
	err := encap.IPv6(p).Encode(&encap.IPv6Fields{TrafficClass: h.TrafficClass, FlowLabel: h.FlowLabel,
		PayloadLen: uint16(ext + len(payload)), NextHeader: first, HopLimit: hl,
		Source: h.Src.As16(), Destination: h.Dst.As16()})
	if err != nil {
		panic("pkttest: " + err.Error())
	}
	off := encap.IPv6Len
	for i, e := range h.Ext {
		copy(p[off:], e.Body)
		p[off] = proto
		if i+1 < len(h.Ext) {
			p[off] = h.Ext[i+1].Proto
		}
		off += len(e.Body)
	}
	copy(p[off:], payload)
	return p
}

func (h IPv6) pseudo(proto uint8, n int) uint32 {
	return encap.PseudoHeaderSumV6(h.Src.As16(), h.Dst.As16(), proto, uint32(n))
}

// UDP returns an IPv6/UDP packet with a valid UDP checksum.
func (h IPv6) UDP(srcPort, dstPort uint16, payload []byte) []byte {
	seg := make([]byte, encap.UDPLen+len(payload))
	encap.UDP(seg).Encode(srcPort, dstPort, uint16(len(seg)), 0)
	copy(seg[encap.UDPLen:], payload)
	c := encap.Checksum(seg, h.pseudo(encap.ProtoUDP, len(seg)))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(seg[udpChecksum:], c)
	return h.Packet(encap.ProtoUDP, seg)
}

// UDP6 returns an IPv6/UDP packet from src to dst, hop limit 64, with a
// valid checksum.
func UDP6(src, dst netip.AddrPort, payload []byte) []byte {
	return IPv6{Src: src.Addr(), Dst: dst.Addr()}.UDP(src.Port(), dst.Port(), payload)
}

// TCP returns an IPv6/TCP packet with a valid (or, with s.Partial,
// partial) TCP checksum.
func (h IPv6) TCP(s TCP, payload []byte) []byte {
	seg := tcpSegment(s, payload)
	sum := h.pseudo(encap.ProtoTCP, len(seg))
	if s.Partial {
		binary.BigEndian.PutUint16(seg[tcpChecksum:], encap.Fold(sum))
	} else {
		binary.BigEndian.PutUint16(seg[tcpChecksum:], encap.Checksum(seg, sum))
	}
	return h.Packet(encap.ProtoTCP, seg)
}

// ICMPv6 returns an IPv6/ICMPv6 packet of type typ and code whose bytes
// after the checksum are rest, with a valid checksum.
func (h IPv6) ICMPv6(typ, code uint8, rest []byte) []byte {
	m := make([]byte, 4+len(rest))
	m[0], m[1] = typ, code
	copy(m[4:], rest)
	binary.BigEndian.PutUint16(m[2:], encap.Checksum(m, h.pseudo(encap.ProtoICMPv6, len(m))))
	return h.Packet(encap.ProtoICMPv6, m)
}
