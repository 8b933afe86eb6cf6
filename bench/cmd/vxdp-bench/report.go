//go:build linux

package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// figure is one row of the table: how to get its value out of a repetition.
type figure struct {
	Key     string `json:"key"`
	Title   string `json:"title"`
	Unit    string `json:"unit"`
	Lower   bool   `json:"lower_is_better"`
	Context bool   `json:"context_only,omitempty"` // shown, but not a figure of merit
	prec    int
	// procOnly figures are about the dataplane processes (vxdp agents,
	// ovs-vswitchd); the kernel modes have none.
	procOnly bool
	value    func(*repResult) (float64, bool)
}

// hasDataplaneProcs reports whether mode's packets are moved by processes
// the figures can charge: the vxdp agents or ovs-vswitchd.
func hasDataplaneProcs(mode string) bool {
	return strings.HasPrefix(mode, "vxdp") || strings.HasPrefix(mode, "ovs")
}

// perGB divides CPU-seconds by the gigabytes the 1-stream test moved.
func perGB(r *repResult, f func(*cpuUse) float64) (float64, bool) {
	if r.TCP1 == nil || r.TCP1.CPU == nil || r.TCP1.Bytes <= 0 {
		return 0, false
	}
	return f(r.TCP1.CPU) / (r.TCP1.Bytes / 1e9), true
}

// perPingSecond is f of the CPU spent during the pings per second of
// them: the CPUs busy on average.
func perPingSecond(r *repResult, f func(*cpuUse) float64) (float64, bool) {
	if r.Ping == nil || r.Ping.CPU == nil || r.Ping.CPU.Wall <= 0 {
		return 0, false
	}
	return f(r.Ping.CPU) / r.Ping.CPU.Wall, true
}

