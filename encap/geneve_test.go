package encap

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func init() {
	// gopacket v1.1.19 already maps IANA's 6081 to Geneve; saying so again
	// keeps these tests independent of that default.
	layers.RegisterUDPPortLayerType(GenevePort, layers.LayerTypeGeneve)
}

// geneveTwoOptsFields is a Geneve header with two options written out by
// hand from RFC 8926 sections 3.4 and 3.5, one wire field per row. Option 1
// is critical and known to the tests (class 0x0102, type 3); option 2 is
// neither critical nor known.
var geneveTwoOptsFields = []struct{ hex, field string }{
	{"05", "Ver 0 in the top two bits, Opt Len 5 words (20 bytes)"},
	{"40", "O clear, C set (option 1 is critical), reserved bits 0"},
	{"6558", "Protocol Type: transparent Ethernet bridging"},
	{"0003e8", "VNI 1000"},
	{"00", "reserved byte"},
	{"0102", "option 1 class"},
	{"83", "option 1 critical bit and type 3"},
	{"01", "option 1 reserved bits 0, length 1 word"},
	{"deadbeef", "option 1 data"},
	{"ffff", "option 2 class"},
	{"7f", "option 2 type 0x7f, critical bit clear"},
	{"02", "option 2 reserved bits 0, length 2 words"},
	{"0011223344556677", "option 2 data"},
}

var geneveTwoOpts = func() string {
	var s strings.Builder
	for _, f := range geneveTwoOptsFields {
		s.WriteString(f.hex)
	}
	return s.String()
}()

var geneveTwoOptsList = []GeneveOption{
	{Class: 0x0102, Type: 3, Critical: true, Data: []byte{0xde, 0xad, 0xbe, 0xef}},
	{Class: 0xffff, Type: 0x7f, Data: []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77}},
}

// geneveKnown knows option 1 of the fixture and nothing else.
func geneveKnown(class uint16, typ uint8) bool { return class == 0x0102 && typ == 3 }

// The outer packets EncapGeneveV4 must produce for innerUDP from
// testTunnel (port 6081) with VNI 1000 and source port 51234. The IPv4 and
// UDP headers were serialised by gopacket (lengths and IPv4 checksum
// computed by it, UDP checksum left 0), around the Geneve header (written
// by hand, above) and the inner Ethernet header of outerVXLAN.
const (
	outerGeneveNoOpts = "45000052000000004011d3720aa948e90aa948ee" + // IPv4, total 82
		"c82217c1" + "003e0000" + // UDP 51234 -> 6081, length 62, checksum 0
		"00006558" + "0003e800" + // Geneve, no options, VNI 1000
		"02580aa948ee02580aa948e90800" + // inner Ethernet
		innerUDP
	outerGeneveTwoOpts = "45000066000000004011d35e0aa948e90aa948ee" + // IPv4, total 102
		"c82217c1" + "00520000" + // UDP, length 82
		"05406558" + "0003e800" + "01028301deadbeef" + "ffff7f020011223344556677" + // geneveTwoOpts
		"02580aa948ee02580aa948e90800" +
		innerUDP
)

