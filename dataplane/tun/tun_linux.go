package tun

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"golang.org/x/sys/unix"
)

// batchSize bounds how many packets one Read drains. Each packet still costs
// one read(2); the batch lets the engine amortise everything after the read.
const batchSize = 64

// Device is a TUN interface. Read is meant for one goroutine at a time (a
// mutex makes concurrent calls safe, but they serialise); Write and the
// accessors are safe for concurrent use.
type Device struct {
	file *os.File
	raw  syscall.RawConn

	closed atomic.Bool
	// mtu is the interface MTU as last set through the Device (0: not
	// known); the main device holds it for its queues.
	mtu   atomic.Int64
	name  atomic.Pointer[string]
	index atomic.Int64

	// vnet: opened with IFF_VNET_HDR, so a virtio_net_hdr precedes every
	// packet on the descriptor. tsoOff and usoReadOff say why the kernel
	// does not hand over TCP or UDP super-packets, if it does not.
	vnet       bool
	tsoOff     string
	usoReadOff string

	readState  // Read's, in read_linux.go
	writeState // Write's, in write_linux.go

	// cmu serialises the control-plane helpers (moving, renaming), which
	// read and update name and index as a unit.
	cmu sync.Mutex

	// A multi-queue device holds its further queues; each of those points
	// back to it for the name and is closed with it.
	queues []*Device
	parent *Device
}

var (
	_ packetio.Device     = (*Device)(nil)
	_ packetio.MTUSetter  = (*Device)(nil)
	_ packetio.BusyPoller = (*Device)(nil)

	_ packetio.KernelDropCounter = (*Device)(nil)
)

// ErrInterfaceGone is wrapped by Read and Write once the kernel has deleted
// the interface while the descriptor is still open: its network namespace
// was destroyed (the pod went away) or someone deleted the link. The device
// is useless from then on; Close it.
var ErrInterfaceGone = packetio.ErrDeviceGone

// Create creates a TUN interface called name in the network namespace of the
// calling OS thread. An empty name lets the kernel pick one (tunN). The
// interface is created down and unconfigured; see ConfigureHere and
// MoveToNetns.
func Create(name string) (*Device, error) { return CreateWith(name, Options{}) }

// Options are the features a TUN device is opened with.
type Options struct {
	// Offload opens the device with a virtio_net_hdr and checksum, TCP
	// and UDP segmentation offload (IPv4 and IPv6): the kernel hands over TCP and UDP
	// super-packets of up to 64 KiB, which Read cuts into packets, and
	// Write merges runs of one flow into such super-packets.
	Offload bool
	// Queues > 1 opens the interface with IFF_MULTI_QUEUE and that many
	// descriptors: the kernel spreads the pod's flows over them by hash,
	// and Queues() hands each to a worker of its own.
	Queues int
}

// flags are the TUNSETIFF flags for o.
func (o Options) flags() uint16 {
	f := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if o.Offload {
		f |= unix.IFF_VNET_HDR
	}
	if o.Queues > 1 {
		f |= unix.IFF_MULTI_QUEUE
	}
	return f
}

// CreateWith is Create with options.
func CreateWith(name string, o Options) (*Device, error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("create tun %q: name longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	// The namespace a TUN interface lands in is that of the thread that
	// opens /dev/net/tun, so open and ioctl must run on the same thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	// IFF_TUN_EXCL makes the kernel refuse an existing interface of that
	// name instead of attaching to it; without it we could silently pick up
	// somebody's persistent TUN device.
	d, err := openDevice(name, o.flags()|unix.IFF_TUN_EXCL, o)
	if err != nil {
		return nil, fmt.Errorf("create tun %q: %w", name, err)
	}
	return d, nil
}

// openTUN opens /dev/net/tun and attaches the descriptor to the interface
// name (TUNSETIFF with flags) in the calling thread's network namespace.
// The descriptor is non-blocking: os.NewFile then registers it with the
// runtime poller, so a blocked Read parks the goroutine, not a thread, and
// Close can wake it. The error names the step that failed.
func openTUN(name string, flags uint16) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if flags&unix.IFF_TUN_EXCL != 0 && (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST)) {
			return -1, fmt.Errorf("interface name already in use: %w", err)
		}
		return -1, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set non-blocking: %w", err)
	}
	return fd, nil
}

