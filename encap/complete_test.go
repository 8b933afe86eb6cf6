package encap_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// completeCases are inner packets whose transport checksum TransportSumOK
// must find right from the sum of a payload that carries them.
func completeCases(data []byte) map[string][]byte {
	h4 := pkttest.IPv4{Src: netip.MustParseAddr("10.1.1.10"), Dst: netip.MustParseAddr("10.1.2.10")}
	h6 := pkttest.IPv6{Src: netip.MustParseAddr("fd00:1:1::10"), Dst: netip.MustParseAddr("fd00:1:2::10")}
	seg := pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 7, Ack: 9, Flags: pkttest.ACK, Window: 512}
	return map[string][]byte{
		"tcp4": h4.TCP(seg, data),
		"udp4": h4.UDP(40000, 5201, data),
		"tcp6": h6.TCP(seg, data),
		"udp6": h6.UDP(40000, 5201, data),
	}
}

// inPayload puts pkt behind a front of n bytes and a tail of m bytes, as a
// tunnel payload holds it (tunnel header, inner Ethernet; padding), and
// returns the payload and where pkt starts.
func inPayload(rng *rand.Rand, pkt []byte, n, m int) ([]byte, int) {
	b := make([]byte, n+len(pkt)+m)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	copy(b[n:], pkt)
	return b, n
}

func TestTransportSumOK(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 2, 3, 63, 64, 65, 1400, 1401} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		for name, pkt := range completeCases(data) {
			// Fronts of either parity (a Geneve header with options,
			// a made-up odd one) and tails of either parity.
			for _, front := range []int{0, 8 + 14, 16 + 14, 13, 1} {
				for _, tail := range []int{0, 1, 2, 7} {
					p, ip := inPayload(rng, pkt, front, tail)
					sum := encap.Sum(p, 0)
					if !encap.TransportSumOK(p, ip, sum) {
						t.Fatalf("%s size %d front %d tail %d: a right checksum not found right", name, size, front, tail)
					}
					// Any change to the segment, or to the addresses
					// of the pseudo-header, is found, as long as the
					// sum is that of the changed bytes, as a
					// receiver's is.
					l4 := ip + 20
					if name[3] == '6' {
						l4 = ip + 40
					}
					for _, at := range []int{l4, l4 + 1, len(p) - tail - 1, ip + 12, ip + 13} {
						p[at] ^= 0x04
						if encap.TransportSumOK(p, ip, encap.Sum(p, 0)) {
							t.Fatalf("%s size %d front %d tail %d: byte %d changed, still right", name, size, front, tail, at)
						}
						p[at] ^= 0x04
					}
					// A sum that is not that of the payload.
					if encap.TransportSumOK(p, ip, sum+1) {
						t.Fatalf("%s size %d: a wrong payload sum taken", name, size)
					}
				}
			}
		}
	}
}

func TestTransportSumOKNotKnown(t *testing.T) {
	h4 := pkttest.IPv4{Src: netip.MustParseAddr("10.1.1.10"), Dst: netip.MustParseAddr("10.1.2.10")}
	h6 := pkttest.IPv6{Src: netip.MustParseAddr("fd00:1:1::10"), Dst: netip.MustParseAddr("fd00:1:2::10")}
	frag := h4.UDP(1, 2, []byte("vxdp"))
	frag[6] |= 0x20 // more fragments
	frag6 := h6
	frag6.Ext = []pkttest.Ext{pkttest.Fragment(0, true, 1)}
	ext6 := h6
	ext6.Ext = []pkttest.Ext{pkttest.DestOpts(1)}
	short := h4.UDP(1, 2, []byte("vxdp"))
	short[25] -= 2 // UDP length 2 short of the IP payload
	for name, pkt := range map[string][]byte{
		"udp4 without checksum": pkttest.NoUDPChecksum(h4.UDP(1, 2, []byte("vxdp"))),
		"ipv4 fragment":         frag,
		"ipv6 fragment":         frag6.UDP(1, 2, []byte("vxdp")),
		"ipv6 destination opts": ext6.UDP(1, 2, []byte("vxdp")),
		"icmp":                  h4.ICMP(8, 0, []byte("ping")),
		"udp shorter than ip":   short,
		"not ip":                make([]byte, 40),
	} {
		p := append([]byte{0, 1, 2, 3}, pkt...)
		if encap.TransportSumOK(p, 4, encap.Sum(p, 0)) {
			t.Errorf("%s: reported right", name)
		}
	}
	if encap.TransportSumOK([]byte{1, 2}, 2, 0) || encap.TransportSumOK([]byte{1, 2}, -1, 0) {
		t.Error("an offset outside the payload reported right")
	}
}