func TestGeneveHandFixture(t *testing.T) {
	want := mustHex(t, geneveTwoOpts)
	if len(want) != 28 {
		t.Fatalf("fixture is %d bytes", len(want))
	}

	// Encoding writes the fixture byte for byte.
	out := bytes.Repeat([]byte{0xa5}, 64) // junk that must be overwritten
	n, err := Geneve(out).Encode(&GeneveFields{VNI: 1000, Options: geneveTwoOptsList})
	if err != nil || n != len(want) {
		t.Fatalf("Encode = %d, %v", n, err)
	}
	off := 0
	for _, f := range geneveTwoOptsFields {
		w := mustHex(t, f.hex)
		if got := out[off : off+len(w)]; !bytes.Equal(got, w) {
			t.Errorf("bytes %d-%d (%s): %x, want %x", off, off+len(w)-1, f.field, got, w)
		}
		off += len(w)
	}
	if !bytes.Equal(out[n:], bytes.Repeat([]byte{0xa5}, 64-n)) {
		t.Error("Encode wrote past the header")
	}

	// Parsing reads every field back.
	g := Geneve(want)
	if err := g.Validate(geneveKnown); err != nil {
		t.Fatal(err)
	}
	if g.Version() != 0 || g.OptionsLen() != 20 || g.HeaderLen() != 28 || g.Control() || !g.Critical() ||
		g.Protocol() != 0x6558 || g.VNI() != 1000 {
		t.Fatalf("ver %d optlen %d hlen %d O %v C %v proto %#x vni %d",
			g.Version(), g.OptionsLen(), g.HeaderLen(), g.Control(), g.Critical(), g.Protocol(), g.VNI())
	}
	got := collectOptions(g)
	if len(got) != 2 {
		t.Fatalf("%d options", len(got))
	}
	for i := range got {
		if !sameOption(got[i], geneveTwoOptsList[i]) {
			t.Errorf("option %d: %+v, want %+v", i+1, got[i], geneveTwoOptsList[i])
		}
	}
	// Data views the packet: option 1's data is bytes 12-15.
	if &got[0].Data[0] != &want[12] || cap(got[0].Data) != 4 {
		t.Error("option data is not a capped view of the packet")
	}

	// Option 1 unknown, by a nil isKnown or a narrower one: dropped.
	if err := g.Validate(nil); err != ErrGeneveCritical {
		t.Errorf("Validate(nil) = %v", err)
	}
	if err := g.Validate(func(c uint16, typ uint8) bool { return c == 0xffff }); err != ErrGeneveCritical {
		t.Errorf("only the non-critical option known: %v", err)
	}
	// isKnown sees the type without the critical bit.
	if err := g.Validate(func(c uint16, typ uint8) bool { return typ == 0x83 }); err != ErrGeneveCritical {
		t.Errorf("type passed with the critical bit: %v", err)
	}
}

// gopacketLayers decodes an outer IPv4 packet with gopacket.
func gopacketLayers(t *testing.T, pkt []byte) (outer *layers.IPv4, udp *layers.UDP, g *layers.Geneve, eth *layers.Ethernet, inner *layers.IPv4) {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	ls := p.Layers()
	if len(ls) < 5 {
		t.Fatalf("gopacket decoded %d layers: %v", len(ls), p)
	}
	var ok [5]bool
	outer, ok[0] = ls[0].(*layers.IPv4)
	udp, ok[1] = ls[1].(*layers.UDP)
	g, ok[2] = ls[2].(*layers.Geneve)
	eth, ok[3] = ls[3].(*layers.Ethernet)
	inner, ok[4] = ls[4].(*layers.IPv4)
	if ok != [5]bool{true, true, true, true, true} {
		t.Fatalf("gopacket layers: %v", p)
	}
	return
}

