package afxdp

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// FuzzFrame feeds payloadOfFrame any frame, for both families, with and
// without the veth's partial-checksum allowance: it never panics; a
// payload it accepts lies inside the frame at the place and length the
// outer headers give; an IPv6 frame it accepts has a UDP checksum that
// verifies (after it was finished, where allowed), and one it refuses is
// left as it was.
func FuzzFrame(f *testing.F) {
	v4 := pkttest.Ethernet(macA, macB, encap.EtherTypeIPv4,
		pkttest.UDP4(netip.MustParseAddrPort("192.0.2.2:40000"), netip.MustParseAddrPort("192.0.2.1:8472"), []byte("payload")))
	v6 := frame6(pkttest.IPv6{Src: addr6B, Dst: addr6A, TrafficClass: 0xb9}, 40000, 8472, []byte("payload"))
	partial := bytes.Clone(v6)
	udp := encap.UDP(partial[ethLen+ip6Len:])
	udp.SetChecksum(encap.Fold(encap.IPv6(partial[ethLen:]).PseudoHeaderSum(encap.ProtoUDP, udp.Length())))
	ext := frame6(pkttest.IPv6{Src: addr6B, Dst: addr6A, Ext: []pkttest.Ext{pkttest.HopByHop(1)}}, 40000, 8472, []byte("x"))
	for _, seed := range [][]byte{v4, v6, partial, ext, v6[:ethLen+ip6Len+3], append(bytes.Clone(v6), 0, 0, 0, 0)} {
		f.Add(seed, true, true)
		f.Add(seed, false, false)
	}
	f.Fuzz(func(t *testing.T, frame []byte, v6, partialOK bool) {
		orig := bytes.Clone(frame)
		payload, m, ok := payloadOfFrame(frame, v6, partialOK)
		if !ok {
			if payload != nil {
				t.Fatal("refused with a payload")
			}
			if !bytes.Equal(frame, orig) {
				t.Fatal("a refused frame was changed")
			}
			return
		}
		hdr := ethLen + encap.IPv4MinLen + udpLen
		if v6 {
			hdr = ethLen + encap.OuterV6Len
			o, err := encap.ParseOuterV6(frame[ethLen:], false)
			if err != nil {
				t.Fatalf("accepted an IPv6 frame that does not verify: %v", err)
			}
			if o.PayloadLen != len(payload) {
				t.Fatalf("payload %d bytes, UDP says %d", len(payload), o.PayloadLen)
			}
			// The sum handed on is the payload's: the inner checksum
			// is judged by it.
			if !m.HasSum || encap.Fold(m.Sum) != encap.Fold(encap.Sum(payload, 0)) {
				t.Fatalf("meta sum %#x (has %v), payload sums to %#x", m.Sum, m.HasSum, encap.Sum(payload, 0))
			}
		} else if m.HasSum {
			t.Fatal("a sum handed on for an IPv4 frame, whose checksum is not checked")
		}
		if !v6 {
			ip := encap.IPv4(frame[ethLen:])
			hdr = ethLen + ip.HeaderLen() + udpLen
		}
		if len(payload) > 0 && (hdr+len(payload) > len(frame) || &frame[hdr] != &payload[0]) {
			t.Fatalf("%d-byte payload not at offset %d of the %d-byte frame", len(payload), hdr, len(frame))
		}
	})
}
