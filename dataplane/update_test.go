package dataplane_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// updateNodes is how many remote nodes the update adds, a pod CIDR route
// and a host route each.
const updateNodes = 10_000

// hookRoutes stands in for the kernel's routing table. AddNodes installs
// a route per node while it adds them, so onAdd, if set, runs in the
// middle of the update, with the count of routes added so far.
type hookRoutes struct {
	added int
	onAdd func(added int)
}

func (r *hookRoutes) AddRoutes(rs []dataplane.HostRoute) error {
	for range rs {
		r.added++
		if r.onAdd != nil {
			r.onAdd(r.added)
		}
	}
	return nil
}

func (r *hookRoutes) DelRoute(p netip.Prefix) error { return nil }

// streamCheck returns what is wrong with pkt, the tunnel payload from m
// that should carry packet seq of the stream from pod1 (identity 4242) to
// pod2 on node2, or "" if nothing is.
func streamCheck(pkt []byte, m packetio.Meta, seq uint64) string {
	if m.Remote.Addr() != node1IP || m.LocalPort != 8472 {
		return fmt.Sprintf("tunnel payload from %s to port %d, want from %s to port 8472", m.Remote, m.LocalPort, node1IP)
	}
	vx := encap.VXLAN(pkt)
	if len(vx) < encap.VXLANLen+encap.EthernetLen+28+8 {
		return fmt.Sprintf("tunnel payload of %d bytes is too short", len(vx))
	}
	if vx.VNI() != 4242 {
		return fmt.Sprintf("packet of the stream with VNI %d, want 4242", vx.VNI())
	}
	inner := []byte(vx[encap.VXLANLen+encap.EthernetLen:])
	ip := encap.IPv4(inner)
	if ip.SourceAddr() != pod1 || ip.DestinationAddr() != pod2 {
		return fmt.Sprintf("inner packet %s -> %s, want %s -> %s", ip.SourceAddr(), ip.DestinationAddr(), pod1, pod2)
	}
	if got := binary.BigEndian.Uint64(inner[28:]); got != seq {
		return fmt.Sprintf("packet %d of the stream arrived where %d was due: lost or reordered", got, seq)
	}
	return ""
}

