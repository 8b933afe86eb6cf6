package afxdp

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func packets(n int, from, to netip.AddrPort, tag string) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = udpPacket(from, to, fmt.Appendf(nil, "%s-%04d", tag, i), headroom)
	}
	return pkts
}

// TestUnresolvedNeighbour: packets to an address nobody answers wait at
// most waitTimeout, at most maxWaiting of them, and are then dropped and
// counted; their frames return.
func TestUnresolvedNeighbour(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	pkts := packets(maxWaiting+44, netip.AddrPortFrom(addrA, 5555), netip.MustParseAddrPort("192.0.2.77:7777"), "lost")
	n, err := sendPackets(q, pkts, headroom)
	if err != nil {
		t.Fatal(err)
	}
	st := u.Stats()
	if n != maxWaiting || st.ArpWaiting != maxWaiting || st.TxNoNeighbour != 44 || st.FramesWaiting != maxWaiting {
		t.Fatalf("accepted %d; stats %+v: want %d waiting, 44 dropped", n, st, maxWaiting)
	}
	start := time.Now()
	waitFor(t, 3*waitTimeout, "waiting packets to expire", func() bool { return u.Stats().ArpWaiting == 0 })
	t.Logf("expired after %v", time.Since(start))
	if d := time.Since(start); d < waitTimeout/2 {
		t.Errorf("expired after only %v", d)
	}
	st = u.Stats()
	if st.TxNoNeighbour != uint64(len(pkts)) || st.TxFrames != 0 || st.ArpFlushed != 0 || st.ArpRequests == 0 {
		t.Fatalf("stats %+v: want all %d dropped for want of a neighbour", st, len(pkts))
	}
	quietAudit(t, u)
}

// TestNoRoute: destinations that are not reached through the device are
// dropped and counted, the first packet after the resolver looked, later
// ones at once.
func TestNoRoute(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	// Another device in A, for a destination routed elsewhere.
	ipIn(t, p.a, "link", "add", "veth2", "type", "veth", "peer", "name", "veth3")
	ipIn(t, p.a, "addr", "add", "10.9.0.1/24", "dev", "veth2")
	ipIn(t, p.a, "link", "set", "veth2", "up")
	ipIn(t, p.a, "link", "set", "veth3", "up")
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	from := netip.AddrPortFrom(addrA, 5555)
	var want uint64
	for _, dst := range []string{"203.0.113.5:7777", "10.9.0.5:7777", "192.0.2.1:7777"} {
		pkts := packets(3, from, netip.MustParseAddrPort(dst), "x")
		if _, err := sendPackets(q, pkts[:1], headroom); err != nil {
			t.Fatal(err)
		}
		want++
		waitFor(t, 2*time.Second, "the first packet to "+dst+" to be dropped", func() bool { return u.Stats().TxNoRoute == want })
		n, err := sendPackets(q, pkts[1:], headroom)
		if err != nil || n != 0 {
			t.Fatalf("write to %s: %d accepted, %v", dst, n, err)
		}
		want += 2
		if st := u.Stats(); st.TxNoRoute != want {
			t.Fatalf("%s: no-route drops %d, want %d", dst, st.TxNoRoute, want)
		}
	}
	if st := u.Stats(); st.TxFrames != 0 || st.TxNoNeighbour != 0 {
		t.Fatalf("stats %+v", st)
	}
	quietAudit(t, u)
}

