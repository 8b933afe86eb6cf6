package encap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Extension headers written out by hand, each with valid contents as RFC
// 8200 and RFC 4302 describe them.

// optsHdr is a Hop-by-Hop or Destination Options header of size bytes (a
// multiple of 8) whose options are one PadN filling it.
func optsHdr(nh uint8, size int) []byte {
	h := make([]byte, size)
	h[0], h[1] = nh, byte(size/8-1)
	h[2], h[3] = 1, byte(size-4) // PadN: type 1, length of the zeros after it
	return h
}

// routingHdr is a type 0 Routing header listing addrs addresses, no segment
// left (RFC 5095 deprecates type 0 at the destination; a forwarding node
// passes it, and gopacket decodes no other type).
func routingHdr(nh uint8, addrs int) []byte {
	h := make([]byte, 8+16*addrs)
	h[0], h[1] = nh, byte(2*addrs)
	for i := 8; i < len(h); i++ {
		h[i] = byte(i)
	}
	return h
}

// fragHdr is a Fragment header for the fragment at offset bytes (a multiple
// of 8), M set if more follow.
func fragHdr(nh uint8, offset int, more bool) []byte {
	h := make([]byte, 8)
	h[0] = nh
	w := uint16(offset)
	if more {
		w |= 1
	}
	binary.BigEndian.PutUint16(h[2:], w)
	binary.BigEndian.PutUint32(h[4:], 0xdeadbeef)
	return h
}

// ahHdr is an Authentication Header whose length field is lenField: (lenField
// + 2) * 4 bytes.
func ahHdr(nh uint8, lenField uint8) []byte {
	n := (int(lenField) + 2) * 4
	h := make([]byte, max(n, 12))
	h[0], h[1] = nh, lenField
	binary.BigEndian.PutUint32(h[4:], 0x100) // SPI
	binary.BigEndian.PutUint32(h[8:], 7)     // sequence number
	return h[:max(n, 8)]
}

// walkRef is UpperLayer written another way, recursively, from the rules
// in its doc comment: the fuzz target holds the two to the same answers.
func walkRef(b []byte) (IPv6Upper, error) {
	if len(b) < 40 {
		return IPv6Upper{}, ErrIPv6ExtTruncated
	}
	end := 40 + (int(b[4])<<8 | int(b[5]))
	if end > len(b) {
		return IPv6Upper{}, ErrIPv6ExtTruncated
	}
	return walkRefFrom(b[:end], b[6], 40, 0, false, IPv6Upper{})
}

func walkRefFrom(p []byte, typ uint8, off, depth int, fragSeen bool, u IPv6Upper) (IPv6Upper, error) {
	if typ != 0 && typ != 43 && typ != 44 && typ != 51 && typ != 60 {
		u.Proto, u.Offset = typ, off
		return u, nil
	}
	if depth == 8 {
		return IPv6Upper{}, ErrIPv6ExtTooMany
	}
	rest := p[off:]
	if len(rest) < 8 {
		return IPv6Upper{}, ErrIPv6ExtTruncated
	}
	var size int
	switch typ {
	case 0, 43, 60:
		if typ == 0 && off != 40 {
			return IPv6Upper{}, ErrIPv6ExtMalformed
		}
		size = 8 * (1 + int(rest[1]))
	case 51:
		size = 4 * (2 + int(rest[1]))
		if size < 12 || size%8 != 0 {
			return IPv6Upper{}, ErrIPv6ExtMalformed
		}
	case 44:
		if fragSeen {
			return IPv6Upper{}, ErrIPv6ExtMalformed
		}
		fragSeen, size = true, 8
		at := (int(rest[2])<<8 | int(rest[3])) >> 3 * 8
		if more := rest[3]&1 == 1; at > 0 || more {
			u.Fragment, u.FragmentOffset = true, at
		}
		if at > 0 {
			u.Proto, u.Offset = 44, off+8
			return u, nil
		}
	}
	if size > len(rest) {
		return IPv6Upper{}, ErrIPv6ExtTruncated
	}
	return walkRefFrom(p, rest[0], off+size, depth+1, fragSeen, u)
}

