//go:build linux

// Command vxdp-bench compares pod-to-pod networking across two nodes built
// several ways in one run: the Linux kernel's vxlan device set up the way
// flannel does it, vxdp on its UDP underlay and vxdp on AF_XDP, Open
// vSwitch's userspace datapath with a plain and an AF_XDP underlay port
// (ovs, ovs-afxdp: the userspace VXLAN dataplane a user would otherwise
// pick); and the first two again with IPv6 pods over an IPv6 underlay
// (kernel-ipv6, vxdp-udp-ipv6), compared with each other and with their
// IPv4 figures. For each it measures TCP throughput (iperf3, 1 and 4
// streams), the 64-byte UDP rate a pod receives, TCP request/response
// latency, ping round trips at 5 ms intervals and the CPU spent (also by
// the dataplane processes while idle), and prints one Markdown table with
// the medians and the ratios to the kernel and to Open vSwitch. A last
// phase, "scale", loads one agent with 500 endpoints and 5,000 remote
// nodes through its API and reports the time the additions took and the
// agent's memory, and runs the Go benchmarks of the per-packet cost with
// 200 endpoints and 1,000 nodes.
//
//	go run ./bench/cmd/vxdp-bench [--modes kernel,vxdp-udp,vxdp-afxdp,ovs,ovs-afxdp,kernel-ipv6,vxdp-udp-ipv6,vxdp-afxdp-ipv6,scale] [--reps 3] [--duration 5] [--json FILE]
//	go run ./bench/cmd/vxdp-bench --modes scale [--scale-endpoints 500] [--scale-nodes 5000]
//
// It needs root, iproute2, bin/vxdp (make build), the go command (it builds
// its tools and runs the scale benchmarks) and, for the comparison, iperf3;
// the OVS modes need openvswitch-switch and ethtool (make bench-deps) and
// are reported "not available" without them.
// Everything it makes lives in network namespaces (internal/nstest labs,
// one per mode, named "vx<6 hex digits>-...") and is removed at the end of
// the mode, also on an error or an interrupt, with the OVS instances'
// private directories; the root namespace is never configured. AF_XDP is
// reported "not available" when the agent cannot run it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// allModes are what --modes accepts. All but "scale" build the two-node
// cluster and are columns of the comparison table; "scale" is a phase of
// its own with its own table.
var allModes = []string{"kernel", "vxdp-udp", "vxdp-afxdp", "ovs", "ovs-afxdp", "kernel-ipv6", "vxdp-udp-ipv6", "vxdp-afxdp-ipv6", "scale"}

type options struct {
	modes       []string
	reps        int
	duration    time.Duration
	jsonPath    string
	mdPath      string
	vxdpBin     string
	cniBin      string // the CNI plugin, for the scale phase's ADD/DEL timing ("" skips it)
	toolsDir    string
	timeout     time.Duration
	rrCount     int
	udpFlows    int
	udpThreads  []int
	udpBusy     int // sender threads of the busy-pod row; 0: not run
	extraReps   int
	udpWindow   time.Duration
	keep        bool
	removeStale bool
	ovsSpread   bool    // ovs-afxdp: node i's PMD thread on CPU i
	underlayGRO bool    // GRO and UDP GRO forwarding on the node-to-node veth
	podCgroups  bool    // each pod's processes in a CPU cgroup of its own
	nodeCgroups bool    // each node's dataplane processes in a CPU cgroup of their own
	nodeWeight  int     // --node-cgroups: the nodes' groups' CPU weight
	vxdpKeys    keyList // key=value pairs added to the vxdp agents' configuration
	// The scale phase.
	scaleEndpoints int
	scaleCNICycles int
	scaleNodes     int
	scaleGoBench   bool
}

// compared lists the selected modes that are columns of the comparison
// table, i.e. all but scale.
func (o *options) compared() []string {
	var out []string
	for _, m := range o.modes {
		if m != "scale" {
			out = append(out, m)
		}
	}
	return out
}

func (o *options) scale() bool { return slices.Contains(o.modes, "scale") }

