package encap

import (
	"encoding/binary"
	"fmt"
	"net"
)

// Ethernet is an Ethernet II header view:
//
//	 0                   1                   2                   3
//	+-------------------------------------------------------------+
//	|        Destination MAC (6)        |      Source MAC (6)     |
//	+-----------------------------------+-------------------------+
//	|  EtherType (2) |
//	+----------------+
//
// Accessors trust the view: check len(b) >= EthernetLen first.
type Ethernet []byte

// Lengths and EtherTypes used by the dataplane.
const (
	EthernetLen    = 14
	EtherTypeIPv4  = 0x0800
	EtherTypeARP   = 0x0806
	EtherTypeVLAN  = 0x8100
	EtherTypeQinQ  = 0x88a8
	EtherTypeIPv6  = 0x86dd
	EtherTypeTrans = 0x6558 // transparent Ethernet bridging (Geneve payload)
)

// Offsets of the Ethernet header fields.
const (
	EthernetDestinationOffset = 0
	EthernetSourceOffset      = 6
	EthernetTypeOffset        = 12
)

// MAC is a 48-bit hardware address held by value, so it can sit in packet
// state without allocating.
type MAC [6]byte

func (m MAC) String() string {
	const hexDigits = "0123456789abcdef"
	var b [17]byte
	for i, v := range m {
		if i > 0 {
			b[i*3-1] = ':'
		}
		b[i*3] = hexDigits[v>>4]
		b[i*3+1] = hexDigits[v&0xf]
	}
	return string(b[:])
}

// IsUnicast reports whether m is a unicast address (group bit clear) and not
// all zeros.
func (m MAC) IsUnicast() bool { return m[0]&1 == 0 && m != MAC{} }

func (b Ethernet) Destination() MAC {
	return MAC(b[EthernetDestinationOffset : EthernetDestinationOffset+6])
}
func (b Ethernet) Source() MAC { return MAC(b[EthernetSourceOffset : EthernetSourceOffset+6]) }
func (b Ethernet) EtherType() uint16 {
	return binary.BigEndian.Uint16(b[EthernetTypeOffset:])
}

// Encode writes the header.
func (b Ethernet) Encode(dst, src MAC, etherType uint16) {
	copy(b[EthernetDestinationOffset:EthernetDestinationOffset+6], dst[:])
	copy(b[EthernetSourceOffset:EthernetSourceOffset+6], src[:])
	binary.BigEndian.PutUint16(b[EthernetTypeOffset:], etherType)
}

// MarshalText writes the usual colon form, so MACs read well in JSON.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses the colon form.
func (m *MAC) UnmarshalText(b []byte) error {
	hw, err := net.ParseMAC(string(b))
	if err != nil || len(hw) != 6 {
		return fmt.Errorf("mac %q: not a 48-bit address", b)
	}
	copy(m[:], hw)
	return nil
}
