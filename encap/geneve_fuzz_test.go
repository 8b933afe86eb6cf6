package encap

import (
	"bytes"
	"testing"
)

// refGeneveValidate is a second, deliberately plain reading of the
// receive rules of RFC 8926 (parse into a list, then judge), for the fuzzer
// to hold Validate to.
func refGeneveValidate(b []byte, isKnown func(uint16, uint8) bool) error {
	if len(b) < 8 {
		return ErrTruncated
	}
	if b[0]&0xc0 != 0 {
		return ErrGeneveVersion
	}
	optBytes := int(b[0]&0x3f) * 4
	if 8+optBytes > len(b) {
		return ErrGeneveOptions
	}
	type opt struct {
		class uint16
		typ   uint8
		crit  bool
	}
	var opts []opt
	for area := b[8 : 8+optBytes]; len(area) > 0; {
		if len(area) < 4 {
			return ErrGeneveOptions
		}
		l := 4 + int(area[3]&0x1f)*4
		if l > len(area) {
			return ErrGeneveOptions
		}
		opts = append(opts, opt{uint16(area[0])<<8 | uint16(area[1]), area[2] & 0x7f, area[2] >= 0x80})
		area = area[l:]
	}
	if b[1]&0x80 != 0 {
		return ErrGeneveControl
	}
	if b[2] != 0x65 || b[3] != 0x58 {
		return ErrGeneveProtocol
	}
	for _, o := range opts {
		if o.crit && !isKnown(o.class, o.typ) {
			return ErrGeneveCritical
		}
	}
	return nil
}

// canonicalGeneve is what an encoder that follows RFC 8926 writes for the
// header h: reserved bits zero (receivers ignore them, senders zero them)
// and C set when the sender said so or any option is critical.
func canonicalGeneve(h []byte, keepC bool) []byte {
	c := append([]byte(nil), h...)
	flags := c[1] & geneveFlagO
	if keepC {
		flags |= c[1] & geneveFlagC
	}
	c[7] = 0
	for off := GeneveLen; off+GeneveOptLen <= len(c); off += GeneveOptLen + int(c[off+3]&0x1f)*4 {
		c[off+3] &= 0x1f
		if c[off+2]&0x80 != 0 {
			flags |= geneveFlagC
		}
	}
	c[1] = flags
	return c
}

