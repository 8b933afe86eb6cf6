package encap

import (
	"encoding/binary"
	"errors"
)

// VXLAN is a VXLAN header view (RFC 7348 section 5):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                VXLAN Network Identifier (VNI) |   Reserved    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The header is followed by the inner Ethernet frame.
type VXLAN []byte

// VXLAN constants.
const (
	VXLANLen     = 8
	VXLANPort    = 8472 // the Linux kernel's and Cilium's default, not IANA's 4789
	VXLANFlagI   = 0x08000000
	MaxVNI       = 1<<24 - 1
	vxlanResMask = ^uint32(VXLANFlagI) // every bit of the first word but I
)

// Errors from VXLAN parsing and encoding.
var (
	ErrTruncated   = errors.New("truncated header")
	ErrVXLANNoI    = errors.New("vxlan: I flag clear")
	ErrVXLANRsvd   = errors.New("vxlan: reserved bits set")
	ErrVNIRange    = errors.New("vni out of 24-bit range")
	ErrBadLength   = errors.New("length field disagrees with packet")
	ErrBadVersion  = errors.New("bad version")
	ErrHeaderRoom  = errors.New("not enough headroom")
	ErrUnsupported = errors.New("unsupported protocol")
)

// ReservedBits returns the first word of the header with the I flag masked
// out: the reserved flag bits and the 24 reserved bits after them, in wire
// order. A tolerance mask in the same layout selects bits a receiver ignores
// (extensions such as VXLAN-GBP live there).
func (b VXLAN) ReservedBits() uint32 {
	return binary.BigEndian.Uint32(b[0:]) & vxlanResMask
}

// Validate checks the header the way the Linux kernel does by default: the
// I flag must be set and no reserved bit may be set, except the bits of the
// first word named in tolerate. The reserved byte after the VNI is always
// checked: no extension defines it.
func (b VXLAN) Validate(tolerate uint32) error {
	if len(b) < VXLANLen {
		return ErrTruncated
	}
	if binary.BigEndian.Uint32(b[0:])&VXLANFlagI == 0 {
		return ErrVXLANNoI
	}
	if b.ReservedBits()&^tolerate != 0 || b[7] != 0 {
		return ErrVXLANRsvd
	}
	return nil
}

// VNI returns the 24-bit network identifier.
func (b VXLAN) VNI() uint32 { return binary.BigEndian.Uint32(b[4:]) >> 8 }

// Encode writes a header with the I flag and vni. A VNI that does not fit in
// 24 bits is an error, never truncated.
func (b VXLAN) Encode(vni uint32) error {
	if vni > MaxVNI {
		return ErrVNIRange
	}
	binary.BigEndian.PutUint32(b[0:], VXLANFlagI)
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return nil
}
