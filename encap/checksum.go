package encap

import (
	"encoding/binary"
	"math/bits"
)

// Sum adds b to the running one's-complement sum initial and returns the new
// sum, folded to 16 bits. The one's-complement sum does not depend on the
// byte order it is computed in (RFC 1071, section 2(B)), so the loop adds
// the data as little-endian 64-bit words with an end-around carry chain,
// which is what the machine does fastest, and swaps the two bytes of the
// folded result at the end.
func Sum(b []byte, initial uint32) uint32 {
	var acc, c uint64
	for len(b) >= 64 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[32:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[40:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[48:]), c)
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b[56:]), c)
		b = b[64:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.LittleEndian.Uint64(b), c)
		b = b[8:]
	}
	// The last 0..7 bytes, zero-padded to a word: an odd last byte is the
	// high-order byte of its 16-bit word in network order, which is the
	// low-order byte in this little-endian sum.
	var tail uint64
	k := 0
	if len(b) >= 4 {
		tail = uint64(binary.LittleEndian.Uint32(b))
		k = 4
	}
	if len(b)-k >= 2 {
		tail |= uint64(binary.LittleEndian.Uint16(b[k:])) << (8 * k)
		k += 2
	}
	if len(b)-k == 1 {
		tail |= uint64(b[k]) << (8 * k)
	}
	acc, c = bits.Add64(acc, tail, c)
	acc, c = bits.Add64(acc, 0, c)
	acc += c // acc wrapped to 0 if c is set, so this cannot carry
	// Fold 64 -> 16 bits, swap to network order, add initial.
	acc = acc&0xffffffff + acc>>32
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	s := uint64(bits.ReverseBytes16(uint16(acc))) + uint64(initial)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint32(s)
}

// Fold reduces a running sum to 16 bits.
func Fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// Checksum returns the Internet checksum (RFC 1071) of b with the running
// sum initial, ready to be stored in a header.
func Checksum(b []byte, initial uint32) uint16 {
	return ^Fold(Sum(b, initial))
}

// PseudoHeaderSumV4 is the running sum of the IPv4 pseudo-header used by
// TCP, UDP and ICMP-less transports (RFC 768, RFC 793).
func PseudoHeaderSumV4(src, dst [4]byte, proto uint8, length uint16) uint32 {
	s := uint32(binary.BigEndian.Uint16(src[0:])) + uint32(binary.BigEndian.Uint16(src[2:]))
	s += uint32(binary.BigEndian.Uint16(dst[0:])) + uint32(binary.BigEndian.Uint16(dst[2:]))
	s += uint32(proto) + uint32(length)
	return s
}

// PseudoHeaderSumV6 is the running sum of the IPv6 pseudo-header (RFC 8200
// section 8.1) of an upper-layer packet of length bytes and protocol proto
// (the upper layer's own next header value, not that of an extension
// header in front of it).
func PseudoHeaderSumV6(src, dst [16]byte, proto uint8, length uint32) uint32 {
	s := uint64(proto) + uint64(length)
	for o := 0; o < 16; o += 4 {
		s += uint64(binary.BigEndian.Uint32(src[o:])) + uint64(binary.BigEndian.Uint32(dst[o:]))
	}
	return fold64(s)
}

// fold64 reduces a sum of 32-bit words to a 16-bit running sum: one's
// complement addition of the 16-bit halves, end-around carries included.
func fold64(s uint64) uint32 {
	s = s&0xffffffff + s>>32
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint32(s)
}

// UpdateChecksum16 returns checksum hc after one 16-bit word of the covered
// data changed from old to new, by RFC 1624 equation 3, so forwarding code
// never re-sums a header to change its TTL.
func UpdateChecksum16(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	return ^Fold(s)
}
