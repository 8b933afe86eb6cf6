package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/vxdp/vxdp/identity"
)

func mustIPAM(t *testing.T, path, v4, v6 string, reserved ...string) *ipam {
	t.Helper()
	var p4, p6 netip.Prefix
	if v4 != "" {
		p4 = netip.MustParsePrefix(v4)
	}
	if v6 != "" {
		p6 = netip.MustParsePrefix(v6)
	}
	var res []netip.Addr
	for _, r := range reserved {
		res = append(res, netip.MustParseAddr(r))
	}
	m, dropped, err := newIPAM(path, p4, p6, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) > 0 {
		t.Fatalf("dropped leases: %+v", dropped)
	}
	return m
}

func TestIPAMAllocatesBothFamilies(t *testing.T) {
	m := mustIPAM(t, "", "10.1.1.0/24", "fd00:1:1::/64", "10.1.1.1", "fd00:1:1::1")
	l, err := alloc(m, "c1", "eth0", "cni-c1", "/run/netns/x", nil, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.IP != netip.MustParseAddr("10.1.1.2") || l.IP6 != netip.MustParseAddr("fd00:1:1::2") {
		t.Fatalf("first lease %s %s, want 10.1.1.2 fd00:1:1::2 (after the host address)", l.IP, l.IP6)
	}
	l2, err := alloc(m, "c2", "eth0", "cni-c2", "", nil, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l2.IP == l.IP || l2.IP6 == l.IP6 {
		t.Fatalf("two containers share an address: %+v %+v", l, l2)
	}
	if _, err := alloc(m, "c1", "eth0", "cni-c1b", "", nil, nil, 0, nil); err == nil {
		t.Fatal("a second ADD of one attachment was accepted")
	}
	if _, err := alloc(m, "c3", "eth0", "cni-c1", "", nil, nil, 0, nil); err == nil {
		t.Fatal("an endpoint name already leased was accepted")
	}
	// A second interface of one container is its own attachment.
	if _, err := alloc(m, "c1", "net1", "cni-c1-net1", "", nil, nil, 0, nil); err != nil {
		t.Fatal(err)
	}
}

func TestIPAMRequestedAddresses(t *testing.T) {
	m := mustIPAM(t, "", "10.0.1.0/24", "fd00::/120", "10.0.1.254")
	for _, tc := range []struct {
		want []string
		err  string
	}{
		{[]string{"10.0.1.1"}, ""}, // the host address may be elsewhere
		{[]string{"10.0.1.1"}, "in use"},
		{[]string{"10.0.1.254"}, "not a usable"},
		{[]string{"10.0.1.0"}, "not a usable"},
		{[]string{"10.0.1.255"}, "not a usable"},
		{[]string{"10.0.2.5"}, "not a usable"},
		{[]string{"10.0.1.7", "10.0.1.8"}, "two addresses of one family"},
		{[]string{"fd00::30", "10.0.1.30"}, ""},
	} {
		var want []netip.Addr
		for _, w := range tc.want {
			want = append(want, netip.MustParseAddr(w))
		}
		id := fmt.Sprint("c", strings.Join(tc.want, "-"), len(m.leases))
		l, err := alloc(m, id, "eth0", id, "", want, nil, 0, nil)
		if tc.err == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.want, err)
				continue
			}
			for _, w := range want {
				if w != l.IP && w != l.IP6 {
					t.Errorf("%v: got %s %s", tc.want, l.IP, l.IP6)
				}
			}
			if !l.IP6.IsValid() || !l.IP.IsValid() {
				t.Errorf("%v: a family left without an address: %+v", tc.want, l)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: error %v, want %q", tc.want, err, tc.err)
		}
	}
}

// Every usable address of a small CIDR is handed out once, then the pool
// says it is exhausted; a released address comes back only after the
// others (next-fit), and the IPv4 network and broadcast addresses never.
func TestIPAMExhaustionAndReuse(t *testing.T) {
	m := mustIPAM(t, "", "10.9.0.0/29", "", "10.9.0.1")
	var got []string
	for i := 0; ; i++ {
		l, err := alloc(m, fmt.Sprint("c", i), "eth0", fmt.Sprint("e", i), "", nil, nil, 0, nil)
		if errors.Is(err, errExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l.IP.String())
		if i > 8 {
			t.Fatal("no end to a /29")
		}
	}
	if want := "10.9.0.2 10.9.0.3 10.9.0.4 10.9.0.5 10.9.0.6"; strings.Join(got, " ") != want {
		t.Fatalf("allocated %v, want %s", got, want)
	}
	if err := m.release("c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := m.release("c1", "eth0"); err != nil {
		t.Fatalf("a second release: %v", err)
	}
	l, err := alloc(m, "c9", "eth0", "e9", "", nil, nil, 0, nil)
	if err != nil || l.IP != netip.MustParseAddr("10.9.0.3") {
		t.Fatalf("after a release: %s %v, want 10.9.0.3", l.IP, err)
	}
}

