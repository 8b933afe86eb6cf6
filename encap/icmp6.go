package encap

import "encoding/binary"

// ICMPv6 is an ICMPv6 message view (RFC 4443). The error messages share
// one layout:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   unused (Packet Too Big: MTU; Parameter Problem: pointer)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|    As much of the invoking packet as fits without the error   |
//	+               packet exceeding the minimum IPv6 MTU           +
//
// Check len(b) >= ICMPv6Len first; the accessors trust the view. The
// checksum covers the IPv6 pseudo-header (SetICMPv6Checksum).
type ICMPv6 []byte

// Offsets of the ICMPv6 header fields. The word at 4 is the MTU of Packet
// Too Big, the pointer of Parameter Problem, unused by the other errors.
const (
	ICMPv6TypeOffset     = 0
	ICMPv6CodeOffset     = 1
	ICMPv6ChecksumOffset = 2
	ICMPv6MTUOffset      = 4
	ICMPv6PointerOffset  = 4
	ICMPv6InvokingOffset = 8
)

// ICMPv6 types and codes (RFC 4443 section 3; 137 from RFC 4861).
const (
	ICMPv6Len = 8 // the header of an error message, up to the invoking packet

	ICMPv6DestUnreach   = 1
	ICMPv6PacketTooBig  = 2
	ICMPv6TimeExceeded  = 3
	ICMPv6ParamProblem  = 4
	ICMPv6EchoRequest   = 128
	ICMPv6EchoReply     = 129
	ICMPv6Redirect      = 137
	icmpv6InfoTypeStart = 128 // types below are errors (RFC 4443 section 2.1)

	// Destination Unreachable codes.
	ICMPv6NoRoute         = 0
	ICMPv6AdminProhibited = 1
	ICMPv6BeyondScope     = 2
	ICMPv6AddressUnreach  = 3
	ICMPv6PortUnreach     = 4

	// Time Exceeded codes.
	ICMPv6HopLimitExceeded = 0
	ICMPv6ReassemblyTime   = 1

	// Parameter Problem codes.
	ICMPv6ErroneousHeader        = 0
	ICMPv6UnrecognizedNextHeader = 1
	ICMPv6UnrecognizedOption     = 2

	// ICMPv6ErrorMaxLen is the largest packet BuildICMPv6Error writes: the
	// IPv6 minimum MTU (RFC 4443 section 2.4(c)).
	ICMPv6ErrorMaxLen = IPv6MinMTU

	icmpv6QuoteMax = ICMPv6ErrorMaxLen - IPv6Len - ICMPv6Len // 1232
	icmpv6HopLimit = 64
	// Class selector 6 (internetwork control), as BuildICMPv4Error marks
	// its errors.
	icmpv6TrafficClass = 0xc0
)

// Special IPv6 addresses MayAnswerWithICMPv6 refuses as sources (RFC 4291
// section 2.5), and the first 12 bytes of every IPv4-mapped one.
var (
	ipv6Unspecified  = [16]byte{}
	ipv6Loopback     = [16]byte{15: 1}
	ipv4MappedPrefix = [12]byte{10: 0xff, 11: 0xff}
)

func (b ICMPv6) Type() uint8      { return b[ICMPv6TypeOffset] }
func (b ICMPv6) Code() uint8      { return b[ICMPv6CodeOffset] }
func (b ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(b[ICMPv6ChecksumOffset:]) }

// MTU is the MTU field of a Packet Too Big message.
func (b ICMPv6) MTU() uint32 { return binary.BigEndian.Uint32(b[ICMPv6MTUOffset:]) }

// Pointer is the pointer field of a Parameter Problem message: the offset
// in the invoking packet of the field in error.
func (b ICMPv6) Pointer() uint32 { return binary.BigEndian.Uint32(b[ICMPv6PointerOffset:]) }

// InvokingPacket is what an error message quotes of the packet that caused
// it: the bytes after the header to the end of the view.
func (b ICMPv6) InvokingPacket() []byte { return b[ICMPv6InvokingOffset:] }

// IsICMPv6Error reports whether typ is an ICMPv6 error message (types 0 to
// 127, RFC 4443 section 2.1), to which no error may ever be sent back.
func IsICMPv6Error(typ uint8) bool { return typ < icmpv6InfoTypeStart }

