//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxdp/vxdp/bench/internal/benchtool"
	"github.com/vxdp/vxdp/internal/nstest"
)

const (
	iperfPort = "5201"
	udpPort   = "9000"
	rrPort    = "7000"
	// settle is the pause between two tests, so one test's tail (queued
	// packets, TIME_WAIT work, an agent draining its rings) does not land
	// in the next one's figures.
	settle = 500 * time.Millisecond
)

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/<pid>/stat: 100
// on every Linux ABI whatever the kernel's internal HZ.
const clockTicks = 100

// cpuStat is the machine-wide "cpu" line of /proc/stat, in ticks.
type cpuStat struct {
	user, nice, system, idle, iowait, irq, softirq, steal uint64
}

func readCPUStat() (cpuStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuStat{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]uint64
	for i := range v {
		v[i], err = strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return cpuStat{}, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	return cpuStat{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
}

// busy is everything but idle, iowait and steal (time the hypervisor gave
// to someone else).
func (s cpuStat) busy() uint64 { return s.user + s.nice + s.system + s.irq + s.softirq }

// procTicks is utime+stime of a process from /proc/<pid>/stat.
func procTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses; the
	// fields after its closing parenthesis are fixed. utime and stime are
	// fields 14 and 15, i.e. the 12th and 13th after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + st, nil
}

// sample is the CPU state at one instant: the machine and chosen processes.
type sample struct {
	machine cpuStat
	procs   map[int]uint64
}

func takeSample(pids []int) (sample, error) {
	m, err := readCPUStat()
	if err != nil {
		return sample{}, err
	}
	s := sample{machine: m, procs: map[int]uint64{}}
	for _, pid := range pids {
		t, err := procTicks(pid)
		if err != nil {
			return sample{}, err
		}
		s.procs[pid] = t
	}
	return s, nil
}

// cpuUse is CPU-seconds spent between two samples.
type cpuUse struct {
	Busy    float64 `json:"machine_busy_s"`
	User    float64 `json:"machine_user_s"`
	System  float64 `json:"machine_system_s"`
	Softirq float64 `json:"machine_softirq_s"`
	Irq     float64 `json:"machine_irq_s"`
	Agents  float64 `json:"agents_s"` // user+system of the dataplane processes (vxdp agents, ovs-vswitchd)
	Iperf   float64 `json:"iperf3_s"` // user+system of the iperf3 client and server
	Wall    float64 `json:"wall_s"`   // seconds between the two samples
}

func secs(ticks uint64) float64 { return float64(ticks) / clockTicks }

func usage(a, b sample, agentPids []int) cpuUse {
	u := cpuUse{
		Busy:    secs(b.machine.busy() - a.machine.busy()),
		User:    secs(b.machine.user + b.machine.nice - a.machine.user - a.machine.nice),
		System:  secs(b.machine.system - a.machine.system),
		Softirq: secs(b.machine.softirq - a.machine.softirq),
		Irq:     secs(b.machine.irq - a.machine.irq),
	}
	for _, pid := range agentPids {
		u.Agents += secs(b.procs[pid] - a.procs[pid])
	}
	return u
}

// pfKthread is PF_KTHREAD in the flags field of /proc/<pid>/stat.
const pfKthread = 0x00200000

// foreignSampler measures the CPU time used by processes that are not part
// of this run: neither this program nor anything inside the run's
// namespaces, nor kernel threads (ksoftirqd and kworkers carry this run's
// packets as much as anyone's). The machine may be shared, and another
// tenant's compile or test run skews every figure taken at the same time.
//
// It rescans /proc every sampleEvery and keeps, per process (pid and start
// time), the CPU first and last seen, so short-lived processes such as
// compiler runs are counted up to their last sample. Children's times
// (cutime) are not used: they land in the parent all at once when it reaps
// a whole tree, long after the CPU was spent.
type foreignSampler struct {
	l      *lab
	ours   map[[2]uint64]bool // our namespaces (dev, inode)
	self   int
	first  map[procKey]uint64
	last   map[procKey]uint64
	mine   map[procKey]bool // processes found to be ours, not rechecked
	stopCh chan struct{}
	done   chan float64
}

type procKey struct {
	pid   int
	start uint64 // start time in ticks since boot, against pid reuse
}

const sampleEvery = 200 * time.Millisecond

func (l *lab) startForeign() *foreignSampler {
	f := &foreignSampler{
		l: l, ours: map[[2]uint64]bool{}, self: os.Getpid(),
		first: map[procKey]uint64{}, last: map[procKey]uint64{}, mine: map[procKey]bool{},
		stopCh: make(chan struct{}), done: make(chan float64, 1),
	}
	for _, ns := range l.Namespaces() {
		if st, err := os.Stat(ns.Path); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				f.ours[[2]uint64{sys.Dev, sys.Ino}] = true
			}
		}
	}
	f.scan(true)
	go func() {
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-f.stopCh:
				f.scan(false)
				f.done <- f.total()
				return
			case <-t.C:
				f.scan(false)
			}
		}
	}()
	return f
}

