package encap

import (
	"encoding/binary"
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
// Extension headers are not parsed: NextHeader is what follows the fixed
// header. Validate once with IsValid; from then on the accessors trust the
// view and index it without further checks.
type IPv6 []byte

// IPv6 constants.
const (
	IPv6Len     = 40 // the fixed header
	IPv6Version = 6
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
func (b IPv6) PayloadLen() int   { return int(binary.BigEndian.Uint16(b[IPv6PayloadLenOffset:])) }
func (b IPv6) NextHeader() uint8 { return b[IPv6NextHeaderOffset] }
func (b IPv6) HopLimit() uint8   { return b[IPv6HopLimitOffset] }
func (b IPv6) SourceAddr() netip.Addr {
	return netip.AddrFrom16([16]byte(b[IPv6SourceAddrOffset : IPv6SourceAddrOffset+16]))
}
func (b IPv6) DestinationAddr() netip.Addr {
	return netip.AddrFrom16([16]byte(b[IPv6DestinationAddrOffset : IPv6DestinationAddrOffset+16]))
}

// TotalLen is the packet length the header claims: the fixed header and
// the payload length.
func (b IPv6) TotalLen() int { return IPv6Len + b.PayloadLen() }

// Payload is the bytes after the fixed header up to the payload length.
func (b IPv6) Payload() []byte { return b[IPv6Len:b.TotalLen()] }
