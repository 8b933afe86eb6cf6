package agent

import (
	"sync/atomic"
	"testing"
	"time"
)

func newTestTrimmer(quiet, most time.Duration) (*memTrimmer, *atomic.Int32) {
	var n atomic.Int32
	t := &memTrimmer{quiet: quiet, most: most, trim: func() { n.Add(1) }}
	return t, &n
}

// A burst of changes is followed by one trim, quiet after its last change,
// and a later burst by another.
func TestMemTrimAfterBurst(t *testing.T) {
	tr, n := newTestTrimmer(100*time.Millisecond, 10*time.Second)
	defer tr.stop()
	for range 5 {
		tr.changed()
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.Load(); got != 0 {
		t.Fatalf("%d trims during the burst", got)
	}
	time.Sleep(300 * time.Millisecond)
	if got := n.Load(); got != 1 {
		t.Fatalf("%d trims after the burst, want 1", got)
	}
	tr.changed()
	time.Sleep(300 * time.Millisecond)
	if got := n.Load(); got != 2 {
		t.Fatalf("%d trims after the second burst, want 2", got)
	}
}

// Changes that never stop still get a trim every most.
func TestMemTrimDuringSteadyChanges(t *testing.T) {
	tr, n := newTestTrimmer(100*time.Millisecond, 250*time.Millisecond)
	defer tr.stop()
	for end := time.Now().Add(600 * time.Millisecond); time.Now().Before(end); {
		tr.changed()
		time.Sleep(20 * time.Millisecond)
	}
	if got := n.Load(); got < 2 {
		t.Fatalf("%d trims in 600 ms of changes every 20 ms, want at least 2 (one every 250 ms)", got)
	}
}

// After stop nothing is trimmed, and a nil trimmer (an agent built
// without one) ignores changes.
func TestMemTrimStop(t *testing.T) {
	tr, n := newTestTrimmer(50*time.Millisecond, time.Second)
	tr.changed()
	tr.stop()
	tr.changed()
	time.Sleep(200 * time.Millisecond)
	if got := n.Load(); got != 0 {
		t.Fatalf("%d trims after stop", got)
	}
	var none *memTrimmer
	none.changed()
	none.stop()
}
