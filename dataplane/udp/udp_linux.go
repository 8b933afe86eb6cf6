package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
)

const (
	// batchSize is the number of messages per recvmmsg/sendmmsg.
	batchSize = 64

	// sockBuf is the socket buffer size asked for in each direction. Large
	// buffers absorb the bursts between two batches of the worker.
	sockBuf = 4 << 20

	// DefaultSourcePorts is the size of the send pool when Config says 0.
	DefaultSourcePorts = 64
	// MaxSourcePorts bounds the pool: each port is a socket.
	MaxSourcePorts = 1024
)

// Config says what to open.
type Config struct {
	// Addr is the node's own address: every socket binds to it. IPv4 or
	// IPv6 (global or unique local, not link-local); it sets the
	// underlay's address family. An IPv4-mapped address counts as IPv4.
	Addr netip.Addr
	// Port is the tunnel port (0 picks a free one, for tests).
	Port uint16
	// Sockets is the number of receive sockets sharing Port
	// (SO_REUSEPORT), each a queue read by its own worker; 0 means 1.
	Sockets int
	// ExtraPorts are further ports received on, one socket each (the VTEP
	// port where it differs from the tunnel port).
	ExtraPorts []uint16
	// SourcePorts is the number of send sockets, one source port each;
	// 0 means DefaultSourcePorts.
	SourcePorts int
	// GSO sends runs of equal-sized payloads with UDP_SEGMENT.
	GSO bool
	// GRO receives with UDP_GRO: runs of datagrams arrive coalesced and
	// Receive cuts them apart.
	GRO bool
}

// Underlay is the node's UDP underlay: its receive queues and the send
// pool they share. The queues are closed one by one (each is a
// packetio.Underlay the engine owns); the pool goes with the last one.
type Underlay struct {
	queues []*Queue
	pool   *pool
	open   atomic.Int32 // queues not yet closed
}

// Queue is one receive socket with the shared send pool behind it: a
// packetio.Underlay. Receive is meant for one goroutine at a time (a mutex
// makes concurrent calls safe, but they serialise); Send is safe for
// concurrent use.
type Queue struct {
	u      *Underlay
	local  netip.AddrPort
	name   string
	file   *os.File
	raw    syscall.RawConn
	closed atomic.Bool

	txErrors  atomic.Uint64
	rxDropped atomic.Uint64

	// Receive state. It lives here, and rxFn is bound once, so that a
	// Receive allocates nothing.
	rmu    sync.Mutex
	rx     mmsgBatch
	rxWant int
	rxGot  int
	rxErr  unix.Errno
	rxFn   func(fd uintptr) bool

	groOff string    // why UDP_GRO is off ("" when on)
	gro    *groState // receive state with UDP_GRO
	groFn  func(fd uintptr) bool
	// groRuns counts receives that held more than one datagram, groMax
	// the largest.
	groRuns, groMax atomic.Uint64

	busy packetio.BusyPoll // the receiver's busy-poll (SetBusyPoll)
}

var (
	_ packetio.Underlay   = (*Queue)(nil)
	_ packetio.BusyPoller = (*Queue)(nil)

	_ packetio.KernelDropCounter = (*Queue)(nil)
)

// Open binds the underlay's sockets in the network namespace of the
// calling thread. Errors name the address and the cause (port in use, not
// an address of this namespace, ...); on error nothing stays open.
func Open(c Config) (_ *Underlay, err error) {
	addr := c.Addr.Unmap()
	fail := func(err error) error {
		return fmt.Errorf("udp underlay on %s: %w", netip.AddrPortFrom(addr, c.Port), err)
	}
	switch {
	case !addr.IsValid():
		return nil, fail(errors.New("no address"))
	case addr.IsUnspecified():
		return nil, fail(errors.New("needs the node's own address, not the unspecified one"))
	case addr.Is6() && (addr.IsLinkLocalUnicast() || addr.Zone() != ""):
		return nil, fail(errors.New("link-local or zoned address, valid on one link only: use a global or unique local IPv6 address"))
	}
	n := max(c.Sockets, 1)
	srcPorts := c.SourcePorts
	if srcPorts == 0 {
		srcPorts = DefaultSourcePorts
	}
	if srcPorts < 1 || srcPorts > MaxSourcePorts {
		return nil, fail(fmt.Errorf("%d source ports: want 1 to %d", srcPorts, MaxSourcePorts))
	}
	u := &Underlay{}
	defer func() {
		if err != nil {
			u.teardown()
		}
	}()
	port := c.Port
	for i := range n {
		q, err := u.listen(netip.AddrPortFrom(addr, port), n > 1, i, c.GRO)
		if err != nil {
			return nil, fail(err)
		}
		port = q.local.Port() // a port picked by the kernel is shared too
	}
	for _, p := range c.ExtraPorts {
		if _, err := u.listen(netip.AddrPortFrom(addr, p), false, 0, c.GRO); err != nil {
			return nil, fail(err)
		}
	}
	if u.pool, err = openPool(addr, srcPorts, c.GSO); err != nil {
		return nil, fail(err)
	}
	u.open.Store(int32(len(u.queues)))
	return u, nil
}

