package soak

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

const (
	metricsAddr = "127.0.0.1:9962"
	nodes       = 3
	// pingEvery is the interval of the fixed ping pairs.
	pingEvery = 10 * time.Millisecond
	// settle is how long after a fault's action its window stays open,
	// so that a disruption it causes falls inside.
	settle = 1500 * time.Millisecond

	// Footprint bounds, end of run against start: the same endpoints
	// exist at both ends, so a restarted agent holds the same devices
	// and sockets. The slack covers API connections and HTTP handlers
	// in flight while the figures are read.
	fdSlack        = 8
	goroutineSlack = 20
	// Memory bounds, end against start. The start is read with the load
	// already running; an agent started again during the run meets the
	// load from its first packet, grows its workers' batches to the full
	// 64-byte rate and takes a new TUN buffer pool and sockets, and its
	// Go heap may not have been returned to the system when the end is
	// read. A leak of anything per packet, per fault or per change would
	// pass these within minutes under this load.
	heapSlackKiB = 16 << 10
	rssSlackKiB  = 32 << 10
)

// tunnelPort is the port of the cluster's tunnel protocol.
var tunnelPort uint16 = 8472

// Durations and rates of a run, from the environment.
type settings struct {
	Duration   time.Duration `json:"duration_ns"`
	FaultEvery time.Duration `json:"fault_every_ns"`
	StreamRate int64         `json:"stream_bytes_per_s"`
	GarbagePPS int           `json:"garbage_pps"`
	GarbageMax int           `json:"garbage_max"`
	UDPPPS     int           `json:"udp64_pps"`
	// GarbageCalibrate is how many packets of each kind the calibration
	// sends (SOAK_GARBAGE_CALIBRATE; 0: none).
	GarbageCalibrate int `json:"garbage_calibrate"`
	// Tunnel is the cluster's tunnel protocol, vxlan or geneve
	// (SOAK_TUNNEL); the garbage of both shapes goes to its port.
	Tunnel      string   `json:"tunnel"`
	JSONPath    string   `json:"-"`
	LogsDir     string   `json:"-"`
	FaultsKinds []string `json:"faults"`
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive Go duration such as 10m or 90s", key, s)
	}
	return d
}

func envInt(t *testing.T, key string, def int) int {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number >= 0", key, s)
	}
	return n
}

func podIdentity(node, idx int) int { return 1000 + node*100 + idx }

func nodeIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 169, 72, byte(i)}) }

// podIP is the address of pod idx (0: "a", 1: "b") of node i.
func podIP(i, idx int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i), byte(10 + idx)}) }

// podIP6 is the IPv6 address of pod idx of node i: every pod is
// dual-stack.
func podIP6(i, idx int) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("fd00:1:%d::%d", i, 10+idx))
}

func podCIDRs(i int) string { return fmt.Sprintf("10.1.%d.0/24,fd00:1:%d::/64", i, i) }

func podName(i, idx int) string { return fmt.Sprintf("pod%d%c", i, 'a'+idx) }

// node is one vxdp node of the soak.
type node struct {
	i        int
	ns       *nstest.Netns
	cfg      string
	sock     string
	stateDir string
	// hupPod is a namespace whose endpoint a valid reload adds and the
	// next one removes; churn one the API adds and deletes.
	hupPod, churn *nstest.Netns

	mu        sync.Mutex
	agent     *nstest.Proc
	starts    int
	expecting bool // the soak itself is stopping the agent
	hupOn     bool // the file in force has the hup endpoint
	unavail   unavailability
	cpuPast   float64 // CPU seconds of incarnations already gone
	peakRSS   int     // KiB, the most any incarnation held, sampled each second
}

// soak is a run: the lab, the nodes, the load and what was measured.
type soak struct {
	t     *testing.T
	lab   *nstest.TestLab
	dir   string
	set   settings
	nodes []*node
	pods  map[string]*nstest.Netns

	pingers []*pinger
	streams []*soakStream
	garbage *garbage
	drops   []*dropTracker
	etcd    *etcdMember
	cuts    []*cutStream
	flood   *flood
	// account is where the garbage went; countersStart the counters
	// when the steady garbage began.
	account       accounting
	countersStart counterSet
	// stopSamplers ends the stream sampler and the drop poller.
	stopSamplers func()

	mu       sync.Mutex
	windows  []faultWindow
	failures []string
	start    time.Time
}

