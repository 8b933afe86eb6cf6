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
//	|                                                               |
//	~                    Variable-Length Options                    ~
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Opt Len counts 4-byte words of options after the fixed 8 bytes. The
// options area holds a sequence of TLVs (section 3.5), each starting on a
// 4-byte boundary:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Option Class         |C|    Type     |R|R|R| Length  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	~             Variable-Length Option Data (Length * 4)          ~
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Version, OptionsLen and HeaderLen need only len(b) >= 1 and Options is
// safe on any b; the other accessors trust the view, so call Validate
// first.
type Geneve []byte

// Geneve constants.
const (
	GeneveLen        = 8
	GenevePort       = 6081
	GeneveOptLen     = 4                                             // option header: class, type, length
	GeneveMaxOpts    = 63 * 4                                        // 6-bit Opt Len in 4-byte words: 252
	GeneveMaxOptData = 31 * 4                                        // 5-bit option Length in 4-byte words: 124
	GeneveMaxLen     = GeneveLen + GeneveMaxOpts                     // 260
	GeneveOverheadV4 = IPv4MinLen + UDPLen + GeneveLen + EthernetLen // 50, without options

	geneveVersionShift = 6    // Ver is the top two bits of byte 0, not one
	geneveOptLenMask   = 0x3f // the six bits under Ver
	geneveFlagO        = 0x80 // byte 1
	geneveFlagC        = 0x40 // byte 1
	geneveTypeCritical = 0x80 // byte 2 of an option
	geneveOptWordsMask = 0x1f // byte 3 of an option; the top three bits are reserved
)

// Errors from Geneve parsing and encoding. Validate returns exactly one of
// ErrTruncated and the first five.
var (
	ErrGeneveVersion  = errors.New("geneve: version not 0")
	ErrGeneveOptions  = errors.New("geneve: options run past the header or the packet")
	ErrGeneveCritical = errors.New("geneve: unknown critical option")
	ErrGeneveControl  = errors.New("geneve: control packet (O bit)")
	ErrGeneveProtocol = errors.New("geneve: protocol type is not Ethernet (0x6558)")

	ErrGeneveOptionData = errors.New("geneve: option data not a multiple of 4 bytes or longer than 124")
	ErrGeneveOptionType = errors.New("geneve: option type wider than 7 bits (the critical bit is Critical)")
	ErrGeneveOptionsLen = errors.New("geneve: options longer than 252 bytes")
)

// Version is the 2-bit version; only 0 is defined.
func (b Geneve) Version() uint8 { return b[0] >> geneveVersionShift }

// OptionsLen is the length of the options area in bytes.
func (b Geneve) OptionsLen() int { return int(b[0]&geneveOptLenMask) * 4 }

// HeaderLen is the fixed header plus the options: where the payload starts.
func (b Geneve) HeaderLen() int { return GeneveLen + b.OptionsLen() }

// Control reports the O bit: the payload is a control message between
// tunnel endpoints, never traffic to forward.
func (b Geneve) Control() bool { return b[1]&geneveFlagO != 0 }

// Critical reports the C bit: the sender says at least one option has its
// critical bit set. It only matters to receivers that do not parse options;
// Validate parses them and judges each option by its own bit.
func (b Geneve) Critical() bool { return b[1]&geneveFlagC != 0 }

// Protocol is the EtherType of the payload.
func (b Geneve) Protocol() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// VNI is the 24-bit virtual network identifier.
func (b Geneve) VNI() uint32 { return binary.BigEndian.Uint32(b[4:]) >> 8 }

// Validate checks a received header, in this order, and returns the first
// failure: room for the fixed header (ErrTruncated); version 0
// (ErrGeneveVersion: the layout of other versions is unknown); options that
// lie inside b and tile the options area exactly, the last one ending at
// HeaderLen (ErrGeneveOptions); no O bit (ErrGeneveControl: control
// messages are never forwarded to a pod); protocol 0x6558
// (ErrGeneveProtocol: the dataplane carries Ethernet only); and no option
// with the critical bit that isKnown does not know (ErrGeneveCritical;
// a nil isKnown knows none). RFC 8926 requires dropping a packet with an
// unrecognised critical option whatever the C bit says, and lets a
// receiver skip unknown non-critical options, which pass. Reserved bits are
// ignored, as the RFC asks of receivers.
//
// isKnown is only called once every other check has passed, and only for
// critical options.
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
	// off and end are both 8 plus a multiple of 4, so whenever off < end a
	// whole option header lies inside the area: only an option's data can
	// run past its end. The arithmetic is in int: at most 8+252+4+124.
	critical := false
	off := GeneveLen
	for off < end {
		critical = critical || b[off+2]&geneveTypeCritical != 0
		off += GeneveOptLen + int(b[off+3]&geneveOptWordsMask)*4
	}
	if off != end {
		return ErrGeneveOptions
	}
	if b.Control() {
		return ErrGeneveControl
	}
	if b.Protocol() != EtherTypeTrans {
		return ErrGeneveProtocol
	}
	if critical {
		for it := b.Options(); ; {
			o, ok := it.Next()
			if !ok {
				break
			}
			if o.Critical && (isKnown == nil || !isKnown(o.Class, o.Type)) {
				return ErrGeneveCritical
			}
		}
	}
	return nil
}

