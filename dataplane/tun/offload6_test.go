package tun

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

var (
	pod6A = netip.MustParseAddr("fd00:1:1::10")
	pod6B = netip.MustParseAddr("fd00:1:2::20")
)

// superPacket6 builds a TCPv6 super-packet the way the kernel hands one to
// a TUN with TSO6: one header (behind ext, if any), a long payload, the
// TCP checksum partial, a traffic class and flow label that every segment
// must keep.
func superPacket6(payload []byte, flags byte, ext ...pkttest.Ext) []byte {
	h := pkttest.IPv6{Src: pod6A, Dst: pod6B, TrafficClass: 0xb8, FlowLabel: 0x12345, HopLimit: 63, Ext: ext}
	return h.TCP(pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 0xfffff000, Ack: 77, Flags: flags, Window: 512, Partial: true}, payload)
}

// pseudo6Bytes is the IPv6 pseudo-header (RFC 8200 section 8.1) of an
// upper-layer packet of length bytes and protocol proto in the IPv6
// packet p, written out byte by byte: the addresses, the length as 32
// bits, three zero bytes and the next header.
func pseudo6Bytes(p []byte, proto uint8, length int) []byte {
	b := make([]byte, 40)
	copy(b, p[8:40])
	binary.BigEndian.PutUint32(b[32:], uint32(length))
	b[39] = proto
	return b
}

// transportValid6 reports whether the TCP or UDP packet at p[l4:] checks
// out against the pseudo-header of the IPv6 packet p, computed without
// encap: the checksum over the pseudo-header and the segment is zero.
func transportValid6(p []byte, l4 int, proto uint8) bool {
	seg := p[l4:]
	return checksum(append(pseudo6Bytes(p, proto, len(seg)), seg...), 0) == 0
}

func TestTCP6Segmentation(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const mss = 1370 // a 1430-byte pod MTU (VXLAN over IPv6) less 60
	for _, ext := range [][]pkttest.Ext{nil, {pkttest.DestOpts(1)}, {pkttest.HopByHop(1), pkttest.DestOpts(2)}} {
		extLen := 0
		for _, e := range ext {
			extLen += len(e.Body)
		}
		for _, size := range []int{1, mss, mss + 1, 2 * mss, 60000, 65535 - 40 - 20 - extLen} {
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(r.Uint32())
			}
			pkt := superPacket6(payload, 0x18|0x01|0x80, ext...) // ACK PSH FIN CWR
			kind, hdrLen, l4, segs, err := superLayout(vnetGSOTCPv6, pkt, mss)
			if err != nil || kind != superTCP6 || l4 != 40+extLen || hdrLen != l4+20 {
				t.Fatalf("ext %d size %d: layout %v %d %d %d %v", extLen, size, kind, hdrLen, l4, segs, err)
			}
			if want := (size + mss - 1) / mss; segs != want {
				t.Fatalf("size %d: %d segments, want %d", size, segs, want)
			}
			var joined []byte
			seq := uint32(0xfffff000)
			for i := 0; i < segs; i++ {
				dst := make([]byte, 1500)
				n := tcp6Segment(dst, pkt, hdrLen, l4, mss, i, segs)
				p := dst[:n]
				if p[0]>>4 != 6 || int(binary.BigEndian.Uint16(p[4:])) != n-40 || n > hdrLen+mss {
					t.Fatalf("ext %d size %d seg %d: bad IPv6 header, %d bytes", extLen, size, i, n)
				}
				// Everything of the headers but the payload length and
				// the TCP sequence, flags and checksum is the
				// super-packet's.
				if !bytes.Equal(p[:4], pkt[:4]) || !bytes.Equal(p[6:l4+4], pkt[6:l4+4]) || !bytes.Equal(p[l4+8:l4+13], pkt[l4+8:l4+13]) {
					t.Fatalf("ext %d seg %d: headers differ from the super-packet's", extLen, i)
				}
				if !transportValid6(p, l4, encap.ProtoTCP) {
					t.Fatalf("ext %d size %d seg %d: bad TCP checksum", extLen, size, i)
				}
				tcp := p[l4:]
				if got := binary.BigEndian.Uint32(tcp[4:]); got != seq {
					t.Fatalf("seg %d seq %#x want %#x", i, got, seq)
				}
				seq += uint32(n - hdrLen)
				last := i == segs-1
				if fin := tcp[13]&0x01 != 0; fin != last {
					t.Fatalf("seg %d FIN %v", i, fin)
				}
				if psh := tcp[13]&0x08 != 0; psh != last {
					t.Fatalf("seg %d PSH %v", i, psh)
				}
				if cwr := tcp[13]&0x80 != 0; cwr != (i == 0) {
					t.Fatalf("seg %d CWR %v", i, cwr)
				}
				joined = append(joined, tcp[20:]...)
			}
			if !bytes.Equal(joined, payload) {
				t.Fatalf("ext %d size %d: segments do not add up to the payload", extLen, size)
			}
		}
	}
}

