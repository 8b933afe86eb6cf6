package kvstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestClaimPodCIDR(t *testing.T) {
	t.Parallel()
	ep, _, _ := startEtcd(t, false)
	o := testOptions(t, ep)
	// Two stores, as two agents would race through two connections.
	stores := []*Store{openStore(t, o, "s0"), openStore(t, o, "s1")}
	cluster := netip.MustParsePrefix("10.20.0.0/24")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// 20 nodes race for the 16 /28 blocks of a /24.
	type result struct {
		block netip.Prefix
		err   error
	}
	results := make([]result, 20)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := stores[i%2].ClaimPodCIDR(ctx, fmt.Sprintf("node-%02d", i), cluster, 28)
			results[i] = result{p, err}
		}()
	}
	wg.Wait()
	t.Logf("20 racing claims took %s", time.Since(start))
	owner := map[netip.Prefix]int{}
	exhausted := 0
	for i, r := range results {
		if r.err != nil {
			if !errors.Is(r.err, ErrExhausted) {
				t.Fatalf("node-%02d: %v", i, r.err)
			}
			exhausted++
			continue
		}
		if r.block.Bits() != 28 || !cluster.Contains(r.block.Addr()) || r.block != r.block.Masked() {
			t.Fatalf("node-%02d got %s", i, r.block)
		}
		if j, ok := owner[r.block]; ok {
			t.Fatalf("node-%02d and node-%02d both got %s", j, i, r.block)
		}
		owner[r.block] = i
	}
	if len(owner) != 16 || exhausted != 4 {
		t.Fatalf("%d blocks claimed, %d exhausted; want 16 and 4", len(owner), exhausted)
	}

	// The same name gets the same block, from either store.
	for i, r := range results {
		p, err := stores[(i+1)%2].ClaimPodCIDR(ctx, fmt.Sprintf("node-%02d", i), cluster, 28)
		if r.err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("node-%02d again: %v, want exhausted", i, err)
			}
			continue
		}
		if err != nil || p != r.block {
			t.Fatalf("node-%02d again: %s, %v; want %s", i, p, err, r.block)
		}
	}

	// A released block goes to the next claimant, and one name racing
	// with itself still gets one block.
	// Which nodes lost the race varies: pick two winners.
	var winners []int
	for i, r := range results {
		if r.err == nil {
			winners = append(winners, i)
		}
	}
	freed := results[winners[0]].block
	if err := stores[0].ReleasePodCIDR(ctx, fmt.Sprintf("node-%02d", winners[0])); err != nil {
		t.Fatal(err)
	}
	got := make([]netip.Prefix, 6)
	errs := make([]error, 6)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = stores[i%2].ClaimPodCIDR(ctx, "node-new", cluster, 28)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != freed {
			t.Fatalf("racing claims of one name: %v %v, want all %s", got, errs, freed)
		}
	}

	// Claims outlive the store that made them.
	stores[0].Close()
	again := openStore(t, o, "s2")
	kept := fmt.Sprintf("node-%02d", winners[1])
	if p, err := again.ClaimPodCIDR(ctx, kept, cluster, 28); err != nil || p != results[winners[1]].block {
		t.Fatalf("%s after reopen: %s, %v; want %s", kept, p, err, results[winners[1]].block)
	}
	// A held block that no longer fits the request is reported.
	if _, err := again.ClaimPodCIDR(ctx, kept, cluster, 27); err == nil {
		t.Fatalf("%s with another mask size: no error", kept)
	}

	for _, bad := range []struct {
		cluster string
		mask    int
	}{{"10.20.0.0/24", 23}, {"10.20.0.0/24", 33}, {"fd00::/120", 129}} {
		if _, err := again.ClaimPodCIDR(ctx, "x", netip.MustParsePrefix(bad.cluster), bad.mask); !errors.Is(err, ErrInvalid) {
			t.Errorf("cluster %s mask %d: %v, want invalid", bad.cluster, bad.mask, err)
		}
	}
	if _, err := again.ClaimPodCIDR(ctx, "", cluster, 28); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty node name: %v", err)
	}
	// IPv6 works the same way.
	v6 := netip.MustParsePrefix("fd00:10::/120")
	p, err := again.ClaimPodCIDR(ctx, "node-v6", v6, 124)
	if err != nil || p != netip.MustParsePrefix("fd00:10::/124") {
		t.Fatalf("IPv6 claim: %s, %v", p, err)
	}
	p, err = again.ClaimPodCIDR(ctx, "node-v6b", v6, 124)
	if err != nil || p != netip.MustParsePrefix("fd00:10::10/124") {
		t.Fatalf("second IPv6 claim: %s, %v", p, err)
	}
}