// TestNodeUpdateDoesNotBlockForwarding adds 10,000 remote nodes in one
// AddNodes call while a pod streams packets to a node that was there
// before. The stream must go on while the nodes are added and arrive at
// that node whole and in order; afterwards the new nodes are reachable.
func TestNodeUpdateDoesNotBlockForwarding(t *testing.T) {
	checkGoroutines(t)
	hub := fake.NewHub()
	under := hub.Attach(netip.AddrPortFrom(node1IP, 8472), "under", 64)
	// node2's end of the underlay, read by the test: whatever the engine
	// sends elsewhere ends up in hub.Lost.
	peer := hub.Attach(netip.AddrPortFrom(node2IP, 8472), "node2", 64)
	host := fake.New("vxdp_host", 16)
	var pod *fake.Device
	factory := func(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
		pod = fake.New(s.Name, 8)
		return pod, nil
	}
	routes := &hookRoutes{}
	eng, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"),
		ClusterCIDR: cluster, TunnelPort: 8472, UnderlayMTU: 1500}, nil, []packetio.Underlay{under}, host, factory, routes)
	if err != nil {
		t.Fatal(err)
	}
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	must(t, eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
	must(t, eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x", Identity: 4242}))

	// The stream goes in bursts, each sent once the one before has
	// arrived at node2, so the packets counted as delivered are those the
	// engine forwarded, not those queued at the pod.
	const burst = 16
	var sent, delivered atomic.Uint64
	var stop atomic.Bool
	var failure atomic.Pointer[string]
	fail := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		failure.CompareAndSwap(nil, &s)
	}
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		payload := make([]byte, 8)
		bufs, sizes, meta := make([][]byte, burst), make([]int, burst), make([]packetio.Meta, burst)
		for i := range bufs {
			bufs[i] = make([]byte, 256)
		}
		for !stop.Load() {
			for range burst {
				binary.BigEndian.PutUint64(payload, sent.Add(1))
				pod.Inject(udpPacket(pod1, pod2, 1000, 2000, 64, false, payload))
			}
			for delivered.Load() < sent.Load() {
				n, err := peer.Receive(bufs, sizes, meta, 0)
				for i := range n {
					if msg := streamCheck(bufs[i][:sizes[i]], meta[i], delivered.Load()+1); msg != "" {
						fail("%s", msg)
						return
					}
					delivered.Add(1)
				}
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						fail("read at node2: %v", err)
					}
					return
				}
			}
		}
	}()
	// lost says where packets of the stream went astray, if any did: a
	// packet dropped or sent anywhere but node2 never arrives there.
	lost := func() string {
		for _, r := range dataplane.DropReasons() {
			if d := eng.Drops(r); d != 0 {
				return fmt.Sprintf("%d packets dropped (%s)", d, r)
			}
		}
		if l := hub.Lost(); len(l) != 0 {
			return fmt.Sprintf("%d packets sent to underlay addresses other than node2's", len(l))
		}
		if s := host.Sent(); len(s) != 0 {
			return fmt.Sprintf("%d packets sent to the host device", len(s))
		}
		return ""
	}
	// stopStream stops the stream once its burst is complete, or after
	// wait closes node2's end so that an incomplete one does not hang the
	// test.
	stopStream := func(wait time.Duration) {
		stop.Store(true)
		select {
		case <-streamDone:
		case <-time.After(wait):
			peer.Close()
			<-streamDone
		}
	}
	defer stopStream(0)
	// waitDelivered waits until the stream has delivered want packets.
	// The deadline only keeps a broken engine from hanging the test.
	waitDelivered := func(what string, want uint64) string {
		deadline := time.Now().Add(10 * time.Second)
		for delivered.Load() < want {
			if f := failure.Load(); f != nil {
				return *f
			}
			if l := lost(); l != "" {
				return fmt.Sprintf("%s: %s", what, l)
			}
			if time.Now().After(deadline) {
				return fmt.Sprintf("%s: %d packets of the stream forwarded, want %d", what, delivered.Load(), want)
			}
			time.Sleep(100 * time.Microsecond)
		}
		return ""
	}
	if msg := waitDelivered("before the update", 2*burst); msg != "" {
		t.Fatal(msg)
	}

	// AddNodes installs the new nodes' kernel routes once it has checked
	// and taken them, and rebuilds and publishes the table after the
	// last. At the first route the update is under way and none of it is
	// published: the stream must get on there, which the hook waits for.
	// It must get on while the table is rebuilt and published too; a
	// stream held up for all of that would forward at most the burst in
	// flight.
	const minDuring = 4 * burst
	var last uint64
	var stalled string
	routes.added = 0
	routes.onAdd = func(added int) {
		switch added {
		case 1:
			if msg := waitDelivered("stream stalled while AddNodes was in progress", delivered.Load()+minDuring); msg != "" {
				stalled = msg
			}
		case updateNodes:
			last = delivered.Load()
		}
	}
	nodes := make([]dataplane.NodeSpec, updateNodes)
	for i := range nodes {
		nodes[i] = node(i + 1)
	}
	before := delivered.Load()
	start := time.Now()
	must(t, eng.AddNodes(nodes))
	elapsed := time.Since(start)
	after := delivered.Load()
	routes.onAdd = nil
	t.Logf("AddNodes of %d nodes took %v; %d packets of the stream forwarded meanwhile, %d of them while the table was rebuilt and published",
		updateNodes, elapsed, after-before, after-last)
	if stalled != "" {
		t.Fatal(stalled)
	}
	if routes.added != updateNodes {
		t.Fatalf("AddNodes installed %d routes, want %d", routes.added, updateNodes)
	}
	if after-before < minDuring || after-last < minDuring {
		t.Fatalf("%d packets of the stream forwarded while %d nodes were added, %d of them while the table was rebuilt and published; want at least %d in each",
			after-before, updateNodes, after-last, minDuring)
	}
	if msg := waitDelivered("after the update", after+2*burst); msg != "" {
		t.Fatal(msg)
	}
	stopStream(10 * time.Second)
	if f := failure.Load(); f != nil {
		t.Fatal(*f)
	}
	if l := lost(); l != "" {
		t.Fatal(l)
	}
	if s, d := sent.Load(), delivered.Load(); s != d {
		t.Fatalf("%d packets of the stream sent, %d forwarded", s, d)
	}

	// The new nodes are there and reachable.
	if got := len(eng.Nodes()); got != updateNodes+1 {
		t.Fatalf("%d nodes, want %d", got, updateNodes+1)
	}
	// The hub has no port for them: what is sent to them is kept as lost.
	for k, i := range []int{1, updateNodes / 2, updateNodes} {
		dst := node(i).PodCIDR.Addr().Next()
		pod.Inject(udpPacket(pod1, dst, 1000, 2000, 64, false, []byte("x")))
		deadline := time.Now().Add(2 * time.Second)
		for len(hub.Lost()) <= k && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		l := hub.Lost()
		if len(l) != k+1 || l[k].Meta.Remote.Addr() != node(i).IP {
			t.Fatalf("packet to %s: %d sent, want one to node %s", dst, len(l)-k, node(i).IP)
		}
	}
}
