package dataplane_test

import (
	"net/netip"
	"testing"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

type routeLog struct{ added, vias, deleted []netip.Prefix }

func (r *routeLog) AddRoutes(rs []dataplane.HostRoute) error {
	for _, x := range rs {
		if x.Via.IsValid() {
			r.vias = append(r.vias, x.Prefix)
		} else {
			r.added = append(r.added, x.Prefix)
		}
	}
	return nil
}
func (r *routeLog) DelRoute(p netip.Prefix) error { r.deleted = append(r.deleted, p); return nil }

func TestNativeRouting(t *testing.T) {
	checkGoroutines(t)
	host := fake.New("vxdp_host", 16)
	pod := fake.New("a", 8)
	routes := &routeLog{}
	e, err := dataplane.New(dataplane.Config{
		NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"), ClusterCIDR: cluster,
		UnderlayMTU: 1500, Native: true, AutoDirectNodeRoutes: true,
	}, nil, nil, host, func(dataplane.EndpointSpec, int) (packetio.Device, error) { return pod, nil }, routes)
	must(t, err)
	e.Start()
	defer e.Close()
	if e.RouteMTU() != 1500 {
		t.Fatalf("native pods get MTU %d, want the underlay's 1500", e.RouteMTU())
	}
	must(t, e.AddEndpoint(dataplane.EndpointSpec{Name: "a", IP: pod1, Netns: "/x"}))
	must(t, e.AddNode(dataplane.NodeSpec{Name: "node2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}))
	if len(routes.vias) != 1 || len(routes.added) != 0 {
		t.Fatalf("routes: via %v, dev %v", routes.vias, routes.added)
	}
	// A remote pod goes to the kernel, unencapsulated and full size.
	pod.Inject(udpPacket(pod1, pod2, 1, 2, 64, true, make([]byte, 1472)))
	got := waitOne(t, host)
	if len(got) != 1500 || encap.IPv4(got).DestinationAddr() != pod2 {
		t.Fatalf("host got %d bytes", len(got))
	}
	// What the kernel routes to a local pod is delivered.
	host.Inject(udpPacket(pod2, pod1, 2, 1, 63, false, []byte("in")))
	if got := waitOne(t, pod); string(got[28:]) != "in" {
		t.Fatalf("pod got %x", got)
	}
	// VTEPs need an underlay, which a native engine without one lacks.
	if err := e.SetVTEPs([]dataplane.VTEPSpec{{CIDR: vmCIDR, Endpoint: vmIP, MAC: vmMAC}}); err == nil {
		t.Fatal("vteps accepted without an underlay")
	}
	must(t, e.DelNode("node2"))
	if len(routes.deleted) != 1 || routes.deleted[0] != netip.MustParsePrefix("10.1.2.0/24") {
		t.Fatalf("deleted %v", routes.deleted)
	}
	fib := e.FIB()
	kinds := map[string]string{}
	for _, f := range fib {
		kinds[f.Prefix.String()] = f.Kind.String()
	}
	if kinds["10.1.1.10/32"] != "local" || kinds["0.0.0.0/0"] != "host" {
		t.Fatalf("fib %v", fib)
	}
}
