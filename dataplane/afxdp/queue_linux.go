package afxdp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"golang.org/x/sys/unix"
)

// batchSize is the most payloads one Receive returns.
const batchSize = 64

// Queue is the packetio.Underlay of one RX queue: an AF_XDP socket, its
// UMEM and rings.
//
// Frame ownership. The UMEM of a queue is split in two fixed halves. RX
// frames cycle fill ring -> kernel -> RX ring -> Receive, which copies the
// payload out and puts the frame straight back on the fill ring. TX frames
// cycle free stack -> Send (writes the headers, copies the payload in) ->
// TX ring -> kernel -> completion ring -> free stack; a TX frame may instead park on the waiting
// list while its next hop is resolved. Each half is touched only under its
// own mutex, and every move updates a count, so that free + in the kernel
// (+ waiting) always equals the half's size; audit checks that frame by
// frame.
type Queue struct {
	u         *Underlay
	id        int
	name      string
	x         *xsk
	frameMask uint64
	frameSize int
	nRx, nTx  int
	closed    atomic.Bool

	// rxMu serialises Receive; it guards the fill and RX rings and the fields
	// up to the padding.
	rxMu     sync.Mutex
	rxFree   []uint64 // RX frames taken off the RX ring, not yet on the fill ring
	rxKernel int      // RX frames on the fill ring, in the driver or on the RX ring
	rxWaited bool
	rxErr    unix.Errno
	rxWaitFn func(uintptr) bool
	rc       rxCounters
	busy     packetio.BusyPoll // the receiver's busy-poll (SetBusyPoll)
	_        [64]byte

	// txMu serialises Send and the flushing of waiting packets; it guards
	// the TX and completion rings and the fields after it.
	txMu     sync.Mutex
	txFree   []uint64     // free TX frames
	txKernel int          // TX frames on the TX ring, being sent, or on the completion ring
	waiting  []waitingPkt // TX frames holding a packet that waits for its next hop
	txErr    unix.Errno
	tc       txCounters

	// dead is set (under both mutexes) once Underlay.Close unmapped the
	// memory; nothing may touch the rings after that.
	dead       bool
	closeAudit error
	lastKernel unix.XDPStatistics
}

var (
	_ packetio.Underlay  = (*Queue)(nil)
	_ packetio.MTUSetter = (*Queue)(nil)
)

type rxCounters struct {
	frames, bytes, dropped, kicks, refills atomic.Uint64
	sums                                   atomic.Uint64 // payloads handed on with their sum (Meta.HasSum)
	free, kernel                           atomic.Int64
}

type txCounters struct {
	frames, bytes, completed, invalid, noRoute, noNeigh atomic.Uint64
	ringFull, exhausted, kickErrors, kicks              atomic.Uint64
	arpQueued, arpFlushed                               atomic.Uint64
	sumFromHeaders                                      atomic.Uint64 // outer checksums from Meta.Sum
	free, kernel, waiting                               atomic.Int64
}

// waitingPkt is a packet copied into TX frame addr (after room for the
// Ethernet header) that waits for the MAC of dst's next hop.
type waitingPkt struct {
	addr     uint64
	len      uint32
	dst      netip.Addr
	deadline time.Duration // on the Underlay's monotonic clock
}

func newQueue(u *Underlay, id int, x *xsk, frameSize, frames int) *Queue {
	q := &Queue{
		u:         u,
		id:        id,
		name:      fmt.Sprintf("afxdp:%s/q%d", u.cfg.Device, id),
		x:         x,
		frameMask: ^uint64(frameSize - 1),
		frameSize: frameSize,
		nRx:       frames / 2,
		nTx:       frames - frames/2,
	}
	q.rxWaitFn = q.rxReady
	q.rxFree = make([]uint64, 0, q.nRx)
	q.txFree = make([]uint64, 0, q.nTx)
	q.waiting = make([]waitingPkt, 0, maxWaiting)
	// RX frames are the low half, TX the high half. Pushing the TX frames
	// in reverse makes the stack hand them out in address order.
	for i := q.nRx + q.nTx - 1; i >= q.nRx; i-- {
		q.txFree = append(q.txFree, uint64(i)*uint64(frameSize))
	}
	for i := q.nRx - 1; i >= 0; i-- {
		q.rxFree = append(q.rxFree, uint64(i)*uint64(frameSize))
	}
	q.refill()
	q.publishRX()
	q.publishTX()
	return q
}

// Name is "afxdp:<device>/q<queue>".
func (q *Queue) Name() string { return q.name }

