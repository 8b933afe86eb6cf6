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
	"unsafe"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"golang.org/x/sys/unix"
)

const (
	// HeaderLen is the room Read needs in front of each datagram for the
	// synthesised IPv4 (20) and UDP (8) headers.
	HeaderLen = 28

	// batchSize is the number of messages per recvmmsg/sendmmsg.
	batchSize = 64

	// sockBuf is the socket buffer size asked for in each direction. Large
	// buffers absorb the bursts between two batches of the worker.
	sockBuf = 4 << 20
)

// Device is a UDP underlay endpoint: one UDP socket that receives, one raw
// socket that sends. Read is meant for one goroutine at a time (a mutex
// makes concurrent calls safe, but they serialise); Write is safe for
// concurrent use.
type Device struct {
	local     netip.AddrPort
	localIP   [4]byte
	localPort uint16
	name      string

	rxFile *os.File
	rxRaw  syscall.RawConn
	txFile *os.File
	txRaw  syscall.RawConn
	closed atomic.Bool

	txErrors  atomic.Uint64
	rxDropped atomic.Uint64

	// Receive state. It lives here, and rxFn is bound once, so that a Read
	// allocates nothing.
	rmu    sync.Mutex
	rx     mmsgBatch
	rxWant int
	rxGot  int
	rxErr  unix.Errno
	rxFn   func(fd uintptr) bool

	// Offloads: why one is off (set at start, or for GSO also at run time
	// under tmu), and what went through them.
	groOff, gsoOff string
	groRuns        atomic.Uint64 // receives that held more than one datagram
	groMax         atomic.Uint64
	gsoRuns        atomic.Uint64 // sends of more than one datagram
	gsoMax         atomic.Uint64
	offMu          sync.Mutex // guards gsoOff for Offloads while Write may set it

	// Send state. One mutex guards it: concurrent writers take turns on
	// the one set of arrays. That keeps Write allocation-free without a
	// pool; per-writer arrays are the next step if writers contend.
	tmu    sync.Mutex
	tx     mmsgBatch
	txNext int
	txEnd  int
	txSent int
	txFn   func(fd uintptr) bool

	gso   *gsoState // send pool with segmentation offload, when opened with it
	gro   *groState // receive state with UDP_GRO, when opened with it
	groFn func(fd uintptr) bool
}

var _ packetio.Device = (*Device)(nil)

// Listen opens the underlay on local (the node IP and the tunnel port, e.g.
// 10.169.72.233:8472) in the network namespace of the calling thread. Port 0
// picks a free port; see LocalAddr. The address must be a specific IPv4
// address: it becomes the destination of every synthesised header.
func Listen(local netip.AddrPort) (*Device, error) { return ListenWith(local, Options{}) }

