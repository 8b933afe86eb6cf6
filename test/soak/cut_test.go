package soak

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vxdp/vxdp/internal/nstest"
)

// Streams that a long removal of a node cuts. Their sender gives up after
// cutUserTimeout without an acknowledgement (TCP_USER_TIMEOUT), far
// sooner than TCP's minutes of retransmission, so that node-outage, which
// keeps a peer removed for outageHold, ends them; the soak must see the
// end as a cut (a timeout), never as corruption, and connect again once
// the peer is back. The bytes in flight at a cut are lost by the removal,
// not by the overlay: they are counted apart.
const (
	cutUserTimeout = 2 * time.Second
	// outageHold is how long node-outage keeps the peer removed: three
	// times cutUserTimeout (on a loaded machine a 4 s removal once left
	// a 2.5 s user timeout's stream uncut), and short enough that the
	// other streams (no user timeout) retransmit into the restored path
	// well within streamPatience.
	outageHold = 6 * time.Second
	cutRate    = 256 << 10
)

// cutDefs: the stream node-outage on node i cuts is cutDefs[i-1], from a
// pod of node i to a pod of the next node, the one removed.
var cutDefs = []flowDef{{1, 1, 2, 1}, {2, 1, 3, 1}, {3, 0, 1, 0}}

// cutStream keeps one such stream going: when it breaks it is aborted,
// the break recorded, and a new connection made as soon as one succeeds.
type cutStream struct {
	Name string
	src  *nstest.Netns
	dst  *nstest.Netns
	def  flowDef
	port int

	mu  sync.Mutex
	cur *nstest.Stream // nil while connecting again
	// curFrom is when cur connected.
	curFrom time.Time
	conns   int
	cuts    []cut
	// sent and verified of the connections that ended.
	sent, verified int64

	stop chan struct{}
	wg   sync.WaitGroup
}

// cut is one broken connection of a cutStream.
type cut struct {
	At      time.Time     // when the break was seen
	Back    time.Time     // when a new connection carried its first byte
	Err     string        // what the connection ended with
	Corrupt bool          // the receiver saw a wrong byte
	Lost    int64         // sent, never verified: in flight at the cut
	Connect time.Duration // the connection's age at the cut
}

func (s *soak) startCutStreams() {
	for i, d := range cutDefs {
		c := &cutStream{
			Name: fmt.Sprintf("%s->%s", podName(d.srcNode, d.srcIdx), podName(d.dstNode, d.dstIdx)),
			src:  s.pods[podName(d.srcNode, d.srcIdx)], dst: s.pods[podName(d.dstNode, d.dstIdx)],
			def: d, port: 5100 + i, stop: make(chan struct{}),
		}
		if err := c.connect(10 * time.Second); err != nil {
			s.t.Fatalf("cut stream %s: %v", c.Name, err)
		}
		c.wg.Add(1)
		go c.watch()
		s.cuts = append(s.cuts, c)
	}
}

func (c *cutStream) connect(timeout time.Duration) error {
	st, err := nstest.StartStreamWith(c.src, c.dst, podIP(c.def.dstNode, c.def.dstIdx), c.port, cutRate,
		nstest.StreamOptions{UserTimeout: cutUserTimeout, DialTimeout: timeout})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.cur, c.curFrom = st, time.Now()
	c.conns++
	c.mu.Unlock()
	return nil
}

// watch aborts a broken connection and connects again, every 50 ms.
func (c *cutStream) watch() {
	defer c.wg.Done()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		cur := c.cur
		c.mu.Unlock()
		if cur == nil {
			c.connect(time.Second)
			continue
		}
		c.mu.Lock()
		if n := len(c.cuts); n > 0 && c.cuts[n-1].Back.IsZero() {
			if _, v := cur.Progress(); v > 0 {
				c.cuts[n-1].Back = time.Now()
			}
		}
		c.mu.Unlock()
		if cur.Err() == nil {
			continue
		}
		snt, ver, err := cur.Abort()
		c.mu.Lock()
		c.cuts = append(c.cuts, cut{At: time.Now(), Err: err.Error(), Corrupt: errors.Is(err, nstest.ErrCorrupt),
			Lost: snt - ver, Connect: time.Since(c.curFrom)})
		c.sent += snt
		c.verified += ver
		c.cur = nil
		c.mu.Unlock()
	}
}

// cutsSince returns the cuts from index i on.
func (c *cutStream) cutsSince(i int) []cut {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i >= len(c.cuts) {
		return nil
	}
	return append([]cut(nil), c.cuts[i:]...)
}

func (c *cutStream) cutCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cuts)
}

// close stops watching, waits up to wait for a connection if none is
// up, and ends the last one cleanly: it must deliver every byte.
func (c *cutStream) close(wait time.Duration) (last error) {
	close(c.stop)
	c.wg.Wait()
	deadline := time.Now().Add(wait)
	for {
		c.mu.Lock()
		cur := c.cur
		c.mu.Unlock()
		if cur != nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not connected again within %v of the end", wait)
		}
		c.connect(time.Second)
	}
	snt, ver, err := c.cur.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent += snt
	c.verified += ver
	if err != nil || snt != ver {
		return fmt.Errorf("last connection: %d bytes sent, %d verified: %v", snt, ver, err)
	}
	return nil
}

// nodeOutage removes the next node from n's file for outageHold, longer
// than the cut stream to it waits: that stream must be cut (a timeout,
// not corruption) and, once the node is back, connect again and carry
// bytes. Returns the time from adding the node back to the new
// connection's first verified byte.
func (s *soak) nodeOutage(n *node) (time.Duration, error) {
	peer := n.i%nodes + 1
	c := s.cuts[n.i-1]
	before := c.cutCount()
	n.unavail.removed.Store(uint32(peer))
	defer n.unavail.removed.Store(0)
	s.writeConfig(n, configNoPeer)
	removed := time.Now()
	line, err := s.reload(n)
	if err != nil || !strings.Contains(line, "configuration reloaded") {
		s.writeConfig(n, configValid)
		return 0, fmt.Errorf("removing node%d: %v %s", peer, err, line)
	}
	time.Sleep(time.Until(removed.Add(outageHold)))
	s.writeConfig(n, configValid)
	start := time.Now()
	if line, err := s.reload(n); err != nil || !strings.Contains(line, "configuration reloaded") {
		return 0, fmt.Errorf("adding node%d back: %v %s", peer, err, line)
	}
	cuts := c.cutsSince(before)
	if len(cuts) == 0 {
		return 0, fmt.Errorf("%s not cut by a %v removal of node%d (user timeout %v)", c.Name, outageHold, peer, cutUserTimeout)
	}
	for _, k := range cuts {
		if k.Corrupt {
			return 0, fmt.Errorf("%s: the removal of node%d corrupted it: %s", c.Name, peer, k.Err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if cs := c.cutsSince(before); !cs[len(cs)-1].Back.IsZero() {
			return time.Since(start), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: no new connection carried a byte within 15s of node%d coming back", c.Name, peer)
}
