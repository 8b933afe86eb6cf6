package tun

import (
	"encoding/binary"
	"errors"

	"github.com/vxdp/vxdp/encap"
)

// With IFF_VNET_HDR every packet crossing the TUN descriptor carries a
// virtio_net_hdr in front. vxdp asks for checksum and TCP segmentation
// offload for both families (TUNSETOFFLOAD TUN_F_CSUM|TUN_F_TSO4|
// TUN_F_TSO6): a pod's TCP then hands over up to 64 KiB per read instead
// of one MTU-sized packet, and vxdp cuts it into segments itself. That is one system call where there were
// forty, which is where a userspace dataplane spends its time.
//
//	struct virtio_net_hdr {
//		u8  flags;        // VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
//		u8  gso_type;     // NONE 0, TCPV4 1, UDP 3, TCPV6 4, | ECN 0x80
//		u16 hdr_len;      // little endian, as the host is
//		u16 gso_size;
//		u16 csum_start;
//		u16 csum_offset;
//	};
const (
	vnetHdrLen        = 10
	vnetFlagNeedsCsum = 1
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
	vnetGSOUDPL4      = 5 // VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation (USO)
	vnetGSOECN        = 0x80
)

// Offsets of the virtio_net_hdr fields.
const (
	vnetFlagsOffset      = 0
	vnetGSOTypeOffset    = 1
	vnetHdrLenOffset     = 2
	vnetGSOSizeOffset    = 4
	vnetCsumStartOffset  = 6
	vnetCsumOffsetOffset = 8
)

var errVnetHdr = errors.New("bad virtio_net_hdr")

// vnetHdr is a virtio_net_hdr, decoded.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

// parseVnetHdr decodes the vnetHdrLen bytes at the start of b.
func parseVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags:      b[vnetFlagsOffset],
		gsoType:    b[vnetGSOTypeOffset],
		hdrLen:     binary.LittleEndian.Uint16(b[vnetHdrLenOffset:]),
		gsoSize:    binary.LittleEndian.Uint16(b[vnetGSOSizeOffset:]),
		csumStart:  binary.LittleEndian.Uint16(b[vnetCsumStartOffset:]),
		csumOffset: binary.LittleEndian.Uint16(b[vnetCsumOffsetOffset:]),
	}
}

// encode writes h into the vnetHdrLen bytes at the start of b.
func (h *vnetHdr) encode(b []byte) {
	b[vnetFlagsOffset] = h.flags
	b[vnetGSOTypeOffset] = h.gsoType
	binary.LittleEndian.PutUint16(b[vnetHdrLenOffset:], h.hdrLen)
	binary.LittleEndian.PutUint16(b[vnetGSOSizeOffset:], h.gsoSize)
	binary.LittleEndian.PutUint16(b[vnetCsumStartOffset:], h.csumStart)
	binary.LittleEndian.PutUint16(b[vnetCsumOffsetOffset:], h.csumOffset)
}

// finishChecksum completes a checksum the kernel left partial: the field
// at csumStart+csumOffset holds the pseudo-header sum, so summing from
// csumStart over the rest of the packet gives the final value.
func finishChecksum(pkt []byte, h vnetHdr) error {
	cs, co := int(h.csumStart), int(h.csumOffset)
	if cs+co+2 > len(pkt) {
		return errVnetHdr
	}
	c := encap.Checksum(pkt[cs:], 0)
	if c == 0 && co == encap.UDPChecksumOffset {
		c = 0xffff // zero would mean "no checksum" (and is invalid over IPv6)
	}
	binary.BigEndian.PutUint16(pkt[cs+co:], c)
	return nil
}

// tcp4Layout checks a TCPv4 super-packet and returns its header length
// (IPv4 + TCP) and the number of segments of gsoSize it makes.
func tcp4Layout(pkt []byte, gsoSize int) (hdrLen, segs int, err error) {
	ip := encap.IPv4(pkt)
	if gsoSize <= 0 || !ip.IsValid(len(pkt)) || ip.Protocol() != encap.ProtoTCP {
		return 0, 0, errVnetHdr
	}
	tcp := encap.TCP(ip.Payload())
	if !tcp.IsValid(len(tcp)) {
		return 0, 0, errVnetHdr
	}
	hdrLen = ip.HeaderLen() + tcp.HeaderLen()
	return hdrLen, segments(len(tcp.Payload()), gsoSize), nil
}