// listen opens one receive socket.
func (u *Underlay) listen(local netip.AddrPort, reuse bool, instance int, gro bool) (*Queue, error) {
	q := &Queue{u: u}
	v6 := local.Addr().Is6()
	fd, err := newSocket(v6)
	if err != nil {
		return nil, err
	}
	q.file = os.NewFile(uintptr(fd), "udp")
	if err := q.setup(fd, local, reuse); err != nil {
		q.file.Close()
		return nil, err
	}
	if q.raw, err = q.file.SyscallConn(); err != nil {
		q.file.Close()
		return nil, err
	}
	q.name = "udp:" + q.local.String()
	if instance > 0 {
		q.name += "#" + strconv.Itoa(instance)
	}
	q.rx.init(v6)
	q.rxFn = q.recvBatch
	// A kernel that refuses GRO is not fatal: the queue receives single
	// datagrams and Offloads says why.
	q.groOff = "not requested"
	if gro {
		q.groOff = ""
		if err := q.openGRO(fd, v6); err != nil {
			q.groOff = err.Error()
		}
	}
	u.queues = append(u.queues, q)
	return q, nil
}

func (q *Queue) setup(fd int, local netip.AddrPort, reuse bool) error {
	if err := setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, sockBuf); err != nil {
		return err
	}
	if reuse {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("SO_REUSEPORT: %w", err)
		}
	}
	if err := enableRecvTOS(fd, local.Addr().Is6()); err != nil {
		return err
	}
	if err := bind(fd, local); err != nil {
		return err
	}
	var err error
	q.local, err = boundAddr(fd)
	return err
}

// setBuffer asks for size bytes. The FORCE variant ignores the
// net.core.[rw]mem_max cap but needs CAP_NET_ADMIN; without it the plain
// option still gets as much as the cap allows.
func setBuffer(fd, force, plain, size int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size); err != nil {
		return fmt.Errorf("socket buffer: %w", err)
	}
	return nil
}

// Queues returns the receive queues: the tunnel port's sockets first, then
// one per extra port.
func (u *Underlay) Queues() []*Queue { return u.queues }

// SourcePorts describes the send pool.
func (u *Underlay) SourcePorts() packetio.SourcePorts { return u.pool.ports }

// Close closes every queue, and with the last one the send pool.
func (u *Underlay) Close() error {
	var errs []error
	for _, q := range u.queues {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}

// teardown undoes a failed Open.
func (u *Underlay) teardown() {
	for _, q := range u.queues {
		q.file.Close()
	}
	if u.pool != nil {
		u.pool.close()
	}
}

// Receive receives up to min(len(bufs), BatchSize()) payloads in one
// recvmmsg (or from one UDP_GRO batch). It blocks until at least one is
// queued. Payload i lands at bufs[i][offset:]; a datagram that does not
// fit is dropped and counted (RXDropped), never returned truncated. With
// UDP_GRO, a datagram received whole is handed over in the buffer it was
// received into, which takes the place of bufs[i] (see
// packetio.Underlay).
//
// After Close, Receive returns an error wrapping net.ErrClosed.
func (q *Queue) Receive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	bufs, err := packetio.ReceiveBatch(bufs, sizes, meta, offset, batchSize)
	if err != nil {
		return 0, fmt.Errorf("receive %s: %w", q.name, err)
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	q.rmu.Lock()
	defer q.rmu.Unlock()
	q.busy.Begin()
	if q.gro != nil {
		n, err := q.receiveGRO(bufs, sizes, meta, offset)
		q.busy.End(n > 0)
		return n, err
	}
	n, err := q.receivePlain(bufs, sizes, meta, offset)
	q.busy.End(n > 0)
	return n, err
}

// receivePlain is Receive for a queue without UDP_GRO.
func (q *Queue) receivePlain(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) (int, error) {
	for {
		if q.closed.Load() {
			return 0, q.closedErr("receive")
		}
		for i, b := range bufs {
			q.rx.set(i, b[offset:])
		}
		q.rxWant, q.rxGot, q.rxErr = len(bufs), 0, 0
		err := q.raw.Read(q.rxFn)
		q.rx.release(len(bufs))
		if err != nil {
			if q.closed.Load() {
				return 0, q.closedErr("receive")
			}
			return 0, fmt.Errorf("receive %s: %w", q.name, err)
		}
		if q.rxErr != 0 {
			return 0, fmt.Errorf("receive %s: recvmmsg: %w", q.name, q.rxErr)
		}
		if n := q.finishReceive(bufs, sizes, meta, offset); n > 0 {
			return n, nil
		}
		// Every datagram of this batch was dropped; wait for more rather
		// than return an empty batch.
	}
}

// recvBatch runs inside the poller callback; returning false parks the
// goroutine until the socket is readable.
func (q *Queue) recvBatch(fd uintptr) bool {
	for {
		n, errno := recvmmsg(fd, q.rx.hdrs[:q.rxWant])
		switch errno {
		case 0:
			q.rxGot = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if q.busy.Again(int(fd)) {
				continue
			}
			return false
		default:
			q.rxErr = errno
			return true
		}
	}
}

// finishReceive fills sizes and meta for the rxGot received datagrams and
// packs them to the front of bufs when one in the middle was dropped.
func (q *Queue) finishReceive(bufs [][]byte, sizes []int, meta []packetio.Meta, offset int) int {
	out := 0
	for i := 0; i < q.rxGot; i++ {
		h := &q.rx.hdrs[i]
		plen := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			q.rxDropped.Add(1)
			continue
		}
		if out != i {
			// Rare: a dropped datagram left a hole. Copy rather than
			// reorder the caller's buffers, which it may track by index.
			if len(bufs[out])-offset < plen {
				q.rxDropped.Add(1)
				continue
			}
			copy(bufs[out][offset:], bufs[i][offset:offset+plen])
		}
		sizes[out] = plen
		_, tos := q.rx.cmsgs(i)
		meta[out] = packetio.Meta{Remote: q.rx.remote(i), LocalPort: q.local.Port(), TOS: tos}
		out++
	}
	return out
}

