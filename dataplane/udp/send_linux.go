package udp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxdp/vxdp/dataplane/packetio"
	"github.com/vxdp/vxdp/encap"
)

// Sending. A UDP socket has one source port, and tunnel traffic wants one
// per flow (RFC 7348 section 5: entropy for ECMP and RSS), so the pool
// holds a socket per source port and a payload leaves through the socket
// its flow hash picks: one flow, one port, for the life of the pool. The
// payloads of one Send are grouped by socket (which keeps each flow's
// order) and each group leaves in one sendmmsg; with UDP_SEGMENT, a run of
// equal-sized payloads to one destination (the last may be shorter) is one
// message the kernel or the NIC cuts.

const (
	gsoMaxSegs = 64    // UDP_MAX_SEGMENTS
	gsoMaxLen  = 65000 // payload bytes in one segmented message
	solUDP     = 17
	udpSegment = 103 // UDP_SEGMENT
	// sendMax is the most payloads one group handles at a time: what a
	// worker queues in one batch (a packet and an ICMP error per packet
	// read).
	sendMax = 2 * batchSize
)

// pool is the set of send sockets.
type pool struct {
	socks []*sendSock
	ports packetio.SourcePorts

	gsoOn   atomic.Bool
	offMu   sync.Mutex // protects gsoOff
	gsoOff  string     // why GSO is off
	gsoRuns atomic.Uint64
	gsoMax  atomic.Uint64
}

// sendSock is one send socket and the arrays of its sendmmsg. Senders take
// turns on it (mu); senders of other flows use other sockets.
type sendSock struct {
	mu   sync.Mutex // protects everything below port
	file *os.File
	raw  syscall.RawConn
	port uint16

	hdrs  [batchSize]unix.Mmsghdr
	addrs [batchSize]unix.RawSockaddrInet4
	oob   [batchSize][32]byte // one UDP_SEGMENT cmsg each
	size  [batchSize]int      // segment size of each message
	segs  [batchSize]int      // payloads in each message
	total [batchSize]int      // bytes in each message
	first [batchSize]int      // the message's first payload, as a position in the group
	iovs  [sendMax]unix.Iovec // the payloads, message after message
	nmsg  int

	// State of the sendmmsg loop in the poller callback.
	next     int
	accepted int
	errs     int
	eio      bool
	fn       func(fd uintptr) bool
}

// setsockoptInt is unix.SetsockoptInt; tests replace it to play a kernel
// that refuses UDP_GRO or UDP_SEGMENT.
var setsockoptInt = unix.SetsockoptInt

// sendmmsgFn is sendmmsg; tests replace it to play a kernel that fails
// segmented sends at run time.
var sendmmsgFn = sendmmsg

// openPool binds n send sockets on addr at ports spread over the dynamic
// range. A port that is taken is skipped for the next one up; the pool
// fails only if no socket at all can be bound.
func openPool(addr netip.Addr, n int, gso bool) (*pool, error) {
	p := &pool{}
	span := encap.SourcePortMax - encap.SourcePortMin + 1
	stride := span / n
	for i := range n {
		s, err := openSendSock(addr, encap.SourcePortMin+i*stride, min(stride, 16))
		if err != nil {
			p.close()
			return nil, err
		}
		if s != nil {
			p.socks = append(p.socks, s)
		}
	}
	if len(p.socks) == 0 {
		return nil, fmt.Errorf("send sockets: no free port in %d-%d", encap.SourcePortMin, encap.SourcePortMax)
	}
	p.ports = packetio.SourcePorts{Count: len(p.socks), Min: p.socks[0].port, Max: p.socks[len(p.socks)-1].port}
	switch {
	case !gso:
		p.gsoOff = "not requested"
	default:
		// UDP_SEGMENT as a socket option exists exactly where the
		// per-message one does (Linux 4.18): ask once.
		if err := p.socks[0].control(func(fd int) error { return setsockoptInt(fd, solUDP, udpSegment, 0) }); err != nil {
			p.gsoOff = fmt.Sprintf("UDP_SEGMENT: %v", err)
		} else {
			p.gsoOn.Store(true)
		}
	}
	return p, nil
}