// GeneveOption is one option TLV. Type is the low seven bits of the type
// byte; its top bit is Critical. On receive Data is a view into the packet
// (capacity capped at its length, so appending to it copies instead of
// overwriting the packet); on send it is copied into the header.
type GeneveOption struct {
	Class    uint16
	Type     uint8
	Critical bool
	Data     []byte // a multiple of 4 bytes, at most 124
}

// GeneveOptions iterates over the options of a header. It is a value
// built afresh by Options for every header and holds nothing but a view of
// that header, so the options of one packet cannot show up while walking
// the next, and iterating never allocates.
type GeneveOptions struct {
	area []byte // the options area, capacity capped at its end
	off  int
}

// Options returns an iterator over the options. On a validated header it
// yields every option; on any other input it stops at the first option that
// does not fit, and never reads past HeaderLen or the end of b.
func (b Geneve) Options() GeneveOptions {
	if len(b) < GeneveLen {
		return GeneveOptions{}
	}
	end := min(b.HeaderLen(), len(b))
	return GeneveOptions{area: b[GeneveLen:end:end]}
}

// Next returns the next option, or false at the end.
func (it *GeneveOptions) Next() (GeneveOption, bool) {
	rest := it.area[it.off:]
	if len(rest) < GeneveOptLen {
		return GeneveOption{}, false
	}
	n := GeneveOptLen + int(rest[3]&geneveOptWordsMask)*4
	if n > len(rest) {
		return GeneveOption{}, false
	}
	it.off += n
	return GeneveOption{
		Class:    binary.BigEndian.Uint16(rest),
		Type:     rest[2] &^ geneveTypeCritical,
		Critical: rest[2]&geneveTypeCritical != 0,
		Data:     rest[GeneveOptLen:n:n],
	}, true
}

// GeneveOptionsLen is the encoded length of opts in bytes. Option data
// that is not a multiple of 4 bytes or longer than 124
// (ErrGeneveOptionData), a Type over 7 bits (ErrGeneveOptionType) or a total
// beyond 252 bytes (ErrGeneveOptionsLen) cannot be encoded.
func GeneveOptionsLen(opts []GeneveOption) (int, error) {
	n := 0
	for i := range opts {
		o := &opts[i]
		if len(o.Data)%4 != 0 || len(o.Data) > GeneveMaxOptData {
			return 0, ErrGeneveOptionData
		}
		if o.Type&geneveTypeCritical != 0 {
			// Taking the top bit as critical would be a guess either way.
			return 0, ErrGeneveOptionType
		}
		n += GeneveOptLen + len(o.Data)
	}
	if n > GeneveMaxOpts {
		return 0, ErrGeneveOptionsLen
	}
	return n, nil
}

// GeneveFields describes a header to encode.
type GeneveFields struct {
	VNI      uint32
	Control  bool   // O bit
	Critical bool   // C bit; also set whenever an option is critical
	Protocol uint16 // 0 means 0x6558, transparent Ethernet
	Options  []GeneveOption
}

// Encode writes the header and its options into b and returns the number
// of bytes written. Reserved bits are written as zero. A VNI beyond 24 bits
// is an error (ErrVNIRange), never truncated, as are options
// GeneveOptionsLen refuses and a b too short (ErrTruncated); on error
// nothing is written.
func (b Geneve) Encode(f *GeneveFields) (int, error) {
	if f.VNI > MaxVNI {
		return 0, ErrVNIRange
	}
	ol, err := GeneveOptionsLen(f.Options)
	if err != nil {
		return 0, err
	}
	if len(b) < GeneveLen+ol {
		return 0, ErrTruncated
	}
	proto := f.Protocol
	if proto == 0 {
		proto = EtherTypeTrans
	}
	return b.encode(f.VNI, f.Control, f.Critical, proto, f.Options, ol), nil
}

// encode writes a header whose arguments have been checked: ol is
// GeneveOptionsLen(opts) and b holds GeneveLen+ol bytes.
func (b Geneve) encode(vni uint32, control, critical bool, proto uint16, opts []GeneveOption, ol int) int {
	var flags byte
	if control {
		flags |= geneveFlagO
	}
	if critical {
		flags |= geneveFlagC
	}
	off := GeneveLen
	for i := range opts {
		o := &opts[i]
		binary.BigEndian.PutUint16(b[off:], o.Class)
		b[off+2] = o.Type
		if o.Critical {
			b[off+2] |= geneveTypeCritical
			flags |= geneveFlagC
		}
		b[off+3] = byte(len(o.Data) / 4)
		copy(b[off+GeneveOptLen:], o.Data)
		off += GeneveOptLen + len(o.Data)
	}
	b[0] = byte(ol / 4) // version 0
	b[1] = flags
	binary.BigEndian.PutUint16(b[2:], proto)
	binary.BigEndian.PutUint32(b[4:], vni<<8) // the reserved byte too
	return GeneveLen + ol
}