// stop ends the sampling and returns the foreign CPU-seconds.
func (f *foreignSampler) stop() float64 {
	close(f.stopCh)
	return <-f.done
}

func (f *foreignSampler) scan(initial bool) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == f.self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fl := strings.Fields(s[i+1:])
		if len(fl) < 20 {
			continue
		}
		if flags, _ := strconv.ParseUint(fl[6], 10, 64); flags&pfKthread != 0 {
			continue
		}
		start, _ := strconv.ParseUint(fl[19], 10, 64)
		k := procKey{pid, start}
		if f.mine[k] {
			continue
		}
		// Our own commands are started through `ip netns exec`, which runs
		// in the root namespace until it switches: its parent tells first.
		// The namespace is checked on every scan for the same reason.
		ppid, _ := strconv.Atoi(fl[1])
		if ppid == f.self || f.inOurNetns(e.Name()) {
			f.mine[k] = true
			delete(f.first, k)
			delete(f.last, k)
			continue
		}
		u, _ := strconv.ParseUint(fl[11], 10, 64)
		st, _ := strconv.ParseUint(fl[12], 10, 64)
		if _, seen := f.last[k]; !seen {
			// A process first seen after the start began inside the
			// window: all of its time counts.
			if initial {
				f.first[k] = u + st
			} else {
				f.first[k] = 0
			}
		}
		f.last[k] = u + st
	}
}

func (f *foreignSampler) inOurNetns(pid string) bool {
	st, err := os.Stat("/proc/" + pid + "/ns/net")
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && f.ours[[2]uint64{sys.Dev, sys.Ino}]
}

func (f *foreignSampler) total() float64 {
	var ticks uint64
	for k, t := range f.last {
		if t > f.first[k] {
			ticks += t - f.first[k]
		}
	}
	return secs(ticks)
}

// disturbedLimit is the average share of the machine's CPUs, in CPUs,
// other processes may take during a repetition before one more is run (see
// runMode; summarize keeps the least disturbed ones).
const disturbedLimit = 0.25

// quietLimit is the share of a CPU other processes may use for the machine
// to count as quiet before a repetition.
const quietLimit = 0.15

// quietWait bounds the wait for a quiet machine before each repetition.
const quietWait = 10 * time.Second

// waitQuiet waits, at most quietWait, until other processes use less than
// quietLimit of a CPU over one second, and returns the last measurement.
func (r *runner) waitQuiet(ctx context.Context) float64 {
	deadline := time.Now().Add(quietWait)
	logged := false
	for {
		f := r.e.lab.startForeign()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		busy := f.stop()
		if ctx.Err() != nil {
			return busy
		}
		if busy < quietLimit || time.Now().After(deadline) {
			if logged {
				r.e.lab.logf("%s: other processes at %.2f CPUs, going on", r.e.mode, busy)
			}
			return busy
		}
		if !logged {
			r.e.lab.logf("%s: other processes busy (%.2f CPUs), waiting up to %v for a quiet machine", r.e.mode, busy, quietWait)
			logged = true
		}
	}
}

