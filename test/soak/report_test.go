package soak

import (
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// report is what a run prints as Markdown and writes as JSON.
type report struct {
	Date        string         `json:"date"`
	Host        string         `json:"host"`
	CPUs        int            `json:"cpus"`
	Settings    settings       `json:"settings"`
	Elapsed     time.Duration  `json:"elapsed_ns"`
	Interrupted bool           `json:"interrupted"`
	Streams     []streamReport `json:"streams"`
	CutStreams  []cutReport    `json:"cut_streams"`
	UDP64       *floodReport   `json:"udp64,omitempty"`
	Pings       []pingReport   `json:"pings"`
	Faults      []faultReport  `json:"faults"`
	Garbage     map[string]int `json:"garbage_sent"`
	GarbageErrs int            `json:"garbage_send_errors"`
	// Account is where the garbage went: the calibration, the packets
	// sent to a node the faults made unavailable, and the counters' change
	// over the steady garbage.
	Account accounting `json:"garbage_accounting"`
	// GarbageDropped is the drops of the reasons only garbage is dropped
	// for; GarbageShared those of reasons faults cause too, and
	// GarbageSharedExpected the part of them the calibration expects of
	// the garbage sent.
	GarbageDropped        int     `json:"garbage_reason_drops"`
	GarbageShared         int     `json:"shared_reason_drops"`
	GarbageSharedExpected float64 `json:"shared_reason_drops_expected_of_garbage"`
	// GarbageDelivered is garbage that a pod's kernel refused.
	GarbageDelivered int `json:"garbage_delivered_to_pods"`
	// GarbageUnseenExpected is what the calibration saw no counter take,
	// scaled to what was sent.
	GarbageUnseenExpected float64 `json:"unseen_expected"`
	// GarbageNodeExpected is what the calibration saw the nodes'
	// kernels drop, scaled to what was sent.
	GarbageNodeExpected float64 `json:"node_kernel_expected"`
	// GarbageRemainder is what no class explains.
	GarbageRemainder float64             `json:"remainder"`
	Drops            []map[string]int    `json:"drops_per_node"`
	DropsTotal       map[string]int      `json:"drops_total"`
	Before           []footprint         `json:"footprint_start"`
	After            []footprint         `json:"footprint_end"`
	SoakCPU          float64             `json:"soak_process_cpu_seconds"`
	Failures         []string            `json:"failures"`
	Windows          []faultWindowReport `json:"windows"`
	Bounds           map[string]int      `json:"bounds"`
}

type streamReport struct {
	Name     string        `json:"name"`
	Cross    bool          `json:"across_nodes"`
	Sent     int64         `json:"bytes_sent"`
	Verified int64         `json:"bytes_verified"`
	Lost     int64         `json:"bytes_lost_or_corrupted"`
	MaxStall time.Duration `json:"longest_stall_ns"`
	Err      string        `json:"error,omitempty"`
}

// cutReport is a stream that a long removal cuts and that connects again.
type cutReport struct {
	Name        string         `json:"name"`
	Connections int            `json:"connections"`
	Cuts        map[string]int `json:"cuts_by_fault"`
	Sent        int64          `json:"bytes_sent"`
	Verified    int64          `json:"bytes_verified"`
	// LostAtCuts is what was in flight when a connection was cut, by
	// the fault it was cut in: lost by the removal, not by the overlay.
	LostAtCuts   map[string]int64 `json:"bytes_lost_at_cuts"`
	MaxReconnect time.Duration    `json:"longest_reconnect_ns"`
	Err          string           `json:"error,omitempty"`
}

type pingReport struct {
	Name string `json:"name"`
	pingFigures
}

type faultReport struct {
	Kind          string        `json:"kind"`
	Count         int           `json:"count"`
	Errors        int           `json:"errors"`
	PingsSent     int           `json:"pings_sent"`
	PingsLost     int           `json:"pings_lost"`
	MaxPingGap    time.Duration `json:"max_ping_gap_ns"`
	MaxStall      time.Duration `json:"max_stream_stall_ns"`
	RecoveryP50   time.Duration `json:"recovery_p50_ns"`
	RecoveryMax   time.Duration `json:"recovery_max_ns"`
	ActionP50     time.Duration `json:"action_p50_ns"`
	ActionMax     time.Duration `json:"action_max_ns"`
	ActionMeaning string        `json:"action"`
}

type faultWindowReport struct {
	Kind      string        `json:"kind"`
	Node      int           `json:"node"`
	At        time.Duration `json:"at_ns"`
	Action    time.Duration `json:"action_ns"`
	Recovery  time.Duration `json:"recovery_ns"`
	PingsLost int           `json:"pings_lost"`
	MaxGap    time.Duration `json:"max_ping_gap_ns"`
	MaxStall  time.Duration `json:"max_stream_stall_ns"`
	Err       string        `json:"error,omitempty"`
}

var actionMeaning = map[string]string{
	"kill9-restart":  "SIGKILL to the new agent serving its API",
	"sighup-valid":   "SIGHUP to reloaded (and an added endpoint answering)",
	"sighup-invalid": "SIGHUP to the refusal in the log",
	"endpoint-churn": "API add to the endpoint answering a remote pod (worst of 3)",
	"policy-flip":    "--allow-all to the refused pod answering again",
	"underlay-flap":  "link up (after 1 s down) to a pod answering across the underlay",
	"node-churn":     "reload adding the peer back (after 1 s without it) to its pod answering",
	"mtu-change":     "underlay MTU changed to pods, routes and status following (worst of 1500->1400->1500)",
	"etcd-restart":   "etcd started again (after 4 s stopped) to every agent connected with every record",
	"disk-full":      "filler removed to the next state save succeeding",
	"node-outage":    "reload adding the peer back (after 6 s without it) to the cut stream's new connection carrying bytes",
}

// finish stops the load and computes the figures and the invariants.
func (s *soak) finish(before, after []footprint, stoppedAt time.Time) *report {
	// Requests of the last second may still be answered: the pingers
	// run on past the cutoff, which every figure respects.
	cutoff := stoppedAt
	time.Sleep(time.Second)
	for _, p := range s.pingers {
		p.close()
	}
	for _, d := range s.drops {
		d.poll(s)
	}
	s.stopSamplers()
	sent, sendErrs, fates := s.garbage.close()
	time.Sleep(200 * time.Millisecond) // the last packets on their way
	s.account.Fates = fates
	r := &report{
		Date: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Settings: s.set,
		Elapsed: stoppedAt.Sub(s.start), Garbage: sent, GarbageErrs: sendErrs,
		Before: before, After: after, DropsTotal: map[string]int{},
		Bounds: map[string]int{"fd_growth": fdSlack, "goroutine_growth": goroutineSlack, "heap_growth_kib": heapSlackKiB, "rss_growth_kib": rssSlackKiB},
	}
	r.Host, _ = os.Hostname()
	for _, st := range s.streams {
		longest, _ := st.longestStall(s.start, cutoff)
		snt, ver, err := st.s.Stop()
		sr := streamReport{Name: st.Name, Cross: st.Cross, Sent: snt, Verified: ver, Lost: snt - ver, MaxStall: longest}
		if err != nil {
			sr.Err = err.Error()
		}
		// No fault of this schedule removes a node or cuts a stream:
		// every byte must arrive, in order and intact.
		if err != nil || snt != ver || ver == 0 {
			s.fail("stream %s: %d bytes sent, %d verified: %v", st.Name, snt, ver, err)
		}
		r.Streams = append(r.Streams, sr)
	}
	for _, c := range s.cuts {
		r.CutStreams = append(r.CutStreams, s.cutFigures(c))
	}
	if s.flood != nil {
		f := s.flood.close()
		r.UDP64 = &f
		// Loss is expected (faults, a machine that cannot keep up); a
		// packet changed or delivered twice is not.
		if f.Corrupt > 0 || f.Duplicates > 0 || f.Delivered == 0 {
			s.fail("64-byte UDP %s: %d delivered, %d corrupted, %d duplicated", f.Name, f.Delivered, f.Corrupt, f.Duplicates)
		}
	}
	for _, p := range s.pingers {
		r.Pings = append(r.Pings, pingReport{Name: p.name, pingFigures: p.figures(s.start, cutoff, cutoff)})
	}
	byKind := map[string]*faultReport{}
	recov := map[string][]time.Duration{}
	action := map[string][]time.Duration{}
	for _, w := range s.windows {
		fr := byKind[w.Kind]
		if fr == nil {
			fr = &faultReport{Kind: w.Kind, ActionMeaning: actionMeaning[w.Kind]}
			byKind[w.Kind] = fr
		}
		fr.Count++
		if w.Err != "" {
			fr.Errors++
		}
		wr := faultWindowReport{Kind: w.Kind, Node: w.Node, At: w.From.Sub(s.start), Action: w.Action, Err: w.Err}
		var back time.Time // when the last disruption in the window ended
		var lastLoss time.Time
		for _, p := range s.pingers {
			f := p.figures(w.From, w.To, cutoff)
			fr.PingsSent += f.Sent
			fr.PingsLost += f.Lost
			wr.PingsLost += f.Lost
			wr.MaxGap = max(wr.MaxGap, f.MaxGap)
			if f.Lost > 0 && f.LastBad.Add(pingEvery).After(back) {
				back = f.LastBad.Add(pingEvery)
			}
			if f.Lost > 0 && f.LastBad.After(lastLoss) {
				lastLoss = f.LastBad
			}
		}
		// Recovery is read from the pings alone: a late answer still
		// counts, so a loaded machine does not turn into an outage, while
		// a paced stream stalls for hundreds of ms whenever its sender is
		// not scheduled. The stalls are reported beside it.
		for _, st := range s.streams {
			longest, _ := st.longestStall(w.From, w.To)
			wr.MaxStall = max(wr.MaxStall, longest)
		}
		if !back.IsZero() && back.After(w.From) {
			wr.Recovery = back.Sub(w.From)
		}
		// A pair still losing most of its pings at the end of the window:
		// the overlay did not recover within the settle time. Scattered
		// losses there are not held to this: on an overloaded machine
		// (another load on the same 2 CPUs) requests are dropped from
		// full queues anywhere, fault or not; they are counted above.
		// (Stream stalls are not held to it either: a paced stream stalls
		// for a few hundred ms when its sender is not scheduled; its
		// bytes are held to the byte.)
		if !lastLoss.IsZero() && w.To.Sub(lastLoss) < settle/3 && w.To.Before(cutoff) {
			if p, f := stillLosing(s.pingers, w.To, cutoff); p != nil {
				s.fail("%s on node%d at %v: %s still lost %d of %d pings in the last %v of the window, %v after the action ended", w.Kind, w.Node,
					wr.At.Round(time.Millisecond), p.name, f.Lost, f.Sent, settle/3, w.To.Sub(w.From.Add(w.Action)).Round(time.Millisecond))
			}
		}
		fr.MaxPingGap = max(fr.MaxPingGap, wr.MaxGap)
		fr.MaxStall = max(fr.MaxStall, wr.MaxStall)
		recov[w.Kind] = append(recov[w.Kind], wr.Recovery)
		action[w.Kind] = append(action[w.Kind], w.Action)
		r.Windows = append(r.Windows, wr)
	}
	for _, k := range faultKinds {
		fr := byKind[k]
		if fr == nil {
			continue
		}
		fr.RecoveryP50, fr.RecoveryMax = quantiles(recov[k])
		fr.ActionP50, fr.ActionMax = quantiles(action[k])
		r.Faults = append(r.Faults, *fr)
	}
	end := s.readCounters()
	s.account.Run = counterSet{Drops: diff(s.countersStart.Drops, end.Drops), Pods: diff(s.countersStart.Pods, end.Pods),
		Nodes: diff(s.countersStart.Nodes, end.Nodes)}
	r.Account = s.account
	r.GarbageDelivered = sum(s.account.Run.Pods)
	for _, d := range s.drops {
		d.mu.Lock()
		m := maps.Clone(d.total)
		d.mu.Unlock()
		r.Drops = append(r.Drops, m)
		for k, v := range m {
			r.DropsTotal[k] += v
		}
	}
	for _, k := range garbageReasons {
		r.GarbageDropped += s.account.Run.Drops[k]
	}
	for _, k := range sharedReasons {
		r.GarbageShared += s.account.Run.Drops[k]
	}
	// What the calibration expects of what was sent to an agent that
	// saw it: the part of the shared reasons, and the unseen.
	reached := 0
	for _, v := range sent {
		reached += v
	}
	for _, v := range fates {
		reached -= v
	}
	total := reached + sum(fates)
	for _, c := range s.account.Calibration {
		if c.Sent == 0 || total == 0 {
			continue
		}
		share := float64(sent[c.Kind]) / float64(c.Sent) * float64(reached) / float64(total)
		for _, k := range sharedReasons {
			r.GarbageSharedExpected += share * float64(c.Drops[k])
		}
		r.GarbageUnseenExpected += share * float64(c.Unseen)
		r.GarbageNodeExpected += share * float64(sum(c.Nodes))
	}
	r.GarbageRemainder = float64(total-r.GarbageDropped-r.GarbageDelivered-fates["target agent down"]-fates["target link down"]) -
		r.GarbageSharedExpected - r.GarbageUnseenExpected - r.GarbageNodeExpected
	for i := range before {
		b, a := before[i], after[i]
		if a.Pid == 0 {
			s.fail("node%d: no agent at the end", b.Node)
			continue
		}
		if a.FDs > b.FDs+fdSlack {
			s.fail("node%d: file descriptors %d -> %d (bound +%d)", b.Node, b.FDs, a.FDs, fdSlack)
		}
		if a.Goroutines > b.Goroutines+goroutineSlack {
			s.fail("node%d: goroutines %d -> %d (bound +%d)", b.Node, b.Goroutines, a.Goroutines, goroutineSlack)
		}
		if b.HeapKiB < 0 || a.HeapKiB < 0 {
			s.fail("node%d: Go heap not read from the metrics (%d -> %d KiB)", b.Node, b.HeapKiB, a.HeapKiB)
		} else if a.HeapKiB > b.HeapKiB+heapSlackKiB {
			s.fail("node%d: Go heap in use %d -> %d KiB (bound +%d KiB)", b.Node, b.HeapKiB, a.HeapKiB, heapSlackKiB)
		}
		if a.RSSKiB > b.RSSKiB+rssSlackKiB {
			s.fail("node%d: RSS %d -> %d KiB (bound +%d KiB)", b.Node, b.RSSKiB, a.RSSKiB, rssSlackKiB)
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.SoakCPU = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	r.Failures = s.failureList()
	return r
}

// stillLosing returns the first pinger that lost more than half of its
// requests, and at least stillLostMin, in the last third of the settle
// time before to, and its figures there; nil when none did. (A pinger
// the machine did not schedule sends a few requests there; a few lost are
// no outage.)
func stillLosing(ps []*pinger, to, cutoff time.Time) (*pinger, pingFigures) {
	for _, p := range ps {
		if f := p.figures(to.Add(-settle/3), to, cutoff); f.Lost >= stillLostMin && 2*f.Lost > f.Sent {
			return p, f
		}
	}
	return nil, pingFigures{}
}

// stillLostMin is a fifth of the requests a pinger sends in settle/3.
const stillLostMin = int(settle / 3 / pingEvery / 5)

// cutFigures ends a cut stream and judges its cuts: each must fall in a
// fault's window (a cut is seen up to cutUserTimeout after the outage
// began, so the window is stretched by as much) and be a timeout, not
// corruption; the last connection must deliver every byte.
func (s *soak) cutFigures(c *cutStream) cutReport {
	err := c.close(10 * time.Second)
	cr := cutReport{Name: c.Name, Connections: c.conns, Cuts: map[string]int{}, Sent: c.sent, Verified: c.verified, LostAtCuts: map[string]int64{}}
	if err != nil {
		cr.Err = err.Error()
		s.fail("cut stream %s: %v", c.Name, err)
	}
	for _, k := range c.cuts {
		kind := ""
		for _, w := range s.windows {
			if !k.At.Before(w.From) && !k.At.After(w.To.Add(cutUserTimeout+500*time.Millisecond)) {
				kind = w.Kind
			}
		}
		if kind == "" {
			kind = "no fault"
			s.fail("cut stream %s cut at %v outside every fault's window: %s", c.Name, k.At.Sub(s.start).Round(time.Millisecond), k.Err)
		}
		if k.Corrupt {
			s.fail("cut stream %s corrupted at %v: %s", c.Name, k.At.Sub(s.start).Round(time.Millisecond), k.Err)
		}
		cr.Cuts[kind]++
		cr.LostAtCuts[kind] += k.Lost
		if !k.Back.IsZero() {
			cr.MaxReconnect = max(cr.MaxReconnect, k.Back.Sub(k.At))
		}
	}
	return cr
}

// garbageReasons are the drop reasons only the forged packets meet;
// sharedReasons those that faults cause with the pods' own traffic too
// (a restarted agent setting up, a removed peer); the others (tx_error,
// no_route, policy_denied, ...) come from the faults alone.
var (
	garbageReasons = []string{"invalid_header", "invalid_mac", "invalid_extension_headers", "spoofed_inner_source",
		"unsupported_protocol", "invalid_vni", "invalid_identity", "tunnel_protocol_mismatch", "geneve_critical_option",
		"geneve_control_packet", "ttl_exceeded", "link_local_address", "multicast_address", "invalid_source"}
	sharedReasons = []string{"no_endpoint", "unknown_tunnel_source"}
)

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

func quantiles(ds []time.Duration) (p50, maxd time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2], s[len(s)-1]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n## vxdp soak, %s\n\n", r.Date)
	fmt.Fprintf(w, "Host %s, %d CPUs; %v run (%v asked), a fault every %v; streams at %s/s each; garbage %d packets/s (at most %d).\n",
		r.Host, r.CPUs, r.Elapsed.Round(time.Second), r.Settings.Duration, r.Settings.FaultEvery, mib(r.Settings.StreamRate), r.Settings.GarbagePPS, r.Settings.GarbageMax)
	if r.Interrupted {
		fmt.Fprintf(w, "\n**Interrupted** before the end.\n")
	}
	fmt.Fprintf(w, "\n### Streams (verified byte by byte)\n\n| stream | across nodes | sent | verified | lost or corrupted | longest stall | error |\n|---|---|---|---|---|---|---|\n")
	for _, s := range r.Streams {
		fmt.Fprintf(w, "| %s | %v | %s | %s | %d B | %s | %s |\n", s.Name, s.Cross, mib(s.Sent), mib(s.Verified), s.Lost, ms(s.MaxStall), s.Err)
	}
	fmt.Fprintf(w, "\n### Streams a long removal cuts (TCP user timeout %v; node-outage removes the peer for %v)\n\n| stream | connections | cuts by fault | sent | verified | lost at cuts (by the removal) | longest cut to reconnected | error |\n|---|---|---|---|---|---|---|---|\n", cutUserTimeout, outageHold)
	for _, c := range r.CutStreams {
		lost := map[string]int{}
		for k, v := range c.LostAtCuts {
			lost[k] = int(v)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s B | %s | %s |\n", c.Name, c.Connections, kv(c.Cuts), mib(c.Sent), mib(c.Verified), kv(lost), ms(c.MaxReconnect), c.Err)
	}
	if f := r.UDP64; f != nil {
		fmt.Fprintf(w, "\n### 64-byte UDP (IPv4 packets of 64 bytes), %s\n\nAsked %d packets/s, sent %.0f/s: %d sent (%d send errors), %d delivered, %d lost (%.2f %%), %d duplicated, %d corrupted.\n",
			f.Name, f.AskedPPS, f.SentPPS, f.Sent, f.SendErrors, f.Delivered, f.Lost, 100*float64(f.Lost)/float64(max(f.Sent, 1)), f.Duplicates, f.Corrupt)
	}
	fmt.Fprintf(w, "\n### Pings every %v, whole run\n\n| pair | sent | lost | longest outage |\n|---|---|---|---|\n", pingEvery)
	for _, p := range r.Pings {
		fmt.Fprintf(w, "| %s | %d | %d | %s |\n", p.Name, p.Sent, p.Lost, ms(p.MaxGap))
	}
	fmt.Fprintf(w, "\n### Faults\n\nRecovery: from the start of the fault to the answer after the last ping lost in its window; 0 when none was lost. Window: the fault's action and %v after it. Outage: from the last answered request before lost ones to the first answered after them (send times). Stalls: the longest time a stream's receiver saw no new byte (counted above %v).\n\n", settle, stallMin)
	fmt.Fprintf(w, "| fault | count | errors | pings sent / lost in windows | longest ping outage | longest stream stall | recovery p50 / max | action p50 / max | action |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range r.Faults {
		fmt.Fprintf(w, "| %s | %d | %d | %d / %d | %s | %s | %s / %s | %s / %s | %s |\n", f.Kind, f.Count, f.Errors, f.PingsSent, f.PingsLost,
			ms(f.MaxPingGap), ms(f.MaxStall), ms(f.RecoveryP50), ms(f.RecoveryMax), ms(f.ActionP50), ms(f.ActionMax), f.ActionMeaning)
	}
	total := 0
	for _, v := range r.Garbage {
		total += v
	}
	fmt.Fprintf(w, "\n### Garbage on the tunnel port\n\nCalibration before the first fault: each kind alone, and the change of every counter that can see it (the agents' drop reasons; the pods' kernels: garbage the dataplane delivered; the nodes' kernels: garbage dropped before the agent read it). Unseen: moved no counter.\n\n| kind | sent | agent drops | pod kernels | node kernels | unseen |\n|---|---|---|---|---|---|\n")
	for _, c := range r.Account.Calibration {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %d |\n", c.Kind, c.Sent, kv(c.Drops), kv(c.Pods), kv(c.Nodes), c.Unseen)
	}
	fmt.Fprintf(w, "\nThe run: sent %d (%s); send errors %d. Sent to a node that a fault made unavailable at that moment: %s.\n\n", total, kv(r.Garbage), r.GarbageErrs, kv(r.Account.Fates))
	fmt.Fprintf(w, "| class | packets |\n|---|---|\n")
	fmt.Fprintf(w, "| agent drops for reasons only garbage meets (%s) | %d |\n", kv(pick(r.Account.Run.Drops, garbageReasons)), r.GarbageDropped)
	fmt.Fprintf(w, "| agent drops for reasons faults cause too (%s): the calibration expects of the garbage | %.0f of %d |\n", kv(pick(r.Account.Run.Drops, sharedReasons)), r.GarbageSharedExpected, r.GarbageShared)
	fmt.Fprintf(w, "| delivered into a pod, refused by its kernel (%s) | %d |\n", kv(r.Account.Run.Pods), r.GarbageDelivered)
	fmt.Fprintf(w, "| sent while the target's agent was down (kill -9 to ready) | %d |\n", r.Account.Fates["target agent down"])
	fmt.Fprintf(w, "| sent while the target's underlay link was down | %d |\n", r.Account.Fates["target link down"])
	fmt.Fprintf(w, "| dropped by the nodes' kernels before the agent, as the calibration expects | %.0f |\n", r.GarbageNodeExpected)
	fmt.Fprintf(w, "| unseen by any counter, as the calibration expects | %.0f |\n", r.GarbageUnseenExpected)
	fmt.Fprintf(w, "| remainder (sent less the rows above) | %.0f (%.1f %%) |\n", r.GarbageRemainder, 100*r.GarbageRemainder/float64(max(total, 1)))
	fmt.Fprintf(w, "\nThe nodes' kernels over the run, the pods' own traffic included: %s.\n\nDrops counted by the agents, all nodes, every reason (policy probes, restarts and link flaps included):\n\n| reason | count |\n|---|---|\n", kv(r.Account.Run.Nodes))
	for _, k := range sortedKeys(r.DropsTotal) {
		fmt.Fprintf(w, "| %s | %d |\n", k, r.DropsTotal[k])
	}
	fmt.Fprintf(w, "\n### Agents, start and end (end: after every restart of the run)\n\n| node | incarnations | fds | goroutines | Go heap in use | RSS | peak RSS | CPU |\n|---|---|---|---|---|---|---|---|\n")
	for i := range r.Before {
		b, a := r.Before[i], r.After[i]
		fmt.Fprintf(w, "| node%d | %d | %d -> %d | %d -> %d | %d -> %d KiB | %d -> %d KiB | %d KiB | %.1f s |\n", b.Node, a.Starts, b.FDs, a.FDs, b.Goroutines, a.Goroutines,
			b.HeapKiB, a.HeapKiB, b.RSSKiB, a.RSSKiB, a.PeakRSSKiB, a.CPUSeconds)
	}
	fmt.Fprintf(w, "\nThe soak process itself (load generators, pingers, garbage): %.1f s CPU. Bounds: fds +%d, goroutines +%d, Go heap in use +%d KiB, RSS +%d KiB.\n", r.SoakCPU, fdSlack, goroutineSlack, heapSlackKiB, rssSlackKiB)
	if len(r.Failures) == 0 {
		fmt.Fprintf(w, "\n**Invariants held.**\n")
	} else {
		fmt.Fprintf(w, "\n**Invariants broken:**\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
}

func pick(m map[string]int, keys []string) map[string]int {
	out := map[string]int{}
	for _, k := range keys {
		if m[k] != 0 {
			out[k] = m[k]
		}
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	k := slices.Collect(maps.Keys(m))
	sort.Strings(k)
	return k
}

func kv(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
