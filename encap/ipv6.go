package encap

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// IPv6 is an IPv6 fixed header view (RFC 8200, section 3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                         Source Address                        +
//	|                          (16 bytes)                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                      Destination Address                      +
//	|                          (16 bytes)                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// NextHeader is what follows the fixed header; UpperLayer walks the
// extension headers to the upper-layer protocol. Validate once with
// IsValid; from then on the accessors and setters trust the view and index
// it without further checks (on a view that was never validated they may
// panic). IPv6 has no header checksum: changing the hop limit, traffic
// class or flow label leaves every checksum valid, while the addresses,
// payload length and next header are in the upper layer's pseudo-header.
type IPv6 []byte

// IPv6 constants.
const (
	IPv6Len     = 40 // the fixed header
	IPv6Version = 6

	// IPv6MaxFlowLabel is the largest flow label: the field has 20 bits.
	IPv6MaxFlowLabel = 1<<20 - 1

	// IPv6MinMTU is the link MTU every IPv6 link offers (RFC 8200 section
	// 5): no ICMPv6 error may be larger.
	IPv6MinMTU = 1280
)

// Offsets of the IPv6 fixed header fields. Version, traffic class and flow
// label share the first 32-bit word.
const (
	IPv6VersionTCFlowOffset   = 0
	IPv6PayloadLenOffset      = 4
	IPv6NextHeaderOffset      = 6
	IPv6HopLimitOffset        = 7
	IPv6SourceAddrOffset      = 8
	IPv6DestinationAddrOffset = 24
)

// IsValid reports whether b starts with an IPv6 fixed header whose payload
// length fits in a packet of pktSize bytes, pktSize <= len(b). A jumbogram
// (payload length 0 and a hop-by-hop jumbo option) is not valid here.
func (b IPv6) IsValid(pktSize int) bool {
	if len(b) < IPv6Len || pktSize < IPv6Len || pktSize > len(b) {
		return false
	}
	return IPVersion(b) == IPv6Version && IPv6Len+b.PayloadLen() <= pktSize
}

func (b IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(b[IPv6VersionTCFlowOffset:]) >> 4)
}
func (b IPv6) FlowLabel() uint32 {
	return binary.BigEndian.Uint32(b[IPv6VersionTCFlowOffset:]) & 0xfffff
}
func (b IPv6) PayloadLen() int        { return int(binary.BigEndian.Uint16(b[IPv6PayloadLenOffset:])) }
func (b IPv6) NextHeader() uint8      { return b[IPv6NextHeaderOffset] }
func (b IPv6) HopLimit() uint8        { return b[IPv6HopLimitOffset] }
func (b IPv6) SourceAddr() netip.Addr { return netip.AddrFrom16(b.Source16()) }
func (b IPv6) DestinationAddr() netip.Addr {
	return netip.AddrFrom16(b.Destination16())
}
func (b IPv6) Source16() [16]byte {
	return [16]byte(b[IPv6SourceAddrOffset : IPv6SourceAddrOffset+16])
}
func (b IPv6) Destination16() [16]byte {
	return [16]byte(b[IPv6DestinationAddrOffset : IPv6DestinationAddrOffset+16])
}

// TotalLen is the packet length the header claims: the fixed header and
// the payload length.
func (b IPv6) TotalLen() int { return IPv6Len + b.PayloadLen() }

// Payload is the bytes after the fixed header up to the payload length.
func (b IPv6) Payload() []byte { return b[IPv6Len:b.TotalLen()] }

// PseudoHeaderSum is the running checksum of the pseudo-header of an
// upper-layer packet of length bytes and protocol proto carried in b (RFC
// 8200 section 8.1), to start its checksum with. The addresses are the
// fixed header's: with a Routing header that still has segments left, the
// final destination is another one, and the caller sums
// PseudoHeaderSumV6 with it instead.
func (b IPv6) PseudoHeaderSum(proto uint8, length int) uint32 {
	_ = b[IPv6Len-1]
	s := uint64(proto) + uint64(uint32(length))
	for o := IPv6SourceAddrOffset; o < IPv6Len; o += 8 {
		s += uint64(binary.BigEndian.Uint32(b[o:])) + uint64(binary.BigEndian.Uint32(b[o+4:]))
	}
	return fold64(s)
}

// SetHopLimit stores the hop limit.
func (b IPv6) SetHopLimit(h uint8) { b[IPv6HopLimitOffset] = h }

// DecrementHopLimit lowers the hop limit by one. The caller checks
// HopLimit() > 1 first. No checksum covers the field.
func (b IPv6) DecrementHopLimit() { b[IPv6HopLimitOffset]-- }

// SetTrafficClass stores the traffic class (DSCP and ECN), leaving the
// version and the flow label as they are.
func (b IPv6) SetTrafficClass(tc uint8) {
	b[IPv6VersionTCFlowOffset] = b[IPv6VersionTCFlowOffset]&0xf0 | tc>>4
	b[IPv6VersionTCFlowOffset+1] = tc<<4 | b[IPv6VersionTCFlowOffset+1]&0x0f
}

// SetFlowLabel stores the flow label, leaving the version and the traffic
// class as they are. A label over 20 bits is an error and b is left
// untouched.
func (b IPv6) SetFlowLabel(fl uint32) error {
	if fl > IPv6MaxFlowLabel {
		return ErrFlowLabelRange
	}
	w := binary.BigEndian.Uint32(b[IPv6VersionTCFlowOffset:])
	binary.BigEndian.PutUint32(b[IPv6VersionTCFlowOffset:], w&^IPv6MaxFlowLabel|fl)
	return nil
}

// SetPayloadLen stores the payload length: the bytes after the fixed
// header, extension headers included.
func (b IPv6) SetPayloadLen(n uint16) { binary.BigEndian.PutUint16(b[IPv6PayloadLenOffset:], n) }

// SetNextHeader stores the next header field.
func (b IPv6) SetNextHeader(nh uint8) { b[IPv6NextHeaderOffset] = nh }

// ErrFlowLabelRange is the answer to a flow label that does not fit in 20
// bits: it is refused, never truncated.
var ErrFlowLabelRange = errors.New("ipv6: flow label over 20 bits")

// IPv6Fields describes a fixed header to encode. Extension headers are the
// caller's to write after it (NextHeader names the first).
type IPv6Fields struct {
	TrafficClass uint8  // DSCP and ECN
	FlowLabel    uint32 // 20 bits; 0 for none
	PayloadLen   uint16
	NextHeader   uint8
	HopLimit     uint8
	Source       [16]byte
	Destination  [16]byte
}

// Encode writes the fixed header into b[:IPv6Len]. It refuses a b shorter
// than the header (ErrHeaderRoom) and a flow label over 20 bits
// (ErrFlowLabelRange), writing nothing.
func (b IPv6) Encode(f *IPv6Fields) error {
	if len(b) < IPv6Len {
		return ErrHeaderRoom
	}
	if f.FlowLabel > IPv6MaxFlowLabel {
		return ErrFlowLabelRange
	}
	binary.BigEndian.PutUint32(b[IPv6VersionTCFlowOffset:], IPv6Version<<28|uint32(f.TrafficClass)<<20|f.FlowLabel)
	b.SetPayloadLen(f.PayloadLen)
	b[IPv6NextHeaderOffset] = f.NextHeader
	b[IPv6HopLimitOffset] = f.HopLimit
	copy(b[IPv6SourceAddrOffset:IPv6SourceAddrOffset+16], f.Source[:])
	copy(b[IPv6DestinationAddrOffset:IPv6DestinationAddrOffset+16], f.Destination[:])
	return nil
}
