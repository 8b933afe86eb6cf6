package tun

import (
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// A TCP packet beyond the MTU whose checksum is the pseudo-header's sum is
// written with a header that has the kernel finish the checksum and, were
// it forwarded, cut it at the MTU; anything else keeps the all-zero
// header, for the kernel to check as it checks any packet.
func TestPartialSuper(t *testing.T) {
	v4 := pkttest.IPv4{Src: netip.MustParseAddr("10.1.1.10"), Dst: netip.MustParseAddr("10.1.2.20"), DF: true}
	v6 := pkttest.IPv6{Src: netip.MustParseAddr("fd00:1:1::10"), Dst: netip.MustParseAddr("fd00:1:2::20"), HopLimit: 64}
	v6ext := v6
	v6ext.Ext = []pkttest.Ext{pkttest.DestOpts(8)}
	seg := pkttest.TCP{SrcPort: 40000, DstPort: 5201, Seq: 1, Ack: 1, Flags: 0x10, Window: 512, Partial: true}
	full, cwr := seg, seg
	full.Partial = false
	cwr.Flags |= 0x80
	big, small := make([]byte, 20000), make([]byte, 1000)
	for _, c := range []struct {
		name     string
		pkt      []byte
		mtu      int
		ok       bool
		gsoType  uint8
		hdr, gso int
	}{
		{"IPv4 super-packet", v4.TCP(seg, big), 1450, true, vnetGSOTCPv4, 40, 1410},
		{"IPv4 with CWR", v4.TCP(cwr, big), 1450, true, vnetGSOTCPv4 | vnetGSOECN, 40, 1410},
		{"IPv6 super-packet", v6.TCP(seg, big), 1430, true, vnetGSOTCPv6, 60, 1370},
		{"IPv6 with an extension header", v6ext.TCP(seg, big), 1430, false, 0, 0, 0},
		{"checksum complete", v4.TCP(full, big), 1450, false, 0, 0, 0},
		{"within the MTU", v4.TCP(seg, small), 1450, false, 0, 0, 0},
		{"MTU unknown", v4.TCP(seg, big), 0, false, 0, 0, 0},
		{"UDP", v4.UDP(1, 2, big), 1450, false, 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &Device{vnet: true}
			d.noteMTU(c.mtu)
			if d.TakesPartialSuper() != (c.mtu > 0) {
				t.Fatalf("TakesPartialSuper %v with MTU %d", d.TakesPartialSuper(), c.mtu)
			}
			h, ok := d.partialSuper(c.pkt)
			if ok != c.ok {
				t.Fatalf("partialSuper %v, want %v", ok, c.ok)
			}
			if !ok {
				return
			}
			want := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: c.gsoType, hdrLen: uint16(c.hdr), gsoSize: uint16(c.gso),
				csumStart: uint16(c.hdr - encap.TCPMinLen), csumOffset: encap.TCPChecksumOffset}
			if h != want {
				t.Fatalf("header %+v, want %+v", h, want)
			}
		})
	}
	// A queue of a multi-queue device goes by the MTU its device set.
	d := &Device{vnet: true}
	q := &Device{vnet: true, parent: d}
	d.noteMTU(1450)
	if _, ok := q.partialSuper(v4.TCP(seg, big)); !ok {
		t.Error("a queue does not see its device's MTU")
	}
}