// faultWindow is one fault: from its action to the end of its settle time,
// with what the fault itself measured.
type faultWindow struct {
	Kind   string
	Node   int
	From   time.Time
	To     time.Time
	Action time.Duration // the fault's own figure: kill to API ready, add to reachable, ...
	Err    string
}

func (s *soak) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.failures = append(s.failures, fmt.Sprintf("%s: %s", time.Since(s.start).Round(time.Millisecond), msg))
	first := len(s.failures) == 1
	s.mu.Unlock()
	s.t.Errorf("%s", msg)
	if first {
		s.keepLogs(msg)
	}
}

// keepLogs copies every process's log and the configurations to the logs
// directory, which outlives the run, with the reason in a file beside them.
func (s *soak) keepLogs(why string) {
	dir := filepath.Join(s.set.LogsDir, time.Now().UTC().Format("20060102T150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Logf("keep logs: %v", err)
		return
	}
	os.WriteFile(filepath.Join(dir, "REASON"), []byte(why+"\n"), 0o644)
	for _, src := range append(globAll(s.lab.Dir(), "*.log"), globAll(s.dir, "*.yaml")...) {
		if b, err := os.ReadFile(src); err == nil {
			os.WriteFile(filepath.Join(dir, filepath.Base(src)), b, 0o644)
		}
	}
	s.t.Logf("logs of the moment kept in %s", dir)
}

func globAll(dir, pattern string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	return m
}

// TestSoak: three nodes, two pods each, verified TCP streams, pings every
// 10 ms and garbage on the tunnel port throughout, and a fault every
// SOAK_FAULT_EVERY; see docs/RELIABILITY.md for the invariants.
func TestSoak(t *testing.T) {
	s := &soak{t: t, pods: map[string]*nstest.Netns{}}
	s.set = settings{
		Duration:         envDuration(t, "SOAK", 10*time.Minute),
		FaultEvery:       envDuration(t, "SOAK_FAULT_EVERY", 4*time.Second),
		StreamRate:       int64(envInt(t, "SOAK_STREAM_RATE", 2<<20)),
		GarbagePPS:       envInt(t, "SOAK_GARBAGE_PPS", 1000),
		UDPPPS:           envInt(t, "SOAK_UDP_PPS", 5000),
		GarbageCalibrate: envInt(t, "SOAK_GARBAGE_CALIBRATE", 1000),
		JSONPath:         os.Getenv("SOAK_JSON"),
		LogsDir:          os.Getenv("SOAK_LOGS"),
		FaultsKinds:      faultKinds,
	}
	switch s.set.Tunnel = os.Getenv("SOAK_TUNNEL"); s.set.Tunnel {
	case "", "vxlan":
		s.set.Tunnel, tunnelPort = "vxlan", 8472
	case "geneve":
		tunnelPort = 6081
	default:
		t.Fatalf("SOAK_TUNNEL=%q: want vxlan or geneve", s.set.Tunnel)
	}
	if v := os.Getenv("SOAK_FAULTS"); v != "" {
		s.set.FaultsKinds = nil
		for _, k := range strings.Split(v, ",") {
			if !slices.Contains(faultKinds, k) {
				t.Fatalf("SOAK_FAULTS=%q: %q is none of %s", v, k, strings.Join(faultKinds, ", "))
			}
			s.set.FaultsKinds = append(s.set.FaultsKinds, k)
		}
	}
	kinds := s.set.FaultsKinds
	s.set.GarbageMax = s.set.GarbagePPS * int(s.set.Duration/time.Second+1)
	if s.set.LogsDir == "" {
		s.set.LogsDir = filepath.Join(os.TempDir(), "vxdp-soak-logs")
	}
	s.build()
	s.startLoad()
	before := s.footprints()
	s.start = time.Now()
	end := s.start.Add(s.set.Duration)
	fmt.Fprintf(os.Stderr, "soak: %v, a fault every %v, lab %s\n", s.set.Duration, s.set.FaultEvery, s.lab.Prefix())

	watchDone := make(chan struct{})
	go s.watchAgents(watchDone)
	n := 0
	for time.Now().Before(end) && interrupted.Err() == nil && len(s.failureList()) == 0 {
		next := time.Now().Add(s.set.FaultEvery)
		kind := kinds[n%len(kinds)]
		// Each round of the schedule starts one node further, so that
		// every kind of fault meets every node.
		target := s.nodes[(n%len(kinds)+n/len(kinds))%nodes]
		w := s.inject(kind, target)
		s.mu.Lock()
		s.windows = append(s.windows, w)
		s.mu.Unlock()
		if w.Err != "" {
			s.fail("%s on node%d: %s", kind, target.i, w.Err)
		}
		n++
		select {
		case <-time.After(time.Until(next)):
		case <-interrupted.Done():
		}
	}
	stoppedAt := time.Now()
	// The run ends as it began: every file valid and in force, so that
	// the footprint at the end compares with the start.
	s.restoreAll()
	time.Sleep(settle)
	after := s.footprints()
	close(watchDone)
	rep := s.finish(before, after, stoppedAt)
	if interrupted.Err() != nil {
		rep.Interrupted = true
		t.Errorf("interrupted after %v", stoppedAt.Sub(s.start).Round(time.Second))
	}
	rep.print(os.Stdout)
	if s.set.JSONPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(s.set.JSONPath, b, 0o644); err != nil {
			t.Errorf("write %s: %v", s.set.JSONPath, err)
		}
	}
}

