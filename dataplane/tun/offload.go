package tun

import (
	"encoding/binary"
	"errors"

	"github.com/vxdp/vxdp/encap"
)

// With IFF_VNET_HDR every packet crossing the TUN descriptor carries a
// virtio_net_hdr in front. vxdp asks for checksum and TCPv4 segmentation
// offload (TUNSETOFFLOAD TUN_F_CSUM|TUN_F_TSO4): a pod's TCP then hands
// over up to 64 KiB per read instead of one MTU-sized packet, and vxdp
// cuts it into segments itself. That is one system call where there were
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
	vnetGSOUDPL4      = 5 // VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation (USO)
	vnetGSOECN        = 0x80
)

var (
	errVnetHdr = errors.New("bad virtio_net_hdr")
	errGSOType = errors.New("unsupported gso type")
)

type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func parseVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		gsoSize:    binary.LittleEndian.Uint16(b[4:]),
		csumStart:  binary.LittleEndian.Uint16(b[6:]),
		csumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
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
	ihl := ip.HeaderLen()
	if len(pkt) < ihl+20 {
		return 0, 0, errVnetHdr
	}
	thl := int(pkt[ihl+12]>>4) * 4
	hdrLen = ihl + thl
	if thl < 20 || hdrLen > ip.TotalLen() {
		return 0, 0, errVnetHdr
	}
	return hdrLen, segments(ip.TotalLen()-hdrLen, gsoSize), nil
}

// tcp4Segment writes segment i of the TCPv4 super-packet pkt into dst and
// returns its length: the headers copied, the i-th gsoSize bytes of
// payload, IPv4 length, ID and checksum and TCP sequence, flags and
// checksum fixed as a NIC's segmentation would.
func tcp4Segment(dst, pkt []byte, hdrLen, gsoSize, i, segs int) int {
	o := segment4(dst, pkt, hdrLen, gsoSize, i)
	n, ihl := len(o), o.HeaderLen()
	tcp := dst[ihl:n]
	seq := binary.BigEndian.Uint32(pkt[ihl+4:])
	binary.BigEndian.PutUint32(tcp[4:], seq+uint32(i*gsoSize))
	if i != segs-1 {
		tcp[13] &^= 0x09 // FIN and PSH belong to the last segment
	}
	if i != 0 {
		tcp[13] &^= 0x80 // CWR to the first
	}
	tcp[16], tcp[17] = 0, 0
	sum := encap.PseudoHeaderSumV4(o.Source4(), o.Destination4(), encap.ProtoTCP, uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], encap.Checksum(tcp, sum))
	return n
}

// udp4Layout checks a UDPv4 super-packet (USO) and returns its header
// length (IPv4 + UDP) and the number of datagrams of gsoSize payload bytes
// it makes.
func udp4Layout(pkt []byte, gsoSize int) (hdrLen, segs int, err error) {
	ip := encap.IPv4(pkt)
	if gsoSize <= 0 || !ip.IsValid(len(pkt)) || ip.Protocol() != encap.ProtoUDP {
		return 0, 0, errVnetHdr
	}
	hdrLen = ip.HeaderLen() + 8
	if hdrLen > ip.TotalLen() {
		return 0, 0, errVnetHdr
	}
	return hdrLen, segments(ip.TotalLen()-hdrLen, gsoSize), nil
}

// udp4Segment writes datagram i of the UDPv4 super-packet pkt into dst and
// returns its length: the headers copied, the i-th gsoSize bytes of
// payload, IPv4 length, ID and checksum, UDP length and a full UDP
// checksum, as the kernel's own UDP segmentation makes them.
func udp4Segment(dst, pkt []byte, hdrLen, gsoSize, i int) int {
	o := segment4(dst, pkt, hdrLen, gsoSize, i)
	n := len(o)
	u := dst[o.HeaderLen():n]
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	u[6], u[7] = 0, 0
	sum := encap.PseudoHeaderSumV4(o.Source4(), o.Destination4(), encap.ProtoUDP, uint16(len(u)))
	c := encap.Checksum(u, sum)
	if c == 0 {
		c = 0xffff // zero means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return n
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
	binary.BigEndian.PutUint16(o[2:], uint16(n))
	binary.BigEndian.PutUint16(o[4:], ip.ID()+uint16(i))
	o.SetHeaderChecksum()
	return o
}
