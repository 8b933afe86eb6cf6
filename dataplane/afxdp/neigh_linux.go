package afxdp

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Next-hop resolution for TX.
//
// Send builds an IPv4 or IPv6 packet (the node address's family) to the
// payload's destination; the frame needs the MAC of the next hop towards
// it. Writers look the destination up in an immutable snapshot (dst
// address -> next-hop MAC) behind an
// atomic.Pointer: no lock and no system call per packet. One goroutine owns
// everything else: it asks the kernel for the route to each destination
// writers missed (RouteGet: the gateway, or the destination itself when
// on-link), follows the kernel's neighbour table through a netlink
// subscription, triggers resolution for next hops the kernel does not know
// yet (IPv4: RTM_NEWNEIGH with NTF_USE, the kernel ARPs as if it had a
// packet to send and nothing is put on the wire by us; IPv6: an ICMPv6
// echo request handed to the kernel, which solicits for it, see
// ndp_linux.go for why), and publishes a new snapshot whenever a
// destination becomes usable or unusable. The kernel stays the only ARP
// and NDP speaker, so its timers, probes, gratuitous-ARP and unsolicited
// neighbour-advertisement handling apply. One table serves one family:
// entries of the other family are ignored.
//
// The same goroutine watches link events: an AF_XDP socket whose device
// is removed is silently unbound (poll reports nothing at all on it), so
// the removal is how blocked Reads learn they must return ErrDeviceGone.

// neighbour table tunables.
const (
	maxWaiting      = 256                    // packets waiting for ARP, all queues
	waitTimeout     = time.Second            // a waiting packet is dropped after this
	askInterval     = 500 * time.Millisecond // min time between resolutions of one next hop
	tickInterval    = 100 * time.Millisecond
	confirmInterval = 5 * time.Second // re-confirm STALE next hops in use this often
	rerouteDelay    = 50 * time.Millisecond
	requestBacklog  = 1024
)

// hop is what a writer needs for one destination.
type hop struct {
	mac     [6]byte
	noRoute bool
	// used is shared by every destination behind one next hop; writers
	// set it so that the owner keeps that neighbour entry confirmed.
	used *atomic.Bool
}

// neighSnap is an immutable destination table. Destinations without a
// usable next hop are absent; those not reached through the device map to
// noRoute, so that writers drop them without asking again.
type neighSnap struct {
	m       map[netip.Addr]hop
	version uint64 // increases with each publish; for debugging
}

func (s *neighSnap) lookup(dst netip.Addr) (hop, bool) {
	h, ok := s.m[dst]
	return h, ok
}

// dstState is the owner's view of one destination.
type dstState struct {
	nexthop netip.Addr
	noRoute bool
}

// hopState is the owner's view of one next hop (a neighbour entry).
type hopState struct {
	mac     [6]byte
	state   int
	present bool // an entry exists in the kernel
	lastAsk time.Time
	used    atomic.Bool
}

func (h *hopState) usable() bool {
	const ok = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY |
		netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP
	return h.present && h.state&ok != 0 && h.mac != [6]byte{}
}

type neighbours struct {
	log     *zap.Logger
	nl      *rtnl
	ifindex int
	v6      bool        // the table's family: IPv6 (NDP) or IPv4 (ARP)
	ndp     *ndpTrigger // IPv6: how resolution is asked for; nil for IPv4
	flush   func()      // sends or expires the waiting packets of every queue
	gone    func()      // the device was removed (or moved away)
	waiting *atomic.Int64

	snap     atomic.Pointer[neighSnap]
	reqs     chan netip.Addr
	done     chan struct{}
	wg       sync.WaitGroup
	requests atomic.Uint64 // resolutions triggered

	// Owned by run.
	dsts        map[netip.Addr]*dstState
	hops        map[netip.Addr]*hopState
	version     uint64
	neighCh     chan netlink.NeighUpdate
	routeCh     chan netlink.RouteUpdate
	linkCh      chan netlink.LinkUpdate
	subDone     chan struct{}
	resubscribe bool
	rerouteAt   time.Time
	confirmAt   time.Time
	logErrAt    time.Time
}