var figures = []figure{
	{Key: "tcp_1_stream_gbit", Title: "TCP throughput, 1 stream", Unit: "Gbit/s", prec: 2,
		value: func(r *repResult) (float64, bool) {
			if r.TCP1 == nil {
				return 0, false
			}
			return r.TCP1.BitsPerSec / 1e9, true
		}},
	{Key: "tcp_4_streams_gbit", Title: "TCP throughput, 4 streams", Unit: "Gbit/s", prec: 2,
		value: func(r *repResult) (float64, bool) {
			if r.TCP4 == nil {
				return 0, false
			}
			return r.TCP4.BitsPerSec / 1e9, true
		}},
	{Key: "udp_64_delivered_kpps", Title: "64-byte UDP delivered to pod2", Unit: "kpps", prec: 0,
		value: func(r *repResult) (float64, bool) {
			if r.UDP == nil {
				return 0, false
			}
			return r.UDP.Recv.PPS / 1e3, true
		}},
	{Key: "udp_64_busy_delivered_kpps", Title: "64-byte UDP delivered, busy sending pod (--udp-busy-threads sender threads on every CPU)", Unit: "kpps", prec: 0,
		value: func(r *repResult) (float64, bool) {
			if r.UDPBusy == nil {
				return 0, false
			}
			return r.UDPBusy.Recv.PPS / 1e3, true
		}},
	{Key: "udp_64_sent_kpps", Title: "64-byte UDP sent by pod1 (context)", Unit: "kpps", prec: 0, Context: true,
		value: func(r *repResult) (float64, bool) {
			if r.UDP == nil {
				return 0, false
			}
			return r.UDP.Sent.PPS / 1e3, true
		}},
	{Key: "tcp_rr_p50_us", Title: "TCP 1-byte request/response latency p50", Unit: "µs", Lower: true, prec: 1,
		value: func(r *repResult) (float64, bool) {
			if r.RR == nil {
				return 0, false
			}
			return r.RR.P50, true
		}},
	{Key: "tcp_rr_p99_us", Title: "TCP 1-byte request/response latency p99", Unit: "µs", Lower: true, prec: 1,
		value: func(r *repResult) (float64, bool) {
			if r.RR == nil {
				return 0, false
			}
			return r.RR.P99, true
		}},
	{Key: "ping_5ms_avg_ms", Title: "Ping RTT at 5 ms intervals, average", Unit: "ms", Lower: true, prec: 3,
		value: func(r *repResult) (float64, bool) {
			if r.Ping == nil {
				return 0, false
			}
			return r.Ping.AvgMs, true
		}},
	{Key: "ping_5ms_p99_ms", Title: "Ping RTT at 5 ms intervals, p99", Unit: "ms", Lower: true, prec: 3,
		value: func(r *repResult) (float64, bool) {
			if r.Ping == nil {
				return 0, false
			}
			return r.Ping.P99Ms, true
		}},
	{Key: "cpu_machine_s_per_gb", Title: "CPU during TCP 1 stream: whole machine busy", Unit: "CPU-s/GB", Lower: true, prec: 2,
		value: func(r *repResult) (float64, bool) {
			return perGB(r, func(c *cpuUse) float64 { return c.Busy })
		}},
	{Key: "cpu_kernel_s_per_gb", Title: "  of it kernel: system+irq+softirq", Unit: "CPU-s/GB", Lower: true, prec: 2,
		value: func(r *repResult) (float64, bool) {
			return perGB(r, func(c *cpuUse) float64 { return c.System + c.Irq + c.Softirq })
		}},
	{Key: "cpu_procs_s_per_gb", Title: "CPU during TCP 1 stream: iperf3 + dataplane processes, user+sys", Unit: "CPU-s/GB", Lower: true, prec: 2,
		value: func(r *repResult) (float64, bool) {
			return perGB(r, func(c *cpuUse) float64 { return c.Iperf + c.Agents })
		}},
	{Key: "cpu_agents_s_per_gb", Title: "  of it the two dataplane processes (vxdp agents, ovs-vswitchd)", Unit: "CPU-s/GB", Lower: true, prec: 2, procOnly: true,
		value: func(r *repResult) (float64, bool) {
			return perGB(r, func(c *cpuUse) float64 { return c.Agents })
		}},
	{Key: "cpu_us_per_udp_packet", Title: "CPU per delivered 64-byte packet, whole machine", Unit: "µs", Lower: true, prec: 2,
		value: func(r *repResult) (float64, bool) {
			if r.UDP == nil || r.UDP.Recv.Received == 0 {
				return 0, false
			}
			return r.UDP.Recv.CPUBusy / float64(r.UDP.Recv.Received) * 1e6, true
		}},
	{Key: "dataplane_idle_cpus", Title: "Dataplane processes while idle (both nodes)", Unit: "CPUs", Lower: true, prec: 2, procOnly: true,
		value: func(r *repResult) (float64, bool) {
			if r.IdleCPUs == nil {
				return 0, false
			}
			return *r.IdleCPUs, true
		}},
	{Key: "dataplane_loaded_cpus", Title: "Dataplane processes during TCP 1 stream (both nodes)", Unit: "CPUs", Lower: true, prec: 2, procOnly: true,
		value: func(r *repResult) (float64, bool) {
			if r.TCP1 == nil || r.TCP1.CPU == nil || r.TCP1.CPU.Wall <= 0 {
				return 0, false
			}
			return r.TCP1.CPU.Agents / r.TCP1.CPU.Wall, true
		}},
	{Key: "ping_machine_cpus", Title: "CPU during the 5 ms pings: whole machine busy", Unit: "CPUs", Lower: true, prec: 2,
		value: func(r *repResult) (float64, bool) {
			return perPingSecond(r, func(c *cpuUse) float64 { return c.Busy })
		}},
	{Key: "ping_dataplane_cpus", Title: "  of it the dataplane processes (both nodes)", Unit: "CPUs", Lower: true, prec: 2, procOnly: true,
		value: func(r *repResult) (float64, bool) {
			return perPingSecond(r, func(c *cpuUse) float64 { return c.Agents })
		}},
}

