//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxdp/vxdp/api"
	"github.com/vxdp/vxdp/internal/nstest"
)

// The scale phase: one agent, many local endpoints, many remote nodes.
//
//	scale-node   the agent; eth0 10.200.0.1/16 (veth), pod CIDR 10.1.0.0/21
//	scale-podNNN one namespace per endpoint, endpoint i at 10.1.0.10+i
//	scale-peer   the other end of eth0, holding the address of the last
//	             remote node, so the tunnel packets for it can be counted
//
// Remote node i (from 0) is 10.200.0.0+2+i with pod CIDR 10.64.0.0+256*i/24
// (inside 10.64.0.0/10); none of them runs anything except the last one's
// packet counter. Every endpoint needs its own namespace: the agent gives
// each endpoint's device the default route of its namespace, and a second
// default route in one namespace is refused.
const (
	scaleNodeNS   = "scale-node"
	scalePeerNS   = "scale-peer"
	scaleNodeIP   = "10.200.0.1"
	scalePodCIDR  = "10.1.0.0/21"
	scaleHostIP   = "10.1.0.1"
	maxScaleEPs   = 2000 // 10.1.0.10 .. 10.1.7.217
	maxScaleNodes = 16000
	// scaleBench is the Go benchmark run with --scale-gobench.
	scaleBench = "^BenchmarkScale"
)

func scalePodNS(i int) string { return fmt.Sprintf("scale-pod%03d", i+1) }

func scaleEndpointIP(i int) string {
	a := netip.AddrFrom4([4]byte{10, 1, byte((10 + i) >> 8), byte(10 + i)})
	return a.String()
}

// scaleSettle is how long the phase waits after a series of calls before
// it reads the agent's memory a second time: the agent hands its free heap
// back a second after the last change.
const scaleSettle = 3 * time.Second

// scaleNode is remote node i; the Go benchmarks in bench/ use the same
// numbering.
func scaleNode(i int) api.NodeRequest {
	ip := netip.AddrFrom4([4]byte{10, 200, byte((i + 2) >> 8), byte(i + 2)})
	cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 64 + byte(i>>8), byte(i), 0}), 24)
	return api.NodeRequest{Name: fmt.Sprintf("node%05d", i+1), IP: ip.String(), PodCIDR: cidr.String()}
}

// bulkTime is one request that added many nodes.
type bulkTime struct {
	Nodes int     `json:"nodes"`
	Secs  float64 `json:"secs"`
}

// scaleSingles is how many of the nodes are added one call each after the
// bulk request: enough for per-call figures at full table size.
func scaleSingles(nodes int) int { return min(100, nodes/2) }

// scaleReport is the outcome of the scale phase.
type scaleReport struct {
	Status    string `json:"status"` // ok, error, interrupted, skipped
	Reason    string `json:"reason,omitempty"`
	Detail    string `json:"detail,omitempty"`
	Endpoints int    `json:"endpoints"`
	Nodes     int    `json:"nodes"`
	// EndpointAdds and NodeAdds time the API calls, made one after
	// another from this program with the api package's client. The nodes
	// go in two steps: all but the last few in one request (NodeBulk),
	// then those one call each (NodeAdds), at full scale.
	EndpointAdds *callTimes `json:"endpoint_adds,omitempty"`
	// CNIAdds and CNIDels time the CNI plugin's ADD and DEL, the binary
	// run as a runtime runs it, one container at a time, with the
	// endpoints already in place.
	CNIAdds   *callTimes `json:"cni_adds,omitempty"`
	CNIDels   *callTimes `json:"cni_dels,omitempty"`
	CNIReason string     `json:"cni_reason,omitempty"`
	NodeBulk  *bulkTime  `json:"node_bulk,omitempty"`
	NodeAdds  *callTimes `json:"node_adds,omitempty"`
	// RSS is the agent's VmRSS in KiB at each step, PeakRSS its VmHWM at
	// the end.
	RSS     []rssPoint `json:"rss_kib"`
	PeakRSS int64      `json:"peak_rss_kib,omitempty"`
	// What the agent reported after the additions.
	StatusEndpoints int     `json:"status_endpoints"`
	StatusNodes     int     `json:"status_nodes"`
	FIBEntries      int     `json:"fib_entries"`
	HostRoutes      int     `json:"host_routes"` // kernel routes through vxdp_host
	Checks          []check `json:"checks,omitempty"`
	// StopSecs is how long the agent took from SIGTERM to its exit,
	// removing its devices and routes.
	StopSecs float64 `json:"agent_stop_s,omitempty"`
	// GoBench holds the medians of the scale benchmarks in bench/.
	GoBench       []goBench `json:"go_benchmarks,omitempty"`
	GoBenchCmd    string    `json:"go_benchmark_command,omitempty"`
	GoBenchReason string    `json:"go_benchmark_reason,omitempty"`
}

