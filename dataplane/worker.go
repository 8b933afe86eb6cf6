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

// scratchLen is the room behind the headroom of a scratch buffer: the
// largest ICMP error of either family.
const scratchLen = max(encap.ICMPv4ErrorMaxLen, encap.ICMPv6ErrorMaxLen)

// linkRoom is the headroom every packet queued for a Device keeps in front
// of it for the driver's own header: the TUN driver writes its 10-byte
// virtio-net header there. Underlays need none: the kernel (UDP sockets)
// or the driver's own frame (AF_XDP) takes the outer headers.
const linkRoom = 32

// maxQueues bounds the distinct devices one batch can write to; a batch
// that would need more flushes early.
const maxQueues = 8

// txQueue collects the packets of one batch for one device.
type txQueue struct {
	dev   packetio.Device
	stats *DeviceStats
	bufs  [][]byte
	// checked[i] says the TCP or UDP checksum of bufs[i] is known right
	// (worker.sumOK); nchecked counts the trues, so that a batch without
	// any takes the plain Write.
	checked  []bool
	nchecked int
}

// underTx collects the tunnel payloads of one batch for one underlay
// queue, with where each goes.
type underTx struct {
	bufs [][]byte
	meta []packetio.Meta
}

// worker reads one device or underlay queue and forwards what it reads. It
// owns its buffers; nothing in it is shared with other workers.
type worker struct {
	e     *Engine
	dev   packetio.Device   // what the worker reads: a pod or the host device
	under packetio.Underlay // or an underlay queue
	name  string
	// tapKey is what captures of what this worker reads are keyed by:
	// the endpoint's device for every queue of a multi-queue pod,
	// underlayTap for every underlay device.
	tapKey any
	stats  *DeviceStats
	kind   sourceKind
	ep     *endpoint // the pod whose device this is (sourcePod)

	// batch is the most packets one read may return; bufs (and sizes,
	// meta, scratch) hold room for fewer until reads fill them (growTo).
	batch   int
	bufSize int
	filled  bool // the last read filled every buffer
	bufs    [][]byte
	sizes   []int
	meta    []packetio.Meta // per packet read from an underlay
	// creader is dev as a packetio.CheckedReader, when it is one; checked
	// gets what it says of each packet read.
	creader packetio.CheckedReader
	checked []bool

	// scratch holds packets the worker makes itself (ICMP and ICMPv6
	// errors), at most one per packet read.
	scratch  [][]byte
	nscratch int

	queues  [maxQueues]txQueue
	nqueues int
	utx     []underTx // one per underlay queue of the engine

	drops      [numDropReasons]uint64
	icmps      uint64
	arpReplies uint64
	// ecnAnomalies counts tunnel packets with an ECN combination RFC
	// 6040 calls currently unused (decapECNResult).
	ecnAnomalies uint64

	// busy is when the batch in progress started (UnixNano), 0 while the
	// worker waits in Read; a batch that takes seconds means a stuck
	// worker.
	busy atomic.Int64

	// cur (and curMeta, for tunnel payloads) is the packet being
	// handled, for drop events; events rate-limits them.
	cur     []byte
	curMeta *packetio.Meta
	events  bucket

	// sumOK says the packet being handled carries a TCP or UDP checksum
	// known to be right: a tunnel payload's inner packet, as the outer
	// checksum's sum showed (encap.TransportSumOK), or a packet whose
	// checksum the device's driver computed (packetio.CheckedReader).
	// Delivered to a device, it is queued with that knowledge
	// (packetio.CheckedWriter); tunnelled, its payload's sum comes from
	// its headers (encap.PayloadSum, Meta.Sum).
	sumOK bool

	// icmpLimit rate-limits the ICMP and ICMPv6 errors the worker makes,
	// one bucket for both; what it holds back is counted in
	// icmpsLimited.
	icmpLimit    bucket
	icmpsLimited uint64
}

// bucket is a token bucket: it fills at a rate per second up to a burst,
// and each take spends a token.
type bucket struct {
	tokens float64
	last   int64 // UnixNano of the last take
}

