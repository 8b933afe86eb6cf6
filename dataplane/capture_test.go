package dataplane_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/internal/pkttest"
)

// The underlay capture sees every underlay device: with flows spread over
// several sockets, a capture of "the underlay" that watched one of them
// would miss the flows hashed to the others.
func TestCaptureEveryUnderlay(t *testing.T) {
	for _, ip := range []netip.Addr{node1IP, node1IP6} {
		t.Run(ip.String(), func(t *testing.T) {
			checkGoroutines(t)
			local := netip.AddrPortFrom(ip, 8472)
			unders := []*fake.Underlay{fake.NewUnderlay("u0", local, 16), fake.NewUnderlay("u1", local, 16)}
			host := fake.New("vxdp_host", 16)
			var pod *fake.Device
			factory := func(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
				pod = fake.New(s.Name, 16)
				return pod, nil
			}
			cfg := dataplane.Config{NodeIP: ip, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), ClusterCIDR: cluster, TunnelPort: 8472, UnderlayMTU: 1500}
			eng, err := dataplane.New(cfg, nil, []packetio.Underlay{unders[0], unders[1]}, host, factory, nil)
			must(t, err)
			eng.Start()
			t.Cleanup(func() { eng.Close() })
			peer := node2IP
			if ip.Is6() {
				peer = node2IP6
			}
			must(t, eng.AddNode(dataplane.NodeSpec{Name: "node2", IP: peer, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
			must(t, eng.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x", Identity: 1000}))

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pkts, err := eng.Capture(ctx, dataplane.CapturePoint{Kind: dataplane.CaptureUnderlay})
			must(t, err)
			const flows = 32
			for i := range flows {
				pod.Inject(udpPacket(pod1, pod2, uint16(1000+i), 2, 64, false, []byte("out")))
			}
			s0, s1 := unders[0].WaitSent(1, 2*time.Second), unders[1].WaitSent(1, 2*time.Second)
			if len(s0) == 0 || len(s1) == 0 {
				t.Fatalf("%d flows left by u0, %d by u1: the test needs both", len(s0), len(s1))
			}
			// And one in through each.
			for _, u := range unders {
				u.InjectDatagram(wirePacketAny(peer, ip, udpPacket(pod2, pod1, 2, 1, 64, false, []byte("in"))))
			}
			out, in := 0, 0
			timeout := time.After(3 * time.Second)
			for out+in < flows+2 {
				select {
				case p := <-pkts:
					if p.Out {
						out++
					} else {
						in++
					}
				case <-timeout:
					t.Fatalf("captured %d out and %d in of %d and 2, over two underlays", out, in, flows)
				}
			}
		})
	}
}

// wirePacketAny is wirePacket for an underlay of either family.
func wirePacketAny(from, to netip.Addr, inner []byte) fake.Datagram {
	frame := pkttest.Ethernet(encap.TunnelMAC(to), encap.TunnelMAC(from), encap.EtherTypeIPv4, inner)
	return fake.Datagram{Payload: pkttest.VXLAN(2000, frame), Meta: packetio.Meta{Remote: netip.AddrPortFrom(from, 50000), LocalPort: 8472}}
}
