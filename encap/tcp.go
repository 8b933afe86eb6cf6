package encap

import (
	"encoding/binary"
	"errors"
)

// TCP is a TCP header view (RFC 9293, section 3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Sequence Number                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Acknowledgment Number                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Data |       |C|E|U|A|P|R|S|F|                               |
//	| Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//	|       |       |R|E|G|K|H|T|N|N|                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Checksum            |         Urgent Pointer        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options (data offset > 5)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                             data                              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The view is the segment: the header and, to the end of the slice, the
// payload, so slice it to the IP payload (IPv4.Payload). Validate once with
// IsValid; from then on the accessors and setters trust the view and index
// it without further checks (on a view that was never validated they may
// panic). No setter updates the checksum.
type TCP []byte

// TCP header lengths: the fixed part, and the most a data offset of 15
// words describes.
const (
	TCPMinLen = 20
	TCPMaxLen = 60
)

// Offsets of the TCP header fields.
const (
	TCPSourcePortOffset      = 0
	TCPDestinationPortOffset = 2
	TCPSeqNumOffset          = 4
	TCPAckNumOffset          = 8
	TCPDataOffsetOffset      = 12 // data offset in the high nibble
	TCPFlagsOffset           = 13
	TCPWindowOffset          = 14
	TCPChecksumOffset        = 16
	TCPUrgentPtrOffset       = 18
)

// TCPFlags are the control bits of the flags byte.
type TCPFlags uint8

// The control bits (RFC 9293; CWR and ECE from RFC 3168).
const (
	TCPFlagFIN TCPFlags = 1 << iota
	TCPFlagSYN
	TCPFlagRST
	TCPFlagPSH
	TCPFlagACK
	TCPFlagURG
	TCPFlagECE
	TCPFlagCWR
)

// IsValid reports whether b starts with a well-formed TCP header in a
// segment of size bytes, size <= len(b): the fixed header fits, and the
// data offset is at least five words and stays inside the segment.
func (b TCP) IsValid(size int) bool {
	if len(b) < TCPMinLen || size < TCPMinLen || size > len(b) {
		return false
	}
	hl := b.HeaderLen()
	return hl >= TCPMinLen && hl <= size
}

func (b TCP) SourcePort() uint16 { return binary.BigEndian.Uint16(b[TCPSourcePortOffset:]) }
func (b TCP) DestinationPort() uint16 {
	return binary.BigEndian.Uint16(b[TCPDestinationPortOffset:])
}
func (b TCP) SequenceNumber() uint32 { return binary.BigEndian.Uint32(b[TCPSeqNumOffset:]) }
func (b TCP) AckNumber() uint32      { return binary.BigEndian.Uint32(b[TCPAckNumOffset:]) }

// HeaderLen is the header length in bytes, options included: the data
// offset field times four.
func (b TCP) HeaderLen() int        { return int(b[TCPDataOffsetOffset]>>4) * 4 }
func (b TCP) Flags() TCPFlags       { return TCPFlags(b[TCPFlagsOffset]) }
func (b TCP) Window() uint16        { return binary.BigEndian.Uint16(b[TCPWindowOffset:]) }
func (b TCP) Checksum() uint16      { return binary.BigEndian.Uint16(b[TCPChecksumOffset:]) }
func (b TCP) UrgentPointer() uint16 { return binary.BigEndian.Uint16(b[TCPUrgentPtrOffset:]) }

// Options is the options part of the header, empty without options.
func (b TCP) Options() []byte { return b[TCPMinLen:b.HeaderLen()] }

// Payload is the bytes after the header to the end of the view.
func (b TCP) Payload() []byte { return b[b.HeaderLen():] }

func (b TCP) SetSequenceNumber(n uint32) { binary.BigEndian.PutUint32(b[TCPSeqNumOffset:], n) }
func (b TCP) SetFlags(f TCPFlags)        { b[TCPFlagsOffset] = uint8(f) }
func (b TCP) SetChecksum(c uint16)       { binary.BigEndian.PutUint16(b[TCPChecksumOffset:], c) }

// TCPFields describes a header to encode.
type TCPFields struct {
	SrcPort, DstPort uint16
	SeqNum, AckNum   uint32
	// HeaderLen is the header length in bytes, a multiple of four from
	// TCPMinLen to TCPMaxLen; the options are the caller's to write after
	// the fixed part. Zero means TCPMinLen.
	HeaderLen     int
	Flags         TCPFlags
	Window        uint16
	Checksum      uint16
	UrgentPointer uint16
}

// ErrTCPHeaderLen is Encode's answer to a header length the data offset
// cannot express.
var ErrTCPHeaderLen = errors.New("tcp: header length not a multiple of 4 from 20 to 60")

// Encode writes the fixed part of the header into b, which must hold
// TCPMinLen bytes. It does not compute the checksum: store f.Checksum, or
// fill it in with SetChecksum once options and payload are in place.
func (b TCP) Encode(f *TCPFields) error {
	hl := f.HeaderLen
	if hl == 0 {
		hl = TCPMinLen
	}
	if hl < TCPMinLen || hl > TCPMaxLen || hl%4 != 0 {
		return ErrTCPHeaderLen
	}
	binary.BigEndian.PutUint16(b[TCPSourcePortOffset:], f.SrcPort)
	binary.BigEndian.PutUint16(b[TCPDestinationPortOffset:], f.DstPort)
	b.SetSequenceNumber(f.SeqNum)
	binary.BigEndian.PutUint32(b[TCPAckNumOffset:], f.AckNum)
	b[TCPDataOffsetOffset] = uint8(hl/4) << 4
	b.SetFlags(f.Flags)
	binary.BigEndian.PutUint16(b[TCPWindowOffset:], f.Window)
	b.SetChecksum(f.Checksum)
	binary.BigEndian.PutUint16(b[TCPUrgentPtrOffset:], f.UrgentPointer)
	return nil
}
