package encap

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 is an IPv4 header view (RFC 791):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Call IsValid before any accessor: the accessors trust the view.
type IPv4 []byte

// IPv4 constants.
const (
	IPv4MinLen  = 20
	IPv4MaxLen  = 60
	IPv4Version = 4

	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58

	ipv4FlagDF     = 0x4000
	ipv4FlagMF     = 0x2000
	ipv4OffsetMask = 0x1fff
)

// IsValid reports whether b starts with a well-formed IPv4 header that
// describes a packet of at most pktSize bytes: version 4, IHL >= 5, header
// within the packet and total length covering the header but not running
// past the bytes we hold. The header checksum is not verified: the receive
// paths either trust the kernel (TUN, UDP socket) or check it themselves.
func (b IPv4) IsValid(pktSize int) bool {
	if len(b) < IPv4MinLen || pktSize < IPv4MinLen || pktSize > len(b) {
		return false
	}
	if b[0]>>4 != IPv4Version {
		return false
	}
	hl := int(b[0]&0xf) * 4
	if hl < IPv4MinLen || hl > pktSize {
		return false
	}
	tl := int(binary.BigEndian.Uint16(b[2:]))
	return tl >= hl && tl <= pktSize
}

func (b IPv4) HeaderLen() int         { return int(b[0]&0xf) * 4 }
func (b IPv4) TOS() uint8             { return b[1] }
func (b IPv4) TotalLen() int          { return int(binary.BigEndian.Uint16(b[2:])) }
func (b IPv4) ID() uint16             { return binary.BigEndian.Uint16(b[4:]) }
func (b IPv4) TTL() uint8             { return b[8] }
func (b IPv4) Protocol() uint8        { return b[9] }
func (b IPv4) HeaderChecksum() uint16 { return binary.BigEndian.Uint16(b[10:]) }
func (b IPv4) SourceAddr() netip.Addr {
	return netip.AddrFrom4([4]byte(b[12:16]))
}
func (b IPv4) DestinationAddr() netip.Addr {
	return netip.AddrFrom4([4]byte(b[16:20]))
}
func (b IPv4) Source4() [4]byte      { return [4]byte(b[12:16]) }
func (b IPv4) Destination4() [4]byte { return [4]byte(b[16:20]) }

// DontFragment reports the DF flag.
func (b IPv4) DontFragment() bool { return binary.BigEndian.Uint16(b[6:])&ipv4FlagDF != 0 }

// IsFragment reports whether the packet is any fragment but a whole datagram
// (MF set or a non-zero offset).
func (b IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(b[6:])&(ipv4FlagMF|ipv4OffsetMask) != 0
}

// FragmentOffset is the offset of this fragment in bytes.
func (b IPv4) FragmentOffset() int {
	return int(binary.BigEndian.Uint16(b[6:])&ipv4OffsetMask) * 8
}

// Payload is the bytes after the header up to the total length.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():b.TotalLen()] }

// HeaderChecksumValid verifies the header checksum.
func (b IPv4) HeaderChecksumValid() bool {
	if b.HeaderLen() == 20 {
		return Fold(sum20(b)) == 0xffff
	}
	return Fold(Sum(b[:b.HeaderLen()], 0)) == 0xffff
}

// sum20 is Sum of a 20-byte header (no options), the common case, in a
// few straight-line additions.
func sum20(b []byte) uint32 {
	_ = b[19]
	s := uint64(binary.BigEndian.Uint32(b[0:])) + uint64(binary.BigEndian.Uint32(b[4:])) +
		uint64(binary.BigEndian.Uint32(b[8:])) + uint64(binary.BigEndian.Uint32(b[12:])) +
		uint64(binary.BigEndian.Uint32(b[16:]))
	s = s&0xffff + s>>16&0xffff + s>>32
	s = s&0xffff + s>>16
	return uint32(s&0xffff + s>>16)
}

// DecrementTTL lowers the TTL by one and patches the header checksum
// incrementally. The caller checks TTL() > 1 first.
func (b IPv4) DecrementTTL() {
	old := binary.BigEndian.Uint16(b[8:])
	b[8]--
	nw := binary.BigEndian.Uint16(b[8:])
	binary.BigEndian.PutUint16(b[10:], UpdateChecksum16(b.HeaderChecksum(), old, nw))
}

// SetHeaderChecksum computes and stores the header checksum.
func (b IPv4) SetHeaderChecksum() {
	b[10], b[11] = 0, 0
	if b.HeaderLen() == 20 {
		binary.BigEndian.PutUint16(b[10:], ^Fold(sum20(b)))
		return
	}
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:b.HeaderLen()], 0))
}

// IPv4Fields describes a header to encode. Options are not supported on
// send: the dataplane never originates them.
type IPv4Fields struct {
	TOS         uint8
	TotalLen    uint16
	ID          uint16
	DontFrag    bool
	TTL         uint8
	Protocol    uint8
	Source      [4]byte
	Destination [4]byte
}

// Encode writes a 20-byte header with a valid checksum into b.
func (b IPv4) Encode(f *IPv4Fields) {
	b[0] = IPv4Version<<4 | 5
	b[1] = f.TOS
	binary.BigEndian.PutUint16(b[2:], f.TotalLen)
	binary.BigEndian.PutUint16(b[4:], f.ID)
	var flags uint16
	if f.DontFrag {
		flags = ipv4FlagDF
	}
	binary.BigEndian.PutUint16(b[6:], flags)
	b[8] = f.TTL
	b[9] = f.Protocol
	b[10], b[11] = 0, 0
	copy(b[12:16], f.Source[:])
	copy(b[16:20], f.Destination[:])
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:IPv4MinLen], 0))
}
