package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func testNode(i int) NodeRecord {
	return NodeRecord{
		Name:     fmt.Sprintf("node-%c", 'a'+i),
		IP:       netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
		PodCIDR:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24),
		Protocol: "vxlan",
		Port:     8472,
	}
}

func publish(t *testing.T, s *Store, n NodeRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Publish(ctx, n); err != nil {
		t.Fatalf("publish %s: %v", n.Name, err)
	}
}

func TestMembership(t *testing.T) {
	t.Parallel()
	ep, _, _ := startEtcd(t, false)
	o := testOptions(t, ep)
	var stores [3]*Store
	var cols [3]*collector
	for i := range stores {
		oi := o
		if i == 1 { // the one that crashes
			oi.LeaseTTL = shortTTL
		}
		stores[i] = openStore(t, oi, testNode(i).Name)
		publish(t, stores[i], testNode(i))
	}
	for i := range stores {
		cols[i] = collect(stores[i].Watch(t.Context()))
	}
	for i := range stores {
		cols[i].waitNames(t, 3*time.Second, "node-a", "node-b", "node-c")
		if got := stores[i].Nodes(); len(got) != 3 || got[1] != testNode(1) {
			t.Fatalf("store %d Nodes() = %+v", i, got)
		}
		if !stores[i].Connected() || !stores[i].Status().Published {
			t.Fatalf("store %d status %+v", i, stores[i].Status())
		}
	}

	// A changed record reaches the others as a Put.
	changed := testNode(0)
	changed.IP = netip.MustParseAddr("192.0.2.99")
	publish(t, stores[0], changed)
	eventually(t, 3*time.Second, "changed record seen", func() bool {
		cols[1].mu.Lock()
		defer cols[1].mu.Unlock()
		return cols[1].nodes["node-a"].IP == changed.IP
	})

	// A clean stop revokes the lease: the others drop the node at once.
	closed := time.Now()
	if err := stores[2].Close(); err != nil {
		t.Fatal(err)
	}
	cols[0].waitNames(t, time.Second, "node-a", "node-b")
	cols[1].waitNames(t, time.Second, "node-a", "node-b")
	t.Logf("clean stop seen by both others %s after Close was called", time.Since(closed))
	eventually(t, time.Second, "watch channel of closed store closed", func() bool {
		cols[2].mu.Lock()
		defer cols[2].mu.Unlock()
		return cols[2].closed
	})

	// A crash leaves the lease to expire: gone within the TTL (the server
	// checks expiry twice a second; the margin is for loaded machines).
	stopped := time.Now()
	if err := stores[1].shutdown(false); err != nil {
		t.Fatal(err)
	}
	cols[0].waitNames(t, shortTTL+5*time.Second, "node-a")
	d := time.Since(stopped)
	t.Logf("crashed node dropped after %s (TTL %s)", d, shortTTL)
	if d < shortTTL/2 {
		t.Fatalf("crashed node dropped after %s: too soon for a lease expiry", d)
	}
	if got := cols[0].deletes(); strings.Join(got, ",") != "node-c,node-b" {
		t.Fatalf("deletes seen %v, want node-c then node-b", got)
	}
}

func TestOutageKeepsStateAndResyncs(t *testing.T) {
	t.Parallel()
	ep, stop, restart := startEtcd(t, false)
	o := testOptions(t, ep)
	// Shorter than the outage, so that the client gives up on its
	// keepalives and must get its lease back; long enough that a loaded
	// machine does not lose it after etcd returns (etcd restarts leases
	// at TTL plus an election timeout).
	o.LeaseTTL = 3 * time.Second
	var stores [3]*Store
	var cols [3]*collector
	for i := range stores {
		stores[i] = openStore(t, o, testNode(i).Name)
		publish(t, stores[i], testNode(i))
		cols[i] = collect(stores[i].Watch(t.Context()))
	}
	for i := range stores {
		cols[i].waitNames(t, 3*time.Second, "node-a", "node-b", "node-c")
	}
	late := openStore(t, o, "node-e") // publishes only once etcd is gone

	down := time.Now()
	stop()
	for i, s := range stores {
		eventually(t, 5*time.Second, fmt.Sprintf("store %d disconnected", i), func() bool { return !s.Connected() })
		t.Logf("store %d reports disconnected %s after etcd was killed", i, time.Since(down))
	}
	// Down for longer than the TTL, so that the client gives up on its
	// keepalives and has to get its lease back when etcd returns.
	// Publish cannot finish without etcd, says so, and keeps trying.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	err := late.Publish(ctx, testNode(4))
	cancel()
	if err == nil || !strings.Contains(err.Error(), "still trying") {
		t.Fatalf("Publish with etcd down: %v", err)
	}
	time.Sleep(5*time.Second - time.Since(down))
	for i := range stores {
		if del := cols[i].deletes(); len(del) > 0 {
			t.Fatalf("store %d reported deletes while etcd was down: %v", i, del)
		}
		if n := len(stores[i].Nodes()); n != 3 {
			t.Fatalf("store %d forgot nodes while etcd was down: %d left", i, n)
		}
	}

	restart()
	up := time.Now()
	for i, s := range stores {
		eventually(t, 10*time.Second, fmt.Sprintf("store %d reconnected", i), s.Connected)
		t.Logf("store %d connected again %s after restart", i, time.Since(up))
	}
	for i := range stores {
		cols[i].waitNames(t, 5*time.Second, "node-a", "node-b", "node-c", "node-e")
	}
	t.Logf("node published during the outage seen by all %s after restart", time.Since(up))
	// etcd restarts leases at the TTL plus an election timeout; wait past
	// that to be sure every node kept its lease.
	time.Sleep(o.LeaseTTL + 1500*time.Millisecond)
	for i, s := range stores {
		if del := cols[i].deletes(); len(del) > 0 {
			t.Fatalf("store %d reported deletes after etcd came back: %v", i, del)
		}
		if !s.Status().Published {
			t.Fatalf("store %d not published after etcd came back: %+v", i, s.Status())
		}
	}

	// Business as usual afterwards.
	d := openStore(t, o, "node-d")
	publish(t, d, testNode(3))
	for i := range stores {
		cols[i].waitNames(t, 3*time.Second, "node-a", "node-b", "node-c", "node-d", "node-e")
	}
}