func TestUDP6Segmentation(t *testing.T) {
	payload := make([]byte, 950)
	for i := range payload {
		payload[i] = byte(i/100 + 1)
	}
	for _, ext := range [][]pkttest.Ext{nil, {pkttest.DestOpts(1)}} {
		pkt := pkttest.IPv6{Src: pod6A, Dst: pod6B, FlowLabel: 7, Ext: ext}.UDP(4000, 5000, payload)
		// The kernel's super-packet carries a partial checksum; what is
		// in the field must not matter.
		kind, hdrLen, l4, segs, err := superLayout(vnetGSOUDPL4, pkt, 100)
		if err != nil || kind != superUDP6 || hdrLen != l4+8 || segs != 10 {
			t.Fatalf("layout %v %d %d %d %v", kind, hdrLen, l4, segs, err)
		}
		var joined []byte
		for i := range segs {
			dst := make([]byte, 1500)
			n := udp6Segment(dst, pkt, hdrLen, l4, 100, i)
			p := dst[:n]
			want := min(100, len(payload)-i*100)
			if n != hdrLen+want || int(binary.BigEndian.Uint16(p[4:])) != n-40 || int(binary.BigEndian.Uint16(p[l4+4:])) != 8+want {
				t.Fatalf("datagram %d: %d bytes, lengths %d/%d", i, n, binary.BigEndian.Uint16(p[4:]), binary.BigEndian.Uint16(p[l4+4:]))
			}
			if binary.BigEndian.Uint16(p[l4+6:]) == 0 || !transportValid6(p, l4, encap.ProtoUDP) {
				t.Fatalf("datagram %d: bad UDP checksum", i)
			}
			joined = append(joined, p[hdrLen:]...)
		}
		if !bytes.Equal(joined, payload) {
			t.Fatal("datagrams do not add up to the payload")
		}
	}
}

