package encap

import "testing"

// benchEncap measures fn encapsulating an n-byte inner packet in buf, the
// packet's TTL decremented and its flow hashed first as the dataplane does.
func benchEncap(b *testing.B, n int, fn func(buf []byte, srcPort uint16) (int, error)) {
	inner := make([]byte, n)
	copy(inner, mustHex(b, innerUDP))
	inner[2], inner[3] = byte(n>>8), byte(n)
	buf := make([]byte, Headroom+n)
	b.ReportAllocs()
	b.SetBytes(int64(n))
	for b.Loop() {
		copy(buf[Headroom:Headroom+20], inner[:20])
		ip := IPv4(buf[Headroom:])
		ip.DecrementTTL()
		if _, err := fn(buf, SourcePort(FlowHashV4(ip))); err != nil {
			b.Fatal(err)
		}
	}
}

// The encapsulation benchmarks write what a packet gets on its way out of
// the AF_XDP underlay: the engine's tunnel header and inner Ethernet, then the
// driver's outer IPv4 and UDP.
func BenchmarkEncapVXLANv4(b *testing.B) {
	for _, n := range []int{64, 1400} {
		b.Run(itoa(n), func(b *testing.B) {
			benchEncap(b, n, func(buf []byte, sport uint16) (int, error) {
				return encapVXLANv4(buf, Headroom, n, &testTunnel, 1000, sport)
			})
		})
	}
}

func BenchmarkEncapGeneveV4(b *testing.B) {
	tun := testTunnel
	tun.DstPort = GenevePort
	for _, n := range []int{64, 1400} {
		for _, opts := range [][]GeneveOption{nil, geneveTwoOptsList} {
			b.Run(itoa(n)+"/opts="+itoa(len(opts)), func(b *testing.B) {
				benchEncap(b, n, func(buf []byte, sport uint16) (int, error) {
					return encapGeneveV4(buf, Headroom, n, &tun, 1000, opts, sport)
				})
			})
		}
	}
}
