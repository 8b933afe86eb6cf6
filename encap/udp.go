package encap

import "encoding/binary"

// UDP is a UDP header view (RFC 768):
//
//	 0      7 8     15 16    23 24    31
//	+--------+--------+--------+--------+
//	|   Source Port   | Destination Port|
//	+--------+--------+--------+--------+
//	|     Length      |    Checksum     |
//	+--------+--------+--------+--------+
//
// Check len(b) >= UDPLen before using the accessors.
type UDP []byte

// UDPLen is the UDP header length.
const UDPLen = 8

func (b UDP) SourcePort() uint16      { return binary.BigEndian.Uint16(b[0:]) }
func (b UDP) DestinationPort() uint16 { return binary.BigEndian.Uint16(b[2:]) }
func (b UDP) Length() int             { return int(binary.BigEndian.Uint16(b[4:])) }
func (b UDP) Checksum() uint16        { return binary.BigEndian.Uint16(b[6:]) }

// IsValid reports whether the header's length field is consistent with the
// size of the datagram that holds it.
func (b UDP) IsValid(size int) bool {
	if len(b) < UDPLen || size < UDPLen || size > len(b) {
		return false
	}
	l := b.Length()
	return l >= UDPLen && l <= size
}

// Encode writes the header. A zero checksum means "none", which RFC 768
// allows over IPv4 and RFC 7348 recommends for VXLAN senders.
func (b UDP) Encode(src, dst uint16, length uint16, checksum uint16) {
	binary.BigEndian.PutUint16(b[0:], src)
	binary.BigEndian.PutUint16(b[2:], dst)
	binary.BigEndian.PutUint16(b[4:], length)
	binary.BigEndian.PutUint16(b[6:], checksum)
}
