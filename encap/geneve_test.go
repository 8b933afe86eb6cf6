package encap

import (
	"bytes"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// A Geneve header with two options, written out by hand from RFC 8926's
// layout: opt len 5 words, C set (the first option is critical), protocol
// 0x6558, VNI 1000; option 1 class 0x0102 type 0x03|critical, 4 bytes;
// option 2 class 0xffff type 0x7f, 8 bytes, not critical.
const geneveTwoOpts = "05406558" + "0003e800" +
	"0102" + "83" + "01" + "deadbeef" +
	"ffff" + "7f" + "02" + "0011223344556677"

func TestGeneveFixture(t *testing.T) {
	b := Geneve(mustHex(t, geneveTwoOpts))
	known := func(class uint16, typ uint8) bool { return class == 0x0102 && typ == 0x03 }
	if err := b.Validate(known); err != nil {
		t.Fatal(err)
	}
	if b.Version() != 0 || b.OptionsLen() != 20 || b.HeaderLen() != 28 || !b.Critical() || b.Control() || b.VNI() != 1000 {
		t.Fatalf("fields: ver %d optlen %d vni %d", b.Version(), b.OptionsLen(), b.VNI())
	}
	it := b.Options()
	o1, ok1 := it.Next()
	o2, ok2 := it.Next()
	_, ok3 := it.Next()
	if !ok1 || !ok2 || ok3 {
		t.Fatal("wrong number of options")
	}
	if o1.Class != 0x0102 || o1.Type != 3 || !o1.Critical || !bytes.Equal(o1.Data, mustHex(t, "deadbeef")) {
		t.Fatalf("option 1 %+v", o1)
	}
	if o2.Class != 0xffff || o2.Type != 0x7f || o2.Critical || len(o2.Data) != 8 {
		t.Fatalf("option 2 %+v", o2)
	}
	// The same critical option unknown: refused.
	if err := b.Validate(nil); err != ErrGeneveCritical {
		t.Fatalf("unknown critical option: %v", err)
	}
	// Re-encoding the parsed fields reproduces the bytes.
	out := make([]byte, 64)
	n, err := Geneve(out).Encode(&GeneveFields{VNI: b.VNI(), Options: []GeneveOption{o1, o2}})
	if err != nil || !bytes.Equal(out[:n], b) {
		t.Fatalf("re-encode %v\n%x\n%x", err, out[:n], []byte(b))
	}
}

func TestGeneveValidate(t *testing.T) {
	opt := func(words int) []byte { // a non-critical option of words*4 data bytes
		o := []byte{0, 1, 0x01, byte(words)}
		return append(o, make([]byte, words*4)...)
	}
	hdr := func(optWords int, flags byte, proto uint16, opts ...[]byte) []byte {
		b := []byte{byte(optWords), flags, byte(proto >> 8), byte(proto), 0, 0, 1, 0}
		for _, o := range opts {
			b = append(b, o...)
		}
		return b
	}
	max := hdr(63, 0, 0x6558, opt(30), opt(31)) // 4+120 + 4+124 = 252 bytes
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"ok", hdr(0, 0, 0x6558), nil},
		{"version 1", append([]byte{0x40}, hdr(0, 0, 0x6558)[1:]...), ErrGeneveVersion},
		{"version 2", append([]byte{0x80}, hdr(0, 0, 0x6558)[1:]...), ErrGeneveVersion},
		{"version 3", append([]byte{0xc0}, hdr(0, 0, 0x6558)[1:]...), ErrGeneveVersion},
		{"opt len 63 present", max, nil},
		{"opt len 63 short", max[:len(max)-1], ErrGeneveOptions},
		{"31-word option fits", hdr(32, 0, 0x6558, opt(31)), nil},
		{"31-word option overruns", hdr(31, 0, 0x6558, opt(31))[:8+124], ErrGeneveOptions},
		{"option exactly fills the area", hdr(2, 0, 0x6558, opt(1)), nil},
		{"option header past the area", hdr(1, 0, 0x6558, []byte{0, 1, 2, 0}, []byte{0, 0, 0, 0})[:8+4], nil},
		{"option longer than area", hdr(1, 0, 0x6558, opt(1)), ErrGeneveOptions},
		{"area not tiled", hdr(2, 0, 0x6558, opt(0), []byte{0, 1, 2}), ErrGeneveOptions},
		{"O bit", hdr(0, 0x80, 0x6558), ErrGeneveControl},
		{"IPv4 payload", hdr(0, 0, 0x0800), ErrGeneveProtocol},
		{"critical unknown", hdr(1, 0x40, 0x6558, []byte{0, 1, 0x81, 0}), ErrGeneveCritical},
		{"C bit without critical option", hdr(0, 0x40, 0x6558), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Geneve(tt.b).Validate(nil); err != tt.want {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
	for n := 0; n < GeneveLen; n++ {
		if err := Geneve(make([]byte, n)).Validate(nil); err != ErrTruncated {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
}

// Options of one packet never show up when iterating the next.
func TestGeneveOptionsDoNotLeak(t *testing.T) {
	three := make([]byte, 64)
	n, err := Geneve(three).Encode(&GeneveFields{VNI: 5, Options: []GeneveOption{
		{Class: 1, Type: 1, Data: make([]byte, 4)}, {Class: 2, Type: 2}, {Class: 3, Type: 3, Data: make([]byte, 8)}}})
	if err != nil {
		t.Fatal(err)
	}
	none := make([]byte, 8)
	if _, err := Geneve(none).Encode(&GeneveFields{VNI: 6}); err != nil {
		t.Fatal(err)
	}
	count := func(b []byte) int {
		c := 0
		for it := Geneve(b).Options(); ; c++ {
			if _, ok := it.Next(); !ok {
				return c
			}
		}
	}
	if c := count(three[:n]); c != 3 {
		t.Fatalf("%d options, want 3", c)
	}
	if c := count(none); c != 0 {
		t.Fatalf("options leaked into the next packet: %d", c)
	}
}

func TestEncapGeneveV4(t *testing.T) {
	inner := mustHex(t, innerUDP)
	buf := make([]byte, Headroom+len(inner))
	copy(buf[Headroom:], inner)
	tun := testTunnel
	tun.DstPort = GenevePort
	opts := []GeneveOption{{Class: 0x0103, Type: 7, Data: []byte{1, 2, 3, 4}}}
	o, err := EncapGeneveV4(buf, Headroom, len(inner), &tun, 1000, opts, 51234)
	if err != nil {
		t.Fatal(err)
	}
	pkt := buf[o:]
	if len(pkt) != len(inner)+GeneveOverheadV4+8 {
		t.Fatalf("outer length %d", len(pkt))
	}
	// An independent decoder reads what we wrote.
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	g, _ := p.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
	if g == nil {
		t.Fatalf("gopacket finds no Geneve: %v", p)
	}
	if !ip.DstIP.Equal(net.IP{10, 169, 72, 238}) || udp.DstPort != 6081 || udp.SrcPort != 51234 || g.VNI != 1000 ||
		g.Protocol != layers.EthernetTypeTransparentEthernetBridging || len(g.Options) != 1 || g.Options[0].Class != 0x0103 {
		t.Fatalf("decoded ip %v udp %v geneve %+v", ip.DstIP, udp.DstPort, g)
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.Payload, inner) {
		t.Fatal("inner packet changed")
	}
	// And our own parser agrees.
	ov, err := ParseOuterV4(pkt)
	if err != nil || Geneve(pkt[ov.Payload:]).Validate(nil) != nil || Geneve(pkt[ov.Payload:]).VNI() != 1000 {
		t.Fatalf("parse back: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() {
		EncapGeneveV4(buf, Headroom, len(inner), &tun, 1000, nil, 51234)
		Geneve(buf[Headroom-50+28:]).Validate(nil)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
	if _, err := EncapGeneveV4(buf, Headroom, len(inner), &tun, 1<<24, nil, 1); err != ErrVNIRange {
		t.Fatalf("VNI over 24 bits: %v", err)
	}
}

func FuzzGeneve(f *testing.F) {
	f.Add(mustHex(f, geneveTwoOpts))
	f.Add(make([]byte, 7))
	f.Add([]byte{0x3f, 0, 0x65, 0x58, 0, 0, 1, 0})
	f.Add([]byte{0x01, 0, 0x65, 0x58, 0, 0, 1, 0, 0, 1, 1, 31})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Geneve(b).Validate(func(class uint16, typ uint8) bool { return class == 0x0102 })
		if err != nil {
			return
		}
		g := Geneve(b)
		if g.HeaderLen() > len(b) {
			t.Fatal("valid header longer than the packet")
		}
		var opts []GeneveOption
		for it := g.Options(); ; {
			o, ok := it.Next()
			if !ok {
				break
			}
			opts = append(opts, o)
		}
		out := make([]byte, GeneveLen+GeneveMaxOpts)
		n, err := Geneve(out).Encode(&GeneveFields{VNI: g.VNI(), Control: g.Control(), Options: opts})
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		want := append([]byte(nil), b[:g.HeaderLen()]...)
		// Reserved bits are ignored on receipt and not re-encoded: the
		// header's, the byte after the VNI, each option's R bits.
		want[1] &= geneveFlagO // C is derived from the options on encode
		want[7] = 0
		for off := GeneveLen; off+4 <= len(want); off += 4 + int(want[off+3]&0x1f)*4 {
			want[off+3] &= 0x1f
		}
		for _, o := range opts {
			if o.Critical {
				want[1] |= geneveFlagC
			}
		}
		if !bytes.Equal(out[:n], want) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", out[:n], want)
		}
	})
}
