package afxdp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// The tests below speak whole IPv4/UDP packets, which is what travels on
// the wire: receivePackets puts the outer headers the queue parsed back in
// front of each payload, and sendPackets takes a packet's payload and
// destination for Send. The source port of a sent packet is the queue's
// choice (SourcePort of the flow), not the one in the test's header.

// receivePackets is Receive, with each payload handed out as the IPv4/UDP
// packet it came in: bufs[i][offset:offset+sizes[i]].
func receivePackets(q *Queue, bufs [][]byte, sizes []int, offset int) (int, error) {
	meta := make([]packetio.Meta, len(bufs))
	n, err := q.Receive(bufs, sizes, meta, offset+encap.OuterV4Len)
	for i := 0; i < n; i++ {
		local := netip.AddrPortFrom(q.u.cfg.NodeIP, meta[i].LocalPort)
		if e := encap.EncodeOuterV4(bufs[i][offset:], meta[i].Remote, local, sizes[i]); e != nil {
			panic(e)
		}
		sizes[i] += encap.OuterV4Len
	}
	return n, err
}

// sendPackets is Send for the IPv4/UDP packets pkts[i][offset:].
func sendPackets(q *Queue, pkts [][]byte, offset int) (int, error) {
	bufs, meta := payloadsOf(pkts, offset)
	return q.Send(bufs, meta, 0)
}

// payloadsOf splits the IPv4/UDP packets pkts[i][offset:] into payloads
// and where they go; the flow of each is its UDP source port.
func payloadsOf(pkts [][]byte, offset int) ([][]byte, []packetio.Meta) {
	bufs := make([][]byte, 0, len(pkts))
	meta := make([]packetio.Meta, 0, len(pkts))
	for _, p := range pkts {
		o, err := encap.ParseOuterV4(p[offset:])
		if err != nil {
			panic(err)
		}
		bufs = append(bufs, p[offset+o.Payload:offset+o.Payload+o.PayloadLen])
		meta = append(meta, packetio.Meta{Remote: netip.AddrPortFrom(o.Dst, o.DstPort), Flow: uint32(o.SrcPort)})
	}
	return bufs, meta
}

// mustSend sends the IPv4/UDP packets pkts[i][headroom:] through q and
// fails the test unless q accepts them all.
func mustSend(t *testing.T, q *Queue, pkts [][]byte) {
	t.Helper()
	if n, err := sendPackets(q, pkts, headroom); err != nil || n != len(pkts) {
		t.Fatalf("%s accepted %d of %d, %v", q.Name(), n, len(pkts), err)
	}
}

// expectDatagrams reads n datagrams from rcv within 5 s, or fails the
// test showing u's counters.
func expectDatagrams(t *testing.T, rcv *net.UDPConn, n int, u *Underlay) {
	t.Helper()
	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i := range n {
		if _, err := rcv.Read(buf); err != nil {
			t.Fatalf("datagram %d of %d: %v (stats %+v)", i, n, err, u.Stats())
		}
	}
}
