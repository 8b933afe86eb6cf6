package dataplane_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vxdp/vxdp/dataplane"
)

// The busy-poll budget of the configuration reaches every device and
// underlay queue a worker reads, SetBusyPoll changes it for the running
// workers, and a device added later gets the budget in force.
func TestBusyPollBudget(t *testing.T) {
	checkGoroutines(t)
	n1, _, _ := twoNodesWith(t, func(c *dataplane.Config) { c.BusyPoll = 50 * time.Microsecond })
	check := func(want time.Duration, pods ...string) {
		t.Helper()
		if got := n1.under.BusyPoll(); got != want {
			t.Errorf("underlay budget %v, want %v", got, want)
		}
		if got := n1.host.BusyPoll(); got != want {
			t.Errorf("host device budget %v, want %v", got, want)
		}
		for _, p := range pods {
			if got := n1.pod(t, p).BusyPoll(); got != want {
				t.Errorf("pod %s budget %v, want %v", p, got, want)
			}
		}
		if got := n1.eng.BusyPoll(); got != want {
			t.Errorf("engine budget %v, want %v", got, want)
		}
	}
	check(50*time.Microsecond, "a", "b")
	n1.eng.SetBusyPoll(0)
	check(0, "a", "b")
	n1.eng.SetBusyPoll(20 * time.Microsecond)
	must(t, n1.eng.AddEndpoint(dataplane.EndpointSpec{Name: "d", IP: netip.MustParseAddr("10.1.1.12"), Netns: "/x"}))
	check(20*time.Microsecond, "a", "b", "d")
	n1.eng.SetBusyPoll(-time.Second)
	check(0, "a", "b", "d")
}