// secondsFlag accepts a plain number of seconds ("5", "2.5") or a Go
// duration ("5s", "1m").
type secondsFlag struct{ d *time.Duration }

func (f secondsFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return ""
	}
	return f.d.String()
}

func (f secondsFlag) Set(s string) error {
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		*f.d = time.Duration(v * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want seconds or a duration like 5s")
	}
	*f.d = d
	return nil
}

func parseFlags(args []string, root string) (*options, error) {
	o := &options{duration: 5 * time.Second, udpWindow: 3 * time.Second}
	fs := flag.NewFlagSet("vxdp-bench", flag.ContinueOnError)
	modes := fs.String("modes", strings.Join(allModes, ","), "modes to measure, in this order: kernel, vxdp-udp, vxdp-afxdp, ovs, ovs-afxdp (Open vSwitch's userspace datapath), kernel-ipv6, vxdp-udp-ipv6, vxdp-afxdp-ipv6 (the comparison), scale (one agent with many endpoints and nodes)")
	fs.IntVar(&o.reps, "reps", 3, "repetitions of every test; the table shows medians")
	fs.Var(secondsFlag{&o.duration}, "duration", "seconds per TCP throughput test (also bounds the latency test)")
	fs.StringVar(&o.jsonPath, "json", "bench-results.json", "write every figure and repetition here as JSON (empty: don't)")
	fs.StringVar(&o.mdPath, "md", "", "also write the Markdown report to this file")
	fs.StringVar(&o.vxdpBin, "vxdp", filepath.Join(root, "bin", "vxdp"), "vxdp binary (make build)")
	fs.StringVar(&o.cniBin, "vxdp-cni", filepath.Join(root, "bin", "vxdp-cni"), "the CNI plugin binary (make build), timed in the scale phase; \"\" leaves that out")
	fs.IntVar(&o.scaleCNICycles, "scale-cni-cycles", 100, "scale: ADD/DEL cycles through the CNI plugin with the endpoints in place")
	fs.Var(&o.vxdpKeys, "vxdp-key", "key=value added to both vxdp agents' configuration, such as busy-poll=50us (repeat for more keys)")
	fs.StringVar(&o.toolsDir, "tools", "", "directory with prebuilt udpblast and tcprr (default: build them from bench/tools)")
	fs.Var(secondsFlag{&o.timeout}, "timeout", "bound on the whole run (default: from modes, reps and duration)")
	fs.IntVar(&o.rrCount, "rr-count", 20000, "request/response round trips per repetition")
	fs.Var(secondsFlag{&o.udpWindow}, "udp-window", "seconds the packet-rate receiver counts (the sender runs 1.5 s longer)")
	fs.IntVar(&o.udpFlows, "udp-flows", 4, "UDP flows (source ports) of the packet-rate sender")
	threads := fs.String("udp-threads", "1,2", "thread counts of the packet-rate sender to try; the best delivered rate counts")
	fs.IntVar(&o.udpBusy, "udp-busy-threads", 4, "sender threads of the busy-pod row, where the sending pod keeps every CPU busy (reported on its own); 0 leaves it out")
	fs.IntVar(&o.extraReps, "extra-reps", 1, "repetitions added per mode when other processes disturbed one")
	fs.BoolVar(&o.keep, "keep", false, "keep the run directory (agent logs, configurations)")
	fs.BoolVar(&o.ovsSpread, "ovs-pmd-spread", false, "ovs-afxdp: pin node1's PMD thread to CPU 0 and node2's to CPU 1 instead of leaving the placement to OVS (which puts both on one CPU of a two-CPU machine)")
	fs.BoolVar(&o.nodeCgroups, "node-cgroups", false, "run each node's dataplane processes (the vxdp agent, Open vSwitch's daemons) in a CPU cgroup of their own, as a service manager places a service; with --pod-cgroups, a node as a container runtime and a service manager lay it out")
	fs.IntVar(&o.nodeWeight, "node-cgroup-weight", 100, "with --node-cgroups: the CPU weight of each node's group, on cgroup v2's scale (1-10000; 100 is the default of every group, as systemd's CPUWeight=)")
	fs.BoolVar(&o.podCgroups, "pod-cgroups", false, "run each pod's processes in a CPU cgroup of its own, as a container runtime places pods, so that the CPUs are shared between pods before threads (the dataplane processes stay in the harness's cgroup)")
	fs.BoolVar(&o.underlayGRO, "underlay-gro", false, "turn on GRO and UDP GRO forwarding on both ends of the node-to-node veth (kernel and vxdp modes), so that it receives through NAPI as a NIC's queue does: its sockets then have a NAPI ID that socket busy polling can act on")
	fs.BoolVar(&o.removeStale, "remove-stale", false, "first delete namespaces (and the groups of --pod-cgroups and --node-cgroups) left by earlier runs of this program that were killed")
	fs.IntVar(&o.scaleEndpoints, "scale-endpoints", 500, fmt.Sprintf("scale: local endpoints added through the API, each in a namespace of its own (1..%d)", maxScaleEPs))
	fs.IntVar(&o.scaleNodes, "scale-nodes", 5000, fmt.Sprintf("scale: remote nodes added through the API after the endpoints (1..%d)", maxScaleNodes))
	fs.BoolVar(&o.scaleGoBench, "scale-gobench", true, "scale: also run the Go benchmarks "+scaleBench+" in bench/ (per-packet cost and node additions with 200 endpoints and 1,000 nodes)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		ok := false
		for _, a := range allModes {
			ok = ok || a == m
		}
		if !ok {
			return nil, fmt.Errorf("--modes: unknown mode %q (want %s)", m, strings.Join(allModes, ", "))
		}
		for _, seen := range o.modes {
			if seen == m {
				return nil, fmt.Errorf("--modes: %q twice", m)
			}
		}
		o.modes = append(o.modes, m)
	}
	switch {
	case len(o.modes) == 0:
		return nil, errors.New("--modes: none given")
	case o.reps < 1 || o.reps > 50:
		return nil, errors.New("--reps: want 1..50")
	case o.duration < time.Second || o.duration > 5*time.Minute:
		return nil, errors.New("--duration: want 1s..5m")
	case o.extraReps < 0 || o.extraReps > 10:
		return nil, errors.New("--extra-reps: want 0..10")
	case o.udpWindow < time.Second || o.udpWindow > time.Minute:
		return nil, errors.New("--udp-window: want 1s..1m")
	case o.rrCount < 1:
		return nil, errors.New("--rr-count: want at least 1")
	case o.udpFlows < 1 || o.udpFlows > 256:
		return nil, errors.New("--udp-flows: want 1..256")
	case o.scaleEndpoints < 1 || o.scaleEndpoints > maxScaleEPs:
		return nil, fmt.Errorf("--scale-endpoints: want 1..%d", maxScaleEPs)
	case o.scaleNodes < 1 || o.scaleNodes > maxScaleNodes:
		return nil, fmt.Errorf("--scale-nodes: want 1..%d", maxScaleNodes)
	case o.nodeWeight < 1 || o.nodeWeight > 10000:
		return nil, errors.New("--node-cgroup-weight: want 1..10000")
	case o.nodeWeight != 100 && !o.nodeCgroups:
		return nil, errors.New("--node-cgroup-weight: only with --node-cgroups")
	}
	for _, t := range strings.Split(*threads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(t))
		if err != nil || n < 1 || n > o.udpFlows {
			return nil, fmt.Errorf("--udp-threads: %q: want numbers in 1..udp-flows", t)
		}
		o.udpThreads = append(o.udpThreads, n)
	}
	if o.udpBusy < 0 || o.udpBusy > o.udpFlows {
		return nil, errors.New("--udp-busy-threads: want 0..udp-flows")
	}
	if o.timeout == 0 {
		// Setup and teardown take well under 45 s a mode; a repetition is
		// a bounded wait for a quiet machine, then tests of about
		// --duration or --udp-window each plus their start-up.
		perRep := 3*(o.duration+3*time.Second) + time.Duration(len(o.udpThreads)+1)*(o.udpWindow+3*time.Second) +
			quietWait + idleWindow + 5*time.Second + 10*time.Second
		o.timeout = time.Duration(len(o.compared()))*(45*time.Second+time.Duration(o.reps+o.extraReps)*perRep) + time.Minute
		if o.scale() {
			// Generous per endpoint and node; the Go benchmarks have a
			// bound of their own.
			o.timeout += 2*time.Minute + time.Duration(o.scaleEndpoints)*time.Second + time.Duration(o.scaleNodes)*50*time.Millisecond
			if o.scaleGoBench {
				o.timeout += 5 * time.Minute
			}
		}
	}
	return o, nil
}

