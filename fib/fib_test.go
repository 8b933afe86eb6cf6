package fib

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	mp  = netip.MustParsePrefix
	mpa = netip.MustParseAddr
)

type op struct {
	del bool
	p   netip.Prefix
	v   string
}

func ins(p, v string) op { return op{p: mp(p), v: v} }
func del(p string) op    { return op{del: true, p: mp(p)} }

type probe struct {
	addr   string // "" means the zero netip.Addr
	prefix string // "" means no match expected
	v      string
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name   string
		ops    []op
		probes []probe
	}{
		{
			name:   "empty",
			probes: []probe{{addr: "192.0.2.1"}, {addr: "2001:db8::1"}, {addr: ""}},
		},
		{
			name: "v4 default route",
			ops:  []op{ins("0.0.0.0/0", "dflt")},
			probes: []probe{
				{"0.0.0.0", "0.0.0.0/0", "dflt"},
				{"255.255.255.255", "0.0.0.0/0", "dflt"},
				{"203.0.113.7", "0.0.0.0/0", "dflt"},
				{addr: "::"},
				{addr: "2001:db8::1"},
				{addr: "::ffff:203.0.113.7"},
			},
		},
		{
			name: "v6 default route",
			ops:  []op{ins("::/0", "dflt6")},
			probes: []probe{
				{"::", "::/0", "dflt6"},
				{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0", "dflt6"},
				{"::ffff:192.0.2.1", "::/0", "dflt6"},
				{addr: "192.0.2.1"},
				{addr: "0.0.0.0"},
			},
		},
		{
			name: "documentation prefixes",
			ops: []op{
				ins("192.0.2.0/24", "test1"),
				ins("198.51.100.0/24", "test2"),
				ins("203.0.113.0/24", "test3"),
				ins("2001:db8::/32", "doc6"),
			},
			probes: []probe{
				{"192.0.2.0", "192.0.2.0/24", "test1"},
				{"192.0.2.255", "192.0.2.0/24", "test1"},
				{addr: "192.0.1.255"},
				{addr: "192.0.3.0"},
				{"198.51.100.42", "198.51.100.0/24", "test2"},
				{"203.0.113.200", "203.0.113.0/24", "test3"},
				{addr: "203.0.114.0"},
				{"2001:db8::", "2001:db8::/32", "doc6"},
				{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32", "doc6"},
				{addr: "2001:db9::"},
				{addr: "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"},
			},
		},
		{
			name: "nested v4",
			ops: []op{
				ins("0.0.0.0/0", "dflt"),
				ins("192.0.0.0/8", "slash8"),
				ins("192.0.2.0/24", "slash24"),
				ins("192.0.2.128/25", "upper"),
				ins("192.0.2.192/26", "upper-upper"),
				ins("192.0.2.200/32", "host"),
				ins("198.51.0.0/16", "slash16"),
				ins("198.51.100.0/24", "under16"),
				ins("198.51.0.0/17", "slash17"),
			},
			probes: []probe{
				{"192.0.2.1", "192.0.2.0/24", "slash24"},
				{"192.0.2.127", "192.0.2.0/24", "slash24"},
				{"192.0.2.128", "192.0.2.128/25", "upper"},
				{"192.0.2.191", "192.0.2.128/25", "upper"},
				{"192.0.2.192", "192.0.2.192/26", "upper-upper"},
				{"192.0.2.199", "192.0.2.192/26", "upper-upper"},
				{"192.0.2.200", "192.0.2.200/32", "host"},
				{"192.0.2.201", "192.0.2.192/26", "upper-upper"},
				{"192.0.3.1", "192.0.0.0/8", "slash8"},
				{"193.0.2.1", "0.0.0.0/0", "dflt"},
				{"198.51.100.7", "198.51.100.0/24", "under16"},
				{"198.51.101.7", "198.51.0.0/17", "slash17"},
				{"198.51.127.255", "198.51.0.0/17", "slash17"},
				{"198.51.128.0", "198.51.0.0/16", "slash16"},
			},
		},
		{
			name: "nested v6",
			ops: []op{
				ins("::/0", "dflt6"),
				ins("2001:db8::/32", "doc"),
				ins("2001:db8:1::/48", "site"),
				ins("2001:db8:1:2::/64", "subnet"),
				ins("2001:db8:1:2::1/128", "host"),
				ins("2001:db8:1:2::8/125", "slash125"),
				ins("2001:db8:1:2:8000::/65", "slash65"),
			},
			probes: []probe{
				{"2001:db8:1:2::1", "2001:db8:1:2::1/128", "host"},
				{"2001:db8:1:2::2", "2001:db8:1:2::/64", "subnet"},
				{"2001:db8:1:2::f", "2001:db8:1:2::8/125", "slash125"},
				{"2001:db8:1:2::10", "2001:db8:1:2::/64", "subnet"},
				{"2001:db8:1:2:8000::1", "2001:db8:1:2:8000::/65", "slash65"},
				{"2001:db8:1:3::1", "2001:db8:1::/48", "site"},
				{"2001:db8:2::1", "2001:db8::/32", "doc"},
				{"2001:db9::1", "::/0", "dflt6"},
			},
		},
		{
			name: "host routes at maximum length",
			ops: []op{
				ins("192.0.2.1/32", "h4"),
				ins("0.0.0.0/32", "zero4"),
				ins("255.255.255.255/32", "bcast"),
				ins("2001:db8::1/128", "h6"),
				ins("::/128", "zero6"),
				ins("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "ones6"),
			},
			probes: []probe{
				{"192.0.2.1", "192.0.2.1/32", "h4"},
				{addr: "192.0.2.0"},
				{addr: "192.0.2.2"},
				{"0.0.0.0", "0.0.0.0/32", "zero4"},
				{"255.255.255.255", "255.255.255.255/32", "bcast"},
				{addr: "255.255.255.254"},
				{"2001:db8::1", "2001:db8::1/128", "h6"},
				{addr: "2001:db8::"},
				{addr: "2001:db8::2"},
				{"::", "::/128", "zero6"},
				{addr: "::1"},
				{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "ones6"},
			},
		},
		{
			// Every prefix under 192.0 lies in 192.0.2.0/24 and is longer
			// than /24, likewise under 2001:db8 for 2001:db8:1:2:3::/80,
			// so lookups jump past the shared bytes and must still
			// reject addresses that differ in them.
			name: "skipped address bytes are checked",
			ops: []op{
				ins("0.0.0.0/0", "dflt"),
				ins("192.0.2.0/25", "low"),
				ins("192.0.2.128/26", "high"),
				ins("::/0", "dflt6"),
				ins("2001:db8:1:2:3::/80", "slash80"),
				ins("2001:db8:1:2:3:4::/96", "slash96"),
			},
			probes: []probe{
				{"192.0.2.1", "192.0.2.0/25", "low"},
				{"192.0.2.130", "192.0.2.128/26", "high"},
				{"192.0.2.200", "0.0.0.0/0", "dflt"},
				{"192.0.3.1", "0.0.0.0/0", "dflt"},
				{"192.0.1.130", "0.0.0.0/0", "dflt"},
				{"192.0.0.0", "0.0.0.0/0", "dflt"},
				{"2001:db8:1:2:3::1", "2001:db8:1:2:3::/80", "slash80"},
				{"2001:db8:1:2:3:4::1", "2001:db8:1:2:3:4::/96", "slash96"},
				{"2001:db8:1:2:4::1", "::/0", "dflt6"},
				{"2001:db8:9:2:3:4::1", "::/0", "dflt6"},
				{"2001:db8:1:2:3:5::1", "2001:db8:1:2:3::/80", "slash80"},
			},
		},
		{
			name: "replacement keeps the last value",
			ops: []op{
				ins("203.0.113.0/24", "old"),
				ins("203.0.113.0/25", "inner"),
				ins("203.0.113.0/24", "new"),
				ins("2001:db8::/32", "old6"),
				ins("2001:db8::/32", "new6"),
			},
			probes: []probe{
				{"203.0.113.200", "203.0.113.0/24", "new"},
				{"203.0.113.1", "203.0.113.0/25", "inner"},
				{"2001:db8::1", "2001:db8::/32", "new6"},
			},
		},
		{
			name: "delete exposes the covering route",
			ops: []op{
				ins("0.0.0.0/0", "dflt"),
				ins("192.0.2.0/24", "outer"),
				ins("192.0.2.0/28", "inner"),
				del("192.0.2.0/28"),
				ins("198.51.100.0/24", "gone"),
				del("198.51.100.0/24"),
				ins("2001:db8::/32", "doc"),
				ins("2001:db8::/64", "inner6"),
				del("2001:db8::/64"),
			},
			probes: []probe{
				{"192.0.2.1", "192.0.2.0/24", "outer"},
				{"198.51.100.1", "0.0.0.0/0", "dflt"},
				{"2001:db8::1", "2001:db8::/32", "doc"},
			},
		},
		{
			name: "same bits in both families stay apart",
			ops: []op{
				ins("192.0.2.0/24", "v4"),
				ins("::ffff:192.0.2.0/120", "mapped"),
				ins("c000:200::/24", "v6-lookalike"),
			},
			probes: []probe{
				{"192.0.2.9", "192.0.2.0/24", "v4"},
				{"::ffff:192.0.2.9", "::ffff:192.0.2.0/120", "mapped"},
				{"c000:200::1", "c000:200::/24", "v6-lookalike"},
				{addr: "::ffff:192.0.3.1"},
				{addr: "::c000:209"},
			},
		},
		{
			name: "mapped address does not match v4 prefix",
			ops:  []op{ins("192.0.2.0/24", "v4"), ins("0.0.0.0/0", "dflt")},
			probes: []probe{
				{addr: "::ffff:192.0.2.1"},
				{"192.0.2.1", "192.0.2.0/24", "v4"},
			},
		},
		{
			name: "zone is ignored",
			ops:  []op{ins("fe80::/10", "ll")},
			probes: []probe{
				{"fe80::1%eth0", "fe80::/10", "ll"},
				{"fe80::1", "fe80::/10", "ll"},
			},
		},
		{
			name: "zero address never matches",
			ops:  []op{ins("0.0.0.0/0", "dflt"), ins("::/0", "dflt6")},
			probes: []probe{
				{addr: ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder[string]()
			for _, o := range tt.ops {
				if o.del {
					if !b.Delete(o.p) {
						t.Fatalf("Delete(%v) = false, want true", o.p)
					}
					continue
				}
				if err := b.Insert(o.p, o.v); err != nil {
					t.Fatalf("Insert(%v): %v", o.p, err)
				}
			}
			tab := b.Build()
			for _, pr := range tt.probes {
				var a netip.Addr
				if pr.addr != "" {
					a = mpa(pr.addr)
				}
				gp, gv, gok := tab.LookupPrefix(a)
				lv, lok := tab.Lookup(a)
				if pr.prefix == "" {
					if gok || lok {
						t.Errorf("lookup %v = %v %q, want no match", a, gp, gv)
					}
					continue
				}
				if !gok || gp != mp(pr.prefix) || gv != pr.v {
					t.Errorf("LookupPrefix(%v) = %v, %q, %v; want %v, %q, true", a, gp, gv, gok, pr.prefix, pr.v)
				}
				if !lok || lv != pr.v {
					t.Errorf("Lookup(%v) = %q, %v; want %q, true", a, lv, lok, pr.v)
				}
			}
		})
	}
}

func TestInsertErrors(t *testing.T) {
	tests := []struct {
		name    string
		p       netip.Prefix
		wantSub string
	}{
		{"zero prefix", netip.Prefix{}, "invalid"},
		{"v4 length too long", netip.PrefixFrom(mpa("192.0.2.0"), 33), "192.0.2.0"},
		{"v4 negative length", netip.PrefixFrom(mpa("192.0.2.0"), -1), "192.0.2.0"},
		{"v6 length too long", netip.PrefixFrom(mpa("2001:db8::"), 129), "2001:db8::"},
		{"zero address", netip.PrefixFrom(netip.Addr{}, 0), "invalid"},
		{"v4 host bits", mp("192.0.2.1/24"), "192.0.2.1/24"},
		{"v4 host bits default", mp("198.51.100.1/0"), "198.51.100.1/0"},
		{"v6 host bits", mp("2001:db8::1/32"), "2001:db8::1/32"},
		{"v6 host bits at 127", mp("2001:db8::1/127"), "2001:db8::1/127"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder[int]()
			err := b.Insert(tt.p, 1)
			if err == nil {
				t.Fatalf("Insert(%v) succeeded, want error", tt.p)
			}
			if !strings.Contains(err.Error(), tt.wantSub) {
				t.Errorf("Insert(%v) error %q does not mention %q", tt.p, err, tt.wantSub)
			}
			if n := b.Build().Len(); n != 0 {
				t.Errorf("failed Insert left %d prefixes in the table", n)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	var zero Builder[int]
	if zero.Delete(mp("192.0.2.0/24")) {
		t.Error("Delete on zero Builder = true")
	}
	if err := zero.Insert(mp("192.0.2.0/24"), 7); err != nil {
		t.Fatalf("Insert on zero Builder: %v", err)
	}
	if zero.Delete(mp("192.0.2.0/25")) {
		t.Error("Delete of absent more specific prefix = true")
	}
	if zero.Delete(mp("192.0.0.0/16")) {
		t.Error("Delete of absent covering prefix = true")
	}
	if zero.Delete(mp("::ffff:192.0.2.0/120")) {
		t.Error("Delete of mapped-v6 twin = true")
	}
	if !zero.Delete(mp("192.0.2.0/24")) {
		t.Error("Delete of present prefix = false")
	}
	if zero.Delete(mp("192.0.2.0/24")) {
		t.Error("second Delete = true")
	}
	if zero.Delete(netip.Prefix{}) {
		t.Error("Delete of invalid prefix = true")
	}
	if n := zero.Build().Len(); n != 0 {
		t.Errorf("Len after deletes = %d", n)
	}
}

func TestNilTable(t *testing.T) {
	var tab *Table[int]
	for _, a := range []netip.Addr{mpa("192.0.2.1"), mpa("2001:db8::1"), {}} {
		if v, ok := tab.Lookup(a); ok || v != 0 {
			t.Errorf("nil Lookup(%v) = %d, %v", a, v, ok)
		}
		if p, v, ok := tab.LookupPrefix(a); ok || v != 0 || p.IsValid() {
			t.Errorf("nil LookupPrefix(%v) = %v, %d, %v", a, p, v, ok)
		}
	}
	if _, ok := tab.Get(mp("0.0.0.0/0")); ok {
		t.Error("nil Get found a prefix")
	}
	if n := tab.Len(); n != 0 {
		t.Errorf("nil Len = %d", n)
	}
	for p := range tab.All() {
		t.Errorf("nil All yielded %v", p)
	}
	b := tab.Builder()
	if err := b.Insert(mp("192.0.2.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	if v, ok := b.Build().Lookup(mpa("192.0.2.1")); !ok || v != 1 {
		t.Errorf("table from nil-derived Builder: Lookup = %d, %v", v, ok)
	}
}

func TestGet(t *testing.T) {
	b := NewBuilder[int]()
	for i, s := range []string{"0.0.0.0/0", "192.0.2.0/24", "192.0.2.0/25", "::/0", "2001:db8::/32", "::ffff:192.0.2.0/120"} {
		if err := b.Insert(mp(s), i+1); err != nil {
			t.Fatal(err)
		}
	}
	tab := b.Build()
	tests := []struct {
		p    netip.Prefix
		want int
	}{
		{mp("0.0.0.0/0"), 1},
		{mp("192.0.2.0/24"), 2},
		{mp("192.0.2.0/25"), 3},
		{mp("::/0"), 4},
		{mp("2001:db8::/32"), 5},
		{mp("::ffff:192.0.2.0/120"), 6},
		{mp("192.0.2.0/26"), 0},
		{mp("192.0.0.0/16"), 0},
		{mp("192.0.2.1/24"), 0},
		{mp("::/128"), 0},
		{mp("0.0.0.0/32"), 0},
		{mp("2001:db8::/33"), 0},
		{netip.Prefix{}, 0},
	}
	for _, tt := range tests {
		v, ok := tab.Get(tt.p)
		if ok != (tt.want != 0) || v != tt.want {
			t.Errorf("Get(%v) = %d, %v; want %d", tt.p, v, ok, tt.want)
		}
	}
}

func TestAllOrder(t *testing.T) {
	in := []string{
		"2001:db8::/32", "::/0", "203.0.113.0/24", "192.0.2.128/25", "192.0.2.0/24",
		"192.0.2.0/25", "0.0.0.0/0", "::ffff:0.0.0.0/96", "10.0.0.0/8", "2001:db8::/48",
	}
	want := []string{
		"0.0.0.0/0", "10.0.0.0/8", "192.0.2.0/24", "192.0.2.0/25", "192.0.2.128/25", "203.0.113.0/24",
		"::/0", "::ffff:0.0.0.0/96", "2001:db8::/32", "2001:db8::/48",
	}
	b := NewBuilder[string]()
	for _, s := range in {
		if err := b.Insert(mp(s), s); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for p, v := range b.Build().All() {
		if p.String() != v {
			t.Errorf("All yielded %v with value %q", p, v)
		}
		got = append(got, p.String())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("All order:\n got %v\nwant %v", got, want)
	}

	n := 0
	for range b.Build().All() {
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("early break: iterated %d times", n)
	}
}

func TestCopyOnWrite(t *testing.T) {
	b := NewBuilder[string]()
	must(t, b.Insert(mp("192.0.2.0/24"), "a"))
	must(t, b.Insert(mp("2001:db8::/32"), "b"))
	t1 := b.Build()

	// Changes to the original Builder after Build must not leak into t1.
	must(t, b.Insert(mp("192.0.2.0/24"), "changed"))
	must(t, b.Insert(mp("198.51.100.0/24"), "added"))

	b2 := t1.Builder()
	must(t, b2.Insert(mp("203.0.113.0/24"), "c"))
	must(t, b2.Insert(mp("192.0.2.0/25"), "d"))
	if !b2.Delete(mp("2001:db8::/32")) {
		t.Fatal("Delete from derived Builder = false")
	}
	t2 := b2.Build()

	check := func(tab *Table[string], a, want string) {
		t.Helper()
		v, ok := tab.Lookup(mpa(a))
		if want == "" {
			if ok {
				t.Errorf("Lookup(%s) = %q, want miss", a, v)
			}
			return
		}
		if !ok || v != want {
			t.Errorf("Lookup(%s) = %q, %v; want %q", a, v, ok, want)
		}
	}
	check(t1, "192.0.2.1", "a")
	check(t1, "198.51.100.1", "")
	check(t1, "203.0.113.1", "")
	check(t1, "2001:db8::1", "b")
	if t1.Len() != 2 {
		t.Errorf("t1.Len() = %d, want 2", t1.Len())
	}

	check(t2, "192.0.2.1", "d")
	check(t2, "192.0.2.200", "a")
	check(t2, "203.0.113.1", "c")
	check(t2, "2001:db8::1", "")
	if t2.Len() != 3 {
		t.Errorf("t2.Len() = %d, want 3", t2.Len())
	}

	t3 := b.Build()
	check(t3, "192.0.2.1", "changed")
	check(t3, "198.51.100.1", "added")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// randomRef fills a reference table with n random prefixes of one family.
// A third of them are carved out of or widened from earlier prefixes so that
// nesting is common, which uniformly random prefixes rarely produce.
func randomRef(r *rand.Rand, is6 bool, n int) refTable {
	maxBits := 32
	if is6 {
		maxBits = 128
	}
	ref := refTable{}
	var list []netip.Prefix
	for i := 0; len(ref) < n; i++ {
		var p netip.Prefix
		switch {
		case len(list) > 0 && r.IntN(3) == 0:
			base := list[r.IntN(len(list))]
			if base.Bits() < maxBits && r.IntN(4) != 0 {
				bits := base.Bits() + 1 + r.IntN(maxBits-base.Bits())
				p = netip.PrefixFrom(randAddrIn(r, base), bits).Masked()
			} else {
				p = netip.PrefixFrom(base.Addr(), r.IntN(base.Bits()+1)).Masked()
			}
		case r.IntN(20) == 0:
			// Lengths at the very ends of the range.
			p = randPrefix(r, is6, 0, 0)
			if r.IntN(2) == 0 {
				p = randPrefix(r, is6, maxBits, maxBits)
			}
		default:
			p = randPrefix(r, is6, 0, maxBits)
		}
		ref[p] = i
		list = append(list, p)
	}
	return ref
}

func randomProbes(r *rand.Rand, ref refTable, n int) []netip.Addr {
	var ps []netip.Prefix
	for p := range ref {
		ps = append(ps, p)
	}
	var out []netip.Addr
	for _, p := range ps {
		out = append(out, probes(p)...)
	}
	for range n {
		switch {
		case len(ps) > 0 && r.IntN(4) != 0:
			out = append(out, randAddrIn(r, ps[r.IntN(len(ps))]))
		default:
			out = append(out, randAddr(r, r.IntN(2) == 0))
		}
	}
	return out
}

func TestRandomAgainstReference(t *testing.T) {
	n, lookups := 600, 2000
	if testing.Short() || raceEnabled {
		n, lookups = 200, 800
	}
	for _, seed := range []uint64{1, 2, 3, 42} {
		for _, fam := range []struct {
			name string
			v4   bool
			v6   bool
		}{{"v4", true, false}, {"v6", false, true}, {"mixed", true, true}} {
			t.Run(fmt.Sprintf("%s/seed=%d", fam.name, seed), func(t *testing.T) {
				r := rand.New(rand.NewPCG(seed, 0x66696221))
				ref := refTable{}
				if fam.v4 {
					for p, v := range randomRef(r, false, n) {
						ref[p] = v
					}
				}
				if fam.v6 {
					for p, v := range randomRef(r, true, n) {
						ref[p] = v + 1_000_000
					}
				}
				b := NewBuilder[int]()
				for p, v := range ref {
					must(t, b.Insert(p, v))
				}
				tab := b.Build()
				addrs := randomProbes(r, ref, lookups)
				checkAgainstRef(t, tab, ref, addrs)

				// Copy-on-write round: delete a random half, replace some
				// values and add a few prefixes, then compare again. The
				// old table must still answer as before.
				b2 := tab.Builder()
				ref2 := refTable{}
				for p, v := range ref {
					switch r.IntN(4) {
					case 0, 1:
						if !b2.Delete(p) {
							t.Fatalf("Delete(%v) = false", p)
						}
					case 2:
						ref2[p] = v + 5_000_000
						must(t, b2.Insert(p, v+5_000_000))
					default:
						ref2[p] = v
					}
				}
				for p, v := range randomRef(r, fam.v6 && !fam.v4, n/10) {
					ref2[p] = v + 9_000_000
					must(t, b2.Insert(p, v+9_000_000))
				}
				tab2 := b2.Build()
				checkAgainstRef(t, tab2, ref2, append(addrs, randomProbes(r, ref2, lookups/4)...))
				checkAgainstRef(t, tab, ref, addrs[:len(addrs)/4])
			})
		}
	}
}

func TestLookupAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	r := rand.New(rand.NewPCG(7, 7))
	b := NewBuilder[int]()
	for p, v := range randomRef(r, false, 500) {
		must(t, b.Insert(p, v))
	}
	for p, v := range randomRef(r, true, 500) {
		must(t, b.Insert(p, v))
	}
	tab := b.Build()
	a4 := randAddrIn(r, mp("0.0.0.0/0"))
	a6 := mpa("2001:db8::1")
	var sink int
	for _, a := range []netip.Addr{a4, a6, mpa("fe80::1%eth0"), {}} {
		if n := testing.AllocsPerRun(1000, func() {
			v, _ := tab.Lookup(a)
			sink += v
		}); n != 0 {
			t.Errorf("Lookup(%v) allocates %v times per call", a, n)
		}
		if n := testing.AllocsPerRun(1000, func() {
			_, v, _ := tab.LookupPrefix(a)
			sink += v
		}); n != 0 {
			t.Errorf("LookupPrefix(%v) allocates %v times per call", a, n)
		}
	}
	_ = sink
}

// TestConcurrentReaders publishes successive tables while readers look up
// addresses; every answer must come wholly from the table the reader loaded.
func TestConcurrentReaders(t *testing.T) {
	var cur atomic.Pointer[Table[int]]
	build := func(gen int) *Table[int] {
		b := NewBuilder[int]()
		for _, s := range []string{"0.0.0.0/0", "192.0.2.0/24", "192.0.2.128/25", "::/0", "2001:db8::/32"} {
			must(t, b.Insert(mp(s), gen))
		}
		if gen%2 == 0 {
			must(t, b.Insert(mp("192.0.2.200/32"), gen))
		}
		return b.Build()
	}
	cur.Store(build(0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var fail atomic.Value
	for range 4 {
		wg.Go(func() {
			addrs := []netip.Addr{mpa("192.0.2.200"), mpa("192.0.2.1"), mpa("2001:db8::1"), mpa("203.0.113.1")}
			for {
				select {
				case <-stop:
					return
				default:
				}
				tab := cur.Load()
				gen, _ := tab.Get(mp("0.0.0.0/0"))
				for _, a := range addrs {
					if v, ok := tab.Lookup(a); !ok || v != gen {
						fail.Store(a.String())
					}
				}
				wantBits := 25
				if gen%2 == 0 {
					wantBits = 32
				}
				if p, _, _ := tab.LookupPrefix(mpa("192.0.2.200")); p.Bits() != wantBits {
					fail.Store("192.0.2.200 prefix length")
				}
			}
		})
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for gen := 1; time.Now().Before(deadline); gen++ {
		cur.Store(build(gen))
	}
	close(stop)
	wg.Wait()
	if f := fail.Load(); f != nil {
		t.Fatalf("reader saw inconsistent answer for %v", f)
	}
}

// TestMemory100k measures the heap cost and build time of tables with 100k
// random prefixes and keeps them within budget. Random prefixes are close
// to the worst case for a trie: they share little structure.
func TestMemory100k(t *testing.T) {
	if testing.Short() {
		t.Skip("builds large tables")
	}
	tests := []struct {
		name             string
		is6              bool
		minBits, maxBits int
		within           string // all prefixes lie in this one, if set
		budget           int64  // heap bytes for the whole Table
	}{
		{"v4 /8-/32", false, 8, 32, "", 32 << 20},
		{"v4 /32 hosts", false, 32, 32, "", 32 << 20},
		{"v4 /32 hosts in a /14", false, 32, 32, "10.0.0.0/14", 32 << 20},
		{"v6 /16-/64", true, 16, 64, "", 48 << 20},
		{"v6 /0-/128", true, 0, 128, "", 48 << 20},
		{"v6 /128 hosts", true, 128, 128, "", 48 << 20},
		{"v6 /128 hosts in a /64", true, 128, 128, "2001:db8:0:1::/64", 48 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(100, 0))
			b := NewBuilder[uint32]()
			for b.Len() < 100_000 {
				p := randPrefix(r, tt.is6, tt.minBits, tt.maxBits)
				if tt.within != "" {
					p = netip.PrefixFrom(randAddrIn(r, mp(tt.within)), p.Bits()).Masked()
				}
				must(t, b.Insert(p, r.Uint32()))
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			tab := b.Build()
			elapsed := time.Since(start)
			runtime.GC()
			runtime.ReadMemStats(&after)
			used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			t.Logf("build %v, table heap %.1f MiB, trie %.2f MiB, %d leaves",
				elapsed, float64(used)/(1<<20),
				float64(tab.v4.sizeBytes()+tab.v6.sizeBytes())/(1<<20), len(tab.v4.leaves)+len(tab.v6.leaves))
			if used > tt.budget {
				t.Errorf("table uses %.1f MiB, budget is %d MiB", float64(used)/(1<<20), tt.budget>>20)
			}
			if !raceEnabled && elapsed > 2*time.Second {
				t.Errorf("Build took %v", elapsed)
			}
			runtime.KeepAlive(tab)
			runtime.KeepAlive(b)
		})
	}
}
