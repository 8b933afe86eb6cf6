package fib

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// refTable is the reference model: a plain map searched linearly.
type refTable map[netip.Prefix]int

// lookup returns the longest prefix in r containing a. Zones are stripped
// first because Table ignores them while netip.Prefix.Contains rejects them.
func (r refTable) lookup(a netip.Addr) (best netip.Prefix, v int, ok bool) {
	a = a.WithZone("")
	for p, pv := range r {
		if p.Contains(a) && (!ok || p.Bits() > best.Bits()) {
			best, v, ok = p, pv, true
		}
	}
	return best, v, ok
}

func (r refTable) sorted() []netip.Prefix {
	ps := make([]netip.Prefix, 0, len(r))
	for p := range r {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if a.Addr().Is4() != b.Addr().Is4() {
			if a.Addr().Is4() {
				return -1
			}
			return 1
		}
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return ps
}

func addrFromBytes(b [16]byte, is6 bool) netip.Addr {
	if is6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte(b[:4]))
}

func randAddr(r *rand.Rand, is6 bool) netip.Addr {
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return addrFromBytes(b, is6)
}

// randPrefix returns a random masked prefix with a length in [minBits, maxBits].
func randPrefix(r *rand.Rand, is6 bool, minBits, maxBits int) netip.Prefix {
	bits := minBits + r.IntN(maxBits-minBits+1)
	return netip.PrefixFrom(randAddr(r, is6), bits).Masked()
}

// randAddrIn returns a random address inside p.
func randAddrIn(r *rand.Rand, p netip.Prefix) netip.Addr {
	is6 := p.Addr().Is6()
	base := addrBytes(p.Addr())
	noise := addrBytes(randAddr(r, is6))
	var out [16]byte
	for i := range out {
		keep := max(0, min(8, p.Bits()-8*i))
		mask := byte(0xff << (8 - keep))
		out[i] = base[i]&mask | noise[i]&^mask
	}
	return addrFromBytes(out, is6)
}

// lastAddr returns the highest address inside p.
func lastAddr(p netip.Prefix) netip.Addr {
	is6 := p.Addr().Is6()
	b := addrBytes(p.Addr())
	for i := range b {
		keep := max(0, min(8, p.Bits()-8*i))
		b[i] |= ^byte(0xff << (8 - keep))
	}
	return addrFromBytes(b, is6)
}

// probes returns addresses that exercise p's edges: its first and last
// address and the addresses just outside it.
func probes(p netip.Prefix) []netip.Addr {
	first, last := p.Addr(), lastAddr(p)
	out := []netip.Addr{first, last}
	if prev := first.Prev(); prev.IsValid() {
		out = append(out, prev)
	}
	if next := last.Next(); next.IsValid() {
		out = append(out, next)
	}
	return out
}

// checkAgainstRef compares every observable property of tab with ref, using
// the given lookup addresses.
func checkAgainstRef(t testing.TB, tab *Table[int], ref refTable, addrs []netip.Addr) {
	t.Helper()
	if got, want := tab.Len(), len(ref); got != want {
		t.Fatalf("Len() = %d, want %d", got, want)
	}
	want := ref.sorted()
	i := 0
	for p, v := range tab.All() {
		if i >= len(want) {
			t.Fatalf("All() yields more than %d prefixes; extra %v", len(want), p)
		}
		if p != want[i] || v != ref[p] {
			t.Fatalf("All()[%d] = %v=%d, want %v=%d", i, p, v, want[i], ref[want[i]])
		}
		i++
	}
	if i != len(want) {
		t.Fatalf("All() yields %d prefixes, want %d", i, len(want))
	}
	if tab != nil && !slices.IsSortedFunc(tab.prefixes, netip.Prefix.Compare) {
		t.Fatalf("prefixes are not in netip.Prefix.Compare order")
	}
	for p, v := range ref {
		if got, ok := tab.Get(p); !ok || got != v {
			t.Fatalf("Get(%v) = %d, %v; want %d, true", p, got, ok, v)
		}
	}
	for _, a := range addrs {
		wp, wv, wok := ref.lookup(a)
		gp, gv, gok := tab.LookupPrefix(a)
		if gp != wp || gv != wv || gok != wok {
			t.Fatalf("LookupPrefix(%v) = %v, %d, %v; want %v, %d, %v", a, gp, gv, gok, wp, wv, wok)
		}
		lv, lok := tab.Lookup(a)
		if lv != wv || lok != wok {
			t.Fatalf("Lookup(%v) = %d, %v; want %d, %v", a, lv, lok, wv, wok)
		}
		if wok {
			// An exact Get of a non-matching more specific prefix must miss.
			if _, inRef := ref[netip.PrefixFrom(a, a.BitLen())]; !inRef {
				if _, ok := tab.Get(netip.PrefixFrom(a, a.BitLen())); ok {
					t.Fatalf("Get(%v/%d) found a prefix that was never inserted", a, a.BitLen())
				}
			}
		}
	}
}

// addrBytes returns a's bytes left-aligned: IPv4 occupies the first four.
func addrBytes(a netip.Addr) (b [16]byte) {
	if a.Is4() {
		a4 := a.As4()
		copy(b[:], a4[:])
		return b
	}
	return a.As16()
}
