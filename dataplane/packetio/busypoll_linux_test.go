package packetio

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A spinning reader stops, and gives its slot back, as soon as the queue
// of another busy-polling reader has a packet, but not for a packet of its
// own queue (its next read takes that) nor for a reader that Forget took
// out of the watch set.
func TestBusyPollWatchesOtherReaders(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	pipe := func() (r, w int) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
		return p[0], p[1]
	}
	ra, wa := pipe()
	rb, wb := pipe()
	var a, b BusyPoll
	a.SetBusyPoll(time.Hour)
	b.SetBusyPoll(time.Hour)
	t.Cleanup(func() { a.Forget(); b.Forget() })
	// b's first empty read puts its queue in the watch set.
	b.Begin()
	if !b.Again(rb) {
		t.Fatal("b does not spin")
	}
	b.End(false)

	a.Begin()
	if !a.Again(ra) {
		t.Fatal("a does not spin")
	}
	unix.Write(wa, []byte{1})
	if !a.Again(ra) {
		t.Fatal("a packet on a's own queue ended a's spin")
	}
	unix.Write(wb, []byte{1})
	if a.Again(ra) {
		t.Fatal("a spins on while b's queue has a packet")
	}
	if a.Yields() != 1 || spinners.Load() != 0 {
		t.Fatalf("yields %d, slots taken %d; want 1 and 0", a.Yields(), spinners.Load())
	}
	if a.End(true); a.Hits() != 0 {
		t.Fatal("a read that stopped spinning for b counted as a hit")
	}
	// A reader that no longer spins because b's queue is busy does not
	// try at all while it stays so.
	a.Begin()
	if a.Again(ra) {
		t.Fatal("a starts to spin while b's queue has a packet")
	}
	a.End(false)
	// Forgotten, b's queue no longer stops anyone.
	b.Forget()
	a.Begin()
	if !a.Again(ra) || !a.Again(ra) {
		t.Fatal("a forgotten reader's queue stops a's spin")
	}
	a.End(false)
	b.Begin()
	b.Again(rb)
	b.End(false)
	a.Begin()
	if !a.Again(ra) {
		t.Fatal("a reader's first read after Forget put it back in the watch set")
	}
	a.End(false)
	if n := spinners.Load(); n != 0 {
		t.Fatalf("%d slots taken after every read ended", n)
	}
}
