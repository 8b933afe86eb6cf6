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

// The IPv6 walk on what a pod sends: a plain TCP segment, the common case
// that must cost a few nanoseconds, and a chain of three headers.
func BenchmarkIPv6UpperLayer(b *testing.B) {
	tcp := gpTCP6(b, gpIPv6(pod6A, pod6B, ProtoTCP), 40000, 443, make([]byte, 64))
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"tcp", packet6(b, gpIPv6(pod6A, pod6B, ProtoTCP), tcp)},
		{"hop-by-hop+dest-opts+fragment/tcp", packet6(b, gpIPv6(pod6A, pod6B, ProtoHopByHop), optsHdr(ProtoIPv6Opts, 8),
			optsHdr(ProtoIPv6Frag, 16), fragHdr(ProtoTCP, 0, true), tcp)},
	} {
		b.Run(c.name, func(b *testing.B) {
			ip := IPv6(c.pkt)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ip.UpperLayer(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// innerUDP6 is an n-byte UDP/IPv6 packet (n >= 48).
func innerUDP6(b *testing.B, n int) []byte {
	return udp6(b, make([]byte, n-IPv6Len-UDPLen))
}

// What an IPv6 packet gets on its way out of the AF_XDP underlay over IPv6:
// hop limit, walk and flow hash, the engine's VXLAN header and inner
// Ethernet, the driver's outer IPv6 and UDP with its checksum.
func BenchmarkEncapVXLANv6(b *testing.B) {
	for _, n := range []int{64, 1400} {
		b.Run(itoa(n), func(b *testing.B) {
			inner := innerUDP6(b, n)
			buf := make([]byte, Headroom+n)
			copy(buf[Headroom:], inner)
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				ip := IPv6(buf[Headroom:])
				ip.SetHopLimit(64)
				ip.DecrementHopLimit()
				u, err := ip.UpperLayer()
				if err != nil {
					b.Fatal(err)
				}
				h := FlowHashV6(ip, u)
				if _, err := encapVXLANv6(buf, Headroom, n, &testTunnelV6, 1000, SourcePort(h), FlowLabel(h)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The receive side: outer IPv6 and UDP with the checksum verified, VXLAN,
// and RFC 6040 on the inner packet.
func BenchmarkDecapVXLANv6(b *testing.B) {
	for _, n := range []int{64, 1400} {
		b.Run(itoa(n), func(b *testing.B) {
			inner := innerUDP6(b, n)
			buf := make([]byte, Headroom+n)
			copy(buf[Headroom:], inner)
			o, err := encapVXLANv6(buf, Headroom, n, &testTunnelV6, 1000, 51234, 1)
			if err != nil {
				b.Fatal(err)
			}
			pkt := buf[o:]
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				out, err := ParseOuterV6(pkt, false)
				if err != nil {
					b.Fatal(err)
				}
				vx := VXLAN(pkt[out.Payload : out.Payload+out.PayloadLen])
				if vx.Validate(0) != nil {
					b.Fatal("vxlan")
				}
				if drop, _ := DecapECNV6(ECNOf(out.TrafficClass), IPv6(vx[VXLANLen+EthernetLen:])); drop {
					b.Fatal("dropped")
				}
			}
		})
	}
}

func BenchmarkBuildICMPv6Error(b *testing.B) {
	orig := IPv6(innerUDP6(b, 1400))
	dst := make([]byte, ICMPv6ErrorMaxLen)
	src := hostIP6.As16()
	b.ReportAllocs()
	b.SetBytes(ICMPv6ErrorMaxLen)
	for b.Loop() {
		if MayAnswerWithICMPv6(orig) {
			BuildICMPv6Error(dst, orig, src, ICMPv6PacketTooBig, 0, 1430)
		}
	}
}