// take spends a token if there is one, after refilling for the time since
// the last take.
func (b *bucket) take(now int64, rate, burst float64) bool {
	b.tokens = min(b.tokens+float64(now-b.last)*rate/1e9, burst)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func newWorker(e *Engine, dev packetio.Device, under packetio.Underlay, st *DeviceStats, kind sourceKind, ep *endpoint) *worker {
	w := &worker{e: e, dev: dev, under: under, stats: st, kind: kind, ep: ep}
	if under != nil {
		w.batch, w.name, w.tapKey = under.BatchSize(), under.Name(), underlayTap{}
	} else {
		w.batch, w.name, w.tapKey = dev.BatchSize(), dev.Name(), dev
	}
	w.batch = max(w.batch, 1)
	if ep != nil {
		w.tapKey = ep.dev
	}
	// Pod and host devices hand out at most their MTU (linkBuf follows
	// it). An underlay can hand out far more: a Linux sender on a virtual
	// link (veth) passes its TSO super-packets through unsegmented, and a
	// UDP socket delivers such a tunnel packet as one datagram of up to
	// 64 KiB.
	w.bufSize = int(e.linkBuf.Load())
	if kind == sourceUnderlay {
		w.bufSize = encap.Headroom + 65535 + 256
	} else if cr, ok := dev.(packetio.CheckedReader); ok {
		w.creader = cr
	}
	if sr, ok := dev.(packetio.SuperReader); ok && (kind == sourcePod || kind == sourceHost) && e.tunnelGSO != nil {
		sr.SetSuperHandler(w.fromSuper)
	}
	// A worker starts with room for one packet, which is all an idle
	// device needs to wait in Read with; growBuffers doubles the batch
	// each time a read fills it, up to the device's batch size. Most
	// endpoints of a node are idle most of the time, and the full batch
	// of every queue of every pod would cost hundreds of KiB each.
	w.growTo(1)
	return w
}

// growTo gives the worker room for a batch of n packets: packet and
// scratch buffers, and transmit queues that take what such a batch sends
// without growing. It only grows, and runs between batches, when no
// packet refers to the buffers.
func (w *worker) growTo(n int) {
	n = min(n, w.batch)
	if n <= len(w.bufs) {
		return
	}
	for len(w.bufs) < n {
		w.bufs = append(w.bufs, make([]byte, w.bufSize))
		w.scratch = append(w.scratch, make([]byte, encap.Headroom+scratchLen))
	}
	w.sizes = make([]int, n)
	if w.kind == sourceUnderlay {
		w.meta = make([]packetio.Meta, n)
	}
	if w.creader != nil {
		w.checked = make([]bool, n)
	}
	for i := range w.queues {
		w.queues[i].bufs = make([][]byte, 0, n)
		w.queues[i].checked = make([]bool, 0, n)
	}
	// A batch sends at most one packet per packet read and one per ICMP
	// error or ARP reply it makes.
	if w.utx == nil {
		w.utx = make([]underTx, len(w.e.underlays))
	}
	for i := range w.utx {
		w.utx[i] = underTx{bufs: make([][]byte, 0, 2*n), meta: make([]packetio.Meta, 0, 2*n)}
	}
}

func (w *worker) read() (int, error) {
	var n int
	var err error
	switch {
	case w.under != nil:
		n, err = w.under.Receive(w.bufs, w.sizes, w.meta, encap.Headroom)
	case w.creader != nil:
		n, err = w.creader.ReadChecked(w.bufs, w.sizes, w.checked, encap.Headroom)
	default:
		n, err = w.dev.Read(w.bufs, w.sizes, encap.Headroom)
	}
	w.filled = n >= len(w.bufs)
	return n, err
}

// growBuffers runs between batches, when no packet refers to the buffers.
// It doubles the batch after a read that filled it, and gives a pod or
// host worker larger buffers once the underlay MTU grew past what they
// hold.
func (w *worker) growBuffers() {
	if w.filled {
		w.filled = false
		w.growTo(2 * len(w.bufs))
	}
	need := int(w.e.linkBuf.Load())
	if w.under != nil || need <= w.bufSize {
		return
	}
	w.bufSize = need
	for i := range w.bufs {
		w.bufs[i] = make([]byte, need)
	}
}

func (w *worker) run() {
	var lastErr time.Time
	for {
		w.growBuffers()
		n, err := w.read()
		if n > 0 {
			w.process(n)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, packetio.ErrDeviceGone) {
				w.e.log.Warn("device removed by the kernel; its worker stops", zap.String("device", w.name), zap.Error(err))
				if w.ep != nil {
					w.ep.gone.Store(true)
				}
				return
			}
			// A device error other than close is not per packet but it
			// may repeat: log at most once a second and back off a little
			// so a broken device cannot spin a core.
			if time.Since(lastErr) > time.Second {
				w.e.log.Warn("device read", zap.String("device", w.name), zap.Error(err))
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
	if t := w.e.tapFor(w.tapKey); t != nil {
		for i := 0; i < n; i++ {
			pkt := w.bufs[i][encap.Headroom : encap.Headroom+w.sizes[i]]
			if w.under != nil {
				t.putUnderlay(w.e, false, pkt, &w.meta[i])
			} else {
				t.put(false, pkt)
			}
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
			w.sumOK = w.checked != nil && w.checked[i]
			w.fromPod(snap, buf, size)
			w.sumOK = false
		case sourceHost:
			w.sumOK = w.checked != nil && w.checked[i]
			w.fromHost(snap, buf, size)
			w.sumOK = false
		case sourceUnderlay:
			w.curMeta = &w.meta[i]
			w.fromUnderlay(snap, buf, size, &w.meta[i])
			w.sumOK = false
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
			q.add(pkt, w.sumOK)
			return
		}
	}
	if w.nqueues == maxQueues {
		w.flushQueues()
	}
	q := &w.queues[w.nqueues]
	w.nqueues++
	q.dev, q.stats = dev, st
	q.add(pkt, w.sumOK)
}

func (q *txQueue) add(pkt []byte, checked bool) {
	q.bufs = append(q.bufs, pkt)
	q.checked = append(q.checked, checked)
	if checked {
		q.nchecked++
	}
}

// write hands the queued packets to the device: with what is known of
// their checksums where there is something and the device can use it.
func (q *txQueue) write() int {
	if q.nchecked > 0 {
		if cw, ok := q.dev.(packetio.CheckedWriter); ok {
			n, _ := cw.WriteChecked(q.bufs, q.checked, linkRoom)
			return n
		}
	}
	n, _ := q.dev.Write(q.bufs, linkRoom)
	return n
}

// enqueueUnder queues the tunnel payload buf[start:start+n] for m.Remote
// on the underlay queue the flow hashes to.
func (w *worker) enqueueUnder(buf []byte, start, n int, m packetio.Meta) {
	i := w.e.underlayFor(m.Flow)
	q := &w.utx[i]
	q.bufs = append(q.bufs, buf[start:start+n])
	q.meta = append(q.meta, m)
}

func (w *worker) flushQueues() {
	for i := 0; i < w.nqueues; i++ {
		q := &w.queues[i]
		if t := w.e.tapFor(q.dev); t != nil {
			for _, b := range q.bufs {
				t.put(true, b[linkRoom:])
			}
		}
		// One Write per queue: a driver either takes every packet or
		// says how many it took; the rest were refused (and counted by
		// the driver) or lost to a closed device.
		n := q.write()
		var bytes uint64
		for _, b := range q.bufs[:min(n, len(q.bufs))] {
			bytes += uint64(len(b) - linkRoom)
		}
		w.sent(q.stats, len(q.bufs), n, bytes)
		q.bufs, q.checked, q.nchecked = q.bufs[:0], q.checked[:0], 0
		q.dev, q.stats = nil, nil
	}
	w.nqueues = 0
	for i := range w.utx {
		q := &w.utx[i]
		if len(q.bufs) == 0 {
			continue
		}
		u := &w.e.underlays[i]
		if t := w.e.tapFor(underlayTap{}); t != nil {
			for j, b := range q.bufs {
				t.putUnderlay(w.e, true, b, &q.meta[j])
			}
		}
		n, _ := u.dev.Send(q.bufs, q.meta, 0)
		var bytes uint64
		for _, b := range q.bufs[:min(n, len(q.bufs))] {
			bytes += uint64(len(b))
		}
		w.sent(&u.stats, len(q.bufs), n, bytes)
		q.bufs, q.meta = q.bufs[:0], q.meta[:0]
	}
}

// sent counts the outcome of one Write or Send of queued packets.
func (w *worker) sent(st *DeviceStats, queued, accepted int, bytes uint64) {
	accepted = min(accepted, queued)
	st.TxPackets.Add(uint64(accepted))
	st.TxBytes.Add(bytes)
	if lost := uint64(queued - accepted); lost > 0 {
		st.TxErrors.Add(lost)
		w.drops[DropTxError] += lost
	}
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
	if w.icmpsLimited != 0 {
		w.e.icmpsLimited.Add(w.icmpsLimited)
		w.icmpsLimited = 0
	}
	if w.arpReplies != 0 {
		w.e.arpReplies.Add(w.arpReplies)
		w.arpReplies = 0
	}
	if w.ecnAnomalies != 0 {
		w.e.ecnAnomalies.Add(w.ecnAnomalies)
		w.ecnAnomalies = 0
	}
}