// A super-packet whose GSO type disagrees with its IP version, or whose
// headers the segmentation cannot reproduce, is refused.
func TestSuperLayoutRejects(t *testing.T) {
	v6 := superPacket6(make([]byte, 3000), 0x10)
	v4 := superPacket(make([]byte, 3000), 0x10)
	udp6 := pkttest.UDP6(netip.AddrPortFrom(pod6A, 1), netip.AddrPortFrom(pod6B, 2), make([]byte, 300))
	nine := make([]pkttest.Ext, 9)
	for i := range nine {
		nine[i] = pkttest.DestOpts(1)
	}
	for name, c := range map[string]struct {
		gso uint8
		pkt []byte
	}{
		"TCPv4 type on IPv6":       {vnetGSOTCPv4, v6},
		"TCPv6 type on IPv4":       {vnetGSOTCPv6, v4},
		"TCPv6 type on UDP":        {vnetGSOTCPv6, udp6},
		"UDP type on TCPv6":        {vnetGSOUDPL4, v6},
		"unknown type":             {2, v6},
		"short":                    {vnetGSOTCPv6, v6[:50]},
		"payload length past end":  {vnetGSOTCPv6, v6[:1000]},
		"routing header":           {vnetGSOTCPv6, superPacket6(make([]byte, 3000), 0x10, pkttest.Ext{Proto: encap.ProtoIPv6Route, Body: make([]byte, 8)})},
		"fragment header":          {vnetGSOTCPv6, superPacket6(make([]byte, 3000), 0x10, pkttest.Fragment(0, true, 1))},
		"hop-by-hop not first":     {vnetGSOTCPv6, superPacket6(make([]byte, 3000), 0x10, pkttest.DestOpts(1), pkttest.HopByHop(1))},
		"too many options headers": {vnetGSOTCPv6, superPacket6(make([]byte, 3000), 0x10, nine...)},
		"tcp data offset 4": {vnetGSOTCPv6, func() []byte {
			b := bytes.Clone(v6)
			b[40+12] = 4 << 4
			return b
		}()},
		"options header past the end": {vnetGSOTCPv6, func() []byte {
			b := superPacket6(nil, 0x10, pkttest.DestOpts(1))
			b[41] = 200 // 1608 bytes long
			return b
		}()},
	} {
		if _, _, _, _, err := superLayout(c.gso, c.pkt, 1370); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, _, _, _, err := superLayout(vnetGSOTCPv6, v6, 0); err == nil {
		t.Error("gso size 0 accepted")
	}
	if _, _, _, _, err := superLayout(vnetGSOUDPL4, udp6, 0); err == nil {
		t.Error("UDP gso size 0 accepted")
	}
}

// cutSegments6 is cutSegments for a TCPv6 super-packet.
func cutSegments6(super []byte, mss, off int) [][]byte {
	hdrLen, l4, segs, err := tcp6Layout(super, mss)
	if err != nil {
		panic(err)
	}
	var bufs [][]byte
	for i := range segs {
		b := make([]byte, off+1500)
		bufs = append(bufs, b[:off+tcp6Segment(b[off:], super, hdrLen, l4, mss, i, segs)])
	}
	return bufs
}

// IPv6 segments cut from a super-packet merge back into it, and cutting
// the merged packet the way the kernel does (and Read does) gives back
// the very segments that were merged.
func TestGROMergeRoundTrip6(t *testing.T) {
	const mss = 1370
	payload := make([]byte, 5*mss+100)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	pkts := cutSegments6(superPacket6(payload, 0x18), mss, 0) // ACK PSH: PSH lands on the last segment
	f, ok := tcpRun(pkts)
	if !ok || !f.v6 || f.l4 != 40 || f.hdrLen != 60 {
		t.Fatalf("the segments do not make a run: %+v %v", f, ok)
	}
	out := make([]byte, vnetHdrLen+groMaxLen)
	n := groMerge(out, pkts, f)
	h := parseVnetHdr(out)
	if h.gsoType != vnetGSOTCPv6 || h.gsoSize != mss || h.flags != vnetFlagNeedsCsum || h.hdrLen != 60 || h.csumStart != 40 || h.csumOffset != 16 {
		t.Fatalf("header %+v", h)
	}
	m := bytes.Clone(out[vnetHdrLen:n])
	if int(binary.BigEndian.Uint16(m[4:])) != len(m)-40 || !bytes.Equal(m[60:], payload) || !bytes.Equal(m[:4], pkts[0][:4]) {
		t.Fatal("merged packet wrong")
	}
	if m[40+13] != 0x18 || binary.BigEndian.Uint32(m[44:]) != 0xfffff000 {
		t.Fatalf("flags %#x seq %#x", m[53], binary.BigEndian.Uint32(m[44:]))
	}
	// The partial checksum is the folded pseudo-header sum over the
	// merged length, computed here from the bytes.
	ps := pseudo6Bytes(m, encap.ProtoTCP, len(m)-40)
	if got, want := binary.BigEndian.Uint16(m[56:]), ^checksum(ps, 0); got != want {
		t.Fatalf("partial checksum %#04x, want %#04x", got, want)
	}
	// The kernel's view: cutting the super-packet at gso_size gives the
	// segments that went in.
	kind, hdrLen, l4, segs, err := superLayout(h.gsoType, m, int(h.gsoSize))
	if err != nil || kind != superTCP6 || segs != len(pkts) {
		t.Fatalf("merged packet does not cut: %v %d %v", kind, segs, err)
	}
	for i := range segs {
		seg := make([]byte, 1500)
		sn := tcp6Segment(seg, m, hdrLen, l4, mss, i, segs)
		if !bytes.Equal(seg[:sn], pkts[i]) {
			t.Fatalf("segment %d cut from the merged packet differs from the one merged", i)
		}
	}
	// And finishing the partial checksum, as a receiver trusting
	// NEEDS_CSUM would, makes it valid.
	if err := finishChecksum(m, h); err != nil {
		t.Fatal(err)
	}
	if !transportValid6(m, 40, encap.ProtoTCP) {
		t.Fatal("checksum does not finish")
	}
}

func TestGROCandidateRejects6(t *testing.T) {
	good := cutSegments6(superPacket6(make([]byte, 1370), 0x10), 1370, 0)[0]
	if _, ok := groCandidate(good, false); !ok {
		t.Fatal("good segment refused")
	}
	for name, pkt := range map[string][]byte{
		"bad checksum":   func() []byte { b := bytes.Clone(good); b[70] ^= 1; return b }(),
		"SYN":            func() []byte { b := bytes.Clone(good); b[53] |= 0x02; return b }(),
		"no payload":     superPacket6(nil, 0x10),
		"options header": cutSegments6(superPacket6(make([]byte, 1370), 0x10, pkttest.DestOpts(1)), 1370, 0)[0],
		"fragment": pkttest.IPv6{Src: pod6A, Dst: pod6B, Ext: []pkttest.Ext{pkttest.Fragment(0, true, 1)}}.TCP(
			pkttest.TCP{SrcPort: 1, DstPort: 2, Flags: 0x10}, make([]byte, 100)),
		"payload length past end": good[:len(good)-1],
	} {
		if _, ok := groCandidate(pkt, false); ok {
			t.Errorf("%s accepted", name)
		}
	}
}

// retouchTCP6 changes the IPv6 TCP segment p with fn (which may change
// the IPv6 header too) and fixes its checksum.
func retouchTCP6(p []byte, fn func(ip encap.IPv6, tcp encap.TCP)) []byte {
	ip := encap.IPv6(p)
	tcp := encap.TCP(ip.Payload())
	fn(ip, tcp)
	encap.SetTCPChecksumV6(ip, tcp)
	return p
}

// A run of IPv6 segments ends where the flow's IPv6 header changes, as an
// IPv4 run ends where the IPv4 header does; the families never mix.
func TestCollectRun6(t *testing.T) {
	const off, mss = 8, 1370
	segs := func() [][]byte { return cutSegments6(superPacket6(make([]byte, 5*mss+100), 0x10), mss, off) }
	cases := []struct {
		name    string
		bufs    func() [][]byte
		wantRun int
	}{
		{"a whole run", segs, 6},
		{"another flow label", func() [][]byte {
			b := segs()
			retouchTCP6(b[2][off:], func(ip encap.IPv6, _ encap.TCP) { ip.SetFlowLabel(99) })
			return b
		}, 2},
		{"another traffic class", func() [][]byte {
			b := segs()
			retouchTCP6(b[3][off:], func(ip encap.IPv6, _ encap.TCP) { ip.SetTrafficClass(0) })
			return b
		}, 3},
		{"another hop limit", func() [][]byte {
			b := segs()
			retouchTCP6(b[1][off:], func(ip encap.IPv6, _ encap.TCP) { ip.SetHopLimit(62) })
			return b
		}, 1},
		{"another destination", func() [][]byte {
			b := segs()
			retouchTCP6(b[4][off:], func(ip encap.IPv6, _ encap.TCP) { ip[39]++ })
			return b
		}, 4},
		{"another ack", func() [][]byte {
			b := segs()
			retouchTCP6(b[2][off:], func(_ encap.IPv6, tcp encap.TCP) { binary.BigEndian.PutUint32(tcp[8:], 78) })
			return b
		}, 2},
		{"a sequence gap", func() [][]byte {
			b := segs()
			return append(b[:3], b[4:]...)
		}, 3},
		{"an IPv4 segment of the same size", func() [][]byte {
			b := segs()
			v4 := cutSegments(superPacket(make([]byte, 3*(mss+20)), 0x10), mss+20, off)
			return append(b[:2], v4...)
		}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &Device{}
			d.run = make([][]byte, 0, groMaxSegs)
			bufs := c.bufs()
			f, ok := d.mergeStart(bufs[0][off:], false)
			if !ok || !f.v6 {
				t.Fatalf("mergeStart = %+v, %v", f, ok)
			}
			if j := d.collectRun(bufs, nil, off, 0, f); len(d.run) != c.wantRun || j != c.wantRun {
				t.Fatalf("run of %d, next %d; want %d", len(d.run), j, c.wantRun)
			}
		})
	}
}

