package dataplane_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
)

func node(i int) dataplane.NodeSpec {
	return dataplane.NodeSpec{
		Name:    fmt.Sprintf("n%d", i),
		IP:      netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)}),
		PodCIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(64 + i>>8), byte(i), 0}), 24),
	}
}

// AddNodes takes a list whole or not at all, checks its members against
// each other as well as against the nodes there are, and leaves every
// node reachable.
func TestAddNodes(t *testing.T) {
	n := newTestNode(t, fake.NewUnderlay("under", netip.AddrPortFrom(node1IP, 8472), 16), node1IP, "10.1.1.0/24", nil)
	var batch []dataplane.NodeSpec
	for i := 1; i <= 1000; i++ {
		batch = append(batch, node(i))
	}
	must(t, n.eng.AddNodes(batch))
	if got := len(n.eng.Nodes()); got != 1000 {
		t.Fatalf("%d nodes, want 1000", got)
	}
	// Each refused list leaves the table as it was.
	for _, c := range []struct {
		name string
		list []dataplane.NodeSpec
		want string
	}{
		{"name taken", []dataplane.NodeSpec{node(1001), {Name: "n5", IP: netip.MustParseAddr("10.201.0.1"), PodCIDR: netip.MustParsePrefix("10.99.0.0/24")}}, "node n5"},
		{"same name twice", []dataplane.NodeSpec{node(1001), node(1001)}, "node n1001"},
		{"ip taken", []dataplane.NodeSpec{node(1001), {Name: "x", IP: node(7).IP, PodCIDR: netip.MustParsePrefix("10.99.0.0/24")}}, "used by node n7"},
		{"inside an existing cidr", []dataplane.NodeSpec{{Name: "x", IP: netip.MustParseAddr("10.201.0.1"), PodCIDR: netip.MustParsePrefix("10.64.9.128/25")}}, "overlaps node n9"},
		{"around existing cidrs", []dataplane.NodeSpec{{Name: "x", IP: netip.MustParseAddr("10.201.0.1"), PodCIDR: netip.MustParsePrefix("10.64.0.0/16")}}, "node x pod cidr 10.64.0.0/16 overlaps"},
		{"overlap within the list", []dataplane.NodeSpec{
			{Name: "x", IP: netip.MustParseAddr("10.201.0.1"), PodCIDR: netip.MustParsePrefix("10.99.0.0/16")},
			{Name: "y", IP: netip.MustParseAddr("10.201.0.2"), PodCIDR: netip.MustParsePrefix("10.99.7.0/24")}}, "overlaps node x"},
		{"own pod cidr", []dataplane.NodeSpec{{Name: "x", IP: netip.MustParseAddr("10.201.0.1"), PodCIDR: netip.MustParsePrefix("10.1.1.0/25")}}, "this node's"},
	} {
		err := n.eng.AddNodes(c.list)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.want)
		}
		if !errors.Is(err, dataplane.ErrExists) && !errors.Is(err, dataplane.ErrInvalid) {
			t.Errorf("%s: %v is neither ErrExists nor ErrInvalid", c.name, err)
		}
		if got := len(n.eng.Nodes()); got != 1000 {
			t.Fatalf("%s: %d nodes after a refused list, want 1000", c.name, got)
		}
	}
	// A removal list with an unknown name removes nothing; a good one
	// removes all of its nodes.
	if err := n.eng.DelNodes([]string{"n1", "nope"}); !errors.Is(err, dataplane.ErrNotFound) || len(n.eng.Nodes()) != 1000 {
		t.Fatalf("DelNodes with an unknown name: %v, %d nodes left", err, len(n.eng.Nodes()))
	}
	must(t, n.eng.DelNodes([]string{"n2", "n3"}))
	if got := len(n.eng.Nodes()); got != 998 {
		t.Fatalf("%d nodes after removing two", got)
	}
	// Traffic reaches the first and the last of the batch.
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "p", IP: pod1, Netns: "/x"}))
	pod := n.pod(t, "p")
	for _, i := range []int{1, 1000} {
		dst := node(i).PodCIDR.Addr().Next()
		pod.Inject(udpPacket(pod1, dst, 1000, 2000, 64, false, []byte("x")))
		got := n.under.WaitSent(1, 2*time.Second)
		if len(got) != 1 || got[0].Meta.Remote.Addr() != node(i).IP {
			t.Fatalf("packet to %s: %d sent, want one to node %s", dst, len(got), node(i).IP)
		}
	}
}

// fullUnderlay refuses every payload for want of room, as an AF_XDP queue
// without a free TX frame does, and says so.
type fullUnderlay struct {
	*fake.Underlay
	full atomic.Uint64
}

func (u *fullUnderlay) Send(bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	u.full.Add(uint64(len(bufs)))
	return 0, nil
}

