package soak

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// soakStream is a verified stream and the times its receiver made no
// progress for longer than stallMin.
type soakStream struct {
	Name   string
	Cross  bool
	s      *nstest.Stream
	mu     sync.Mutex
	last   int64
	lastAt time.Time
	stalls []span
}

type span struct{ From, To time.Time }

const stallMin = 100 * time.Millisecond

// streamPatience is how long a verified stream's ends wait for progress
// before it fails. Two disruptions of one path in a row (node-outage's
// 4 s, then a kill -9 whose restart takes 3 s on a loaded machine) back
// TCP's retransmissions off past 10 s; the streams must survive that,
// and a path that stays down for a minute is no recovery.
const streamPatience = time.Minute

// sample records a stall that just ended.
func (st *soakStream) sample(now time.Time) {
	_, v := st.s.Progress()
	st.mu.Lock()
	defer st.mu.Unlock()
	if v != st.last {
		if now.Sub(st.lastAt) > stallMin && !st.lastAt.IsZero() {
			st.stalls = append(st.stalls, span{st.lastAt, now})
		}
		st.last, st.lastAt = v, now
	}
}

// longestStall returns the longest stall overlapping [from, to] and the
// end of the last one, a stall still going at to included.
func (st *soakStream) longestStall(from, to time.Time) (longest time.Duration, lastEnd time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	stalls := slices2(st.stalls)
	if to.Sub(st.lastAt) > stallMin {
		stalls = append(stalls, span{st.lastAt, to})
	}
	for _, sp := range stalls {
		if sp.To.Before(from) || sp.From.After(to) {
			continue
		}
		if d := sp.To.Sub(sp.From); d > longest {
			longest = d
		}
		if sp.To.After(lastEnd) {
			lastEnd = sp.To
		}
	}
	return longest, lastEnd
}

func slices2(s []span) []span { return append([]span(nil), s...) }

// streamDefs: every node sends to the next across the underlay, and each
// node has one stream between its own pods.
type flowDef struct{ srcNode, srcIdx, dstNode, dstIdx int }

var streamDefs = []flowDef{
	{1, 0, 2, 0}, {2, 1, 3, 0}, {3, 1, 1, 1}, // across nodes
	{1, 0, 1, 1}, {2, 0, 2, 1}, {3, 0, 3, 1}, // within a node
}

// pingDefs are the fixed ping pairs.
var pingDefs = []flowDef{
	{1, 0, 3, 0}, {2, 0, 1, 1}, {3, 1, 2, 1}, // across nodes
	{1, 1, 1, 0}, // within a node
}

// Over IPv6 (every pod is dual-stack): ping pairs and one verified
// stream, between b pods, so that policy-flip's lists (pod a) stay as
// they were.
var (
	ping6Defs   = []flowDef{{1, 1, 2, 1}, {3, 1, 1, 1}, {2, 1, 2, 0}}
	stream6Defs = []flowDef{{2, 1, 1, 1}}
)

// allFlows is every pair of pods that talk throughout the run.
func allFlows() []flowDef {
	return slices.Concat(streamDefs, pingDefs, ping6Defs, stream6Defs, cutDefs, floodDefs)
}

