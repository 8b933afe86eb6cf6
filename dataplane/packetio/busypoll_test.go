package packetio

import (
	"runtime"
	"testing"
	"time"
)

// A read spins within its budget and counts a packet found meanwhile; at
// most GOMAXPROCS-1 readers spin at a time, and a reader gives its slot
// back when its budget is spent or its read ends, however it ends.
func TestBusyPollSlots(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	var a, b, c BusyPoll
	for _, p := range []*BusyPoll{&a, &b, &c} {
		p.SetBusyPoll(time.Hour)
		p.Begin()
	}
	if !a.Again(-1) || !b.Again(-1) {
		t.Fatal("the first two readers of three CPUs' worth may not spin")
	}
	if c.Again(-1) {
		t.Fatal("a third reader spins with GOMAXPROCS 3")
	}
	if c.Again(-1) {
		t.Fatal("a reader refused a slot spins on its next try of the same read")
	}
	c.End(false)
	a.End(true) // a packet while spinning
	c.Begin()
	if !c.Again(-1) {
		t.Fatal("the slot a gave back was not taken")
	}
	if a.Offload().Count != 1 || b.Offload().Count != 0 || c.Offload().Count != 0 {
		t.Fatalf("hits %d %d %d, want 1 0 0", a.Offload().Count, b.Offload().Count, c.Offload().Count)
	}
	// A spent budget gives the slot back before the read ends.
	b.SetBusyPoll(time.Nanosecond)
	b.Begin()
	a.Begin()
	if a.Again(-1) {
		t.Fatal("a spins with b and c holding both slots")
	}
	b.End(false)
	b.Begin()
	b.until = 0
	if !b.Again(-1) {
		t.Fatal("b may not spin after giving its slot back")
	}
	time.Sleep(time.Millisecond)
	if b.Again(-1) {
		t.Fatal("b spins past its budget")
	}
	if b.End(true); b.Offload().Count != 0 {
		t.Fatal("a packet after the budget was spent counted as a hit")
	}
	c.End(false)
	if n := spinners.Load(); n != 0 {
		t.Fatalf("%d slots still taken after every read ended", n)
	}
	// Without a budget nothing spins or takes a slot.
	var off BusyPoll
	off.Begin()
	if off.Again(-1) || spinners.Load() != 0 || off.Offload().Active {
		t.Fatal("a reader without a budget spins")
	}
	// A budget turned off during a spin parks the read at once: it
	// gives its slot back while it waits, and the packet that wakes it
	// was not taken by spinning.
	off.SetBusyPoll(time.Hour)
	off.Begin()
	if !off.Again(-1) || spinners.Load() != 1 {
		t.Fatal("a reader with a budget does not spin")
	}
	off.SetBusyPoll(0)
	if off.Again(-1) {
		t.Fatal("a reader spins on after its budget was turned off")
	}
	if n := spinners.Load(); n != 0 {
		t.Fatalf("a reader parked after its budget was turned off holds %d slots", n)
	}
	if off.End(true); off.Offload().Count != 0 {
		t.Fatal("a packet after the budget was turned off counted as a hit")
	}
}
