package afxdp

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// fakeKernel plays the kernel's side of a queue's four rings over plain
// memory, so that the frame accounting can be driven through every path
// without AF_XDP.
type fakeKernel struct {
	fill, comp, rx, tx *ring // the kernel's views
	umem               []byte
	held               []uint64 // fill frames taken, not yet on the RX ring
	sending            []uint64 // TX frames taken, not yet completed
}

func fakeRings(t *testing.T, size uint32) (ours, theirs [4]*ring) {
	t.Helper()
	for i, entry := range []uintptr{addrEntrySize, addrEntrySize, descEntrySize, descEntrySize} {
		// fill and tx are produced by us, comp and rx by the kernel.
		weProduce := i == 0 || i == 3
		o, k, _ := testRingPair(t, size, entry, ^uint32(0)-uint32(i*7+2), weProduce)
		ours[i], theirs[i] = o, k
	}
	return ours, theirs
}

func newFakeQueue(t *testing.T, frames, frameSize int) (*Queue, *fakeKernel) {
	t.Helper()
	ours, theirs := fakeRings(t, uint32(frames/2))
	x := &xsk{
		fd:   -1,
		umem: make([]byte, frames*frameSize),
		fill: ours[0], comp: ours[1], rx: ours[2], tx: ours[3],
	}
	k := &fakeKernel{fill: theirs[0], comp: theirs[1], rx: theirs[2], tx: theirs[3], umem: x.umem}
	u := newUnderlay(Config{Device: "fake0", NodeIP: addrA})
	u.mac = [6]byte{2, 0, 0, 0, 0, 1}
	u.mtu.Store(1500)
	u.nb = &neighbours{reqs: make(chan netip.Addr, requestBacklog)}
	u.nb.snap.Store(&neighSnap{m: map[netip.Addr]hop{}})
	q := newQueue(u, 0, x, frameSize, frames)
	return q, k
}

// receive moves up to n frames from the fill ring to the RX ring, each
// carrying pkt behind an Ethernet header (ethertype et).
func (k *fakeKernel) receive(n int, pkt []byte, et uint16) {
	idx, got := k.fill.peek(uint32(n))
	for i := uint32(0); i < got; i++ {
		k.held = append(k.held, *k.fill.addr(idx + i))
	}
	k.fill.release()
	for len(k.held) > 0 {
		ridx, ok := k.rx.reserve(1)
		if ok == 0 {
			return
		}
		a := k.held[0]
		k.held = k.held[1:]
		const off = 64 // the kernel may start the packet anywhere in the frame
		f := k.umem[a+off:]
		f[12], f[13] = byte(et>>8), byte(et)
		n := copy(f[ethLen:], pkt)
		*k.rx.desc(ridx) = xdpDesc{addr: a + off, len: uint32(ethLen + n)}
		k.rx.submit()
	}
}

// transmit takes up to n frames off the TX ring and completes up to m of
// those in flight.
func (k *fakeKernel) transmit(n, m int) {
	idx, got := k.tx.peek(uint32(n))
	for i := uint32(0); i < got; i++ {
		k.sending = append(k.sending, k.tx.desc(idx+i).addr)
	}
	k.tx.release()
	for m > 0 && len(k.sending) > 0 {
		cidx, ok := k.comp.reserve(1)
		if ok == 0 {
			return
		}
		*k.comp.addr(cidx) = k.sending[0]
		k.sending = k.sending[1:]
		k.comp.submit()
		m--
	}
}

func (k *fakeKernel) inFlight() int { return len(k.held) + len(k.sending) }