func newNeighbours(log *zap.Logger, r *rtnl, ifindex int, nodeIP netip.Addr, waiting *atomic.Int64, flush, gone func()) (*neighbours, error) {
	v6 := nodeIP.Is6()
	n := &neighbours{
		log:     log,
		nl:      r,
		ifindex: ifindex,
		v6:      v6,
		flush:   flush,
		gone:    gone,
		waiting: waiting,
		reqs:    make(chan netip.Addr, requestBacklog),
		done:    make(chan struct{}),
		dsts:    make(map[netip.Addr]*dstState),
		hops:    make(map[netip.Addr]*hopState),
	}
	n.snap.Store(&neighSnap{m: map[netip.Addr]hop{}})
	if v6 {
		t, err := newNDPTrigger(nodeIP, ifindex)
		if err != nil {
			// NTF_USE still resolves once the link-local address is
			// usable; only slower.
			log.Warn("afxdp: neighbour discovery falls back to netlink requests", zap.Error(err))
		}
		n.ndp = t
	}
	if err := n.subscribe(); err != nil {
		if n.ndp != nil {
			n.ndp.close()
		}
		return nil, err
	}
	n.wg.Add(1)
	go n.run()
	return n, nil
}

// subscribe (re)starts the neighbour, route and link subscriptions. The
// neighbour one lists the existing entries first, so a restart after an
// overrun catches up.
func (n *neighbours) subscribe() error {
	n.subDone = make(chan struct{})
	n.neighCh = make(chan netlink.NeighUpdate, 256)
	n.routeCh = make(chan netlink.RouteUpdate, 256)
	n.linkCh = make(chan netlink.LinkUpdate, 64)
	ns := n.nl.ns
	onErr := func(err error) {
		if !errors.Is(err, net.ErrClosed) {
			n.log.Warn("afxdp: netlink subscription failed; restarting it", zap.Error(err))
		}
	}
	// A failed subscription never closes its channel: forget it, so that
	// unsubscribe does not wait for it.
	err := netlink.NeighSubscribeWithOptions(n.neighCh, n.subDone, netlink.NeighSubscribeOptions{
		Namespace: &ns, ListExisting: true, ErrorCallback: onErr,
	})
	if err != nil {
		n.neighCh = nil
	}
	if err == nil {
		if err = netlink.RouteSubscribeWithOptions(n.routeCh, n.subDone, netlink.RouteSubscribeOptions{
			Namespace: &ns, ErrorCallback: onErr,
		}); err != nil {
			n.routeCh = nil
		}
	} else {
		n.routeCh = nil
	}
	if err == nil {
		if err = netlink.LinkSubscribeWithOptions(n.linkCh, n.subDone, netlink.LinkSubscribeOptions{
			Namespace: &ns, ErrorCallback: onErr,
		}); err != nil {
			n.linkCh = nil
		}
	} else {
		n.linkCh = nil
	}
	if err != nil {
		n.unsubscribe()
		return err
	}
	return nil
}

// request is the writers' miss path: ask the owner to resolve dst. It never
// blocks; a dropped request is repeated by the next packet to dst.
func (n *neighbours) request(dst netip.Addr) {
	select {
	case n.reqs <- dst:
	default:
	}
}

func (n *neighbours) stop() {
	close(n.done)
	n.wg.Wait()
	if n.ndp != nil {
		n.ndp.close()
	}
}

func (n *neighbours) run() {
	defer n.wg.Done()
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	defer n.unsubscribe()
	for {
		dirty, tick := false, false
		select {
		case <-n.done:
			return
		case dst := <-n.reqs:
			dirty = n.track(dst, time.Now())
		case u, ok := <-n.neighCh:
			if !ok {
				n.neighCh = nil
				n.resubscribe = true
				continue
			}
			dirty = n.neighUpdate(u)
		case _, ok := <-n.routeCh:
			if !ok {
				n.routeCh = nil
				n.resubscribe = true
				continue
			}
			// Coalesce bursts (a routing daemon installing a table).
			if n.rerouteAt.IsZero() {
				n.rerouteAt = time.Now().Add(rerouteDelay)
			}
		case u, ok := <-n.linkCh:
			if !ok {
				n.linkCh = nil
				n.resubscribe = true
				continue
			}
			if u.Header.Type == unix.RTM_DELLINK && int(u.Index) == n.ifindex {
				n.gone()
			}
			continue
		case now := <-ticker.C:
			tick = true
			dirty = n.tick(now)
		}
		if dirty {
			n.publish()
		}
		if (dirty || tick) && n.waiting.Load() > 0 {
			n.flush()
		}
	}
}