// ListenWith is Listen with options.
func ListenWith(local netip.AddrPort, o Options) (*Device, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	fail := func(err error) error { return fmt.Errorf("listen udp %s: %w", local, err) }
	switch a := local.Addr(); {
	case !a.IsValid():
		return nil, fail(errors.New("no address"))
	case a.Is6():
		return nil, fail(errors.New("IPv6 underlay not supported yet"))
	case a.IsUnspecified():
		return nil, fail(errors.New("needs the node's own address, not the unspecified one"))
	}

	d := &Device{}
	rxfd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fail(fmt.Errorf("udp socket: %w", err))
	}
	d.rxFile = os.NewFile(uintptr(rxfd), "udp")
	ok := false
	defer func() {
		if !ok {
			d.rxFile.Close()
			if d.txFile != nil {
				d.txFile.Close()
			}
		}
	}()
	if err := setBuffer(rxfd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF); err != nil {
		return nil, fail(err)
	}
	if o.ReusePort {
		if err := unix.SetsockoptInt(rxfd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return nil, fail(fmt.Errorf("SO_REUSEPORT: %w", err))
		}
	}
	if err := unix.Bind(rxfd, &unix.SockaddrInet4{Port: int(local.Port()), Addr: local.Addr().As4()}); err != nil {
		switch {
		case errors.Is(err, unix.EADDRINUSE):
			return nil, fail(fmt.Errorf("port already in use: %w", err))
		case errors.Is(err, unix.EADDRNOTAVAIL):
			return nil, fail(fmt.Errorf("not an address of this network namespace: %w", err))
		}
		return nil, fail(fmt.Errorf("bind: %w", err))
	}
	sa, err := unix.Getsockname(rxfd)
	if err != nil {
		return nil, fail(fmt.Errorf("getsockname: %w", err))
	}
	bound, isV4 := sa.(*unix.SockaddrInet4)
	if !isV4 {
		return nil, fail(fmt.Errorf("socket bound to unexpected address %T", sa))
	}
	local = netip.AddrPortFrom(netip.AddrFrom4(bound.Addr), uint16(bound.Port))

	// IPPROTO_RAW means IP_HDRINCL: the engine's header goes out as built.
	txfd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fail(fmt.Errorf("raw socket (needs CAP_NET_RAW): %w", err))
	}
	d.txFile = os.NewFile(uintptr(txfd), "raw")
	if err := setBuffer(txfd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF); err != nil {
		return nil, fail(err)
	}
	if err := dropAllInput(txfd); err != nil {
		return nil, fail(err)
	}

	if d.rxRaw, err = d.rxFile.SyscallConn(); err != nil {
		return nil, fail(err)
	}
	if d.txRaw, err = d.txFile.SyscallConn(); err != nil {
		return nil, fail(err)
	}
	d.local = local
	d.localIP = local.Addr().As4()
	d.localPort = local.Port()
	d.name = "udp:" + local.String()
	if o.Instance > 0 {
		d.name += "#" + strconv.Itoa(o.Instance)
	}
	d.rx.init()
	d.tx.init()
	d.rxFn = d.recvBatch
	d.txFn = d.sendBatch
	// A kernel that refuses an offload is not fatal: the device falls
	// back to single datagrams and Offloads says why.
	if o.GRO {
		if err := d.openGRO(rxfd); err != nil {
			d.groOff = err.Error()
		}
	} else {
		d.groOff = "not requested"
	}
	if o.GSO {
		if err := d.openGSO(d.localIP); err != nil {
			d.closeGSO()
			d.gso = nil
			d.gsoOff = err.Error()
		}
	} else {
		d.gsoOff = "not requested"
	}
	ok = true
	return d, nil
}

// setBuffer asks for sockBuf bytes. The FORCE variant ignores the
// net.core.[rw]mem_max cap but needs CAP_NET_ADMIN; without it the plain
// option still gets as much as the cap allows.
func setBuffer(fd, force, plain int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, sockBuf) == nil {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, sockBuf); err != nil {
		return fmt.Errorf("socket buffer: %w", err)
	}
	return nil
}

// dropAllInput attaches a filter that rejects every packet. A raw
// IPPROTO_RAW socket is send-only in practice, but the kernel would still
// queue any packet of IP protocol 255 to it, and nobody reads this socket.
func dropAllInput(fd int) error {
	filter := [1]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	prog := unix.SockFprog{Len: 1, Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attach drop filter: %w", err)
	}
	return nil
}

