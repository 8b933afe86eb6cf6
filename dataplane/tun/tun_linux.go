package tun

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

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
	name   atomic.Pointer[string]
	index  atomic.Int64

	txErrors  atomic.Uint64
	rxDropped atomic.Uint64

	// The read state lives in the Device, and readFn is bound once, so
	// that handing a callback to the runtime poller allocates nothing.
	rmu    sync.Mutex
	rbufs  [][]byte
	rsizes []int
	roff   int
	rn     int
	rerr   error
	readFn func(fd uintptr) bool

	// With offloads (IFF_VNET_HDR), reads land in scratch first; a TCP
	// super-packet stays there while its segments are handed out, across
	// Read calls if one batch cannot take them all.
	vnet     bool
	scratch  []byte
	pend     []byte // the super-packet being segmented, in scratch
	pendHdr  int
	pendGSO  int
	pendSegs int
	pendNext int
	pendUDP  bool

	// wmu serialises Write on this queue and guards the merge buffers.
	wmu    sync.Mutex
	gro    []byte
	run    [][]byte
	merged atomic.Uint64 // segments written inside merged super-packets

	// Offload accounting for Offloads: super-packets read and the largest,
	// the largest merged write, and why TSO is off if it is.
	superReads atomic.Uint64
	superMax   atomic.Uint64
	mergedMax  atomic.Uint64
	tsoOff     string
	usoReadOff string
	usoReads   atomic.Uint64
	usoMax     atomic.Uint64
	usoOff     atomic.Pointer[string] // why UDP datagrams are no longer merged
	usoMerged  atomic.Uint64
	// A merged super-packet goes out with one writev(2): its headers
	// from gro, the payloads straight from the caller's buffers.
	iovs     []unix.Iovec
	niov     int
	wrote    bool
	werrno   unix.Errno
	writevFn func(fd uintptr) bool

	// cmu serialises the control-plane helpers (moving, renaming), which
	// read and update name and index as a unit.
	cmu sync.Mutex

	// A multi-queue device holds its further queues; each of those points
	// back to it for the name and is closed with it.
	queues []*Device
	parent *Device
}

var _ packetio.Device = (*Device)(nil)

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
	// Offload opens the device with a virtio_net_hdr and checksum plus
	// TCPv4 segmentation offload: the kernel hands over TCP super-packets
	// of up to 64 KiB, which Read cuts into segments.
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

	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create tun %q: open /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tun %q: %w", name, err)
	}
	// IFF_TUN_EXCL makes the kernel refuse an existing interface of that
	// name instead of attaching to it; without it we could silently pick up
	// somebody's persistent TUN device.
	ifr.SetUint16(o.flags() | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create tun %q: interface name already in use: %w", name, err)
		}
		return nil, fmt.Errorf("create tun %q: TUNSETIFF: %w", name, err)
	}
	// A non-blocking descriptor makes os.NewFile register it with the
	// runtime poller, so a blocked Read parks the goroutine, not a thread,
	// and Close can wake it.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create tun %q: set non-blocking: %w", name, err)
	}
	d, err := newDevice(fd, o)
	if err != nil {
		return nil, fmt.Errorf("create tun %q: %w", name, err)
	}
	if err := d.refresh(); err != nil {
		d.file.Close()
		return nil, fmt.Errorf("create tun %q: %w", name, err)
	}
	if err := d.openQueues(o); err != nil {
		d.Close()
		return nil, fmt.Errorf("create tun %q: %w", name, err)
	}
	return d, nil
}