// openDevice opens the interface name's first queue (openTUN with flags)
// and its further queues, and makes the Device. On failure nothing is left
// open.
func openDevice(name string, flags uint16, o Options) (*Device, error) {
	fd, err := openTUN(name, flags)
	if err != nil {
		return nil, err
	}
	d, err := newDevice(fd, o)
	if err != nil {
		return nil, err
	}
	if err := d.refresh(); err != nil {
		d.file.Close() // d has no name yet for Close to report
		return nil, err
	}
	if err := d.openQueues(o); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// openQueues attaches the descriptors of queues 1..o.Queues-1 to the
// interface d was just created or attached as, in the calling thread's
// namespace, where it must be. On failure the caller closes d, and with it
// the queues opened so far.
func (d *Device) openQueues(o Options) error {
	for q := 1; q < o.Queues; q++ {
		fd, err := openTUN(d.Name(), o.flags())
		if err != nil {
			return fmt.Errorf("queue %d: %w", q, err)
		}
		qd, err := newDevice(fd, o)
		if err != nil {
			return fmt.Errorf("queue %d: %w", q, err)
		}
		qd.parent = d
		d.queues = append(d.queues, qd)
	}
	return nil
}

// Queues returns the device's queues for reading, itself first: one
// worker reads each. Writes may go to any of them; the engine uses the
// device itself.
func (d *Device) Queues() []packetio.Device {
	qs := []packetio.Device{d}
	for _, q := range d.queues {
		qs = append(qs, q)
	}
	return qs
}

// setOffload is TUNSETOFFLOAD; tests replace it to play a kernel that
// refuses.
var setOffload = func(fd, flags int) error { return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags) }

// newDevice wraps an attached TUN descriptor.
func newDevice(fd int, o Options) (*Device, error) {
	var tsoOff, usoReadOff string
	if o.Offload {
		// Without TUNSETOFFLOAD the kernel segments and checksums
		// itself and hands over single packets; the virtio_net_hdr
		// stays, so merged writes still work. Not fatal, but shown.
		// TCP segmentation is asked for both families, and UDP
		// segmentation (USO, Linux 6.2) too, dropped again if the
		// kernel does not know it; the kernel takes USO only for both
		// families at once.
		const tso = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
		if err := setOffload(fd, tso|unix.TUN_F_USO4|unix.TUN_F_USO6); err != nil {
			usoReadOff = fmt.Sprintf("TUNSETOFFLOAD with USO refused: %v", err)
			if err := setOffload(fd, tso); err != nil {
				tsoOff = fmt.Sprintf("TUNSETOFFLOAD refused: %v", err)
				usoReadOff = tsoOff
			}
		}
	}
	d := &Device{file: os.NewFile(uintptr(fd), "/dev/net/tun"), vnet: o.Offload, tsoOff: tsoOff, usoReadOff: usoReadOff}
	var err error
	d.raw, err = d.file.SyscallConn()
	if err != nil {
		d.file.Close()
		return nil, err
	}
	d.readFn = d.readBatch
	if o.Offload {
		d.readFn = d.readVnet
	}
	return d, nil
}

// Offloads reports the TUN offloads: tun-tso and tun-uso (the kernel hands
// over TCP or UDP super-packets, which Read cuts), tun-gro and tun-udp-gro
// (Write merges TCP segments or UDP datagrams into super-packets), and
// tun-csum-complete (of those, the ones merged on the engine's word that
// their checksum is right, WriteChecked, without a pass of their own),
// tun-tso-whole (TCP super-packets the engine took whole, SetSuperHandler)
// and tun-super-write (TCP super-packets written as they came, their
// checksum left to the kernel, TakesPartialSuper). All are off on a
// device opened without Offload.
func (d *Device) Offloads() []packetio.Offload {
	busy := d.busy.Offload()
	busy.Count = d.sum(func(q *Device) uint64 { return q.busy.Hits() })
	if !d.vnet {
		off := "device opened without offloads"
		return []packetio.Offload{{Name: "tun-tso", Reason: off}, {Name: "tun-gro", Reason: off}, {Name: "tun-uso", Reason: off}, {Name: "tun-udp-gro", Reason: off},
			{Name: "tun-csum-complete", Reason: off}, {Name: "tun-tso-whole", Reason: off}, {Name: "tun-super-write", Reason: off}, busy}
	}
	return []packetio.Offload{
		{Name: "tun-tso", Active: d.tsoOff == "", Reason: d.tsoOff,
			Count:   d.sum(func(q *Device) uint64 { return q.superReads.Load() }),
			Largest: d.max(func(q *Device) uint64 { return q.superMax.Load() })},
		{Name: "tun-gro", Active: true,
			Count:   d.sum(func(q *Device) uint64 { return q.merged.Load() }),
			Largest: d.max(func(q *Device) uint64 { return q.mergedMax.Load() })},
		{Name: "tun-uso", Active: d.usoReadOff == "", Reason: d.usoReadOff,
			Count:   d.sum(func(q *Device) uint64 { return q.usoReads.Load() }),
			Largest: d.max(func(q *Device) uint64 { return q.usoMax.Load() })},
		{Name: "tun-udp-gro", Active: d.usoOff.Load() == nil, Reason: deref(d.usoOff.Load()), Count: d.sum(func(q *Device) uint64 { return q.usoMerged.Load() })},
		{Name: "tun-csum-complete", Active: true, Count: d.sum(func(q *Device) uint64 { return q.checkedMerged.Load() })},
		d.wholeOffload(),
		{Name: "tun-super-write", Active: d.TakesPartialSuper(), Reason: d.superWriteOff(),
			Count: d.sum(func(q *Device) uint64 { return q.partialSupers.Load() })},
		busy,
	}
}