// Read receives up to min(len(bufs), BatchSize()) datagrams in one
// recvmmsg. It blocks until at least one is queued.
//
// Datagram i is received into bufs[i][offset+HeaderLen:], then IPv4 and UDP
// headers are written at bufs[i][offset:offset+HeaderLen] and sizes[i] is
// set to HeaderLen + the datagram length: bufs[i][offset:offset+sizes[i]]
// is the outer packet as it came off the wire. Hence offset >= 0 and
// len(bufs[i]) must exceed offset+HeaderLen by at least the largest
// datagram expected (underlay MTU - 28). A datagram that does not fit is
// dropped and counted in RXDropped, never returned truncated.
//
// After Close, Read returns an error wrapping net.ErrClosed.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	if len(sizes) < len(bufs) {
		return 0, fmt.Errorf("read %s: %d sizes for %d buffers", d.name, len(sizes), len(bufs))
	}
	if offset < 0 {
		return 0, fmt.Errorf("read %s: negative offset %d", d.name, offset)
	}
	if len(bufs) > batchSize {
		bufs = bufs[:batchSize]
	}
	for i := range bufs {
		if len(bufs[i]) <= offset+HeaderLen {
			return 0, fmt.Errorf("read %s: buffer %d has %d bytes, needs more than offset %d + %d", d.name, i, len(bufs[i]), offset, HeaderLen)
		}
	}

	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.gro != nil {
		return d.readGRO(bufs, sizes, offset)
	}
	for {
		if d.closed.Load() {
			return 0, d.closedErr("read")
		}
		for i, b := range bufs {
			d.rx.set(i, b[offset+HeaderLen:])
		}
		d.rxWant, d.rxGot, d.rxErr = len(bufs), 0, 0
		err := d.rxRaw.Read(d.rxFn)
		d.rx.release(len(bufs))
		if err != nil {
			if d.closed.Load() {
				return 0, d.closedErr("read")
			}
			return 0, fmt.Errorf("read %s: %w", d.name, err)
		}
		if d.rxErr != 0 {
			return 0, fmt.Errorf("read %s: recvmmsg: %w", d.name, d.rxErr)
		}
		if n := d.finishRead(bufs, sizes, offset); n > 0 {
			return n, nil
		}
		// Every datagram of this batch was dropped; wait for more rather
		// than return an empty batch.
	}
}

// recvBatch runs inside the poller callback; returning false parks the
// goroutine until the socket is readable.
func (d *Device) recvBatch(fd uintptr) bool {
	for {
		n, errno := recvmmsg(fd, d.rx.hdrs[:d.rxWant])
		switch errno {
		case 0:
			d.rxGot = n
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			d.rxErr = errno
			return true
		}
	}
}

// finishRead writes the headers of the rxGot received datagrams and packs
// them to the front of bufs when one in the middle had to be dropped.
func (d *Device) finishRead(bufs [][]byte, sizes []int, offset int) int {
	out := 0
	for i := 0; i < d.rxGot; i++ {
		h := &d.rx.hdrs[i]
		plen := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 || HeaderLen+plen > 0xffff {
			d.rxDropped.Add(1)
			continue
		}
		if out != i {
			// Rare: a dropped datagram left a hole. Copy rather than
			// reorder the caller's buffers, which it may track by index.
			dst, src := bufs[out][offset+HeaderLen:], bufs[i][offset+HeaderLen:]
			if len(dst) < plen {
				d.rxDropped.Add(1)
				continue
			}
			copy(dst, src[:plen])
		}
		d.writeHeaders(bufs[out][offset:], &d.rx.addrs[i], plen)
		sizes[out] = HeaderLen + plen
		out++
	}
	return out
}

// writeHeaders fills b[:HeaderLen] with the IPv4 and UDP headers of a
// datagram of plen payload bytes from sender to the local address.
func (d *Device) writeHeaders(b []byte, sender *unix.RawSockaddrInet4, plen int) {
	b = b[:HeaderLen]
	total := HeaderLen + plen
	b[0] = 0x45 // version 4, 5 words of header
	b[1] = 0
	b[2], b[3] = byte(total>>8), byte(total)
	b[4], b[5], b[6], b[7] = 0, 0, 0, 0 // ID, flags, fragment offset
	b[8] = 64
	b[9] = unix.IPPROTO_UDP
	b[10], b[11] = 0, 0
	copy(b[12:16], sender.Addr[:])
	copy(b[16:20], d.localIP[:])
	sum := ipChecksum(b[:20])
	b[10], b[11] = byte(sum>>8), byte(sum)

	// sin_port is in network byte order in memory, whatever the host's.
	port := (*[2]byte)(unsafe.Pointer(&sender.Port))
	b[20], b[21] = port[0], port[1]
	b[22], b[23] = byte(d.localPort>>8), byte(d.localPort)
	ulen := 8 + plen
	b[24], b[25] = byte(ulen>>8), byte(ulen)
	b[26], b[27] = 0, 0 // no checksum: the kernel checked the real one
}