// unsubscribe stops the subscriptions and drains their channels: the
// netlink goroutines block on a full channel and only notice the closed
// socket once they get past it.
func (n *neighbours) unsubscribe() {
	if n.subDone == nil {
		return
	}
	close(n.subDone)
	n.subDone = nil
	timeout := time.After(2 * time.Second)
	for n.neighCh != nil || n.routeCh != nil || n.linkCh != nil {
		select {
		case _, ok := <-n.linkCh:
			if !ok {
				n.linkCh = nil
			}
		case _, ok := <-n.neighCh:
			if !ok {
				n.neighCh = nil
			}
		case _, ok := <-n.routeCh:
			if !ok {
				n.routeCh = nil
			}
		case <-timeout:
			return
		}
	}
}

func (n *neighbours) tick(now time.Time) bool {
	dirty := false
	if n.resubscribe {
		n.unsubscribe()
		if err := n.subscribe(); err != nil {
			n.logRare(now, "afxdp: netlink resubscribe failed", err)
		} else {
			n.resubscribe = false
		}
	}
	if !n.rerouteAt.IsZero() && !now.Before(n.rerouteAt) {
		n.rerouteAt = time.Time{}
		dirty = n.reroute(now) || dirty
	}
	if now.After(n.confirmAt) {
		n.confirmAt = now.Add(confirmInterval)
		for ip, h := range n.hops {
			// A STALE entry is still used, but the kernel only confirms
			// it when it sends through it itself, which it never does
			// for our traffic: ask it to, so a changed MAC is noticed.
			if h.used.Swap(false) && h.present && h.state&netlink.NUD_STALE != 0 {
				n.ask(ip, h, now)
			}
		}
	}
	// Waiting packets for a next hop the kernel gave up on: try again
	// (rate-limited) while they wait.
	if n.waiting.Load() > 0 {
		for _, d := range n.dsts {
			if d.noRoute {
				continue
			}
			if h := n.hops[d.nexthop]; h == nil || !h.usable() {
				n.ask(d.nexthop, n.hop(d.nexthop), now)
			}
		}
	}
	return dirty
}

// track starts following dst, or re-asks for its next hop.
func (n *neighbours) track(dst netip.Addr, now time.Time) bool {
	if d, ok := n.dsts[dst]; ok {
		if d.noRoute {
			return false
		}
		h := n.hop(d.nexthop)
		if h.usable() {
			// A writer missed a snapshot we published meanwhile; let the
			// flush (done after a publish) or its next packet find it.
			return false
		}
		n.ask(d.nexthop, h, now)
		return false
	}
	d := n.route(dst, now)
	n.dsts[dst] = d
	if d.noRoute {
		return true
	}
	h := n.hop(d.nexthop)
	if h.usable() {
		return true
	}
	n.ask(d.nexthop, h, now)
	return false
}

// route finds the next hop of dst through the underlay device.
func (n *neighbours) route(dst netip.Addr, now time.Time) *dstState {
	routes, err := n.nl.h.RouteGet(net.IP(dst.AsSlice()))
	if err != nil || len(routes) == 0 {
		if err != nil && !errors.Is(err, unix.ENETUNREACH) && !errors.Is(err, unix.EHOSTUNREACH) {
			n.logRare(now, "afxdp: route lookup failed", err)
		}
		return &dstState{noRoute: true}
	}
	r := routes[0]
	if r.LinkIndex != n.ifindex || r.Type == unix.RTN_LOCAL {
		return &dstState{noRoute: true}
	}
	nh := dst
	if gw, ok := n.addrOf(r.Gw); ok && !gw.IsUnspecified() {
		nh = gw
	}
	return &dstState{nexthop: nh}
}