type rssPoint struct {
	Step string `json:"step"`
	KiB  int64  `json:"kib"`
	// The growth since an earlier point per endpoint or node added in
	// between, on the points where one kind of entry was added.
	PerEndpointKiB float64 `json:"per_endpoint_kib,omitempty"`
	PerNodeKiB     float64 `json:"per_node_kib,omitempty"`
}

// check is one forwarding check made after all the additions.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Result string `json:"result"`
}

// callTimes summarises the durations of a series of API calls.
type callTimes struct {
	Calls     int     `json:"calls"`
	TotalSecs float64 `json:"total_s"` // wall clock of the whole series
	MeanMs    float64 `json:"mean_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	// The mean of the first and the last tenth of the calls: a call that
	// costs more the more entries exist shows here.
	FirstTenthMs float64 `json:"first_tenth_mean_ms"`
	LastTenthMs  float64 `json:"last_tenth_mean_ms"`
}

func summarizeCalls(d []time.Duration, total time.Duration) *callTimes {
	if len(d) == 0 {
		return nil
	}
	ms := func(x time.Duration) float64 { return float64(x) / 1e6 }
	mean := func(s []time.Duration) float64 {
		var t time.Duration
		for _, x := range s {
			t += x
		}
		return ms(t) / float64(len(s))
	}
	tenth := max(len(d)/10, 1)
	c := &callTimes{Calls: len(d), TotalSecs: total.Seconds(), MeanMs: mean(d),
		FirstTenthMs: mean(d[:tenth]), LastTenthMs: mean(d[len(d)-tenth:])}
	s := slices.Clone(d)
	slices.Sort(s)
	c.P50Ms = ms(s[len(s)/2])
	c.P99Ms = ms(s[min(len(s)-1, len(s)*99/100)])
	c.MaxMs = ms(s[len(s)-1])
	return c
}

// procStatusKiB reads a "kB" field (VmRSS, VmHWM) of /proc/<pid>/status.
func procStatusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			num, _, _ := strings.Cut(strings.TrimSpace(v), " ")
			return strconv.ParseInt(num, 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// buildScale creates the namespaces and the underlay link of the scale
// phase and starts its agent, without endpoints or nodes.
func buildScale(ctx context.Context, l *lab, opts *options) (*nstest.Proc, string, *agentStatus, error) {
	for _, ns := range []string{scaleNodeNS, scalePeerNS} {
		if err := l.addNetns(ns); err != nil {
			return nil, "", nil, err
		}
	}
	peerIP := scaleNode(opts.scaleNodes - 1).IP
	if err := l.AddVeth(l.netns(scaleNodeNS), "eth0", scaleNodeIP+"/16", l.netns(scalePeerNS), "eth0", peerIP+"/16", underlayMTU); err != nil {
		return nil, "", nil, err
	}
	cfg := fmt.Sprintf("node-name: scale\nnode-ip: %s\npod-cidr: %s\ndevice: eth0\nunderlay: udp\nstate-dir: %s\n",
		scaleNodeIP, scalePodCIDR, filepath.Join(l.dir, "scale-state"))
	cfgPath := filepath.Join(l.dir, "scale.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, "", nil, err
	}
	sock := filepath.Join(l.dir, "scale.sock")
	p, err := l.start(scaleNodeNS, "scale-agent", opts.vxdpBin, "agent", "--config", cfgPath, "--socket", sock, "--log-level", "warn")
	if err != nil {
		return nil, "", nil, err
	}
	st, err := waitAgent(ctx, opts.vxdpBin, p, sock)
	if err != nil {
		return nil, "", nil, fmt.Errorf("agent: %w", err)
	}
	return p, sock, st, nil
}

// runScale builds the scale topology, adds --scale-endpoints endpoints and
// then --scale-nodes nodes through the API, timing the calls and reading
// the agent's memory after each step, checks that traffic still flows and
// stops the agent. The caller tears the namespaces down.
func runScale(ctx context.Context, l *lab, opts *options, udpBin string) *scaleReport {
	sr := &scaleReport{Endpoints: opts.scaleEndpoints, Nodes: opts.scaleNodes}
	err := scaleSteps(ctx, l, opts, udpBin, sr)
	switch {
	case err != nil && ctx.Err() != nil:
		sr.Status, sr.Reason = "interrupted", err.Error()
	case err != nil:
		sr.Status, sr.Reason = "error", err.Error()
	default:
		sr.Status = "ok"
		for _, c := range sr.Checks {
			if !c.OK {
				sr.Status, sr.Reason = "error", "check failed: "+c.Name
			}
		}
	}
	if sr.Status != "ok" {
		l.logf("scale: %s: %s", sr.Status, sr.Reason)
	}
	return sr
}

func scaleSteps(ctx context.Context, l *lab, opts *options, udpBin string, sr *scaleReport) error {
	logf := l.logf
	logf("scale: starting one agent for %d endpoints and %d remote nodes", opts.scaleEndpoints, opts.scaleNodes)
	agent, sock, st, err := buildScale(ctx, l, opts)
	if err != nil {
		return err
	}
	sr.Detail = fmt.Sprintf("vxdp %s, underlay %s (%s)", st.Version, st.Underlay, st.UnderlayReason)
	rss := func(step string) error {
		kib, err := procStatusKiB(agent.Pid(), "VmRSS")
		if err != nil {
			return fmt.Errorf("agent memory: %w", err)
		}
		sr.RSS = append(sr.RSS, rssPoint{Step: step, KiB: kib})
		logf("scale: agent RSS %s: %.1f MiB", step, float64(kib)/1024)
		return nil
	}
	// settled reads the memory again scaleSettle after a series of calls.
	settled := func(step string) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(scaleSettle):
		}
		return rss(fmt.Sprintf("%s, %.0f s later", step, scaleSettle.Seconds()))
	}
	// growth sets the per-entry growth of the last two points since
	// point base.
	growth := func(base, entries int, perNode bool) {
		for i := len(sr.RSS) - 2; i < len(sr.RSS); i++ {
			g := float64(sr.RSS[i].KiB-sr.RSS[base].KiB) / float64(entries)
			if perNode {
				sr.RSS[i].PerNodeKiB = g
			} else {
				sr.RSS[i].PerEndpointKiB = g
			}
		}
	}
	if err := rss("started, no endpoints, no nodes"); err != nil {
		return err
	}
	c := api.NewClient(sock)

	for i := 0; i < opts.scaleEndpoints; i++ {
		if err := l.addNetns(scalePodNS(i)); err != nil {
			return err
		}
	}
	times := make([]time.Duration, 0, opts.scaleEndpoints)
	start := time.Now()
	for i := 0; i < opts.scaleEndpoints; i++ {
		req := api.EndpointRequest{Name: fmt.Sprintf("pod%03d", i+1), IP: scaleEndpointIP(i),
			Netns: l.netns(scalePodNS(i)).Path}
		t := time.Now()
		if err := c.Do(ctx, "POST", "/v1/endpoints", req, nil); err != nil {
			return fmt.Errorf("endpoint %d of %d: %w", i+1, opts.scaleEndpoints, err)
		}
		times = append(times, time.Since(t))
	}
	sr.EndpointAdds = summarizeCalls(times, time.Since(start))
	logf("scale: %d endpoints added in %.2f s", opts.scaleEndpoints, sr.EndpointAdds.TotalSecs)
	if err := rss(fmt.Sprintf("right after %d endpoints", opts.scaleEndpoints)); err != nil {
		return err
	}
	if err := settled(fmt.Sprintf("after %d endpoints", opts.scaleEndpoints)); err != nil {
		return err
	}
	growth(0, opts.scaleEndpoints, false)

	if err := scaleCNI(ctx, l, opts, sock, sr); err != nil {
		return err
	}
	// The nodes' growth counts from here, after what the CNI cycles left.
	nodeBase := len(sr.RSS)
	if err := settled("before the nodes"); err != nil {
		return err
	}

	reqs := make([]api.NodeRequest, opts.scaleNodes)
	for i := range reqs {
		reqs[i] = scaleNode(i)
	}
	bulk := opts.scaleNodes - scaleSingles(opts.scaleNodes)
	if bulk > 0 {
		start = time.Now()
		if err := c.Do(ctx, "POST", "/v1/nodes", reqs[:bulk], nil); err != nil {
			return fmt.Errorf("%d nodes in one request: %w", bulk, err)
		}
		sr.NodeBulk = &bulkTime{Nodes: bulk, Secs: time.Since(start).Seconds()}
		logf("scale: %d nodes added in one request in %.3f s", bulk, sr.NodeBulk.Secs)
	}
	times = make([]time.Duration, 0, opts.scaleNodes-bulk)
	start = time.Now()
	for i, req := range reqs[bulk:] {
		t := time.Now()
		if err := c.Do(ctx, "POST", "/v1/nodes", req, nil); err != nil {
			return fmt.Errorf("node %d of %d: %w", bulk+i+1, opts.scaleNodes, err)
		}
		times = append(times, time.Since(t))
	}
	sr.NodeAdds = summarizeCalls(times, time.Since(start))
	logf("scale: %d more nodes added one call each in %.2f s (per call: p50 %.2f ms, max %.2f ms)", opts.scaleNodes-bulk,
		sr.NodeAdds.TotalSecs, sr.NodeAdds.P50Ms, sr.NodeAdds.MaxMs)
	if err := rss(fmt.Sprintf("right after %d endpoints and %d nodes", opts.scaleEndpoints, opts.scaleNodes)); err != nil {
		return err
	}
	if err := settled(fmt.Sprintf("after %d endpoints and %d nodes", opts.scaleEndpoints, opts.scaleNodes)); err != nil {
		return err
	}
	growth(nodeBase, opts.scaleNodes, true)

	var status api.Status
	if err := c.Do(ctx, "GET", "/v1/status", nil, &status); err != nil {
		return err
	}
	sr.StatusEndpoints, sr.StatusNodes, sr.FIBEntries = status.Endpoints, status.Nodes, status.FIBEntries
	sr.Checks = append(sr.Checks, check{Name: "agent status counts",
		OK:     status.Healthy && status.Endpoints == opts.scaleEndpoints && status.Nodes == opts.scaleNodes,
		Result: fmt.Sprintf("healthy %v, %d endpoints, %d nodes, %d FIB entries", status.Healthy, status.Endpoints, status.Nodes, status.FIBEntries)})
	out, err := l.exec(ctx, scaleNodeNS, cmdTimeout, "ip", "-4", "route", "show", "dev", "vxdp_host")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(out), "\n") {
		// The remote pod CIDRs; the pod CIDR's own route is not counted.
		if strings.HasPrefix(line, "10.") && !strings.HasPrefix(line, scalePodCIDR) {
			sr.HostRoutes++
		}
	}
	sr.Checks = append(sr.Checks, check{Name: "kernel routes to remote pod CIDRs", OK: sr.HostRoutes == opts.scaleNodes,
		Result: fmt.Sprintf("%d routes through vxdp_host", sr.HostRoutes)})

	sr.Checks = append(sr.Checks, scaleChecks(ctx, l, opts, udpBin)...)
	for _, c := range sr.Checks {
		logf("scale: check %s: %s (%s)", c.Name, map[bool]string{true: "ok", false: "FAILED"}[c.OK], c.Result)
	}
	if err := rss("after the checks"); err != nil {
		return err
	}
	if sr.PeakRSS, err = procStatusKiB(agent.Pid(), "VmHWM"); err != nil {
		return fmt.Errorf("agent memory: %w", err)
	}

	// A clean stop removes every endpoint device and node route.
	t := time.Now()
	if err := agent.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop the agent: %w", err)
	}
	if _, err := agent.Wait(30 * time.Second); errors.Is(err, nstest.ErrWaitTimeout) {
		return fmt.Errorf("agent still running 30 s after SIGTERM")
	}
	sr.StopSecs = time.Since(t).Seconds()
	logf("scale: agent stopped in %.2f s", sr.StopSecs)
	return nil
}

// scaleChecks sends traffic through the loaded agent: between two local
// endpoints, from an endpoint to the node, and from an endpoint to a pod
// of the last remote node, where the tunnel packets are counted at that
// node's address.
func scaleChecks(ctx context.Context, l *lab, opts *options, udpBin string) []check {
	first, last := 0, opts.scaleEndpoints-1
	var out []check
	ping := func(name, dst string) {
		c := check{Name: name}
		// The first answer may take a moment (the pod's kernel, the
		// agent's workers); then five are counted.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := l.exec(ctx, scalePodNS(first), 5*time.Second, "ping", "-c", "1", "-W", "1", dst)
			if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		res, _ := l.exec(ctx, scalePodNS(first), 10*time.Second, "ping", "-c", "5", "-i", "0.2", "-W", "1", dst)
		tx, rx := pingCounts(string(res))
		c.OK = tx == 5 && rx == 5
		c.Result = fmt.Sprintf("%d of %d echo requests answered", rx, tx)
		out = append(out, c)
	}
	if last != first {
		ping(fmt.Sprintf("ping %s -> %s (local endpoints)", scaleEndpointIP(first), scaleEndpointIP(last)), scaleEndpointIP(last))
	}
	ping(fmt.Sprintf("ping %s -> %s (the node)", scaleEndpointIP(first), scaleHostIP), scaleHostIP)

	node := scaleNode(opts.scaleNodes - 1)
	dst := strings.TrimSuffix(node.PodCIDR, ".0/24") + ".10"
	c := check{Name: fmt.Sprintf("%s -> %s (node %s at %s): tunnel packets at that address", scaleEndpointIP(first), dst, node.Name, node.IP)}
	type recvOut struct {
		out []byte
		err error
	}
	got := make(chan recvOut, 1)
	go func() {
		out, err := l.exec(ctx, scalePeerNS, 15*time.Second, udpBin, "recv", "-listen", node.IP+":"+vxlanPort,
			"-warmup", "0s", "-window", "3s", "-wait", "5s", "-timeout", "10s")
		got <- recvOut{out, err}
	}()
	time.Sleep(300 * time.Millisecond)
	// Nobody answers: the ping fails, the count is what matters.
	_, _ = l.exec(ctx, scalePodNS(first), 10*time.Second, "ping", "-c", "5", "-i", "0.2", "-W", "1", dst)
	r := <-got
	var res struct {
		Total uint64 `json:"total"`
	}
	switch {
	case r.err != nil:
		c.Result = r.err.Error()
	case json.Unmarshal(r.out, &res) != nil:
		c.Result = "receiver output: " + oneLine(string(r.out))
	default:
		c.OK = res.Total == 5
		c.Result = fmt.Sprintf("%d of 5 echo requests arrived as VXLAN datagrams at %s:%s", res.Total, node.IP, vxlanPort)
	}
	return append(out, c)
}

var pingLine = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`)

