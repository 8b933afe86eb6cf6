package fib

import (
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
)

// benchTable builds a table of n random prefixes of one family and a ring of
// 65536 lookup addresses, nine in ten of which fall inside an inserted
// prefix.
func benchTable(n int, is6 bool) (*Table[uint32], []netip.Addr) {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	minBits, maxBits := 8, 32
	if is6 {
		// Roughly what appears in real IPv6 tables: allocations down to
		// /64 subnets.
		minBits, maxBits = 16, 64
	}
	b := NewBuilder[uint32]()
	ps := make([]netip.Prefix, 0, n)
	for b.Len() < n {
		p := randPrefix(r, is6, minBits, maxBits)
		if _, dup := b.m[p]; !dup {
			ps = append(ps, p)
		}
		if err := b.Insert(p, r.Uint32()); err != nil {
			panic(err)
		}
	}
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		if r.IntN(10) == 0 {
			addrs[i] = randAddr(r, is6)
		} else {
			addrs[i] = randAddrIn(r, ps[r.IntN(len(ps))])
		}
	}
	return b.Build(), addrs
}

func BenchmarkLookup(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
		is6  bool
		// flows, if set, limits lookups to that many distinct
		// addresses, as when traffic comes from a bounded set of
		// flows; the default spreads them over the whole table, which
		// on most machines no longer fits in L2 at 100k prefixes.
		flows int
	}{
		{"v4-10k", 10_000, false, 0},
		{"v4-100k", 100_000, false, 0},
		{"v4-100k-4kflows", 100_000, false, 4096},
		{"v6-10k", 10_000, true, 0},
		{"v6-100k", 100_000, true, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tab, addrs := benchTable(bc.n, bc.is6)
			if bc.flows != 0 {
				addrs = addrs[:bc.flows]
			}
			mask := len(addrs) - 1
			var sink uint32
			hits := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v, ok := tab.Lookup(addrs[i&mask])
				sink += v
				if ok {
					hits++
				}
			}
			b.StopTimer()
			if b.N >= len(addrs) && hits < b.N/2 {
				b.Fatalf("only %d of %d lookups hit", hits, b.N)
			}
			_ = sink
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
		is6  bool
	}{
		{"v4-10k", 10_000, false},
		{"v4-100k", 100_000, false},
		{"v6-10k", 10_000, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tab, _ := benchTable(bc.n, bc.is6)
			bld := tab.Builder()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				_ = bld.Build()
			}
		})
	}
}

// BenchmarkUpdate times one copy-on-write update of 10k new routes, what a
// control plane does while readers go on with the published table: a
// Builder derived from that table, the inserts, Build and the atomic
// publication of the result. ns/route is the time per route added; the
// whole table is rebuilt, so it grows with the table.
func BenchmarkUpdate(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int // routes already in the table
		is6  bool
	}{
		{"v4-onto-10k", 10_000, false},
		{"v4-onto-100k", 100_000, false},
		{"v6-onto-10k", 10_000, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tab, _ := benchTable(bc.n, bc.is6)
			r := rand.New(rand.NewPCG(uint64(bc.n), 2))
			minBits, maxBits := 8, 32
			if bc.is6 {
				minBits, maxBits = 16, 64
			}
			add := make(map[netip.Prefix]uint32, updateRoutes)
			for len(add) < updateRoutes {
				p := randPrefix(r, bc.is6, minBits, maxBits)
				if _, old := tab.Get(p); !old {
					add[p] = r.Uint32()
				}
			}
			var cur atomic.Pointer[Table[uint32]]
			cur.Store(tab)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				bld := tab.Builder()
				for p, v := range add {
					if err := bld.Insert(p, v); err != nil {
						b.Fatal(err)
					}
				}
				cur.Store(bld.Build())
			}
			if got := cur.Load().Len(); got != bc.n+updateRoutes {
				b.Fatalf("published table holds %d prefixes, want %d", got, bc.n+updateRoutes)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*updateRoutes), "ns/route")
		})
	}
}
