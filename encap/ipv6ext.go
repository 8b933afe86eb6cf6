package encap

import "encoding/binary"

// Next header values (IANA "Assigned Internet Protocol Numbers") that an
// IPv6 packet may carry besides the transports of ipv4.go. The first group
// are the extension headers UpperLayer walks (RFC 8200 section 4, RFC 4302
// for AH); ESP and No Next Header end a walk.
const (
	ProtoHopByHop   = 0
	ProtoIPv6Route  = 43
	ProtoIPv6Frag   = 44
	ProtoAH         = 51
	ProtoIPv6Opts   = 60
	ProtoESP        = 50
	ProtoICMPv6     = 58
	ProtoIPv6NoNext = 59
)

// IPv6MaxExtHeaders bounds the extension headers UpperLayer walks: a packet
// with more is refused (ErrIPv6ExtTooMany). Real traffic carries two or
// three at most; RFC 7045 lets a forwarding node limit what it inspects,
// and a bound keeps one packet's cost small whatever the sender builds.
// ErrIPv6ExtTooMany's text names the value.
const IPv6MaxExtHeaders = 8

// Lengths and offsets inside the extension headers UpperLayer reads. Every
// one starts with the next header byte.
const (
	ipv6ExtNextHeaderOffset = 0
	ipv6ExtLenOffset        = 1 // in 8-byte units past the first 8 (AH: 4-byte units past the first 8)
	ipv6ExtMinLen           = 8
	ipv6FragOffsetOffset    = 2 // fragment offset (13 bits), reserved (2), M (1)
	ipv6FragLen             = 8
	ipv6FragOffsetMask      = 0xfff8 // the offset in 8-byte units, already times 8 in place
	ipv6FragMore            = 0x0001
	ipv6AHMinLen            = 12 // next header, length, reserved, SPI, sequence number
)

// IPv6Upper is where UpperLayer found the upper-layer header of a packet.
type IPv6Upper struct {
	// Proto is the next header value that ended the walk: a transport
	// (ProtoTCP, ProtoUDP, ProtoICMPv6, ...), ProtoESP, ProtoIPv6NoNext,
	// anything else UpperLayer does not know as an extension header, or,
	// for a fragment other than the first, ProtoIPv6Frag: no header of the
	// upper layer is in such a packet.
	Proto uint8
	// Offset is where the header of Proto starts, from the start of the
	// IPv6 header, at most the packet's total length (a header with no
	// bytes after it: the caller validates the upper-layer header). For a
	// fragment other than the first it is where the fragment's data starts.
	Offset int
	// Fragment reports a Fragment header with a non-zero offset or the M
	// flag set: the packet is part of a datagram. An atomic fragment
	// (offset 0, M clear; RFC 6946) is a whole datagram and not reported.
	Fragment bool
	// FragmentOffset is the fragment's offset in bytes when Fragment is
	// set.
	FragmentOffset int
}

// FirstFragment reports whether the packet is the first fragment of a
// datagram: the one that holds the upper-layer header.
func (u IPv6Upper) FirstFragment() bool { return u.Fragment && u.FragmentOffset == 0 }

// IPv6ExtError says why UpperLayer refused a packet. There are few values
// and they never change, so a caller can count each as a drop reason.
type IPv6ExtError uint8

// The reasons UpperLayer refuses a packet.
const (
	// ErrIPv6ExtTooMany: more than IPv6MaxExtHeaders extension headers.
	ErrIPv6ExtTooMany IPv6ExtError = iota + 1
	// ErrIPv6ExtTruncated: a header runs past the packet's payload length
	// (for a first fragment, RFC 7112 asks for the whole chain in it).
	ErrIPv6ExtTruncated
	// ErrIPv6ExtMalformed: a Hop-by-Hop Options header not right after the
	// fixed header (RFC 8200 section 4.1), a second Fragment header, or an
	// AH length that is too short or not a multiple of 8 (RFC 4302).
	ErrIPv6ExtMalformed
)

func (e IPv6ExtError) Error() string {
	switch e {
	case ErrIPv6ExtTooMany:
		return "ipv6 extension headers: more than 8"
	case ErrIPv6ExtTruncated:
		return "ipv6 extension headers: past the end of the packet"
	case ErrIPv6ExtMalformed:
		return "ipv6 extension headers: malformed chain"
	}
	return "ipv6 extension headers: unknown error"
}

// UpperLayer walks the extension headers of b, a valid view (IsValid), to
// its upper-layer header, within the payload length and through at most
// IPv6MaxExtHeaders headers. It knows Hop-by-Hop Options, Routing,
// Destination Options, Fragment and AH; ESP (whose next header is
// encrypted), No Next Header and every other value end the walk. Options
// are skipped, not interpreted: a forwarding node leaves them to the
// destination (RFC 8200 section 4). A fragment other than the first ends
// the walk at its Fragment header, as nothing in it can be parsed.
//
// The error, if any, is an IPv6ExtError. UpperLayer neither allocates nor
// modifies b; on a packet without extension headers it reads one byte.
func (b IPv6) UpperLayer() (IPv6Upper, error) {
	if len(b) < IPv6Len {
		return IPv6Upper{}, ErrIPv6ExtTruncated
	}
	end := b.TotalLen()
	if end > len(b) {
		return IPv6Upper{}, ErrIPv6ExtTruncated
	}
	var u IPv6Upper
	nh, off := b[IPv6NextHeaderOffset], IPv6Len
	fragSeen := false
	for n := 0; ; n++ {
		switch nh {
		case ProtoHopByHop, ProtoIPv6Route, ProtoIPv6Opts, ProtoIPv6Frag, ProtoAH:
		default:
			u.Proto, u.Offset = nh, off
			return u, nil
		}
		if n == IPv6MaxExtHeaders {
			return IPv6Upper{}, ErrIPv6ExtTooMany
		}
		if end-off < ipv6ExtMinLen {
			return IPv6Upper{}, ErrIPv6ExtTruncated
		}
		h := b[off:end]
		hl := ipv6FragLen
		switch nh {
		case ProtoHopByHop:
			if off != IPv6Len {
				return IPv6Upper{}, ErrIPv6ExtMalformed
			}
			hl = (int(h[ipv6ExtLenOffset]) + 1) * 8
		case ProtoIPv6Route, ProtoIPv6Opts:
			hl = (int(h[ipv6ExtLenOffset]) + 1) * 8
		case ProtoAH:
			hl = (int(h[ipv6ExtLenOffset]) + 2) * 4
			if hl < ipv6AHMinLen || hl%8 != 0 {
				return IPv6Upper{}, ErrIPv6ExtMalformed
			}
		case ProtoIPv6Frag:
			// A fragment is never fragmented again (RFC 8200 section
			// 4.5: only the source fragments), so a second Fragment
			// header is a crafted packet, not a real one.
			if fragSeen {
				return IPv6Upper{}, ErrIPv6ExtMalformed
			}
			fragSeen = true
			fo := binary.BigEndian.Uint16(h[ipv6FragOffsetOffset:])
			if fo&(ipv6FragOffsetMask|ipv6FragMore) != 0 {
				u.Fragment, u.FragmentOffset = true, int(fo&ipv6FragOffsetMask)
			}
			if u.FragmentOffset != 0 {
				u.Proto, u.Offset = ProtoIPv6Frag, off+ipv6FragLen
				return u, nil
			}
		}
		if hl > len(h) {
			return IPv6Upper{}, ErrIPv6ExtTruncated
		}
		nh = h[ipv6ExtNextHeaderOffset]
		off += hl
	}
}