// pingCounts reads ping's summary line.
func pingCounts(out string) (tx, rx int) {
	m := pingLine.FindStringSubmatch(out)
	if m == nil {
		return 0, 0
	}
	tx, _ = strconv.Atoi(m[1])
	rx, _ = strconv.Atoi(m[2])
	return tx, rx
}

// goBench is one benchmark of `go test -bench`, the median of its runs.
type goBench struct {
	Name    string             `json:"name"`
	Runs    int                `json:"runs"`
	Medians map[string]float64 `json:"medians"` // by unit: ns/op, allocs/op, B/op, ns/node, packets/s ...
	Min     map[string]float64 `json:"min"`
	Max     map[string]float64 `json:"max"`
}

// runGoBench runs the scale benchmarks of bench/ (three times each) and
// keeps the median of every figure.
func runGoBench(ctx context.Context, logf func(string, ...any), root string, sr *scaleReport) {
	args := []string{"test", "-run", "^$", "-bench", scaleBench, "-benchmem", "-count", "3", "./bench"}
	sr.GoBenchCmd = "go " + strings.Join(args, " ")
	if _, err := os.Stat(filepath.Join(root, "bench", "engine_test.go")); err != nil {
		sr.GoBenchReason = "no source tree: " + err.Error()
		return
	}
	logf("scale: %s", sr.GoBenchCmd)
	out, err := runLocal(ctx, 5*time.Minute, append([]string{"go", "-C", root}, args...)...)
	if err != nil {
		sr.GoBenchReason = err.Error()
		logf("scale: go benchmarks: %v", err)
		return
	}
	sr.GoBench = parseGoBench(string(out))
	if len(sr.GoBench) == 0 {
		sr.GoBenchReason = "no benchmark lines in the output"
	}
	for _, b := range sr.GoBench {
		logf("scale: %s: %.1f ns/op, %.0f allocs/op (median of %d)", b.Name, b.Medians["ns/op"], b.Medians["allocs/op"], b.Runs)
	}
}