// The sum ParseOuterV6 keeps is the payload's, and it is kept only when
// there was a checksum.
func TestParseOuterV6PayloadSum(t *testing.T) {
	inner := completeCases([]byte("a payload of odd size"))["tcp4"]
	payload := pkttest.VXLAN(1, pkttest.Ethernet(encap.MAC{2, 0, 0, 0, 0, 1}, encap.MAC{2, 0, 0, 0, 0, 2}, encap.EtherTypeIPv4, inner))
	h := pkttest.IPv6{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2")}
	pkt := h.UDP(40000, 8472, payload)
	o, err := encap.ParseOuterV6(pkt, false)
	if err != nil {
		t.Fatal(err)
	}
	if !o.SumValid || encap.Fold(o.PayloadSum) != encap.Fold(encap.Sum(payload, 0)) {
		t.Fatalf("payload sum %#x valid %v, want %#x", o.PayloadSum, o.SumValid, encap.Sum(payload, 0))
	}
	if !encap.TransportSumOK(pkt[o.Payload:o.Payload+o.PayloadLen], encap.VXLANLen+encap.EthernetLen, o.PayloadSum) {
		t.Fatal("the inner checksum does not follow from the outer sum")
	}
	encap.UDP(pkt[encap.IPv6Len:]).SetChecksum(0)
	if o, err = encap.ParseOuterV6(pkt, true); err != nil || o.SumValid {
		t.Fatalf("zero checksum: err %v, sum valid %v", err, o.SumValid)
	}
}

func TestTransportSegmentSum(t *testing.T) {
	for name, pkt := range completeCases([]byte("vxdp segment")) {
		l4, proto, pseudo := 20, pkt[9], uint32(0)
		if name[3] == '6' {
			ip := encap.IPv6(pkt)
			l4, proto = 40, ip.NextHeader()
			pseudo = ip.PseudoHeaderSum(proto, len(pkt)-l4)
		} else {
			pseudo = encap.IPv4(pkt).PseudoHeaderSum(proto, len(pkt)-l4)
		}
		if got, want := encap.Fold(encap.TransportSegmentSum(pseudo)), encap.Fold(encap.Sum(pkt[l4:], 0)); got != want {
			t.Errorf("%s: segment sum %#x from the pseudo-header, %#x summed", name, got, want)
		}
	}
}

func BenchmarkTransportSumOK(b *testing.B) {
	pkt := completeCases(make([]byte, 1400))["tcp6"]
	p, ip := inPayload(rand.New(rand.NewPCG(1, 2)), pkt, 22, 0)
	sum := encap.Sum(p, 0)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if !encap.TransportSumOK(p, ip, sum) {
			b.Fatal("not right")
		}
	}
}

// PayloadSum gives the sum of a payload whose inner checksum is right
// from the bytes outside the segment, whatever the parity of the front
// and of the tail; and the outer header written with it is the one
// EncodeOuterV6 writes after summing the payload itself.
func TestPayloadSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	src, dst := netip.MustParseAddrPort("[fd00::1]:40000"), netip.MustParseAddrPort("[fd00::2]:8472")
	for _, size := range []int{0, 1, 2, 3, 64, 1401} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		for name, pkt := range completeCases(data) {
			for _, front := range []int{0, 8 + 14, 13} {
				for _, tail := range []int{0, 1, 4} {
					p, ip := inPayload(rng, pkt, front, tail)
					got, ok := encap.PayloadSum(p, ip)
					if want := encap.Sum(p, 0); !ok || encap.Fold(got) != encap.Fold(want) {
						t.Fatalf("%s size %d front %d tail %d: sum %#x (%v), want %#x", name, size, front, tail, got, ok, want)
					}
					a := append(make([]byte, encap.OuterV6Len), p...)
					b := append(make([]byte, encap.OuterV6Len), p...)
					if err := encap.EncodeOuterV6(a, src, dst, len(p), 0x28, 7); err != nil {
						t.Fatal(err)
					}
					if err := encap.EncodeOuterV6Sum(b, src, dst, len(p), 0x28, 7, got); err != nil {
						t.Fatal(err)
					}
					if string(a) != string(b) {
						t.Fatalf("%s size %d: outer headers differ\n%x\n%x", name, size, a[:encap.OuterV6Len], b[:encap.OuterV6Len])
					}
				}
			}
		}
	}
	// What TransportSumOK would not vouch for has no sum from headers.
	h4 := pkttest.IPv4{Src: netip.MustParseAddr("10.1.1.10"), Dst: netip.MustParseAddr("10.1.2.10")}
	if _, ok := encap.PayloadSum(pkttest.NoUDPChecksum(h4.UDP(1, 2, []byte("x"))), 0); ok {
		t.Error("a UDP datagram without checksum summed from its headers")
	}
	if _, ok := encap.PayloadSum(h4.ICMP(8, 0, []byte("x")), 0); ok {
		t.Error("ICMP summed from its headers")
	}
}

// FuzzTransportSum checks the two shortcuts against the long way on any
// bytes: TransportSumOK, given a payload's true sum, says yes exactly
// when the inner segment's checksum verifies summed in full, and
// PayloadSum of such a payload is its true sum.
func FuzzTransportSum(f *testing.F) {
	for _, pkt := range completeCases([]byte("fuzz seed")) {
		f.Add(append(make([]byte, 22), pkt...), uint8(22))
		f.Add(append(make([]byte, 13), pkt...), uint8(13))
	}
	f.Fuzz(func(t *testing.T, p []byte, at uint8) {
		ip := int(at)
		sum := encap.Sum(p, 0)
		got := encap.TransportSumOK(p, ip, sum)
		ps, psOK := encap.PayloadSum(p, ip)
		if ip >= len(p) {
			if got || psOK {
				t.Fatal("an offset past the payload taken")
			}
			return
		}
		pkt := p[ip:]
		var seg []byte
		var pseudo uint32
		switch {
		case psOK && encap.IPVersion(pkt) == encap.IPv4Version:
			h := encap.IPv4(pkt)
			seg = pkt[h.HeaderLen():h.TotalLen()]
			pseudo = h.PseudoHeaderSum(h.Protocol(), len(seg))
		case psOK:
			h := encap.IPv6(pkt)
			seg = pkt[encap.IPv6Len:h.TotalLen()]
			pseudo = h.PseudoHeaderSum(h.NextHeader(), len(seg))
		}
		right := psOK && encap.Fold(encap.Sum(seg, pseudo)) == 0xffff
		if got != right {
			t.Fatalf("TransportSumOK %v, the long way %v (qualifies %v)", got, right, psOK)
		}
		if right && encap.Fold(ps) != encap.Fold(sum) {
			t.Fatalf("PayloadSum %#x, the payload sums to %#x", ps, sum)
		}
	})
}