// iperfResult is what the benchmark keeps of an iperf3 run.
type iperfResult struct {
	Streams     int     `json:"streams"`
	BitsPerSec  float64 `json:"bits_per_second"` // received by the server
	Bytes       float64 `json:"bytes"`
	Retransmits int     `json:"retransmits"`
	CPU         *cpuUse `json:"cpu,omitempty"`
}

// iperfJSON is the part of `iperf3 -J` output read here.
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// runner holds what the measurements of one mode share.
type runner struct {
	e        *env
	opts     *options
	iperfSrv *nstest.Proc
	rrSrv    *nstest.Proc
	udpBin   string
	rrBin    string
}

// startServers starts the long-running servers in pod2.
func (r *runner) startServers(ctx context.Context) error {
	l := r.e.lab
	var err error
	r.iperfSrv, err = l.start(nodes[1].podNS, r.e.mode+"-iperf3-server", "iperf3", "-s", "-p", iperfPort, "-B", r.e.podAddr(1))
	if err != nil {
		return err
	}
	r.rrSrv, err = l.start(nodes[1].podNS, r.e.mode+"-tcprr-server", r.rrBin, "server",
		"-listen", r.e.podAddrPort(1, rrPort), "-timeout", r.opts.timeout.String())
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	for _, p := range []*nstest.Proc{r.iperfSrv, r.rrSrv} {
		if !p.Alive() {
			return fmt.Errorf("%s exited: %s", p.Name, oneLine(logTail(p, 3)))
		}
	}
	return nil
}

// tcp runs iperf3 from pod1 to pod2; with withCPU it samples the machine
// and the dataplane processes around the run.
func (r *runner) tcp(ctx context.Context, streams int, withCPU bool) (*iperfResult, error) {
	secsArg := strconv.FormatFloat(r.opts.duration.Seconds(), 'f', -1, 64)
	args := []string{"iperf3", "-c", r.e.podAddr(1), "-p", iperfPort, "-t", secsArg, "-P", strconv.Itoa(streams),
		"-J", "--connect-timeout", "3000"}
	pids := r.dataplanePids()
	serverPid := r.iperfSrv.Pid()
	var before sample
	var serverBefore uint64
	var err error
	var started time.Time
	if withCPU {
		started = time.Now()
		if before, err = takeSample(pids); err != nil {
			return nil, err
		}
		if serverBefore, err = procTicks(serverPid); err != nil {
			return nil, fmt.Errorf("iperf3 server: %w", err)
		}
	}
	out, clientCPU, runErr := runUsage(ctx, r.opts.duration+20*time.Second, r.e.lab.netns(nodes[0].podNS), args...)
	var res iperfResult
	res.Streams = streams
	if withCPU {
		after, err := takeSample(pids)
		if err != nil {
			return nil, err
		}
		serverAfter, err := procTicks(serverPid)
		if err != nil {
			return nil, fmt.Errorf("iperf3 server: %w", err)
		}
		u := usage(before, after, pids)
		u.Iperf = clientCPU.Seconds() + secs(serverAfter-serverBefore)
		u.Wall = time.Since(started).Seconds()
		res.CPU = &u
	}
	var j iperfJSON
	if err := json.Unmarshal(out, &j); err != nil {
		if runErr != nil {
			return nil, runErr
		}
		return nil, fmt.Errorf("iperf3 output: %w", err)
	}
	if j.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", j.Error)
	}
	if runErr != nil {
		return nil, runErr
	}
	res.BitsPerSec = j.End.SumReceived.BitsPerSecond
	res.Bytes = j.End.SumReceived.Bytes
	res.Retransmits = j.End.SumSent.Retransmits
	if res.Bytes <= 0 {
		return nil, errors.New("iperf3: nothing received")
	}
	return &res, nil
}

