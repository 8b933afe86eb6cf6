package fib

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// updateRoutes is the size of the update the control plane must be able to
// publish without holding up the packet path.
const updateRoutes = 10_000

// Values of the table TestUpdateDoesNotBlockReaders starts from. The new
// routes lie inside the covering ones, so before the update an address in
// a new route answers with its covering route and afterwards with its own.
const (
	valDefault4 = 1 + iota
	valCover4   // 100.64.0.0/10, holds the new IPv4 routes
	valTest1    // 192.0.2.0/24, unchanged
	valTest3    // 203.0.113.128/25, unchanged
	valDefault6
	valCover6 // 2001:db8::/32, holds the new IPv6 routes
	valSite6  // 2001:db8:ffff::/48, unchanged

	valHost = 1_000     // + i: the base table's host routes in 198.18.0.0/16
	valNew  = 1_000_000 // + i: new route i
)

// baseHosts is how many host routes the base table holds besides the
// covering and unchanged routes, so that the update derives its Builder
// from a table of some size.
const baseHosts = 2_000

// updateBase returns the table the update starts from.
func updateBase(t testing.TB) *Table[int] {
	b := NewBuilder[int]()
	for s, v := range map[string]int{
		"0.0.0.0/0":          valDefault4,
		"100.64.0.0/10":      valCover4,
		"192.0.2.0/24":       valTest1,
		"203.0.113.128/25":   valTest3,
		"::/0":               valDefault6,
		"2001:db8::/32":      valCover6,
		"2001:db8:ffff::/48": valSite6,
	} {
		if err := b.Insert(mp(s), v); err != nil {
			t.Fatal(err)
		}
	}
	for i := range baseHosts {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		if err := b.Insert(netip.PrefixFrom(a, 32), valHost+i); err != nil {
			t.Fatal(err)
		}
	}
	return b.Build()
}

// newRoute returns new route i of the update: even ones are /24s carved
// from 100.64.0.0/10, odd ones /64s from 2001:db8::/32.
func newRoute(i int) netip.Prefix {
	if i%2 == 0 {
		n := i / 2
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(n>>8), byte(n), 0}), 24)
	}
	n := i / 2
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(n >> 8), byte(n)}), 64)
}

// updateProbe is an address with its answer before and after the update;
// the two are equal where the update changed nothing.
type updateProbe struct {
	a        netip.Addr
	old, new int
}

// updateProbes returns the addresses the readers look up: both ends of
// every 50th new route, the addresses just outside the last ones, and
// addresses under routes the update leaves alone.
func updateProbes() []updateProbe {
	var ps []updateProbe
	for i := 0; i < updateRoutes; i += 50 {
		for _, j := range []int{i, i + 1} {
			p := newRoute(j)
			cover := valCover4
			if p.Addr().Is6() {
				cover = valCover6
			}
			ps = append(ps,
				updateProbe{p.Addr(), cover, valNew + j},
				updateProbe{lastAddr(p), cover, valNew + j})
		}
	}
	last4, last6 := newRoute(updateRoutes-2), newRoute(updateRoutes-1)
	ps = append(ps,
		updateProbe{lastAddr(last4).Next(), valCover4, valCover4},
		updateProbe{lastAddr(last6).Next(), valCover6, valCover6})
	for _, u := range []struct {
		a string
		v int
	}{
		{"192.0.2.1", valTest1},
		{"192.0.2.255", valTest1},
		{"203.0.113.200", valTest3},
		{"203.0.113.1", valDefault4},
		{"100.127.255.255", valCover4},
		{"198.18.0.0", valHost},
		{"198.18.7.207", valHost + baseHosts - 1},
		{"198.18.7.208", valDefault4},
		{"2001:db8:ffff::1", valSite6},
		{"2001:db9::1", valDefault6},
		{"::ffff:100.64.0.1", valDefault6},
	} {
		ps = append(ps, updateProbe{mpa(u.a), u.v, u.v})
	}
	return ps
}

// Generations a reader can see.
const (
	genUnknown = iota
	genOld
	genNew
)

// updateReader is one reader's progress, padded so that readers do not
// share a cache line.
type updateReader struct {
	lookups atomic.Uint64 // lookups completed
	rounds  atomic.Uint64 // passes over the probes completed
	gen     atomic.Int32  // generation of the table of the last pass
	_       [40]byte
}