// parseGoBench reads `go test -bench` lines ("BenchmarkX-2  N  v unit  v
// unit ...") and returns per benchmark the median, least and greatest
// value of each unit, in the order they first appear.
func parseGoBench(out string) []goBench {
	vals := map[string]map[string][]float64{}
	var order []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		name := f[0]
		// The -GOMAXPROCS suffix.
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if vals[name] == nil {
			vals[name] = map[string][]float64{}
			order = append(order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			vals[name][f[i+1]] = append(vals[name][f[i+1]], v)
		}
	}
	var res []goBench
	for _, name := range order {
		b := goBench{Name: name, Medians: map[string]float64{}, Min: map[string]float64{}, Max: map[string]float64{}}
		for unit, v := range vals[name] {
			slices.Sort(v)
			b.Runs = max(b.Runs, len(v))
			b.Medians[unit], b.Min[unit], b.Max[unit] = median(v), v[0], v[len(v)-1]
		}
		res = append(res, b)
	}
	return res
}

// scaleCNI runs opts.scaleCNICycles ADD/DEL cycles of one container
// through the CNI plugin binary and times each verb, process start
// included, as a runtime sees it.
func scaleCNI(ctx context.Context, l *lab, opts *options, sock string, sr *scaleReport) error {
	switch {
	case opts.scaleCNICycles == 0:
		sr.CNIReason = "--scale-cni-cycles 0"
		return nil
	case opts.cniBin == "":
		sr.CNIReason = "no CNI plugin binary (make build)"
		return nil
	}
	const ns = "scale-cni"
	if err := l.addNetns(ns); err != nil {
		return err
	}
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "scale", "type": "vxdp-cni", "socket": %q}`, sock)
	verb := func(cmd, id string) (time.Duration, error) {
		c := exec.CommandContext(ctx, opts.cniBin)
		c.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + id,
			"CNI_NETNS=" + l.netns(ns).Path, "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin"}
		c.Stdin = strings.NewReader(conf)
		start := time.Now()
		out, err := c.Output()
		if err != nil {
			return 0, fmt.Errorf("CNI %s of %s: %w: %s", cmd, id, err, out)
		}
		return time.Since(start), nil
	}
	adds := make([]time.Duration, 0, opts.scaleCNICycles)
	dels := make([]time.Duration, 0, opts.scaleCNICycles)
	start := time.Now()
	for i := range opts.scaleCNICycles {
		id := fmt.Sprintf("scale%05d", i)
		a, err := verb("ADD", id)
		if err != nil {
			return err
		}
		d, err := verb("DEL", id)
		if err != nil {
			return err
		}
		adds, dels = append(adds, a), append(dels, d)
	}
	total := time.Since(start)
	sr.CNIAdds, sr.CNIDels = summarizeCalls(adds, total), summarizeCalls(dels, total)
	l.logf("scale: %d CNI ADD/DEL cycles at %d endpoints: ADD p50 %.1f ms p99 %.1f ms, DEL p50 %.1f ms p99 %.1f ms",
		opts.scaleCNICycles, opts.scaleEndpoints, sr.CNIAdds.P50Ms, sr.CNIAdds.P99Ms, sr.CNIDels.P50Ms, sr.CNIDels.P99Ms)
	return nil
}