func TestEncapGeneveV4Fixtures(t *testing.T) {
	inner := mustHex(t, innerUDP)
	tun := testTunnel
	tun.DstPort = GenevePort
	for _, tt := range []struct {
		name string
		opts []GeneveOption
		want string
	}{
		{"no options", nil, outerGeneveNoOpts},
		{"two options", geneveTwoOptsList, outerGeneveTwoOpts},
	} {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, Headroom+len(inner))
			copy(buf[Headroom:], inner)
			o, err := encapGeneveV4(buf, Headroom, len(inner), &tun, 1000, tt.opts, 51234)
			if err != nil {
				t.Fatal(err)
			}
			ol, _ := GeneveOptionsLen(tt.opts)
			if o != Headroom-GeneveOverheadV4-ol {
				t.Fatalf("outer starts at %d, want %d", o, Headroom-GeneveOverheadV4-ol)
			}
			pkt := buf[o:]
			if want := mustHex(t, tt.want); !bytes.Equal(pkt, want) {
				t.Fatalf("encap mismatch\n got %x\nwant %x", pkt, want)
			}

			// gopacket decodes every field as we meant it.
			ip, udp, g, eth, in := gopacketLayers(t, pkt)
			if ip.Version != 4 || ip.IHL != 5 || ip.TOS != 0 || int(ip.Length) != len(pkt) || ip.Id != 0 ||
				ip.Flags != 0 || ip.FragOffset != 0 || ip.TTL != OuterTTL || ip.Protocol != layers.IPProtocolUDP ||
				!ip.SrcIP.Equal(net.IP{10, 169, 72, 233}) || !ip.DstIP.Equal(net.IP{10, 169, 72, 238}) || len(ip.Options) != 0 {
				t.Errorf("outer ip: %+v", ip)
			}
			checkGopacketChecksum(t, ip)
			if udp.SrcPort != 51234 || udp.DstPort != GenevePort || int(udp.Length) != len(pkt)-IPv4MinLen || udp.Checksum != 0 {
				t.Errorf("udp: %+v", udp)
			}
			if g.Version != 0 || int(g.OptionsLength) != ol || g.OAMPacket || g.CriticalOption != (len(tt.opts) > 0) ||
				g.Protocol != layers.EthernetTypeTransparentEthernetBridging || g.VNI != 1000 || len(g.Options) != len(tt.opts) {
				t.Errorf("geneve: %+v", g)
			}
			for i, o := range g.Options {
				w := tt.opts[i]
				// gopacket's Type is the whole type byte, critical bit
				// included, which is the RFC's definition of the field; we
				// split the bit out into Critical. Its Length counts the
				// option header as well as the data.
				typ := w.Type
				if w.Critical {
					typ |= 0x80
				}
				if o.Class != w.Class || o.Type != typ || o.Flags != 0 || int(o.Length) != 4+len(w.Data) || !bytes.Equal(o.Data, w.Data) {
					t.Errorf("geneve option %d: %+v, want %+v", i, o, w)
				}
			}
			if eth.DstMAC.String() != tun.DstMAC.String() || eth.SrcMAC.String() != tun.SrcMAC.String() ||
				eth.EthernetType != layers.EthernetTypeIPv4 || !bytes.Equal(eth.Payload, inner) {
				t.Errorf("inner ethernet: %+v", eth)
			}
			if !in.SrcIP.Equal(net.IP{10, 1, 1, 154}) || !in.DstIP.Equal(net.IP{10, 1, 2, 154}) || in.TTL != 63 || in.Length != 32 {
				t.Errorf("inner ip: %+v", in)
			}

			// Our own receive path agrees.
			ov, err := ParseOuterV4(pkt)
			if err != nil || ov.DstPort != GenevePort || ov.PayloadLen != len(pkt)-IPv4MinLen-UDPLen {
				t.Fatalf("ParseOuterV4: %+v %v", ov, err)
			}
			gv := Geneve(pkt[ov.Payload : ov.Payload+ov.PayloadLen])
			if err := gv.Validate(geneveKnown); err != nil || gv.VNI() != 1000 || gv.HeaderLen() != GeneveLen+ol {
				t.Fatalf("Validate: %v", err)
			}
			if !bytes.Equal(gv[gv.HeaderLen()+EthernetLen:], inner) {
				t.Fatal("inner packet changed")
			}
		})
	}
}

// gopacketGeneve runs gopacket's Geneve decoder on b alone, turning a
// panic into an error so that its bugs can be shown side by side with our
// answers.
func gopacketGeneve(g *layers.Geneve, b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return g.DecodeFromBytes(b, gopacket.NilDecodeFeedback)
}