func (s *soak) startLoad() {
	t := s.t
	for i, d := range streamDefs {
		src, dst := s.pods[podName(d.srcNode, d.srcIdx)], s.pods[podName(d.dstNode, d.dstIdx)]
		st, err := nstest.StartStreamWith(src, dst, podIP(d.dstNode, d.dstIdx), 5000+i, s.set.StreamRate, nstest.StreamOptions{Patience: streamPatience})
		if err != nil {
			t.Fatal(err)
		}
		s.streams = append(s.streams, &soakStream{
			Name:   fmt.Sprintf("%s->%s", podName(d.srcNode, d.srcIdx), podName(d.dstNode, d.dstIdx)),
			Cross:  d.srcNode != d.dstNode,
			s:      st,
			lastAt: time.Now(),
		})
	}
	for i, d := range stream6Defs {
		src, dst := s.pods[podName(d.srcNode, d.srcIdx)], s.pods[podName(d.dstNode, d.dstIdx)]
		st, err := nstest.StartStreamWith(src, dst, podIP6(d.dstNode, d.dstIdx), 5050+i, s.set.StreamRate, nstest.StreamOptions{Patience: streamPatience})
		if err != nil {
			t.Fatal(err)
		}
		s.streams = append(s.streams, &soakStream{
			Name:   fmt.Sprintf("%s->%s (IPv6)", podName(d.srcNode, d.srcIdx), podName(d.dstNode, d.dstIdx)),
			Cross:  d.srcNode != d.dstNode,
			s:      st,
			lastAt: time.Now(),
		})
	}
	s.startCutStreams()
	if s.set.UDPPPS > 0 {
		d := floodDefs[0]
		f, err := startFlood(s.pods[podName(d.srcNode, d.srcIdx)], s.pods[podName(d.dstNode, d.dstIdx)], podIP(d.dstNode, d.dstIdx), s.set.UDPPPS,
			fmt.Sprintf("%s->%s", podName(d.srcNode, d.srcIdx), podName(d.dstNode, d.dstIdx)))
		if err != nil {
			t.Fatal(err)
		}
		s.flood = f
	}
	for i, d := range slices.Concat(pingDefs, ping6Defs) {
		name := fmt.Sprintf("%s->%s", podName(d.srcNode, d.srcIdx), podName(d.dstNode, d.dstIdx))
		dst := podIP(d.dstNode, d.dstIdx)
		if i >= len(pingDefs) {
			dst = podIP6(d.dstNode, d.dstIdx)
			name += " (IPv6)"
		}
		p, err := startPinger(name, s.pods[podName(d.srcNode, d.srcIdx)], dst, uint16(0x5000+i), pingEvery)
		if err != nil {
			t.Fatal(err)
		}
		s.pingers = append(s.pingers, p)
	}
	targets := make([]netip.Addr, 0, nodes)
	for _, n := range s.nodes {
		targets = append(targets, nodeIP(n.i))
	}
	g, err := startGarbage(s.lab, s.lab.Lookup("evil"), nodeIP(66), targets, s.set.GarbagePPS, s.set.GarbageMax, s.garbageFate)
	if err != nil {
		t.Fatal(err)
	}
	s.garbage = g
	for _, n := range s.nodes {
		s.drops = append(s.drops, &dropTracker{n: n, total: map[string]int{}, last: map[string]int{}})
	}
	time.Sleep(500 * time.Millisecond) // the load under way before the calibration
	if s.set.GarbageCalibrate > 0 {
		s.account.Calibration = s.calibrate(s.set.GarbageCalibrate)
	}
	s.countersStart = cloneCounters(s.readCounters())
	g.start()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-tick.C:
				for _, st := range s.streams {
					st.sample(now)
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, d := range s.drops {
					d.poll(s)
				}
			}
		}
	}()
	s.stopSamplers = func() {
		close(stop)
		wg.Wait()
	}
	// Streams and pings settle before the first figure.
	time.Sleep(time.Second)
}

// dropTracker adds up an agent's drop counters across its restarts: a
// reading of another pid is a new incarnation, which starts from zero.
type dropTracker struct {
	n *node
	// pollMu makes polls one at a time: two readings taken concurrently
	// may arrive out of order.
	pollMu sync.Mutex
	mu     sync.Mutex
	pid    int
	total  map[string]int
	last   map[string]int
}

func (d *dropTracker) poll(s *soak) {
	d.pollMu.Lock()
	defer d.pollMu.Unlock()
	p := d.n.proc()
	if p == nil || !p.Alive() {
		return
	}
	out, err := s.cli(d.n, "stats", "-o", "json")
	if err != nil {
		return
	}
	var st struct {
		Drops map[string]int `json:"drops"`
	}
	if json.Unmarshal([]byte(out), &st) != nil {
		return
	}
	d.add(p.Pid(), st.Drops)
}

// add takes a reading of the agent with pid. Within one incarnation the
// counters only grow: a lower reading is an older one and adds nothing
// (taking it for a restart would count the whole counter twice).
func (d *dropTracker) add(pid int, drops map[string]int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if pid != d.pid {
		d.pid = pid
		d.last = map[string]int{}
	}
	for k, v := range drops {
		if v > d.last[k] {
			d.total[k] += v - d.last[k]
			d.last[k] = v
		}
	}
}
