package kvstore

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func nextSet(t *testing.T, ch <-chan []VTEPRecord) []VTEPRecord {
	t.Helper()
	select {
	case set, ok := <-ch:
		if !ok {
			t.Fatal("VTEP channel closed")
		}
		return set
	case <-time.After(5 * time.Second):
		t.Fatal("no VTEP set within 5s")
	}
	return nil
}

// waitSet reads sets until one has n records; a reader may see fewer
// intermediate sets than there were changes.
func waitSet(t *testing.T, ch <-chan []VTEPRecord, n int) []VTEPRecord {
	t.Helper()
	for {
		if set := nextSet(t, ch); len(set) == n {
			return set
		}
	}
}

func TestVTEPs(t *testing.T) {
	t.Parallel()
	ep, _, _ := startEtcd(t, false)
	o := testOptions(t, ep)
	a := openStore(t, o, "a")
	b := openStore(t, o, "b")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	wa := a.WatchVTEPs(ctx)
	if set := nextSet(t, wa); len(set) != 0 {
		t.Fatalf("initial set %v", set)
	}
	v1 := VTEPRecord{CIDR: netip.MustParsePrefix("10.2.0.0/16"), Endpoint: netip.MustParseAddr("192.0.2.50"), MAC: "02:AA:BB:CC:DD:01"}
	v2 := VTEPRecord{CIDR: netip.MustParsePrefix("10.1.0.0/16"), Endpoint: netip.MustParseAddr("192.0.2.51"), MAC: "02-aa-bb-cc-dd-02"}
	for _, v := range []VTEPRecord{v1, v2} {
		if err := b.PutVTEP(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	set := waitSet(t, wa, 2)
	// Sorted by CIDR, MACs in one spelling.
	if set[0].CIDR != v2.CIDR || set[0].MAC != "02:aa:bb:cc:dd:02" || set[1].MAC != "02:aa:bb:cc:dd:01" {
		t.Fatalf("set %+v", set)
	}
	// A late watcher starts from the whole set. (b's own copy may not
	// have caught up with its writes yet: Put returns when etcd has them.)
	eventually(t, 5*time.Second, "b's copy complete", func() bool { return len(b.VTEPs()) == 2 })
	wb := b.WatchVTEPs(ctx)
	if set := nextSet(t, wb); len(set) != 2 {
		t.Fatalf("late watcher's first set %v", set)
	}

	v1.Endpoint = netip.MustParseAddr("192.0.2.60")
	if err := a.PutVTEP(ctx, v1); err != nil {
		t.Fatal(err)
	}
	set = nextSet(t, wb)
	if len(set) != 2 || set[1].Endpoint != v1.Endpoint {
		t.Fatalf("after update %+v", set)
	}
	if err := a.DeleteVTEP(ctx, v2.CIDR); err != nil {
		t.Fatal(err)
	}
	set = waitSet(t, wb, 1)
	if set[0].CIDR != v1.CIDR {
		t.Fatalf("after delete %+v", set)
	}
	waitSet(t, wa, 1)
	if got := a.VTEPs(); len(got) != 1 || got[0].Endpoint != v1.Endpoint {
		t.Fatalf("VTEPs() = %+v", got)
	}

	for _, bad := range []VTEPRecord{
		{CIDR: netip.MustParsePrefix("10.3.0.1/16"), Endpoint: v1.Endpoint, MAC: v1.MAC},
		{CIDR: netip.MustParsePrefix("fd00::/64"), Endpoint: v1.Endpoint, MAC: v1.MAC},
		{CIDR: netip.MustParsePrefix("10.3.0.0/16"), MAC: v1.MAC},
		{CIDR: netip.MustParsePrefix("10.3.0.0/16"), Endpoint: v1.Endpoint, MAC: "nope"},
		{CIDR: netip.MustParsePrefix("10.3.0.0/16"), Endpoint: v1.Endpoint, MAC: "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"},
	} {
		if err := a.PutVTEP(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutVTEP(%+v) = %v, want invalid", bad, err)
		}
	}

	// Closing the store ends its watchers.
	a.Close()
	eventually(t, 5*time.Second, "watch closed", func() bool {
		select {
		case _, ok := <-wa:
			return !ok
		default:
			return false
		}
	})
}

// A VTEP record's endpoint is an underlay address of either family; its
// CIDR stays IPv4.
func TestVTEPRecordFamilies(t *testing.T) {
	mac := "02:aa:bb:cc:dd:01"
	for _, tt := range []struct {
		cidr, endpoint string
		ok             bool
	}{
		{"10.2.0.0/16", "192.0.2.50", true},
		{"10.2.0.0/16", "2001:db8::50", true},
		{"10.2.0.0/16", "fe80::50%eth0", false},
		{"10.2.0.0/16", "::ffff:192.0.2.50", false},
		{"10.2.0.0/16", "::", false},
		{"2001:db8:5::/64", "2001:db8::50", false},
	} {
		v := VTEPRecord{CIDR: netip.MustParsePrefix(tt.cidr), Endpoint: netip.MustParseAddr(tt.endpoint), MAC: mac}
		err := v.normalize()
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s via %s: %v, want ok %v", tt.cidr, tt.endpoint, err, tt.ok)
		}
	}
}