// gopacketUpper checks what UpperLayer found in pkt against gopacket's
// decoding: the transport layer, or the Fragment header that ends
// gopacket's decoding, starts where UpperLayer says.
func gopacketUpper(t *testing.T, pkt []byte, u IPv6Upper) {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv6, gopacket.Default)
	offset := func(l gopacket.Layer) int { return len(pkt) - len(l.LayerContents()) - len(l.LayerPayload()) }
	if u.Fragment {
		f, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
		if !ok {
			t.Fatal("gopacket finds no fragment header")
		}
		if int(f.FragmentOffset)*8 != u.FragmentOffset {
			t.Errorf("fragment offset %d, gopacket %d", u.FragmentOffset, int(f.FragmentOffset)*8)
		}
		if !u.FirstFragment() && offset(f)+8 != u.Offset {
			t.Errorf("fragment data at %d, gopacket %d", u.Offset, offset(f)+8)
		}
		return
	}
	for _, l := range p.Layers() {
		var proto uint8
		switch l.LayerType() {
		case layers.LayerTypeTCP:
			proto = ProtoTCP
		case layers.LayerTypeUDP:
			proto = ProtoUDP
		case layers.LayerTypeICMPv6:
			proto = ProtoICMPv6
		default:
			continue
		}
		if proto != u.Proto || offset(l) != u.Offset {
			t.Errorf("upper layer %d at %d, gopacket %d at %d", u.Proto, u.Offset, proto, offset(l))
		}
		return
	}
	t.Fatalf("gopacket finds no transport layer: %v", p)
}