// Where gopacket v1.1.19's Geneve decoder and RFC 8926 disagree, the tests
// follow the RFC: these cases pin down our answer and log gopacket's.
func TestGeneveGopacketDisagreements(t *testing.T) {
	opts := func(words ...int) []byte { // option headers with the given lengths and zero data
		var b []byte
		for i, w := range words {
			b = append(b, 0, byte(i+1), 1, byte(w))
			b = append(b, make([]byte, 4*w)...)
		}
		return b
	}
	hdr := func(b0 byte, body []byte) []byte {
		return append([]byte{b0, 0, 0x65, 0x58, 0, 0x03, 0xe8, 0}, body...)
	}
	payload := []byte("payload!")
	tests := []struct {
		name     string
		b        []byte
		want     error
		optCount int // when want is nil
		hlen     int
		bug      func(g *layers.Geneve, err error) string // what gopacket gets wrong, "" if it is right
	}{
		{
			// gopacket takes the version from the top bit only (>> 7).
			name: "version 1", b: hdr(0x40, nil), want: ErrGeneveVersion,
			bug: func(g *layers.Geneve, err error) string {
				if err == nil && g.Version != 1 {
					return fmt.Sprintf("version read as %d, accepted", g.Version)
				}
				return ""
			},
		},
		{
			name: "version 2", b: hdr(0x80, nil), want: ErrGeneveVersion,
			bug: func(g *layers.Geneve, err error) string {
				if err == nil && g.Version != 2 {
					return fmt.Sprintf("version read as %d", g.Version)
				}
				return ""
			},
		},
		{
			// gopacket's length check is 7 bytes, one short of the header.
			name: "7 bytes", b: hdr(0, nil)[:7], want: ErrTruncated,
			bug: func(g *layers.Geneve, err error) string {
				if err == nil || strings.HasPrefix(err.Error(), "panic") {
					return fmt.Sprintf("7-byte header not refused as truncated: %v", err)
				}
				return ""
			},
		},
		{
			// An option header cut after 3 bytes: gopacket's options-area
			// check is off by one and its option check tests for 3 bytes
			// where it reads 4.
			name: "option header cut short", b: hdr(0x01, []byte{0, 1, 1}), want: ErrGeneveOptions,
			bug: func(g *layers.Geneve, err error) string {
				if err == nil || strings.HasPrefix(err.Error(), "panic") {
					return fmt.Sprintf("3-byte option header: %v", err)
				}
				return ""
			},
		},
		{
			// gopacket masks the option length with 4 bits, not 5, and
			// takes the top bit of the 5 as a flag: a 31-word option reads
			// as 15 words and the rest of its data as more options.
			name: "31-word option", b: hdr(32, append(opts(31), payload...)), optCount: 1, hlen: 8 + 128,
			bug: func(g *layers.Geneve, err error) string {
				if err != nil || len(g.Options) != 1 || len(g.Options[0].Data) != 124 {
					return fmt.Sprintf("%v, %d options, first with %d bytes of data", err, len(g.Options), firstOptLen(g))
				}
				return ""
			},
		},
		{
			// 252 bytes of options: gopacket's uint8 offset wraps from 260
			// to 4, so its payload starts inside the fixed header.
			name: "252 bytes of options", b: hdr(63, append(opts(15, 15, 15, 14), payload...)), optCount: 4, hlen: 260,
			bug: func(g *layers.Geneve, err error) string {
				if err != nil || len(g.Contents) != 260 || !bytes.Equal(g.Payload, payload) {
					return fmt.Sprintf("%v, header %d bytes, payload %d bytes", err, len(g.Contents), len(g.Payload))
				}
				return ""
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append([]byte(nil), tt.b...)[:len(tt.b):len(tt.b)] // nothing to read past the end
			gv := Geneve(b)
			if err := gv.Validate(nil); err != tt.want {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				if n := len(collectOptions(gv)); n != tt.optCount || gv.HeaderLen() != tt.hlen {
					t.Fatalf("%d options, header %d bytes; want %d, %d", n, gv.HeaderLen(), tt.optCount, tt.hlen)
				}
			}
			var g layers.Geneve
			if bug := tt.bug(&g, gopacketGeneve(&g, b)); bug != "" {
				t.Logf("gopacket disagrees with RFC 8926: %s", bug)
			}
		})
	}
}

func firstOptLen(g *layers.Geneve) int {
	if len(g.Options) == 0 {
		return -1
	}
	return len(g.Options[0].Data)
}