// openQueues attaches the descriptors of queues 1..o.Queues-1 to the
// interface d was just created or attached as, in the calling thread's
// namespace, where it must be.
func (d *Device) openQueues(o Options) error {
	for q := 1; q < o.Queues; q++ {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("queue %d: open /dev/net/tun: %w", q, err)
		}
		ifr, err := unix.NewIfreq(d.Name())
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("queue %d: %w", q, err)
		}
		ifr.SetUint16(o.flags())
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("queue %d: TUNSETIFF: %w", q, err)
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return fmt.Errorf("queue %d: set non-blocking: %w", q, err)
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
		// UDP segmentation (USO, Linux 6.2) is asked for too, and
		// dropped again if the kernel does not know it. The kernel
		// takes USO only for both families at once; IPv6 pod traffic is
		// dropped anyway, super-packet or not.
		if err := setOffload(fd, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_USO4|unix.TUN_F_USO6); err != nil {
			usoReadOff = fmt.Sprintf("TUNSETOFFLOAD with USO refused: %v", err)
			if err := setOffload(fd, unix.TUN_F_CSUM|unix.TUN_F_TSO4); err != nil {
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
		d.scratch = make([]byte, vnetHdrLen+65535)
		d.readFn = d.readVnet
	}
	return d, nil
}

// Read blocks until a packet is available, then keeps reading without
// blocking until bufs is full or the queue is empty. Packet i goes to
// bufs[i][offset:] and its length to sizes[i]. A packet longer than the
// space in its buffer is dropped and counted in RXDropped rather than handed
// out truncated. After Close, Read returns an error wrapping
// net.ErrClosed; once the kernel has deleted the interface (its
// namespace destroyed), one wrapping ErrInterfaceGone.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("read %s: %d sizes for %d buffers", d.Name(), len(sizes), len(bufs))
	}
	if offset < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d", d.Name(), offset)
	}
	for i := range bufs {
		if len(bufs[i]) <= offset {
			return 0, fmt.Errorf("read %s: buffer %d has no room after offset %d", d.Name(), i, offset)
		}
	}
	if d.closed.Load() {
		return 0, d.closedErr("read")
	}

	d.rmu.Lock()
	defer d.rmu.Unlock()
	if len(bufs) > batchSize {
		bufs = bufs[:batchSize]
	}
	d.rbufs, d.rsizes, d.roff, d.rn, d.rerr = bufs, sizes, offset, 0, nil
	// Segments left from the last super-packet go first; with any, the
	// read below only takes what is there without waiting.
	d.emitSegments()
	var err error
	if d.rn < len(d.rbufs) {
		err = d.raw.Read(d.readFn)
	}
	n, rerr := d.rn, d.rerr
	d.rbufs, d.rsizes, d.rerr = nil, nil, nil
	if err != nil {
		if d.closed.Load() {
			return 0, d.closedErr("read")
		}
		return 0, d.ioErr("read", err)
	}
	// An error after some packets is dropped: those packets are good, and a
	// persistent error shows up again on the next call.
	if n == 0 && rerr != nil {
		return 0, d.ioErr("read", rerr)
	}
	return n, nil
}

// readBatch runs inside the poller callback. Returning false parks the
// goroutine until the descriptor is readable; that happens only while the
// batch is still empty, so a call never waits once it has a packet.
func (d *Device) readBatch(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		buf := d.rbufs[d.rn][d.roff:]
		n, err := unix.Read(int(fd), buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return d.rn > 0
		case err != nil:
			d.rerr = err
			return true
		case n == 0:
			d.rerr = io.ErrUnexpectedEOF
			return true
		case n == len(buf) && ipLength(buf) > n:
			// The kernel silently truncates a packet that does not
			// fit and returns the truncated length, so a full buffer
			// is checked against the length the IP header claims.
			d.rxDropped.Add(1)
			continue
		}
		d.rsizes[d.rn] = n
		d.rn++
	}
	return true
}