// modeReport is one column of the table and its raw data.
type modeReport struct {
	Mode    string                `json:"mode"`
	Status  string                `json:"status"` // ok, not available, error, interrupted, skipped
	Reason  string                `json:"reason,omitempty"`
	Detail  string                `json:"detail,omitempty"`
	Medians map[string]*float64   `json:"medians"`
	Used    int                   `json:"reps_in_medians"`
	Ranges  map[string][2]float64 `json:"min_max,omitempty"`
	Reps    []*repResult          `json:"reps"`
	Stats   []json.RawMessage     `json:"agent_stats,omitempty"` // `vxdp stats -o json` per node after the run
}

func (m *modeReport) usable() bool {
	return m.Status == "ok" || m.Status == "interrupted" && len(m.Reps) > 0
}

// summarize fills Medians and Ranges from the n repetitions that other
// processes disturbed least (all when there are no more than n).
func (m *modeReport) summarize(n int) {
	m.Medians = map[string]*float64{}
	m.Ranges = map[string][2]float64{}
	use := slices.Clone(m.Reps)
	slices.SortStableFunc(use, func(a, b *repResult) int {
		return cmp.Compare(a.ForeignCPU/max(a.Seconds, 1), b.ForeignCPU/max(b.Seconds, 1))
	})
	if len(use) > n {
		use = use[:n]
	}
	for _, r := range use {
		r.InMedians = true
	}
	m.Used = len(use)
	for _, f := range figures {
		if f.procOnly && !hasDataplaneProcs(m.Mode) {
			continue
		}
		var vals []float64
		for _, r := range use {
			if v, ok := f.value(r); ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			continue
		}
		slices.Sort(vals)
		med := median(vals)
		m.Medians[f.Key] = &med
		m.Ranges[f.Key] = [2]float64{vals[0], vals[len(vals)-1]}
	}
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// machine describes where the figures were taken.
type machine struct {
	NProc      int     `json:"nproc"`
	Kernel     string  `json:"kernel"`
	CPUModel   string  `json:"cpu_model"`
	LoadAvg    string  `json:"loadavg_at_start"`
	Background float64 `json:"background_busy_cpus"` // CPUs busy with other work, 1 s sample before the run
	Iperf3     string  `json:"iperf3"`
	// Idle is how an idle CPU waits (cpuidle driver and governor, and the
	// haltpoll driver's polling before it halts): on a VM, the wake-up of
	// a halted virtual CPU is much of a sparse packet's latency.
	Idle string `json:"cpuidle,omitempty"`
}

// describeIdle reads the cpuidle driver and governor under sys (/sys) and,
// for the haltpoll driver of KVM guests, how long an idle virtual CPU
// polls before it halts. "" when the kernel has no cpuidle.
func describeIdle(sys string) string {
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(sys, p))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	driver := read("devices/system/cpu/cpuidle/current_driver")
	if driver == "" {
		return ""
	}
	s := "cpuidle " + driver
	gov := read("devices/system/cpu/cpuidle/current_governor_ro")
	if gov == "" {
		gov = read("devices/system/cpu/cpuidle/current_governor")
	}
	if gov != "" {
		s += ", governor " + gov
	}
	if ns := read("module/haltpoll/parameters/guest_halt_poll_ns"); ns != "" && driver == "haltpoll" {
		s += ", guest_halt_poll_ns " + ns
	}
	return s
}

func describeMachine() machine {
	m := machine{NProc: runtime.NumCPU(), Idle: describeIdle("/sys")}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	// The VM may be shared: how busy it is without us says how far the
	// whole-machine CPU figures can be trusted.
	if a, err := readCPUStat(); err == nil {
		time.Sleep(time.Second)
		if b, err := readCPUStat(); err == nil {
			m.Background = secs(b.busy() - a.busy())
		}
	}
	return m
}

// report is the JSON document --json writes.
type report struct {
	Date     string        `json:"date"`
	Command  string        `json:"command"`
	Machine  machine       `json:"machine"`
	Settings settings      `json:"settings"`
	Figures  []figure      `json:"figures"`
	Modes    []*modeReport `json:"modes"`
	Scale    *scaleReport  `json:"scale,omitempty"`
}