// Offloads reports the checksum shortcuts of an IPv6 underlay, whose
// outer UDP checksum covers the payload: afxdp-csum-complete (payloads
// received with the sum their checksum check made, for the engine to
// check the inner checksum by) and afxdp-csum-lco (frames sent with an
// outer checksum computed from the headers and the engine's payload sum).
// Over IPv4 the outer packets carry no checksum, and both are off.
func (q *Queue) Offloads() []packetio.Offload {
	if !q.u.v6 {
		const off = "no outer UDP checksum over IPv4"
		return []packetio.Offload{{Name: "afxdp-csum-complete", Reason: off}, {Name: "afxdp-csum-lco", Reason: off}, q.busy.Offload()}
	}
	return []packetio.Offload{
		{Name: "afxdp-csum-complete", Active: true, Count: q.rc.sums.Load()},
		{Name: "afxdp-csum-lco", Active: true, Count: q.tc.sumFromHeaders.Load()},
		q.busy.Offload(),
	}
}

// SetBusyPoll sets how long a Receive that finds the RX ring empty keeps
// looking before it parks (packetio.BusyPoller).
func (q *Queue) SetBusyPoll(budget time.Duration) { q.busy.SetBusyPoll(budget) }

// BatchSize is the most payloads one Receive returns. Send takes any
// number.
func (q *Queue) BatchSize() int { return batchSize }

// ID is the RX queue index the socket is bound to.
func (q *Queue) ID() int { return q.id }

// Close marks the queue closed: Receive and Send return net.ErrClosed,
// a blocked Receive soon after. The socket and memory stay until
// Underlay.Close, which is what really releases them. Closing twice is a
// no-op.
func (q *Queue) Close() error {
	if q.closed.CompareAndSwap(false, true) {
		q.busy.Forget()
		q.wakeReader()
	}
	return nil
}

// wakeReader makes a Receive parked in the poller return and see the closed
// flag.
func (q *Queue) wakeReader() {
	q.u.fdMu.RLock()
	defer q.u.fdMu.RUnlock()
	if q.x.file != nil {
		q.x.file.SetReadDeadline(time.Unix(1, 0))
	}
}

func (q *Queue) closedErr(op string) error {
	return fmt.Errorf("%s %s: %w", op, q.name, net.ErrClosed)
}

// socketErr turns a socket error into ErrDeviceGone when the device
// vanished.
func (q *Queue) socketErr(op string, e unix.Errno) error {
	if q.u.deviceGone() {
		return fmt.Errorf("%s %s: %w", op, q.name, packetio.ErrDeviceGone)
	}
	return fmt.Errorf("%s %s: %w", op, q.name, e)
}

// Stats returns this queue's counters.
func (q *Queue) Stats() Stats {
	q.u.fdMu.RLock()
	defer q.u.fdMu.RUnlock()
	return q.statsLocked()
}

// statsLocked needs u.fdMu held (read) so the socket is not closed under
// the XDP_STATISTICS call.
func (q *Queue) statsLocked() Stats {
	s := Stats{
		RxFrames:          q.rc.frames.Load(),
		RxBytes:           q.rc.bytes.Load(),
		RxDropped:         q.rc.dropped.Load(),
		RxKicks:           q.rc.kicks.Load(),
		FillRefills:       q.rc.refills.Load(),
		RxPayloadSums:     q.rc.sums.Load(),
		TxSumFromHeaders:  q.tc.sumFromHeaders.Load(),
		TxFrames:          q.tc.frames.Load(),
		TxBytes:           q.tc.bytes.Load(),
		TxCompleted:       q.tc.completed.Load(),
		TxInvalid:         q.tc.invalid.Load(),
		TxNoRoute:         q.tc.noRoute.Load(),
		TxNoNeighbour:     q.tc.noNeigh.Load(),
		TxRingFull:        q.tc.ringFull.Load(),
		TxFramesExhausted: q.tc.exhausted.Load(),
		TxKickErrors:      q.tc.kickErrors.Load(),
		TxKicks:           q.tc.kicks.Load(),
		ArpQueued:         q.tc.arpQueued.Load(),
		ArpFlushed:        q.tc.arpFlushed.Load(),
		ArpWaiting:        uint64(q.tc.waiting.Load()),
		FramesTotal:       uint64(q.nRx + q.nTx),
		FramesFree:        uint64(q.rc.free.Load() + q.tc.free.Load()),
		FramesFill:        uint64(q.rc.kernel.Load()),
		FramesTx:          uint64(q.tc.kernel.Load()),
		FramesWaiting:     uint64(q.tc.waiting.Load()),
	}
	k := q.lastKernel
	if q.x.fd >= 0 {
		if st, ok := q.x.statistics(); ok {
			k = st
		}
	}
	s.KernelRxDropped = k.Rx_dropped
	s.KernelRxInvalid = k.Rx_invalid_descs
	s.KernelTxInvalid = k.Tx_invalid_descs
	s.KernelRxRingFull = k.Rx_ring_full
	s.KernelFillRingEmpty = k.Rx_fill_ring_empty_descs
	s.KernelTxRingEmpty = k.Tx_ring_empty_descs
	return s
}