func TestGeneveValidate(t *testing.T) {
	// opt builds an option of class 1, type typ, with words*4 data bytes.
	opt := func(typ byte, words int) []byte {
		return append([]byte{0, 1, typ, byte(words)}, make([]byte, 4*words)...)
	}
	// hdr builds a header: byte 0 (Ver and Opt Len), byte 1 (flags),
	// protocol, VNI 1, then body (options and any payload).
	hdr := func(b0, b1 byte, proto uint16, body ...[]byte) []byte {
		b := []byte{b0, b1, byte(proto >> 8), byte(proto), 0, 0, 1, 0}
		for _, p := range body {
			b = append(b, p...)
		}
		return b
	}
	const eth = 0x6558
	frame := make([]byte, EthernetLen) // stands in for the payload after the header
	full := hdr(63, 0, eth, opt(1, 30), opt(1, 31))
	if len(full) != GeneveMaxLen {
		t.Fatalf("max header is %d bytes", len(full))
	}
	critUnknown := []byte{0xff, 0xff, 0x80 | 9, 0}
	critKnown := []byte{0x01, 0x02, 0x80 | 3, 0}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"no options", hdr(0, 0, eth), nil},
		{"no options, payload", hdr(0, 0, eth, frame), nil},
		{"version 1", hdr(0x40, 0, eth), ErrGeneveVersion},
		{"version 2", hdr(0x80, 0, eth), ErrGeneveVersion},
		{"version 3", hdr(0xc0, 0, eth), ErrGeneveVersion},
		{"opt len 63 present", full, nil},
		{"opt len 63 present, payload", append(full, frame...), nil},
		{"opt len 63, a byte short", full[:len(full)-1], ErrGeneveOptions},
		{"opt len 63, no options", hdr(63, 0, eth), ErrGeneveOptions},
		{"opt len 63 of zero-length options", hdr(63, 0, eth, bytes.Repeat(opt(1, 0), 63)), nil},
		{"31-word option fits exactly", hdr(32, 0, eth, opt(1, 31)), nil},
		{"31-word option then payload", hdr(32, 0, eth, opt(1, 31), frame), nil},
		{"31-word option overruns the area", hdr(31, 0, eth, opt(1, 31)), ErrGeneveOptions},
		{"31-word option overruns the packet", hdr(32, 0, eth, opt(1, 31))[:8+4+120], ErrGeneveOptions},
		{"option exactly fills the area", hdr(2, 0, eth, opt(1, 1)), nil},
		{"option header straddles the packet end", hdr(1, 0, eth, []byte{0, 1, 1}), ErrGeneveOptions},
		{"option data straddles the area end", hdr(2, 0, eth, opt(1, 0), opt(1, 1)), ErrGeneveOptions},
		{"option data straddles the area end, packet long enough", hdr(2, 0, eth, opt(1, 0), opt(1, 1), frame), ErrGeneveOptions},
		{"option-like bytes after the area are payload", hdr(1, 0, eth, opt(1, 0), opt(0x80, 31)), nil},
		{"opt len without room", hdr(1, 0, eth), ErrGeneveOptions},
		{"O bit", hdr(0, 0x80, eth), ErrGeneveControl},
		{"O bit with options", hdr(1, 0x80, eth, opt(1, 0)), ErrGeneveControl},
		{"protocol IPv4", hdr(0, 0, 0x0800), ErrGeneveProtocol},
		{"protocol 0", hdr(0, 0, 0), ErrGeneveProtocol},
		{"critical unknown, C clear", hdr(1, 0, eth, critUnknown), ErrGeneveCritical},
		{"critical unknown after a known one", hdr(2, 0x40, eth, critKnown, critUnknown), ErrGeneveCritical},
		{"critical known", hdr(1, 0x40, eth, critKnown), nil},
		{"C bit with unknown critical", hdr(1, 0x40, eth, critUnknown), ErrGeneveCritical},
		{"C bit with no critical option", hdr(1, 0x40, eth, opt(1, 0)), nil},
		{"C bit and no options", hdr(0, 0x40, eth), nil},
		{"non-critical unknown", hdr(2, 0, eth, opt(0x7f, 1)), nil},
		{"reserved bits ignored", []byte{1, 0x3f, 0x65, 0x58, 0, 0, 1, 0xff, 0, 1, 1, 0xe0}, nil},
		// Order: truncation, version, options, O, protocol, critical.
		{"version before options", hdr(0x7f, 0, eth), ErrGeneveVersion},
		{"options before O bit", hdr(1, 0x80, eth), ErrGeneveOptions},
		{"O bit before protocol", hdr(0, 0x80, 0x0800), ErrGeneveControl},
		{"protocol before critical", hdr(1, 0x40, 0x0800, critUnknown), ErrGeneveProtocol},
		{"O bit before critical", hdr(1, 0xc0, eth, critUnknown), ErrGeneveControl},
	}
	known := func(class uint16, typ uint8) bool { return class == 0x0102 && typ == 3 }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b[:len(tt.b):len(tt.b)]
			if err := Geneve(b).Validate(known); err != tt.want {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
	for n := 0; n < GeneveLen; n++ {
		b := hdr(0, 0, eth)[:n:n]
		if err := Geneve(b).Validate(nil); err != ErrTruncated {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	// isKnown is consulted only for critical options of otherwise valid
	// headers.
	calls := 0
	count := func(uint16, uint8) bool { calls++; return true }
	for _, b := range [][]byte{hdr(2, 0, eth, opt(1, 0), opt(2, 0)), hdr(1, 0x80, eth, critKnown), hdr(1, 0, 0x0800, critKnown)} {
		Geneve(b).Validate(count)
	}
	if calls != 0 {
		t.Errorf("isKnown called %d times", calls)
	}
}

// collectOptions walks the options of g into a new slice.
func collectOptions(g Geneve) []GeneveOption {
	var opts []GeneveOption
	for it := g.Options(); ; {
		o, ok := it.Next()
		if !ok {
			return opts
		}
		opts = append(opts, o)
	}
}

// parsedFields is what a receiver knows of a validated header: everything
// Encode takes.
func parsedFields(g Geneve) GeneveFields {
	return GeneveFields{VNI: g.VNI(), Control: g.Control(), Critical: g.Critical(), Protocol: g.Protocol(), Options: collectOptions(g)}
}

func sameOption(a, b GeneveOption) bool {
	return a.Class == b.Class && a.Type == b.Type && a.Critical == b.Critical && bytes.Equal(a.Data, b.Data)
}

// The options of one packet never show up when iterating the next one with
// the same variable and code path: the iterator is a value rebuilt from
// each header.
func TestGeneveOptionsDoNotLeak(t *testing.T) {
	three := make([]byte, 64)
	n3, err := Geneve(three).Encode(&GeneveFields{VNI: 5, Options: []GeneveOption{
		{Class: 1, Type: 1, Data: []byte{1, 1, 1, 1}}, {Class: 2, Type: 2}, {Class: 3, Type: 3, Data: make([]byte, 8)}}})
	if err != nil {
		t.Fatal(err)
	}
	none := make([]byte, GeneveLen+EthernetLen)
	if _, err := Geneve(none).Encode(&GeneveFields{VNI: 6}); err != nil {
		t.Fatal(err)
	}
	// A frame that looks like options where the payload begins: it must
	// not be read as options either.
	copy(none[GeneveLen:], three[GeneveLen:])

	var it GeneveOptions
	var seen []uint16
	walk := func(b []byte, stopAfter int) {
		g := Geneve(b)
		if err := g.Validate(nil); err != nil {
			t.Fatal(err)
		}
		seen = seen[:0]
		it = g.Options()
		for len(seen) < stopAfter {
			o, ok := it.Next()
			if !ok {
				break
			}
			seen = append(seen, o.Class)
		}
	}
	walk(three[:n3], 99)
	if fmt.Sprint(seen) != "[1 2 3]" {
		t.Fatalf("first packet: %v", seen)
	}
	walk(none, 99)
	if len(seen) != 0 {
		t.Fatalf("options leaked into the next packet: %v", seen)
	}
	// Stopping half way through a packet leaves nothing behind either.
	walk(three[:n3], 1)
	walk(none, 99)
	if len(seen) != 0 {
		t.Fatalf("options leaked after a partial walk: %v", seen)
	}
	if _, ok := it.Next(); ok {
		t.Fatal("exhausted iterator yields again")
	}
	var zero GeneveOptions
	if _, ok := zero.Next(); ok {
		t.Fatal("zero iterator yields an option")
	}

	// gopacket's decoder appends to Options without resetting it, so a
	// layers.Geneve reused the way DecodingLayerParser reuses it keeps the
	// previous packet's options.
	var g layers.Geneve
	if gopacketGeneve(&g, three[:n3]) == nil && gopacketGeneve(&g, none) == nil && len(g.Options) != 0 {
		t.Logf("gopacket disagrees with RFC 8926: options-less packet decoded with %d leftover options", len(g.Options))
	}
}

func TestGeneveRoundTrip(t *testing.T) {
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		return b
	}
	zeroLen := make([]GeneveOption, 63)
	for i := range zeroLen {
		zeroLen[i] = GeneveOption{Class: uint16(i), Type: uint8(i), Critical: i%2 == 0}
	}
	tests := []struct {
		name string
		f    GeneveFields
		err  error // from Validate
	}{
		{"VNI 0", GeneveFields{}, nil},
		{"VNI max", GeneveFields{VNI: MaxVNI}, nil},
		{"two options", GeneveFields{VNI: 1000, Options: geneveTwoOptsList}, nil},
		{"largest options", GeneveFields{VNI: 7, Options: []GeneveOption{
			{Class: 0xabcd, Type: 0x7f, Data: data(124)}, {Class: 0x0102, Type: 3, Critical: true, Data: data(120)}}}, nil},
		{"63 empty options", GeneveFields{VNI: 9, Options: zeroLen}, ErrGeneveCritical},
		{"C without critical options", GeneveFields{VNI: 3, Critical: true, Options: []GeneveOption{{Class: 5}}}, nil},
		{"control", GeneveFields{VNI: 4, Control: true}, ErrGeneveControl},
		{"IPv4 payload", GeneveFields{VNI: 4, Protocol: EtherTypeIPv4}, ErrGeneveProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := bytes.Repeat([]byte{0xee}, GeneveMaxLen+EthernetLen)
			n, err := Geneve(buf).Encode(&tt.f)
			if err != nil {
				t.Fatal(err)
			}
			g := Geneve(buf) // with the bytes after it as payload
			if err := g.Validate(geneveKnown); err != tt.err {
				t.Fatalf("Validate = %v, want %v", err, tt.err)
			}
			anyCrit := false
			for _, o := range tt.f.Options {
				anyCrit = anyCrit || o.Critical
			}
			proto := tt.f.Protocol
			if proto == 0 {
				proto = EtherTypeTrans
			}
			if g.HeaderLen() != n || g.VNI() != tt.f.VNI || g.Control() != tt.f.Control ||
				g.Critical() != (tt.f.Critical || anyCrit) || g.Protocol() != proto {
				t.Fatalf("fields: %+v", parsedFields(g))
			}
			got := collectOptions(g)
			if len(got) != len(tt.f.Options) {
				t.Fatalf("%d options, want %d", len(got), len(tt.f.Options))
			}
			for i := range got {
				if !sameOption(got[i], tt.f.Options[i]) {
					t.Fatalf("option %d: %+v, want %+v", i, got[i], tt.f.Options[i])
				}
			}
			// Re-encoding what was parsed gives the same bytes.
			out := make([]byte, n)
			pf := parsedFields(g)
			if m, err := Geneve(out).Encode(&pf); err != nil || m != n || !bytes.Equal(out, buf[:n]) {
				t.Fatalf("re-encode %d %v\n%x\n%x", m, err, out, buf[:n])
			}
		})
	}
}

func TestGeneveEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		f    GeneveFields
		size int
		want error
	}{
		{"VNI over 24 bits", GeneveFields{VNI: 1 << 24}, 64, ErrVNIRange},
		{"data not words", GeneveFields{Options: []GeneveOption{{Data: make([]byte, 3)}}}, 64, ErrGeneveOptionData},
		{"data over 124", GeneveFields{Options: []GeneveOption{{Data: make([]byte, 128)}}}, 300, ErrGeneveOptionData},
		{"type with the critical bit", GeneveFields{Options: []GeneveOption{{Type: 0x83}}}, 64, ErrGeneveOptionType},
		{"options over 252", GeneveFields{Options: []GeneveOption{{Data: make([]byte, 124)}, {Data: make([]byte, 124)}}}, 300, ErrGeneveOptionsLen},
		{"buffer short of the header", GeneveFields{}, 7, ErrTruncated},
		{"buffer short of the options", GeneveFields{Options: []GeneveOption{{Data: make([]byte, 4)}}}, 15, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := bytes.Repeat([]byte{0xee}, tt.size)
			if n, err := Geneve(buf).Encode(&tt.f); err != tt.want || n != 0 {
				t.Fatalf("Encode = %d, %v, want %v", n, err, tt.want)
			}
			if !bytes.Equal(buf, bytes.Repeat([]byte{0xee}, tt.size)) {
				t.Fatal("failed Encode wrote into the buffer")
			}
		})
	}
	if n, err := GeneveOptionsLen(make([]GeneveOption, 63)); n != 252 || err != nil {
		t.Errorf("63 empty options: %d %v", n, err)
	}
	if n, err := GeneveOptionsLen(make([]GeneveOption, 64)); n != 0 || err != ErrGeneveOptionsLen {
		t.Errorf("64 empty options: %d %v", n, err)
	}
	if n, err := GeneveOptionsLen(nil); n != 0 || err != nil {
		t.Errorf("no options: %d %v", n, err)
	}
}