// TestInvalidPackets: Send skips what cannot be sent: a payload too big
// for the MTU with the outer headers, a destination that is not IPv4, an
// offset past the buffer.
func TestInvalidPackets(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	to := packetio.Meta{Remote: netip.AddrPortFrom(addrB, 2)}
	v6 := packetio.Meta{Remote: netip.MustParseAddrPort("[2001:db8::2]:2")}
	fits := make([]byte, int(u.mtu.Load())-encap.OuterV4Len)
	bufs := [][]byte{append(fits, 0), []byte("ok"), []byte("ok")}
	meta := []packetio.Meta{to, v6, to}
	n, err := q.Send(bufs, meta, 0)
	if err != nil || n != 1 {
		t.Fatalf("accepted %d, %v; want only the last", n, err)
	}
	if n, err := q.Send([][]byte{[]byte("ok")}, meta[:1], 3); err != nil || n != 0 {
		t.Fatalf("offset past the buffer: accepted %d, %v", n, err)
	}
	if n, err := q.Send([][]byte{fits}, meta[:1], 0); err != nil || n != 1 {
		t.Fatalf("largest payload: accepted %d, %v", n, err)
	}
	if st := u.Stats(); st.TxInvalid != 3 {
		t.Fatalf("invalid %d, want 3", st.TxInvalid)
	}
	// The device's MTU went down: what fitted before is too big now, and
	// an MTU the frames cannot hold is refused, the last one staying.
	if err := q.SetMTU(1400); err != nil {
		t.Fatal(err)
	}
	if err := q.SetMTU(4000); err == nil || !strings.Contains(err.Error(), "MTU 4000") {
		t.Fatalf("SetMTU(4000) with 4096-byte frames: %v", err)
	}
	if n, err := q.Send([][]byte{fits}, meta[:1], 0); err != nil || n != 0 {
		t.Fatalf("payload of the old MTU after SetMTU(1400): accepted %d, %v", n, err)
	}
	if n, err := q.Send([][]byte{fits[:1400-encap.OuterV4Len]}, meta[:1], 0); err != nil || n != 1 {
		t.Fatalf("largest payload of MTU 1400: accepted %d, %v", n, err)
	}
}

// TestGateway: the next hop of an off-link destination is its gateway.
func TestGateway(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	ipIn(t, p.a, "route", "add", "198.51.100.0/24", "via", "192.0.2.2")
	ipIn(t, p.b, "addr", "add", "198.51.100.9/32", "dev", "lo")
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	ipIn(t, p.a, "neigh", "flush", "dev", "veth0")
	to := netip.MustParseAddrPort("198.51.100.9:7777")
	rcv := udpConnIn(t, p.b, to)
	pkts := packets(20, netip.AddrPortFrom(addrA, 5555), to, "gw")
	mustSend(t, q, pkts)
	expectDatagrams(t, rcv, len(pkts), u)
}

// TestConcurrentWriters: several goroutines write to one queue while its
// worker reads; under -race this checks the locking.
func TestConcurrentWriters(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	closeAfter(t, u, 20*time.Second)
	to := netip.AddrPortFrom(addrB, 7777)
	rcv := udpConnIn(t, p.b, to)

	// Resolve B first: a burst from four writers to an unknown next hop
	// would overflow the ARP wait queue, by design.
	prime := packets(1, netip.AddrPortFrom(addrA, 5999), to, "prime")
	if n, err := sendPackets(q, prime, headroom); err != nil || n != 1 {
		t.Fatalf("prime: %d, %v", n, err)
	}
	waitFor(t, 2*time.Second, "B to be resolved", func() bool { return u.Stats().ArpFlushed == 1 })
	buf := make([]byte, 100)
	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rcv.Read(buf); err != nil {
		t.Fatal(err)
	}

	const writers, each = 4, 250
	rxDone := make(chan error, 1)
	go func() {
		_, err := readN(q, 100)
		rxDone <- err
	}()
	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 0))
	for i := range 100 {
		sender.WriteToUDPAddrPort(fmt.Appendf(nil, "in-%d", i), netip.AddrPortFrom(addrA, 8472))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkts := packets(each, netip.AddrPortFrom(addrA, uint16(6000+w)), to, fmt.Sprint("w", w))
			for i := 0; i < each; i += 25 {
				n, err := sendPackets(q, pkts[i:i+25], headroom)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if total != writers*each {
		t.Fatalf("accepted %d of %d", total, writers*each)
	}
	if err := <-rxDone; err != nil {
		t.Fatal(err)
	}
	rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range writers * each {
		if _, err := rcv.Read(buf); err != nil {
			t.Fatalf("datagram %d: %v (stats %+v)", i, err, u.Stats())
		}
	}
	quietAudit(t, u)
}
