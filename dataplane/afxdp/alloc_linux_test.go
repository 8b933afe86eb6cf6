package afxdp

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// TestAllocs: Receive and Send allocate nothing in steady state.
func TestAllocs(t *testing.T) {
	needRoot(t)
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	closeAfter(t, u, 30*time.Second)
	to := netip.AddrPortFrom(addrB, 7777)
	udpConnIn(t, p.b, to) // a listener, so that B answers with no ICMP

	pkt := packets(1, netip.AddrPortFrom(addrA, 5555), to, "alloc")
	if n, err := sendPackets(q, pkt, headroom); err != nil || n != 1 {
		t.Fatalf("prime: %d, %v", n, err)
	}
	waitFor(t, 2*time.Second, "B to be resolved", func() bool { return u.Stats().ArpFlushed == 1 })
	const runs = 300
	pb, pm := payloadsOf(pkt, headroom)
	if a := testing.AllocsPerRun(runs, func() {
		if n, err := q.Send(pb, pm, 0); err != nil || n != 1 {
			t.Fatalf("write: %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Write: %v allocations per call", a)
	}
	batch := packets(32, netip.AddrPortFrom(addrA, 5555), to, "batch")
	bb, bm := payloadsOf(batch, headroom)
	if a := testing.AllocsPerRun(runs/10, func() {
		if n, err := q.Send(bb, bm, 0); err != nil || n != len(batch) {
			t.Fatalf("write: %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Write of 32: %v allocations per call", a)
	}

	// Queue up more packets than the runs will read, so Read never parks.
	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 0))
	for i := range 2 * (runs + 1) {
		if _, err := sender.WriteToUDPAddrPort(fmt.Appendf(nil, "a-%d", i), netip.AddrPortFrom(addrA, 8472)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "the RX ring to fill", func() bool {
		return atomic.LoadUint32(q.x.rx.producer)-atomic.LoadUint32(q.x.rx.consumer) >= 2*(runs+1)
	})
	bufs, sizes := makeBufs(1)
	meta := make([]packetio.Meta, 8)
	if a := testing.AllocsPerRun(runs, func() {
		if n, err := q.Receive(bufs, sizes, meta, headroom); err != nil || n != 1 {
			t.Fatalf("read: %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Read: %v allocations per call", a)
	}
	bufs, sizes = makeBufs(8)
	if a := testing.AllocsPerRun(runs/10, func() {
		if n, err := q.Receive(bufs, sizes, meta, headroom); err != nil || n != 8 {
			t.Fatalf("read: %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Read of 8: %v allocations per call", a)
	}
}

// TestThroughput measures, in bounded loops, how fast one queue sends and
// receives on a veth pair. It asserts nothing but that traffic flowed.
func TestThroughput(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("short")
	}
	p := newPair(t, 1)
	u := openIn(t, p.a, defaultConfig())
	q := u.Queues()[0]
	closeAfter(t, u, 30*time.Second)
	to := netip.AddrPortFrom(addrB, 7777)
	udpConnIn(t, p.b, to)

	// TX: 64-byte payloads in batches of 64, for at most 2 s or 500k packets.
	batch := packets(64, netip.AddrPortFrom(addrA, 5555), to, "tput")
	if _, err := sendPackets(q, batch[:1], headroom); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "B to be resolved", func() bool { return u.Stats().ArpFlushed == 1 })
	before := u.Stats()
	start := time.Now()
	sent := 0
	for sent < 500_000 && time.Since(start) < 2*time.Second {
		n, err := sendPackets(q, batch, headroom)
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	el := time.Since(start)
	after := u.Stats()
	t.Logf("TX: %d packets in %v: %.0f packets/s (%d kicks, %d ring-full drops)",
		sent, el.Round(time.Millisecond), float64(sent)/el.Seconds(), after.TxKicks-before.TxKicks, after.TxRingFull-before.TxRingFull)
	if sent == 0 {
		t.Fatal("nothing sent")
	}

	// RX: B sends as fast as one Go UDP socket can, for at most 2 s.
	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 0))
	var stop atomic.Bool
	sentRX := make(chan int)
	go func() {
		payload := make([]byte, 64)
		n := 0
		for !stop.Load() && n < 1_000_000 {
			if _, err := sender.WriteToUDPAddrPort(payload, netip.AddrPortFrom(addrA, 8472)); err != nil {
				break
			}
			n++
		}
		sentRX <- n
	}()
	time.AfterFunc(2*time.Second, func() { stop.Store(true) })
	bufs, sizes := makeBufs(q.BatchSize())
	got, total := 0, -1
	start = time.Now()
	var last time.Time
	go func() {
		// Stop reading once the sender is done and the queue drained
		// (or lost what it lost).
		total := <-sentRX
		for u.Stats().RxFrames+u.Stats().KernelRxDropped < uint64(total) && time.Since(start) < 5*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		q.Close()
		sentRX <- total
	}()
	for {
		n, err := receivePackets(q, bufs, sizes, headroom)
		if err != nil {
			break
		}
		got += n
		last = time.Now()
	}
	total = <-sentRX
	el = last.Sub(start)
	st := u.Stats()
	t.Logf("RX: %d of %d packets in %v: %.0f packets/s (kernel: %d dropped, %d RX ring full, %d fill ring empty)",
		got, total, el.Round(time.Millisecond), float64(got)/el.Seconds(), st.KernelRxDropped, st.KernelRxRingFull, st.KernelFillRingEmpty)
	quietAudit(t, u)
}

// TestKernelDropsApart: frames the kernel drops because the engine did not
// read in time are counted as the kernel's drops (KernelDropped), not as
// the driver's own rejects (RXDropped: a frame too large for the engine's
// buffer, a tunnel checksum that failed).
func TestKernelDropsApart(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	cfg := defaultConfig()
	cfg.NumFrames = 64 // 32 RX frames: a short burst overflows them
	u := openIn(t, p.a, cfg)
	q := u.Queues()[0]
	closeAfter(t, u, 30*time.Second)

	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 0))
	const sent = 200
	for i := range sent {
		if _, err := sender.WriteToUDPAddrPort(fmt.Appendf(nil, "k-%d", i), netip.AddrPortFrom(addrA, 8472)); err != nil {
			t.Fatal(err)
		}
	}
	var kd uint64
	waitFor(t, 5*time.Second, "the kernel's drops", func() bool {
		var err error
		kd, err = q.KernelDropped()
		return err == nil && kd > 0
	})
	bufs, sizes := makeBufs(q.BatchSize())
	got := 0
	deadline := time.Now().Add(5 * time.Second)
	for got+int(kd) < sent && time.Now().Before(deadline) {
		n, err := receivePackets(q, bufs, sizes, headroom)
		if err != nil {
			t.Fatal(err)
		}
		got += n
		kd, _ = q.KernelDropped()
	}
	st := u.Stats()
	t.Logf("%d read, %d dropped by the kernel (rx_dropped %d, rx_ring_full %d)", got, kd, st.KernelRxDropped, st.KernelRxRingFull)
	if got+int(kd) != sent {
		t.Errorf("%d read + %d dropped by the kernel, want %d", got, kd, sent)
	}
	if kd != st.KernelRxDropped+st.KernelRxRingFull {
		t.Errorf("KernelDropped %d, stats %+v", kd, st)
	}
	if d := q.RXDropped(); d != 0 {
		t.Errorf("RXDropped = %d, want 0: the driver refused nothing", d)
	}
	quietAudit(t, u)
}
