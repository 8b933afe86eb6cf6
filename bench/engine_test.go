package bench

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// sinkDevice counts what is written to it.
type sinkDevice struct {
	packets atomic.Uint64
	closer
}

// closer is the Close of the fake devices: it closes closed, once.
type closer struct{ closed chan struct{} }

func newCloser() closer { return closer{make(chan struct{})} }

func (c closer) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

func (d *sinkDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	<-d.closed
	return 0, net.ErrClosed
}
func (d *sinkDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.packets.Add(uint64(len(bufs)))
	return len(bufs), nil
}
func (d *sinkDevice) BatchSize() int { return 64 }
func (d *sinkDevice) Name() string   { return "sink" }

// BenchmarkPodToPod sends UDP packets from a pod on node1 to a pod on
// node2 through both engines and the in-memory underlay, and reports
// delivered packets per second.
func BenchmarkPodToPod(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(map[int]string{64: "64B", 1400: "1400B"}[size], func(b *testing.B) {
			hub := fake.NewHub()
			n1, n2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
			src := fake.New("src", 64)
			dst := &sinkDevice{closer: newCloser()}
			mk := func(ip netip.Addr, cidr string, dev packetio.Device) *dataplane.Engine {
				e, err := dataplane.New(dataplane.Config{NodeIP: ip, PodCIDR: netip.MustParsePrefix(cidr), TunnelPort: 8472, UnderlayMTU: 1500},
					nil, []packetio.Underlay{hub.Attach(netip.AddrPortFrom(ip, 8472), ip.String(), 64)}, nil,
					func(dataplane.EndpointSpec, int) (packetio.Device, error) { return dev, nil }, nil)
				if err != nil {
					b.Fatal(err)
				}
				e.Start()
				return e
			}
			e1 := mk(n1, "10.1.1.0/24", src)
			e2 := mk(n2, "10.1.2.0/24", dst)
			defer e1.Close()
			defer e2.Close()
			must(b, e1.AddNode(dataplane.NodeSpec{Name: "n2", IP: n2, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
			must(b, e2.AddNode(dataplane.NodeSpec{Name: "n1", IP: n1, PodCIDR: netip.MustParsePrefix("10.1.1.0/24")}))
			must(b, e1.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: netip.MustParseAddr("10.1.1.10")}))
			must(b, e2.AddEndpoint(dataplane.EndpointSpec{Name: "b", IP: netip.MustParseAddr("10.1.2.20")}))

			pkt := pkttest.UDP4(netip.MustParseAddrPort("10.1.1.10:1"), netip.MustParseAddrPort("10.1.2.20:2"), make([]byte, size-28))
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				src.Inject(pkt)
			}
			deadline := time.Now().Add(time.Minute)
			for dst.packets.Load() < uint64(b.N) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Microsecond)
			}
			b.StopTimer()
			if got := dst.packets.Load(); got != uint64(b.N) {
				b.Fatalf("delivered %d of %d", got, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
		})
	}
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// The scale benchmarks model one node of a large cluster: scaleEndpoints
// local pods in 10.1.1.0/24 and up to scaleNodes remote nodes, node i at
// 10.200.0.0+2+i with pod CIDR 10.64.0.0/10's i-th /24 (the addresses the
// harness's scale phase uses too).
const (
	scaleNodes     = 1000
	scaleEndpoints = 200
)

var (
	scaleNodeIP  = netip.MustParseAddr("10.200.0.1")
	scalePodCIDR = netip.MustParsePrefix("10.1.1.0/24")
)

// scaleNode is remote node i of the scale benchmarks.
func scaleNode(i int) dataplane.NodeSpec {
	ip := netip.AddrFrom4([4]byte{10, 200, byte((i + 2) >> 8), byte(i + 2)})
	cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 64 + byte(i>>8), byte(i), 0}), 24)
	return dataplane.NodeSpec{Name: fmt.Sprintf("node%05d", i+1), IP: ip, PodCIDR: cidr}
}

// scaleEndpointIP is the address of local endpoint i: 10.1.1.10 and up.
func scaleEndpointIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 1, 1, byte(10 + i)})
}

// feedDevice is a pod that sends on demand: Read hands out the packets of
// a fixed ring in turn, copied into the engine's buffers as a TUN read
// would, until the number asked for by give is reached, then blocks. It
// allocates nothing.
type feedDevice struct {
	pkts      [][]byte
	next      int // used by the one reading worker only
	remaining atomic.Int64
	wake      chan struct{}
	closer
}

