package encap

import "encoding/binary"

// Sum adds b to the running one's-complement sum initial and returns the new
// sum, not yet folded. It reads eight bytes per step into a 64-bit
// accumulator; the carries collect in the upper half and are folded once at
// the end, which is why the loop needs no carry handling of its own.
func Sum(b []byte, initial uint32) uint32 {
	acc := uint64(initial)
	for len(b) >= 32 {
		acc += uint64(binary.BigEndian.Uint32(b[0:]))
		acc += uint64(binary.BigEndian.Uint32(b[4:]))
		acc += uint64(binary.BigEndian.Uint32(b[8:]))
		acc += uint64(binary.BigEndian.Uint32(b[12:]))
		acc += uint64(binary.BigEndian.Uint32(b[16:]))
		acc += uint64(binary.BigEndian.Uint32(b[20:]))
		acc += uint64(binary.BigEndian.Uint32(b[24:]))
		acc += uint64(binary.BigEndian.Uint32(b[28:]))
		b = b[32:]
	}
	for len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b)) << 16
		b = b[2:]
		if len(b) == 1 {
			acc += uint64(b[0]) << 8
		}
	} else if len(b) == 1 {
		acc += uint64(b[0]) << 24
	}
	// Words were added as 32-bit big-endian quantities, so the two 16-bit
	// halves are summed separately and then together.
	for acc>>32 != 0 {
		acc = (acc & 0xffffffff) + acc>>32
	}
	s := uint32(acc>>16) + uint32(acc&0xffff)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return s
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

// UpdateChecksum16 returns checksum hc after one 16-bit word of the covered
// data changed from old to new, by RFC 1624 equation 3, so forwarding code
// never re-sums a header to change its TTL.
func UpdateChecksum16(hc, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	return ^Fold(s)
}
