package encap

import "encoding/binary"

// ICMPv4 is an ICMP header view (RFC 792). The error messages the dataplane
// sends share one layout:
//
//	 0                   1                   2                   3
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   unused (or, for fragmentation needed: unused | next-hop MTU)|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Internet Header + leading bytes of the original datagram |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Check len(b) >= ICMPv4Len first; the accessors trust the view.
type ICMPv4 []byte

// Offsets of the ICMPv4 header fields. The four bytes at 4 are unused by
// the error messages but for the next-hop MTU of fragmentation needed.
const (
	ICMPv4TypeOffset     = 0
	ICMPv4CodeOffset     = 1
	ICMPv4ChecksumOffset = 2
	ICMPv4RestOffset     = 4
	ICMPv4MTUOffset      = 6
)

// ICMPv4 types and codes the dataplane uses.
const (
	ICMPv4Len = 8

	ICMPv4EchoReply      = 0
	ICMPv4DestUnreach    = 3
	ICMPv4Redirect       = 5
	ICMPv4Echo           = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
	ICMPv4NetUnreach     = 0
	ICMPv4HostUnreach    = 1
	ICMPv4FragNeeded     = 4
	ICMPv4AdminProhibit  = 13
	ICMPv4TTLExceeded    = 0
	icmpv4QuoteMax       = 548 // 576 (RFC 1812 4.3.2.3) - 20 - 8
	icmpv4ErrorMaxLength = IPv4MinLen + ICMPv4Len + icmpv4QuoteMax
)

func (b ICMPv4) Type() uint8      { return b[ICMPv4TypeOffset] }
func (b ICMPv4) Code() uint8      { return b[ICMPv4CodeOffset] }
func (b ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ICMPv4ChecksumOffset:]) }
func (b ICMPv4) MTU() uint16      { return binary.BigEndian.Uint16(b[ICMPv4MTUOffset:]) }

// IsError reports whether the type is an ICMP error message, to which no
// error may ever be sent back (RFC 1122 3.2.2).
func IsICMPv4Error(typ uint8) bool {
	switch typ {
	case ICMPv4DestUnreach, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem, 4 /* source quench */ :
		return true
	}
	return false
}

// ICMPv4ErrorMaxLen is the largest packet BuildICMPv4Error writes.
const ICMPv4ErrorMaxLen = icmpv4ErrorMaxLength

// MayAnswerWithICMPv4 applies the rules of RFC 1122 3.2.2 and RFC 1812
// 4.3.2.7 to an offending packet orig (a valid IPv4 view): no error about an
// ICMP error, a non-first fragment, or a packet from a source that is not a
// unicast address.
func MayAnswerWithICMPv4(orig IPv4) bool {
	if orig.FragmentOffset() != 0 {
		return false
	}
	src := orig.Source4()
	if src[0] == 0 || src[0] >= 224 || src == [4]byte{255, 255, 255, 255} || src[0] == 127 {
		return false
	}
	// Nor about a datagram sent to a multicast or broadcast address.
	if dst := orig.Destination4(); dst[0] >= 224 {
		return false
	}
	if orig.Protocol() == ProtoICMP {
		p := ICMPv4(orig.Payload())
		if len(p) < 1 || IsICMPv4Error(p.Type()) {
			return false
		}
	}
	return true
}

// BuildICMPv4Error writes a complete IPv4 packet carrying an ICMP error
// about orig into dst and returns its length. The quote holds the original
// header and as much of its payload as fits in 576 bytes. mtu is stored for
// fragmentation-needed (RFC 1191); pass 0 otherwise. dst must hold
// ICMPv4ErrorMaxLen bytes; the caller applies MayAnswerWithICMPv4 first.
func BuildICMPv4Error(dst []byte, orig IPv4, src [4]byte, typ, code uint8, mtu uint16) int {
	quote := orig[:orig.TotalLen()]
	if len(quote) > icmpv4QuoteMax {
		quote = quote[:icmpv4QuoteMax]
	}
	total := IPv4MinLen + ICMPv4Len + len(quote)
	ip := IPv4(dst[:total])
	ip.Encode(&IPv4Fields{
		TotalLen:    uint16(total),
		TTL:         64,
		Protocol:    ProtoICMP,
		Source:      src,
		Destination: orig.Source4(),
		// Class selector 6 (internetwork control), as Linux marks its ICMP.
		TOS: 0xc0,
	})
	ic := ICMPv4(dst[IPv4MinLen:total])
	ic[ICMPv4TypeOffset], ic[ICMPv4CodeOffset] = typ, code
	binary.BigEndian.PutUint16(ic[ICMPv4ChecksumOffset:], 0)
	binary.BigEndian.PutUint16(ic[ICMPv4RestOffset:], 0)
	binary.BigEndian.PutUint16(ic[ICMPv4MTUOffset:], mtu)
	copy(ic[ICMPv4Len:], quote)
	binary.BigEndian.PutUint16(ic[ICMPv4ChecksumOffset:], Checksum(ic, 0))
	return total
}
