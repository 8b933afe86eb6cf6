package dataplane_test

import (
	"context"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
)

func TestMonitorDropEvents(t *testing.T) {
	n1, n2, _ := twoNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := n2.eng.Subscribe(ctx)

	// A tunnel packet whose inner source lies outside node1's pod CIDR.
	n2.under.InjectDatagram(wirePacket(t, node1IP, node2IP, 1000, udpPacket(netipMust("10.1.3.3"), pod2, 4444, 80, 64, false, nil)))
	select {
	case ev := <-events:
		if ev.Type != "drop" || ev.Reason != "spoofed_inner_source" || ev.Source != "underlay" ||
			ev.Src != "10.1.3.3:4444" || ev.Dst != "10.1.2.20:80" || ev.Protocol != "udp" ||
			ev.Identity != 1000 || ev.OuterSrc != "192.0.2.1:50000" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
	}

	// A pod's spoofed packet names the pod's identity.
	n1ev := n1.eng.Subscribe(ctx)
	n1.pod(t, "a").Inject(udpPacket(netipMust("10.1.1.99"), pod2, 1, 2, 64, false, nil))
	select {
	case ev := <-n1ev:
		if ev.Reason != "invalid_source" || ev.Source != "pod" || ev.Identity != 1000 || ev.Device != "a" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
	}
}

func TestMonitorRateLimit(t *testing.T) {
	_, n2, _ := twoNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := n2.eng.Subscribe(ctx)
	bad := wirePacket(t, netipMust("192.0.2.99"), node2IP, 1000, udpPacket(pod1, pod2, 1, 2, 64, false, nil))
	const flood = 20000
	start := time.Now()
	for i := 0; i < flood; i++ {
		n2.under.InjectDatagram(bad)
	}
	waitDrop(t, n2.eng, dataplane.DropUnknownTunnelSource, flood)
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond)
	got := 0
	for done := false; !done; {
		select {
		case <-events:
			got++
		default:
			done = true
		}
	}
	limit := 100 + int(elapsed.Seconds()*1000) + 10
	if got == 0 || got > limit {
		t.Fatalf("%d events for %d drops in %v (limit %d)", got, flood, elapsed, limit)
	}
	if n2.eng.Stats().MonitorEventsLost == 0 {
		t.Fatal("rate-limited events not counted as lost")
	}
}
