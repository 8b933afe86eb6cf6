package dataplane

import (
	"net/netip"
	"sort"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// Endpoint is an endpoint with the name of its device inside the pod and
// its MTU.
type Endpoint struct {
	EndpointSpec
	Device string
	MTU    int
	// DeviceGone says the kernel removed the device (the pod's network
	// namespace was deleted); the endpoint waits to be deleted.
	DeviceGone bool
}

// Endpoints lists the endpoints sorted by name.
func (e *Engine) Endpoints() []Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Endpoint, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		out = append(out, Endpoint{EndpointSpec: ep.EndpointSpec, Device: ep.Ifname, MTU: e.RouteMTU(), DeviceGone: ep.gone.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// FIBEntry is one prefix of the FIB and where it leads. Which of the
// target fields is set depends on what the prefix stands for: Endpoint for
// a local endpoint; Node and NodeIP for a remote node's pod CIDR (a tunnel
// route, or a host route in native mode); VTEP and VTEPMAC for a VTEP CIDR.
// The other prefixes (the default route, this node's and the cluster's
// CIDRs, node addresses, the host address) have none.
type FIBEntry struct {
	Prefix   netip.Prefix
	Kind     RouteKind
	Endpoint string
	Node     string
	NodeIP   netip.Addr
	VTEP     netip.Addr
	VTEPMAC  encap.MAC
}

// FIB lists the current FIB.
func (e *Engine) FIB() []FIBEntry {
	fib := e.state.Load().fib
	out := make([]FIBEntry, 0, fib.Len())
	for p, r := range fib.All() {
		fe := FIBEntry{Prefix: p, Kind: r.kind}
		switch {
		case r.ep != nil:
			fe.Endpoint = r.ep.Name
		case r.peer != nil:
			fe.Node, fe.NodeIP = r.peer.Name, r.peer.IP
		case r.vtep != nil:
			fe.VTEP, fe.VTEPMAC = r.vtep.dev.ip, r.vtep.tun.dstMAC
		}
		out = append(out, fe)
	}
	return out
}

// Counts says how much the engine holds, without listing it.
type Counts struct {
	Endpoints, Nodes, VTEPs int
	FIBEntries              int // prefixes in the FIB
}

// Counts counts the endpoints, nodes, VTEP CIDRs and FIB prefixes.
func (e *Engine) Counts() Counts {
	e.mu.Lock()
	c := Counts{Endpoints: len(e.endpoints), Nodes: len(e.nodes), VTEPs: len(e.vteps)}
	e.mu.Unlock()
	c.FIBEntries = e.state.Load().fib.Len()
	return c
}

// Stats is a point-in-time copy of the engine's counters.
type Stats struct {
	Devices     []DeviceCounters
	Drops       map[string]uint64
	ICMPErrors  uint64
	ARPReplies  uint64
	TotalDrops  uint64
	RouteMTU    int
	UnderlayMTU int
	// MonitorEventsLost counts drop events left out of the monitor: a
	// watcher too slow, or more than the rate limit.
	MonitorEventsLost uint64
	// ICMPErrorsLimited counts ICMP errors held back by the rate limit.
	ICMPErrorsLimited uint64
	// ECNAnomalies counts tunnel packets delivered with an ECN
	// combination RFC 6040 section 4.2 calls currently unused (an
	// ECN-capable outer header over a Not-ECT inner packet, ECT(1)
	// outside CE): a sender or a hop on the underlay that does ECN
	// wrongly.
	ECNAnomalies uint64
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := Stats{Drops: make(map[string]uint64, numDropReasons), RouteMTU: e.RouteMTU(), UnderlayMTU: e.UnderlayMTU()}
	for i := range e.underlays {
		u := e.underlays[i].dev
		c := e.underlays[i].stats.snapshot(u, u.Name(), "underlay")
		sp := u.SourcePorts()
		c.SourcePorts = &sp
		if i == 0 {
			// The tunnel-gso way out serves every queue; the first
			// shows it.
			switch {
			case e.tunnelGSO != nil:
				o := e.tunnelGSO.Offload()
				if w := e.tunnelGSOWait.Load(); w != nil && o.Active {
					o.Active, o.Reason = false, "not yet: "+*w
				}
				c.Offloads = append(c.Offloads, o)
			case e.cfg.TunnelGSOOff != "":
				c.Offloads = append(c.Offloads, packetio.Offload{Name: "tunnel-gso", Reason: e.cfg.TunnelGSOOff})
			}
		}
		s.Devices = append(s.Devices, c)
	}
	if e.host != nil {
		s.Devices = append(s.Devices, e.hostStats.snapshot(e.host, e.host.Name(), "host"))
	}
	e.mu.Lock()
	eps := make([]*endpoint, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		eps = append(eps, ep)
	}
	e.mu.Unlock()
	sort.Slice(eps, func(i, j int) bool { return eps[i].Name < eps[j].Name })
	for _, ep := range eps {
		s.Devices = append(s.Devices, ep.stats.snapshot(ep.dev, ep.Name, "endpoint"))
	}
	for _, r := range DropReasons() {
		v := e.Drops(r)
		s.Drops[r.String()] = v
		s.TotalDrops += v
	}
	s.ICMPErrors = e.icmps.Load()
	s.ICMPErrorsLimited = e.icmpsLimited.Load()
	s.ARPReplies = e.arpReplies.Load()
	s.ECNAnomalies = e.ecnAnomalies.Load()
	s.MonitorEventsLost = e.mon.lost.Load()
	return s
}

// Drops returns the drop counter of one reason.
func (e *Engine) Drops(r DropReason) uint64 {
	switch r {
	case DropQueueFull:
		return e.queueFull()
	case DropTxError:
		// What a driver refused because its queue was full is counted
		// by the worker as not accepted; it shows as queue_full.
		v, qf := e.drops[r].Load(), e.queueFull()
		return v - min(v, qf)
	}
	return e.drops[r].Load()
}

// queueFull sums what the underlay drivers dropped for want of room on
// their transmit queues.
func (e *Engine) queueFull() uint64 {
	var n uint64
	for i := range e.underlays {
		if c, ok := e.underlays[i].dev.(packetio.QueueFullCounter); ok {
			n += c.TXQueueFull()
		}
	}
	return n
}
