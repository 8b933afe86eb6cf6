package tun

import (
	"encoding/binary"
	"net/netip"

	"github.com/vxdp/vxdp/encap"
)

// The packets the tests build and parse are written byte by byte here, on
// purpose without encap's views and checksum: a fault in a view must not
// hide in a fixture made with the same view.

// checksum is the Internet checksum of b, with sum as a running start value.
func checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// udp4 builds an IPv4/UDP packet with valid IP and UDP checksums.
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	p := make([]byte, 28+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = encap.ProtoUDP
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20], 0))
	u := p[20:]
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	var pseudo uint32
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(p[i])<<8 | uint32(p[i+1])
	}
	pseudo += encap.ProtoUDP + uint32(len(u))
	c := checksum(u, pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return p
}

type udpPacket struct {
	src, dst netip.AddrPort
	payload  []byte
}

// parseUDP4 decodes an IPv4/UDP packet, enough for the tests' checks.
func parseUDP4(p []byte) (udpPacket, bool) {
	if len(p) < 28 || p[0]>>4 != 4 || p[9] != encap.ProtoUDP {
		return udpPacket{}, false
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < 20 || total > len(p) || total < ihl+8 {
		return udpPacket{}, false
	}
	u := p[ihl:total]
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[12:16])), binary.BigEndian.Uint16(u[0:]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(u[2:]))
	return udpPacket{src: src, dst: dst, payload: u[8:]}, true
}