func (s *soak) failureList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.failures)
}

// build makes the namespaces, the bridged underlay and the agents.
//
//	pod1a pod1b        pod2a pod2b        pod3a pod3b
//	   node1 .1 ---------- node2 .2 --------- node3 .3     evil .66
//	        \_______________ br0 (switch) _______________/____/
func (s *soak) build() {
	t := s.t
	s.lab = nstest.New(t)
	s.dir = t.TempDir()
	sw := s.lab.Netns("switch")
	sw.MustRun(t, "ip", "link", "add", "br0", "type", "bridge")
	sw.MustRun(t, "ip", "link", "set", "br0", "up")
	hosts := []string{"node1", "node2", "node3", "evil", "etcd"}
	addrs := []string{"10.169.72.1/24", "10.169.72.2/24", "10.169.72.3/24", "10.169.72.66/24", etcdIP + "/24"}
	for i, h := range hosts {
		ns := s.lab.Netns(h)
		port := fmt.Sprintf("p%d", i)
		s.lab.Veth(ns, "eth0", addrs[i], sw, port, "", 1500)
		sw.MustRun(t, "ip", "link", "set", port, "master", "br0")
		if i < nodes {
			s.nodes = append(s.nodes, &node{i: i + 1, ns: ns})
		}
	}
	s.etcd = newEtcdMember(s.lab.Lookup("etcd"), s.dir)
	if err := s.startEtcd(s.etcd); err != nil {
		t.Fatal(err)
	}
	for _, n := range s.nodes {
		for idx := range 2 {
			s.pods[podName(n.i, idx)] = s.lab.Netns(podName(n.i, idx))
		}
		n.hupPod = s.lab.Netns(fmt.Sprintf("hup%d", n.i))
		n.churn = s.lab.Netns(fmt.Sprintf("churn%d", n.i))
		n.cfg = filepath.Join(s.dir, fmt.Sprintf("node%d.yaml", n.i))
		n.sock = filepath.Join(s.dir, fmt.Sprintf("node%d.sock", n.i))
		n.stateDir = filepath.Join(s.dir, fmt.Sprintf("state-node%d", n.i))
		s.mountStateDir(n)
		s.writeConfig(n, configValid)
	}
	for _, n := range s.nodes {
		s.startAgent(n)
	}
	for _, n := range s.nodes {
		if err := s.waitReady(n, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Every pod reaches every other before the load starts.
	for _, n := range s.nodes {
		for idx := range 2 {
			src := s.pods[podName(n.i, idx)]
			for _, m := range s.nodes {
				dst := podIP(m.i, 1-idx)
				if out, err := nstest.Ping(src, "-c", "1", "-W", "5", dst.String()); err != nil {
					t.Fatalf("%s -> %s before the soak: %v\n%s", src.Name, dst, err, out)
				}
			}
		}
	}
}

// Configuration variants a node's file is written in.
const (
	configValid   = iota // the base, with the hup endpoint when hupOn
	configInvalid        // a pod CIDR that does not parse
	configNoPeer         // the next node left out of nodes
)

func (s *soak) writeConfig(n *node, variant int) {
	var peers, eps strings.Builder
	for _, m := range s.nodes {
		if m != n && !(variant == configNoPeer && m.i == n.i%nodes+1) {
			fmt.Fprintf(&peers, "\n  - {name: node%d, ip: \"%s\", pod-cidr: \"%s\"}", m.i, nodeIP(m.i), podCIDRs(m.i))
		}
	}
	for idx := range 2 {
		fmt.Fprintf(&eps, "\n  - {name: %s, ip: \"%s,%s\", netns: %s, identity: %d}", podName(n.i, idx), podIP(n.i, idx), podIP6(n.i, idx), s.pods[podName(n.i, idx)].Path, podIdentity(n.i, idx))
	}
	n.mu.Lock()
	hup := n.hupOn
	n.mu.Unlock()
	if hup {
		fmt.Fprintf(&eps, "\n  - {name: hup%d, ip: 10.1.%d.40, netns: %s, identity: %d}", n.i, n.i, n.hupPod.Path, podIdentity(n.i, 40))
	}
	cidr := podCIDRs(n.i)
	if variant == configInvalid {
		cidr = fmt.Sprintf("10.1.%d.0/33,fd00:1:%d::/64", n.i, n.i)
	}
	cfg := fmt.Sprintf(`node-name: node%d
node-ip: %s
pod-cidr: "%s"
cluster-pool-ipv4-cidr: 10.1.0.0/16
cluster-pool-ipv6-cidr: fd00:1::/32
state-dir: %s
prometheus-serve-addr: %s
tunnel-protocol: %s
kvstore: etcd
kvstore-opt: {etcd.endpoints: "%s", etcd.lease-ttl: "%s"}
nodes:%s
endpoints:%s
`, n.i, nodeIP(n.i), cidr, n.stateDir, metricsAddr, s.set.Tunnel, etcdURL(), etcdLeaseTTL, peers.String(), eps.String())
	if err := os.WriteFile(n.cfg, []byte(cfg), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *soak) startAgent(n *node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	name := fmt.Sprintf("agent%d", n.i)
	if n.starts > 0 {
		name = fmt.Sprintf("agent%d-restart%d", n.i, n.starts)
	}
	p, err := s.lab.Launch(n.ns, name, vxdpBin, "agent", "--config", n.cfg, "--socket", n.sock)
	if err != nil {
		s.t.Errorf("start %s: %v", name, err)
		return
	}
	n.agent = p
	n.starts++
	n.expecting = false
}

func (n *node) proc() *nstest.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agent
}

func (s *soak) waitReady(n *node, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	p := n.proc()
	for time.Now().Before(deadline) {
		if p == nil || !p.Alive() {
			out := ""
			if p != nil {
				out = p.Output()
			}
			return fmt.Errorf("agent of node%d exited:\n%s", n.i, tailStr(out, 4000))
		}
		if _, err := s.cli(n, "status"); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("agent of node%d not ready after %v:\n%s", n.i, timeout, tailStr(p.Output(), 4000))
}

func (s *soak) cli(n *node, args ...string) (string, error) {
	cmd := exec.Command(vxdpBin, append([]string{"--socket", n.sock}, args...)...)
	done := make(chan struct{})
	timer := time.AfterFunc(10*time.Second, func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
		}
	})
	out, err := cmd.CombinedOutput()
	close(done)
	timer.Stop()
	return string(out), err
}

// watchAgents fails the run when an agent exits without the soak having
// stopped it.
func (s *soak) watchAgents(done chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ticks := 0; ; ticks++ {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		for _, n := range s.nodes {
			n.mu.Lock()
			p, expecting := n.agent, n.expecting
			n.mu.Unlock()
			if p != nil && ticks%10 == 0 {
				if rss := rssKiB(p.Pid()); rss > 0 {
					n.mu.Lock()
					n.peakRSS = max(n.peakRSS, rss)
					n.mu.Unlock()
				}
			}
			if p != nil && !expecting && !p.Alive() {
				_, err := p.Wait(0)
				s.fail("agent of node%d (%s) exited on its own: %v", n.i, p.Name, err)
				n.mu.Lock()
				n.agent = nil
				n.mu.Unlock()
			}
		}
	}
}

// restoreAll writes every node's base file and reloads it, so the run
// ends in the configuration it started with.
func (s *soak) restoreAll() {
	for _, n := range s.nodes {
		n.mu.Lock()
		n.hupOn = false
		n.mu.Unlock()
		s.writeConfig(n, configValid)
		if p := n.proc(); p != nil && p.Alive() {
			if _, err := s.reload(n); err != nil {
				s.fail("final reload of node%d: %v", n.i, err)
			}
		}
	}
}

// reload sends SIGHUP and returns the log line that says how the reload
// ended.
func (s *soak) reload(n *node) (string, error) {
	p := n.proc()
	from := len(p.Output())
	if err := p.Signal(syscall.SIGHUP); err != nil {
		return "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(p.Output()[from:], "\n") {
			if strings.Contains(l, "reload refused") || strings.Contains(l, "configuration reloaded") {
				return l, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("no word of the reload in the log within 10s")
}

// footprint is what a leak would grow.
type footprint struct {
	Node       int     `json:"node"`
	Pid        int     `json:"pid"`
	Starts     int     `json:"incarnations"`
	FDs        int     `json:"fds"`
	Goroutines int     `json:"goroutines"`
	RSSKiB     int     `json:"rss_kib"`
	PeakRSSKiB int     `json:"peak_rss_kib"` // over the run so far, any incarnation
	HeapKiB    int     `json:"heap_inuse_kib"`
	CPUSeconds float64 `json:"cpu_seconds"` // all incarnations so far
}

func (s *soak) footprints() []footprint {
	var out []footprint
	for _, n := range s.nodes {
		p := n.proc()
		if p == nil || !p.Alive() {
			out = append(out, footprint{Node: n.i})
			continue
		}
		f := footprint{Node: n.i, Pid: p.Pid()}
		n.mu.Lock()
		f.Starts = n.starts
		f.CPUSeconds = n.cpuPast
		n.mu.Unlock()
		f.CPUSeconds += cpuSeconds(p.Pid())
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
		f.FDs = len(ents)
		f.RSSKiB = rssKiB(p.Pid())
		n.mu.Lock()
		n.peakRSS = max(n.peakRSS, f.RSSKiB)
		f.PeakRSSKiB = n.peakRSS
		n.mu.Unlock()
		// Goroutines of API requests just served take a moment to end.
		best, heap := -1, -1
		for range 10 {
			if body, err := scrape(n.ns, metricsAddr, "/metrics"); err == nil {
				if g, ok := metricValue(body, "go_goroutines"); ok && (best < 0 || int(g) < best) {
					best = int(g)
				}
				if h, ok := metricValue(body, "go_memstats_heap_inuse_bytes"); ok && (heap < 0 || int(h)>>10 < heap) {
					heap = int(h) >> 10
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		f.Goroutines, f.HeapKiB = best, heap
		out = append(out, f)
	}
	return out
}

// rssKiB is the resident set of pid, 0 when it cannot be read.
func rssKiB(pid int) int {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// cpuSeconds is the user and system time of pid.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func scrape(ns *nstest.Netns, addr, path string) (string, error) {
	var body string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
		b, err := io.ReadAll(c)
		body = string(b)
		return err
	})
	return body, err
}

func metricValue(body, name string) (float64, bool) {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

func tailStr(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]" + s[len(s)-n:]
}
