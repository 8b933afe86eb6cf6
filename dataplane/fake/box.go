package fake

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// box is what both fakes are made of: items waiting to be read, items
// written, and whether the fake is closed or holds its writers back.
type box[T any] struct {
	mu     sync.Mutex // protects the fields below
	cond   *sync.Cond
	rx     []T // waiting to be read
	sent   []T // written
	closed bool
	block  bool // writes wait until unblock or close
}

func (b *box[T]) init() { b.cond = sync.NewCond(&b.mu) }

// inject queues x for reading.
func (b *box[T]) inject(x T) {
	b.mu.Lock()
	b.rx = append(b.rx, x)
	b.mu.Unlock()
	b.cond.Broadcast()
}

// read waits for at least one item and hands up to max of them to put, in
// order, until put fails. It returns how many put took.
func (b *box[T]) read(max int, put func(i int, x T) error) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.rx) == 0 && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	n := 0
	for n < max && len(b.rx) > 0 {
		if err := put(n, b.rx[0]); err != nil {
			return n, err
		}
		b.rx = b.rx[1:]
		n++
	}
	return n, nil
}

// write waits while writes are held back, then keeps xs (when keep) or
// reports whether the box is open for the caller to pass them on.
func (b *box[T]) write(keep bool, xs ...T) error {
	b.mu.Lock()
	for b.block && !b.closed {
		b.cond.Wait()
	}
	if b.closed {
		b.mu.Unlock()
		return net.ErrClosed
	}
	if keep {
		b.sent = append(b.sent, xs...)
	}
	b.mu.Unlock()
	return nil
}

func (b *box[T]) setBlock(on bool) {
	b.mu.Lock()
	b.block = on
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *box[T]) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *box[T]) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// waitSent waits until at least n items were written or timeout passes,
// then returns and forgets them.
func (b *box[T]) waitSent(n int, timeout time.Duration) []T {
	deadline := time.Now().Add(timeout)
	b.mu.Lock()
	for len(b.sent) < n && time.Now().Before(deadline) {
		b.mu.Unlock()
		time.Sleep(time.Millisecond)
		b.mu.Lock()
	}
	s := b.sent
	b.sent = nil
	b.mu.Unlock()
	return s
}

// busyPoll records the budget the engine gives a device or underlay queue
// (packetio.BusyPoller); the fakes never spin.
type busyPoll struct{ budget atomic.Int64 }

// SetBusyPoll records budget.
func (b *busyPoll) SetBusyPoll(budget time.Duration) { b.budget.Store(int64(budget)) }

// BusyPoll is what SetBusyPoll recorded last, 0 before.
func (b *busyPoll) BusyPoll() time.Duration { return time.Duration(b.budget.Load()) }