// tcp4Segment writes segment i of the TCPv4 super-packet pkt into dst and
// returns its length: the headers copied, the i-th gsoSize bytes of
// payload, IPv4 length, ID and checksum and TCP sequence, flags and
// checksum fixed as a NIC's segmentation would.
func tcp4Segment(dst, pkt []byte, hdrLen, gsoSize, i, segs int) int {
	o := segment4(dst, pkt, hdrLen, gsoSize, i)
	tcp := encap.TCP(o.Payload())
	cutTCP(tcp, gsoSize, i, segs)
	tcp.SetChecksum(encap.Checksum(tcp, o.PseudoHeaderSum(encap.ProtoTCP, len(tcp))))
	return len(o)
}

// cutTCP fixes the TCP header tcp of segment i of segs, copied from the
// super-packet, for its place in the stream: sequence number and flags,
// and the checksum field zeroed for the caller to compute.
func cutTCP(tcp encap.TCP, gsoSize, i, segs int) {
	// The header copied from the super-packet holds its sequence number.
	tcp.SetSequenceNumber(tcp.SequenceNumber() + uint32(i*gsoSize))
	flags := tcp.Flags()
	if i != segs-1 {
		flags &^= encap.TCPFlagFIN | encap.TCPFlagPSH // they belong to the last segment
	}
	if i != 0 {
		flags &^= encap.TCPFlagCWR // to the first
	}
	tcp.SetFlags(flags)
	tcp.SetChecksum(0)
}

// udp4Layout checks a UDPv4 super-packet (USO) and returns its header
// length (IPv4 + UDP) and the number of datagrams of gsoSize payload bytes
// it makes.
func udp4Layout(pkt []byte, gsoSize int) (hdrLen, segs int, err error) {
	ip := encap.IPv4(pkt)
	if gsoSize <= 0 || !ip.IsValid(len(pkt)) || ip.Protocol() != encap.ProtoUDP {
		return 0, 0, errVnetHdr
	}
	// The super-packet's UDP length is not checked: udp4Segment writes
	// each datagram's own.
	u := encap.UDP(ip.Payload())
	if len(u) < encap.UDPLen {
		return 0, 0, errVnetHdr
	}
	return ip.HeaderLen() + encap.UDPLen, segments(len(u.Payload()), gsoSize), nil
}

// udp4Segment writes datagram i of the UDPv4 super-packet pkt into dst and
// returns its length: the headers copied, the i-th gsoSize bytes of
// payload, IPv4 length, ID and checksum, UDP length and a full UDP
// checksum, as the kernel's own UDP segmentation makes them.
func udp4Segment(dst, pkt []byte, hdrLen, gsoSize, i int) int {
	o := segment4(dst, pkt, hdrLen, gsoSize, i)
	u := encap.UDP(o.Payload())
	u.SetLength(uint16(len(u)))
	u.SetChecksum(0)
	c := encap.Checksum(u, o.PseudoHeaderSum(encap.ProtoUDP, len(u)))
	if c == 0 {
		c = 0xffff // zero means "no checksum" in UDP
	}
	u.SetChecksum(c)
	return len(o)
}

// segments is how many packets of gsoSize payload bytes a super-packet
// with payload bytes makes: at least one, for a header-only packet.
func segments(payload, gsoSize int) int {
	return max((payload+gsoSize-1)/gsoSize, 1)
}

// segment4 writes packet i of the IPv4 super-packet pkt into dst: the
// hdrLen bytes of headers and the i-th gsoSize bytes of payload, with the
// IPv4 length, ID (the super-packet's plus i) and header checksum fixed.
// It returns the packet; the transport header is the caller's to finish.
func segment4(dst, pkt []byte, hdrLen, gsoSize, i int) encap.IPv4 {
	ip := encap.IPv4(pkt)
	payload := pkt[hdrLen:ip.TotalLen()]
	lo := i * gsoSize
	hi := min(lo+gsoSize, len(payload))
	n := hdrLen + hi - lo
	copy(dst, pkt[:hdrLen])
	copy(dst[hdrLen:], payload[lo:hi])
	o := encap.IPv4(dst[:n])
	o.SetTotalLen(uint16(n))
	o.SetID(ip.ID() + uint16(i))
	o.SetHeaderChecksum()
	return o
}

// An IPv6 super-packet is cut the same way; IPv6 has no header checksum
// and no ID outside a Fragment header (which a super-packet never has),
// so only the payload length changes in the IPv6 header. The transport
// header may sit behind Hop-by-Hop and Destination Options headers, which
// every segment carries as the super-packet did. Any other extension
// header refuses the super-packet: a Routing header would put another
// address in the pseudo-header than the fixed header's.

// Offsets in a Hop-by-Hop or Destination Options header (RFC 8200 4.3,
// 4.6): the next header, and the length in 8-byte units after the first 8.
const (
	optsNextHeaderOffset = 0
	optsLenOffset        = 1
	optsMinLen           = 8
)