func TestEncapGeneveV4Errors(t *testing.T) {
	inner := mustHex(t, innerUDP)
	tun := testTunnel
	tun.DstPort = GenevePort
	opts := geneveTwoOptsList
	tests := []struct {
		name  string
		start int
		n     int
		vni   uint32
		opts  []GeneveOption
		want  error
	}{
		{"no headroom", GeneveOverheadV4 - 1, len(inner), 1, nil, ErrHeaderRoom},
		{"no headroom for the options", GeneveOverheadV4 + 19, len(inner), 1, opts, ErrHeaderRoom},
		{"VNI over 24 bits", Headroom, len(inner), 1 << 24, nil, ErrVNIRange},
		{"bad option", Headroom, len(inner), 1, []GeneveOption{{Data: make([]byte, 2)}}, ErrGeneveOptionData},
		{"packet past the buffer", Headroom, len(inner) + 1, 1, nil, ErrBadLength},
		{"negative length", Headroom, -1, 1, nil, ErrBadLength},
		{"start past the buffer", Headroom + len(inner) + 1, 0, 1, nil, ErrBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, Headroom+len(inner))
			copy(buf[Headroom:], inner)
			before := append([]byte(nil), buf...)
			if _, err := encapGeneveV4(buf, tt.start, tt.n, &tun, tt.vni, tt.opts, 1); err != tt.want {
				t.Fatalf("EncapGeneveV4 = %v, want %v", err, tt.want)
			}
			if !bytes.Equal(buf, before) {
				t.Fatal("failed encapsulation wrote into the buffer")
			}
		})
	}
	// An outer packet over 64 KiB cannot be described by IPv4.
	big := make([]byte, Headroom+0xffff)
	if _, err := encapGeneveV4(big, Headroom, 0xffff-GeneveOverheadV4+1, &tun, 1, nil, 1); err != ErrBadLength {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := encapGeneveV4(big, Headroom, 0xffff-GeneveOverheadV4, &tun, 1, nil, 1); err != nil {
		t.Fatalf("largest: %v", err)
	}
	// Exactly enough headroom.
	buf := make([]byte, GeneveOverheadV4+20+len(inner))
	copy(buf[GeneveOverheadV4+20:], inner)
	if o, err := encapGeneveV4(buf, GeneveOverheadV4+20, len(inner), &tun, 1000, opts, 51234); err != nil || o != 0 {
		t.Fatalf("exact headroom: %d %v", o, err)
	}
	if !bytes.Equal(buf, mustHex(t, outerGeneveTwoOpts)) {
		t.Fatal("exact headroom: wrong bytes")
	}
}