// Datagrams of one IPv6 UDP flow merge into a UDP GSO super-packet whose
// cut gives them back; a datagram without a checksum, invalid over IPv6,
// does not merge.
func TestUDPMerge6(t *testing.T) {
	src, dst := netip.AddrPortFrom(pod6A, 4000), netip.AddrPortFrom(pod6B, 5000)
	var pkts [][]byte
	for i := range 5 {
		pkts = append(pkts, pkttest.UDP6(src, dst, bytes.Repeat([]byte{byte(i + 1)}, 200)))
	}
	pkts = append(pkts, pkttest.UDP6(src, dst, []byte("short last")))
	f, ok := udpCandidate(pkts[0], false)
	if !ok || !f.v6 || f.hdrLen != 48 {
		t.Fatalf("udpCandidate = %+v, %v", f, ok)
	}
	for i, p := range pkts[1:] {
		if s, ok := udpCandidate(p, false); !ok || !udpFollows(pkts[0], f, p, s) {
			t.Fatalf("datagram %d does not follow", i+1)
		}
	}
	other := pkttest.UDP6(netip.AddrPortFrom(pod6A, 4001), dst, make([]byte, 200))
	if s, ok := udpCandidate(other, false); !ok || udpFollows(pkts[0], f, other, s) {
		t.Fatal("another source port follows")
	}
	v4 := udp4(netip.MustParseAddrPort("198.51.100.1:4000"), netip.MustParseAddrPort("192.0.2.10:5000"), make([]byte, 200))
	if s, ok := udpCandidate(v4, false); !ok || udpFollows(pkts[0], f, v4, s) {
		t.Fatal("an IPv4 datagram follows an IPv6 one")
	}
	noSum := bytes.Clone(pkts[1])
	noSum[46], noSum[47] = 0, 0
	if _, ok := udpCandidate(noSum, false); ok {
		t.Fatal("an IPv6 datagram without a checksum accepted")
	}

	out := make([]byte, vnetHdrLen+groMaxLen)
	n := groMerge(out, pkts, f)
	h := parseVnetHdr(out)
	if h.gsoType != vnetGSOUDPL4 || h.gsoSize != 200 || h.hdrLen != 48 || h.csumStart != 40 || h.csumOffset != 6 || h.flags != vnetFlagNeedsCsum {
		t.Fatalf("header %+v", h)
	}
	m := out[vnetHdrLen:n]
	if l := binary.BigEndian.Uint16(m[44:]); int(l) != len(m)-40 || int(binary.BigEndian.Uint16(m[4:])) != len(m)-40 {
		t.Fatalf("lengths %d/%d for %d bytes", binary.BigEndian.Uint16(m[4:]), l, len(m))
	}
	if got, want := binary.BigEndian.Uint16(m[46:]), ^checksum(pseudo6Bytes(m, encap.ProtoUDP, len(m)-40), 0); got != want {
		t.Fatalf("partial checksum %#04x, want %#04x", got, want)
	}
	kind, hdrLen, l4, segs, err := superLayout(h.gsoType, m, int(h.gsoSize))
	if err != nil || kind != superUDP6 || segs != len(pkts) {
		t.Fatalf("merged packet does not cut: %v %d %v", kind, segs, err)
	}
	for i := range segs {
		seg := make([]byte, 1500)
		sn := udp6Segment(seg, m, hdrLen, l4, 200, i)
		if !bytes.Equal(seg[:sn], pkts[i]) {
			t.Fatalf("datagram %d cut from the merged packet differs from the one merged", i)
		}
	}
}