// readVnet is readBatch for a device with offloads: each read is a
// virtio_net_hdr and a packet, perhaps a TCP super-packet to cut up.
func (d *Device) readVnet(fd uintptr) bool {
	for d.rn < len(d.rbufs) {
		n, err := unix.Read(int(fd), d.scratch)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return d.rn > 0
		case err != nil:
			d.rerr = err
			return true
		case n == 0:
			d.rerr = io.ErrUnexpectedEOF
			return true
		case n <= vnetHdrLen:
			d.rxDropped.Add(1)
			continue
		}
		h := parseVnetHdr(d.scratch)
		pkt := d.scratch[vnetHdrLen:n]
		switch h.gsoType &^ vnetGSOECN {
		case vnetGSONone:
			if h.flags&vnetFlagNeedsCsum != 0 && finishChecksum(pkt, h) != nil {
				d.rxDropped.Add(1)
				continue
			}
			buf := d.rbufs[d.rn][d.roff:]
			if len(pkt) > len(buf) {
				d.rxDropped.Add(1)
				continue
			}
			d.rsizes[d.rn] = copy(buf, pkt)
			d.rn++
		case vnetGSOTCPv4, vnetGSOUDPL4:
			udp := h.gsoType&^vnetGSOECN == vnetGSOUDPL4
			layout, reads, largest := tcp4Layout, &d.superReads, &d.superMax
			if udp {
				layout, reads, largest = udp4Layout, &d.usoReads, &d.usoMax
			}
			hdrLen, segs, err := layout(pkt, int(h.gsoSize))
			if err != nil {
				d.rxDropped.Add(1)
				continue
			}
			d.pend, d.pendHdr, d.pendGSO, d.pendSegs, d.pendNext, d.pendUDP = pkt, hdrLen, int(h.gsoSize), segs, 0, udp
			reads.Add(1)
			if l := uint64(len(pkt)); l > largest.Load() {
				largest.Store(l) // one reader at a time (rmu)
			}
			d.emitSegments()
			if d.pend != nil {
				return true // the batch is full; the rest waits for the next Read
			}
		default:
			d.rxDropped.Add(1)
		}
	}
	return true
}

// emitSegments hands out segments of the pending super-packet while the
// batch has room.
func (d *Device) emitSegments() {
	for d.pend != nil && d.rn < len(d.rbufs) {
		buf := d.rbufs[d.rn][d.roff:]
		if len(buf) < d.pendHdr+d.pendGSO {
			d.rxDropped.Add(uint64(d.pendSegs - d.pendNext))
			d.pend = nil
			return
		}
		if d.pendUDP {
			d.rsizes[d.rn] = udp4Segment(buf, d.pend, d.pendHdr, d.pendGSO, d.pendNext)
		} else {
			d.rsizes[d.rn] = tcp4Segment(buf, d.pend, d.pendHdr, d.pendGSO, d.pendNext, d.pendSegs)
		}
		d.rn++
		d.pendNext++
		if d.pendNext == d.pendSegs {
			d.pend = nil
		}
	}
}

// ipLength is the packet length the IP header of p claims, or 0 if p does
// not start with a recognisable one.
func ipLength(p []byte) int {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return int(p[2])<<8 | int(p[3])
	case len(p) >= 40 && p[0]>>4 == 6:
		return 40 + (int(p[4])<<8 | int(p[5]))
	}
	return 0
}

// Write writes each bufs[i][offset:] as one packet with one write(2). A
// packet the kernel rejects (not IPv4/IPv6, too short, ...) is skipped and
// counted in TXErrors. It returns the number of packets the kernel accepted;
// the error is non-nil only when the device is unusable: closed
// (net.ErrClosed) or deleted by the kernel (ErrInterfaceGone).
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	w := d.writer()
	defer w.wmu.Unlock()
	return w.write(bufs, offset)
}

// writer picks the queue a Write goes through and returns it locked: the
// device itself when free, else a free further queue, so that writers on
// several workers do not wait for each other; if all are busy, the device.
func (d *Device) writer() *Device {
	if len(d.queues) == 0 {
		d.wmu.Lock()
		return d
	}
	if d.wmu.TryLock() {
		return d
	}
	for _, q := range d.queues {
		if q.wmu.TryLock() {
			return q
		}
	}
	d.wmu.Lock()
	return d
}