// A dual-stack node holds one block of each family at once; each comes
// back on the next claim, and a release gives up both.
func TestClaimPodCIDRDualStack(t *testing.T) {
	t.Parallel()
	ep, _, _ := startEtcd(t, false)
	s := openStore(t, testOptions(t, ep), "s0")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	v4, v6 := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/48")
	claim := func(node string, cluster netip.Prefix, mask int, want string) {
		t.Helper()
		p, err := s.ClaimPodCIDR(ctx, node, cluster, mask)
		if err != nil || p != netip.MustParsePrefix(want) {
			t.Fatalf("%s in %s: %s, %v; want %s", node, cluster, p, err, want)
		}
	}
	claim("node1", v4, 24, "10.1.0.0/24")
	claim("node1", v6, 64, "fd00:1::/64")
	claim("node2", v6, 64, "fd00:1:0:1::/64")
	claim("node2", v4, 24, "10.1.1.0/24")
	// Again, in the other order: the blocks held.
	claim("node1", v6, 64, "fd00:1::/64")
	claim("node1", v4, 24, "10.1.0.0/24")
	// An IPv6 block of another size is the node's own mistake to fix,
	// not a second claim.
	if _, err := s.ClaimPodCIDR(ctx, "node1", v6, 80); err == nil {
		t.Fatal("node1 with another IPv6 mask size: no error")
	}
	if err := s.ReleasePodCIDR(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	claim("node3", v4, 24, "10.1.0.0/24")
	claim("node3", v6, 64, "fd00:1::/64")
}

func TestFreeBlockWalk(t *testing.T) {
	ts := newTakenSet(netip.MustParsePrefix("10.0.0.0/24"), 26)
	ts.add(netip.MustParsePrefix("10.0.0.0/26"))
	ts.add(netip.MustParsePrefix("10.0.0.64/27")) // left by a /27 configuration
	ts.add(netip.MustParsePrefix("10.9.0.0/26"))  // another cluster: ignored
	p, ok := ts.firstFree()
	if !ok || p != netip.MustParsePrefix("10.0.0.128/26") {
		t.Fatalf("first free %s %v", p, ok)
	}
	ts.add(netip.MustParsePrefix("10.0.0.0/25")) // a larger block over both
	ts.add(netip.MustParsePrefix("10.0.0.128/26"))
	p, ok = ts.firstFree()
	if !ok || p != netip.MustParsePrefix("10.0.0.192/26") {
		t.Fatalf("after more claims %s %v", p, ok)
	}
	if _, ok := ts.nextFree(p); ok {
		t.Fatal("found a block past the last")
	}

	for _, tt := range []struct {
		in   string
		want string
	}{
		{"10.0.0.0/24", "10.0.1.0"},
		{"10.0.0.240/28", "10.0.1.0"},
		{"10.255.255.255/32", "11.0.0.0"},
		{"255.255.255.240/28", ""},
		{"0.0.0.0/0", ""},
		{"fd00::/64", "fd00:0:0:1::"},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", ""},
	} {
		a, ok := prefixEnd(netip.MustParsePrefix(tt.in))
		if (tt.want == "" && ok) || (tt.want != "" && (!ok || a != netip.MustParseAddr(tt.want))) {
			t.Errorf("prefixEnd(%s) = %s %v, want %q", tt.in, a, ok, tt.want)
		}
	}
	for _, s := range []string{"10.1.2.0/24", "fd00::/64", "10.0.0.1/32"} {
		p := netip.MustParsePrefix(s)
		if q, err := parsePrefixKey(prefixKey(p)); err != nil || q != p {
			t.Errorf("%s -> %s -> %s %v", p, prefixKey(p), q, err)
		}
	}
}
