// Package fake is an in-memory packetio.Device for tests: packets injected
// by the test are what Read returns, and what the engine writes is kept or
// carried to another fake device over a Hub, so whole multi-node topologies
// run without a kernel.
package fake

import (
	"fmt"
	"net"
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

	mu     sync.Mutex // protects the fields below
	cond   *sync.Cond
	rx     [][]byte // waiting to be read
	sent   [][]byte // written
	closed bool
	block  bool // Write waits until Unblock or Close
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
	for d.block && !d.closed {
		d.cond.Wait()
	}
	if d.closed {
		d.mu.Unlock()
		return 0, net.ErrClosed
	}
	for _, b := range bufs {
		d.sent = append(d.sent, append([]byte(nil), b[offset:]...))
	}
	d.mu.Unlock()
	d.cond.Broadcast()
	return len(bufs), nil
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

// BlockWrites makes Write wait, as a device whose kernel queue is stuck
// would, until Unblock or Close: what a worker writing to it does then is
// what watchdogs must notice.
func (d *Device) BlockWrites() {
	d.mu.Lock()
	d.block = true
	d.mu.Unlock()
}

// Unblock lets waiting and later Writes go on.
func (d *Device) Unblock() {
	d.mu.Lock()
	d.block = false
	d.mu.Unlock()
	d.cond.Broadcast()
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
