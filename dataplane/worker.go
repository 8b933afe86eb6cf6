package dataplane

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

type sourceKind uint8

const (
	sourcePod sourceKind = iota
	sourceHost
	sourceUnderlay
)

// linkRoom is the headroom every queued packet keeps for the driver that
// writes it, enough for an Ethernet header (AF_XDP).
const linkRoom = 32

// maxQueues bounds the distinct destinations one batch can have; a batch
// that would need more flushes early.
const maxQueues = 8

// txQueue collects the packets of one batch for one device.
type txQueue struct {
	dev   packetio.Device
	stats *DeviceStats
	bufs  [][]byte
}

// worker reads one device and forwards what it reads. It owns its buffers;
// nothing in it is shared with other workers.
type worker struct {
	e   *Engine
	dev packetio.Device
	// tapDev is the device captures of what this worker reads are keyed
	// by: the endpoint's device for every queue of a multi-queue pod.
	tapDev packetio.Device
	stats  *DeviceStats
	kind   sourceKind
	ep     *endpoint // the pod whose device this is (sourcePod)

	bufs  [][]byte
	sizes []int

	// scratch holds packets the worker makes itself (ICMP errors), at
	// most one per packet read.
	scratch  [][]byte
	nscratch int

	queues  [maxQueues]txQueue
	nqueues int

	drops      [numDropReasons]uint64
	icmps      uint64
	arpReplies uint64

	// busy is when the batch in progress started (UnixNano), 0 while the
	// worker waits in Read; a batch that takes seconds means a stuck
	// worker.
	busy atomic.Int64

	// cur is the packet being handled, for drop events; tokens and
	// lastEvent rate-limit them.
	cur       []byte
	tokens    float64
	lastEvent int64
}

func newWorker(e *Engine, dev packetio.Device, st *DeviceStats, kind sourceKind, ep *endpoint) *worker {
	batch := dev.BatchSize()
	if batch < 1 {
		batch = 1
	}
	// Pod and host devices hand out at most their MTU. An underlay can
	// hand out far more: a Linux sender on a virtual link (veth) passes
	// its TSO super-packets through unsegmented, and a UDP socket delivers
	// such a tunnel packet as one datagram of up to 64 KiB.
	size := encap.Headroom + e.cfg.UnderlayMTU + 256
	if kind == sourceUnderlay {
		size = encap.Headroom + 65535 + 256
	}
	w := &worker{e: e, dev: dev, tapDev: dev, stats: st, kind: kind, ep: ep,
		bufs: make([][]byte, batch), sizes: make([]int, batch), scratch: make([][]byte, batch)}
	if ep != nil {
		w.tapDev = ep.dev
	}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, size)
		w.scratch[i] = make([]byte, encap.Headroom+encap.ICMPv4ErrorMaxLen)
	}
	for i := range w.queues {
		w.queues[i].bufs = make([][]byte, 0, batch)
	}
	return w
}

func (w *worker) run() {
	var lastErr time.Time
	for {
		n, err := w.dev.Read(w.bufs, w.sizes, encap.Headroom)
		if n > 0 {
			w.process(n)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, packetio.ErrDeviceGone) {
				w.e.log.Warn("device removed by the kernel; its worker stops", zap.String("device", w.dev.Name()), zap.Error(err))
				return
			}
			// A device error other than close is not per packet but it
			// may repeat: log at most once a second and back off a little
			// so a broken device cannot spin a core.
			if time.Since(lastErr) > time.Second {
				w.e.log.Warn("device read", zap.String("device", w.dev.Name()), zap.Error(err))
				lastErr = time.Now()
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (w *worker) process(n int) {
	w.busy.Store(time.Now().UnixNano())
	defer w.busy.Store(0)
	snap := w.e.state.Load()
	if t := w.e.tapFor(w.tapDev); t != nil {
		for i := 0; i < n; i++ {
			t.put(false, w.bufs[i][encap.Headroom:encap.Headroom+w.sizes[i]])
		}
	}
	var bytes uint64
	for i := 0; i < n; i++ {
		size := w.sizes[i]
		bytes += uint64(size)
		buf := w.bufs[i]
		w.cur = buf[encap.Headroom : encap.Headroom+size]
		switch w.kind {
		case sourcePod:
			w.fromPod(snap, buf, size)
		case sourceHost:
			w.fromHost(snap, buf, size)
		case sourceUnderlay:
			w.fromUnderlay(snap, buf, size)
		}
	}
	w.stats.RxBatches.Add(1)
	w.stats.RxPackets.Add(uint64(n))
	w.stats.RxBytes.Add(bytes)
	w.flush()
}

func (w *worker) drop(r DropReason) {
	w.drops[r]++
	if w.e.mon.watchers.Load() > 0 {
		w.report(r)
	}
}

// enqueue queues buf[start:start+n] for dev. The packet must have linkRoom
// bytes in front of it.
func (w *worker) enqueue(dev packetio.Device, st *DeviceStats, buf []byte, start, n int) {
	pkt := buf[start-linkRoom : start+n]
	for i := 0; i < w.nqueues; i++ {
		q := &w.queues[i]
		if q.dev == dev {
			q.bufs = append(q.bufs, pkt)
			return
		}
	}
	if w.nqueues == maxQueues {
		w.flushQueues()
	}
	q := &w.queues[w.nqueues]
	w.nqueues++
	q.dev, q.stats = dev, st
	q.bufs = append(q.bufs[:0], pkt)
}

func (w *worker) flushQueues() {
	for i := 0; i < w.nqueues; i++ {
		q := &w.queues[i]
		// One Write per queue: a driver either takes every packet or
		// says how many it took; the rest were refused (and counted by
		// the driver) or lost to a closed device.
		if t := w.e.tapFor(q.dev); t != nil {
			for _, b := range q.bufs {
				t.put(true, b[linkRoom:])
			}
		}
		n, _ := q.dev.Write(q.bufs, linkRoom)
		if n > len(q.bufs) {
			n = len(q.bufs)
		}
		var bytes uint64
		for _, b := range q.bufs[:n] {
			bytes += uint64(len(b) - linkRoom)
		}
		q.stats.TxPackets.Add(uint64(n))
		q.stats.TxBytes.Add(bytes)
		if lost := uint64(len(q.bufs) - n); lost > 0 {
			q.stats.TxErrors.Add(lost)
			w.drops[DropTxError] += lost
		}
		q.bufs = q.bufs[:0]
		q.dev, q.stats = nil, nil
	}
	w.nqueues = 0
}

func (w *worker) flush() {
	w.flushQueues()
	w.nscratch = 0
	for i, v := range w.drops {
		if v != 0 {
			w.e.drops[i].Add(v)
			w.drops[i] = 0
		}
	}
	if w.icmps != 0 {
		w.e.icmps.Add(w.icmps)
		w.icmps = 0
	}
	if w.arpReplies != 0 {
		w.e.arpReplies.Add(w.arpReplies)
		w.arpReplies = 0
	}
}