// ipChecksum is the Internet checksum of an IPv4 header whose checksum
// field is zero.
func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	return ^uint16(sum)
}

// Write sends every bufs[i][offset:], each a complete IPv4 packet, in
// batches of up to BatchSize() per sendmmsg, to the destination in its
// header. It waits in the poller while the socket buffer is full.
//
// A packet that is malformed (shorter than an IPv4 header, not IPv4) or that
// the kernel refuses (EMSGSIZE above the route MTU, ENETUNREACH,
// EHOSTUNREACH, EPERM from a firewall, ENOBUFS, ...) is skipped and counted
// in TXErrors; the rest of the batch still goes out. Write returns how many
// packets the kernel accepted, and an error only when the device is closed.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	if d.closed.Load() {
		return 0, d.closedErr("write")
	}
	d.tmu.Lock()
	defer d.tmu.Unlock()
	if d.gso != nil && d.gsoOff == "" {
		return d.writeGSO(bufs, offset)
	}
	return d.writeRaw(bufs, offset)
}

// writeRaw sends through the raw socket with sendmmsg. Caller holds tmu.
func (d *Device) writeRaw(bufs [][]byte, offset int) (int, error) {
	accepted := 0
	for i := 0; i < len(bufs); {
		m := 0
		for ; i < len(bufs) && m < batchSize; i++ {
			if offset < 0 || offset >= len(bufs[i]) {
				d.txErrors.Add(1)
				continue
			}
			p := bufs[i][offset:]
			if len(p) < 20 || p[0]>>4 != 4 {
				d.txErrors.Add(1)
				continue
			}
			a := &d.tx.addrs[m]
			a.Family = unix.AF_INET
			a.Port = 0
			copy(a.Addr[:], p[16:20])
			d.tx.set(m, p)
			m++
		}
		if m == 0 {
			continue
		}
		d.txNext, d.txEnd, d.txSent = 0, m, 0
		err := d.txRaw.Write(d.txFn)
		d.tx.release(m)
		accepted += d.txSent
		if err != nil {
			if d.closed.Load() {
				return accepted, d.closedErr("write")
			}
			return accepted, fmt.Errorf("write %s: %w", d.name, err)
		}
	}
	return accepted, nil
}

// sendBatch runs inside the poller callback; returning false parks the
// goroutine until the socket is writable again.
func (d *Device) sendBatch(fd uintptr) bool {
	for d.txNext < d.txEnd {
		n, errno := sendmmsg(fd, d.tx.hdrs[d.txNext:d.txEnd])
		switch {
		case errno == unix.EAGAIN:
			return false
		case errno == unix.EINTR:
			continue
		case errno != 0 || n <= 0:
			// The first message of the slice was refused: skip it.
			d.txErrors.Add(1)
			d.txNext++
		default:
			d.txNext += n
			d.txSent += n
		}
	}
	return true
}

// BatchSize is the most datagrams one Read returns and one sendmmsg takes.
func (d *Device) BatchSize() int { return batchSize }

// Name is "udp:" followed by the local address and port.
func (d *Device) Name() string { return d.name }

// LocalAddr is the address and port the device receives on.
func (d *Device) LocalAddr() netip.AddrPort { return d.local }

// TXErrors counts packets Write skipped: malformed, or refused by the
// kernel.
func (d *Device) TXErrors() uint64 { return d.txErrors.Load() }

// RXDropped counts datagrams Read discarded because they did not fit.
func (d *Device) RXDropped() uint64 { return d.rxDropped.Load() }

// Close closes both sockets. A Read or Write blocked in another goroutine
// returns an error wrapping net.ErrClosed. Closing twice is a no-op.
func (d *Device) Close() error {
	if !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	rerr := d.rxFile.Close()
	terr := d.txFile.Close()
	gerr := d.closeGSO()
	if err := errors.Join(rerr, terr, gerr); err != nil {
		return fmt.Errorf("close %s: %w", d.name, err)
	}
	return nil
}

func (d *Device) closedErr(op string) error {
	return fmt.Errorf("%s %s: %w", op, d.name, net.ErrClosed)
}