// write is Write on this queue; the caller holds wmu.
func (d *Device) write(bufs [][]byte, offset int) (int, error) {
	if d.vnet && len(bufs) > 1 {
		return d.writeMerged(bufs, offset)
	}
	n := 0
	for _, b := range bufs {
		ok, err := d.writeOne(b, offset)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// writeOne writes one packet; false with a nil error means the kernel
// refused it (counted).
func (d *Device) writeOne(b []byte, offset int) (bool, error) {
	if offset < 0 || offset >= len(b) {
		d.txErrors.Add(1)
		return false, nil
	}
	if d.vnet {
		// An all-zero header in the headroom: no segmentation, the
		// checksums are complete.
		if offset < vnetHdrLen {
			d.txErrors.Add(1)
			return false, nil
		}
		clear(b[offset-vnetHdrLen : offset])
		b = b[offset-vnetHdrLen:]
	} else {
		b = b[offset:]
	}
	return d.writeRaw(b)
}

// writeRaw writes what goes on the descriptor as is.
func (d *Device) writeRaw(b []byte) (bool, error) {
	// os.File.Write waits in the poller on EAGAIN and serialises
	// concurrent writers on the descriptor; a TUN write is one whole
	// packet or nothing.
	if _, err := d.file.Write(b); err != nil {
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return false, d.closedErr("write")
		}
		if errors.Is(err, unix.EBADFD) {
			return false, d.ioErr("write", unix.EBADFD)
		}
		d.txErrors.Add(1)
		return false, nil
	}
	return true, nil
}

// writeMerged writes a batch, merging runs of TCP segments (see gro.go).
func (d *Device) writeMerged(bufs [][]byte, offset int) (int, error) {
	if d.gro == nil {
		d.gro = make([]byte, vnetHdrLen+60+20) // vnet, IPv4 and TCP headers with options
		d.run = make([][]byte, 0, groMaxSegs)
		d.iovs = make([]unix.Iovec, 1+groMaxSegs)
		d.writevFn = d.writevRun
	}
	n := 0
	for i := 0; i < len(bufs); {
		b := bufs[i]
		if offset < 0 || offset >= len(b) {
			d.txErrors.Add(1)
			i++
			continue
		}
		first := b[offset:]
		f, ok := groCandidate(first)
		if !ok && d.usoOff.Load() == nil {
			f, ok = udpCandidate(first)
		}
		j := i + 1
		if ok && f.udp {
			// Datagrams of one flow, all of the first one's size but
			// a shorter last one.
			d.run = append(d.run[:0], first)
			total := f.hdrLen + f.payload
			for ; j < len(bufs) && len(d.run) < groMaxSegs; j++ {
				if offset >= len(bufs[j]) {
					break
				}
				p := bufs[j][offset:]
				s, ok := udpCandidate(p)
				if !ok || s.payload > f.payload || total+s.payload > groMaxLen || !udpFollows(first, p) {
					break
				}
				d.run = append(d.run, p)
				total += s.payload
				if s.payload < f.payload {
					j++
					break
				}
			}
		} else if ok {
			d.run = append(d.run[:0], first)
			end := f.seq + uint32(f.payload)
			total := f.hdrLen + f.payload
			last := first[33]&0x08 != 0 // PSH ends a run
			for ; !last && j < len(bufs) && len(d.run) < groMaxSegs; j++ {
				if offset >= len(bufs[j]) {
					break
				}
				p := bufs[j][offset:]
				s, ok := groCandidate(p)
				if !ok || s.payload > f.payload || total+s.payload > groMaxLen || !groFollows(first, f, p, s, end) {
					break
				}
				d.run = append(d.run, p)
				end += uint32(s.payload)
				total += s.payload
				last = s.payload < f.payload || p[33]&0x08 != 0
			}
		}
		if !ok || len(d.run) == 1 {
			j = i + 1
			wok, err := d.writeOne(b, offset)
			if err != nil {
				return n, err
			}
			if wok {
				n++
			}
			i = j
			continue
		}
		wok, err := d.writeRun(f)
		if err != nil {
			return n, err
		}
		if !wok && f.udp && d.werrno == unix.EINVAL {
			// A kernel without UDP segmentation on TUN writes: write
			// datagrams singly from now on, this run too.
			reason := fmt.Sprintf("UDP GSO write refused: %v", d.werrno)
			d.usoOff.Store(&reason)
			for k := i; k < j; k++ {
				wok, err := d.writeOne(bufs[k], offset)
				if err != nil {
					return n, err
				}
				if wok {
					n++
				}
			}
			i = j
			continue
		}
		if wok {
			n += len(d.run)
			if f.udp {
				d.usoMerged.Add(uint64(len(d.run)))
			} else {
				d.merged.Add(uint64(len(d.run)))
			}
			if l := uint64(d.iovLen()); l > d.mergedMax.Load() {
				d.mergedMax.Store(l) // one writer at a time (wmu)
			}
		}
		i = j
	}
	return n, nil
}

// writeRun writes the super-packet of d.run (layout f) with one writev.
// Caller holds wmu.
func (d *Device) writeRun(f tcpSeg) (bool, error) {
	h := groHeader(d.gro, d.run, f)
	d.iovs[0].Base, d.iovs[0].Len = &d.gro[0], uint64(h)
	d.niov = 1
	for _, p := range d.run {
		pl := groPayload(p, f)
		if len(pl) == 0 {
			continue
		}
		d.iovs[d.niov].Base, d.iovs[d.niov].Len = &pl[0], uint64(len(pl))
		d.niov++
	}
	d.wrote, d.werrno = false, 0
	err := d.raw.Write(d.writevFn)
	for i := range d.niov {
		d.iovs[i].Base = nil // keep no reference to the caller's buffers
	}
	switch {
	case err != nil:
		if d.closed.Load() || errors.Is(err, os.ErrClosed) {
			return false, d.closedErr("write")
		}
		return false, d.ioErr("write", err)
	case d.werrno == unix.EBADFD:
		return false, d.ioErr("write", unix.EBADFD)
	case !d.wrote:
		if !(f.udp && d.werrno == unix.EINVAL) { // the caller falls back for that one
			d.txErrors.Add(1)
		}
		return false, nil
	}
	return true, nil
}

// writev is writev(2); tests replace it to play a kernel that refuses
// some super-packets.
var writev = func(fd uintptr, iovs []unix.Iovec) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
	return errno
}

// writevRun runs in the poller callback: one writev(2) of the prepared run.
func (d *Device) writevRun(fd uintptr) bool {
	for {
		errno := writev(fd, d.iovs[:d.niov])
		switch errno {
		case 0:
			d.wrote = true
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			d.werrno = errno
			return true
		}
	}
}

// Offloads reports the TUN offloads: tun-tso (the kernel hands over TCP
// super-packets, which Read cuts) and tun-gro (Write merges TCP segments
// into super-packets). Both are off on a device opened without Offload.
func (d *Device) Offloads() []packetio.Offload {
	if !d.vnet {
		off := "device opened without offloads"
		return []packetio.Offload{{Name: "tun-tso", Reason: off}, {Name: "tun-gro", Reason: off}, {Name: "tun-uso", Reason: off}, {Name: "tun-udp-gro", Reason: off}}
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
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// iovLen is the length of the packet the last writeRun sent, without the
// virtio_net_hdr. Caller holds wmu.
func (d *Device) iovLen() int {
	n := -vnetHdrLen
	for _, v := range d.iovs[:d.niov] {
		n += int(v.Len)
	}
	return n
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