func newFeedDevice(pkts [][]byte) *feedDevice {
	return &feedDevice{pkts: pkts, wake: make(chan struct{}, 1), closer: newCloser()}
}

// give lets Read hand out n more packets.
func (d *feedDevice) give(n int) {
	d.remaining.Add(int64(n))
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *feedDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		if r := d.remaining.Load(); r > 0 {
			n := int(min(r, int64(len(bufs))))
			for i := 0; i < n; i++ {
				sizes[i] = copy(bufs[i][offset:], d.pkts[d.next])
				if d.next++; d.next == len(d.pkts) {
					d.next = 0
				}
			}
			d.remaining.Add(-int64(n))
			return n, nil
		}
		select {
		case <-d.wake:
		case <-d.closed:
			return 0, net.ErrClosed
		}
	}
}

func (d *feedDevice) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (d *feedDevice) BatchSize() int                               { return 64 }
func (d *feedDevice) Name() string                                 { return "feed" }

// countingUnderlay takes the tunnel payloads. It signals done once target
// payloads arrived, and while recording is set it also counts them by
// destination address (for the check before timing, not during).
type countingUnderlay struct {
	sinkDevice
	target    atomic.Uint64
	done      chan struct{}
	recording atomic.Bool
	mu        sync.Mutex
	byDst     map[netip.Addr]int
}

func newCountingUnderlay() *countingUnderlay {
	return &countingUnderlay{sinkDevice: sinkDevice{closer: newCloser()}, done: make(chan struct{}, 1), byDst: map[netip.Addr]int{}}
}

func (d *countingUnderlay) Receive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	<-d.closed
	return 0, net.ErrClosed
}

func (d *countingUnderlay) SourcePort(flow uint32) uint16 { return encap.SourcePort(flow) }

func (d *countingUnderlay) SourcePorts() packetio.SourcePorts { return packetio.SourcePorts{} }

func (d *countingUnderlay) Send(bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	if d.recording.Load() {
		d.mu.Lock()
		for i := range bufs {
			d.byDst[meta[i].Remote.Addr()]++
		}
		d.mu.Unlock()
	}
	if d.packets.Add(uint64(len(bufs))) >= d.target.Load() {
		select {
		case d.done <- struct{}{}:
		default:
		}
	}
	return len(bufs), nil
}

// expect resets the count and arms done for n packets.
func (d *countingUnderlay) expect(n int) {
	select {
	case <-d.done:
	default:
	}
	d.packets.Store(0)
	d.target.Store(uint64(n))
}

// wait waits for the packets announced by expect.
func (d *countingUnderlay) wait(tb testing.TB) {
	tb.Helper()
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		tb.Fatalf("underlay got %d of %d packets in a minute", d.packets.Load(), d.target.Load())
	}
}

// idleDevice is a pod that never sends.
type idleDevice struct{ sinkDevice }

func (d *idleDevice) Name() string { return "idle" }