// udpResult joins what the sender and the receiver printed.
type udpResult struct {
	Threads int `json:"sender_threads"`
	Sent    struct {
		Sent    uint64  `json:"sent"`
		Seconds float64 `json:"seconds"`
		PPS     float64 `json:"pps"`
		Errors  uint64  `json:"errors"`
	} `json:"sender"`
	Recv struct {
		Received     uint64  `json:"received"`
		Seconds      float64 `json:"seconds"`
		PPS          float64 `json:"pps"`
		Total        uint64  `json:"total"`
		CPUBusy      float64 `json:"cpu_busy_s"`
		RcvbufErrors uint64  `json:"rcvbuf_errors"`
	} `json:"receiver"`
	// Losses is the rise of the drop counters along the path while the
	// sender ran; LossError says why they could not be read.
	Losses    *lossSnapshot `json:"losses,omitempty"`
	LossError string        `json:"loss_error,omitempty"`
}

// udp floods pod2 from pod1 with 64-byte datagrams and counts what pod2's
// socket receives during a fixed window (--udp-window) that opens 0.5 s
// after the first datagram; the sender runs 1.5 s longer than the window
// so it covers it entirely.
func (r *runner) udp(ctx context.Context, threads int) (*udpResult, error) {
	l := r.e.lab
	window := r.opts.udpWindow
	type recvOut struct {
		out []byte
		err error
	}
	got := make(chan recvOut, 1)
	go func() {
		out, err := l.exec(ctx, nodes[1].podNS, window+25*time.Second, r.udpBin, "recv",
			"-listen", r.e.podAddrPort(1, udpPort), "-warmup", "500ms", "-window", window.String(),
			"-timeout", (window + 20*time.Second).String())
		got <- recvOut{out, err}
	}()
	// The receiver binds at once; this leaves it time to get there before
	// the first datagram, which would otherwise draw a port unreachable.
	time.Sleep(300 * time.Millisecond)
	before, lossErr := r.snapshotLosses(ctx)
	sendOut, sendErr := l.exec(ctx, nodes[0].podNS, window+15*time.Second, r.udpBin, "send",
		"-dst", r.e.podAddrPort(1, udpPort), "-size", "64", "-flows", strconv.Itoa(r.opts.udpFlows),
		"-threads", strconv.Itoa(threads), "-duration", (window + 1500*time.Millisecond).String())
	// The receiver has closed its socket by now: what arrived after that
	// counts in pod2's NoPorts, the rest where it was lost.
	var after lossSnapshot
	if lossErr == nil {
		after, lossErr = r.snapshotLosses(ctx)
	}
	rcv := <-got
	res := udpResult{Threads: threads}
	if lossErr == nil {
		res.Losses = after.sub(before)
	} else {
		res.LossError = lossErr.Error()
	}
	if sendErr != nil {
		return nil, fmt.Errorf("sender: %w", sendErr)
	}
	if err := json.Unmarshal(sendOut, &res.Sent); err != nil {
		return nil, fmt.Errorf("sender output: %w", err)
	}
	if rcv.err != nil {
		return nil, fmt.Errorf("receiver: %w", rcv.err)
	}
	if err := json.Unmarshal(rcv.out, &res.Recv); err != nil {
		return nil, fmt.Errorf("receiver output: %w", err)
	}
	return &res, nil
}

// rrResult is what tcprr's client printed.
type rrResult = benchtool.RRResult

// rr times --rr-count 1-byte round trips on one TCP connection, at most
// --duration long.
func (r *runner) rr(ctx context.Context) (*rrResult, error) {
	out, err := r.e.lab.exec(ctx, nodes[0].podNS, r.opts.duration+20*time.Second, r.rrBin, "client",
		"-dst", r.e.podAddrPort(1, rrPort), "-count", strconv.Itoa(r.opts.rrCount), "-duration", r.opts.duration.String())
	if err != nil {
		return nil, err
	}
	var res rrResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("tcprr output: %w", err)
	}
	if res.RoundTrips == 0 {
		return nil, errors.New("tcprr: no round trip")
	}
	return &res, nil
}