func TestCutOffWatcherReconciles(t *testing.T) {
	t.Parallel()
	ep, _, _ := startEtcd(t, false)
	o := testOptions(t, ep)
	proxy := newProxy(t, strings.TrimPrefix(ep, "http://"))
	oa := o
	oa.Endpoints = []string{"http://" + proxy.addr()}
	oa.LeaseTTL = shortTTL // expires while cut off

	a := openStore(t, oa, "node-a")
	b := openStore(t, o, "node-b")
	c := openStore(t, o, "node-c")
	publish(t, a, testNode(0))
	publish(t, b, testNode(1))
	publish(t, c, testNode(2))
	ca := collect(a.Watch(t.Context()))
	cb := collect(b.Watch(t.Context()))
	va := a.WatchVTEPs(t.Context())
	if set := <-va; len(set) != 0 {
		t.Fatalf("first VTEP set %v, want empty", set)
	}
	ca.waitNames(t, 3*time.Second, "node-a", "node-b", "node-c")
	cb.waitNames(t, 3*time.Second, "node-a", "node-b", "node-c")
	seen := ca.count()

	cut := time.Now()
	proxy.setCut(true)
	eventually(t, 5*time.Second, "store a disconnected", func() bool { return !a.Connected() })
	t.Logf("cut-off store reports disconnected after %s", time.Since(cut))

	// Meanwhile: node-c leaves, node-d joins, a VTEP appears, and the
	// history a's watch would resume from is compacted away.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	dd := openStore(t, o, "node-d")
	publish(t, dd, testNode(3))
	vtep := VTEPRecord{CIDR: netip.MustParsePrefix("10.200.0.0/16"), Endpoint: netip.MustParseAddr("192.0.2.200"), MAC: "02:00:00:00:00:c8"}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := b.PutVTEP(ctx, vtep); err != nil {
		t.Fatal(err)
	}
	resp, err := b.cli.Get(ctx, "compaction-probe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// a's own lease runs out while it is cut off: b must see a go (a
	// node that loses its lease is gone) and come back.
	cb.waitNames(t, 3*time.Second, "node-a", "node-b", "node-d")
	cb.waitNames(t, shortTTL+5*time.Second, "node-b", "node-d")
	t.Logf("cut-off node's lease expired %s after the cut", time.Since(cut))
	time.Sleep(max(4*time.Second-time.Since(cut), 0))
	if ev := ca.since(seen); len(ev) != 0 {
		t.Fatalf("cut-off watcher reported %v while cut off", ev)
	}
	if n := len(a.Nodes()); n != 3 {
		t.Fatalf("cut-off store holds %d nodes, want the last known 3", n)
	}

	proxy.setCut(false)
	back := time.Now()
	eventually(t, 10*time.Second, "store a reconnected", a.Connected)
	ca.waitNames(t, 5*time.Second, "node-a", "node-b", "node-d")
	t.Logf("cut-off store reconciled %s after the link came back", time.Since(back))
	var others []string
	for _, ev := range ca.since(seen) {
		if ev.Node.Name != "node-a" { // its own record may flap: its lease expired
			others = append(others, ev.Kind.String()+" "+ev.Node.Name)
		}
	}
	if strings.Join(others, ",") != "delete node-c,put node-d" {
		t.Fatalf("after reconnection the watcher reported %v, want [delete node-c put node-d]", others)
	}
	select {
	case set := <-va:
		if len(set) != 1 || set[0] != vtep {
			t.Fatalf("VTEP set after reconnection %v", set)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no VTEP set after reconnection")
	}
	// a publishes itself again with a new lease.
	cb.waitNames(t, 5*time.Second, "node-a", "node-b", "node-d")
	eventually(t, 5*time.Second, "a published again", func() bool { return a.Status().Published })
}

// A watch that resumes from a compacted revision must fall back to a list.
func TestCompactedWatchRelists(t *testing.T) {
	t.Parallel()
	ep, _, _ := startEtcd(t, false)
	s := openStore(t, testOptions(t, ep), "s")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	put := func(n NodeRecord) {
		b, _ := json.Marshal(n)
		if _, err := s.cli.Put(ctx, s.opts.Prefix+nodesDir+n.Name, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	put(testNode(0))
	put(testNode(1))
	if _, err := s.cli.Delete(ctx, s.opts.Prefix+nodesDir+"node-a"); err != nil {
		t.Fatal(err)
	}
	// Garbage under nodes/ is skipped, not fatal.
	if _, err := s.cli.Put(ctx, s.opts.Prefix+nodesDir+"junk", "{"); err != nil {
		t.Fatal(err)
	}
	resp, err := s.cli.Put(ctx, s.opts.Prefix+"other", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}

	m := newMirror(s, "node", nodesDir, decodeNode)
	q := newNodeQueue()
	m.subscribe(q)
	done := make(chan struct{})
	go func() { defer close(done); m.run(ctx, 1) }()
	eventually(t, 5*time.Second, "mirror relisted", func() bool { return len(m.snapshot()) == 1 })
	if got := m.snapshot(); got[0] != testNode(1) {
		t.Fatalf("mirror holds %+v", got)
	}
	if ev, ok := q.pop(); !ok || ev.Kind != EventPut || ev.Node.Name != "node-b" {
		t.Fatalf("first event %+v", ev)
	}
	if ev, ok := q.pop(); ok {
		t.Fatalf("unexpected event %+v", ev)
	}
	cancel()
	<-done
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	o := Options{Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}, DialTimeout: time.Second}
	start := time.Now()
	s, err := Open(context.Background(), o)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded with nothing listening")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Open took %s with a 1s dial timeout", d)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Fatalf("error does not say why: %v", err)
	}
	t.Log(err)
}

func TestPublishChecks(t *testing.T) {
	t.Parallel()
	ep, _, _ := startEtcd(t, false)
	s := openStore(t, testOptions(t, ep), "s")
	ctx := t.Context()
	bad := []NodeRecord{
		{},
		{Name: "a/b", IP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.1.0.0/24")},
		{Name: "a", PodCIDR: netip.MustParsePrefix("10.1.0.0/24")},
		{Name: "a", IP: netip.MustParseAddr("192.0.2.1")},
		{Name: "a", IP: netip.MustParseAddr("192.0.2.1"), PodCIDR: netip.MustParsePrefix("10.1.0.1/24")},
	}
	for _, n := range bad {
		if err := s.Publish(ctx, n); err == nil {
			t.Errorf("Publish(%+v) accepted", n)
		}
	}
	publish(t, s, testNode(0))
	if err := s.Publish(ctx, testNode(1)); err == nil {
		t.Error("a store published a second name")
	}
	// The record deleted behind the store's back is put back.
	if _, err := s.cli.Delete(ctx, s.opts.Prefix+nodesDir+"node-a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "record restored", func() bool {
		r, err := s.cli.Get(ctx, s.opts.Prefix+nodesDir+"node-a")
		return err == nil && len(r.Kvs) == 1
	})
	s.Close()
	if err := s.Publish(ctx, testNode(0)); err != ErrClosed {
		t.Fatalf("Publish after Close: %v", err)
	}
}

func TestNodeQueueMerges(t *testing.T) {
	q := newNodeQueue()
	a, b := testNode(0), testNode(1)
	q.changed([]change[NodeRecord]{{name: a.Name, val: a}, {name: b.Name, val: b}}, nil)
	// b comes and goes before anyone looks: nothing to report.
	q.changed([]change[NodeRecord]{{name: b.Name, val: b, deleted: true}}, nil)
	if ev, ok := q.pop(); !ok || ev.Kind != EventPut || ev.Node != a {
		t.Fatalf("got %+v", ev)
	}
	if ev, ok := q.pop(); ok {
		t.Fatalf("got %+v, want nothing", ev)
	}
	// a, already reported, changes twice then goes: one delete.
	a2 := a
	a2.Port = 1
	q.changed([]change[NodeRecord]{{name: a.Name, val: a2}}, nil)
	q.changed([]change[NodeRecord]{{name: a.Name, val: a2, deleted: true}}, nil)
	if ev, ok := q.pop(); !ok || ev.Kind != EventDelete || ev.Node != a2 {
		t.Fatalf("got %+v", ev)
	}
	if _, ok := q.pop(); ok {
		t.Fatal("more events")
	}
}

// Close must not hang on an etcd that is gone; the lease then expires by
// itself.
func TestCloseWhileDown(t *testing.T) {
	t.Parallel()
	ep, stop, _ := startEtcd(t, false)
	s := openStore(t, testOptions(t, ep), "s")
	publish(t, s, testNode(0))
	w := s.Watch(t.Context())
	stop()
	eventually(t, 5*time.Second, "disconnected", func() bool { return !s.Connected() })
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %s with etcd down", d)
	}
	for range w { // closed by Close
	}
	if st := s.Status(); st.Connected || st.Published {
		t.Fatalf("status after Close: %+v", st)
	}
}