// moduleRoot finds the vxdp source tree from the working directory, for
// the default binary path and to build the tools.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/vxdp/vxdp\n")) {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// commandLine is how the run was started, as the user would type it.
func commandLine() string { return formatCommand(os.Args) }

// formatCommand is args as a shell would take them back: an empty
// argument or one with blanks, quotes or a dollar sign is quoted.
func formatCommand(args []string) string {
	name := args[0]
	// `go run` builds into a temporary go-build directory.
	if strings.Contains(name, "go-build") {
		name = "go run ./bench/cmd/vxdp-bench"
	}
	parts := []string{name}
	for _, a := range args[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func main() {
	os.Exit(run())
}

func run() (code int) {
	root := moduleRoot()
	opts, err := parseFlags(os.Args[1:], root)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "vxdp-bench:", err)
		return 2
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vxdp-bench: needs root (it creates network namespaces)")
		return 1
	}
	need := []string{"ip", "ping"}
	if len(opts.compared()) > 0 {
		need = append(need, "bridge", "sysctl", "iperf3")
	}
	for _, c := range need {
		if _, err := exec.LookPath(c); err != nil {
			fmt.Fprintf(os.Stderr, "vxdp-bench: %s not found (make deps installs it)\n", c)
			return 1
		}
	}
	needVXDP := false
	for _, m := range opts.modes {
		needVXDP = needVXDP || strings.HasPrefix(m, "vxdp") || m == "scale"
	}
	if needVXDP {
		if opts.vxdpBin, err = filepath.Abs(opts.vxdpBin); err == nil {
			_, err = os.Stat(opts.vxdpBin)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vxdp-bench: vxdp binary: %v (run make build, or pass --vxdp)\n", err)
			return 1
		}
	}

	// Interrupts cancel the run; the deferred teardown below still runs,
	// and further signals are absorbed instead of killing it half-way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "vxdp-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "vxdp-bench:", err)
		return 1
	}
	defer func() {
		if opts.keep {
			logf("run directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	if opts.removeStale {
		removed, err := nstest.RemoveStale()
		for _, name := range removed {
			logf("removed namespace %s left by a run that is gone", name)
		}
		if err != nil {
			logf("%v", err)
		}
		groups, err := removeStaleCgroups()
		for _, g := range groups {
			logf("removed cgroup %s left by a run that is gone", g)
		}
		if err != nil {
			logf("%v", err)
		}
	}

	if needVXDP {
		// A private copy: bin/vxdp may be rebuilt while the run goes on,
		// and all modes must measure the same build.
		b, err := os.ReadFile(opts.vxdpBin)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "vxdp"), b, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "vxdp-bench: copy vxdp:", err)
			return 1
		}
		opts.vxdpBin = filepath.Join(dir, "vxdp")
		if opts.cniBin != "" {
			if b, err := os.ReadFile(opts.cniBin); err == nil && os.WriteFile(filepath.Join(dir, "vxdp-cni"), b, 0o755) == nil {
				opts.cniBin = filepath.Join(dir, "vxdp-cni")
			} else {
				logf("no CNI plugin at %s (make build): the scale phase does not time ADD and DEL", opts.cniBin)
				opts.cniBin = ""
			}
		}
	}
	udpBin, rrBin, err := tools(ctx, opts, root, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vxdp-bench: tools:", err)
		return 1
	}
	var cgRoot cpuCgroupRoot
	if opts.podCgroups || opts.nodeCgroups {
		if cgRoot, err = findCPUCgroupRoot(); err != nil {
			fmt.Fprintln(os.Stderr, "vxdp-bench:", err)
			return 1
		}
	}

	rep := &report{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Command: commandLine(),
		Settings: settings{
			Reps: opts.reps, DurationSecs: opts.duration.Seconds(), RRCount: opts.rrCount,
			UDPFlows: opts.udpFlows, UDPThreads: opts.udpThreads, UDPWindowSecs: opts.udpWindow.Seconds(), UnderlayMTU: underlayMTU, PodMTU: podMTU, PodMTU6: podMTU6,
			UnderlayGRO: opts.underlayGRO, PodCgroups: opts.podCgroups, NodeCgroups: opts.nodeCgroups, NodeWeight: opts.nodeWeight,
		},
		Figures: figures,
	}
	logf("run directory %s, bound %v", dir, opts.timeout)
	rep.Machine = describeMachine()
	if out, err := runLocal(ctx, cmdTimeout, "iperf3", "--version"); err == nil {
		rep.Machine.Iperf3, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}

	failed := false
	for _, mode := range opts.modes {
		if ctx.Err() != nil {
			if mode == "scale" {
				rep.Scale = &scaleReport{Status: "skipped", Reason: "run interrupted or out of time"}
			} else {
				rep.Modes = append(rep.Modes, &modeReport{Mode: mode, Status: "skipped", Reason: "run interrupted or out of time"})
			}
			continue
		}
		// Each mode builds its topology in a lab of its own and removes it
		// before the next one starts.
		l, err := openLab(dir, logf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vxdp-bench:", err)
			return 1
		}
		l.underlayGRO = opts.underlayGRO
		logf("%s: namespaces prefix %s", mode, l.Prefix())
		var groups []string
		if opts.podCgroups {
			groups = append(groups, nodes[0].podNS, nodes[1].podNS)
		}
		if opts.nodeCgroups {
			groups = append(groups, nodes[0].name, nodes[1].name)
		}
		if len(groups) > 0 && mode != "scale" {
			err := l.useCgroups(cgRoot, groups)
			if err == nil && opts.nodeCgroups && opts.nodeWeight != 100 {
				for _, n := range nodes {
					if err = setCPUWeight(cgRoot, l.cgroups[n.name], opts.nodeWeight); err != nil {
						break
					}
				}
			}
			if err != nil {
				l.Close()
				fmt.Fprintln(os.Stderr, "vxdp-bench:", err)
				return 1
			}
		}
		if mode == "scale" {
			rep.Scale = runScale(ctx, l, opts, udpBin)
			if err := l.Close(); err != nil {
				logf("scale: cleanup: %v", err)
				failed = true
			}
			// After the teardown, so that the agent and its namespaces
			// do not share the machine with the benchmarks; they do not
			// depend on the agent and run even when its part failed.
			if opts.scaleGoBench && ctx.Err() == nil {
				runGoBench(ctx, logf, root, rep.Scale)
			}
			failed = failed || rep.Scale.Status != "ok"
			continue
		}
		mr := runMode(ctx, l, opts, mode, udpBin, rrBin)
		rep.Modes = append(rep.Modes, mr)
		if err := l.Close(); err != nil {
			logf("%s: cleanup: %v", mode, err)
			failed = true
		}
		if mr.Status == "error" || mr.Status == "interrupted" {
			failed = true
		}
		for _, r := range mr.Reps {
			failed = failed || len(r.Errors) > 0
		}
	}

	writeMarkdown(os.Stdout, rep)
	if opts.mdPath != "" {
		f, err := os.Create(opts.mdPath)
		if err == nil {
			writeMarkdown(f, rep)
			err = f.Close()
		}
		if err != nil {
			logf("markdown: %v", err)
			failed = true
		}
	}
	if opts.jsonPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(opts.jsonPath, append(b, '\n'), 0o644)
		}
		if err != nil {
			logf("json: %v", err)
			failed = true
		} else {
			logf("wrote %s", opts.jsonPath)
		}
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return 130
	case failed || ctx.Err() != nil:
		return 1
	}
	return 0
}