// FuzzSuperLayout feeds arbitrary packets as super-packets of every GSO
// type: nothing panics, and whatever is accepted cuts into packets whose
// lengths agree with their IP headers and whose transport checksums
// verify.
func FuzzSuperLayout(f *testing.F) {
	f.Add(uint8(vnetGSOTCPv6), uint16(1370), superPacket6(make([]byte, 3000), 0x18))
	f.Add(uint8(vnetGSOTCPv6), uint16(100), superPacket6(make([]byte, 300), 0x10, pkttest.HopByHop(1), pkttest.DestOpts(1)))
	f.Add(uint8(vnetGSOUDPL4), uint16(100), pkttest.UDP6(netip.AddrPortFrom(pod6A, 1), netip.AddrPortFrom(pod6B, 2), make([]byte, 450)))
	f.Add(uint8(vnetGSOTCPv4), uint16(1398), superPacket(make([]byte, 3000), 0x18))
	f.Add(uint8(vnetGSOUDPL4), uint16(100), udp4(netip.MustParseAddrPort("198.51.100.1:1"), netip.MustParseAddrPort("192.0.2.1:2"), make([]byte, 450)))
	dst := make([]byte, encap.IPv6Len+65535)
	f.Fuzz(func(t *testing.T, gso uint8, gsoSize uint16, pkt []byte) {
		kind, hdrLen, l4, segs, err := superLayout(gso, pkt, int(gsoSize))
		if err != nil {
			return
		}
		if segs < 1 || hdrLen > len(pkt) || segs > 65536 {
			t.Fatalf("layout %v %d %d %d for %d bytes", kind, hdrLen, l4, segs, len(pkt))
		}
		for i := range min(segs, 3) {
			switch kind {
			case superTCP4:
				n := tcp4Segment(dst, pkt, hdrLen, int(gsoSize), i, segs)
				if ip := encap.IPv4(dst[:n]); !ip.IsValid(n) || ip.TotalLen() != n || encap.Checksum(ip.Payload(), ip.PseudoHeaderSum(encap.ProtoTCP, n-ip.HeaderLen())) != 0 {
					t.Fatalf("TCPv4 segment %d invalid", i)
				}
			case superUDP4:
				n := udp4Segment(dst, pkt, hdrLen, int(gsoSize), i)
				if ip := encap.IPv4(dst[:n]); !ip.IsValid(n) || ip.TotalLen() != n {
					t.Fatalf("UDPv4 datagram %d invalid", i)
				}
			case superTCP6:
				n := tcp6Segment(dst, pkt, hdrLen, l4, int(gsoSize), i, segs)
				if int(binary.BigEndian.Uint16(dst[4:])) != n-40 || !transportValid6(dst[:n], l4, encap.ProtoTCP) {
					t.Fatalf("TCPv6 segment %d invalid", i)
				}
			case superUDP6:
				n := udp6Segment(dst, pkt, hdrLen, l4, int(gsoSize), i)
				if int(binary.BigEndian.Uint16(dst[4:])) != n-40 || int(binary.BigEndian.Uint16(dst[l4+4:])) != n-l4 || !transportValid6(dst[:n], l4, encap.ProtoUDP) {
					t.Fatalf("UDPv6 datagram %d invalid", i)
				}
			}
		}
	})
}

func BenchmarkTCP6Segment(b *testing.B) {
	pkt := superPacket6(make([]byte, 65000), 0x10)
	hdrLen, l4, segs, _ := tcp6Layout(pkt, 1370)
	dst := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(65000)
	for b.Loop() {
		for i := 0; i < segs; i++ {
			tcp6Segment(dst, pkt, hdrLen, l4, 1370, i, segs)
		}
	}
}
