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

// mtuNode is an engine on fakes that records the MTU each endpoint's
// device was made with.
type mtuNode struct {
	eng    *dataplane.Engine
	under  *fake.Underlay
	host   *fake.Device
	routes *kernelTable

	mu   sync.Mutex
	pods map[string]*fake.Device
	made map[string]int // endpoint -> MTU given to the factory
}

func newMTUNode(t *testing.T, routes *kernelTable, native bool) *mtuNode {
	t.Helper()
	checkGoroutines(t)
	n := &mtuNode{under: fake.NewUnderlay("u", netip.AddrPortFrom(node1IP, 8472), 16), host: fake.New("vxdp_host", 16),
		routes: routes, pods: map[string]*fake.Device{}, made: map[string]int{}}
	factory := func(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
		d := fake.New(s.Name, 8)
		n.mu.Lock()
		n.pods[s.Name], n.made[s.Name] = d, mtu
		n.mu.Unlock()
		return d, nil
	}
	eng, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"),
		TunnelPort: 8472, UnderlayMTU: 1500, Native: native, AutoDirectNodeRoutes: native},
		nil, []packetio.Underlay{n.under}, n.host, factory, routes)
	must(t, err)
	n.eng = eng
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	return n
}

func (n *mtuNode) pod(name string) (*fake.Device, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods[name], n.made[name]
}

// After the underlay's MTU changed, the engine answers with the new
// fragmentation-needed MTU, pods, host device and host routes get the new
// MTUs, endpoints made afterwards get the new route MTU, and a larger MTU
// gives the workers buffers that hold what the pods may now send.
func TestSetUnderlayMTU(t *testing.T) {
	k := newKernelTable()
	n := newMTUNode(t, k, false)
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: node2CIDR}))
	must(t, n.eng.SetVTEPs([]dataplane.VTEPSpec{{CIDR: netip.MustParsePrefix("10.9.1.0/24"),
		Endpoint: netip.MustParseAddr("192.0.2.36"), MAC: encap.MAC{0x82, 0, 0, 0, 0, 1}}}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x"}))
	a, made := n.pod("a")
	if made != 1450 || n.eng.RouteMTU() != 1450 || n.eng.UnderlayMTU() != 1500 {
		t.Fatalf("before: pod made with %d, route mtu %d, underlay %d", made, n.eng.RouteMTU(), n.eng.UnderlayMTU())
	}

	if err := n.eng.SetUnderlayMTU(500); !errors.Is(err, dataplane.ErrInvalid) || n.eng.UnderlayMTU() != 1500 {
		t.Fatalf("SetUnderlayMTU(500): %v, underlay mtu now %d", err, n.eng.UnderlayMTU())
	}
	must(t, n.eng.SetUnderlayMTU(1400))
	if n.eng.RouteMTU() != 1350 || n.eng.UnderlayMTU() != 1400 || a.MTU() != 1350 || n.host.MTU() != 1400 {
		t.Fatalf("after 1400: route mtu %d, underlay %d, pod %d, host %d; want 1350, 1400, 1350, 1400",
			n.eng.RouteMTU(), n.eng.UnderlayMTU(), a.MTU(), n.host.MTU())
	}
	want := map[string]string{"10.1.2.0/24": "1350", "10.9.1.0/24": "1350"}
	if got := k.routes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	if eps := n.eng.Endpoints(); eps[0].MTU != 1350 {
		t.Fatalf("endpoint list shows mtu %d", eps[0].MTU)
	}
	if st := n.eng.Stats(); st.RouteMTU != 1350 || st.UnderlayMTU != 1400 {
		t.Fatalf("stats show route mtu %d, underlay %d", st.RouteMTU, st.UnderlayMTU)
	}
	// 1350 bytes fit the tunnel; one more with DF is answered with the new
	// MTU.
	a.Inject(udpPacket(pod1, pod2, 1, 2, 64, true, make([]byte, 1350-28)))
	if d := waitSentOne(t, n.under); len(d.Payload) != 1350+innerIP {
		t.Fatalf("1350-byte packet sent as %d bytes", len(d.Payload))
	}
	a.Inject(udpPacket(pod1, pod2, 1, 2, 64, true, make([]byte, 1351-28)))
	if typ, code, mtu, _ := icmpOf(t, waitOne(t, a)); typ != 3 || code != 4 || mtu != 1350 {
		t.Fatalf("1351-byte DF packet: ICMP type %d code %d mtu %d, want 3/4 mtu 1350", typ, code, mtu)
	}
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP: pod1b, Netns: "/x"}))
	if _, made := n.pod("b"); made != 1350 {
		t.Fatalf("endpoint added after the change made with mtu %d", made)
	}

	// Jumbo frames: a pod's 8950-byte packet is read whole and carried.
	must(t, n.eng.SetUnderlayMTU(9000))
	a.Inject(udpPacket(pod1, pod2, 1, 2, 64, true, make([]byte, 8950-28)))
	if d := waitSentOne(t, n.under); len(d.Payload) != 8950+innerIP {
		t.Fatalf("8950-byte packet sent as %d bytes", len(d.Payload))
	}
}

// What cannot be applied is reported and skipped, the rest is done: a pod
// whose device is gone, a route someone else took meanwhile.
func TestSetUnderlayMTUPartly(t *testing.T) {
	k := newKernelTable()
	n := newMTUNode(t, k, false)
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: node2CIDR}))
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node3", IP: netip.MustParseAddr("192.0.2.3"), PodCIDR: netip.MustParsePrefix("10.1.3.0/24")}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x"}))
	must(t, n.eng.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP: pod1b, Netns: "/x"}))
	a, _ := n.pod("a")
	b, _ := n.pod("b")
	a.Close()
	k.take(node2CIDR)

	err := n.eng.SetUnderlayMTU(1400)
	if err == nil || !strings.Contains(err.Error(), "endpoint a mtu 1350") || !strings.Contains(err.Error(), "route 10.1.2.0/24") {
		t.Fatalf("SetUnderlayMTU with a device gone and a route taken: %v", err)
	}
	if b.MTU() != 1350 || n.host.MTU() != 1400 || n.eng.RouteMTU() != 1350 {
		t.Fatalf("the rest not done: pod b %d, host %d, route mtu %d", b.MTU(), n.host.MTU(), n.eng.RouteMTU())
	}
	if got := k.routes(); got["10.1.3.0/24"] != "1350" || got["10.1.2.0/24"] != "" {
		t.Fatalf("routes %v: want node3's at 1350 and node2's left to its new owner", got)
	}
}

// Native routing: pods get the whole underlay MTU; the routes to the nodes
// carry none and are not touched.
func TestSetUnderlayMTUNative(t *testing.T) {
	k := newKernelTable()
	n := newMTUNode(t, k, true)
	must(t, n.eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: node2CIDR}))
	calls := k.calls
	must(t, n.eng.SetUnderlayMTU(1400))
	if n.eng.RouteMTU() != 1400 || k.calls != calls {
		t.Fatalf("native: route mtu %d, %d route calls", n.eng.RouteMTU(), k.calls-calls)
	}
	if got := k.routes(); got["10.1.2.0/24"] != "via 192.0.2.2" {
		t.Fatalf("routes %v", got)
	}
}
