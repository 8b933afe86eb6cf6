package encap

import "testing"

func BenchmarkEncapVXLANv4(b *testing.B) {
	for _, n := range []int{64, 1400} {
		inner := make([]byte, n)
		copy(inner, mustHex(b, innerUDP))
		inner[2], inner[3] = byte(n>>8), byte(n)
		buf := make([]byte, Headroom+n)
		b.Run(itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(buf[Headroom:Headroom+20], inner[:20])
				ip := IPv4(buf[Headroom:])
				ip.DecrementTTL()
				if _, err := encapVXLANv4(buf, Headroom, n, &testTunnel, 1000, SourcePort(FlowHashV4(ip))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecapVXLANv4(b *testing.B) {
	pkt := mustHex(b, outerVXLAN)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		o, err := ParseOuterV4(pkt)
		if err != nil {
			b.Fatal(err)
		}
		vx := VXLAN(pkt[o.Payload : o.Payload+o.PayloadLen])
		if vx.Validate(0) != nil {
			b.Fatal("invalid")
		}
		inner := IPv4(vx[VXLANLen+EthernetLen:])
		if !inner.IsValid(len(inner)) {
			b.Fatal("invalid inner")
		}
	}
}