// FuzzGeneve feeds arbitrary bytes, a Geneve header and whatever follows it,
// to the receive side: no panic; Validate returns exactly the error of the
// reference reading; a structural error (truncated, version, options) comes
// exactly when the options cannot be walked within the header, never
// together with a full walk; every option the iterator yields is a capped
// view inside the options area; and a valid header re-encodes from its
// parsed fields to its own bytes (HeaderLen of them; reserved bits, which
// an encoder must zero, excepted), also through EncapGeneveV4.
func FuzzGeneve(f *testing.F) {
	// Real headers: the fixtures and what EncapGeneveV4 sends.
	f.Add(mustHex(f, geneveTwoOpts))
	f.Add(mustHex(f, outerGeneveNoOpts)[IPv4MinLen+UDPLen:])
	f.Add(mustHex(f, outerGeneveTwoOpts)[IPv4MinLen+UDPLen:])
	// The largest headers: 252 bytes of options as 63 empty ones and as a
	// 31-word and a 30-word one, with a frame after them.
	maxEmpty := make([]byte, GeneveMaxLen+EthernetLen)
	n, _ := Geneve(maxEmpty).Encode(&GeneveFields{VNI: MaxVNI, Options: make([]GeneveOption, 63)})
	f.Add(maxEmpty[:n])
	maxBig := make([]byte, GeneveMaxLen+EthernetLen)
	Geneve(maxBig).Encode(&GeneveFields{VNI: 1, Options: []GeneveOption{
		{Class: 0x0102, Type: 3, Critical: true, Data: make([]byte, 124)}, {Class: 0xffff, Data: make([]byte, 120)}}})
	f.Add(maxBig)
	// The classes of bug gopacket's decoder has, and their neighbours.
	hdr := func(b0 byte, rest ...byte) []byte { return append([]byte{b0, 0, 0x65, 0x58, 0, 0, 1, 0}, rest...) }
	f.Add(hdr(0)[:7])                                         // one byte short
	f.Add(hdr(0x40))                                          // version in the bit below the top
	f.Add(hdr(0x80))                                          // version in the top bit
	f.Add(hdr(0xc0))                                          // both
	f.Add(hdr(0x01, 0, 1, 1))                                 // option header cut after 3 bytes
	f.Add(append(hdr(32, 0, 1, 1, 31), make([]byte, 124)...)) // 5-bit option length
	f.Add(append(hdr(31, 0, 1, 1, 31), make([]byte, 124)...)) // the same, overrunning the area
	f.Add(maxEmpty[:n-1])                                     // 252 bytes of options, one short
	f.Add(hdr(63))                                            // opt len 63 and nothing behind it
	f.Add(hdr(0x01, 0, 1, 0x81, 0xe0))                        // critical, reserved bits set
	f.Add(append(hdr(0x01, 0, 1, 1, 0), hdr(0x3f)...))        // another header where the payload starts
	inner := mustHex(f, innerUDP)
	f.Fuzz(func(t *testing.T, b []byte) {
		b = b[:len(b):len(b)] // so that any read past the end panics
		known := func(class uint16, typ uint8) bool { return class&1 == 0 || typ == 3 }
		g := Geneve(b)
		err := g.Validate(known)
		if want := refGeneveValidate(b, known); err != want {
			t.Fatalf("Validate = %v, reference reading %v", err, want)
		}

		// Walk the options whatever Validate said: the iterator must stay
		// inside the options area that b holds.
		area := 0
		if len(b) >= GeneveLen {
			area = min(g.HeaderLen(), len(b)) - GeneveLen
		}
		walked := 0
		var opts []GeneveOption
		for it := g.Options(); ; {
			o, ok := it.Next()
			if !ok {
				break
			}
			dataOff := GeneveLen + walked + GeneveOptLen
			walked += GeneveOptLen + len(o.Data)
			if walked > area || len(o.Data)%4 != 0 || len(o.Data) > GeneveMaxOptData || cap(o.Data) != len(o.Data) {
				t.Fatalf("option %d past the area (%d > %d) or badly sized (%d, cap %d)", len(opts), walked, area, len(o.Data), cap(o.Data))
			}
			if len(o.Data) > 0 && &o.Data[0] != &b[dataOff] {
				t.Fatalf("option %d data is not a view of the packet at %d", len(opts), dataOff)
			}
			opts = append(opts, o)
		}
		walkable := len(b) >= GeneveLen && g.Version() == 0 && g.HeaderLen() <= len(b) && walked == g.OptionsLen()
		structural := err == ErrTruncated || err == ErrGeneveVersion || err == ErrGeneveOptions
		if structural == walkable {
			t.Fatalf("Validate = %v, yet walkable = %v", err, walkable)
		}
		if err != nil {
			return
		}

		// A valid header re-encodes from what a receiver parsed.
		hl := g.HeaderLen()
		out := make([]byte, GeneveMaxLen)
		m, err := Geneve(out).Encode(&GeneveFields{VNI: g.VNI(), Control: g.Control(), Critical: g.Critical(), Protocol: g.Protocol(), Options: opts})
		if err != nil || m != hl {
			t.Fatalf("re-encode: %d bytes, %v; header is %d", m, err, hl)
		}
		// For a header with zero reserved bits and C set whenever an
		// option is critical, want is b[:hl] itself.
		want := canonicalGeneve(b[:hl], true)
		if !bytes.Equal(out[:m], want) {
			t.Fatalf("re-encoded\n%x\nwant\n%x", out[:m], want)
		}

		// EncapGeneveV4 with the same options writes the same header, C
		// now derived from the options alone.
		buf := make([]byte, Headroom+len(inner))
		copy(buf[Headroom:], inner)
		tun := testTunnel
		tun.DstPort = GenevePort
		o, err := encapGeneveV4(buf, Headroom, len(inner), &tun, g.VNI(), opts, 51234)
		if err != nil {
			t.Fatalf("EncapGeneveV4: %v", err)
		}
		pkt := buf[o:]
		ov, err := ParseOuterV4(pkt)
		if err != nil {
			t.Fatalf("ParseOuterV4: %v", err)
		}
		sent := Geneve(pkt[ov.Payload : ov.Payload+ov.PayloadLen])
		if err := sent.Validate(known); err != nil {
			t.Fatalf("sent header invalid: %v", err)
		}
		if !bytes.Equal(sent[:sent.HeaderLen()], canonicalGeneve(b[:hl], false)) {
			t.Fatalf("sent\n%x\nwant\n%x", []byte(sent[:sent.HeaderLen()]), canonicalGeneve(b[:hl], false))
		}
		if !bytes.Equal(sent[sent.HeaderLen()+EthernetLen:], inner) {
			t.Fatal("inner packet changed")
		}
	})
}
