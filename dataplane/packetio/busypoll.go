package packetio

import (
	"runtime"
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
// from any goroutine.
//
// A reader that busy-polls keeps its goroutine's P (a Go runtime
// processor) while it tries. A packet for another reader, parked in the
// runtime's poller, needs a free P to be handled: so at most GOMAXPROCS-1
// readers of the process busy-poll at a time, and the others park at
// once.
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

// watchPoller makes sure that a thread of the Go runtime waits in its
// network poller while a reader spins. The thread that runs the reader
// may be the one that waited there: it took the reader's packet from the
// poller, and no other thread took its place, as the runtime waits in the
// poller only from a thread with nothing to run. A packet for another
// reader, parked in the poller, then waited until the spin ended (a
// round trip took twice the budget). Starting a goroutine wakes an idle
// thread onto a free P (there is one: at most GOMAXPROCS-1 readers spin),
// which runs the empty goroutine, finds nothing else to do and waits in
// the poller.
func watchPoller() { go func() {}() }

// SetBusyPoll sets the budget; negative is taken as zero.
func (b *BusyPoll) SetBusyPoll(budget time.Duration) { b.budget.Store(int64(max(budget, 0))) }

// Budget is the budget set.
func (b *BusyPoll) Budget() time.Duration { return time.Duration(b.budget.Load()) }

// Begin starts a read.
func (b *BusyPoll) Begin() { b.until = 0 }

// Again says whether a read that found its queue empty tries again rather
// than parking. Between tries it yields the CPU (sched_yield), so that the
// polling costs only CPU time nobody else is ready to use: on a node with
// few CPUs a reader that kept its CPU would delay the very threads whose
// packets it waits for.
func (b *BusyPoll) Again() bool {
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
		if !takeSlot() {
			b.until = -1
			return false
		}
		b.slot = true
		watchPoller()
		b.until = now + budget
		return true
	}
	if now < b.until {
		yield()
		return true
	}
	b.until = -1
	b.release()
	return false
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
