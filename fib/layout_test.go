package fib

import (
	"math/bits"
	"net/netip"
	"slices"
	"testing"
)

// TestLayoutExample keeps the example in the package documentation true.
func TestLayoutExample(t *testing.T) {
	b := NewBuilder[int]()
	for i, s := range []string{"0.0.0.0/0", "192.0.2.0/25", "192.0.2.0/30", "192.0.2.200/30", "198.51.100.7/32"} {
		must(t, b.Insert(netip.MustParsePrefix(s), i))
	}
	tab := b.Build()
	route := func(s string) uint32 {
		i, ok := slices.BinarySearchFunc(tab.prefixes, netip.MustParsePrefix(s), comparePrefix)
		if !ok {
			t.Fatalf("%s not in table", s)
		}
		return uint32(i + 1)
	}
	tr := &tab.v4
	dflt := route("0.0.0.0/0")
	for _, i := range []int{0, 0xbfff, 0xc001, 0xc632, 0xc634, 0xffff} {
		if tr.root[i] != dflt {
			t.Errorf("root[%#x] = %#x, want the default route %d", i, tr.root[i], dflt)
		}
	}

	s := tr.root[0xc000]
	if s&(refBit|leafBit|checkBit) != refBit|checkBit || s>>depthShift&depthMask != 3 {
		t.Fatalf("root[0xc000] = %#x, want a checked node for byte 3", s)
	}
	o := uint(s & nodeMask)
	if c := tr.mem[o-1]; uint32(c>>32) != 0xc0000200 || uint32(c) != dflt {
		t.Errorf("check word = %#x, want key 192.0.2.0 and fallback %d", c, dflt)
	}
	runs := 0
	for _, w := range tr.mem[o : o+bitmapWords] {
		runs += bits.OnesCount64(w)
	}
	if runs != 5 {
		t.Errorf("node has %d runs, want 5", runs)
	}
	want := map[[2]int]string{
		{0, 3}: "192.0.2.0/30", {4, 127}: "192.0.2.0/25", {128, 199}: "0.0.0.0/0",
		{200, 203}: "192.0.2.200/30", {204, 255}: "0.0.0.0/0",
	}
	for r, p := range want {
		for i := r[0]; i <= r[1]; i++ {
			if got := nodeSlot(tr.mem, o, uint(i)); got != route(p) {
				t.Errorf("slot .%d = %d, want %s", i, got, p)
			}
		}
	}

	s = tr.root[0xc633]
	if s&(refBit|leafBit) != refBit|leafBit {
		t.Fatalf("root[0xc633] = %#x, want a leaf", s)
	}
	l := tr.leaves[s&leafMask]
	if l != (leaf4{key: 0xc6336407, mask: 0xffffffff, route: route("198.51.100.7/32"), fallback: dflt}) {
		t.Errorf("leaf = %+v", l)
	}
}
