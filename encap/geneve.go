package encap

import (
	"encoding/binary"
	"errors"
)

// Geneve is a Geneve header view (RFC 8926 section 3.4):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|        Virtual Network Identifier (VNI)       |    Reserved   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Variable-Length Options                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// and each option (section 3.5):
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Option Class         |C|    Type     |R|R|R| Length  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|              Variable-Length Option Data (Length * 4)         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Validate before using any accessor but Version and OptionsLen.
type Geneve []byte

// Geneve constants.
const (
	GeneveLen        = 8
	GenevePort       = 6081
	GeneveMaxOpts    = 63 * 4                                        // 6-bit option length in 4-byte words
	GeneveOptMaxData = 31 * 4                                        // 5-bit option length in 4-byte words
	GeneveOverheadV4 = IPv4MinLen + UDPLen + GeneveLen + EthernetLen // 50, without options

	geneveFlagO        = 0x80
	geneveFlagC        = 0x40
	geneveCriticalType = 0x80
)

// Geneve errors; Validate returns exactly one.
var (
	ErrGeneveVersion  = errors.New("geneve: version not 0")
	ErrGeneveOptions  = errors.New("geneve: options run past the header or the packet")
	ErrGeneveCritical = errors.New("geneve: unknown critical option")
	ErrGeneveControl  = errors.New("geneve: control packet (O bit)")
	ErrGeneveProtocol = errors.New("geneve: protocol type is not Ethernet (0x6558)")
)

// Version is the top two bits of the first byte.
func (b Geneve) Version() uint8 { return b[0] >> 6 }

// OptionsLen is the length of the options in bytes.
func (b Geneve) OptionsLen() int { return int(b[0]&0x3f) * 4 }

// HeaderLen is the fixed header plus the options.
func (b Geneve) HeaderLen() int        { return GeneveLen + b.OptionsLen() }
func (b Geneve) Control() bool         { return b[1]&geneveFlagO != 0 }
func (b Geneve) CriticalOptions() bool { return b[1]&geneveFlagC != 0 }
func (b Geneve) Protocol() uint16      { return binary.BigEndian.Uint16(b[2:]) }
func (b Geneve) VNI() uint32           { return binary.BigEndian.Uint32(b[4:]) >> 8 }

// Validate checks a received header, in this order: room for the fixed
// header, version 0, options that tile the options area exactly and lie
// inside b, no O bit (control packets never reach a pod), protocol
// 0x6558, and no critical option that isKnown (nil: none are) does not
// know. Unknown non-critical options are allowed: receivers skip them.
func (b Geneve) Validate(isKnown func(class uint16, typ uint8) bool) error {
	if len(b) < GeneveLen {
		return ErrTruncated
	}
	if b.Version() != 0 {
		return ErrGeneveVersion
	}
	end := b.HeaderLen()
	if end > len(b) {
		return ErrGeneveOptions
	}
	for off := GeneveLen; off < end; {
		if off+4 > end {
			return ErrGeneveOptions
		}
		off += 4 + int(b[off+3]&0x1f)*4
		if off > end {
			return ErrGeneveOptions
		}
	}
	if b.Control() {
		return ErrGeneveControl
	}
	if b.Protocol() != EtherTypeTrans {
		return ErrGeneveProtocol
	}
	for it := b.Options(); ; {
		o, ok := it.Next()
		if !ok {
			break
		}
		if o.Critical && (isKnown == nil || !isKnown(o.Class, o.Type)) {
			return ErrGeneveCritical
		}
	}
	return nil
}

// GeneveOption is one option TLV. Type holds the seven low bits; the
// critical bit is Critical. Data is a view into the packet on receive.
type GeneveOption struct {
	Class    uint16
	Type     uint8
	Critical bool
	Data     []byte // a multiple of 4 bytes, at most 124
}

// GeneveOptions iterates the options of a validated header. It is a value
// made afresh for every header, so nothing of one packet's options can
// leak into the next, and it never allocates.
type GeneveOptions struct {
	b   []byte
	off int
}

// Options returns an iterator over the options.
func (b Geneve) Options() GeneveOptions {
	return GeneveOptions{b: b[:b.HeaderLen()], off: GeneveLen}
}

