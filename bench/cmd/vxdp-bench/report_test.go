//go:build linux

package main

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/vxdp/vxdp/bench
BenchmarkScaleEgress/nodes=1000-2   	14158707	       154.3 ns/op	 414.90 MB/s	   6482792 packets/s	       0 B/op	       0 allocs/op
BenchmarkScaleEgress/nodes=1000-2   	24349558	        89.9 ns/op	 711.43 MB/s	  11116075 packets/s	       0 B/op	       0 allocs/op
BenchmarkScaleEgress/nodes=1000-2   	20735616	        97.3 ns/op	 657.13 MB/s	  10267625 packets/s	       0 B/op	       0 allocs/op
BenchmarkScaleAddNodes-2            	       2	 774613457 ns/op	    774612 ns/node	746716332 B/op	   58591 allocs/op
--- FAIL: BenchmarkOther
PASS
`
	got := parseGoBench(out)
	if len(got) != 2 {
		t.Fatalf("got %d benchmarks, want 2: %+v", len(got), got)
	}
	e := got[0]
	if e.Name != "BenchmarkScaleEgress/nodes=1000" || e.Runs != 3 {
		t.Errorf("first: %s with %d runs", e.Name, e.Runs)
	}
	if e.Medians["ns/op"] != 97.3 || e.Min["ns/op"] != 89.9 || e.Max["ns/op"] != 154.3 || e.Medians["allocs/op"] != 0 {
		t.Errorf("egress figures: %v %v %v", e.Medians, e.Min, e.Max)
	}
	a := got[1]
	if a.Name != "BenchmarkScaleAddNodes" || a.Medians["ns/node"] != 774612 || a.Medians["allocs/op"] != 58591 {
		t.Errorf("add nodes: %s %v", a.Name, a.Medians)
	}
	if s := goBenchFigures(a); !strings.HasPrefix(s, "774.6 ms/op (774.6..774.6), 774.6 µs/node, 58591 allocs/op, 747 MB/op") {
		t.Errorf("add nodes figures: %q", s)
	}
	if s := goBenchFigures(e); s != "97.3 ns/op (89.9..154.3), 0 allocs/op, 0 B/op" {
		t.Errorf("egress figures: %q", s)
	}
}

func TestSummarizeCalls(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	c := summarizeCalls(d, 6*time.Second)
	if c.Calls != 100 || c.TotalSecs != 6 || c.MeanMs != 50.5 || c.P50Ms != 51 || c.P99Ms != 100 || c.MaxMs != 100 ||
		c.FirstTenthMs != 5.5 || c.LastTenthMs != 95.5 {
		t.Errorf("%+v", c)
	}
	if summarizeCalls(nil, 0) != nil {
		t.Error("no calls: want nil")
	}
}

func TestScaleAddresses(t *testing.T) {
	n := scaleNode(0)
	if n.Name != "node00001" || n.IP != "10.200.0.2" || n.PodCIDR != "10.64.0.0/24" {
		t.Errorf("first node: %+v", n)
	}
	n = scaleNode(999)
	if n.IP != "10.200.3.233" || n.PodCIDR != "10.67.231.0/24" {
		t.Errorf("node 1000: %+v", n)
	}
	n = scaleNode(maxScaleNodes - 1)
	if n.IP != "10.200.62.129" || n.PodCIDR != "10.126.127.0/24" {
		t.Errorf("last node: %+v", n)
	}
	if scaleEndpointIP(0) != "10.1.0.10" || scaleEndpointIP(246) != "10.1.1.0" {
		t.Errorf("endpoints 1 and 247: %s, %s", scaleEndpointIP(0), scaleEndpointIP(246))
	}
	if p := netip.MustParsePrefix(scalePodCIDR); !p.Contains(netip.MustParseAddr(scaleEndpointIP(maxScaleEPs - 1))) {
		t.Errorf("last endpoint %s outside the pod CIDR %s", scaleEndpointIP(maxScaleEPs-1), p)
	}
	if scaleEndpointIP(maxScaleEPs-1) != "10.1.7.217" {
		t.Errorf("last endpoint: %s", scaleEndpointIP(maxScaleEPs-1))
	}
}

func TestPingCounts(t *testing.T) {
	out := "--- 10.1.1.1 ping statistics ---\n5 packets transmitted, 4 received, 20% packet loss, time 805ms\n"
	if tx, rx := pingCounts(out); tx != 5 || rx != 4 {
		t.Errorf("got %d/%d", tx, rx)
	}
}

// The comparison table and the scale table each appear only when their
// modes ran.
func TestWriteMarkdown(t *testing.T) {
	v := 7.5
	sr := &scaleReport{Status: "ok", Endpoints: 2, Nodes: 10,
		NodeAdds:     summarizeCalls([]time.Duration{time.Millisecond, 2 * time.Millisecond}, 3*time.Millisecond),
		EndpointAdds: summarizeCalls([]time.Duration{time.Millisecond, 2 * time.Millisecond}, 3*time.Millisecond),
		RSS: []rssPoint{{Step: "started", KiB: 1024}, {Step: "after 2 endpoints", KiB: 2048, PerEndpointKiB: 512},
			{Step: "after 10 nodes", KiB: 3072, PerNodeKiB: 102.4}},
		Checks: []check{{Name: "ping", OK: true, Result: "5 of 5"}},
	}
	comparison := &modeReport{Mode: "vxdp-udp", Status: "ok", Medians: map[string]*float64{"tcp_1_stream_gbit": &v}}
	for _, tc := range []struct {
		name           string
		modes          []*modeReport
		scale          *scaleReport
		table, scaleTb bool
	}{
		{"comparison", []*modeReport{comparison}, nil, true, false},
		{"scale", nil, sr, false, true},
		{"both", []*modeReport{comparison}, sr, true, true},
	} {
		var b bytes.Buffer
		writeMarkdown(&b, &report{Figures: figures, Modes: tc.modes, Scale: tc.scale})
		s := b.String()
		if got := strings.Contains(s, "| TCP throughput, 1 stream, Gbit/s | 7.50 |"); got != tc.table {
			t.Errorf("%s: comparison table shown %v, want %v:\n%s", tc.name, got, tc.table, s)
		}
		if got := strings.Contains(s, "| add 2 nodes, wall clock, s | 0.00 |"); got != tc.scaleTb {
			t.Errorf("%s: scale table shown %v, want %v:\n%s", tc.name, got, tc.scaleTb, s)
		}
		if tc.scaleTb && !strings.Contains(s, "| &nbsp;&nbsp;growth per endpoint, KiB | 512 |") {
			t.Errorf("%s: no growth per endpoint:\n%s", tc.name, s)
		}
		if tc.scaleTb && !strings.Contains(s, "| agent RSS after 10 nodes, MiB | 3.0 |\n| &nbsp;&nbsp;growth per node, KiB | 102.4 |") {
			t.Errorf("%s: no growth per node under its point:\n%s", tc.name, s)
		}
	}
}

// Each vxdp mode is set against the kernel of its family, and each IPv6
// mode against its IPv4 counterpart; a mode without figures has no
// column.
func TestRatioPairs(t *testing.T) {
	ok := func(m string) *modeReport { return &modeReport{Mode: m, Status: "ok"} }
	modes := []*modeReport{ok("kernel"), ok("vxdp-udp"), {Mode: "vxdp-afxdp", Status: "not available"}, ok("kernel-ipv6"), ok("vxdp-udp-ipv6")}
	var got []string
	for _, p := range ratioPairs(modes) {
		got = append(got, p.of.Mode+" / "+p.to.Mode)
	}
	want := "vxdp-udp / kernel, vxdp-udp-ipv6 / kernel-ipv6, kernel-ipv6 / kernel, vxdp-udp-ipv6 / vxdp-udp"
	if strings.Join(got, ", ") != want {
		t.Errorf("ratio columns %q, want %q", strings.Join(got, ", "), want)
	}
	got = nil
	for _, p := range ratioPairs([]*modeReport{ok("vxdp-udp"), ok("vxdp-udp-ipv6")}) {
		got = append(got, p.of.Mode+" / "+p.to.Mode)
	}
	if strings.Join(got, ", ") != "vxdp-udp-ipv6 / vxdp-udp" {
		t.Errorf("without kernels: %q", got)
	}
}

// The vxdp/OVS columns come beside the vxdp/kernel ones: every IPv4 vxdp
// mode against every OVS mode that produced figures, never an IPv6 one.
func TestRatioPairsOVS(t *testing.T) {
	ok := func(m string) *modeReport { return &modeReport{Mode: m, Status: "ok"} }
	pairs := func(modes ...*modeReport) string {
		var got []string
		for _, p := range ratioPairs(modes) {
			got = append(got, p.of.Mode+" / "+p.to.Mode)
		}
		return strings.Join(got, ", ")
	}
	got := pairs(ok("kernel"), ok("vxdp-udp"), ok("vxdp-afxdp"), ok("ovs"), ok("ovs-afxdp"), ok("kernel-ipv6"), ok("vxdp-udp-ipv6"))
	want := "vxdp-udp / kernel, vxdp-afxdp / kernel, ovs / kernel, ovs-afxdp / kernel, vxdp-udp-ipv6 / kernel-ipv6, " +
		"vxdp-udp / ovs, vxdp-udp / ovs-afxdp, vxdp-afxdp / ovs, vxdp-afxdp / ovs-afxdp, " +
		"kernel-ipv6 / kernel, vxdp-udp-ipv6 / vxdp-udp"
	if got != want {
		t.Errorf("ratio columns\n%q, want\n%q", got, want)
	}
	// An OVS mode without figures has no column, nor does a vxdp mode
	// without figures against OVS.
	got = pairs(ok("vxdp-udp"), &modeReport{Mode: "vxdp-afxdp", Status: "error"}, ok("ovs"), &modeReport{Mode: "ovs-afxdp", Status: "not available"})
	if got != "vxdp-udp / ovs" {
		t.Errorf("with failed modes: %q", got)
	}
}

// The table shows the vxdp/OVS ratio, the ping rows and the dataplane
// CPU rows, the latter only for modes that have dataplane processes.
func TestWriteMarkdownOVS(t *testing.T) {
	rep := func(tcp, pingMs, idle, wall, procs float64) *repResult {
		return &repResult{
			TCP1:     &iperfResult{BitsPerSec: tcp * 1e9, Bytes: tcp * 1e9 / 8 * 3, CPU: &cpuUse{Busy: 3, Agents: procs, Wall: wall}},
			Ping:     &pingResult{Sent: 400, Received: 400, AvgMs: pingMs, P99Ms: 2 * pingMs, CPU: &cpuUse{Busy: 0.4 + procs/10, Agents: procs / 10, Wall: 2}},
			IdleCPUs: &idle,
		}
	}
	modes := []*modeReport{
		{Mode: "kernel", Status: "ok", Reps: []*repResult{rep(15, 0.05, 0, 3, 0)}},
		{Mode: "vxdp-udp", Status: "ok", Reps: []*repResult{rep(6, 0.2, 0.02, 3, 3)}},
		{Mode: "ovs-afxdp", Status: "ok", Reps: []*repResult{rep(3, 0.1, 1, 3, 4.5)}},
	}
	for _, m := range modes {
		m.summarize(1)
	}
	if _, ok := modes[0].Medians["dataplane_idle_cpus"]; ok {
		t.Error("kernel: has a dataplane idle figure")
	}
	var b bytes.Buffer
	writeMarkdown(&b, &report{Figures: figures, Modes: modes})
	s := b.String()
	for _, row := range []string{
		"| figure (higher is better unless marked lower) | kernel | vxdp-udp | ovs-afxdp | vxdp-udp / kernel | ovs-afxdp / kernel | vxdp-udp / ovs-afxdp |",
		"| TCP throughput, 1 stream, Gbit/s | 15.00 | 6.00 | 3.00 | 0.40× | 0.20× | 2.00× |",
		"| Ping RTT at 5 ms intervals, average, ms (lower is better) | 0.050 | 0.200 | 0.100 | 4.00× | 2.00× | 2.00× |",
		"| Ping RTT at 5 ms intervals, p99, ms (lower is better) | 0.100 | 0.400 | 0.200 | 4.00× | 2.00× | 2.00× |",
		"| Dataplane processes while idle (both nodes), CPUs (lower is better) | — | 0.02 | 1.00 | — | — | 0.02× |",
		"| Dataplane processes during TCP 1 stream (both nodes), CPUs (lower is better) | — | 1.00 | 1.50 | — | — | 0.67× |",
		"| CPU during the 5 ms pings: whole machine busy, CPUs (lower is better) | 0.20 | 0.35 | 0.43 | 1.75× | 2.12× | 0.82× |",
		"| &nbsp;&nbsp;of it the dataplane processes (both nodes), CPUs (lower is better) | — | 0.15 | 0.23 | — | — | 0.67× |",
		"Open vSwitch: the pods' veths run with tx checksum, TSO and GSO offload off",
	} {
		if !strings.Contains(s, row) {
			t.Errorf("missing %q in:\n%s", row, s)
		}
	}
}

func TestParsePing(t *testing.T) {
	var out strings.Builder
	out.WriteString("PING 10.1.2.20 (10.1.2.20) 56(84) bytes of data.\n")
	// 100 replies of 0.100 ms .. 0.199 ms, in an order that is not sorted.
	for i := range 100 {
		fmt.Fprintf(&out, "64 bytes from 10.1.2.20: icmp_seq=%d ttl=63 time=0.%d ms\n", i+1, 100+(i*37)%100)
	}
	out.WriteString("\n--- 10.1.2.20 ping statistics ---\n101 packets transmitted, 100 received, 0.990099% packet loss, time 505ms\n" +
		"rtt min/avg/max/mdev = 0.100/0.149/0.199/0.029 ms\n")
	got, err := parsePing(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.Sent != 101 || got.Received != 100 || math.Abs(got.AvgMs-0.1495) > 1e-9 || got.P99Ms != 0.198 {
		t.Errorf("%+v", got)
	}
	if _, err := parsePing("PING x\n--- x ping statistics ---\n3 packets transmitted, 0 received, 100% packet loss, time 2ms\n"); err == nil {
		t.Error("no replies: want an error")
	}
}

func TestDescribeIdle(t *testing.T) {
	write := func(t *testing.T, root, p, v string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const drv, govRO, gov, poll = "devices/system/cpu/cpuidle/current_driver", "devices/system/cpu/cpuidle/current_governor_ro",
		"devices/system/cpu/cpuidle/current_governor", "module/haltpoll/parameters/guest_halt_poll_ns"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"none", nil, ""},
		{"haltpoll", map[string]string{drv: "haltpoll", gov: "haltpoll", poll: "0"}, "cpuidle haltpoll, governor haltpoll, guest_halt_poll_ns 0"},
		{"intel", map[string]string{drv: "intel_idle", govRO: "menu", poll: "200000"}, "cpuidle intel_idle, governor menu"},
		{"no governor", map[string]string{drv: "acpi_idle"}, "cpuidle acpi_idle"},
	} {
		root := t.TempDir()
		for p, v := range tc.files {
			write(t, root, p, v)
		}
		if got := describeIdle(root); got != tc.want {
			t.Errorf("%s: describeIdle = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The header says how the machine idles, whether the underlay had GRO and
// whether the pods ran in cgroups of their own.
func TestWriteMarkdownMachineAndUnderlay(t *testing.T) {
	v := 7.5
	md := &modeReport{Mode: "kernel", Status: "ok", Medians: map[string]*float64{"tcp_1_stream_gbit": &v}}
	for _, gro := range []bool{false, true} {
		var b bytes.Buffer
		writeMarkdown(&b, &report{Machine: machine{NProc: 2, Idle: "cpuidle haltpoll"}, Settings: settings{UnderlayGRO: gro, PodCgroups: gro, NodeCgroups: gro},
			Figures: figures, Modes: []*modeReport{md}})
		s := b.String()
		if !strings.Contains(s, "; cpuidle haltpoll; load average") {
			t.Errorf("gro %v: no cpuidle in the machine line:\n%s", gro, s)
		}
		if got := strings.Contains(s, "Underlay: GRO and UDP GRO forwarding on"); got != gro {
			t.Errorf("gro %v: underlay line shown %v:\n%s", gro, got, s)
		}
		if got := strings.Contains(s, "Cgroups: each pod's processes in a CPU cgroup of their own at the default weight, and each node's dataplane processes in another at the default weight"); got != gro {
			t.Errorf("pod cgroups %v: pods line shown %v:\n%s", gro, got, s)
		}
	}
}

// The command line in the report can be pasted back into a shell: an
// empty argument stays an argument.
func TestFormatCommand(t *testing.T) {
	got := formatCommand([]string{"/tmp/vxdp-bench-cmd", "--vxdp-cni", "", "--vxdp-key", "busy-poll=5ms", "--md", "a b.md"})
	want := `/tmp/vxdp-bench-cmd --vxdp-cni "" --vxdp-key busy-poll=5ms --md "a b.md"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
