//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
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
	Agents  float64 `json:"agents_s"` // user+system of the vxdp agents
	Iperf   float64 `json:"iperf3_s"` // user+system of the iperf3 client and server
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
	iperfSrv *proc
	rrSrv    *proc
	udpBin   string
	rrBin    string
}

// startServers starts the long-running servers in pod2.
func (r *runner) startServers(ctx context.Context) error {
	l := r.e.lab
	var err error
	r.iperfSrv, err = l.start(nodes[1].podNS, r.e.mode+"-iperf3-server", "iperf3", "-s", "-p", iperfPort, "-B", nodes[1].podIP)
	if err != nil {
		return err
	}
	r.rrSrv, err = l.start(nodes[1].podNS, r.e.mode+"-tcprr-server", r.rrBin, "server",
		"-listen", nodes[1].podIP+":"+rrPort, "-timeout", r.opts.timeout.String())
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	for _, p := range []*proc{r.iperfSrv, r.rrSrv} {
		if !p.alive() {
			return fmt.Errorf("%s exited: %s", p.name, oneLine(p.logTail(3)))
		}
	}
	return nil
}

// tcp runs iperf3 from pod1 to pod2; with withCPU it samples the machine
// and the agents around the run.
func (r *runner) tcp(ctx context.Context, streams int, withCPU bool) (*iperfResult, error) {
	secsArg := strconv.FormatFloat(r.opts.duration.Seconds(), 'f', -1, 64)
	args := []string{"iperf3", "-c", nodes[1].podIP, "-p", iperfPort, "-t", secsArg, "-P", strconv.Itoa(streams),
		"-J", "--connect-timeout", "3000"}
	var pids []int
	for _, a := range r.e.agents {
		pids = append(pids, a.pid())
	}
	serverPid := r.iperfSrv.pid()
	var before sample
	var serverBefore uint64
	var err error
	if withCPU {
		if before, err = takeSample(pids); err != nil {
			return nil, err
		}
		if serverBefore, err = procTicks(serverPid); err != nil {
			return nil, fmt.Errorf("iperf3 server: %w", err)
		}
	}
	out, clientCPU, runErr := r.e.lab.runUsage(ctx, r.opts.duration+20*time.Second, "ip",
		append([]string{"netns", "exec", r.e.lab.ns(nodes[0].podNS)}, args...)...)
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
	Sent struct {
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
}

// udp floods pod2 from pod1 with 64-byte datagrams and counts what pod2's
// socket receives during a fixed window (--duration) that opens 0.5 s
// after the first datagram; the sender runs 1.5 s longer than the window
// so it covers it entirely.
func (r *runner) udp(ctx context.Context) (*udpResult, error) {
	l := r.e.lab
	window := r.opts.duration
	type recvOut struct {
		out []byte
		err error
	}
	got := make(chan recvOut, 1)
	go func() {
		out, err := l.exec(ctx, nodes[1].podNS, window+25*time.Second, r.udpBin, "recv",
			"-listen", nodes[1].podIP+":"+udpPort, "-warmup", "500ms", "-window", window.String(),
			"-timeout", (window + 20*time.Second).String())
		got <- recvOut{out, err}
	}()
	// The receiver binds at once; this leaves it time to get there before
	// the first datagram, which would otherwise draw a port unreachable.
	time.Sleep(300 * time.Millisecond)
	sendOut, sendErr := l.exec(ctx, nodes[0].podNS, window+15*time.Second, r.udpBin, "send",
		"-dst", nodes[1].podIP+":"+udpPort, "-size", "64", "-flows", strconv.Itoa(r.opts.udpFlows),
		"-threads", strconv.Itoa(r.opts.udpThreads), "-duration", (window + 1500*time.Millisecond).String())
	rcv := <-got
	var res udpResult
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
type rrResult struct {
	RoundTrips int     `json:"round_trips"`
	Seconds    float64 `json:"seconds"`
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	P999       float64 `json:"p999_us"`
	Mean       float64 `json:"mean_us"`
	Min        float64 `json:"min_us"`
	Max        float64 `json:"max_us"`
}

// rr times --rr-count 1-byte round trips on one TCP connection, at most
// --duration long.
func (r *runner) rr(ctx context.Context) (*rrResult, error) {
	out, err := r.e.lab.exec(ctx, nodes[0].podNS, r.opts.duration+20*time.Second, r.rrBin, "client",
		"-dst", nodes[1].podIP+":"+rrPort, "-count", strconv.Itoa(r.opts.rrCount), "-duration", r.opts.duration.String())
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
	UDP    *udpResult   `json:"udp_64,omitempty"`
	RR     *rrResult    `json:"tcp_rr,omitempty"`
	Errors []string     `json:"errors,omitempty"`
}

// rep runs every test once. A failing test is recorded and the others
// still run: one broken figure should not hide the rest.
func (r *runner) rep(ctx context.Context) *repResult {
	res := &repResult{}
	fail := func(what string, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
	}
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(settle):
		}
	}
	var err error
	if res.TCP1, err = r.tcp(ctx, 1, true); err != nil {
		fail("tcp 1 stream", err)
	}
	pause()
	if res.TCP4, err = r.tcp(ctx, 4, false); err != nil {
		fail("tcp 4 streams", err)
	}
	pause()
	if res.UDP, err = r.udp(ctx); err != nil {
		fail("udp 64", err)
	}
	pause()
	if res.RR, err = r.rr(ctx); err != nil {
		fail("tcp rr", err)
	}
	pause()
	return res
}
