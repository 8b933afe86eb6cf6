package encap

import (
	"bytes"
	"testing"
)

// FuzzDecap feeds arbitrary outer packets through the receive parsers:
// they must never panic, every view they accept must lie inside the
// packet, and a packet they accept must re-encode to the same bytes.
func FuzzDecap(f *testing.F) {
	f.Add(mustHex(f, outerVXLAN))
	f.Add(mustHex(f, innerUDP))
	f.Add([]byte{0x45})
	f.Add(make([]byte, 50))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		o, err := ParseOuterV4(pkt)
		if err != nil {
			return
		}
		if o.Payload < 28 || o.Payload+o.PayloadLen > len(pkt) || o.PayloadLen < 0 {
			t.Fatalf("outer view out of bounds: %+v len %d", o, len(pkt))
		}
		vx := VXLAN(pkt[o.Payload : o.Payload+o.PayloadLen])
		if vx.Validate(0) != nil || len(vx) < VXLANLen+EthernetLen {
			return
		}
		eth := Ethernet(vx[VXLANLen:])
		if eth.EtherType() != EtherTypeIPv4 {
			return
		}
		inner := IPv4(eth[EthernetLen:])
		if !inner.IsValid(len(inner)) {
			return
		}
		if inner.HeaderLen() > inner.TotalLen() || inner.TotalLen() > len(inner) {
			t.Fatalf("inner view out of bounds")
		}
		// Re-encoding: what we would send for this inner packet, VNI and
		// source port has the same tunnel header and inner bytes.
		n := inner.TotalLen()
		buf := make([]byte, Headroom+n)
		copy(buf[Headroom:], inner[:n])
		tun := tunnelV4{Src: [4]byte(pkt[12:16]), Dst: [4]byte(pkt[16:20]), DstPort: o.DstPort,
			SrcMAC: eth.Source(), DstMAC: eth.Destination()}
		start, err := encapVXLANv4(buf, Headroom, n, &tun, vx.VNI(), o.SrcPort)
		if err != nil {
			t.Fatal(err)
		}
		out := buf[start:]
		if !bytes.Equal(out[IPv4MinLen+UDPLen+4:IPv4MinLen+UDPLen+VXLANLen], vx[4:8]) {
			t.Fatalf("VNI re-encoded differently")
		}
		if !bytes.Equal(out[IPv4MinLen+UDPLen+VXLANLen:], vx[VXLANLen:VXLANLen+EthernetLen+n]) {
			t.Fatalf("inner frame re-encoded differently")
		}
	})
}

// FuzzIPv4 checks the inner header validation used on every pod packet.
func FuzzIPv4(f *testing.F) {
	f.Add(mustHex(f, innerUDP))
	f.Add([]byte{0x4f, 0, 0, 20})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		ip := IPv4(pkt)
		if !ip.IsValid(len(pkt)) {
			return
		}
		_ = ip.Payload()
		_ = FlowHashV4(ip[:ip.TotalLen()])
		if MayAnswerWithICMPv4(ip) {
			dst := make([]byte, ICMPv4ErrorMaxLen)
			n := BuildICMPv4Error(dst, ip, [4]byte{192, 0, 2, 1}, ICMPv4DestUnreach, 0, 0)
			if !IPv4(dst[:n]).IsValid(n) || Checksum(dst[IPv4MinLen:n], 0) != 0 {
				t.Fatal("bad ICMP error built")
			}
		}
	})
}
