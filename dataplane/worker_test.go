package dataplane

import (
	"testing"

	"github.com/vxdp/vxdp/encap"
)

// fullDevice hands out a packet in every buffer it is given, or in the
// first only while short is set.
type fullDevice struct {
	nopDevice
	short bool
}

func (d *fullDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := len(bufs)
	if d.short {
		n = min(n, 1)
	}
	for i := range n {
		sizes[i] = 60
	}
	return n, nil
}

// A worker starts with one buffer and doubles its batch after each read
// that filled it, up to the device's batch size; a read that leaves
// buffers empty does not grow it. Its transmit queues always take a
// whole batch without growing.
func TestWorkerBuffersGrowWithBatches(t *testing.T) {
	e, ep := newBenchEngine(t)
	dev := &fullDevice{short: true}
	w := newWorker(e, dev, nil, &DeviceStats{}, sourcePod, ep)
	check := func(want int) {
		t.Helper()
		if len(w.bufs) != want || len(w.sizes) != want || len(w.scratch) != want {
			t.Fatalf("%d buffers, %d sizes, %d scratch buffers, want %d each", len(w.bufs), len(w.sizes), len(w.scratch), want)
		}
		for i := range w.queues {
			if c := cap(w.queues[i].bufs); c < want {
				t.Fatalf("queue %d holds %d packets, want %d", i, c, want)
			}
		}
		for i := range w.utx {
			if c, m := cap(w.utx[i].bufs), cap(w.utx[i].meta); c < 2*want || m < 2*want {
				t.Fatalf("underlay queue %d holds %d packets and %d metas, want %d", i, c, m, 2*want)
			}
		}
		for i, b := range w.bufs {
			if len(b) < int(e.linkBuf.Load()) {
				t.Fatalf("buffer %d has %d bytes, want %d", i, len(b), e.linkBuf.Load())
			}
		}
	}
	check(1)
	// A single packet fills a batch of one.
	step := func() {
		w.growBuffers()
		if _, err := w.read(); err != nil {
			t.Fatal(err)
		}
	}
	step()
	step()
	check(2)
	// One packet in a batch of two: no growth.
	step()
	step()
	check(2)
	dev.short = false
	for _, want := range []int{2, 4, 8, 16, 32, 32, 32} {
		step()
		check(want)
	}
	if w.batch != dev.BatchSize() {
		t.Fatalf("batch %d, want %d", w.batch, dev.BatchSize())
	}
}

// An underlay worker's buffers take the largest datagram a UDP socket
// hands out, and it gets its metadata with each buffer.
func TestUnderlayWorkerGrows(t *testing.T) {
	e, _ := newBenchEngine(t)
	w := newWorker(e, nil, &nopUnderlay{}, &DeviceStats{}, sourceUnderlay, nil)
	if len(w.bufs) != 1 || len(w.meta) != 1 || len(w.bufs[0]) < encap.Headroom+65535 {
		t.Fatalf("%d buffers of %d bytes, %d metas", len(w.bufs), len(w.bufs[0]), len(w.meta))
	}
	w.growTo(5)
	if len(w.bufs) != 5 || len(w.meta) != 5 || len(w.sizes) != 5 {
		t.Fatalf("%d buffers, %d metas, %d sizes after growing to 5", len(w.bufs), len(w.meta), len(w.sizes))
	}
	w.growTo(1000)
	if len(w.bufs) != w.batch {
		t.Fatalf("%d buffers, want at most the batch size %d", len(w.bufs), w.batch)
	}
}
