package dataplane_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
	"github.com/vxdp/vxdp/dataplane/fake"
	"github.com/vxdp/vxdp/dataplane/packetio"
)

// mqDevice is a fake pod device with a second queue.
type mqDevice struct {
	*fake.Device
	second *fake.Device
}

func (d *mqDevice) Queues() []packetio.Device { return []packetio.Device{d, d.second} }

func (d *mqDevice) Close() error {
	return errors.Join(d.second.Close(), d.Device.Close())
}

// Every queue of a multi-queue pod device has a worker of its own: what
// the pod sends on either queue is forwarded, and deleting the endpoint
// waits for both workers.
func TestMultiQueueEndpoint(t *testing.T) {
	under := fake.NewUnderlay("under", netip.AddrPortFrom(node1IP, 8472), 16)
	var pod *mqDevice
	factory := func(s dataplane.EndpointSpec, mtu int) (packetio.Device, error) {
		pod = &mqDevice{Device: fake.New(s.Name, 8), second: fake.New(s.Name+"-q1", 8)}
		return pod, nil
	}
	eng, err := dataplane.New(dataplane.Config{NodeIP: node1IP, PodCIDR: netip.MustParsePrefix("10.1.1.0/24"),
		ClusterCIDR: cluster, TunnelPort: 8472, UnderlayMTU: 1500}, nil, []packetio.Underlay{under}, nil, factory, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng.Start()
	t.Cleanup(func() { eng.Close() })
	if err := eng.AddNode(dataplane.NodeSpec{Name: "n2", IP: node2IP, PodCIDR: netip.MustParsePrefix("10.1.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	if err := eng.AddEndpoint(dataplane.EndpointSpec{Name: "pod1", IP: pod1}); err != nil {
		t.Fatal(err)
	}
	pod.Inject(udpPacket(pod1, pod2, 1000, 2000, 64, false, []byte("queue 0")))
	pod.second.Inject(udpPacket(pod1, pod2, 1001, 2000, 64, false, []byte("queue 1")))
	if got := under.WaitSent(2, 2*time.Second); len(got) != 2 {
		t.Fatalf("%d of 2 packets forwarded", len(got))
	}
	var rx uint64
	for _, d := range eng.Stats().Devices {
		if d.Device == "pod1" {
			rx = d.RxPackets
		}
	}
	if rx != 2 {
		t.Fatalf("pod1 counted %d packets read, want 2 (both queues)", rx)
	}
	done := make(chan error, 1)
	go func() { done <- eng.DelEndpoint("pod1") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DelEndpoint did not return")
	}
	if !pod.Closed() || !pod.second.Closed() {
		t.Fatal("queues left open")
	}
}