// wholeOffload reports tun-tso-whole: TCP super-packets handed on whole
// (SetSuperHandler) rather than cut up.
func (d *Device) wholeOffload() packetio.Offload {
	o := packetio.Offload{Name: "tun-tso-whole", Count: d.sum(func(q *Device) uint64 { return q.superTaken.Load() })}
	if d.superOn.Load() {
		o.Active = true
	} else {
		o.Reason = "no tunnel-gso way out"
	}
	return o
}

// SetBusyPoll sets how long a Read of this queue that finds it empty keeps
// trying before it parks (packetio.BusyPoller); the engine sets it on each
// queue it reads.
func (d *Device) SetBusyPoll(budget time.Duration) { d.busy.SetBusyPoll(budget) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// BatchSize is the most packets one Read returns.
func (d *Device) BatchSize() int { return batchSize }

// Name is the interface's current name. It follows renames done through
// MoveToNetns.
func (d *Device) Name() string {
	if d.parent != nil {
		return d.parent.Name()
	}
	return *d.name.Load()
}

// Index is the interface's current ifindex in the namespace it lives in. It
// can change when the interface moves to another namespace.
func (d *Device) Index() int { return int(d.index.Load()) }

// TXErrors counts packets Write skipped because the kernel refused them.
func (d *Device) TXErrors() uint64 { return d.sum(func(q *Device) uint64 { return q.txErrors.Load() }) }

// KernelDropped is the interface's tx_dropped counter (every queue): what
// the kernel discarded instead of handing it to Read, mostly packets the
// pod sent while the queue's ring was full (packetio.KernelDropCounter).
func (d *Device) KernelDropped() (uint64, error) {
	if d.parent != nil {
		return d.parent.KernelDropped()
	}
	ns, err := d.linkNetns()
	if err != nil {
		return 0, err
	}
	defer ns.Close()
	h, err := routeHandle(ns)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	link, err := h.LinkByIndex(d.Index())
	if err != nil {
		return 0, fmt.Errorf("link %d: %w", d.Index(), err)
	}
	st := link.Attrs().Statistics
	if st == nil {
		return 0, fmt.Errorf("link %d: no statistics", d.Index())
	}
	return st.TxDropped, nil
}

// RXDropped counts packets Read discarded because they did not fit.
func (d *Device) RXDropped() uint64 {
	return d.sum(func(q *Device) uint64 { return q.rxDropped.Load() })
}

// sum adds a counter over the device and its further queues.
func (d *Device) sum(f func(*Device) uint64) uint64 {
	n := f(d)
	for _, q := range d.queues {
		n += f(q)
	}
	return n
}

// max is the largest of a value over the device and its further queues.
func (d *Device) max(f func(*Device) uint64) uint64 {
	n := f(d)
	for _, q := range d.queues {
		n = max(n, f(q))
	}
	return n
}

// Close closes the descriptor, which makes the kernel delete the interface
// in whatever namespace it is in by now. A Read blocked in another goroutine
// returns an error wrapping net.ErrClosed. Closing twice is a no-op.
func (d *Device) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	d.busy.Forget()
	var errs []error
	for _, q := range d.queues {
		errs = append(errs, q.Close())
	}
	if err := d.file.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s: %w", d.Name(), err)
	}
	return nil
}

// ioErr wraps an error from the descriptor. EBADFD is what the kernel
// answers once the interface behind the descriptor has been deleted.
func (d *Device) ioErr(op string, err error) error {
	if errors.Is(err, unix.EBADFD) {
		return fmt.Errorf("%s %s: %w (%w)", op, d.Name(), ErrInterfaceGone, err)
	}
	return fmt.Errorf("%s %s: %w", op, d.Name(), err)
}

func (d *Device) closedErr(op string) error {
	return fmt.Errorf("%s %s: %w", op, d.Name(), net.ErrClosed)
}

// control runs fn with the raw descriptor while holding a reference that
// keeps a concurrent Close from releasing it underneath fn.
func (d *Device) control(fn func(fd int) error) error {
	var ferr error
	if err := d.raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		if d.closed.Load() {
			return net.ErrClosed
		}
		return err
	}
	return ferr
}

// kernelName asks the kernel for the interface's current name.
func (d *Device) kernelName() (string, error) {
	var name string
	err := d.control(func(fd int) error {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
			return fmt.Errorf("TUNGETIFF: %w", err)
		}
		name = ifr.Name()
		return nil
	})
	return name, err
}

// linkMTU is the interface MTU the device last set, 0 if unknown.
func (d *Device) linkMTU() int {
	if d.parent != nil {
		return int(d.parent.mtu.Load())
	}
	return int(d.mtu.Load())
}

// TakesPartialSuper reports whether the device takes a TCP packet larger
// than its MTU whose checksum is left partial and has the kernel finish
// it (packetio.SuperWriter): with offloads and a known MTU.
func (d *Device) TakesPartialSuper() bool { return d.vnet && d.linkMTU() > 0 }

// superWriteOff says why tun-super-write is off: an MTU the device did
// not set, so that it cannot tell a super-packet.
func (d *Device) superWriteOff() string {
	if d.TakesPartialSuper() {
		return ""
	}
	return "MTU not set through the device"
}
