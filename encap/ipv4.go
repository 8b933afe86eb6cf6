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
// Validate once with IsValid; from then on the accessors and setters trust
// the view and index it without further checks (on a view that was never
// validated they may panic). SetTotalLen and SetID leave the header
// checksum to the caller (SetHeaderChecksum); DecrementTTL, SetTOS and
// SetECN patch it incrementally. No setter touches a transport checksum.
type IPv4 []byte

// IPv4 constants.
const (
	IPv4MinLen  = 20
	IPv4Version = 4

	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoSCTP = 132

	ipv4FlagDF     = 0x4000
	ipv4FlagMF     = 0x2000
	ipv4OffsetMask = 0x1fff
)

// Offsets of the IPv4 header fields (RFC 791), from the start of the
// header. Flags and fragment offset share one 16-bit word.
const (
	IPv4VersionIHLOffset      = 0
	IPv4TOSOffset             = 1
	IPv4TotalLenOffset        = 2
	IPv4IDOffset              = 4
	IPv4FlagsFragOffset       = 6
	IPv4TTLOffset             = 8
	IPv4ProtocolOffset        = 9
	IPv4ChecksumOffset        = 10
	IPv4SourceAddrOffset      = 12
	IPv4DestinationAddrOffset = 16
)

// IPVersion is the version field of the IP header b starts with, or 0 if b
// is empty: how a reader of bare IP packets (a TUN device) tells IPv4
// from IPv6 before choosing a view.
func IPVersion(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return int(b[IPv4VersionIHLOffset] >> 4)
}

// IsValid reports whether b starts with a well-formed IPv4 header that
// describes a packet of at most pktSize bytes: version 4, IHL >= 5, header
// within the packet and total length covering the header but not running
// past the bytes we hold. The header checksum is not verified: the receive
// paths either trust the kernel (TUN, UDP socket) or check it themselves.
func (b IPv4) IsValid(pktSize int) bool {
	if len(b) < IPv4MinLen || pktSize < IPv4MinLen || pktSize > len(b) {
		return false
	}
	// Not IPVersion: its length check would push IsValid over the
	// inlining budget, and the packet path calls it on every packet.
	if b[IPv4VersionIHLOffset]>>4 != IPv4Version {
		return false
	}
	hl := b.HeaderLen()
	if hl < IPv4MinLen || hl > pktSize {
		return false
	}
	tl := b.TotalLen()
	return tl >= hl && tl <= pktSize
}

func (b IPv4) HeaderLen() int  { return int(b[IPv4VersionIHLOffset]&0xf) * 4 }
func (b IPv4) TOS() uint8      { return b[IPv4TOSOffset] }
func (b IPv4) TotalLen() int   { return int(binary.BigEndian.Uint16(b[IPv4TotalLenOffset:])) }
func (b IPv4) ID() uint16      { return binary.BigEndian.Uint16(b[IPv4IDOffset:]) }
func (b IPv4) TTL() uint8      { return b[IPv4TTLOffset] }
func (b IPv4) Protocol() uint8 { return b[IPv4ProtocolOffset] }
func (b IPv4) HeaderChecksum() uint16 {
	return binary.BigEndian.Uint16(b[IPv4ChecksumOffset:])
}
func (b IPv4) SourceAddr() netip.Addr      { return netip.AddrFrom4(b.Source4()) }
func (b IPv4) DestinationAddr() netip.Addr { return netip.AddrFrom4(b.Destination4()) }
func (b IPv4) Source4() [4]byte {
	return [4]byte(b[IPv4SourceAddrOffset : IPv4SourceAddrOffset+4])
}
func (b IPv4) Destination4() [4]byte {
	return [4]byte(b[IPv4DestinationAddrOffset : IPv4DestinationAddrOffset+4])
}

// SetTotalLen stores the total length; the header checksum is the
// caller's to fix (SetHeaderChecksum).
func (b IPv4) SetTotalLen(n uint16) { binary.BigEndian.PutUint16(b[IPv4TotalLenOffset:], n) }

// SetID stores the identification; the header checksum is the caller's to
// fix.
func (b IPv4) SetID(id uint16) { binary.BigEndian.PutUint16(b[IPv4IDOffset:], id) }

func (b IPv4) flagsFrag() uint16 { return binary.BigEndian.Uint16(b[IPv4FlagsFragOffset:]) }

// DontFragment reports the DF flag.
func (b IPv4) DontFragment() bool { return b.flagsFrag()&ipv4FlagDF != 0 }

// IsFragment reports whether the packet is any fragment but a whole datagram
// (MF set or a non-zero offset).
func (b IPv4) IsFragment() bool { return b.flagsFrag()&(ipv4FlagMF|ipv4OffsetMask) != 0 }

// FragmentOffset is the offset of this fragment in bytes.
func (b IPv4) FragmentOffset() int { return int(b.flagsFrag()&ipv4OffsetMask) * 8 }

// PseudoHeaderSum is the running checksum of the pseudo-header of a
// transport segment of length bytes and protocol proto carried in b
// (RFC 768, RFC 793), to start the segment's checksum with.
func (b IPv4) PseudoHeaderSum(proto uint8, length int) uint32 {
	return PseudoHeaderSumV4(b.Source4(), b.Destination4(), proto, uint16(length))
}

// Payload is the bytes after the header up to the total length.
func (b IPv4) Payload() []byte { return b[b.HeaderLen():b.TotalLen()] }

// HeaderChecksumValid verifies the header checksum.
func (b IPv4) HeaderChecksumValid() bool {
	if b.HeaderLen() == IPv4MinLen {
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
	// TTL shares its checksummed 16-bit word with the protocol.
	old := binary.BigEndian.Uint16(b[IPv4TTLOffset:])
	b[IPv4TTLOffset]--
	nw := binary.BigEndian.Uint16(b[IPv4TTLOffset:])
	binary.BigEndian.PutUint16(b[IPv4ChecksumOffset:], UpdateChecksum16(b.HeaderChecksum(), old, nw))
}

// SetHeaderChecksum computes and stores the header checksum.
func (b IPv4) SetHeaderChecksum() {
	b.setHeaderChecksum(0)
	if b.HeaderLen() == IPv4MinLen {
		b.setHeaderChecksum(^Fold(sum20(b)))
		return
	}
	b.setHeaderChecksum(Checksum(b[:b.HeaderLen()], 0))
}

func (b IPv4) setHeaderChecksum(c uint16) { binary.BigEndian.PutUint16(b[IPv4ChecksumOffset:], c) }

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
	b[IPv4VersionIHLOffset] = IPv4Version<<4 | IPv4MinLen/4
	b[IPv4TOSOffset] = f.TOS
	b.SetTotalLen(f.TotalLen)
	b.SetID(f.ID)
	var flags uint16
	if f.DontFrag {
		flags = ipv4FlagDF
	}
	binary.BigEndian.PutUint16(b[IPv4FlagsFragOffset:], flags)
	b[IPv4TTLOffset] = f.TTL
	b[IPv4ProtocolOffset] = f.Protocol
	copy(b[IPv4SourceAddrOffset:IPv4SourceAddrOffset+4], f.Source[:])
	copy(b[IPv4DestinationAddrOffset:IPv4DestinationAddrOffset+4], f.Destination[:])
	b.setHeaderChecksum(0)
	b.setHeaderChecksum(Checksum(b[:IPv4MinLen], 0))
}