// reroute looks every destination up again after the routing table
// changed.
func (n *neighbours) reroute(now time.Time) bool {
	dirty := false
	for dst, d := range n.dsts {
		nd := n.route(dst, now)
		if *nd != *d {
			n.dsts[dst] = nd
			dirty = true
			if !nd.noRoute && !n.hop(nd.nexthop).usable() {
				n.ask(nd.nexthop, n.hop(nd.nexthop), now)
			}
		}
	}
	return dirty
}

func (n *neighbours) hop(ip netip.Addr) *hopState {
	h := n.hops[ip]
	if h == nil {
		h = &hopState{}
		n.hops[ip] = h
	}
	return h
}

// ask makes the kernel resolve ip, at most every askInterval.
func (n *neighbours) ask(ip netip.Addr, h *hopState, now time.Time) {
	if now.Sub(h.lastAsk) < askInterval {
		return
	}
	h.lastAsk = now
	n.requests.Add(1)
	if n.ndp != nil {
		if err := n.ndp.trigger(ip); err != nil {
			n.logRare(now, "afxdp: neighbour discovery request failed", err)
		}
		return
	}
	family := netlink.FAMILY_V4
	if n.v6 {
		family = netlink.FAMILY_V6
	}
	err := n.nl.h.NeighSet(&netlink.Neigh{
		LinkIndex: n.ifindex,
		Family:    family,
		IP:        net.IP(ip.AsSlice()),
		Flags:     netlink.NTF_USE,
	})
	if err != nil {
		n.logRare(now, "afxdp: neighbour resolution request failed", err)
	}
}

// neighUpdate applies one kernel neighbour event; it reports whether some
// destination changed its usable MAC.
func (n *neighbours) neighUpdate(u netlink.NeighUpdate) bool {
	if u.LinkIndex != n.ifindex {
		return false
	}
	if (u.Family == netlink.FAMILY_V6) != n.v6 {
		return false
	}
	ip, ok := n.addrOf(u.IP)
	if !ok {
		return false
	}
	h := n.hop(ip)
	wasUsable, oldMAC := h.usable(), h.mac
	if u.Type == unix.RTM_DELNEIGH {
		h.present, h.state = false, 0
	} else {
		h.present, h.state = true, u.State
		if len(u.HardwareAddr) == 6 {
			h.mac = [6]byte(u.HardwareAddr)
		}
	}
	if h.usable() == wasUsable && (!wasUsable || h.mac == oldMAC) {
		return false
	}
	for _, d := range n.dsts {
		if !d.noRoute && d.nexthop == ip {
			return true
		}
	}
	return false
}

// publish builds and stores a new snapshot from the owner's tables.
func (n *neighbours) publish() {
	m := make(map[netip.Addr]hop, len(n.dsts))
	for dst, d := range n.dsts {
		if d.noRoute {
			m[dst] = hop{noRoute: true}
			continue
		}
		if h := n.hops[d.nexthop]; h != nil && h.usable() {
			m[dst] = hop{mac: h.mac, used: &h.used}
		}
	}
	n.version++
	n.snap.Store(&neighSnap{m: m, version: n.version})
}

// logRare logs at most one error a second: these come from the control
// path, but a broken netlink socket would otherwise log per request.
func (n *neighbours) logRare(now time.Time, msg string, err error) {
	if now.Sub(n.logErrAt) < time.Second {
		return
	}
	n.logErrAt = now
	n.log.Warn(msg, zap.Error(err))
}

// addrOf converts a netlink address (a gateway, a neighbour) into the key
// of the table's family: a plain 4-byte IPv4 address, or an IPv6 one
// (link-local next hops included, which are scoped to the device the table
// serves). Addresses of the other family, and none, are not ok.
func (n *neighbours) addrOf(ip net.IP) (netip.Addr, bool) {
	if n.v6 {
		if len(ip) != net.IPv6len || ip.To4() != nil {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(ip)), true
	}
	ip4 := ip.To4()
	if ip4 == nil {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(ip4)), true
}
