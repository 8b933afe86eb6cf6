package dataplane

import (
	"net/netip"
	"sort"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

// Endpoint is an endpoint as the API shows it.
type Endpoint struct {
	EndpointSpec
	Device string `json:"device"`
	MTU    int    `json:"mtu"`
}

// Endpoints lists the endpoints sorted by name.
func (e *Engine) Endpoints() []Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Endpoint, 0, len(e.endpoints))
	for _, ep := range e.endpoints {
		out = append(out, Endpoint{EndpointSpec: ep.EndpointSpec, Device: ep.Ifname, MTU: e.routeMTU})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// FIBEntry is one FIB prefix as the API shows it.
type FIBEntry struct {
	Prefix netip.Prefix `json:"prefix"`
	Kind   string       `json:"kind"`
	Target string       `json:"target,omitempty"`
}

// FIB lists the current FIB.
func (e *Engine) FIB() []FIBEntry {
	var out []FIBEntry
	for p, r := range e.state.Load().fib.All() {
		fe := FIBEntry{Prefix: p, Kind: r.kind.String()}
		switch {
		case r.ep != nil:
			fe.Target = "endpoint " + r.ep.Name
		case r.peer != nil:
			fe.Target = "node " + r.peer.Name + " " + r.peer.IP.String()
		case r.vtep != nil:
			fe.Target = "vtep " + r.vtep.dev.ip.String() + " " + r.vtep.tun.dstMAC.String()
		case r.kind == RouteHost:
			fe.Target = "vxdp_host"
		}
		out = append(out, fe)
	}
	return out
}

// Stats is a point-in-time copy of the engine's counters.
type Stats struct {
	Devices     []DeviceCounters  `json:"devices"`
	Drops       map[string]uint64 `json:"drops"`
	ICMPErrors  uint64            `json:"icmp_errors_sent"`
	ARPReplies  uint64            `json:"arp_replies_sent"`
	TotalDrops  uint64            `json:"total_drops"`
	RouteMTU    int               `json:"route_mtu"`
	UnderlayMTU int               `json:"underlay_mtu"`
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := Stats{Drops: make(map[string]uint64, numDropReasons), RouteMTU: e.routeMTU, UnderlayMTU: e.cfg.UnderlayMTU}
	for i := range e.underlays {
		u := e.underlays[i].dev
		c := e.underlays[i].stats.snapshot(u, u.Name(), "underlay")
		sp := u.SourcePorts()
		c.SourcePorts = &sp
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
	s.ARPReplies = e.arpReplies.Load()
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
