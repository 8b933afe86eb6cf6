package fake

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

var (
	_ packetio.Underlay   = (*Underlay)(nil)
	_ packetio.BusyPoller = (*Underlay)(nil)
)

// Datagram is a tunnel payload with its metadata, as sent or received.
type Datagram struct {
	Payload []byte
	Meta    packetio.Meta
}

// Underlay is an in-memory tunnel underlay at one local address. It copies
// every payload in and out. Alone it keeps what is sent (Sent, WaitSent);
// attached to a Hub it carries each payload to the underlay at its
// destination address.
type Underlay struct {
	name  string
	local netip.AddrPort
	batch int
	hub   *Hub
	box[Datagram]
	busyPoll
}

// NewUnderlay returns an underlay at local that receives at most batch
// payloads per call.
func NewUnderlay(name string, local netip.AddrPort, batch int) *Underlay {
	u := &Underlay{name: name, local: local, batch: batch}
	u.init()
	return u
}

// Inject queues a copy of payload for Receive, as sent by from to the
// underlay's own port.
func (u *Underlay) Inject(payload []byte, from netip.AddrPort) {
	u.InjectTo(payload, from, u.local.Port())
}

// InjectTo is Inject to another local port (the VTEP port, say).
func (u *Underlay) InjectTo(payload []byte, from netip.AddrPort, port uint16) {
	u.inject(Datagram{Payload: append([]byte(nil), payload...), Meta: packetio.Meta{Remote: from, LocalPort: port}})
}

// InjectDatagram queues a copy of d for Receive: d.Meta.Remote is the
// sender, d.Meta.LocalPort the port it arrives on (0: the underlay's own),
// d.Meta.TOS the outer TOS or traffic class it arrived with, d.Meta.Sum
// and HasSum the payload's sum as a driver that verified an outer
// checksum reports it.
func (u *Underlay) InjectDatagram(d Datagram) {
	m := packetio.Meta{Remote: d.Meta.Remote, LocalPort: d.Meta.LocalPort, TOS: d.Meta.TOS, Sum: d.Meta.Sum, HasSum: d.Meta.HasSum}
	if m.LocalPort == 0 {
		m.LocalPort = u.local.Port()
	}
	u.inject(Datagram{Payload: append([]byte(nil), d.Payload...), Meta: m})
}

// Receive implements packetio.Underlay.
func (u *Underlay) Receive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	return u.read(len(bufs), func(i int, d Datagram) error {
		if offset+len(d.Payload) > len(bufs[i]) {
			return fmt.Errorf("fake %s: payload of %d bytes does not fit buffer", u.name, len(d.Payload))
		}
		sizes[i] = copy(bufs[i][offset:], d.Payload)
		meta[i] = d.Meta
		return nil
	})
}

// Send implements packetio.Underlay.
func (u *Underlay) Send(bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	c := make([]Datagram, len(bufs))
	for i, b := range bufs {
		c[i] = Datagram{Payload: append([]byte(nil), b[offset:]...), Meta: meta[i]}
	}
	if err := u.write(u.hub == nil, c...); err != nil {
		return 0, err
	}
	if u.hub != nil {
		for _, d := range c {
			from := netip.AddrPortFrom(u.local.Addr(), u.SourcePort(d.Meta.Flow))
			u.hub.carry(from, d.Meta, d.Payload)
		}
	}
	return len(bufs), nil
}

// SourcePort implements packetio.Underlay: the whole dynamic range, as a
// driver that writes its own headers uses it.
func (u *Underlay) SourcePort(flow uint32) uint16 { return encap.SourcePort(flow) }

// SourcePorts implements packetio.Underlay.
func (u *Underlay) SourcePorts() packetio.SourcePorts {
	return packetio.SourcePorts{Count: encap.SourcePortMax - encap.SourcePortMin + 1, Min: encap.SourcePortMin, Max: encap.SourcePortMax}
}

// BatchSize implements packetio.Underlay.
func (u *Underlay) BatchSize() int { return u.batch }

// Name implements packetio.Underlay.
func (u *Underlay) Name() string { return u.name }

// Close implements packetio.Underlay.
func (u *Underlay) Close() error { u.close(); return nil }

// Closed reports whether Close was called.
func (u *Underlay) Closed() bool { return u.isClosed() }

// Sent returns and forgets what was sent so far.
func (u *Underlay) Sent() []Datagram { return u.waitSent(0, 0) }

// WaitSent waits until at least n payloads were sent or timeout passes,
// then returns and forgets them.
func (u *Underlay) WaitSent(n int, timeout time.Duration) []Datagram { return u.waitSent(n, timeout) }

// Hub is an in-memory underlay network: a payload sent by an attached
// underlay arrives at the underlay attached at its destination address.
type Hub struct {
	mu    sync.Mutex // protects ports and lost
	ports map[netip.Addr]*Underlay
	lost  []Datagram
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{ports: make(map[netip.Addr]*Underlay)} }

// Attach connects a new underlay at local.
func (h *Hub) Attach(local netip.AddrPort, name string, batch int) *Underlay {
	u := NewUnderlay(name, local, batch)
	u.hub = h
	h.mu.Lock()
	h.ports[local.Addr()] = u
	h.mu.Unlock()
	return u
}

// carry delivers payload, sent from from as m says, with its TOS: the
// hub is an underlay that keeps DSCP and ECN as they were sent. A payload
// sent with its sum (Meta.HasSum) is checked against it, as the outer
// checksum written from that sum would be by a receiver: one that does
// not match is lost; one that does arrives with the sum, as from a driver
// that verified the checksum.
func (h *Hub) carry(from netip.AddrPort, m packetio.Meta, payload []byte) {
	to := m.Remote
	h.mu.Lock()
	u := h.ports[to.Addr()]
	if m.HasSum && encap.Fold(m.Sum) != encap.Fold(encap.Sum(payload, 0)) {
		u = nil
	}
	if u == nil {
		h.lost = append(h.lost, Datagram{Payload: append([]byte(nil), payload...), Meta: packetio.Meta{Remote: to, TOS: m.TOS}})
	}
	h.mu.Unlock()
	if u != nil {
		u.InjectDatagram(Datagram{Payload: payload, Meta: packetio.Meta{Remote: from, LocalPort: to.Port(), TOS: m.TOS, Sum: m.Sum, HasSum: m.HasSum}})
	}
}

// Lost returns payloads whose destination had no underlay.
func (h *Hub) Lost() []Datagram {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}
