// Package fake is an in-memory packetio.Device for tests: packets injected
// by the test are what Read returns, and what the engine writes is kept or
// carried to another fake device over a Hub, so whole multi-node topologies
// run without a kernel.
package fake

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

var _ packetio.Device = (*Device)(nil)

// Device is an in-memory packet device. It copies every packet in and out,
// so tests can keep what they get and reuse what they give.
type Device struct {
	name  string
	batch int
	hub   *Hub // where writes go, if attached

	mu     sync.Mutex // protects the fields below
	cond   *sync.Cond
	rx     [][]byte // waiting to be read
	sent   [][]byte // written, when not attached to a hub
	closed bool
	stall  bool // Write waits until Resume or Close
}

// New returns a device that reads at most batch packets per call.
func New(name string, batch int) *Device {
	d := &Device{name: name, batch: batch}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Inject queues a copy of pkt for Read.
func (d *Device) Inject(pkt []byte) {
	c := append([]byte(nil), pkt...)
	d.mu.Lock()
	d.rx = append(d.rx, c)
	d.mu.Unlock()
	d.cond.Broadcast()
}

// Read implements packetio.Device.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.rx) == 0 && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		return 0, net.ErrClosed
	}
	n := 0
	for n < len(bufs) && len(d.rx) > 0 {
		p := d.rx[0]
		if offset+len(p) > len(bufs[n]) {
			return n, fmt.Errorf("fake %s: packet of %d bytes does not fit buffer", d.name, len(p))
		}
		sizes[n] = copy(bufs[n][offset:], p)
		d.rx = d.rx[1:]
		n++
	}
	return n, nil
}

// Write implements packetio.Device.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	d.mu.Lock()
	for d.stall && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		d.mu.Unlock()
		return 0, net.ErrClosed
	}
	hub := d.hub
	if hub == nil {
		for _, b := range bufs {
			d.sent = append(d.sent, append([]byte(nil), b[offset:]...))
		}
		d.mu.Unlock()
		d.cond.Broadcast()
		return len(bufs), nil
	}
	d.mu.Unlock()
	for _, b := range bufs {
		hub.carry(b[offset:])
	}
	return len(bufs), nil
}

// Stall makes Write block, as a device stuck in its driver would, until
// Resume or Close.
func (d *Device) Stall() {
	d.mu.Lock()
	d.stall = true
	d.mu.Unlock()
}

// Resume lets writes through again after Stall.
func (d *Device) Resume() {
	d.mu.Lock()
	d.stall = false
	d.mu.Unlock()
	d.cond.Broadcast()
}

// BatchSize implements packetio.Device.
func (d *Device) BatchSize() int { return d.batch }

// Name implements packetio.Device.
func (d *Device) Name() string { return d.name }

// Close implements packetio.Device.
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cond.Broadcast()
	return nil
}

// Closed reports whether Close was called.
func (d *Device) Closed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// Sent returns and forgets what was written so far.
func (d *Device) Sent() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sent
	d.sent = nil
	return s
}

// WaitSent waits until at least n packets were written or timeout passes,
// then returns and forgets them.
func (d *Device) WaitSent(n int, timeout time.Duration) [][]byte {
	deadline := time.Now().Add(timeout)
	d.mu.Lock()
	for len(d.sent) < n && time.Now().Before(deadline) {
		d.mu.Unlock()
		time.Sleep(time.Millisecond)
		d.mu.Lock()
	}
	s := d.sent
	d.sent = nil
	d.mu.Unlock()
	return s
}

// Hub is an in-memory underlay: a packet written to an attached device is
// delivered to the device attached at the packet's IPv4 destination.
type Hub struct {
	mu    sync.Mutex // protects ports and lost
	ports map[netip.Addr]*Device
	lost  [][]byte
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{ports: make(map[netip.Addr]*Device)} }

// Attach connects a new device for address addr.
func (h *Hub) Attach(addr netip.Addr, name string, batch int) *Device {
	d := New(name, batch)
	d.hub = h
	h.mu.Lock()
	h.ports[addr] = d
	h.mu.Unlock()
	return d
}

func (h *Hub) carry(pkt []byte) {
	if len(pkt) < 20 {
		return
	}
	dst := netip.AddrFrom4([4]byte(pkt[16:20]))
	h.mu.Lock()
	d := h.ports[dst]
	if d == nil {
		h.lost = append(h.lost, append([]byte(nil), pkt...))
	}
	h.mu.Unlock()
	if d != nil {
		d.Inject(pkt)
	}
}

// Lost returns packets whose destination had no device.
func (h *Hub) Lost() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost
}