// SetICMPv6Checksum computes the checksum of msg, an ICMPv6 message carried
// in ip (to the end of its data), and stores it.
func SetICMPv6Checksum(ip IPv6, msg ICMPv6) {
	binary.BigEndian.PutUint16(msg[ICMPv6ChecksumOffset:], 0)
	binary.BigEndian.PutUint16(msg[ICMPv6ChecksumOffset:], Checksum(msg, ip.PseudoHeaderSum(ProtoICMPv6, len(msg))))
}

// ICMPv6ChecksumValid reports whether msg, an ICMPv6 message carried in ip,
// holds a header and its checksum verifies.
func ICMPv6ChecksumValid(ip IPv6, msg ICMPv6) bool {
	return len(msg) >= ICMPv6ChecksumOffset+2 && Fold(Sum(msg, ip.PseudoHeaderSum(ProtoICMPv6, len(msg)))) == 0xffff
}

// MayAnswerWithICMPv6 applies RFC 4443 section 2.4(e) to an offending
// packet orig (a valid IPv6 view): it reports false, and no error may be
// sent, for
//   - an ICMPv6 error message or a Redirect (e.1, e.2), and any packet
//     whose extension headers UpperLayer refuses or which is a fragment
//     other than the first: for those one cannot tell that it is not an
//     error message;
//   - a packet to a multicast address (e.3). The RFC allows Packet Too Big
//     and Parameter Problem code 2 there; vxdp sends neither to
//     multicast, which a pod's TUN device never carries anyway;
//   - a packet whose source does not identify a single node (e.6): the
//     unspecified address, a multicast address, the loopback address, an
//     IPv4-mapped address (never seen on the wire, RFC 5156 section 2.2).
//
// The link-layer rules (e.4, e.5) are the caller's, where there is a link
// layer; so is the rate limit (f).
func MayAnswerWithICMPv6(orig IPv6) bool {
	src := orig.Source16()
	if orig[IPv6DestinationAddrOffset] == 0xff || src[0] == 0xff || src == ipv6Unspecified || src == ipv6Loopback ||
		[12]byte(src[:12]) == ipv4MappedPrefix {
		return false
	}
	u, err := orig.UpperLayer()
	if err != nil || u.Fragment && !u.FirstFragment() {
		return false
	}
	if u.Proto == ProtoICMPv6 {
		if u.Offset >= orig.TotalLen() {
			return false // no type to tell by
		}
		if t := orig[u.Offset+ICMPv6TypeOffset]; IsICMPv6Error(t) || t == ICMPv6Redirect {
			return false
		}
	}
	return true
}

// BuildICMPv6Error writes a complete IPv6 packet carrying an ICMPv6 error
// about orig from src into dst and returns its length. The error quotes
// orig, from its fixed header on, as far as fits in IPv6MinMTU bytes.
// param is the word after the checksum: the MTU of a Packet Too Big, the
// pointer of a Parameter Problem, 0 otherwise. A receiver raises an MTU
// below IPv6MinMTU to it (RFC 8201 section 4), so the path must carry at
// least that much. dst must hold ICMPv6ErrorMaxLen bytes and orig be a
// valid view; the caller applies MayAnswerWithICMPv6 first.
func BuildICMPv6Error(dst []byte, orig IPv6, src [16]byte, typ, code uint8, param uint32) int {
	quote := orig[:min(orig.TotalLen(), len(orig), icmpv6QuoteMax)]
	total := IPv6Len + ICMPv6Len + len(quote)
	ip := IPv6(dst[:total])
	// Encode cannot fail: the header fits and the flow label is 0.
	_ = ip.Encode(&IPv6Fields{
		TrafficClass: icmpv6TrafficClass,
		PayloadLen:   uint16(ICMPv6Len + len(quote)),
		NextHeader:   ProtoICMPv6,
		HopLimit:     icmpv6HopLimit,
		Source:       src,
		Destination:  orig.Source16(),
	})
	ic := ICMPv6(dst[IPv6Len:total])
	ic[ICMPv6TypeOffset], ic[ICMPv6CodeOffset] = typ, code
	binary.BigEndian.PutUint32(ic[ICMPv6MTUOffset:], param)
	copy(ic[ICMPv6InvokingOffset:], quote)
	SetICMPv6Checksum(ip, ic)
	return total
}
