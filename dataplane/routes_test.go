package dataplane_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

var (
	node2CIDR = netip.MustParsePrefix("10.1.2.0/24")
	taken     = netip.MustParsePrefix("10.99.0.0/24")
)

// kernelTable stands in for the node's main routing table as HostRoutes
// sees it: the routes the engine installed with their MTU, and prefixes
// someone else routes (taken), which it refuses as the agent's installer
// does.
type kernelTable struct {
	mu    sync.Mutex // protects the fields below
	mtu   map[netip.Prefix]int
	via   map[netip.Prefix]netip.Addr
	taken map[netip.Prefix]bool
	calls int
}

func newKernelTable(taken ...string) *kernelTable {
	k := &kernelTable{mtu: map[netip.Prefix]int{}, via: map[netip.Prefix]netip.Addr{}, taken: map[netip.Prefix]bool{}}
	for _, p := range taken {
		k.taken[netip.MustParsePrefix(p)] = true
	}
	return k
}

func (k *kernelTable) AddRoutes(rs []dataplane.HostRoute) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	for _, r := range rs {
		if k.taken[r.Prefix] {
			return &dataplane.RouteError{Prefix: r.Prefix, Err: fmt.Errorf("%w in the main table and vxdp did not install it", dataplane.ErrExists)}
		}
	}
	for _, r := range rs {
		if r.Via.IsValid() {
			k.via[r.Prefix] = r.Via
		} else {
			k.mtu[r.Prefix] = r.MTU
		}
	}
	return nil
}

func (k *kernelTable) DelRoute(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.mtu, p)
	delete(k.via, p)
	return nil
}

// take makes p someone else's route, as `ip route replace` by an operator
// would.
func (k *kernelTable) take(p netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.mtu, p)
	k.taken[p] = true
}

// routes is the table: prefix -> MTU, or "via ADDR".
func (k *kernelTable) routes() map[string]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]string{}
	for p, m := range k.mtu {
		out[p.String()] = fmt.Sprint(m)
	}
	for p, a := range k.via {
		out[p.String()] = "via " + a.String()
	}
	return out
}

// A node or VTEP whose prefix the kernel already routes for someone else
// is refused with the route's error naming it; a list with such a node is
// refused whole; nothing of a refused change is installed or published;
// what the engine installed it removes.
func TestRouteTakenRefusesNodeAndVTEP(t *testing.T) {
	checkGoroutines(t)
	k := newKernelTable(taken.String())
	eng, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), TunnelPort: 8472, UnderlayMTU: 1500},
		nil, []packetio.Underlay{fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16)}, nil, nil, k)
	must(t, err)
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	good := dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: node2CIDR}
	bad := dataplane.NodeSpec{Name: "node9", IP: netip.MustParseAddr("192.0.2.9"), PodCIDR: taken}

	err = eng.AddNodes([]dataplane.NodeSpec{good, bad})
	var re *dataplane.RouteError
	if !errors.Is(err, dataplane.ErrExists) || !errors.As(err, &re) || re.Prefix != taken ||
		!strings.HasPrefix(err.Error(), "node node9: route 10.99.0.0/24: ") {
		t.Fatalf("AddNodes with a taken prefix: %v", err)
	}
	if len(eng.Nodes()) != 0 || len(k.routes()) != 0 {
		t.Fatalf("a refused list left nodes %v, routes %v", eng.Nodes(), k.routes())
	}
	must(t, eng.AddNode(good))
	if err := eng.AddNode(bad); !errors.Is(err, dataplane.ErrExists) || !strings.Contains(err.Error(), "node node9") {
		t.Fatalf("AddNode with a taken prefix: %v", err)
	}
	for _, f := range eng.FIB() {
		if f.Prefix == taken {
			t.Fatalf("refused node in the FIB: %+v", f)
		}
	}

	free := netip.MustParsePrefix("10.9.1.0/24")
	vtep := func(p netip.Prefix) dataplane.VTEPSpec {
		return dataplane.VTEPSpec{CIDR: p, Endpoint: netip.MustParseAddr("192.0.2.36"), MAC: encap.MAC{0x82, 0, 0, 0, 0, 1}}
	}
	must(t, eng.SetVTEPs([]dataplane.VTEPSpec{vtep(free)}))
	err = eng.SetVTEPs([]dataplane.VTEPSpec{vtep(free), vtep(taken)})
	if !errors.Is(err, dataplane.ErrExists) || !strings.HasPrefix(err.Error(), "vtep 10.99.0.0/24: route 10.99.0.0/24: ") {
		t.Fatalf("SetVTEPs with a taken prefix: %v", err)
	}
	if vs := eng.VTEPs(); len(vs) != 1 || vs[0].CIDR != free {
		t.Fatalf("a refused VTEP table replaced the old one: %v", vs)
	}
	want := map[string]string{"10.1.2.0/24": "1450", "10.9.1.0/24": "1450"}
	if got := k.routes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	must(t, eng.DelNode("node2"))
	must(t, eng.SetVTEPs(nil))
	if got := k.routes(); len(got) != 0 {
		t.Fatalf("routes left after the node and VTEP went: %v", got)
	}
}