func TestGeneveZeroAllocs(t *testing.T) {
	hdr := mustHex(t, geneveTwoOpts)
	inner := mustHex(t, innerUDP)
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	tun := testTunnel
	tun.DstPort = GenevePort
	known := func(class uint16, typ uint8) bool { return class == 0x0102 && typ == 3 }
	out := make([]byte, 64)
	fields := GeneveFields{VNI: 1000, Options: geneveTwoOptsList}
	sink := 0
	for name, f := range map[string]func(){
		"Validate nil":     func() { _ = Geneve(hdr[:8]).Validate(nil) },
		"Validate isKnown": func() { _ = Geneve(hdr).Validate(known) },
		"Validate closure": func() { _ = Geneve(hdr).Validate(func(c uint16, _ uint8) bool { return c == uint16(sink) }) },
		"Options": func() {
			for it := Geneve(hdr).Options(); ; {
				o, ok := it.Next()
				if !ok {
					break
				}
				sink += len(o.Data)
			}
		},
		"Encode":             func() { _, _ = Geneve(out).Encode(&fields) },
		"EncapGeneveV4":      func() { _, _ = encapGeneveV4(buf, Headroom, len(inner), &tun, 1000, nil, 51234) },
		"EncapGeneveV4 opts": func() { _, _ = encapGeneveV4(buf, Headroom, len(inner), &tun, 1000, geneveTwoOptsList, 51234) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

func BenchmarkGeneveValidate(b *testing.B) {
	two := mustHex(b, geneveTwoOpts)
	for _, bc := range []struct {
		name string
		hdr  []byte
	}{
		{"opts=0", mustHex(b, "00006558"+"0003e800")},
		{"opts=2", two},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			g := Geneve(bc.hdr)
			for b.Loop() {
				if g.Validate(geneveKnown) != nil {
					b.Fatal("invalid")
				}
			}
		})
	}
}