// audit checks, frame by frame, that every UMEM frame of the queue is in
// exactly one place and that the counts agree. Frames the kernel holds
// outside the rings (a zero-copy driver's RX ring, a copy-mode skb being
// sent) cannot be seen; inKernel returns how many of those there are,
// which is 0 on a quiet copy-mode queue. The caller holds both mutexes or
// knows the queue is idle.
func (q *Queue) audit() (inKernel int, err error) {
	x := q.x
	frameSize := ^q.frameMask + 1
	total := q.nRx + q.nTx
	seen := make([]byte, total)
	var errs []error
	mark := func(addr uint64, where string, rx bool) {
		i := addr / frameSize
		switch {
		case addr%frameSize != 0 || i >= uint64(total):
			errs = append(errs, fmt.Errorf("%s: bad frame address %#x", where, addr))
		case rx != (i < uint64(q.nRx)):
			errs = append(errs, fmt.Errorf("%s: frame %d from the wrong half", where, i))
		case seen[i] != 0:
			errs = append(errs, fmt.Errorf("%s: frame %d seen twice", where, i))
		default:
			seen[i] = 1
		}
	}
	walk := func(r *ring, where string, rx, descs bool) int {
		cons, prod := atomic.LoadUint32(r.consumer), atomic.LoadUint32(r.producer)
		for i := cons; i != prod; i++ {
			if descs {
				mark(r.desc(i).addr&q.frameMask, where, rx)
			} else {
				mark(*r.addr(i)&q.frameMask, where, rx)
			}
		}
		return int(prod - cons)
	}
	for _, a := range q.rxFree {
		mark(a, "rx free", true)
	}
	rxRings := walk(x.fill, "fill ring", true, false) + walk(x.rx, "rx ring", true, true)
	for _, a := range q.txFree {
		mark(a, "tx free", false)
	}
	for _, w := range q.waiting {
		mark(w.addr, "waiting", false)
	}
	txRings := walk(x.tx, "tx ring", false, true) + walk(x.comp, "completion ring", false, false)

	if got := len(q.rxFree) + q.rxKernel; got != q.nRx {
		errs = append(errs, fmt.Errorf("rx frames: %d free + %d in kernel != %d", len(q.rxFree), q.rxKernel, q.nRx))
	}
	if got := len(q.txFree) + q.txKernel + len(q.waiting); got != q.nTx {
		errs = append(errs, fmt.Errorf("tx frames: %d free + %d in kernel + %d waiting != %d", len(q.txFree), q.txKernel, len(q.waiting), q.nTx))
	}
	hiddenRX, hiddenTX := q.rxKernel-rxRings, q.txKernel-txRings
	if hiddenRX < 0 || hiddenTX < 0 {
		errs = append(errs, fmt.Errorf("rings hold more frames than counted: rx %d>%d, tx %d>%d", rxRings, q.rxKernel, txRings, q.txKernel))
	}
	unseen := 0
	for _, s := range seen {
		if s == 0 {
			unseen++
		}
	}
	if len(errs) == 0 && unseen != hiddenRX+hiddenTX {
		errs = append(errs, fmt.Errorf("%d frames unaccounted for, %d expected in the kernel", unseen, hiddenRX+hiddenTX))
	}
	return hiddenRX + hiddenTX, errors.Join(errs...)
}

// RXDropped counts frames this queue took off its RX ring but could not
// hand to the engine: a frame that did not fit, a tunnel packet whose
// checksum failed (packetio.DriverCounters). What the kernel dropped
// before the queue saw it is KernelDropped.
func (q *Queue) RXDropped() uint64 { return q.rc.dropped.Load() }

// KernelDropped counts frames the kernel dropped on their way to this
// queue: the RX ring was full or the fill ring empty because the engine
// had not kept up, or a frame was larger than a UMEM frame (XDP_STATISTICS
// rx_ring_full and rx_dropped; packetio.KernelDropCounter). Once the
// socket is closed it is the last count read.
func (q *Queue) KernelDropped() (uint64, error) {
	s := q.Stats()
	return s.KernelRxDropped + s.KernelRxRingFull, nil
}

// TXErrors counts packets this queue refused or lost on the way out
// (packetio.DriverCounters).
func (q *Queue) TXErrors() uint64 {
	s := q.Stats()
	return s.TxInvalid + s.TxNoRoute + s.TxNoNeighbour + s.TxRingFull
}

// TXQueueFull counts payloads dropped because no TX frame came free, a
// part of TXErrors (packetio.QueueFullCounter).
func (q *Queue) TXQueueFull() uint64 { return q.tc.ringFull.Load() }

var (
	_ packetio.DriverCounters    = (*Queue)(nil)
	_ packetio.KernelDropCounter = (*Queue)(nil)
	_ packetio.QueueFullCounter  = (*Queue)(nil)
)

// SourcePort is the outer source port of flow: the whole dynamic range is
// open to a driver that writes its own UDP headers.
func (q *Queue) SourcePort(flow uint32) uint16 { return encap.SourcePort(flow) }

// SourcePorts describes the source ports Send uses.
func (q *Queue) SourcePorts() packetio.SourcePorts {
	return packetio.SourcePorts{Count: encap.SourcePortMax - encap.SourcePortMin + 1, Min: encap.SourcePortMin, Max: encap.SourcePortMax}
}