// tools returns the udpblast and tcprr binaries, building them from
// bench/tools into the run directory unless --tools names prebuilt ones.
func tools(ctx context.Context, opts *options, root, dir string) (string, string, error) {
	if opts.toolsDir != "" {
		u, r := filepath.Join(opts.toolsDir, "udpblast"), filepath.Join(opts.toolsDir, "tcprr")
		for _, p := range []string{u, r} {
			if _, err := os.Stat(p); err != nil {
				return "", "", err
			}
		}
		return u, r, nil
	}
	var out [2]string
	for i, name := range []string{"udpblast", "tcprr"} {
		out[i] = filepath.Join(dir, name)
		c := []string{"build", "-o", out[i], "./bench/tools/" + name}
		if _, err := runLocal(ctx, 2*time.Minute, append([]string{"go", "-C", root}, c...)...); err != nil {
			return "", "", err
		}
	}
	return out[0], out[1], nil
}

// runMode builds one topology, measures it --reps times and summarizes.
// The caller tears the topology down.
func runMode(ctx context.Context, l *lab, opts *options, mode, udpBin, rrBin string) *modeReport {
	mr := &modeReport{Mode: mode}
	logf := l.logf
	logf("%s: building the topology", mode)
	var e *env
	var err error
	switch mode {
	case "kernel":
		e, err = buildKernel(ctx, l)
	case "vxdp-udp":
		e, err = buildVXDP(ctx, l, opts.vxdpBin, opts.vxdpKeys.yaml(), "udp", false)
	case "vxdp-afxdp":
		e, err = buildVXDP(ctx, l, opts.vxdpBin, opts.vxdpKeys.yaml(), "afxdp", false)
	case "ovs":
		e, err = buildOVS(ctx, l, false, false)
	case "ovs-afxdp":
		e, err = buildOVS(ctx, l, true, opts.ovsSpread)
	case "kernel-ipv6":
		e, err = buildKernel6(ctx, l)
	case "vxdp-udp-ipv6":
		e, err = buildVXDP(ctx, l, opts.vxdpBin, opts.vxdpKeys.yaml(), "udp", true)
	case "vxdp-afxdp-ipv6":
		e, err = buildVXDP(ctx, l, opts.vxdpBin, opts.vxdpKeys.yaml(), "afxdp", true)
	}
	if err == nil {
		err = checkPath(ctx, e)
	}
	var r *runner
	if err == nil {
		mr.Detail = e.detail
		r = &runner{e: e, opts: opts, udpBin: udpBin, rrBin: rrBin}
		err = r.startServers(ctx)
	}
	if err != nil {
		var na *notAvailable
		switch {
		case errors.As(err, &na):
			mr.Status, mr.Reason = "not available", na.reason
		case ctx.Err() != nil:
			mr.Status, mr.Reason = "interrupted", err.Error()
		default:
			mr.Status, mr.Reason = "error", err.Error()
		}
		logf("%s: %s: %s", mode, mr.Status, mr.Reason)
		return mr
	}
	logf("%s: %s", mode, mr.Detail)

	mr.Status = "ok"
	// A repetition during which other processes took a noticeable share of
	// the machine is followed by one more (at most --extra-reps times), and
	// the medians use the least disturbed --reps of them; see summarize.
	counted, extra := 0, 0
	for counted < opts.reps {
		if ctx.Err() != nil {
			break
		}
		res := r.rep(ctx)
		res.Disturbed = res.Seconds > 0 && res.ForeignCPU/res.Seconds > disturbedLimit
		mr.Reps = append(mr.Reps, res)
		logf("%s: repetition %d: %s", mode, len(mr.Reps), repLine(res))
		if res.Disturbed && extra < opts.extraReps {
			extra++
			logf("%s: other processes used %.2f CPUs on average during it; one more repetition", mode, res.ForeignCPU/res.Seconds)
		} else {
			counted++
		}
		for _, a := range e.procs {
			if !a.Alive() {
				mr.Status, mr.Reason = "error", fmt.Sprintf("%s died: %s", a.Name, oneLine(logTail(a, 4)))
			}
		}
		if mr.Status != "ok" {
			break
		}
	}
	if ctx.Err() != nil && mr.Status == "ok" {
		mr.Status, mr.Reason = "interrupted", ctx.Err().Error()
	}
	// The agents' counters after the run: drops by reason explain a low
	// packet rate.
	for i, a := range e.agents {
		if !a.Alive() {
			continue
		}
		if out, err := runLocal(context.Background(), cmdTimeout, opts.vxdpBin, "--socket", e.sockets[i], "stats", "-o", "json"); err == nil && json.Valid(out) {
			mr.Stats = append(mr.Stats, json.RawMessage(out))
		}
	}
	mr.summarize(opts.reps)
	return mr
}

