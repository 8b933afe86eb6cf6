package afxdp

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// testRingMem lays out a ring the way the kernel does (indices, then flags,
// then entries; the offsets differ from the kernel's on purpose) over a
// plain slice and returns both ends: ours and a second view playing the
// kernel.
func testRingPair(t *testing.T, size uint32, entry uintptr, start uint32, weProduce bool) (ours, peer *ring, mem []byte) {
	t.Helper()
	off := ringOffsets{producer: 0, consumer: 64, flags: 128, desc: 192}
	mem = make([]byte, off.desc+uint64(size)*uint64(entry))
	var err error
	if ours, err = newRing(mem, off, size, entry); err != nil {
		t.Fatal(err)
	}
	if peer, err = newRing(mem, off, size, entry); err != nil {
		t.Fatal(err)
	}
	atomic.StoreUint32(ours.producer, start)
	atomic.StoreUint32(ours.consumer, start)
	if weProduce {
		ours.initProducer()
		peer.initConsumer()
	} else {
		ours.initConsumer()
		peer.initProducer()
	}
	return ours, peer, mem
}

func TestNewRingRejects(t *testing.T) {
	off := ringOffsets{producer: 0, consumer: 4, flags: 8, desc: 16}
	mem := make([]byte, 16+8*8)
	for _, tc := range []struct {
		name string
		mem  []byte
		off  ringOffsets
		size uint32
	}{
		{"zero size", mem, off, 0},
		{"not a power of two", mem, off, 6},
		{"entries past the end", mem, off, 16},
		{"index past the end", mem, ringOffsets{producer: uint64(len(mem)), consumer: 4, flags: 8, desc: 16}, 8},
		{"misaligned index", mem, ringOffsets{producer: 2, consumer: 4, flags: 8, desc: 16}, 8},
		{"misaligned entries", make([]byte, 200), ringOffsets{producer: 0, consumer: 4, flags: 8, desc: 20}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := newRing(tc.mem, tc.off, tc.size, addrEntrySize); err == nil {
				t.Fatal("newRing accepted it")
			}
		})
	}
	if _, err := newRing(mem, off, 8, addrEntrySize); err != nil {
		t.Fatalf("exact fit refused: %v", err)
	}
}

func TestRingFullAndEmpty(t *testing.T) {
	for _, start := range []uint32{0, 1<<32 - 3} {
		ours, peer, _ := testRingPair(t, 8, addrEntrySize, start, true)

		if _, n := peer.peek(8); n != 0 {
			t.Fatalf("start %#x: empty ring gave %d entries", start, n)
		}
		idx, n := ours.reserve(100)
		if n != 8 {
			t.Fatalf("start %#x: reserve on an empty ring of 8 got %d", start, n)
		}
		for i := uint32(0); i < n; i++ {
			*ours.addr(idx + i) = uint64(i) * 4096
		}
		if _, n := ours.reserve(1); n != 0 {
			t.Fatalf("start %#x: reserve on a full ring got %d", start, n)
		}
		// Nothing is visible before submit.
		if _, n := peer.peek(8); n != 0 {
			t.Fatalf("start %#x: consumer saw %d unsubmitted entries", start, n)
		}
		if got := ours.pending(); got != 8 {
			t.Fatalf("pending = %d, want 8", got)
		}
		ours.submit()
		if got := ours.queued(); got != 8 {
			t.Fatalf("queued = %d, want 8", got)
		}
		pidx, pn := peer.peek(3)
		if pn != 3 {
			t.Fatalf("peek(3) got %d", pn)
		}
		for i := uint32(0); i < pn; i++ {
			if got := *peer.addr(pidx + i); got != uint64(i)*4096 {
				t.Fatalf("entry %d = %d", i, got)
			}
		}
		// Not released yet: still full for the producer.
		if _, n := ours.reserve(1); n != 0 {
			t.Fatalf("start %#x: slot reused before release", start)
		}
		peer.release()
		if _, n := ours.reserve(5); n != 3 {
			t.Fatalf("start %#x: after releasing 3, reserve(5) got %d", start, n)
		}
		ours.cancel(3)
		if got := ours.pending(); got != 0 {
			t.Fatalf("pending after cancel = %d", got)
		}
		_, pn = peer.peek(100)
		if pn != 5 {
			t.Fatalf("start %#x: remaining entries %d, want 5", start, pn)
		}
		peer.release()
		if got := ours.queued(); got != 0 {
			t.Fatalf("queued on drained ring = %d", got)
		}
		if _, n := ours.reserve(100); n != 8 {
			t.Fatalf("start %#x: drained ring reserve got %d", start, n)
		}
	}
}

