package agent

import (
	"runtime/debug"
	"sync"
	"time"
)

// memTrimmer hands the heap's free memory back to the operating system
// once a burst of control-plane changes is over. Every change (an
// endpoint, a list of nodes, a node from etcd) rebuilds the engine's tables
// and the state file, and the garbage of the old ones stays in the
// process as heap the Go runtime returns only slowly: after a thousand
// nodes the agent's RSS was several times what it keeps alive. The packet
// path allocates nothing, so the collection this forces costs the
// control plane only.
type memTrimmer struct {
	// quiet is how long after the last change the memory is returned;
	// most is how long a steady stream of changes may put that off.
	quiet, most time.Duration
	trim        func()

	mu      sync.Mutex
	timer   *time.Timer
	first   time.Time // the first change not yet followed by a trim
	stopped bool
}

func newMemTrimmer() *memTrimmer {
	return &memTrimmer{quiet: time.Second, most: 10 * time.Second, trim: debug.FreeOSMemory}
}

// changed notes a change: the trim runs quiet after the last of a burst,
// and no later than most after its first. A nil trimmer does nothing.
func (t *memTrimmer) changed() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	now := time.Now()
	if t.first.IsZero() {
		t.first = now
	}
	wait := min(t.quiet, t.most-now.Sub(t.first))
	if t.timer == nil {
		t.timer = time.AfterFunc(wait, t.fire)
		return
	}
	t.timer.Reset(wait)
}

func (t *memTrimmer) fire() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.first = time.Time{}
	t.mu.Unlock()
	t.trim()
}

// stop cancels a pending trim; changes after it are ignored.
func (t *memTrimmer) stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
}
