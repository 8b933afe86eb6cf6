package dataplane

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxdp/vxdp/encap"
	"github.com/vxdp/vxdp/identity"
)

// Drop events for `vxdp monitor`. The packet path pays one atomic load per
// drop while nobody watches. While someone does, a worker copies the first
// bytes of the dropped packet into an event, at most eventsPerSecond a
// worker, and hands it over without blocking; decoding and fan-out happen
// on the monitor's own goroutine. A flood therefore costs the packet path a
// bounded amount of work and the monitor loses events, never the
// dataplane packets.

const (
	eventSnap       = 128  // bytes of the packet kept: outer and inner headers
	eventsPerSecond = 1000 // per worker
	eventBurst      = 100
	eventQueue      = 4096
)

type rawEvent struct {
	when   int64
	reason DropReason
	source sourceKind
	device string
	ident  identity.ID       // the sending endpoint's, for pod packets
	outer  [2]netip.AddrPort // sender and local address of a tunnel payload
	n      int
	data   [eventSnap]byte
}

// Event is one decoded monitor event.
type Event struct {
	Time     time.Time
	Type     string
	Reason   string
	Device   string
	Source   string
	Protocol string
	Src      string
	Dst      string
	Identity uint32
	OuterSrc string
	OuterDst string
	Bytes    int
}

type monitor struct {
	watchers atomic.Int32
	ch       chan rawEvent
	lost     atomic.Uint64

	mu   sync.Mutex // protects subs
	subs map[chan Event]struct{}
}

func newMonitor() *monitor {
	return &monitor{ch: make(chan rawEvent, eventQueue), subs: map[chan Event]struct{}{}}
}

// Subscribe streams drop events until ctx ends. The returned channel is
// closed then. A subscriber that reads too slowly loses events.
func (e *Engine) Subscribe(ctx context.Context) <-chan Event {
	m := e.mon
	c := make(chan Event, 256)
	m.mu.Lock()
	m.subs[c] = struct{}{}
	m.mu.Unlock()
	m.watchers.Add(1)
	go func() {
		<-ctx.Done()
		m.watchers.Add(-1)
		m.mu.Lock()
		delete(m.subs, c)
		close(c)
		m.mu.Unlock()
	}()
	return c
}

// runMonitor decodes and fans out events until stop closes.
func (m *monitor) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case r := <-m.ch:
			ev := r.decode()
			m.mu.Lock()
			for c := range m.subs {
				select {
				case c <- ev:
				default:
					m.lost.Add(1)
				}
			}
			m.mu.Unlock()
		}
	}
}

// report is called by worker.drop while someone watches.
func (w *worker) report(r DropReason) {
	now := time.Now().UnixNano()
	if !w.events.take(now, eventsPerSecond, eventBurst) {
		w.e.mon.lost.Add(1)
		return
	}
	ev := rawEvent{when: now, reason: r, source: w.kind, device: w.name}
	if w.ep != nil {
		ev.ident, _ = w.ep.identVNI()
		ev.device = w.ep.Name
	}
	if w.curMeta != nil {
		ev.outer = [2]netip.AddrPort{w.curMeta.Remote, netip.AddrPortFrom(w.e.cfg.NodeIP, w.curMeta.LocalPort)}
	}
	ev.n = copy(ev.data[:], w.cur)
	select {
	case w.e.mon.ch <- ev:
	default:
		w.e.mon.lost.Add(1)
	}
}

func (r *rawEvent) decode() Event {
	ev := Event{
		Time:   time.Unix(0, r.when),
		Type:   "drop",
		Reason: r.reason.String(),
		Device: r.device,
		Bytes:  r.n,
	}
	pkt := r.data[:r.n]
	switch r.source {
	case sourcePod:
		ev.Source, ev.Identity = "pod", uint32(r.ident)
	case sourceHost:
		ev.Source = "host"
	case sourceUnderlay:
		ev.Source = "underlay"
		ev.OuterSrc, ev.OuterDst = r.outer[0].String(), r.outer[1].String()
		// VXLAN and Geneve keep the VNI in the same place; the inner
		// frame is shown only behind a VXLAN-sized header.
		rest := pkt
		pkt = nil
		if len(rest) >= encap.VXLANLen {
			ev.Identity = encap.VXLAN(rest).VNI()
			rest = rest[encap.VXLANLen:]
			if len(rest) >= encap.EthernetLen {
				switch encap.Ethernet(rest).EtherType() {
				case encap.EtherTypeIPv4, encap.EtherTypeIPv6:
					pkt = rest[encap.EthernetLen:]
				}
			}
		}
	}
	switch encap.IPVersion(pkt) {
	case encap.IPv4Version:
		describeIPv4(&ev, pkt)
	case encap.IPv6Version:
		describeIPv6(&ev, pkt)
	}
	return ev
}

// describeIPv4 fills addresses, ports and protocol from whatever part of
// an IPv4 header the event kept.
func describeIPv4(ev *Event, pkt []byte) {
	if len(pkt) < encap.IPv4MinLen {
		return
	}
	ip := encap.IPv4(pkt)
	src, dst := ip.SourceAddr(), ip.DestinationAddr()
	ev.Src, ev.Dst = src.String(), dst.String()
	hl := ip.HeaderLen()
	switch ip.Protocol() {
	case encap.ProtoTCP:
		ev.Protocol = "tcp"
	case encap.ProtoUDP:
		ev.Protocol = "udp"
	case encap.ProtoICMP:
		ev.Protocol = "icmp"
		return
	default:
		return
	}
	if hl >= encap.IPv4MinLen && len(pkt) >= hl+4 && !ip.IsFragment() {
		u := encap.UDP(pkt[hl:])
		ev.Src = netip.AddrPortFrom(src, u.SourcePort()).String()
		ev.Dst = netip.AddrPortFrom(dst, u.DestinationPort()).String()
	}
}

// describeIPv6 fills addresses, ports and protocol ("tcp", "udp",
// "icmpv6", else "ipv6") from whatever part of an IPv6 packet the event
// kept. The extension headers are walked within the bytes kept: a chain
// longer than the snapshot leaves the protocol "ipv6".
func describeIPv6(ev *Event, pkt []byte) {
	ev.Protocol = "ipv6"
	if len(pkt) < encap.IPv6Len {
		return
	}
	// A copy whose payload length is what was kept, so that the walk
	// stays inside it; the monitor's goroutine may allocate.
	ip := encap.IPv6(append([]byte(nil), pkt...))
	src, dst := ip.SourceAddr(), ip.DestinationAddr()
	ev.Src, ev.Dst = src.String(), dst.String()
	ip.SetPayloadLen(uint16(min(len(ip)-encap.IPv6Len, ip.PayloadLen())))
	ip = ip[:ip.TotalLen()]
	u, err := ip.UpperLayer()
	if err != nil {
		return
	}
	switch u.Proto {
	case encap.ProtoTCP:
		ev.Protocol = "tcp"
	case encap.ProtoUDP:
		ev.Protocol = "udp"
	case encap.ProtoICMPv6:
		ev.Protocol = "icmpv6"
		return
	default:
		return
	}
	if len(ip) >= u.Offset+4 {
		p := encap.UDP(ip[u.Offset:])
		ev.Src = netip.AddrPortFrom(src, p.SourcePort()).String()
		ev.Dst = netip.AddrPortFrom(dst, p.DestinationPort()).String()
	}
}