// Addresses held outside IPAM (endpoints of the file or the API) are
// never handed out.
func TestIPAMSkipsAddressesInUse(t *testing.T) {
	held := netip.MustParseAddr("10.1.1.2")
	busy := map[netip.Addr]bool{held: true}
	m := mustIPAM(t, "", "10.1.1.0/24", "", "10.1.1.1")
	l, err := alloc(m, "c", "eth0", "e", "", nil, busy, 0, nil)
	if err != nil || l.IP != netip.MustParseAddr("10.1.1.3") {
		t.Fatalf("got %s %v, want 10.1.1.3", l.IP, err)
	}
	if _, err := alloc(m, "d", "eth0", "f", "", []netip.Addr{held}, busy, 0, nil); err == nil {
		t.Fatal("an address held by an endpoint was leased on request")
	}
}

// Leases survive a new allocator on the same file (an agent restarted,
// also after kill -9: the file is written before allocate returns);
// leases outside the CIDRs now configured are dropped and reported.
func TestIPAMPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	m := mustIPAM(t, path, "10.1.1.0/24", "fd00:1:1::/64", "10.1.1.1", "fd00:1:1::1")
	a, _ := alloc(m, "c1", "eth0", "e1", "/run/netns/a", nil, nil, 0, nil)
	b, _ := alloc(m, "c2", "eth0", "e2", "/run/netns/b", nil, nil, 1000, []identity.ID{2000})
	if err := m.release("c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	m2 := mustIPAM(t, path, "10.1.1.0/24", "fd00:1:1::/64", "10.1.1.1", "fd00:1:1::1")
	if _, ok := m2.get("c1", "eth0"); ok {
		t.Fatal("a released lease came back")
	}
	got, ok := m2.get("c2", "eth0")
	if !ok || !reflect.DeepEqual(got, b) {
		t.Fatalf("lease after reload %+v, want %+v", got, b)
	}
	c, err := alloc(m2, "c3", "eth0", "e3", "", nil, nil, 0, nil)
	if err != nil || c.IP == b.IP || c.IP6 == b.IP6 {
		t.Fatalf("a reloaded allocator gave %+v beside %+v: %v", c, b, err)
	}
	_ = a

	// The node's IPv4 pod CIDR changed: its leases cannot be kept.
	m3, dropped, err := newIPAM(path, netip.MustParsePrefix("10.7.1.0/24"), netip.MustParsePrefix("fd00:1:1::/64"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 2 || len(m3.list()) != 0 {
		t.Fatalf("dropped %+v, kept %+v", dropped, m3.list())
	}

	// A torn or foreign file is an error, not an empty pool.
	os.WriteFile(path, []byte("{"), 0o600)
	if _, _, err := newIPAM(path, netip.MustParsePrefix("10.1.1.0/24"), netip.Prefix{}, nil); err == nil {
		t.Fatal("a corrupt lease file was accepted")
	}
}

// A lease that cannot be recorded is not handed out.
func TestIPAMSaveFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "ipam.json")
	m := mustIPAM(t, path, "10.1.1.0/24", "")
	os.WriteFile(filepath.Join(dir, "sub"), nil, 0o600) // a file where the directory would be
	if _, err := alloc(m, "c", "eth0", "e", "", nil, nil, 0, nil); err == nil {
		t.Fatal("allocate succeeded without recording the lease")
	}
	if len(m.list()) != 0 {
		t.Fatalf("leases after a failed save: %+v", m.list())
	}
}

// Many goroutines allocating and releasing at once never share an address.
func TestIPAMConcurrent(t *testing.T) {
	m := mustIPAM(t, filepath.Join(t.TempDir(), "ipam.json"), "10.1.0.0/22", "fd00:1::/64")
	var mu sync.Mutex
	owner := map[netip.Addr]string{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				id := fmt.Sprintf("g%d-%d", g, i)
				l, err := alloc(m, id, "eth0", id, "", nil, nil, 0, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, a := range []netip.Addr{l.IP, l.IP6} {
					if o, ok := owner[a]; ok {
						t.Errorf("%s given to %s and %s", a, o, id)
					}
					owner[a] = id
				}
				mu.Unlock()
				if i%2 == 0 {
					mu.Lock()
					delete(owner, l.IP)
					delete(owner, l.IP6)
					mu.Unlock()
					if err := m.release(id, "eth0"); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := len(m.list()); n != 8*20 {
		t.Fatalf("%d leases, want %d", n, 8*20)
	}
}

func TestLastAddr(t *testing.T) {
	for p, want := range map[string]string{"10.1.1.0/24": "10.1.1.255", "10.9.0.0/29": "10.9.0.7", "fd00::/120": "fd00::ff", "10.0.0.0/8": "10.255.255.255"} {
		if got := lastAddr(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("lastAddr(%s) = %s, want %s", p, got, want)
		}
	}
}

func alloc(m *ipam, containerID, ifname, endpoint, netns string, want []netip.Addr, busy map[netip.Addr]bool,
	id identity.ID, allowFrom []identity.ID) (lease, error) {
	return m.allocate(lease{ContainerID: containerID, Ifname: ifname, Endpoint: endpoint, Netns: netns, Identity: id, AllowFrom: allowFrom}, want, busy)
}
