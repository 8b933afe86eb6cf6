package afxdp

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xdpMaxTxSkbBudget is XDP_MAX_TX_SKB_BUDGET (Linux 6.17): how many frames
// one copy-mode sendto may turn into skbs. The default, 32, would make a
// batch of 64 cost two system calls.
const xdpMaxTxSkbBudget = 9

// xsk is one AF_XDP socket with its own UMEM and four rings.
//
// The fd is wrapped in an os.File so that Receive can wait for the RX ring in
// the Go runtime poller (the kernel signals the socket readable whenever it
// flushes packets to the RX ring) instead of parking a thread in poll(2).
type xsk struct {
	fd   int
	file *os.File
	raw  syscall.RawConn

	umem     []byte
	ringMaps [][]byte
	fill     *ring
	comp     *ring
	rx       *ring
	tx       *ring

	zeroCopy   bool
	needWakeup bool
}

// xskParams are what a socket is made of.
type xskParams struct {
	ifindex   int
	queue     int
	frameSize int
	ringSize  uint32
	zeroCopy  bool
	wakeup    bool
}

// newUMEM maps the packet memory of one queue. MAP_POPULATE faults it in
// now: the kernel pins these pages at registration anyway.
func newUMEM(frames, frameSize int) ([]byte, error) {
	mem, err := unix.Mmap(-1, 0, frames*frameSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes of UMEM: %w", frames*frameSize, err)
	}
	return mem, nil
}

// openXSK creates a socket, registers umem with it, sets up the rings and
// binds it to the queue. On error nothing is left open (umem stays mapped:
// it belongs to the caller).
func openXSK(umem []byte, p xskParams) (_ *xsk, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.EAFNOSUPPORT):
			return nil, fmt.Errorf("AF_XDP socket: %w (kernel built without CONFIG_XDP_SOCKETS?): %w", ErrUnsupported, err)
		case isPermission(err):
			return nil, fmt.Errorf("AF_XDP socket: %w (needs CAP_NET_RAW): %w", ErrPermission, err)
		}
		return nil, fmt.Errorf("AF_XDP socket: %w", err)
	}
	x := &xsk{fd: fd, umem: umem}
	defer func() {
		if err != nil {
			x.close()
		}
	}()

	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(umem)))),
		Len:  uint64(len(umem)),
		Size: uint32(p.frameSize),
	}
	if err := setsockopt(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		if errors.Is(err, unix.ENOMEM) || isPermission(err) {
			return nil, fmt.Errorf("register UMEM: %w (needs CAP_IPC_LOCK or a larger RLIMIT_MEMLOCK): %w", ErrPermission, err)
		}
		return nil, fmt.Errorf("register UMEM: %w", err)
	}
	for _, r := range []struct {
		opt  int
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, "fill"},
		{unix.XDP_UMEM_COMPLETION_RING, "completion"},
		{unix.XDP_RX_RING, "RX"},
		{unix.XDP_TX_RING, "TX"},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, int(p.ringSize)); err != nil {
			return nil, fmt.Errorf("size %s ring: %w", r.name, err)
		}
	}

	var off unix.XDPMmapOffsets
	n, err := getsockopt(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return nil, fmt.Errorf("ring offsets: %w", err)
	}
	if n != unsafe.Sizeof(off) {
		// The layout without the flags word predates need_wakeup (5.4).
		return nil, fmt.Errorf("ring offsets: %w: kernel too old (need Linux 5.4)", ErrUnsupported)
	}
	if x.fill, err = x.mapRing(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, p.ringSize, addrEntrySize); err != nil {
		return nil, fmt.Errorf("map fill ring: %w", err)
	}
	if x.comp, err = x.mapRing(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, p.ringSize, addrEntrySize); err != nil {
		return nil, fmt.Errorf("map completion ring: %w", err)
	}
	if x.rx, err = x.mapRing(unix.XDP_PGOFF_RX_RING, off.Rx, p.ringSize, descEntrySize); err != nil {
		return nil, fmt.Errorf("map RX ring: %w", err)
	}
	if x.tx, err = x.mapRing(unix.XDP_PGOFF_TX_RING, off.Tx, p.ringSize, descEntrySize); err != nil {
		return nil, fmt.Errorf("map TX ring: %w", err)
	}
	x.fill.initProducer()
	x.tx.initProducer()
	x.rx.initConsumer()
	x.comp.initConsumer()

	var flags uint16 = unix.XDP_COPY
	if p.zeroCopy {
		flags = unix.XDP_ZEROCOPY
	}
	if p.wakeup {
		flags |= unix.XDP_USE_NEED_WAKEUP
	}
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(p.ifindex), QueueID: uint32(p.queue)}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, bindError(p, err)
	}
	var opts uint32
	if _, err := getsockopt(fd, unix.SOL_XDP, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err == nil {
		x.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	} else {
		x.zeroCopy = p.zeroCopy
	}
	x.needWakeup = p.wakeup
	if !x.zeroCopy {
		// Best effort: older kernels lack the option and keep 32.
		_ = unix.SetsockoptInt(fd, unix.SOL_XDP, xdpMaxTxSkbBudget, int(min(p.ringSize, 256)))
	}

	x.file = os.NewFile(uintptr(fd), "xsk")
	if x.raw, err = x.file.SyscallConn(); err != nil {
		return nil, fmt.Errorf("AF_XDP socket: %w", err)
	}
	return x, nil
}