// newScaleEngine starts an engine with scaleEndpoints local endpoints, the
// first of which reads from feed, and nodes remote nodes. With a single
// node, that node holds all of 10.64.0.0/16, so the same destinations as
// with many nodes can be used.
func newScaleEngine(tb testing.TB, nodes int, feed packetio.Device, underlay packetio.Underlay) *dataplane.Engine {
	tb.Helper()
	first := true
	e, err := dataplane.New(dataplane.Config{NodeIP: scaleNodeIP, PodCIDR: scalePodCIDR, TunnelPort: 8472, UnderlayMTU: 1500},
		nil, []packetio.Underlay{underlay}, nil,
		func(dataplane.EndpointSpec, int) (packetio.Device, error) {
			if first {
				first = false
				return feed, nil
			}
			return &idleDevice{sinkDevice{closer: newCloser()}}, nil
		}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	e.Start()
	tb.Cleanup(func() { e.Close() })
	for i := 0; i < scaleEndpoints; i++ {
		if err := e.AddEndpoint(dataplane.EndpointSpec{Name: fmt.Sprintf("pod%03d", i+1), IP: scaleEndpointIP(i)}); err != nil {
			tb.Fatal(err)
		}
	}
	if nodes == 1 {
		n := scaleNode(0)
		n.PodCIDR = netip.MustParsePrefix("10.64.0.0/16")
		if err := e.AddNode(n); err != nil {
			tb.Fatal(err)
		}
		return e
	}
	for i := 0; i < nodes; i++ {
		if err := e.AddNode(scaleNode(i)); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

// BenchmarkScaleEgress is the per-packet cost of a pod's packets to
// remote pods on a node with scaleEndpoints local endpoints: read from the
// pod's device, FIB lookup, encapsulation, write to the underlay. One op is
// one 64-byte UDP packet; consecutive packets go to scaleNodes different
// remote pods, which with nodes=1000 are on 1000 different nodes. nodes=1
// sends to as many pods of one node, so the two differ only in the size
// of the tables the packet path looks up. The packet path must not
// allocate.
func BenchmarkScaleEgress(b *testing.B) {
	for _, nodes := range []int{1, scaleNodes} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			const size = 64
			pkts := make([][]byte, scaleNodes)
			dsts := make([]netip.Addr, scaleNodes)
			for i := range pkts {
				dst := scaleNode(i).PodCIDR.Addr().As4()
				dst[3] = 10
				if nodes == 1 {
					dst = [4]byte{10, 64, byte(i / 250), byte(2 + i%250)}
				}
				dsts[i] = netip.AddrFrom4(dst)
				pkts[i] = pkttest.IPv4{Src: scaleEndpointIP(0), Dst: dsts[i]}.UDP(40000, 9000, make([]byte, size-28))
			}
			feed := newFeedDevice(pkts)
			under := newCountingUnderlay()
			e := newScaleEngine(b, nodes, feed, under)

			// Each destination once, checked: every packet leaves for the
			// node that holds its destination.
			under.recording.Store(true)
			under.expect(len(pkts))
			feed.give(len(pkts))
			under.wait(b)
			under.recording.Store(false)
			for i := 0; i < nodes; i++ {
				want := len(pkts) / nodes
				if got := under.byDst[scaleNode(i).IP]; got != want {
					b.Fatalf("node %s got %d packets, want %d", scaleNode(i).IP, got, want)
				}
			}

			b.ReportAllocs()
			b.SetBytes(size)
			under.expect(b.N)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			feed.give(b.N)
			under.wait(b)
			b.StopTimer()
			runtime.ReadMemStats(&after)
			if st := e.Stats(); st.TotalDrops != 0 {
				b.Fatalf("drops: %v", st.Drops)
			}
			// ReportAllocs rounds down; this fails on any allocation
			// that grows with the packets, past a few of the runtime's.
			if n := after.Mallocs - before.Mallocs; n > 10 && n*1000 > uint64(b.N) {
				b.Fatalf("%d allocations for %d packets", n, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
		})
	}
}

// BenchmarkScaleAddNodes adds scaleNodes remote nodes, one AddNode call
// each, to an engine that has scaleEndpoints local endpoints and no
// nodes. One op is all the additions; ns/node is the mean per call. Host
// routes are not part of it (the engine has none here; the agent adds one
// kernel route per node). live-B/node is how much the Go heap still holds
// after a collection, per node added: what the nodes cost to keep, as
// opposed to what adding them allocated (B/op).
func BenchmarkScaleAddNodes(b *testing.B) {
	b.Run("one-call-each", func(b *testing.B) { benchAddNodes(b, false) })
	b.Run("one-list", func(b *testing.B) { benchAddNodes(b, true) })
}

// benchAddNodes adds the scale's nodes to an engine with its endpoints,
// one AddNode call each or in one AddNodes list; between rounds they are
// removed again, untimed, in one DelNodes list.
func benchAddNodes(b *testing.B, list bool) {
	specs := make([]dataplane.NodeSpec, scaleNodes)
	names := make([]string, scaleNodes)
	for i := range specs {
		specs[i] = scaleNode(i)
		names[i] = specs[i].Name
	}
	under := newCountingUnderlay()
	e := newScaleEngine(b, 0, &idleDevice{sinkDevice{closer: newCloser()}}, under)
	b.ReportAllocs()
	var live int64
	var m0, m1 runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		if list {
			if err := e.AddNodes(specs); err != nil {
				b.Fatal(err)
			}
		} else {
			for _, n := range specs {
				if err := e.AddNode(n); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		live += int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
		if got := len(e.Nodes()); got != scaleNodes {
			b.Fatalf("%d nodes after adding %d", got, scaleNodes)
		}
		if err := e.DelNodes(names); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*scaleNodes), "ns/node")
	b.ReportMetric(float64(live)/float64(b.N*scaleNodes), "live-B/node")
}