// repResult is everything measured in one repetition.
type repResult struct {
	TCP1   *iperfResult `json:"tcp_1_stream,omitempty"`
	TCP4   *iperfResult `json:"tcp_4_streams,omitempty"`
	UDP    *udpResult   `json:"udp_64,omitempty"` // the best of UDPAll
	UDPAll []*udpResult `json:"udp_64_all,omitempty"`
	// UDPBusy is the same test with more sending threads than CPUs: the
	// pod competes with the dataplane for every core.
	UDPBusy *udpResult  `json:"udp_64_busy,omitempty"`
	RR      *rrResult   `json:"tcp_rr,omitempty"`
	Ping    *pingResult `json:"ping_5ms,omitempty"`
	// The CPUs the dataplane processes (vxdp agents, ovs-vswitchd) used
	// with no traffic, over idleWindow before the tests.
	IdleCPUs *float64 `json:"dataplane_idle_cpus,omitempty"`
	// CPU-seconds other processes on the machine used during the
	// repetition, and their share of a CPU just before it.
	ForeignCPU    float64  `json:"foreign_cpu_s"`
	ForeignBefore float64  `json:"foreign_cpus_before"`
	Seconds       float64  `json:"seconds"`
	Disturbed     bool     `json:"disturbed"`  // other processes took more than disturbedLimit
	InMedians     bool     `json:"in_medians"` // one of the --reps least disturbed
	Errors        []string `json:"errors,omitempty"`
}

// rep runs every test once. A failing test is recorded and the others
// still run: one broken figure should not hide the rest. Once the run is
// cancelled nothing more starts, and the tests cut short are not reported
// as failures of the datapath.
//
// The packet-rate test runs once per --udp-threads value and keeps the best
// delivered rate: where the whole path runs in the sender's system call (the
// kernel's vxlan) one sending thread is the limit, while where it is handed
// to another process (vxdp) a second sender only takes CPU away from it.
func (r *runner) rep(ctx context.Context) *repResult {
	res := &repResult{ForeignBefore: r.waitQuiet(ctx)}
	start := time.Now()
	foreign := r.e.lab.startForeign()
	type test struct {
		name string
		run  func() error
	}
	tests := []test{
		{"dataplane idle", func() (err error) { res.IdleCPUs, err = r.idle(ctx); return }},
		{"tcp 1 stream", func() (err error) { res.TCP1, err = r.tcp(ctx, 1, true); return }},
		{"tcp 4 streams", func() (err error) { res.TCP4, err = r.tcp(ctx, 4, false); return }},
	}
	for _, n := range r.opts.udpThreads {
		tests = append(tests, test{fmt.Sprintf("udp 64 (%d sender threads)", n), func() error {
			u, err := r.udp(ctx, n)
			if err != nil {
				return err
			}
			res.UDPAll = append(res.UDPAll, u)
			if res.UDP == nil || u.Recv.PPS > res.UDP.Recv.PPS {
				res.UDP = u
			}
			return nil
		}})
	}
	if n := r.opts.udpBusy; n > 0 {
		tests = append(tests, test{fmt.Sprintf("udp 64 busy pod (%d sender threads)", n), func() (err error) {
			res.UDPBusy, err = r.udp(ctx, n)
			return
		}})
	}
	tests = append(tests, test{"tcp rr", func() (err error) { res.RR, err = r.rr(ctx); return }},
		test{"ping", func() (err error) { res.Ping, err = r.ping(ctx); return }})
	for _, t := range tests {
		if ctx.Err() != nil {
			break
		}
		if err := t.run(); err != nil && ctx.Err() == nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", t.name, err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(settle):
		}
	}
	res.ForeignCPU = foreign.stop()
	res.Seconds = time.Since(start).Seconds()
	return res
}

