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
// Validate once with IsValid (or, to read the ports alone, check
// len(b) >= UDPLen); from then on the accessors trust the view and index
// it without further checks.
type UDP []byte

// UDPLen is the UDP header length.
const UDPLen = 8

// Offsets of the UDP header fields.
const (
	UDPSourcePortOffset      = 0
	UDPDestinationPortOffset = 2
	UDPLengthOffset          = 4
	UDPChecksumOffset        = 6
)

func (b UDP) SourcePort() uint16 { return binary.BigEndian.Uint16(b[UDPSourcePortOffset:]) }
func (b UDP) DestinationPort() uint16 {
	return binary.BigEndian.Uint16(b[UDPDestinationPortOffset:])
}
func (b UDP) Length() int      { return int(binary.BigEndian.Uint16(b[UDPLengthOffset:])) }
func (b UDP) Checksum() uint16 { return binary.BigEndian.Uint16(b[UDPChecksumOffset:]) }

// Payload is the bytes after the header to the end of the view; slice the
// view to the datagram (IPv4.Payload) for the payload alone.
func (b UDP) Payload() []byte { return b[UDPLen:] }

func (b UDP) SetLength(n uint16)   { binary.BigEndian.PutUint16(b[UDPLengthOffset:], n) }
func (b UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[UDPChecksumOffset:], c) }

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
	binary.BigEndian.PutUint16(b[UDPSourcePortOffset:], src)
	binary.BigEndian.PutUint16(b[UDPDestinationPortOffset:], dst)
	b.SetLength(length)
	b.SetChecksum(checksum)
}