// TestUpdateDoesNotBlockReaders publishes 10,000 new routes while readers
// keep looking addresses up. The readers must complete lookups while the
// update is in progress, every table they load must answer wholly as the
// old one or wholly as the new one, and once the new table is published
// they must see its routes.
func TestUpdateDoesNotBlockReaders(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS >= 2 to run readers beside the update")
	}
	base := updateBase(t)
	probes := updateProbes()
	var cur atomic.Pointer[Table[int]]
	cur.Store(base)

	readers := make([]updateReader, runtime.GOMAXPROCS(0))
	progress := func() uint64 {
		var n uint64
		for i := range readers {
			n += readers[i].lookups.Load()
		}
		return n
	}
	var stop atomic.Bool
	var failure atomic.Pointer[string]
	fail := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		failure.CompareAndSwap(nil, &s)
	}
	var wg sync.WaitGroup
	for r := range readers {
		st := &readers[r]
		wg.Go(func() {
			seen := genUnknown
			for !stop.Load() {
				tab := cur.Load()
				gen := genUnknown
				for _, p := range probes {
					v, ok := tab.Lookup(p.a)
					switch {
					case !ok:
						fail("reader %d: Lookup(%v) missed; want %d or %d", r, p.a, p.old, p.new)
					case v == p.old && v == p.new:
						// Unchanged by the update.
					case v == p.old && gen == genNew, v == p.new && gen == genOld:
						fail("reader %d: Lookup(%v) = %d from a table that answered other addresses differently: a mix of the old and the new table", r, p.a, v)
					case v == p.old:
						gen = genOld
					case v == p.new:
						gen = genNew
					default:
						fail("reader %d: Lookup(%v) = %d; want %d (old) or %d (new)", r, p.a, v, p.old, p.new)
					}
				}
				if gen == genOld && seen == genNew {
					fail("reader %d: saw the old table after the new one", r)
				}
				seen = gen
				st.gen.Store(int32(gen))
				st.lookups.Add(uint64(len(probes)))
				st.rounds.Add(1)
			}
		})
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	// waitReaders waits until done holds for every reader. The deadline
	// only keeps a broken table from hanging the test.
	waitReaders := func(what string, done func(i int) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := range readers {
			for !done(i) {
				if f := failure.Load(); f != nil {
					t.Fatal(*f)
				}
				if time.Now().After(deadline) {
					t.Fatalf("reader %d: %s", i, what)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	waitReaders("no lookups at all", func(i int) bool { return readers[i].rounds.Load() > 0 })

	// A reader that blocked on the update would complete at most the pass
	// it was in, and a few more if the update was descheduled before it
	// got to the part that blocks, so ten passes per reader between the
	// start and the end of Build mean lookups went on while the table was
	// being built and published. Build takes milliseconds, about as long
	// as the kernel or the Go scheduler may keep a thread or goroutine off
	// a busy CPU, so one update proves little either way: the readers
	// must get there in three updates out of ten. Readers that block do
	// not, readers that do not block fail to only when descheduled.
	minLookups := uint64(10 * len(readers) * len(probes))
	const attempts, wantShown = 10, 3
	//
	// Every update starts from the old table, so each publishes the same
	// new one and the readers' answers only change at the first.
	var tab *Table[int]
	shown := 0
	var counts []uint64
	for attempt := 1; shown < wantShown; attempt++ {
		if attempt > attempts {
			t.Fatalf("readers completed %d lookups in the %d builds and publications of a table with %d new routes; want at least %d in %d of them",
				counts, attempts, updateRoutes, minLookups, wantShown)
		}
		updated := make(chan struct{})
		var start, building, end uint64
		go func() {
			defer close(updated)
			start = progress()
			b := base.Builder()
			for i := range updateRoutes {
				if err := b.Insert(newRoute(i), valNew+i); err != nil {
					fail("Insert(%v): %v", newRoute(i), err)
					return
				}
			}
			building = progress()
			tab = b.Build()
			cur.Store(tab)
			end = progress()
		}()
		<-updated
		if f := failure.Load(); f != nil {
			t.Fatal(*f)
		}
		t.Logf("update %d: %d lookups, %d of them while the table was built and published",
			attempt, end-start, end-building)
		counts = append(counts, end-building)
		if end-building >= minLookups {
			shown++
		}
		time.Sleep(time.Millisecond)
	}
	if got, want := tab.Len(), base.Len()+updateRoutes; got != want {
		t.Fatalf("new table holds %d prefixes, want %d", got, want)
	}

	// Each reader starts a pass after the swap and sees the new table.
	var after []uint64
	for i := range readers {
		after = append(after, readers[i].rounds.Load())
	}
	waitReaders("no pass after the swap", func(i int) bool { return readers[i].rounds.Load() >= after[i]+2 })
	for i := range readers {
		if g := readers[i].gen.Load(); g != genNew {
			t.Errorf("reader %d: generation %d after the swap, want the new table", i, g)
		}
	}
	stop.Store(true)
	wg.Wait()
	if f := failure.Load(); f != nil {
		t.Fatal(*f)
	}

	// Every new route is in the published table, and the old table is as
	// it was.
	pub := cur.Load()
	for i := range updateRoutes {
		p := newRoute(i)
		for _, a := range []netip.Addr{p.Addr(), lastAddr(p)} {
			if gp, v, ok := pub.LookupPrefix(a); !ok || gp != p || v != valNew+i {
				t.Fatalf("new table: LookupPrefix(%v) = %v, %d, %v; want %v, %d", a, gp, v, ok, p, valNew+i)
			}
		}
		if _, ok := base.Get(p); ok {
			t.Fatalf("old table: Get(%v) found a route of the update", p)
		}
	}
	if base.Len() != baseHosts+7 {
		t.Fatalf("old table holds %d prefixes, want %d", base.Len(), baseHosts+7)
	}
}