func TestUpperLayer(t *testing.T) {
	ip := func(nh uint8) *layers.IPv6 { return gpIPv6(pod6A, pod6B, nh) }
	udp := gpUDP6(t, ip(ProtoUDP), 40000, 5201, []byte("vxdp"))
	tcp := gpTCP6(t, ip(ProtoTCP), 40000, 443, []byte("vxdp"))
	nine := make([][]byte, 0, 10)
	for range 9 {
		nine = append(nine, optsHdr(ProtoIPv6Opts, 8))
	}
	eight := append(bytes.Clone(nine[0]), bytes.Join(nine[1:8], nil)...)
	eight[len(eight)-8] = ProtoUDP
	nineThenUDP := bytes.Join(nine, nil)
	nineThenUDP[len(nineThenUDP)-8] = ProtoUDP
	tests := []struct {
		name     string
		pkt      []byte
		want     IPv6Upper
		err      error
		gopacket bool // decodable by gopacket: cross-check
	}{
		{"plain tcp", packet6(t, ip(ProtoTCP), tcp), IPv6Upper{Proto: ProtoTCP, Offset: 40}, nil, true},
		{"plain udp", packet6(t, ip(ProtoUDP), udp), IPv6Upper{Proto: ProtoUDP, Offset: 40}, nil, true},
		{"hop-by-hop, tcp", packet6(t, ip(ProtoHopByHop), optsHdr(ProtoTCP, 8), tcp), IPv6Upper{Proto: ProtoTCP, Offset: 48}, nil, true},
		{"hop-by-hop, dest opts, routing, atomic fragment, udp",
			packet6(t, ip(ProtoHopByHop), optsHdr(ProtoIPv6Opts, 16), optsHdr(ProtoIPv6Route, 8), routingHdr(ProtoIPv6Frag, 1),
				fragHdr(ProtoUDP, 0, false), udp),
			IPv6Upper{Proto: ProtoUDP, Offset: 40 + 16 + 8 + 24 + 8}, nil, false},
		{"routing, udp", packet6(t, ip(ProtoIPv6Route), routingHdr(ProtoUDP, 2), udp), IPv6Upper{Proto: ProtoUDP, Offset: 80}, nil, true},
		{"dest opts, tcp", packet6(t, ip(ProtoIPv6Opts), optsHdr(ProtoTCP, 24), tcp), IPv6Upper{Proto: ProtoTCP, Offset: 64}, nil, true},
		{"ah, tcp", packet6(t, ip(ProtoAH), ahHdr(ProtoTCP, 4), tcp), IPv6Upper{Proto: ProtoTCP, Offset: 64}, nil, true},
		{"first fragment", packet6(t, ip(ProtoIPv6Frag), fragHdr(ProtoUDP, 0, true), udp),
			IPv6Upper{Proto: ProtoUDP, Offset: 48, Fragment: true}, nil, true},
		{"first fragment, dest opts after", packet6(t, ip(ProtoIPv6Frag), fragHdr(ProtoIPv6Opts, 0, true), optsHdr(ProtoTCP, 8), tcp),
			IPv6Upper{Proto: ProtoTCP, Offset: 56, Fragment: true}, nil, false},
		{"middle fragment", packet6(t, ip(ProtoIPv6Frag), fragHdr(ProtoUDP, 1448, true), []byte("data of the middle")),
			IPv6Upper{Proto: ProtoIPv6Frag, Offset: 48, Fragment: true, FragmentOffset: 1448}, nil, true},
		{"last fragment behind hop-by-hop", packet6(t, ip(ProtoHopByHop), optsHdr(ProtoIPv6Frag, 8), fragHdr(ProtoTCP, 8, false), []byte("tail")),
			IPv6Upper{Proto: ProtoIPv6Frag, Offset: 56, Fragment: true, FragmentOffset: 8}, nil, true},
		{"esp ends the walk", packet6(t, ip(ProtoIPv6Opts), optsHdr(ProtoESP, 8), []byte("encrypted, with a next header inside")),
			IPv6Upper{Proto: ProtoESP, Offset: 48}, nil, false},
		{"no next header", packet6(t, ip(ProtoIPv6NoNext), []byte("ignored")), IPv6Upper{Proto: ProtoIPv6NoNext, Offset: 40}, nil, false},
		{"no next header after options", packet6(t, ip(ProtoHopByHop), optsHdr(ProtoIPv6NoNext, 8)),
			IPv6Upper{Proto: ProtoIPv6NoNext, Offset: 48}, nil, false},
		{"icmpv6", packet6(t, ip(ProtoICMPv6), []byte{128, 0, 0, 0, 0, 1, 0, 1}), IPv6Upper{Proto: ProtoICMPv6, Offset: 40}, nil, false},
		{"mobility is opaque", packet6(t, ip(135), make([]byte, 8)), IPv6Upper{Proto: 135, Offset: 40}, nil, false},
		{"experimental is opaque", packet6(t, ip(253), make([]byte, 8)), IPv6Upper{Proto: 253, Offset: 40}, nil, false},
		{"no payload", packet6(t, ip(ProtoTCP)), IPv6Upper{Proto: ProtoTCP, Offset: 40}, nil, false},
		{"options then nothing", packet6(t, ip(ProtoHopByHop), optsHdr(ProtoTCP, 8)), IPv6Upper{Proto: ProtoTCP, Offset: 48}, nil, false},
		{"eight headers", packet6(t, ip(ProtoIPv6Opts), eight, udp), IPv6Upper{Proto: ProtoUDP, Offset: 40 + 64}, nil, true},

		{"nine headers", packet6(t, ip(ProtoIPv6Opts), nineThenUDP, udp), IPv6Upper{}, ErrIPv6ExtTooMany, false},
		{"nine headers and a tenth cut", packet6(t, ip(ProtoIPv6Opts), bytes.Join(nine, nil)), IPv6Upper{}, ErrIPv6ExtTooMany, false},
		{"hop-by-hop second", packet6(t, ip(ProtoIPv6Opts), optsHdr(ProtoHopByHop, 8), optsHdr(ProtoTCP, 8), tcp), IPv6Upper{}, ErrIPv6ExtMalformed, false},
		{"two fragment headers", packet6(t, ip(ProtoIPv6Frag), fragHdr(ProtoIPv6Frag, 0, true), fragHdr(ProtoUDP, 0, true), udp), IPv6Upper{}, ErrIPv6ExtMalformed, false},
		{"atomic then real fragment header", packet6(t, ip(ProtoIPv6Frag), fragHdr(ProtoIPv6Frag, 0, false), fragHdr(ProtoUDP, 64, false), udp), IPv6Upper{}, ErrIPv6ExtMalformed, false},
		{"ah of 12 bytes", packet6(t, ip(ProtoAH), ahHdr(ProtoTCP, 1), make([]byte, 4), tcp), IPv6Upper{}, ErrIPv6ExtMalformed, false},
		{"ah of 8 bytes", packet6(t, ip(ProtoAH), ahHdr(ProtoTCP, 0), tcp), IPv6Upper{}, ErrIPv6ExtMalformed, false},
		{"options longer than the payload", packet6(t, ip(ProtoIPv6Opts), optsHdr(ProtoTCP, 24)[:16]), IPv6Upper{}, ErrIPv6ExtTruncated, false},
		{"options header cut short", packet6(t, ip(ProtoIPv6Opts), optsHdr(ProtoTCP, 8)[:7]), IPv6Upper{}, ErrIPv6ExtTruncated, false},
		{"extension header, no bytes", packet6(t, ip(ProtoHopByHop)), IPv6Upper{}, ErrIPv6ExtTruncated, false},
		{"fragment header cut short", packet6(t, ip(ProtoIPv6Frag), fragHdr(ProtoUDP, 8, false)[:6]), IPv6Upper{}, ErrIPv6ExtTruncated, false},
		{"ah longer than the payload", packet6(t, ip(ProtoAH), ahHdr(ProtoTCP, 4)[:16]), IPv6Upper{}, ErrIPv6ExtTruncated, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := bytes.Clone(tt.pkt)
			if !IPv6(tt.pkt).IsValid(len(tt.pkt)) {
				t.Fatal("fixture is not a valid IPv6 packet")
			}
			got, err := IPv6(tt.pkt).UpperLayer()
			if err != tt.err || got != tt.want {
				t.Fatalf("UpperLayer = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
			if ref, rerr := walkRef(tt.pkt); ref != got || rerr != err {
				t.Fatalf("reference walk = %+v, %v", ref, rerr)
			}
			if err != nil {
				var e IPv6ExtError
				if !errors.As(err, &e) || e.Error() == "" {
					t.Fatalf("error %v is not an IPv6ExtError", err)
				}
			}
			if tt.gopacket {
				gopacketUpper(t, tt.pkt, got)
			}
			if !bytes.Equal(before, tt.pkt) {
				t.Fatal("UpperLayer changed the packet")
			}
		})
	}
}

// The walk stays inside the payload length: bytes after it (Ethernet
// padding, the rest of a buffer) are never read as headers, and a chain
// cut anywhere by the payload length is refused.
func TestUpperLayerBounds(t *testing.T) {
	tcp := gpTCP6(t, gpIPv6(pod6A, pod6B, ProtoTCP), 1, 2, nil)
	pkt := packet6(t, gpIPv6(pod6A, pod6B, ProtoHopByHop), optsHdr(ProtoIPv6Opts, 16), optsHdr(ProtoIPv6Route, 8),
		routingHdr(ProtoTCP, 1), tcp)
	chainEnd := 40 + 16 + 8 + 24
	for pl := 0; pl <= len(pkt)-IPv6Len; pl++ {
		b := bytes.Clone(pkt)
		IPv6(b).SetPayloadLen(uint16(pl))
		u, err := IPv6(b).UpperLayer()
		if IPv6Len+pl < chainEnd {
			if err != ErrIPv6ExtTruncated {
				t.Fatalf("payload length %d: %+v, %v; want truncated", pl, u, err)
			}
			continue
		}
		if err != nil || u.Proto != ProtoTCP || u.Offset != chainEnd {
			t.Fatalf("payload length %d: %+v, %v", pl, u, err)
		}
	}
	// A view shorter than its payload length, or than a fixed header.
	if _, err := IPv6(pkt[:len(pkt)-1]).UpperLayer(); err != ErrIPv6ExtTruncated {
		t.Fatalf("view cut by one byte: %v", err)
	}
	if _, err := IPv6(pkt[:39]).UpperLayer(); err != ErrIPv6ExtTruncated {
		t.Fatalf("39 bytes: %v", err)
	}
}

func TestIPv6ExtErrorText(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range []IPv6ExtError{ErrIPv6ExtTooMany, ErrIPv6ExtTruncated, ErrIPv6ExtMalformed, 0} {
		if seen[e.Error()] {
			t.Fatalf("two reasons read %q", e.Error())
		}
		seen[e.Error()] = true
	}
}