// repLine is the progress line of one repetition.
func repLine(r *repResult) string {
	var parts []string
	if r.TCP1 != nil {
		parts = append(parts, fmt.Sprintf("tcp1 %.2f Gbit/s", r.TCP1.BitsPerSec/1e9))
	}
	if r.TCP4 != nil {
		parts = append(parts, fmt.Sprintf("tcp4 %.2f Gbit/s", r.TCP4.BitsPerSec/1e9))
	}
	for _, u := range r.UDPAll {
		parts = append(parts, fmt.Sprintf("udp64/%dt %.0f kpps delivered (%.0f sent, %s)",
			u.Threads, u.Recv.PPS/1e3, u.Sent.PPS/1e3, u.lossText()))
	}
	if u := r.UDPBusy; u != nil {
		parts = append(parts, fmt.Sprintf("udp64 busy pod/%dt %.0f kpps delivered (%.0f sent, %s)",
			u.Threads, u.Recv.PPS/1e3, u.Sent.PPS/1e3, u.lossText()))
	}
	if r.RR != nil {
		parts = append(parts, fmt.Sprintf("rr p50 %.1f µs p99 %.1f µs (%d)", r.RR.P50, r.RR.P99, r.RR.RoundTrips))
	}
	if r.Ping != nil {
		parts = append(parts, fmt.Sprintf("ping avg %.3f ms p99 %.3f ms (%d of %d)", r.Ping.AvgMs, r.Ping.P99Ms, r.Ping.Received, r.Ping.Sent))
		if c := r.Ping.CPU; c != nil && c.Wall > 0 {
			parts = append(parts, fmt.Sprintf("during the pings machine %.2f CPUs, dataplane %.2f", c.Busy/c.Wall, c.Agents/c.Wall))
		}
	}
	if r.IdleCPUs != nil {
		parts = append(parts, fmt.Sprintf("dataplane idle %.2f CPUs", *r.IdleCPUs))
	}
	parts = append(parts, fmt.Sprintf("other processes %.1f CPU-s in %.0f s", r.ForeignCPU, r.Seconds))
	for _, e := range r.Errors {
		parts = append(parts, "ERROR "+e)
	}
	return strings.Join(parts, ", ")
}

// keyList is the --vxdp-key flag: key=value pairs, in the order given.
type keyList []string

func (k *keyList) String() string { return strings.Join(*k, ",") }

func (k *keyList) Set(s string) error {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" || strings.ContainsAny(key, ": \n") || strings.Contains(value, "\n") {
		return fmt.Errorf("want key=value, such as busy-poll=50us")
	}
	*k = append(*k, s)
	return nil
}

// yaml is the pairs as lines of a YAML mapping, values quoted.
func (k keyList) yaml() string {
	var b strings.Builder
	for _, kv := range k {
		key, value, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "%s: %q\n", key, value)
	}
	return b.String()
}