// openSendSock binds a send socket to the first free port of [from,
// from+tries), or returns nil if all are taken.
func openSendSock(addr netip.Addr, from, tries int) (*sendSock, error) {
	for port := from; port < from+tries; port++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return nil, fmt.Errorf("send socket: %w", err)
		}
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: addr.As4()})
		if errors.Is(err, unix.EADDRINUSE) {
			unix.Close(fd)
			continue
		}
		if err == nil {
			err = setupSendSock(fd)
		}
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("send socket on port %d: %w", port, err)
		}
		s := &sendSock{file: os.NewFile(uintptr(fd), "udp-send"), port: uint16(port)}
		if s.raw, err = s.file.SyscallConn(); err != nil {
			s.file.Close()
			return nil, err
		}
		s.fn = s.sendLoop
		for i := range s.hdrs {
			s.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.addrs[i]))
			s.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
			s.addrs[i].Family = unix.AF_INET
			c := (*unix.Cmsghdr)(unsafe.Pointer(&s.oob[i][0]))
			c.Level, c.Type = solUDP, udpSegment
			c.SetLen(unix.CmsgLen(2))
		}
		return s, nil
	}
	return nil, nil
}

func setupSendSock(fd int) error {
	// No DF, as the kernel's vxlan sends.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
		return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sockBuf); err != nil {
		return err
	}
	return dropAllInput(fd)
}

// dropAllInput attaches a filter that rejects every packet: nothing reads
// a send socket, and a datagram to its port must not sit in its buffer.
func dropAllInput(fd int) error {
	filter := [1]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	prog := unix.SockFprog{Len: 1, Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attach drop filter: %w", err)
	}
	return nil
}

