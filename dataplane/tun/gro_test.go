package tun

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/encap"
)

// Segments cut from a super-packet merge back into it: same payload, the
// GSO header describing the cut.
func TestGROMergeRoundTrip(t *testing.T) {
	payload := make([]byte, 5*1398+100)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	pkts := cutSegments(superPacket(payload, 0x18), 1398, 0) // ACK PSH: PSH lands on the last segment
	f, ok := tcpRun(pkts)
	if !ok {
		t.Fatal("the segments do not make a run")
	}
	out := make([]byte, vnetHdrLen+groMaxLen)
	n := groMerge(out, pkts, f)
	h := parseVnetHdr(out)
	if h.gsoType != vnetGSOTCPv4 || h.gsoSize != 1398 || h.flags != vnetFlagNeedsCsum || h.csumStart != 20 || h.csumOffset != 16 {
		t.Fatalf("header %+v", h)
	}
	m := out[vnetHdrLen:n]
	if !encap.IPv4(m).IsValid(len(m)) || !encap.IPv4(m).HeaderChecksumValid() || !bytes.Equal(m[40:], payload) {
		t.Fatal("merged packet wrong")
	}
	if m[33] != 0x18 || binary.BigEndian.Uint32(m[24:]) != 0xfffff000 {
		t.Fatalf("flags %#x seq %#x", m[33], binary.BigEndian.Uint32(m[24:]))
	}
	// The kernel's view: finishing the partial checksum yields a valid one.
	if err := finishChecksum(m, h); err != nil {
		t.Fatal(err)
	}
	sum := encap.PseudoHeaderSumV4([4]byte(m[12:16]), [4]byte(m[16:20]), encap.ProtoTCP, uint16(len(m)-20))
	if encap.Checksum(m[20:], sum) != 0 {
		t.Fatal("checksum does not finish")
	}
}

func TestGROCandidateRejects(t *testing.T) {
	super := superPacket(make([]byte, 1398), 0x10)
	seg := make([]byte, 1500)
	n := tcp4Segment(seg, super, 40, 1398, 0, 1)
	good := seg[:n]
	if _, ok := groCandidate(good, false); !ok {
		t.Fatal("good segment refused")
	}
	for name, mod := range map[string]func(b []byte){
		"bad checksum": func(b []byte) { b[50] ^= 1 },
		"SYN":          func(b []byte) { b[33] |= 0x02 },
		"FIN":          func(b []byte) { b[33] |= 0x01 },
		"UDP":          func(b []byte) { b[9] = 17 },
		"fragment":     func(b []byte) { b[6] |= 0x20 },
	} {
		b := append([]byte(nil), good...)
		mod(b)
		if _, ok := groCandidate(b, false); ok {
			t.Errorf("%s accepted", name)
		}
	}
}

// cutSegments cuts super into packets of mss payload bytes, each in a
// buffer of its own behind off bytes of headroom, as Read hands them out.
func cutSegments(super []byte, mss, off int) [][]byte {
	hdrLen, segs, err := tcp4Layout(super, mss)
	if err != nil {
		panic(err)
	}
	var bufs [][]byte
	for i := range segs {
		b := make([]byte, off+1500)
		bufs = append(bufs, b[:off+tcp4Segment(b[off:], super, hdrLen, mss, i, segs)])
	}
	return bufs
}

// tcpRun reports whether pkts are one run of TCP segments to merge, the
// way writeMerged checks them, and returns the layout of the first.
func tcpRun(pkts [][]byte) (mergeSeg, bool) {
	f, ok := groCandidate(pkts[0], false)
	end := f.seq + uint32(f.payload)
	for _, p := range pkts[1:] {
		s, sok := groCandidate(p, false)
		if !ok || !sok || !groFollows(pkts[0], f, p, s, end) {
			return f, false
		}
		end += uint32(s.payload)
	}
	return f, ok
}

// BenchmarkGROHeader is the per-run work of a merged TCP write but the
// writev: checking each segment of a 64 KiB run (checksum included) and
// writing the super-packet's headers.
func BenchmarkGROHeader(b *testing.B) {
	const mss, segs = 1398, 46
	pkts := cutSegments(superPacket(make([]byte, segs*mss), 0x10), mss, 0)
	out := make([]byte, vnetHdrLen+80)
	b.ReportAllocs()
	b.SetBytes(segs * mss)
	for b.Loop() {
		f, ok := tcpRun(pkts)
		if !ok {
			b.Fatal("the segments do not make a run")
		}
		groHeader(out, pkts, f)
	}
}

// BenchmarkUDPMergeHeader is BenchmarkGROHeader for a run of 32 UDP
// datagrams of 1200 bytes.
func BenchmarkUDPMergeHeader(b *testing.B) {
	const size, count = 1200, 32
	src, dst := netip.MustParseAddrPort("198.51.100.1:4000"), netip.MustParseAddrPort("192.0.2.10:5000")
	var pkts [][]byte
	for range count {
		pkts = append(pkts, udp4(src, dst, make([]byte, size)))
	}
	out := make([]byte, vnetHdrLen+80)
	b.ReportAllocs()
	b.SetBytes(size * count)
	for b.Loop() {
		f, ok := udpCandidate(pkts[0], false)
		if !ok {
			b.Fatal("first datagram refused")
		}
		for _, p := range pkts[1:] {
			if s, ok := udpCandidate(p, false); !ok || !udpFollows(pkts[0], f, p, s) {
				b.Fatal("datagram does not follow")
			}
		}
		groHeader(out, pkts, f)
	}
}

// groMerge builds in dst, by copying, the super-packet the write path
// hands the kernel as a header and the payloads in one writev: pkts (a run
// mergeNext accepted) behind a virtio_net_hdr. It returns its length.
func groMerge(dst []byte, pkts [][]byte, f mergeSeg) int {
	n := groHeader(dst, pkts, f)
	for _, p := range pkts {
		n += copy(dst[n:], groPayload(p, f))
	}
	return n
}