// Next returns the next option, or false at the end.
func (it *GeneveOptions) Next() (GeneveOption, bool) {
	if it.off+4 > len(it.b) {
		return GeneveOption{}, false
	}
	h := it.b[it.off:]
	n := int(h[3]&0x1f) * 4
	if it.off+4+n > len(it.b) {
		return GeneveOption{}, false
	}
	o := GeneveOption{
		Class:    binary.BigEndian.Uint16(h),
		Type:     h[2] &^ geneveCriticalType,
		Critical: h[2]&geneveCriticalType != 0,
		Data:     h[4 : 4+n],
	}
	it.off += 4 + n
	return o, true
}

// GeneveOptionsLen is the encoded length of opts; an option whose data is
// not a multiple of 4 bytes or longer than 124, or a total beyond 252, is
// an error.
func GeneveOptionsLen(opts []GeneveOption) (int, error) {
	n := 0
	for _, o := range opts {
		if len(o.Data)%4 != 0 || len(o.Data) > GeneveOptMaxData || o.Type&geneveCriticalType != 0 {
			return 0, ErrGeneveOptions
		}
		n += 4 + len(o.Data)
	}
	if n > GeneveMaxOpts {
		return 0, ErrGeneveOptions
	}
	return n, nil
}

// GeneveFields describes a header to encode.
type GeneveFields struct {
	VNI      uint32
	Control  bool
	Protocol uint16 // 0 means 0x6558, transparent Ethernet
	Options  []GeneveOption
}

// Encode writes the header and its options into b and returns the length
// written. The C bit is set when any option is critical. A VNI beyond 24
// bits is an error, never truncated.
func (b Geneve) Encode(f *GeneveFields) (int, error) {
	if f.VNI > MaxVNI {
		return 0, ErrVNIRange
	}
	ol, err := GeneveOptionsLen(f.Options)
	if err != nil {
		return 0, err
	}
	n := GeneveLen + ol
	if len(b) < n {
		return 0, ErrTruncated
	}
	b[0] = byte(ol / 4)
	b[1] = 0
	if f.Control {
		b[1] |= geneveFlagO
	}
	proto := f.Protocol
	if proto == 0 {
		proto = EtherTypeTrans
	}
	binary.BigEndian.PutUint16(b[2:], proto)
	binary.BigEndian.PutUint32(b[4:], f.VNI<<8)
	off := GeneveLen
	for _, o := range f.Options {
		binary.BigEndian.PutUint16(b[off:], o.Class)
		b[off+2] = o.Type
		if o.Critical {
			b[off+2] |= geneveCriticalType
			b[1] |= geneveFlagC
		}
		b[off+3] = byte(len(o.Data) / 4)
		copy(b[off+4:], o.Data)
		off += 4 + len(o.Data)
	}
	return n, nil
}

// EncapGeneveV4 writes Ethernet, Geneve (with opts), UDP and IPv4 headers
// in front of the inner IPv4 packet buf[start:start+n] and returns where
// the outer packet starts. Like EncapVXLANv4 it copies nothing.
func EncapGeneveV4(buf []byte, start, n int, t *TunnelV4, vni uint32, opts []GeneveOption, srcPort uint16) (int, error) {
	ol, err := GeneveOptionsLen(opts)
	if err != nil {
		return 0, err
	}
	hl := GeneveLen + ol
	outer := IPv4MinLen + UDPLen + hl
	if start < outer+EthernetLen {
		return 0, ErrHeaderRoom
	}
	if vni > MaxVNI {
		return 0, ErrVNIRange
	}
	fs := start - EthernetLen
	total := n + EthernetLen + outer
	if total > 0xffff {
		return 0, ErrBadLength
	}
	Ethernet(buf[fs:start]).Encode(t.DstMAC, t.SrcMAC, EtherTypeIPv4)
	o := fs - outer
	g := Geneve(buf[o+IPv4MinLen+UDPLen : fs])
	if len(opts) == 0 {
		// The common case without a loop or a fields struct.
		g[0], g[1] = 0, 0
		binary.BigEndian.PutUint16(g[2:], EtherTypeTrans)
		binary.BigEndian.PutUint32(g[4:], vni<<8)
	} else if _, err := g.Encode(&GeneveFields{VNI: vni, Options: opts}); err != nil {
		return 0, err
	}
	UDP(buf[o+IPv4MinLen:]).Encode(srcPort, t.DstPort, uint16(total-IPv4MinLen), 0)
	IPv4(buf[o:]).Encode(&IPv4Fields{
		TotalLen:    uint16(total),
		TTL:         OuterTTL,
		Protocol:    ProtoUDP,
		Source:      t.Src,
		Destination: t.Dst,
	})
	return o, nil
}
