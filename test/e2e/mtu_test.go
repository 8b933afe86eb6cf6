package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/api"
)

// The underlay's MTU changes under running agents (1500 -> 1400 on both
// ends of the link, then back): within a bounded wait the pods' eth0,
// vxdp_host and the routes vxdp installed take the MTUs that go with it
// (route MTU = underlay MTU - 50), status says so and stays healthy, a DF
// ping of the new largest size crosses the overlay and one byte more is
// refused, by the pod's kernel at its MTU and by the dataplane for a pod
// that believes in a larger one. An endpoint added meanwhile gets the new
// MTU.
func TestUnderlayMTUChange(t *testing.T) {
	// node1 keeps a state directory: its agent is restarted below.
	c := newClusterWith(t, [2]string{"state-dir: " + t.TempDir(), ""})
	setUnderlay := func(mtu int) {
		for _, n := range c.node {
			n.MustRun(t, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(mtu))
		}
	}

	// follows waits until every node's pods, vxdp_host and vxdp routes
	// show the MTUs of an underlay at mtu.
	follows := func(mtu int) {
		t.Helper()
		route := mtu - 50
		want := map[string]string{}
		checks := map[string]func() string{}
		for i, n := range c.node {
			n := n
			checks[fmt.Sprintf("node%d vxdp_host", i+1)] = func() string { return n.MustRun(t, "ip", "-o", "link", "show", "vxdp_host") }
			want[fmt.Sprintf("node%d vxdp_host", i+1)] = fmt.Sprintf(" mtu %d ", mtu)
			remote := c.podCIDRs[1-i]
			checks[fmt.Sprintf("node%d route %s", i+1, remote)] = func() string { return exactRoute(t, n, remote) }
			want[fmt.Sprintf("node%d route %s", i+1, remote)] = fmt.Sprintf(" mtu %d", route)
			checks[fmt.Sprintf("node%d cluster route", i+1)] = func() string { return exactRoute(t, n, "10.1.0.0/16") }
			want[fmt.Sprintf("node%d cluster route", i+1)] = fmt.Sprintf(" mtu %d", route)
		}
		for name, ns := range c.pods {
			ns := ns
			checks[name+" eth0"] = func() string { return ns.MustRun(t, "ip", "-o", "link", "show", "eth0") }
			want[name+" eth0"] = fmt.Sprintf(" mtu %d ", route)
		}
		deadline := time.Now().Add(5 * time.Second)
		for what, check := range checks {
			for {
				got := check()
				if strings.Contains(got, want[what]) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("underlay at %d: %s does not show %q:\n%s", mtu, what, want[what], got)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	status := func(i int) api.Status {
		t.Helper()
		var st api.Status
		mustJSON(t, c.mustCLI(i, "status", "-o", "json"), &st)
		return st
	}

	setUnderlay(1400)
	follows(1400)
	for i := range c.node {
		st := status(i)
		if !st.Healthy || st.UnderlayMTU != 1400 || st.RouteMTU != 1350 || !strings.HasPrefix(st.MTUChange, "changed from 1500 at ") {
			t.Fatalf("node%d status after 1500 -> 1400: %+v", i+1, st)
		}
		if n := strings.Count(c.agents[i].Output(), "underlay MTU changed from 1500 to 1400; pods and routes now use 1350"); n != 1 {
			t.Fatalf("node%d logged the change %d times:\n%s", i+1, n, c.agents[i].Output())
		}
	}
	if out := c.mustCLI(0, "status"); !regexp.MustCompile(`MTU:\s+underlay 1400, pods 1350 \(changed from 1500 at `).MatchString(out) {
		t.Fatalf("status table:\n%s", out)
	}

	// 1350 bytes with DF cross the overlay, from a pod and from the node
	// (through vxdp's route); 1351 are refused where the MTU is known.
	for _, from := range []string{"pod1a", "node1"} {
		if out, err := c.ping(from, "10.1.2.20", "-c", "1", "-M", "do", "-s", "1322"); err != nil {
			t.Fatalf("1350-byte DF ping from %s: %v\n%s", from, err, out)
		}
		out, err := c.ping(from, "10.1.2.20", "-c", "1", "-M", "do", "-s", "1323")
		if err == nil || !strings.Contains(strings.ToLower(out), "message too long") {
			t.Fatalf("1351-byte DF ping from %s: %v\n%s", from, err, out)
		}
	}
	// A pod that believes in 1450 learns 1350 from the dataplane.
	before := c.drops(0, "frag_needed")
	c.pods["pod1b"].MustRun(t, "ip", "link", "set", "eth0", "mtu", "1450")
	out, _ := c.ping("pod1b", "10.1.2.20", "-c", "1", "-M", "do", "-s", "1323")
	if !regexp.MustCompile(`(?i)frag needed.*mtu = 1350|mtu=1350`).MatchString(out) {
		t.Fatalf("no fragmentation-needed with the new MTU from the dataplane:\n%s", out)
	}
	if after := c.drops(0, "frag_needed"); after <= before {
		t.Fatalf("frag_needed drops %d -> %d", before, after)
	}
	c.pods["pod1b"].MustRun(t, "ip", "link", "set", "eth0", "mtu", "1350")
	transfer(t, c.pods["pod2a"], c.pods["pod1a"], "10.1.1.10", 5101, 20<<20, time.Minute)

	// An endpoint added now gets the new MTU.
	p1c := c.lab.Netns("pod1c")
	c.mustCLI(0, "endpoint", "add", "pod1c", "--ip", "10.1.1.12", "--netns", p1c.Path)
	if out := p1c.MustRun(t, "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, " mtu 1350 ") {
		t.Fatalf("endpoint added after the change:\n%s", out)
	}
	c.mustCLI(0, "endpoint", "del", "pod1c")

	setUnderlay(1500)
	follows(1500)
	if st := status(0); !st.Healthy || st.UnderlayMTU != 1500 || st.RouteMTU != 1450 || !strings.HasPrefix(st.MTUChange, "changed from 1400 at ") {
		t.Fatalf("status after 1400 -> 1500: %+v", st)
	}
	if out, err := c.ping("pod1a", "10.1.2.20", "-c", "1", "-M", "do", "-s", "1422"); err != nil {
		t.Fatalf("1450-byte DF ping after the MTU came back: %v\n%s", err, out)
	}

	// The underlay changes while node1's agent is dead: the agent that
	// takes over its devices and routes gives them the new MTUs.
	must(t, c.agents[0].Signal(syscall.SIGKILL))
	c.agents[0].Wait(5 * time.Second)
	setUnderlay(1400)
	c.agents[0] = c.lab.Start(c.node[0], "agent1-restarted", vxdpBin, "agent",
		"--config", c.configs[0], "--socket", c.sockets[0], "--log-level", "debug")
	c.waitReady(0)
	follows(1400)
	if out := c.agents[0].Output(); !strings.Contains(out, "endpoint device adopted") || !strings.Contains(out, "host device adopted") {
		t.Fatalf("devices not adopted:\n%s", out)
	}
	if st := status(0); !st.Healthy || st.UnderlayMTU != 1400 || st.RouteMTU != 1350 {
		t.Fatalf("status of the restarted agent: %+v", st)
	}
	if out, err := c.ping("pod1a", "10.1.2.20", "-c", "1", "-M", "do", "-s", "1322"); err != nil {
		t.Fatalf("1350-byte DF ping after the restart: %v\n%s", err, out)
	}
	setUnderlay(1500)
	follows(1500)
}
