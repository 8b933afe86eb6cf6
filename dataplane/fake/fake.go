// Package fake has in-memory packet I/O for tests and embedders: a
// packetio.Device whose Read returns what the test injected and which
// keeps what the engine writes, and a packetio.Underlay that does the same
// with tunnel payloads or carries them to another fake underlay over a
// Hub, so whole multi-node topologies run without a kernel.
package fake

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

var (
	_ packetio.Device        = (*Device)(nil)
	_ packetio.MTUSetter     = (*Device)(nil)
	_ packetio.CheckedWriter = (*Device)(nil)
	_ packetio.CheckedReader = (*Device)(nil)
	_ packetio.BusyPoller    = (*Device)(nil)

	_ packetio.KernelDropCounter = (*Device)(nil)
)

// Device is an in-memory packet device. It copies every packet in and out,
// so tests can keep what they get and reuse what they give.
type Device struct {
	name    string
	batch   int
	mtu     atomic.Int64
	checked atomic.Int64
	// marks holds the first byte of each injected copy that
	// InjectChecked vouched for, until ReadChecked hands it out.
	marks sync.Map
	// kernelDropped is what KernelDropped reports (SetKernelDropped).
	kernelDropped atomic.Uint64
	// partialSuper is what TakesPartialSuper reports.
	partialSuper atomic.Bool
	box[[]byte]
	busyPoll
}

// SetKernelDropped sets what KernelDropped reports, as if the kernel had
// dropped n packets on their way to the device.
func (d *Device) SetKernelDropped(n uint64) { d.kernelDropped.Store(n) }

// SetTakesPartialSuper sets what TakesPartialSuper reports: whether the
// device plays one that has the kernel finish a partial checksum of a TCP
// packet beyond its MTU (packetio.SuperWriter).
func (d *Device) SetTakesPartialSuper(v bool) { d.partialSuper.Store(v) }

// TakesPartialSuper reports what SetTakesPartialSuper set, false at first.
func (d *Device) TakesPartialSuper() bool { return d.partialSuper.Load() }

// KernelDropped reports what SetKernelDropped set, and an error once the
// device is closed (packetio.KernelDropCounter).
func (d *Device) KernelDropped() (uint64, error) {
	if d.isClosed() {
		return 0, fmt.Errorf("%s: %w", d.name, net.ErrClosed)
	}
	return d.kernelDropped.Load(), nil
}

// New returns a device that reads at most batch packets per call.
func New(name string, batch int) *Device {
	d := &Device{name: name, batch: batch}
	d.init()
	return d
}

// SetMTU records mtu, which MTU returns (packetio.MTUSetter). Packets of
// any size still pass: the fake checks nothing against it. A closed
// device refuses, as a TUN device whose interface is gone does.
func (d *Device) SetMTU(mtu int) error {
	if d.isClosed() {
		return fmt.Errorf("set mtu of %s: %w", d.name, net.ErrClosed)
	}
	d.mtu.Store(int64(mtu))
	return nil
}

// MTU is what SetMTU recorded last, 0 before.
func (d *Device) MTU() int { return int(d.mtu.Load()) }

// Inject queues a copy of pkt for Read.
func (d *Device) Inject(pkt []byte) { d.inject(append([]byte(nil), pkt...)) }

// InjectChecked is Inject for a packet ReadChecked reports as carrying a
// checksum the driver computed (as the TUN driver reports the segments it
// cuts). The caller makes sure it is right.
func (d *Device) InjectChecked(pkt []byte) {
	c := append([]byte(nil), pkt...)
	if len(c) > 0 {
		d.marks.Store(&c[0], struct{}{})
	}
	d.inject(c)
}

// ReadChecked implements packetio.CheckedReader: Read, with checked[i]
// true for what InjectChecked queued.
func (d *Device) ReadChecked(bufs [][]byte, sizes []int, checked []bool, offset int) (int, error) {
	if len(checked) < len(bufs) {
		return 0, fmt.Errorf("fake %s: %d checked flags for %d buffers", d.name, len(checked), len(bufs))
	}
	return d.read(len(bufs), func(i int, p []byte) error {
		if offset+len(p) > len(bufs[i]) {
			return fmt.Errorf("fake %s: packet of %d bytes does not fit buffer", d.name, len(p))
		}
		sizes[i] = copy(bufs[i][offset:], p)
		checked[i] = false
		if len(p) > 0 {
			_, checked[i] = d.marks.LoadAndDelete(&p[0])
		}
		return nil
	})
}

// Read implements packetio.Device.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.read(len(bufs), func(i int, p []byte) error {
		if offset+len(p) > len(bufs[i]) {
			return fmt.Errorf("fake %s: packet of %d bytes does not fit buffer", d.name, len(p))
		}
		sizes[i] = copy(bufs[i][offset:], p)
		return nil
	})
}

// Write implements packetio.Device.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	c := make([][]byte, len(bufs))
	for i, b := range bufs {
		c[i] = append([]byte(nil), b[offset:]...)
	}
	if err := d.write(true, c...); err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// WriteChecked implements packetio.CheckedWriter: Write, counting the
// packets the engine vouched for (Checked).
func (d *Device) WriteChecked(bufs [][]byte, checked []bool, offset int) (int, error) {
	if len(checked) < len(bufs) {
		return 0, fmt.Errorf("fake %s: %d checked flags for %d packets", d.name, len(checked), len(bufs))
	}
	n, err := d.Write(bufs, offset)
	if err == nil {
		for _, c := range checked[:len(bufs)] {
			if c {
				d.checked.Add(1)
			}
		}
	}
	return n, err
}

// Checked is the number of packets written so far that the engine marked
// as carrying a right TCP or UDP checksum.
func (d *Device) Checked() int64 { return d.checked.Load() }

// BatchSize implements packetio.Device.
func (d *Device) BatchSize() int { return d.batch }

// Name implements packetio.Device.
func (d *Device) Name() string { return d.name }

// Close implements packetio.Device.
func (d *Device) Close() error { d.close(); return nil }

// Closed reports whether Close was called.
func (d *Device) Closed() bool { return d.isClosed() }

// Stall makes Write wait, as a device whose kernel queue is stuck would,
// until Resume or Close: what a worker writing to it does then is what
// watchdogs must notice.
func (d *Device) Stall() { d.setBlock(true) }

// Resume lets waiting and later Writes go on.
func (d *Device) Resume() { d.setBlock(false) }

// Sent returns and forgets what was written so far.
func (d *Device) Sent() [][]byte { return d.waitSent(0, 0) }

// WaitSent waits until at least n packets were written or timeout passes,
// then returns and forgets them.
func (d *Device) WaitSent(n int, timeout time.Duration) [][]byte { return d.waitSent(n, timeout) }
