package bench

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/encap"
)

// sinkDevice counts what is written to it.
type sinkDevice struct {
	packets atomic.Uint64
	closed  chan struct{}
}

func (d *sinkDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	<-d.closed
	return 0, dataplane.ErrClosed
}
func (d *sinkDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.packets.Add(uint64(len(bufs)))
	return len(bufs), nil
}
func (d *sinkDevice) BatchSize() int { return 64 }
func (d *sinkDevice) Name() string   { return "sink" }
func (d *sinkDevice) Close() error {
	select {
	case <-d.closed:
	default:
		close(d.closed)
	}
	return nil
}

// BenchmarkPodToPod sends UDP packets from a pod on node1 to a pod on
// node2 through both engines and the in-memory underlay, and reports
// delivered packets per second.
func BenchmarkPodToPod(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(map[int]string{64: "64B", 1400: "1400B"}[size], func(b *testing.B) {
			hub := fake.NewHub()
			n1, n2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
			src := fake.New("src", 64)
			dst := &sinkDevice{closed: make(chan struct{})}
			mk := func(ip netip.Addr, cidr string, dev dataplane.Device) *dataplane.Engine {
				e, err := dataplane.New(dataplane.Config{NodeIP: ip, PodCIDR: netip.MustParsePrefix(cidr), TunnelPort: 8472, UnderlayMTU: 1500},
					nil, []dataplane.Device{hub.Attach(ip, ip.String(), 64)}, nil,
					func(dataplane.EndpointSpec, int) (dataplane.Device, error) { return dev, nil }, nil)
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

			pkt := make([]byte, size)
			encap.IPv4(pkt).Encode(&encap.IPv4Fields{TotalLen: uint16(size), TTL: 64, Protocol: encap.ProtoUDP,
				Source: [4]byte{10, 1, 1, 10}, Destination: [4]byte{10, 1, 2, 20}})
			encap.UDP(pkt[20:]).Encode(1, 2, uint16(size-20), 0)
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