// TestFrameConservation drives a queue over fake rings through random
// receives, sends, ARP waits, flushes, expiries and kernel delays, and
// checks after every step that each frame is in exactly one place and
// that the counts agree; at the end every frame is back.
func TestFrameConservation(t *testing.T) {
	const frames, frameSize = 128, 2048
	q, k := newFakeQueue(t, frames, frameSize)
	rng := rand.New(rand.NewPCG(7, 11))

	known := netip.AddrPortFrom(addrB, 7777)
	unknown := netip.MustParseAddrPort("192.0.2.77:7777")
	from := netip.AddrPortFrom(addrA, 5555)
	pktKnown := udpPacket(from, known, []byte("to b"), headroom)
	pktUnknown := udpPacket(from, unknown, []byte("to nobody yet"), headroom)
	rxPkt := udpPacket(netip.AddrPortFrom(addrB, 1), netip.AddrPortFrom(addrA, 8472), []byte("in"), 0)
	bKey := addrB
	nobodyKey := unknown.Addr()
	q.u.nb.snap.Store(&neighSnap{m: map[netip.Addr]hop{bKey: {mac: [6]byte{2, 0, 0, 0, 0, 2}}}, version: 1})

	check := func(step int) {
		t.Helper()
		hidden, err := q.audit()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if hidden != k.inFlight() {
			t.Fatalf("step %d: audit says %d frames in the kernel, the fake kernel holds %d", step, hidden, k.inFlight())
		}
		if st := q.Stats(); st.FramesFree+st.FramesFill+st.FramesTx+st.FramesWaiting != st.FramesTotal {
			t.Fatalf("step %d: gauges do not add up: %+v", step, st)
		}
	}
	check(0)
	bufs, sizes := makeBufs(batchSize)
	meta := make([]packetio.Meta, batchSize)
	var delivered, received uint64
	for step := 1; step <= 3000; step++ {
		switch rng.IntN(7) {
		case 0, 1:
			et := uint16(0x0800)
			if rng.IntN(10) == 0 {
				et = 0x86dd // dropped by receive
			}
			k.receive(rng.IntN(40), rxPkt, et)
		case 2:
			q.rxMu.Lock()
			n, _ := q.receive(bufs[:1+rng.IntN(batchSize)], sizes, meta, headroom)
			q.rxMu.Unlock()
			received += uint64(n)
		case 3:
			batch := make([][]byte, rng.IntN(50))
			for i := range batch {
				batch[i] = pktKnown
				if rng.IntN(5) == 0 {
					batch[i] = pktUnknown
				}
			}
			if _, err := sendPackets(q, batch, headroom); err != nil {
				t.Fatal(err)
			}
		case 4:
			k.transmit(rng.IntN(64), rng.IntN(64))
		case 5:
			// The next hop of the unknown destination resolves, or the
			// waiting packets expire.
			if rng.IntN(2) == 0 {
				q.u.nb.snap.Store(&neighSnap{m: map[netip.Addr]hop{
					bKey:      {mac: [6]byte{2, 0, 0, 0, 0, 2}},
					nobodyKey: {mac: [6]byte{2, 0, 0, 0, 0, 3}},
				}, version: uint64(step)})
				q.flushWaiting()
				q.u.nb.snap.Store(&neighSnap{m: map[netip.Addr]hop{bKey: {mac: [6]byte{2, 0, 0, 0, 0, 2}}}, version: uint64(step) + 1})
			} else {
				q.u.epoch = q.u.epoch.Add(-2 * waitTimeout)
				q.flushWaiting()
			}
		case 6:
			for range len(q.u.nb.reqs) {
				<-q.u.nb.reqs
			}
		}
		check(step)
	}
	// Drain: the kernel sends and completes everything, passes on what it
	// holds, Receive takes all, the waiting packets expire.
	for k.inFlight() > 0 || k.tx.queued() > 0 || k.rx.queued() > 0 {
		k.transmit(1<<20, 1<<20)
		k.receive(0, rxPkt, 0x0800)
		q.rxMu.Lock()
		n, _ := q.receive(bufs, sizes, meta, headroom)
		q.rxMu.Unlock()
		received += uint64(n)
	}
	q.u.epoch = q.u.epoch.Add(-2 * waitTimeout)
	q.flushWaiting()
	k.transmit(1<<20, 1<<20)
	q.txMu.Lock()
	q.reap()
	q.publishTX()
	q.txMu.Unlock()
	check(-1)
	st := q.Stats()
	if st.FramesTx != 0 || st.FramesWaiting != 0 || st.FramesFill != frames/2 || st.FramesFree != frames/2 {
		t.Fatalf("after draining: %+v", st)
	}
	delivered = st.TxCompleted
	if st.TxFrames != delivered {
		t.Fatalf("%d frames sent, %d completed", st.TxFrames, delivered)
	}
	if st.RxFrames != received || received == 0 || st.RxDropped == 0 || st.ArpFlushed == 0 || st.TxNoNeighbour == 0 {
		t.Fatalf("paths not all exercised or counted: received %d, %+v", received, st)
	}
	t.Logf("%d received, %d dropped, %d sent, %d waited and sent, %d expired, %d exhausted",
		st.RxFrames, st.RxDropped, st.TxFrames, st.ArpFlushed, st.TxNoNeighbour, st.TxFramesExhausted)
}

// TestAuditCatchesLeaks: the audit is not vacuous.
func TestAuditCatchesLeaks(t *testing.T) {
	q, _ := newFakeQueue(t, 64, 2048)
	if _, err := q.audit(); err != nil {
		t.Fatalf("fresh queue: %v", err)
	}
	// A lost TX frame.
	q.txFree = q.txFree[:len(q.txFree)-1]
	if _, err := q.audit(); err == nil {
		t.Fatal("lost frame not noticed")
	}
	// A frame in two places.
	q.txFree = append(q.txFree, q.txFree[0])
	if _, err := q.audit(); err == nil {
		t.Fatal("duplicate frame not noticed")
	}
}