type settings struct {
	Reps          int     `json:"reps"`
	DurationSecs  float64 `json:"duration_s"`
	RRCount       int     `json:"rr_count"`
	UDPFlows      int     `json:"udp_flows"`
	UDPThreads    []int   `json:"udp_sender_threads"`
	UDPWindowSecs float64 `json:"udp_window_s"`
	UnderlayMTU   int     `json:"underlay_mtu"`
	PodMTU        int     `json:"pod_mtu"`
	PodMTU6       int     `json:"pod_mtu_ipv6"` // the IPv6 modes'
	UnderlayGRO   bool    `json:"underlay_gro,omitempty"`
	PodCgroups    bool    `json:"pod_cgroups,omitempty"`
	NodeCgroups   bool    `json:"node_cgroups,omitempty"`
	NodeWeight    int     `json:"node_cgroup_weight,omitempty"`
}

func formatValue(v float64, prec int) string {
	return fmt.Sprintf("%.*f", prec, v)
}

// writeMarkdown prints the header lines and the table.
func writeMarkdown(w io.Writer, rep *report) {
	m := rep.Machine
	idle := ""
	if m.Idle != "" {
		idle = "; " + m.Idle
	}
	fmt.Fprintf(w, "Machine: %d CPUs, %s, Linux %s%s; load average at start %s; %.2f CPUs busy with other work before the run\n",
		m.NProc, m.CPUModel, m.Kernel, idle, m.LoadAvg, m.Background)
	fmt.Fprintf(w, "Date: %s\n", rep.Date)
	fmt.Fprintf(w, "Command: `%s`\n", rep.Command)
	if len(rep.Modes) > 0 {
		writeComparison(w, rep)
	}
	if rep.Scale != nil {
		fmt.Fprintln(w)
		writeScale(w, rep.Scale)
	}
}

