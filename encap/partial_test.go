package encap_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

func TestCompletePartialChecksumV4(t *testing.T) {
	// A TCP segment as a Linux sender hands it to an offloading device:
	// the checksum field holds the folded pseudo-header sum only.
	h := pkttest.IPv4{Src: netip.MustParseAddr("10.1.1.236"), Dst: netip.MustParseAddr("10.0.1.1")}
	ip := h.TCP(pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Flags: pkttest.SYN, Window: 0xffff, Partial: true}, []byte("vxdp!"))
	pseudo := encap.PseudoHeaderSumV4(h.Src.As4(), h.Dst.As4(), encap.ProtoTCP, uint16(len(ip)-20))

	if !encap.CompletePartialChecksumV4(encap.IPv4(ip)) {
		t.Fatal("partial checksum not recognised")
	}
	if encap.Checksum(ip[20:], pseudo) != 0 {
		t.Fatal("completed checksum does not verify")
	}
	// A complete checksum is left alone.
	before := bytes.Clone(ip)
	if encap.CompletePartialChecksumV4(encap.IPv4(ip)) {
		t.Fatal("complete checksum treated as partial")
	}
	if !bytes.Equal(before, ip) {
		t.Fatal("complete packet modified")
	}
	// UDP without checksum is left alone.
	u := pkttest.NoUDPChecksum(pkttest.UDP4(netip.MustParseAddrPort("10.1.1.154:40000"), netip.MustParseAddrPort("10.1.2.154:5201"), []byte("vxdp")))
	if encap.CompletePartialChecksumV4(encap.IPv4(u)) {
		t.Fatal("UDP checksum 0 touched")
	}
}