// upper6 walks the Hop-by-Hop and Destination Options headers of pkt, an
// IPv6 packet, and returns the offset of its upper-layer header if that
// is proto and lies within the payload length. It reads at most
// encap.IPv6MaxExtHeaders headers.
func upper6(pkt []byte, proto uint8) (int, bool) {
	ip := encap.IPv6(pkt)
	if !ip.IsValid(len(pkt)) {
		return 0, false
	}
	end := ip.TotalLen()
	nh, off := ip.NextHeader(), encap.IPv6Len
	for n := 0; n <= encap.IPv6MaxExtHeaders; n++ {
		switch nh {
		case proto:
			return off, true
		case encap.ProtoHopByHop, encap.ProtoIPv6Opts:
			if nh == encap.ProtoHopByHop && off != encap.IPv6Len {
				return 0, false // only right after the fixed header (RFC 8200 4.1)
			}
			if n == encap.IPv6MaxExtHeaders || end-off < optsMinLen {
				return 0, false
			}
			nh, off = pkt[off+optsNextHeaderOffset], off+(int(pkt[off+optsLenOffset])+1)*8
			if off > end {
				return 0, false
			}
		default:
			return 0, false
		}
	}
	return 0, false
}

// tcp6Layout checks a TCPv6 super-packet and returns its header length
// (IPv6, options headers, TCP), the offset of its TCP header and the
// number of segments of gsoSize it makes.
func tcp6Layout(pkt []byte, gsoSize int) (hdrLen, l4, segs int, err error) {
	l4, ok := upper6(pkt, encap.ProtoTCP)
	if gsoSize <= 0 || !ok {
		return 0, 0, 0, errVnetHdr
	}
	tcp := encap.TCP(pkt[l4:encap.IPv6(pkt).TotalLen()])
	if !tcp.IsValid(len(tcp)) {
		return 0, 0, 0, errVnetHdr
	}
	hdrLen = l4 + tcp.HeaderLen()
	return hdrLen, l4, segments(len(tcp)-tcp.HeaderLen(), gsoSize), nil
}

// tcp6Segment is tcp4Segment for the TCPv6 super-packet pkt whose TCP
// header is at l4.
func tcp6Segment(dst, pkt []byte, hdrLen, l4, gsoSize, i, segs int) int {
	o := segment6(dst, pkt, hdrLen, gsoSize, i)
	tcp := encap.TCP(o[l4:])
	cutTCP(tcp, gsoSize, i, segs)
	tcp.SetChecksum(encap.Checksum(tcp, o.PseudoHeaderSum(encap.ProtoTCP, len(tcp))))
	return len(o)
}

// udp6Layout is udp4Layout for a UDPv6 super-packet; it also returns the
// offset of the UDP header.
func udp6Layout(pkt []byte, gsoSize int) (hdrLen, l4, segs int, err error) {
	l4, ok := upper6(pkt, encap.ProtoUDP)
	if gsoSize <= 0 || !ok {
		return 0, 0, 0, errVnetHdr
	}
	n := encap.IPv6(pkt).TotalLen() - l4
	if n < encap.UDPLen {
		return 0, 0, 0, errVnetHdr
	}
	return l4 + encap.UDPLen, l4, segments(n-encap.UDPLen, gsoSize), nil
}

// udp6Segment is udp4Segment for the UDPv6 super-packet pkt whose UDP
// header is at l4. The checksum is never left out: over IPv6 it is
// mandatory.
func udp6Segment(dst, pkt []byte, hdrLen, l4, gsoSize, i int) int {
	o := segment6(dst, pkt, hdrLen, gsoSize, i)
	u := encap.UDP(o[l4:])
	u.SetLength(uint16(len(u)))
	u.SetChecksum(0)
	c := encap.Checksum(u, o.PseudoHeaderSum(encap.ProtoUDP, len(u)))
	if c == 0 {
		c = 0xffff
	}
	u.SetChecksum(c)
	return len(o)
}

// segment6 is segment4 for the IPv6 super-packet pkt: the headers and the
// i-th gsoSize bytes of payload, the payload length fixed.
func segment6(dst, pkt []byte, hdrLen, gsoSize, i int) encap.IPv6 {
	payload := pkt[hdrLen:encap.IPv6(pkt).TotalLen()]
	lo := i * gsoSize
	hi := min(lo+gsoSize, len(payload))
	n := hdrLen + hi - lo
	copy(dst, pkt[:hdrLen])
	copy(dst[hdrLen:], payload[lo:hi])
	o := encap.IPv6(dst[:n])
	o.SetPayloadLen(uint16(n - encap.IPv6Len))
	return o
}
