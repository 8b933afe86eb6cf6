package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// Captures copy the packets crossing one device, both directions, to a
// reader (vxdp capture writes them as pcap). With no capture running the
// packet path pays one atomic load per batch; with one running, the
// captured device's packets are copied into a bounded queue, and what does
// not fit is left out of the capture, never waited for.

// CapturedPacket is one packet seen at a capture point.
type CapturedPacket struct {
	Time time.Time
	Out  bool // written by vxdp to the device (else read from it)
	Data []byte
}

type tap struct {
	ch chan CapturedPacket
}

// CaptureKind says which device a capture point is.
type CaptureKind uint8

// Capture points.
const (
	CaptureUnderlay CaptureKind = iota + 1 // the (first queue of the) underlay
	CaptureHost                            // the host device
	CaptureEndpoint                        // an endpoint's device
)

// CapturePoint names the device a capture copies: Endpoint is the
// endpoint's name for CaptureEndpoint, empty otherwise.
type CapturePoint struct {
	Kind     CaptureKind
	Endpoint string
}

// device returns the device (a packetio.Device, or underlayTap for all
// underlay devices) at p. Its errors name the cause, not the
// point: the caller knows how its user spelled the point.
func (e *Engine) device(p CapturePoint) (any, error) {
	switch p.Kind {
	case CaptureUnderlay:
		if len(e.underlays) == 0 {
			return nil, fmt.Errorf("no underlay device: %w", ErrNotFound)
		}
		return underlayTap{}, nil
	case CaptureHost:
		if e.host == nil {
			return nil, fmt.Errorf("no host device: %w", ErrNotFound)
		}
		return e.host, nil
	case CaptureEndpoint:
		e.mu.Lock()
		ep, ok := e.endpoints[p.Endpoint]
		e.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("endpoint %s: %w", p.Endpoint, ErrNotFound)
		}
		return ep.dev, nil
	}
	return nil, fmt.Errorf("capture point kind %d: %w", p.Kind, ErrInvalid)
}

// Capture streams copies of the packets crossing point until ctx ends.
// Only one capture per point runs at a time.
func (e *Engine) Capture(ctx context.Context, point CapturePoint) (<-chan CapturedPacket, error) {
	dev, err := e.device(point)
	if err != nil {
		return nil, err
	}
	t := &tap{ch: make(chan CapturedPacket, 4096)}
	e.tapsMu.Lock()
	old := e.taps.Load()
	m := map[any]*tap{}
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	if _, busy := m[dev]; busy {
		e.tapsMu.Unlock()
		return nil, fmt.Errorf("a capture is running: %w", ErrExists)
	}
	m[dev] = t
	e.taps.Store(&m)
	e.tapsMu.Unlock()
	go func() {
		<-ctx.Done()
		e.tapsMu.Lock()
		cur := *e.taps.Load()
		n := map[any]*tap{}
		for k, v := range cur {
			if k != dev {
				n[k] = v
			}
		}
		if len(n) == 0 {
			e.taps.Store(nil)
		} else {
			e.taps.Store(&n)
		}
		e.tapsMu.Unlock()
		// Writers may still hold t for the batch in flight; they never
		// block on it, and the channel is left for the GC rather than
		// closed under them.
	}()
	return t.ch, nil
}

// underlayTap keys the capture of the underlay: every underlay device
// (the sockets or queues flows are spread over) at once, so that a
// capture sees each flow whichever device carries it.
type underlayTap struct{}

// tapFor returns the tap on dev (a packetio.Device, or underlayTap), if a
// capture runs there.
func (e *Engine) tapFor(dev any) *tap {
	m := e.taps.Load()
	if m == nil {
		return nil
	}
	return (*m)[dev]
}

func (t *tap) put(out bool, pkt []byte) {
	select {
	case t.ch <- CapturedPacket{Time: time.Now(), Out: out, Data: append([]byte(nil), pkt...)}:
	default:
	}
}

// putUnderlay captures a tunnel payload as the packet on the wire: the
// outer IPv4 or IPv6 and UDP headers the underlay adds or strips are
// rebuilt in front of it (with the source port the underlay uses for the
// flow, and over IPv6 the flow label the flow hash gives and a UDP
// checksum, and the TOS or traffic class the driver read or is to write),
// so the capture reads like one taken on the NIC. Only captures pay for
// it.
func (t *tap) putUnderlay(e *Engine, out bool, payload []byte, m *packetio.Meta) {
	hlen := encap.OuterV4Len
	if e.node6 {
		hlen = encap.OuterV6Len
	}
	b := make([]byte, hlen+len(payload))
	copy(b[hlen:], payload)
	local := netip.AddrPortFrom(e.cfg.NodeIP, m.LocalPort)
	src, dst := m.Remote, local
	var label uint32
	if out {
		src, dst = netip.AddrPortFrom(e.cfg.NodeIP, e.underlays[e.underlayFor(m.Flow)].dev.SourcePort(m.Flow)), m.Remote
		label = encap.FlowLabel(m.Flow)
	}
	var err error
	if e.node6 {
		err = encap.EncodeOuterV6(b, src, dst, len(payload), m.TOS, label)
	} else if err = encap.EncodeOuterV4(b, src, dst, len(payload)); err == nil {
		encap.IPv4(b).SetTOS(m.TOS)
	}
	if err != nil {
		return
	}
	select {
	case t.ch <- CapturedPacket{Time: time.Now(), Out: out, Data: b}:
	default:
	}
}