// Send sends every bufs[i][offset:] to meta[i].Remote through the pool
// socket of meta[i].Flow. A payload the kernel refuses (EMSGSIZE above the
// route MTU, ENETUNREACH, EPERM from a firewall, ENOBUFS, ...) is skipped
// and counted in TXErrors; the rest still go out. Send waits in the poller
// while a socket buffer is full, and returns an error only when the
// underlay is closed.
func (q *Queue) Send(bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	if q.closed.Load() {
		return 0, q.closedErr("send")
	}
	n, err := q.u.pool.send(q, bufs, meta, offset)
	if err != nil && q.closed.Load() {
		return n, q.closedErr("send")
	}
	return n, err
}

// SourcePort is the source port Send uses for flow.
func (q *Queue) SourcePort(flow uint32) uint16 { return q.u.pool.sockFor(flow).port }

// SourcePorts describes the send pool.
func (q *Queue) SourcePorts() packetio.SourcePorts { return q.u.pool.ports }

// Offloads reports udp-gso and udp-gro: whether each is in use, why not,
// and how many multi-datagram sends (over the whole pool) and receives (on
// this queue) went through it.
func (q *Queue) Offloads() []packetio.Offload {
	return []packetio.Offload{
		q.u.pool.offload(),
		{Name: "udp-gro", Active: q.groOff == "", Reason: q.groOff, Count: q.groRuns.Load(), Largest: q.groMax.Load()},
		q.busy.Offload(),
	}
}

// SetBusyPoll sets how long a Receive that finds the socket empty keeps
// trying before it parks (packetio.BusyPoller).
func (q *Queue) SetBusyPoll(budget time.Duration) { q.busy.SetBusyPoll(budget) }

// BatchSize is the most datagrams one Receive returns and one sendmmsg
// takes.
func (q *Queue) BatchSize() int { return batchSize }

// Name is "udp:" followed by the local address and port, and "#N" for the
// second and later sockets sharing a port.
func (q *Queue) Name() string { return q.name }

// LocalAddr is the address and port the queue receives on.
func (q *Queue) LocalAddr() netip.AddrPort { return q.local }

// TXErrors counts payloads Send skipped: refused by the kernel.
func (q *Queue) TXErrors() uint64 { return q.txErrors.Load() }

// RXDropped counts datagrams Receive discarded because they did not fit.
func (q *Queue) RXDropped() uint64 { return q.rxDropped.Load() }

// KernelDropped is what the kernel dropped at the receive socket, its
// buffer full or the datagram refused (SO_MEMINFO's drop count,
// packetio.KernelDropCounter).
func (q *Queue) KernelDropped() (uint64, error) {
	var drops uint32
	var serr error
	err := q.raw.Control(func(fd uintptr) {
		// The kernel fills as many of its SK_MEMINFO_* words as fit;
		// SK_MEMINFO_DROPS is the ninth (Linux 4.6 and later).
		const drop = 8
		var info [16]uint32
		l := uint32(unsafe.Sizeof(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		switch {
		case e != 0:
			serr = e
		case l < (drop+1)*4:
			serr = fmt.Errorf("%d bytes, no drop count", l)
		default:
			drops = info[drop]
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return 0, fmt.Errorf("%s: SO_MEMINFO: %w", q.name, err)
	}
	return uint64(drops), nil
}

// Close closes the receive socket; the last queue closed closes the send
// pool. A Receive or Send blocked in another goroutine returns an error
// wrapping net.ErrClosed. Closing twice is a no-op.
func (q *Queue) Close() error {
	if !q.closed.CompareAndSwap(false, true) {
		return nil
	}
	q.busy.Forget()
	err := q.file.Close()
	if q.u.open.Add(-1) == 0 {
		err = errors.Join(err, q.u.pool.close())
	}
	if err != nil {
		return fmt.Errorf("close %s: %w", q.name, err)
	}
	return nil
}

func (q *Queue) closedErr(op string) error {
	return fmt.Errorf("%s %s: %w", op, q.name, net.ErrClosed)
}