// dataplanePids are the process IDs of the dataplane processes (vxdp
// agents, ovs-vswitchd); none for the kernel.
func (r *runner) dataplanePids() []int {
	var pids []int
	for _, p := range r.e.procs {
		pids = append(pids, p.Pid())
	}
	return pids
}

// pingResult is what the 5 ms interval ping measured.
type pingResult struct {
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	AvgMs    float64 `json:"avg_ms"`
	P99Ms    float64 `json:"p99_ms"`
	// CPU is what the machine and the dataplane processes spent while
	// the pings ran: the price of a dataplane that polls rather than
	// sleeps between sparse packets.
	CPU *cpuUse `json:"cpu,omitempty"`
}

const (
	pingCount = 400
	// pingInterval is short enough that a dataplane which sleeps between
	// packets is seen waking up often, long enough not to be a flood.
	pingInterval = "0.005"
)

// ping sends pingCount echo requests from pod1 to pod2 at pingInterval
// and reads the round-trip time of each reply.
func (r *runner) ping(ctx context.Context) (*pingResult, error) {
	pids := r.dataplanePids()
	before, serr := takeSample(pids)
	start := time.Now()
	out, err := r.e.lab.exec(ctx, nodes[0].podNS, 30*time.Second, "ping", "-n", "-i", pingInterval,
		"-c", strconv.Itoa(pingCount), "-W", "1", r.e.podAddr(1))
	// ping exits 1 when replies are missing; the replies it got count,
	// and the loss shows in the result.
	res, perr := parsePing(string(out))
	if perr != nil {
		if err != nil {
			return nil, err
		}
		return nil, perr
	}
	if serr == nil {
		if after, err := takeSample(pids); err == nil {
			u := usage(before, after, pids)
			u.Wall = time.Since(start).Seconds()
			res.CPU = &u
		}
	}
	return res, nil
}

// parsePing reads ping's per-reply "time=" fields and its summary line.
func parsePing(out string) (*pingResult, error) {
	var rtts []float64
	for _, line := range strings.Split(out, "\n") {
		_, t, ok := strings.Cut(line, " time=")
		if !ok {
			continue
		}
		t, _, _ = strings.Cut(t, " ")
		v, err := strconv.ParseFloat(t, 64)
		if err != nil {
			return nil, fmt.Errorf("ping: reply time %q: %w", t, err)
		}
		rtts = append(rtts, v)
	}
	if len(rtts) == 0 {
		return nil, errors.New("ping: no reply")
	}
	res := &pingResult{}
	res.Sent, res.Received = pingCounts(out)
	if res.Sent == 0 {
		return nil, errors.New("ping: no summary line")
	}
	var sum float64
	for _, v := range rtts {
		sum += v
	}
	res.AvgMs = sum / float64(len(rtts))
	slices.Sort(rtts)
	// Nearest rank: the smallest time at or above 99 % of the replies.
	res.P99Ms = rtts[(len(rtts)*99+99)/100-1]
	return res, nil
}

// idleWindow is how long the dataplane processes are watched with no
// traffic: long enough to average over the wake-ups of a sleeping one.
const idleWindow = 3 * time.Second

// idle returns the CPUs the dataplane processes use while no test runs:
// nothing for the kernel, the spinning PMD threads of OVS with AF_XDP.
func (r *runner) idle(ctx context.Context) (*float64, error) {
	if len(r.e.procs) == 0 {
		return nil, nil
	}
	pids := r.dataplanePids()
	start := time.Now()
	before, err := takeSample(pids)
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(idleWindow):
	}
	after, err := takeSample(pids)
	if err != nil {
		return nil, err
	}
	cpus := usage(before, after, pids).Agents / time.Since(start).Seconds()
	return &cpus, nil
}