// TestRingWrap streams numbered entries through rings whose indices start
// just below 2^32, in random batch sizes on both sides, and checks FIFO
// order, that no slot is overwritten before release, and that the indices
// really wrapped.
func TestRingWrap(t *testing.T) {
	for _, tc := range []struct {
		name      string
		weProduce bool
		entry     uintptr
	}{
		{"fill-like", true, addrEntrySize},
		{"tx-like", true, descEntrySize},
		{"rx-like", false, descEntrySize},
		{"completion-like", false, addrEntrySize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 16
			start := uint32(1<<32 - 37)
			ours, peer, _ := testRingPair(t, size, tc.entry, start, tc.weProduce)
			prod, cons := ours, peer
			if !tc.weProduce {
				prod, cons = peer, ours
			}
			rng := rand.New(rand.NewPCG(1, 2))
			var next, want uint64
			const total = 5000
			for want < total {
				idx, n := prod.reserve(uint32(rng.IntN(size + 4)))
				for i := uint32(0); i < n; i++ {
					put(prod, tc.entry, idx+i, next)
					next++
				}
				if rng.IntN(4) == 0 && n > 0 {
					// Back out the last one: it must not appear.
					prod.cancel(1)
					next--
				}
				prod.submit()
				if q := prod.queued(); q > size {
					t.Fatalf("queued %d > size", q)
				}
				cidx, cn := cons.peek(uint32(rng.IntN(size + 4)))
				for i := uint32(0); i < cn; i++ {
					if got := get(cons, tc.entry, cidx+i); got != want {
						t.Fatalf("entry %d: got %d", want, got)
					}
					want++
				}
				cons.release()
			}
			if p := atomic.LoadUint32(prod.producer); p >= start {
				t.Fatalf("producer index %#x did not wrap past 2^32 (start %#x)", p, start)
			}
			if c := atomic.LoadUint32(cons.consumer); c-start != uint32(want) {
				t.Fatalf("consumer index %#x, want start+%d", c, want)
			}
		})
	}
}

func put(r *ring, entry uintptr, i uint32, v uint64) {
	if entry == addrEntrySize {
		*r.addr(i) = v
		return
	}
	*r.desc(i) = xdpDesc{addr: v, len: uint32(v), options: 0}
}

func get(r *ring, entry uintptr, i uint32) uint64 {
	if entry == addrEntrySize {
		return *r.addr(i)
	}
	d := r.desc(i)
	if d.len != uint32(d.addr) {
		return ^uint64(0)
	}
	return d.addr
}

func TestRingEntriesDoNotOverlap(t *testing.T) {
	ours, _, mem := testRingPair(t, 4, descEntrySize, 0, true)
	idx, n := ours.reserve(4)
	for i := uint32(0); i < n; i++ {
		*ours.desc(idx + i) = xdpDesc{addr: ^uint64(0), len: ^uint32(0), options: ^uint32(0)}
	}
	// Exactly the 64 bytes of the four descriptors changed.
	ff := 0
	for _, b := range mem {
		if b == 0xff {
			ff++
		}
	}
	if ff != 4*descEntrySize {
		t.Fatalf("%d bytes written, want %d", ff, 4*descEntrySize)
	}
}

func TestRingNeedWakeup(t *testing.T) {
	ours, _, _ := testRingPair(t, 4, addrEntrySize, 0, true)
	if ours.needWakeup() {
		t.Fatal("flag set on a fresh ring")
	}
	atomic.StoreUint32(ours.flags, ringNeedWakeup)
	if !ours.needWakeup() {
		t.Fatal("flag not seen")
	}
}

// TestRingConcurrent runs a producer and a consumer goroutine on one ring
// (under -race this also checks the index protocol is race-free).
func TestRingConcurrent(t *testing.T) {
	ours, peer, _ := testRingPair(t, 64, addrEntrySize, 1<<32-1000, true)
	const total = 200000
	done := make(chan error, 1)
	go func() {
		var want uint64
		for want < total {
			idx, n := peer.peek(32)
			for i := uint32(0); i < n; i++ {
				if got := *peer.addr(idx + i); got != want {
					done <- fmt.Errorf("entry %d: got %d", want, got)
					return
				}
				want++
			}
			peer.release()
		}
		done <- nil
	}()
	var next uint64
	for next < total {
		idx, n := ours.reserve(uint32(min(17, total-next)))
		for i := uint32(0); i < n; i++ {
			*ours.addr(idx + i) = next
			next++
		}
		ours.submit()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
