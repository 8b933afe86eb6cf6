package soak

import (
	"testing"
	"time"
)

// The figures a fault is judged by: loss and gaps cut at the window's
// edges, stalls that overlap it.
func TestPingFigures(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	p := &pinger{}
	// Requests every 10 ms from 0 to 990 ms; 300..590 unanswered.
	for ms := 0; ms < 1000; ms += 10 {
		p.sent = append(p.sent, at(ms))
		p.rcvd = append(p.rcvd, ms < 300 || ms >= 600)
	}
	f := p.figures(at(250), at(700), at(2000))
	if f.Sent != 46 || f.Lost != 30 || f.MaxGap != 310*time.Millisecond || !f.LastBad.Equal(at(590)) {
		t.Errorf("window over the outage: %+v", f)
	}
	// A window that begins inside the outage still sees the gap that
	// ends in it.
	if f := p.figures(at(400), at(700), at(2000)); f.MaxGap != 310*time.Millisecond || f.Lost != 20 {
		t.Errorf("window inside the outage: %+v", f)
	}
	if f := p.figures(at(700), at(900), at(2000)); f.Lost != 0 || f.MaxGap != 0 {
		t.Errorf("quiet window: %+v", f)
	}
	// A pause of the sender is no outage.
	q := &pinger{sent: []time.Time{at(0), at(10), at(900), at(910)}, rcvd: []bool{true, true, true, true}}
	if f := q.figures(at(0), at(990), at(2000)); f.MaxGap != 0 || f.Lost != 0 {
		t.Errorf("sender pause: %+v", f)
	}
	// Requests after the cutoff are not judged.
	if f := p.figures(at(0), at(990), at(350)); f.Sent != 36 || f.Lost != 6 {
		t.Errorf("cutoff: %+v", f)
	}
}

func TestStreamStalls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	st := &soakStream{lastAt: at(900), stalls: []span{{at(100), at(400)}, {at(500), at(550)}}}
	if l, end := st.longestStall(at(300), at(600)); l != 300*time.Millisecond || !end.Equal(at(550)) {
		t.Errorf("longest %v, last end %v", l, end.Sub(t0))
	}
	if l, _ := st.longestStall(at(600), at(850)); l != 0 {
		t.Errorf("quiet window: %v", l)
	}
	// Still stalled at the end of the window: counted up to it.
	if l, _ := st.longestStall(at(950), at(1200)); l != 300*time.Millisecond {
		t.Errorf("ongoing stall: %v", l)
	}
}

func TestDropTrackerRestart(t *testing.T) {
	d := &dropTracker{total: map[string]int{}, last: map[string]int{}}
	d.add(1, map[string]int{"invalid_header": 10})
	d.add(1, map[string]int{"invalid_header": 25})
	// A new agent counts from zero again.
	d.add(2, map[string]int{"invalid_header": 4})
	d.add(2, map[string]int{"invalid_header": 9})
	if got := d.total["invalid_header"]; got != 34 {
		t.Errorf("total %d, want 34", got)
	}
	// An older reading of the same agent arriving late adds nothing.
	d.add(2, map[string]int{"invalid_header": 7})
	d.add(2, map[string]int{"invalid_header": 11})
	if got := d.total["invalid_header"]; got != 36 {
		t.Errorf("total %d after a stale reading, want 36", got)
	}
}

// A pair that keeps losing at the end of a window has not recovered;
// scattered losses (full queues on a loaded machine) are not that.
func TestStillLosing(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	mk := func(lost func(ms int) bool) *pinger {
		p := &pinger{name: "p"}
		for ms := 0; ms < 2000; ms += 10 {
			p.sent = append(p.sent, at(ms))
			p.rcvd = append(p.rcvd, !lost(ms))
		}
		return p
	}
	down := mk(func(ms int) bool { return ms >= 1600 })
	scattered := mk(func(ms int) bool { return ms%50 == 0 })
	// The last 500 ms: 10 answered, 40 lost.
	if p, f := stillLosing([]*pinger{scattered, down}, at(2000), at(3000)); p != down || f.Lost != 40 || f.Sent != 50 {
		t.Errorf("an outage to the end: got %v, %+v", p != nil, f)
	}
	if p, f := stillLosing([]*pinger{scattered}, at(2000), at(3000)); p != nil {
		t.Errorf("scattered loss taken as no recovery: %+v", f)
	}
	// A pinger the machine starved: 7 requests in the last 500 ms, 5
	// of them lost.
	starved := &pinger{name: "starved"}
	for i, ms := range []int{0, 100, 1550, 1700, 1800, 1850, 1900, 1950, 1990} {
		starved.sent = append(starved.sent, at(ms))
		starved.rcvd = append(starved.rcvd, i < 4)
	}
	if p, f := stillLosing([]*pinger{starved}, at(2000), at(3000)); p != nil {
		t.Errorf("a few losses of a starved pinger taken as no recovery: %+v", f)
	}
	recovered := mk(func(ms int) bool { return ms >= 1000 && ms < 1400 })
	if p, _ := stillLosing([]*pinger{recovered}, at(2000), at(3000)); p != nil {
		t.Error("a recovered outage taken as ongoing")
	}
}
