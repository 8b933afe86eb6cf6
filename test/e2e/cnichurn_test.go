package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// agentFootprint is what a leak would grow: open file descriptors,
// goroutines (from the agent's metrics), resident memory, and the links
// of the node's namespace.
type agentFootprint struct {
	fds, goroutines, links int
	rssKiB                 int
}

func footprint(t *testing.T, c *cluster, i int, metrics string) agentFootprint {
	t.Helper()
	var f agentFootprint
	pid := c.agents[i].Pid()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	must(t, err)
	f.fds = len(ents)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f.rssKiB, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	body, err := scrape(c.node[i], metrics, "/metrics")
	must(t, err)
	g, ok := metricValue(body, "go_goroutines")
	if !ok {
		t.Fatalf("metrics lack go_goroutines")
	}
	f.goroutines = int(g)
	f.links = strings.Count(c.node[i].MustRun(t, "ip", "-o", "link"), "\n")
	return f
}

// Churn through the plugin: many ADD/DEL cycles of one container while
// two pods keep a verified TCP stream and a ping going across the
// overlay. Nothing may be lost or corrupted on the stream, and the agent
// must end where it started: no device, address, descriptor or goroutine
// left, its memory back near the start. CNI_CHURN sets the number of
// cycles (1000 by default).
func TestCNIChurn(t *testing.T) {
	cycles := 1000
	if s := os.Getenv("CNI_CHURN"); s != "" {
		cycles, _ = strconv.Atoi(s)
	}
	const metrics = "127.0.0.1:9963"
	c := dualClusterWith(t, "ipv4", [2]string{"prometheus-serve-addr: " + metrics, ""})
	conf := cniConf(c, 0, "1.1.0", "")
	ctr := c.lab.Netns("churn")
	plugin := func(cmdName, id string) (time.Duration, []byte, error) {
		cmd := exec.Command(cniBin)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=" + cmdName, "CNI_CONTAINERID=" + id,
			"CNI_NETNS=" + ctr.Path, "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin"}
		cmd.Stdin = bytes.NewReader(conf)
		start := time.Now()
		out, err := cmd.Output()
		return time.Since(start), out, err
	}
	cycle := func(id string) (add, del time.Duration) {
		add, out, err := plugin("ADD", id)
		if err != nil {
			t.Fatalf("%s ADD: %v\n%s", id, err, out)
		}
		del, out, err = plugin("DEL", id)
		if err != nil {
			t.Fatalf("%s DEL: %v\n%s", id, err, out)
		}
		return add, del
	}
	// Warm-up: pools and caches the first attachments fill are not leaks.
	for i := range 20 {
		cycle(fmt.Sprint("warm", i))
	}
	before := footprint(t, c, 0, metrics)

	stream, err := nstest.StartStream(c.pods["pod2a"], c.pods["pod1a"], addr("fd00:1:1::10"), 5501, 4<<20)
	must(t, err)
	// Every 10 ms for the churn's length (stopped by SIGINT, which makes
	// ping print its summary), at most 10 minutes.
	ping := c.pods["pod1b"].Command(t.Context(), "ping", "-i", "0.01", "-w", "600", "fd00:1:2::20")
	var pingOut bytes.Buffer
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	must(t, ping.Start())

	adds := make([]time.Duration, 0, cycles)
	dels := make([]time.Duration, 0, cycles)
	start := time.Now()
	for i := range cycles {
		a, d := cycle(fmt.Sprintf("churn%04d", i))
		adds, dels = append(adds, a), append(dels, d)
	}
	elapsed := time.Since(start)
	ping.Process.Signal(os.Interrupt)
	ping.Wait()
	sent, verified, err := stream.Stop()
	if err != nil || sent != verified || sent == 0 {
		t.Errorf("stream: %d bytes sent, %d verified: %v", sent, verified, err)
	}
	q := func(ds []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(float64(len(s)-1)*p)]
	}
	t.Logf("%d cycles in %v; ADD p50 %v p99 %v, DEL p50 %v p99 %v; stream %d bytes verified; ping: %s",
		cycles, elapsed.Round(time.Millisecond), q(adds, 0.5), q(adds, 0.99), q(dels, 0.5), q(dels, 0.99), verified,
		lastLines(pingOut.String(), 2))
	// The one request in flight when ping was interrupted has no answer
	// to wait for: at most that one may be missing.
	var tx, rx int
	for _, line := range strings.Split(pingOut.String(), "\n") {
		if strings.Contains(line, "packets transmitted") {
			fmt.Sscanf(line, "%d packets transmitted, %d received", &tx, &rx)
		}
	}
	if tx < cycles || rx < tx-1 {
		t.Errorf("ping during the churn: %d sent, %d answered:\n%s", tx, rx, lastLines(pingOut.String(), 3))
	}

	// Nothing left: the container's namespace is empty again, the node
	// has its links of before, the agent its descriptors and goroutines.
	if out := ctr.MustRun(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("the container keeps an interface:\n%s", out)
	}
	if eps := containerEndpoints(t, c, 0); len(eps) != 0 {
		t.Errorf("%d container endpoints left", len(eps))
	}
	leases, err := os.ReadFile(filepath.Join(c.stateDir("node1"), "ipam-"+c.nodeIPs[0]+".json"))
	must(t, err)
	if !strings.Contains(string(leases), `"leases":[]`) {
		t.Errorf("leases left: %s", leases)
	}
	var after agentFootprint
	// Goroutines of finished API requests take a moment to end.
	for range 20 {
		after = footprint(t, c, 0, metrics)
		if after.goroutines <= before.goroutines+2 && after.fds <= before.fds {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("agent before: %+v, after: %+v", before, after)
	if after.fds > before.fds {
		t.Errorf("file descriptors %d -> %d", before.fds, after.fds)
	}
	if after.goroutines > before.goroutines+2 {
		t.Errorf("goroutines %d -> %d", before.goroutines, after.goroutines)
	}
	if after.links != before.links {
		t.Errorf("node links %d -> %d", before.links, after.links)
	}
	if after.rssKiB > before.rssKiB+before.rssKiB/4+8<<10 {
		t.Errorf("RSS %d KiB -> %d KiB", before.rssKiB, after.rssKiB)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