func (u *fullUnderlay) TXQueueFull() uint64 { return u.full.Load() }

// What a driver drops because its queue is full counts as queue_full, not
// as tx_error.
func TestQueueFullDrops(t *testing.T) {
	u := &fullUnderlay{Underlay: fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16)}
	pod := fake.New("a", 8)
	eng, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"),
		TunnelPort: 8472, UnderlayMTU: 1500}, nil, []packetio.Underlay{u}, nil,
		func(dataplane.EndpointSpec, int) (packetio.Device, error) { return pod, nil }, nil)
	must(t, err)
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	must(t, eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
	must(t, eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x"}))
	for i := range 3 {
		pod.Inject(udpPacket(pod1, pod2, uint16(1000+i), 2000, 64, false, nil))
	}
	waitDrop(t, eng, dataplane.DropQueueFull, 3)
	st := eng.Stats()
	if st.Drops["queue_full"] != 3 || st.Drops["tx_error"] != 0 || st.TotalDrops != 3 {
		t.Fatalf("drops %v total %d, want 3 queue_full and no tx_error", st.Drops, st.TotalDrops)
	}
}

// No pod or VTEP CIDR may take an underlay address or the underlay subnet,
// and no node's address may lie in a pod CIDR, whichever way it comes in;
// a refused change installs no host route.
func TestNodesCannotTakeUnderlay(t *testing.T) {
	routes := &hookRoutes{}
	u := fake.NewUnderlay("under", netip.AddrPortFrom(node1IP, 8472), 16)
	eng, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"),
		UnderlayPrefix: netip.MustParsePrefix("192.0.2.0/24"), TunnelPort: 8472, UnderlayMTU: 1500},
		nil, []packetio.Underlay{u}, nil, nil, routes)
	must(t, err)
	t.Cleanup(func() { eng.Close() })
	must(t, eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
	vmCIDR, vm := netip.MustParsePrefix("10.9.1.0/24"), netip.MustParseAddr("198.51.100.36")
	must(t, eng.SetVTEPs([]dataplane.VTEPSpec{{CIDR: vmCIDR, Endpoint: vm, MAC: encap.MAC{0x82, 0, 0, 0, 0, 1}}}))
	added := routes.added
	node := func(ip, cidr string) dataplane.NodeSpec {
		return dataplane.NodeSpec{Name: "x", IP: netip.MustParseAddr(ip), PodCIDR: netip.MustParsePrefix(cidr)}
	}
	for _, tt := range []struct {
		name string
		n    dataplane.NodeSpec
		want string
	}{
		{"the underlay subnet, this node inside", node("203.0.113.9", "192.0.2.0/24"), "contains this node's address"},
		{"part of the underlay subnet", node("203.0.113.9", "192.0.2.128/25"), "overlaps the underlay subnet"},
		{"its own address", node("203.0.113.9", "203.0.113.0/24"), "inside node x's pod cidr"},
		{"inside another node's pods", node("10.1.2.7", "10.1.3.0/24"), "inside node node2's pod cidr"},
		{"a wide prefix over the nodes", node("203.0.113.9", "192.0.0.0/16"), "contains this node's address"},
		{"a vtep's address", node("203.0.113.9", "198.51.100.0/24"), "contains vtep endpoint"},
	} {
		err := eng.AddNode(tt.n)
		if !errors.Is(err, dataplane.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", tt.name, err, tt.want)
		}
	}
	for _, v := range []dataplane.VTEPSpec{
		{CIDR: netip.MustParsePrefix("192.0.2.0/28"), Endpoint: vm, MAC: encap.MAC{0x82, 0, 0, 0, 0, 1}},
		{CIDR: netip.MustParsePrefix("192.0.2.128/25"), Endpoint: vm, MAC: encap.MAC{0x82, 0, 0, 0, 0, 1}},
		{CIDR: netip.MustParsePrefix("198.51.100.0/24"), Endpoint: vm, MAC: encap.MAC{0x82, 0, 0, 0, 0, 1}},
		{CIDR: vmCIDR, Endpoint: netip.MustParseAddr("10.1.2.9"), MAC: encap.MAC{0x82, 0, 0, 0, 0, 1}},
	} {
		if err := eng.SetVTEPs([]dataplane.VTEPSpec{v}); !errors.Is(err, dataplane.ErrInvalid) {
			t.Errorf("vtep %s at %s: %v, want ErrInvalid", v.CIDR, v.Endpoint, err)
		}
	}
	if n := len(eng.Nodes()); n != 1 || routes.added != added || len(eng.VTEPs()) != 1 {
		t.Fatalf("refused changes left %d nodes, %d new routes, %d vteps", n, routes.added-added, len(eng.VTEPs()))
	}
}
