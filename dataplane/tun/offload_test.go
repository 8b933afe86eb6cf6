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

// superPacket builds a TCPv4 super-packet the way the kernel hands one to
// a TUN with TSO: one header, a long payload, the TCP checksum partial.
func superPacket(payload []byte, flags byte) []byte {
	h := pkttest.IPv4{Src: netip.AddrFrom4([4]byte{10, 1, 1, 10}), Dst: netip.AddrFrom4([4]byte{10, 1, 2, 20}), ID: 0xfff0, DF: true}
	// The sequence number wraps during the packet.
	return h.TCP(pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 0xfffff000, Ack: 77, Flags: flags, Window: 512, Partial: true}, payload)
}

func TestTCP4Segmentation(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{1, 1398, 1399, 2796, 60000, 65495} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(r.Uint32())
		}
		pkt := superPacket(payload, 0x18|0x01|0x80) // ACK PSH FIN CWR
		hdrLen, segs, err := tcp4Layout(pkt, 1398)
		if err != nil || hdrLen != 40 {
			t.Fatalf("size %d: layout %d %d %v", size, hdrLen, segs, err)
		}
		var joined []byte
		seq := uint32(0xfffff000)
		for i := 0; i < segs; i++ {
			dst := make([]byte, 1500)
			n := tcp4Segment(dst, pkt, hdrLen, 1398, i, segs)
			s := encap.IPv4(dst[:n])
			if !s.IsValid(n) || !s.HeaderChecksumValid() || s.TotalLen() != n || n > 1438 {
				t.Fatalf("size %d seg %d: bad ip header", size, i)
			}
			if s.ID() != uint16(0xfff0+i) {
				t.Fatalf("seg %d id %#x", i, s.ID())
			}
			tcp := dst[20:n]
			sum := encap.PseudoHeaderSumV4(s.Source4(), s.Destination4(), encap.ProtoTCP, uint16(len(tcp)))
			if encap.Checksum(tcp, sum) != 0 {
				t.Fatalf("size %d seg %d: bad tcp checksum", size, i)
			}
			if got := binary.BigEndian.Uint32(tcp[4:]); got != seq {
				t.Fatalf("seg %d seq %#x want %#x", i, got, seq)
			}
			seq += uint32(n - 40)
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
			t.Fatalf("size %d: segments do not add up to the payload", size)
		}
	}
}

func TestFinishChecksum(t *testing.T) {
	pkt := superPacket([]byte("partial"), 0x18)
	h := vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 20, csumOffset: 16}
	if err := finishChecksum(pkt, h); err != nil {
		t.Fatal(err)
	}
	sum := encap.PseudoHeaderSumV4([4]byte{10, 1, 1, 10}, [4]byte{10, 1, 2, 20}, encap.ProtoTCP, uint16(len(pkt)-20))
	if encap.Checksum(pkt[20:], sum) != 0 {
		t.Fatal("checksum not finished")
	}
	if finishChecksum(pkt, vnetHdr{csumStart: 60, csumOffset: 16}) == nil {
		t.Fatal("out-of-range csum_start accepted")
	}
}

func TestTCP4LayoutRejects(t *testing.T) {
	good := superPacket(make([]byte, 3000), 0x10)
	for name, pkt := range map[string][]byte{
		"short":  good[:30],
		"udp":    func() []byte { b := append([]byte(nil), good...); b[9] = 17; return b }(),
		"doff 4": func() []byte { b := append([]byte(nil), good...); b[32] = 4 << 4; return b }(),
		"doff 15+": func() []byte {
			b := append([]byte(nil), good[:60]...)
			binary.BigEndian.PutUint16(b[2:], 60)
			b[32] = 15 << 4
			return b
		}(),
	} {
		if _, _, err := tcp4Layout(pkt, 1398); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if _, _, err := tcp4Layout(good, 0); err == nil {
		t.Error("gso size 0 accepted")
	}
}

func BenchmarkTCP4Segment(b *testing.B) {
	pkt := superPacket(make([]byte, 65000), 0x10)
	hdrLen, segs, _ := tcp4Layout(pkt, 1398)
	dst := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(65000)
	for b.Loop() {
		for i := 0; i < segs; i++ {
			tcp4Segment(dst, pkt, hdrLen, 1398, i, segs)
		}
	}
}
