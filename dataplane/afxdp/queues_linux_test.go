package afxdp

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestMultiQueue: a veth with two RX queues gets two sockets; flows spread
// over both, and either queue can send.
func TestMultiQueue(t *testing.T) {
	needRoot(t)
	p := newPair(t, 2)
	u := openIn(t, p.a, defaultConfig())
	qs := u.Queues()
	if len(qs) != 2 || u.Info().Queues != 2 || qs[1].Name() != "afxdp:veth0/q1" {
		t.Fatalf("queues %v, info %+v", qs, u.Info())
	}
	closeAfter(t, u, 20*time.Second)
	const flows, per = 40, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for _, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bufs, sizes := makeBufs(q.BatchSize())
			for {
				n, err := receivePackets(q, bufs, sizes, headroom)
				if err != nil {
					return
				}
				mu.Lock()
				got += n
				done := got >= flows*per
				mu.Unlock()
				if done {
					for _, q := range qs {
						q.Close()
					}
					return
				}
			}
		}()
	}
	node := netip.AddrPortFrom(addrA, 8472)
	for f := range flows {
		c := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 0))
		for i := range per {
			if _, err := c.WriteToUDPAddrPort(fmt.Appendf(nil, "%d-%d", f, i), node); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	s0, s1 := qs[0].Stats(), qs[1].Stats()
	t.Logf("queue 0: %d packets, queue 1: %d packets", s0.RxFrames, s1.RxFrames)
	if s0.RxFrames+s1.RxFrames != flows*per {
		t.Fatalf("received %d+%d, want %d", s0.RxFrames, s1.RxFrames, flows*per)
	}
	if s0.RxFrames == 0 || s1.RxFrames == 0 {
		t.Errorf("%d flows all landed on one queue", flows)
	}

	// Sending through queue 1 (closed for the engine, still alive).
	to := netip.AddrPortFrom(addrB, 7777)
	rcv := udpConnIn(t, p.b, to)
	for _, q := range qs {
		q.closed.Store(false)
	}
	pkts := packets(50, netip.AddrPortFrom(addrA, 5555), to, "q1")
	mustSend(t, qs[1], pkts)
	expectDatagrams(t, rcv, len(pkts), u)
	quietAudit(t, u)
}

// TestGenericMode: forced generic XDP works both ways.
func TestGenericMode(t *testing.T) {
	needRoot(t)
	p := newPair(t, 1)
	cfg := defaultConfig()
	cfg.Mode = ModeGeneric
	u := openIn(t, p.a, cfg)
	if info := u.Info(); info.XDPMode != "generic" || info.Bind != "copy" {
		t.Fatalf("info %+v", info)
	}
	if a := attachedIn(t, p.a, "veth0"); a.mode != xdpAttachedSkb {
		t.Fatalf("attached %+v, want generic", a)
	}
	q := u.Queues()[0]
	closeAfter(t, u, 20*time.Second)
	sender := udpConnIn(t, p.b, netip.AddrPortFrom(addrB, 0))
	rx := make(chan error, 1)
	go func() {
		_, err := readN(q, 50)
		rx <- err
	}()
	for i := range 50 {
		sender.WriteToUDPAddrPort(fmt.Appendf(nil, "g-%d", i), netip.AddrPortFrom(addrA, 8472))
	}
	if err := <-rx; err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(addrB, 7777)
	rcv := udpConnIn(t, p.b, to)
	pkts := packets(50, netip.AddrPortFrom(addrA, 5555), to, "g")
	mustSend(t, q, pkts)
	expectDatagrams(t, rcv, len(pkts), u)
	quietAudit(t, u)
}