func bindError(p xskParams, err error) error {
	what := "copy mode"
	if p.zeroCopy {
		what = "zero-copy"
	}
	switch {
	case p.zeroCopy && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EINVAL)):
		return fmt.Errorf("bind queue %d zero-copy: %w: driver has no zero-copy AF_XDP: %w", p.queue, ErrUnsupported, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("bind queue %d %s: another AF_XDP socket owns the queue (is another vxdp running?): %w", p.queue, what, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("bind queue %d %s: no such queue or bad parameters: %w", p.queue, what, err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("bind queue %d %s: %w: %w", p.queue, what, ErrNoDevice, err)
	}
	return fmt.Errorf("bind queue %d %s: %w", p.queue, what, err)
}

func (x *xsk) mapRing(pgoff int64, ro unix.XDPRingOffset, size uint32, entry uintptr) (*ring, error) {
	length := int(ro.Desc) + int(size)*int(entry)
	mem, err := unix.Mmap(x.fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	x.ringMaps = append(x.ringMaps, mem)
	return newRing(mem, ringOffsets{producer: ro.Producer, consumer: ro.Consumer, flags: ro.Flags, desc: ro.Desc}, size, entry)
}

func (x *xsk) unmapRings() {
	for _, m := range x.ringMaps {
		unix.Munmap(m)
	}
	x.ringMaps = nil
	x.fill, x.comp, x.rx, x.tx = nil, nil, nil, nil
}

// close closes the socket and unmaps its rings. The caller makes sure no
// Receive or Send is using them any more.
func (x *xsk) close() error {
	var err error
	switch {
	case x.file != nil:
		err = x.file.Close()
	case x.fd >= 0:
		err = unix.Close(x.fd)
	}
	x.file, x.fd = nil, -1
	x.unmapRings()
	return err
}

// kickTX asks the kernel to process the TX ring. In copy mode the frames
// are sent during the call (up to the skb budget; EAGAIN means more remain);
// in zero-copy mode it schedules the driver.
func (x *xsk) kickTX() unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(x.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// kickRX wakes a zero-copy driver that ran out of fill frames; on a
// socket the kernel unbound (device removed) it fails with ENXIO.
func (x *xsk) kickRX() unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(x.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// statistics reads XDP_STATISTICS.
func (x *xsk) statistics() (unix.XDPStatistics, bool) {
	var st unix.XDPStatistics
	if _, err := getsockopt(x.fd, unix.SOL_XDP, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return st, false
	}
	return st, true
}

func setsockopt(fd, level, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

// getsockopt returns the length the kernel wrote.
func getsockopt(fd, level, opt int, p unsafe.Pointer, size uintptr) (uintptr, error) {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}