func (s *sendSock) control(fn func(fd int) error) error {
	var ferr error
	if err := s.raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (p *pool) close() error {
	var errs []error
	for _, s := range p.socks {
		errs = append(errs, s.file.Close())
	}
	return errors.Join(errs...)
}

// sockFor is the socket of a flow.
func (p *pool) sockFor(flow uint32) *sendSock {
	return p.socks[flow%uint32(len(p.socks))]
}

func (p *pool) offload() packetio.Offload {
	p.offMu.Lock()
	off := p.gsoOff
	p.offMu.Unlock()
	return packetio.Offload{Name: "udp-gso", Active: off == "", Reason: off, Count: p.gsoRuns.Load(), Largest: p.gsoMax.Load()}
}

// send sends bufs[i][offset:] to meta[i].Remote, grouped by socket, and
// counts refusals in q.
func (p *pool) send(q *Queue, bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	accepted := 0
	for len(bufs) > 0 {
		chunk := min(len(bufs), sendMax)
		n, err := p.sendChunk(q, bufs[:chunk], meta[:chunk], offset)
		accepted += n
		if err != nil {
			return accepted, err
		}
		bufs, meta = bufs[chunk:], meta[chunk:]
	}
	return accepted, nil
}

func (p *pool) sendChunk(q *Queue, bufs [][]byte, meta []packetio.Meta, offset int) (int, error) {
	var done [sendMax]bool
	var group [sendMax]int
	accepted := 0
	for i := range bufs {
		if done[i] {
			continue
		}
		s := p.sockFor(meta[i].Flow)
		g := 0
		for j := i; j < len(bufs); j++ {
			if !done[j] && p.sockFor(meta[j].Flow) == s {
				group[g] = j
				g++
				done[j] = true
			}
		}
		n, err := p.sendGroup(q, s, bufs, meta, offset, group[:g])
		accepted += n
		if err != nil {
			return accepted, err
		}
	}
	return accepted, nil
}

// sendGroup sends the payloads bufs[group[k]] through s.
func (p *pool) sendGroup(q *Queue, s *sendSock, bufs [][]byte, meta []packetio.Meta, offset int, group []int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	accepted := 0
	for pos := 0; pos < len(group); {
		gso := p.gsoOn.Load()
		end := s.build(bufs, meta, offset, group, pos, gso, q)
		s.next, s.accepted, s.errs, s.eio = 0, 0, 0, false
		var err error
		if s.nmsg > 0 {
			err = s.raw.Write(s.fn)
		}
		for i := range s.iovs[:s.msgIovs()] {
			s.iovs[i].Base = nil // the caller owns its buffers again
		}
		accepted += s.accepted
		if s.errs > 0 {
			q.txErrors.Add(uint64(s.errs))
		}
		if err != nil {
			return accepted, fmt.Errorf("send %s: %w", q.name, err)
		}
		if gso {
			p.countGSO(s)
		}
		if s.eio {
			// The kernel takes UDP_SEGMENT only when the route's device
			// can checksum the segments; this one cannot. Send singly
			// from now on, starting with the message it refused.
			p.offMu.Lock()
			if p.gsoOn.CompareAndSwap(true, false) {
				p.gsoOff = fmt.Sprintf("sendmmsg with UDP_SEGMENT to %v failed: %v; sending datagrams singly", addrPort(&s.addrs[s.next]), unix.EIO)
			}
			p.offMu.Unlock()
			end = s.first[s.next]
		}
		pos = end
	}
	return accepted, nil
}

// build fills the message arrays from group[pos:] and returns the position
// after the last payload it took. Empty payloads are counted as errors.
func (s *sendSock) build(bufs [][]byte, meta []packetio.Meta, offset int, group []int, pos int, gso bool, q *Queue) int {
	m, iov := 0, 0
	short := false // the current message ended with a shorter segment
	for ; pos < len(group); pos++ {
		k := group[pos]
		if offset < 0 || offset >= len(bufs[k]) {
			q.txErrors.Add(1)
			continue
		}
		b := bufs[k][offset:]
		remote := meta[k].Remote
		if gso && m > 0 && !short && s.segs[m-1] < gsoMaxSegs && len(b) <= s.size[m-1] &&
			(s.segs[m-1]+1)*s.size[m-1] <= gsoMaxLen && s.sameAddr(m-1, remote) {
			short = len(b) < s.size[m-1]
			s.segs[m-1]++
			s.total[m-1] += len(b)
		} else {
			if m == batchSize {
				break
			}
			s.setAddr(m, remote)
			s.size[m], s.segs[m], s.total[m], s.first[m] = len(b), 1, len(b), pos
			s.hdrs[m].Hdr.Iov = &s.iovs[iov]
			m++
			short = false
		}
		s.iovs[iov].Base = &b[0]
		s.iovs[iov].SetLen(len(b))
		iov++
	}
	for i := 0; i < m; i++ {
		h := &s.hdrs[i].Hdr
		h.SetIovlen(s.segs[i])
		if s.segs[i] > 1 {
			h.Control = &s.oob[i][0]
			h.SetControllen(unix.CmsgSpace(2))
			*(*uint16)(unsafe.Pointer(&s.oob[i][unix.CmsgLen(0)])) = uint16(s.size[i])
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
	}
	s.nmsg = m
	return pos
}

// msgIovs is the number of iovecs the built messages use.
func (s *sendSock) msgIovs() int {
	n := 0
	for i := 0; i < s.nmsg; i++ {
		n += s.segs[i]
	}
	return n
}

func (s *sendSock) setAddr(m int, a netip.AddrPort) {
	sa := &s.addrs[m]
	sa.Addr = a.Addr().Unmap().As4()
	p := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network order in memory
	p[0], p[1] = byte(a.Port()>>8), byte(a.Port())
}

func (s *sendSock) sameAddr(m int, a netip.AddrPort) bool {
	return addrPort(&s.addrs[m]) == netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// sendLoop runs in the poller callback; returning false parks the
// goroutine until the socket is writable again.
func (s *sendSock) sendLoop(fd uintptr) bool {
	for s.next < s.nmsg {
		n, errno := sendmmsgFn(fd, s.hdrs[s.next:s.nmsg])
		switch {
		case errno == unix.EAGAIN:
			return false
		case errno == unix.EINTR:
			continue
		case errno == unix.EIO && s.segs[s.next] > 1:
			s.eio = true
			return true
		case errno != 0 || n <= 0:
			// The first message of the slice was refused: skip it.
			s.errs += s.segs[s.next]
			s.next++
		default:
			for _, c := range s.segs[s.next : s.next+n] {
				s.accepted += c
			}
			s.next += n
		}
	}
	return true
}

// countGSO counts the segmented messages the last build sent.
func (p *pool) countGSO(s *sendSock) {
	for i := 0; i < s.next && i < s.nmsg; i++ {
		if s.segs[i] < 2 {
			continue
		}
		p.gsoRuns.Add(1)
		t := uint64(s.total[i])
		for {
			old := p.gsoMax.Load()
			if t <= old || p.gsoMax.CompareAndSwap(old, t) {
				break
			}
		}
	}
}