// writeComparison prints the table of the two-node modes and its notes.
func writeComparison(w io.Writer, rep *report) {
	m := rep.Machine
	s := rep.Settings
	fmt.Fprintf(w, "Settings: medians of %d repetitions (one more is run when other processes took over %.2f CPUs during one, and the least disturbed count); %gs per TCP test; RR %d round trips (at most as long); "+
		"64-byte UDP counted over %gs, sender with %d flows, best of %s sending thread(s); underlay MTU %d, pod MTU %d (IPv6 modes: IPv6 pods over an IPv6 underlay, pod MTU %d); %s\n\n",
		s.Reps, disturbedLimit, s.DurationSecs, s.RRCount, s.UDPWindowSecs, s.UDPFlows, joinInts(s.UDPThreads), s.UnderlayMTU, s.PodMTU, s.PodMTU6, m.Iperf3)
	if s.UnderlayGRO {
		fmt.Fprintf(w, "Underlay: GRO and UDP GRO forwarding on at both ends of the node-to-node veth (--underlay-gro; kernel and vxdp modes)\n\n")
	}
	nodeWeight := "the default weight"
	if s.NodeWeight != 0 && s.NodeWeight != 100 {
		nodeWeight = fmt.Sprintf("weight %d (--node-cgroup-weight; 100 is the default)", s.NodeWeight)
	}
	switch {
	case s.PodCgroups && s.NodeCgroups:
		fmt.Fprintf(w, "Cgroups: each pod's processes in a CPU cgroup of their own at the default weight, and each node's dataplane processes in another at %s (--pod-cgroups --node-cgroups), as a container runtime and a service manager lay out a node\n\n", nodeWeight)
	case s.PodCgroups:
		fmt.Fprintf(w, "Cgroups: each pod's processes in a CPU cgroup of their own at the default weight (--pod-cgroups), as a container runtime places pods; the dataplane processes outside them\n\n")
	case s.NodeCgroups:
		fmt.Fprintf(w, "Cgroups: each node's dataplane processes in a CPU cgroup of their own at %s (--node-cgroups), as a service manager places a service; the pods outside them\n\n", nodeWeight)
	}

	header := []string{"figure (higher is better unless marked lower)"}
	align := []string{"---"}
	for _, md := range rep.Modes {
		header = append(header, md.Mode)
		align = append(align, "--:")
	}
	pairs := ratioPairs(rep.Modes)
	for _, p := range pairs {
		header = append(header, p.of.Mode+" / "+p.to.Mode)
		align = append(align, "--:")
	}
	fmt.Fprintf(w, "| %s |\n|%s|\n", strings.Join(header, " | "), strings.Join(align, "|"))
	for _, f := range figures {
		title := f.Title + ", " + f.Unit
		if f.Lower {
			title += " (lower is better)"
		}
		row := []string{strings.Replace(title, "  ", "&nbsp;&nbsp;", 1)}
		for _, md := range rep.Modes {
			switch {
			case !md.usable():
				row = append(row, md.Status)
			case md.Medians[f.Key] == nil:
				row = append(row, "—")
			default:
				row = append(row, formatValue(*md.Medians[f.Key], f.prec))
			}
		}
		for _, p := range pairs {
			k, v := p.to.Medians[f.Key], p.of.Medians[f.Key]
			if k == nil || v == nil || *k == 0 {
				row = append(row, "—")
				continue
			}
			row = append(row, fmt.Sprintf("%.2f×", *v / *k))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintln(w)
	for _, md := range rep.Modes {
		line := fmt.Sprintf("- %s: %s", md.Mode, md.Status)
		if md.Detail != "" {
			line += "; " + md.Detail
		}
		if md.Reason != "" {
			line += "; " + md.Reason
		}
		fmt.Fprintln(w, line)
		var foreign, span float64
		for _, r := range md.Reps {
			foreign += r.ForeignCPU
			span += r.Seconds
		}
		if span > 0 {
			fmt.Fprintf(w, "  - medians of %d of %d repetitions; other processes on the machine used %.1f CPU-s during its %.0f s of tests (%.2f CPUs on average)\n",
				md.Used, len(md.Reps), foreign, span, foreign/span)
		}
		for i, r := range md.Reps {
			for _, e := range r.Errors {
				fmt.Fprintf(w, "  - repetition %d: %s\n", i+1, e)
			}
		}
		// Where the 64-byte datagrams were lost, in the last repetition
		// that has the tests.
		for i := len(md.Reps) - 1; i >= 0; i-- {
			r := md.Reps[i]
			if r.UDP == nil && r.UDPBusy == nil {
				continue
			}
			if u := r.UDP; u != nil {
				fmt.Fprintf(w, "  - 64-byte UDP, %d sender thread(s), repetition %d: %s\n", u.Threads, i+1, u.lossText())
			}
			if u := r.UDPBusy; u != nil {
				fmt.Fprintf(w, "  - 64-byte UDP, busy pod (%d sender threads), repetition %d: %s\n", u.Threads, i+1, u.lossText())
			}
			break
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU: \"whole machine busy\" is the /proc/stat delta (user+nice+system+irq+softirq, all CPUs) over the 1-stream iperf3 run "+
		"divided by the gigabytes received, so it includes iperf3 itself and anything else running on the machine; "+
		"\"iperf3 + dataplane processes\" counts only those processes (/proc/<pid>/stat and the client's rusage), which misses kernel work done "+
		"outside their context (ksoftirqd, softirq on other CPUs). Per packet: whole-machine busy time during the UDP window "+
		"divided by the datagrams delivered, sender and receiver included. Dataplane processes are the two vxdp agents or the two "+
		"ovs-vswitchd; their CPUs while idle are measured over "+idleWindow.String()+" with no traffic before the tests, "+
		"so a dataplane that polls (OVS's PMD threads) is charged for the cores it spins on. "+
		fmt.Sprintf("Ping: %d echo requests pod1 to pod2 at %s s intervals; average and p99 (nearest rank) of the replies; "+
			"the CPU during the pings is the busy time over their wall clock, the machine's (the ping itself included) and the dataplane processes', "+
			"which is what a dataplane that busy-polls between sparse packets pays for them.", pingCount, pingInterval))
	for _, md := range rep.Modes {
		if strings.HasPrefix(md.Mode, "ovs") {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "Open vSwitch: the pods' veths run with tx checksum, TSO and GSO offload off (ethtool -K), because the userspace "+
				"datapath of OVS 3.1 takes neither partial checksums nor large segments from them; the other modes keep the defaults.")
			break
		}
	}
}

// ratio is a column of ratios: of's medians over to's.
type ratio struct{ of, to *modeReport }

// ratioPairs are the ratio columns among modes that produced figures:
// each mode against the kernel of its family (kernel, kernel-ipv6); then
// each IPv4 vxdp mode against each Open vSwitch mode (vxdp-udp / ovs,
// vxdp-udp / ovs-afxdp, ...), the userspace dataplane a user would
// otherwise pick; then each IPv6 mode against its IPv4 counterpart
// (vxdp-udp-ipv6 / vxdp-udp, kernel-ipv6 / kernel): what IPv6 costs each
// dataplane.
func ratioPairs(modes []*modeReport) []ratio {
	byName := map[string]*modeReport{}
	for _, md := range modes {
		if md.usable() {
			byName[md.Mode] = md
		}
	}
	var out []ratio
	for _, md := range modes {
		base := "kernel"
		if ipv6Mode(md.Mode) {
			base = "kernel-ipv6"
		}
		if k := byName[base]; k != nil && byName[md.Mode] != nil && md.Mode != base {
			out = append(out, ratio{md, k})
		}
	}
	for _, md := range modes {
		if !strings.HasPrefix(md.Mode, "vxdp") || ipv6Mode(md.Mode) || byName[md.Mode] == nil {
			continue
		}
		for _, o := range modes {
			if strings.HasPrefix(o.Mode, "ovs") && byName[o.Mode] != nil {
				out = append(out, ratio{md, o})
			}
		}
	}
	for _, md := range modes {
		if v4 := byName[strings.TrimSuffix(md.Mode, "-ipv6")]; ipv6Mode(md.Mode) && v4 != nil && byName[md.Mode] != nil {
			out = append(out, ratio{md, v4})
		}
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// writeScale prints the scale phase as a table of its own.
func writeScale(w io.Writer, sr *scaleReport) {
	how := "all added through the API one call at a time"
	if b := sr.NodeBulk; b != nil {
		how = fmt.Sprintf("added through the API, endpoints one call at a time, nodes %d in one request and the other %d one call each", b.Nodes, sr.Nodes-b.Nodes)
	}
	fmt.Fprintf(w, "Scale: one agent (UDP underlay), %d local endpoints, then %d remote nodes, %s; %s",
		sr.Endpoints, sr.Nodes, how, sr.Status)
	if sr.Detail != "" {
		fmt.Fprintf(w, "; %s", sr.Detail)
	}
	if sr.Reason != "" {
		fmt.Fprintf(w, "; %s", sr.Reason)
	}
	fmt.Fprint(w, "\n\n")
	var rows []string
	row := func(title, format string, args ...any) {
		rows = append(rows, fmt.Sprintf("| %s | %s |\n", title, fmt.Sprintf(format, args...)))
	}
	if b := sr.NodeBulk; b != nil {
		row(fmt.Sprintf("add %d nodes in one request, wall clock, s", b.Nodes), "%.3f", b.Secs)
	}
	if a := sr.NodeAdds; a != nil {
		label := fmt.Sprintf("add %d nodes, wall clock, s", a.Calls)
		if sr.NodeBulk != nil {
			label = fmt.Sprintf("then %d more one call each, wall clock, s", a.Calls)
		}
		row(label, "%.2f", a.TotalSecs)
		row("&nbsp;&nbsp;per call: mean / p50 / p99 / max, ms", "%.2f / %.2f / %.2f / %.2f", a.MeanMs, a.P50Ms, a.P99Ms, a.MaxMs)
		row("&nbsp;&nbsp;per call: first tenth / last tenth (mean), ms", "%.2f / %.2f", a.FirstTenthMs, a.LastTenthMs)
	}
	if a := sr.EndpointAdds; a != nil {
		row(fmt.Sprintf("add %d endpoints, wall clock, s", a.Calls), "%.2f", a.TotalSecs)
		row("&nbsp;&nbsp;per call: mean / p50 / max, ms", "%.1f / %.1f / %.1f", a.MeanMs, a.P50Ms, a.MaxMs)
	}
	if a, d := sr.CNIAdds, sr.CNIDels; a != nil && d != nil {
		row(fmt.Sprintf("CNI ADD at %d endpoints (the plugin run as a runtime runs it, %d cycles): p50 / p99 / max, ms", sr.Endpoints, a.Calls),
			"%.1f / %.1f / %.1f", a.P50Ms, a.P99Ms, a.MaxMs)
		row("CNI DEL: p50 / p99 / max, ms", "%.1f / %.1f / %.1f", d.P50Ms, d.P99Ms, d.MaxMs)
	} else if sr.CNIReason != "" {
		row("CNI ADD/DEL", "not measured: %s", sr.CNIReason)
	}
	for _, p := range sr.RSS {
		row("agent RSS "+p.Step+", MiB", "%.1f", float64(p.KiB)/1024)
		if p.PerEndpointKiB != 0 {
			row("&nbsp;&nbsp;growth per endpoint, KiB", "%.0f", p.PerEndpointKiB)
		}
		if p.PerNodeKiB != 0 {
			row("&nbsp;&nbsp;growth per node, KiB", "%.1f", p.PerNodeKiB)
		}
	}
	if sr.PeakRSS > 0 {
		row("agent peak RSS (VmHWM), MiB", "%.1f", float64(sr.PeakRSS)/1024)
	}
	if sr.StopSecs > 0 {
		row("agent stop (SIGTERM to exit, removing devices and routes), s", "%.2f", sr.StopSecs)
	}
	for _, b := range sr.GoBench {
		row(fmt.Sprintf("Go benchmark %s (median of %d)", strings.TrimPrefix(b.Name, "Benchmark"), b.Runs), "%s", goBenchFigures(b))
	}
	if len(rows) > 0 {
		fmt.Fprint(w, "| figure | value |\n|---|--:|\n"+strings.Join(rows, "")+"\n")
	}
	for _, c := range sr.Checks {
		state := "ok"
		if !c.OK {
			state = "FAILED"
		}
		fmt.Fprintf(w, "- check %s: %s; %s\n", c.Name, state, c.Result)
	}
	if sr.GoBenchCmd != "" {
		fmt.Fprintf(w, "- Go benchmarks: `%s`", sr.GoBenchCmd)
		if sr.GoBenchReason != "" {
			fmt.Fprintf(w, ": not measured: %s", sr.GoBenchReason)
		}
		fmt.Fprintln(w)
	}
}

// goBenchFigures writes a benchmark's medians with readable units; the
// time per op also gets its range over the runs.
func goBenchFigures(b goBench) string {
	var parts []string
	for _, u := range []string{"ns/op", "ns/node", "allocs/op", "B/op", "live-B/node"} {
		v, ok := b.Medians[u]
		if !ok {
			continue
		}
		lo, hi := b.Min[u], b.Max[u]
		unit, div, prec := u, 1.0, 0
		switch {
		case strings.HasPrefix(u, "ns/") && v >= 1e6:
			unit, div, prec = "ms/"+u[3:], 1e6, 1
		case strings.HasPrefix(u, "ns/") && v >= 1e4:
			unit, div, prec = "µs/"+u[3:], 1e3, 1
		case strings.HasPrefix(u, "ns/"):
			prec = 1
		case u == "B/op" && v >= 1e6:
			unit, div = "MB/op", 1e6
		}
		p := formatValue(v/div, prec) + " " + unit
		if u == "ns/op" {
			p += fmt.Sprintf(" (%s..%s)", formatValue(lo/div, prec), formatValue(hi/div, prec))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}
