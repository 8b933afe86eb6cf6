package packetio

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// BusyPoller is implemented by a device or underlay queue whose reader can
// busy-poll: a read that finds the queue empty tries again for up to the
// budget before it parks in the Go runtime's poller. A packet that comes
// within the budget is taken without the wake-up of a parked goroutine
// (and, on a virtual machine, of an idle virtual CPU), which is most of a
// userspace hop's latency when traffic is sparse; the price is the CPU the
// reader spends trying. Zero turns it off.
type BusyPoller interface {
	SetBusyPoll(budget time.Duration)
}

// BusyPoll is the state of one reader's busy-poll, for drivers to embed:
// Begin at the start of a read, Again each time the queue is found empty
// with nothing read yet (true: try again), End when the read returns.
// Begin, Again and End are called by the one reader; the budget may be set
// from any goroutine, and Forget is called by the driver before it closes
// the queue's descriptor.
//
// A reader that busy-polls keeps its goroutine's P (a Go runtime
// processor) while it tries. A packet for another reader, parked in the
// runtime's poller, needs a free P to be handled: so at most GOMAXPROCS-1
// readers of the process busy-poll at a time, and the others park at
// once. And while it tries, the reader watches the queues of the other
// readers (the process's watch set, see othersReady): when one of them
// has a packet, it stops and parks, so that its own thread, now idle,
// takes that reader's packet from the runtime's poller, on a CPU that is
// awake, rather than a thread that slept in the poller.
type BusyPoll struct {
	budget atomic.Int64 // nanoseconds; 0: off
	// until is when the spin of the read in progress ends: 0 before the
	// read first finds the queue empty, -1 once the budget is spent or
	// no spin slot was free.
	until int64
	slot  bool // holds one of the process's spin slots
	// hits counts reads that found a packet while spinning: wake-ups
	// saved.
	hits atomic.Uint64
	// yields counts spins ended because another reader's queue had a
	// packet.
	yields atomic.Uint64

	mu        sync.Mutex // guards watched and forgotten
	watched   int        // the descriptor in the watch set, plus one; 0: none
	forgotten bool       // Forget was called: never watch again
	evs       watchEvents
}

// spinners counts the readers of the process busy-polling now.
var spinners atomic.Int32

// takeSlot takes a spin slot if fewer than GOMAXPROCS-1 are taken.
func takeSlot() bool {
	limit := int32(runtime.GOMAXPROCS(0) - 1)
	for {
		n := spinners.Load()
		if n >= limit {
			return false
		}
		if spinners.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// SetBusyPoll sets the budget; negative is taken as zero.
func (b *BusyPoll) SetBusyPoll(budget time.Duration) { b.budget.Store(int64(max(budget, 0))) }

// Budget is the budget set.
func (b *BusyPoll) Budget() time.Duration { return time.Duration(b.budget.Load()) }

// Begin starts a read.
func (b *BusyPoll) Begin() { b.until = 0 }

// Again says whether a read that found its queue, the descriptor fd, empty
// tries again rather than parking. Between tries it yields the CPU
// (sched_yield), so that the polling costs only CPU time nobody else is
// ready to use: on a node with few CPUs a reader that kept its CPU would
// delay the very threads whose packets it waits for. It stops as soon as
// another reader's queue has a packet.
func (b *BusyPoll) Again(fd int) bool {
	if b.until < 0 {
		return false
	}
	budget := b.budget.Load()
	if budget == 0 {
		// Turned off during the spin: the read parks, and neither
		// holds its slot while it waits nor counts its packet as
		// taken by spinning.
		b.until = -1
		b.release()
		return false
	}
	now := nanotime()
	if b.until == 0 {
		b.watch(fd)
		if !takeSlot() {
			b.until = -1
			return false
		}
		b.slot = true
		b.until = now + budget
	} else if now >= b.until {
		b.until = -1
		b.release()
		return false
	}
	if othersReady(&b.evs, fd) {
		b.yields.Add(1)
		b.until = -1
		b.release()
		return false
	}
	yield()
	return true
}

// End ends a read; got says it returned packets.
func (b *BusyPoll) End(got bool) {
	if got && b.until > 0 {
		b.hits.Add(1)
	}
	b.until = 0
	b.release()
}

func (b *BusyPoll) release() {
	if b.slot {
		b.slot = false
		spinners.Add(-1)
	}
}

// Hits counts the reads that found a packet while spinning.
func (b *BusyPoll) Hits() uint64 { return b.hits.Load() }

// Yields counts the spins ended because another reader's queue had a
// packet.
func (b *BusyPoll) Yields() uint64 { return b.yields.Load() }

// watch puts the reader's descriptor into the process's watch set, once,
// so that the other readers' spins see its packets.
func (b *BusyPoll) watch(fd int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.forgotten || b.watched == fd+1 {
		return
	}
	if b.watched != 0 {
		watchDel(b.watched - 1)
		b.watched = 0
	}
	if watchAdd(fd) {
		b.watched = fd + 1
	}
}

// Forget takes the reader's descriptor out of the watch set for good; a
// driver calls it before it closes the descriptor, whose number the
// process may then give to another file.
func (b *BusyPoll) Forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.forgotten = true
	if b.watched != 0 {
		watchDel(b.watched - 1)
		b.watched = 0
	}
}

// Offload reports the busy-poll as an offload named busy-poll: active
// with a budget, Count the reads that found a packet while spinning.
func (b *BusyPoll) Offload() Offload {
	o := Offload{Name: "busy-poll", Count: b.Hits()}
	if d := b.Budget(); d > 0 {
		o.Active = true
		o.Reason = "budget " + d.String()
	} else {
		o.Reason = "busy-poll is 0"
	}
	return o
}

// start is the monotonic origin of nanotime.
var start = time.Now()

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(start)) }
